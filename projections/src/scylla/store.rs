//! The Scylla projector's store: one projection's view of the keyspace. Applies a batch of
//! interaction facts by reading the state of the artworks the batch touches as of each
//! artwork's `next_offset` ([`read`](super::read)), folding with the pure fold
//! ([`crate::fold::scylla`]), and writing the plan ([`write`](super::write)): the derived rows,
//! then each artwork's partition in one atomic single-partition batch, then the popularity
//! rows. Keeps the artworks' partitions between batches, and stores the Kafka offsets.

use std::collections::HashMap;

use futures::future::try_join_all;
use scylla::client::session::Session;

use super::statements::Statements;
use crate::error::ProjectionError;
use crate::fold::scylla::{ArtworkState, InteractionBatch, Positioned, StoredRows, artworks};
use gallery_schemas::read_model::TopicPartition;

/// One projection's view of the Scylla keyspace.
#[derive(Debug)]
pub(crate) struct ScyllaStore {
    pub(super) session: Session,
    projection: String,
    pub(super) statements: Statements,
    /// Artworks' partitions as this instance last read or wrote them: each the state of its
    /// partition at its `next_offset`, a function of the log up to there, so still true when
    /// another instance has folded further (folding on from it rewrites what that one wrote).
    /// Forgotten on every change of assignment (see [`ScyllaStore::forget_counts`]) and when
    /// it would pass [`KNOWN_COUNTS`] artworks.
    known: std::sync::Mutex<HashMap<String, ArtworkState>>,
}

/// Most artworks whose partitions a store keeps between batches.
const KNOWN_COUNTS: usize = 100_000;

impl ScyllaStore {
    pub(crate) async fn new(
        session: Session,
        keyspace: &str,
        projection: String,
    ) -> Result<Self, ProjectionError> {
        let statements = Statements::prepare(&session, keyspace).await?;
        Ok(Self {
            session,
            projection,
            statements,
            known: std::sync::Mutex::new(HashMap::new()),
        })
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, ArtworkState>> {
        // Every operation leaves the map consistent, so a poisoned lock is still usable.
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets the counts kept between batches: the next batch reads its artworks' again.
    pub(crate) fn forget_counts(&self) {
        self.known().clear();
    }

    /// The counts of `artworks`, from those kept between batches, else read (an artwork
    /// never written has none).
    async fn counts(
        &self,
        artworks: &[String],
    ) -> Result<HashMap<String, ArtworkState>, ProjectionError> {
        let mut out = HashMap::with_capacity(artworks.len());
        let mut missing = Vec::new();
        {
            let known = self.known();
            for a in artworks {
                match known.get(a) {
                    Some(c) => {
                        out.insert(a.clone(), c.clone());
                    }
                    None => missing.push(a.clone()),
                }
            }
        }
        if !missing.is_empty() {
            let read = self.read_counts(&missing).await?;
            self.remember(read.iter().map(|(a, c)| (a.clone(), c.clone())));
            out.extend(read);
        }
        Ok(out)
    }

    /// Keeps `counts`, each an artwork's partition as stored.
    fn remember(&self, counts: impl IntoIterator<Item = (String, ArtworkState)>) {
        let mut known = self.known();
        for (artwork, c) in counts {
            if known.len() >= KNOWN_COUNTS && !known.contains_key(&artwork) {
                known.clear();
            }
            known.insert(artwork, c);
        }
    }

    /// The stored next offset of every partition this projection has read.
    pub(crate) async fn offsets(&self) -> Result<HashMap<TopicPartition, i64>, ProjectionError> {
        let rows = self
            .select(
                &self.statements.read_offsets,
                (&self.projection,),
                "read offsets",
            )
            .await?;
        let mut out = HashMap::new();
        for row in rows
            .rows::<(String, i32, i64)>()
            .map_err(ProjectionError::cql("read offsets"))?
        {
            let (topic, partition, next) = row.map_err(ProjectionError::cql("read offsets"))?;
            out.insert((topic, partition), next);
        }
        Ok(out)
    }

    /// Records where to resume, after the batch is applied.
    pub(crate) async fn store_offsets(
        &self,
        next_offsets: &HashMap<TopicPartition, i64>,
    ) -> Result<(), ProjectionError> {
        let writes = next_offsets.iter().map(|((topic, partition), next)| {
            self.session.execute_unpaged(
                &self.statements.write_offset,
                (*next, &self.projection, topic, *partition),
            )
        });
        try_join_all(writes)
            .await
            .map_err(ProjectionError::cql("store offsets"))?;
        Ok(())
    }

    /// Applies the interaction facts of one batch (facts other than interactions are ignored).
    pub(crate) async fn apply(&self, facts: &[Positioned<'_>]) -> Result<(), ProjectionError> {
        let artworks = artworks(facts);
        if artworks.is_empty() {
            return Ok(());
        }
        let states = self.counts(&artworks).await?;
        let batch = InteractionBatch::new(facts, &states);
        let stored = if batch.is_empty() {
            StoredRows::default() // every fact is in its partition already: nothing to read
        } else {
            self.read_stored(&batch).await?
        };
        let plan = batch.plan(&stored);
        self.write_derived(&plan).await?;
        self.write_partitions(&plan).await?;
        self.remember(
            plan.partitions
                .iter()
                .map(|(a, p)| (a.clone(), p.state.clone())),
        );
        self.write_popular(&plan.popular).await
    }
}
