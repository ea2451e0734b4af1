//! What a worker knows about one partition's past: which requests already have a terminal
//! event and where each request id was first seen.
//!
//! A worker that takes a partition (at start, after a crash, after a rebalance) reads it from
//! its committed offset, the low-water mark. Terminal events for later requests may already
//! be in the partition (written by the previous owner, which finished jobs out of order), so
//! before it starts any work it scans the partition up to its last stable offset and records
//! them here; it also scans a window of messages before the committed offset, so a request id
//! seen again (a retried command) is recognised as a duplicate and runs once.

use std::collections::HashMap;

use uuid::Uuid;

/// What to do with a request read at some offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The first sighting of a request with no terminal yet: run it.
    Run,
    /// The same request id was read before, at `first`: it is the same job.
    Duplicate { first: i64 },
    /// A terminal event for it is already committed.
    Finished,
}

/// Request ids and terminals of one partition, by offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Request id -> offset of its first `GenerationRequested`.
    first_seen: HashMap<Uuid, i64>,
    /// Request id -> offset of a terminal event for it.
    terminated: HashMap<Uuid, i64>,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// A `GenerationRequested` for `request` at `offset`, seen while scanning.
    pub fn saw_request(&mut self, request: Uuid, offset: i64) {
        let first = self.first_seen.entry(request).or_insert(offset);
        *first = (*first).min(offset);
    }

    /// A terminal event for `request` at `offset` (scanned, read, or committed by this
    /// worker).
    pub fn saw_terminal(&mut self, request: Uuid, offset: i64) {
        self.terminated.entry(request).or_insert(offset);
    }

    /// Decides about the request `request` read at `offset`, and remembers it.
    pub fn admit(&mut self, request: Uuid, offset: i64) -> Admission {
        if self.terminated.contains_key(&request) {
            return Admission::Finished;
        }
        let first = *self.first_seen.entry(request).or_insert(offset);
        if first < offset {
            Admission::Duplicate { first }
        } else {
            Admission::Run
        }
    }

    /// Whether a terminal for `request` is known.
    pub fn is_terminated(&self, request: Uuid) -> bool {
        self.terminated.contains_key(&request)
    }

    /// Forgets what lies more than `window` messages before `low_water`: duplicates are
    /// recognised within that window (the same window the scan reads at assignment).
    pub fn prune(&mut self, low_water: i64, window: i64) {
        let horizon = low_water.saturating_sub(window);
        self.first_seen.retain(|_, o| *o >= horizon);
        self.terminated.retain(|_, o| *o >= horizon);
    }

    /// Ids remembered (for logs).
    pub fn len(&self) -> usize {
        self.first_seen.len() + self.terminated.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn a_request_finished_by_the_previous_owner_is_skipped() {
        // Partition: r1@10 r2@11 terminal(r2)@12, committed offset 10 (r1 was unfinished).
        let mut h = History::new();
        h.saw_request(id(1), 10);
        h.saw_request(id(2), 11);
        h.saw_terminal(id(2), 12);
        // Re-reading from 10:
        assert_eq!(h.admit(id(1), 10), Admission::Run);
        assert_eq!(h.admit(id(2), 11), Admission::Finished);
    }

    #[test]
    fn a_request_id_seen_again_is_a_duplicate_of_the_first() {
        let mut h = History::new();
        assert_eq!(h.admit(id(1), 3), Admission::Run);
        assert_eq!(h.admit(id(1), 9), Admission::Duplicate { first: 3 });
        // Reading the first one again (after a re-assignment) is not a duplicate.
        assert_eq!(h.admit(id(1), 3), Admission::Run);
    }

    #[test]
    fn a_duplicate_of_a_request_from_before_the_committed_offset_is_recognised() {
        // The scan window covered r1@2 (finished, terminal@4), committed offset 5.
        let mut h = History::new();
        h.saw_request(id(1), 2);
        h.saw_terminal(id(1), 4);
        assert_eq!(h.admit(id(1), 7), Admission::Finished);
        let mut h = History::new();
        h.saw_request(id(1), 2);
        // Its terminal fell before the window: still the same request id, seen earlier.
        assert_eq!(h.admit(id(1), 7), Admission::Duplicate { first: 2 });
    }

    #[test]
    fn pruning_forgets_only_what_is_outside_the_window() {
        let mut h = History::new();
        h.saw_request(id(1), 10);
        h.saw_terminal(id(1), 20);
        h.saw_request(id(2), 90);
        h.prune(100, 15);
        assert!(!h.is_terminated(id(1)));
        assert_eq!(h.admit(id(2), 95), Admission::Duplicate { first: 90 });
        assert_eq!(h.admit(id(1), 96), Admission::Run);
    }
}
