//! The pure part of the projections: from the events of a batch and the stored state of the
//! entities they touch, compute the rows to write and the count changes. No I/O; unit and
//! property tests drive it directly. Every fold is idempotent: applying an event a second
//! time (a replay, a duplicate) changes nothing, so counts cannot drift or go negative.

pub mod catalog;
pub mod comments;
pub mod generation;
pub mod scylla;
pub mod sets;
pub mod users;
pub mod views;

pub use sets::{
    ListChange, Position, SetBatch, SetEvent, SetFact, SetKey, SetKind, SetPlan, set_delta,
};

/// Length of a popularity bucket, milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// Start of the hour bucket holding `at_ms` (milliseconds since the epoch, UTC).
pub fn hour_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// Count changes of one batch, per artwork. Applied after creating missing rows at zero, so the
/// non-negative CHECKs hold at every step.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatsDelta {
    pub likes: i64,
    pub favorites: i64,
    pub comments: i64,
    pub views: i64,
}

impl StatsDelta {
    pub fn is_zero(&self) -> bool {
        *self == StatsDelta::default()
    }
}

/// Whether a write of a cell at timestamp `ts` (a deletion when not `present`) wins over the
/// cell's stored write `(timestamp, present)`, as in CQL: the later timestamp, a deletion on
/// equal ones. For the tests' models of the Scylla tables.
#[cfg(test)]
fn cql_write_wins(stored: Option<&(i64, bool)>, ts: i64, present: bool) -> bool {
    stored.is_none_or(|(at, _)| ts > *at || (ts == *at && !present))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_round_down_even_before_the_epoch() {
        assert_eq!(hour_of(0), 0);
        assert_eq!(hour_of(HOUR_MS - 1), 0);
        assert_eq!(hour_of(HOUR_MS), HOUR_MS);
        assert_eq!(hour_of(-1), -HOUR_MS);
    }
}
