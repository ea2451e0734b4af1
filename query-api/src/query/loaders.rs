//! DataLoaders over the read model: the artworks of a page ask for their stats, flags and
//! exhibitions one by one, and each kind is fetched in one statement for the whole page.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use uuid::Uuid;

use crate::error::QueryError;
use crate::read::{ArtworkRow, ExhibitionRow, ReadModel, Stats};

/// Every loader of the read model, batched per kind of key.
#[derive(Debug, Clone)]
pub struct ReadLoader {
    read: ReadModel,
}

pub type Loaders = DataLoader<ReadLoader>;

pub fn loaders(read: ReadModel) -> Loaders {
    DataLoader::new(ReadLoader { read }, tokio::spawn)
}

type Shared = Arc<QueryError>;

/// An artwork's counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatsOf(pub String);

/// A viewer's (liked, favorited) of an artwork: (user, artwork).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlagsOf(pub String, pub String);

/// An artwork's catalog record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArtworkOf(pub String);

/// An exhibition's record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExhibitionOf(pub Uuid);

impl Loader<StatsOf> for ReadLoader {
    type Value = Stats;
    type Error = Shared;

    async fn load(&self, keys: &[StatsOf]) -> Result<HashMap<StatsOf, Stats>, Shared> {
        let ids: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
        let rows = self.read.stats(&ids).await.map_err(Arc::new)?;
        Ok(rows.into_iter().map(|(id, s)| (StatsOf(id), s)).collect())
    }
}

impl Loader<FlagsOf> for ReadLoader {
    type Value = (bool, bool);
    type Error = Shared;

    async fn load(&self, keys: &[FlagsOf]) -> Result<HashMap<FlagsOf, (bool, bool)>, Shared> {
        let pairs: Vec<(String, String)> =
            keys.iter().map(|k| (k.0.clone(), k.1.clone())).collect();
        let rows = self.read.flags(&pairs).await.map_err(Arc::new)?;
        Ok(rows
            .into_iter()
            .map(|((u, a), flags)| (FlagsOf(u, a), flags))
            .collect())
    }
}

impl Loader<ArtworkOf> for ReadLoader {
    type Value = Arc<ArtworkRow>;
    type Error = Shared;

    async fn load(
        &self,
        keys: &[ArtworkOf],
    ) -> Result<HashMap<ArtworkOf, Arc<ArtworkRow>>, Shared> {
        let ids: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
        let rows = self.read.artworks(&ids).await.map_err(Arc::new)?;
        Ok(rows
            .into_iter()
            .map(|r| (ArtworkOf(r.artwork_id.clone()), Arc::new(r)))
            .collect())
    }
}

impl Loader<ExhibitionOf> for ReadLoader {
    type Value = Arc<ExhibitionRow>;
    type Error = Shared;

    async fn load(
        &self,
        keys: &[ExhibitionOf],
    ) -> Result<HashMap<ExhibitionOf, Arc<ExhibitionRow>>, Shared> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = self.read.exhibitions(&ids).await.map_err(Arc::new)?;
        Ok(rows
            .into_iter()
            .map(|r| (ExhibitionOf(r.exhibition_id), Arc::new(r)))
            .collect())
    }
}
