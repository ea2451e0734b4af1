//! Views, keyed by event id: each view counts once in its artwork's total and once in its hour
//! bucket, however often it is replayed.

use std::collections::{BTreeMap, HashSet};

use gallery_schemas::ArtworkViewed;
use uuid::Uuid;

use super::hour_of;

/// One view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub event_id: Uuid,
    pub artwork_id: String,
    pub user_id: Option<String>,
    pub viewed_at_ms: i64,
}

/// Views of one batch.
#[derive(Debug, Default)]
pub struct ViewBatch {
    views: Vec<View>,
}

/// What to write for one batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ViewPlan {
    pub inserts: Vec<View>,
    /// New views per artwork.
    pub count_deltas: BTreeMap<String, i64>,
    /// New views per (artwork, hour bucket start).
    pub bucket_deltas: BTreeMap<(String, i64), i64>,
}

impl ViewBatch {
    pub fn add(&mut self, e: &ArtworkViewed) {
        self.views.push(View {
            event_id: e.event_id,
            artwork_id: e.artwork_id.as_str().to_owned(),
            user_id: e.user_id.as_ref().map(|u| u.as_str().to_owned()),
            viewed_at_ms: e.occurred_at,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }

    /// The views of the batch, in log order.
    pub fn views(&self) -> &[View] {
        &self.views
    }

    pub fn ids(&self) -> Vec<Uuid> {
        self.views.iter().map(|v| v.event_id).collect()
    }

    /// The views not stored yet (`stored` holds the batch's event ids already stored).
    pub fn plan(&self, stored: &HashSet<Uuid>) -> ViewPlan {
        let mut seen = stored.clone();
        let mut plan = ViewPlan::default();
        for v in &self.views {
            if !seen.insert(v.event_id) {
                continue;
            }
            *plan.count_deltas.entry(v.artwork_id.clone()).or_insert(0) += 1;
            *plan
                .bucket_deltas
                .entry((v.artwork_id.clone(), hour_of(v.viewed_at_ms)))
                .or_insert(0) += 1;
            plan.inserts.push(v.clone());
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gallery_schemas::ArtworkId;

    fn view(at: i64) -> ArtworkViewed {
        ArtworkViewed {
            event_id: Uuid::now_v7(),
            artwork_id: ArtworkId::parse("a").unwrap_or_else(|e| unreachable!("{e}")),
            user_id: None,
            occurred_at: at,
        }
    }

    #[test]
    fn a_view_counts_once_even_when_repeated_or_stored() {
        let (v1, v2) = (view(0), view(crate::fold::HOUR_MS));
        let mut batch = ViewBatch::default();
        batch.add(&v1);
        batch.add(&v1);
        batch.add(&v2);
        let plan = batch.plan(&HashSet::new());
        assert_eq!(plan.count_deltas.get("a"), Some(&2));
        assert_eq!(plan.bucket_deltas.len(), 2);
        let again = batch.plan(&[v1.event_id, v2.event_id].into());
        assert_eq!(again, ViewPlan::default());
    }
}
