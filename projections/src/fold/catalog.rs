//! Exhibitions and their artworks, keyed by id. An exhibition only moves forward (draft,
//! published, closed); an artwork is added once and removed once. Replaying any event leaves
//! the rows as they are.

use std::collections::HashMap;

pub use gallery_schemas::ExhibitionStatus;
use gallery_schemas::{
    ArtworkAdded, ArtworkRemoved, ExhibitionClosed, ExhibitionCreated, ExhibitionPublished,
};
use uuid::Uuid;

/// A row of `exhibitions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExhibitionRow {
    pub exhibition_id: Uuid,
    pub curator_id: String,
    pub title: String,
    pub description: String,
    pub opens_at_ms: i64,
    pub closes_at_ms: i64,
    pub status: ExhibitionStatus,
    pub created_at_ms: i64,
    pub published_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
}

/// A row of `artworks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtworkRow {
    pub artwork_id: String,
    pub exhibition_id: Uuid,
    pub title: String,
    pub artist: String,
    pub year: Option<i32>,
    pub style: Option<String>,
    pub description: String,
    pub image_key: String,
    pub image_content_type: String,
    pub image_width: i32,
    pub image_height: i32,
    pub added_by: String,
    pub added_at_ms: i64,
    pub removed_at_ms: Option<i64>,
}

#[derive(Debug, Clone)]
enum Fact {
    Created(ExhibitionCreated),
    Published(ExhibitionPublished),
    Closed(ExhibitionClosed),
    Added(Box<ArtworkAdded>),
    Removed(ArtworkRemoved),
}

/// Catalog events of one batch, in log order.
#[derive(Debug, Default)]
pub struct CatalogBatch {
    facts: Vec<Fact>,
}

/// Rows that changed in one batch (whole rows, to upsert).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CatalogPlan {
    pub exhibitions: Vec<ExhibitionRow>,
    pub artworks: Vec<ArtworkRow>,
}

impl CatalogBatch {
    pub fn add_created(&mut self, e: &ExhibitionCreated) {
        self.facts.push(Fact::Created(e.clone()));
    }
    pub fn add_published(&mut self, e: &ExhibitionPublished) {
        self.facts.push(Fact::Published(e.clone()));
    }
    pub fn add_closed(&mut self, e: &ExhibitionClosed) {
        self.facts.push(Fact::Closed(e.clone()));
    }
    pub fn add_added(&mut self, e: &ArtworkAdded) {
        self.facts.push(Fact::Added(Box::new(e.clone())));
    }
    pub fn add_removed(&mut self, e: &ArtworkRemoved) {
        self.facts.push(Fact::Removed(e.clone()));
    }

    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }

    /// The exhibitions and artworks the batch touches.
    pub fn ids(&self) -> (Vec<Uuid>, Vec<String>) {
        let mut exhibitions = vec![];
        let mut artworks = vec![];
        for f in &self.facts {
            match f {
                Fact::Created(e) => exhibitions.push(e.exhibition_id),
                Fact::Published(e) => exhibitions.push(e.exhibition_id),
                Fact::Closed(e) => exhibitions.push(e.exhibition_id),
                Fact::Added(e) => artworks.push(e.artwork_id.as_str().to_owned()),
                Fact::Removed(e) => artworks.push(e.artwork_id.as_str().to_owned()),
            }
        }
        exhibitions.sort_unstable();
        exhibitions.dedup();
        artworks.sort_unstable();
        artworks.dedup();
        (exhibitions, artworks)
    }

    /// Applies the batch to the stored rows it touches; returns the rows that changed.
    pub fn plan(
        &self,
        stored_exhibitions: &HashMap<Uuid, ExhibitionRow>,
        stored_artworks: &HashMap<String, ArtworkRow>,
    ) -> CatalogPlan {
        let mut exhibitions = stored_exhibitions.clone();
        let mut artworks = stored_artworks.clone();
        for fact in &self.facts {
            match fact {
                Fact::Created(e) => {
                    exhibitions
                        .entry(e.exhibition_id)
                        .or_insert_with(|| ExhibitionRow {
                            exhibition_id: e.exhibition_id,
                            curator_id: e.curator_id.as_str().to_owned(),
                            title: e.title.as_str().to_owned(),
                            description: e.description.as_str().to_owned(),
                            opens_at_ms: e.opens_at,
                            closes_at_ms: e.closes_at,
                            status: ExhibitionStatus::Draft,
                            created_at_ms: e.occurred_at,
                            published_at_ms: None,
                            closed_at_ms: None,
                        });
                }
                Fact::Published(e) => {
                    if let Some(x) = exhibitions.get_mut(&e.exhibition_id)
                        && x.status == ExhibitionStatus::Draft
                    {
                        x.status = ExhibitionStatus::Published;
                        x.published_at_ms = Some(e.occurred_at);
                    }
                }
                Fact::Closed(e) => {
                    if let Some(x) = exhibitions.get_mut(&e.exhibition_id)
                        && x.status != ExhibitionStatus::Closed
                    {
                        x.status = ExhibitionStatus::Closed;
                        x.closed_at_ms = Some(e.occurred_at);
                    }
                }
                Fact::Added(e) => {
                    artworks
                        .entry(e.artwork_id.as_str().to_owned())
                        .or_insert_with(|| ArtworkRow {
                            artwork_id: e.artwork_id.as_str().to_owned(),
                            exhibition_id: e.exhibition_id,
                            title: e.title.as_str().to_owned(),
                            artist: e.artist.as_str().to_owned(),
                            year: e.year,
                            style: e.style.as_ref().map(|s| s.as_str().to_owned()),
                            description: e.description.as_str().to_owned(),
                            image_key: e.image.key.clone(),
                            image_content_type: e.image.content_type.clone(),
                            image_width: e.image.width,
                            image_height: e.image.height,
                            added_by: e.added_by.as_str().to_owned(),
                            added_at_ms: e.occurred_at,
                            removed_at_ms: None,
                        });
                }
                Fact::Removed(e) => {
                    if let Some(a) = artworks.get_mut(e.artwork_id.as_str())
                        && a.removed_at_ms.is_none()
                    {
                        a.removed_at_ms = Some(e.occurred_at);
                    }
                }
            }
        }
        let mut plan = CatalogPlan {
            exhibitions: exhibitions
                .into_values()
                .filter(|x| stored_exhibitions.get(&x.exhibition_id) != Some(x))
                .collect(),
            artworks: artworks
                .into_values()
                .filter(|a| stored_artworks.get(&a.artwork_id) != Some(a))
                .collect(),
        };
        plan.exhibitions.sort_by_key(|x| x.exhibition_id);
        plan.artworks
            .sort_by(|a, b| a.artwork_id.cmp(&b.artwork_id));
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gallery_schemas::{ArtworkId, Description, ImageRef, PersonName, Title, UserId};

    fn user() -> UserId {
        UserId::parse("cur").unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn events(x: Uuid) -> Vec<Fact> {
        let title = Title::parse("Light").unwrap_or_else(|e| unreachable!("{e}"));
        let description = Description::parse("").unwrap_or_else(|e| unreachable!("{e}"));
        vec![
            Fact::Created(ExhibitionCreated {
                event_id: Uuid::now_v7(),
                exhibition_id: x,
                curator_id: user(),
                title: title.clone(),
                description: description.clone(),
                opens_at: 10,
                closes_at: 20,
                occurred_at: 1,
            }),
            Fact::Added(Box::new(ArtworkAdded {
                event_id: Uuid::now_v7(),
                exhibition_id: x,
                artwork_id: ArtworkId::parse("art").unwrap_or_else(|e| unreachable!("{e}")),
                title,
                artist: PersonName::parse("Vincent").unwrap_or_else(|e| unreachable!("{e}")),
                year: Some(1888),
                style: None,
                description,
                image: ImageRef {
                    key: "k".into(),
                    content_type: "image/png".into(),
                    width: 64,
                    height: 64,
                    size_bytes: 1,
                    sha256: "00".into(),
                },
                added_by: user(),
                occurred_at: 2,
            })),
            Fact::Published(ExhibitionPublished {
                event_id: Uuid::now_v7(),
                exhibition_id: x,
                published_by: user(),
                occurred_at: 3,
            }),
            Fact::Removed(ArtworkRemoved {
                event_id: Uuid::now_v7(),
                exhibition_id: x,
                artwork_id: ArtworkId::parse("art").unwrap_or_else(|e| unreachable!("{e}")),
                removed_by: user(),
                occurred_at: 4,
            }),
            Fact::Closed(ExhibitionClosed {
                event_id: Uuid::now_v7(),
                exhibition_id: x,
                closed_by: user(),
                occurred_at: 5,
            }),
        ]
    }

    #[test]
    fn a_life_in_any_batching_ends_closed_and_a_replay_changes_nothing() {
        let x = Uuid::now_v7();
        let all = events(x);
        for cut in 1..=all.len() {
            let mut ex = HashMap::new();
            let mut art = HashMap::new();
            for chunk in all.chunks(cut) {
                let batch = CatalogBatch {
                    facts: chunk.to_vec(),
                };
                let plan = batch.plan(&ex, &art);
                for r in plan.exhibitions {
                    ex.insert(r.exhibition_id, r);
                }
                for r in plan.artworks {
                    art.insert(r.artwork_id.clone(), r);
                }
            }
            let row = &ex[&x];
            assert_eq!(row.status, ExhibitionStatus::Closed);
            assert_eq!((row.published_at_ms, row.closed_at_ms), (Some(3), Some(5)));
            assert_eq!(art["art"].removed_at_ms, Some(4));
            let replay = CatalogBatch { facts: all.clone() };
            assert_eq!(replay.plan(&ex, &art), CatalogPlan::default());
        }
    }

    #[test]
    fn a_late_publish_does_not_reopen_a_closed_exhibition() {
        let x = Uuid::now_v7();
        let all = events(x);
        let batch = CatalogBatch {
            facts: vec![all[0].clone(), all[4].clone(), all[2].clone()],
        };
        let plan = batch.plan(&HashMap::new(), &HashMap::new());
        assert_eq!(plan.exhibitions[0].status, ExhibitionStatus::Closed);
        assert_eq!(plan.exhibitions[0].published_at_ms, None);
    }
}
