//! The offset a worker may commit for one partition: its low-water mark.
//!
//! A worker holds several requests of a partition at once and finishes them in any order,
//! so it cannot commit "the last offset read". It commits the offset of the oldest request it
//! holds whose terminal event is neither committed nor in the transaction being committed;
//! with none, the next offset to read. Everything below that offset has its terminal in
//! Kafka (or needs none), so a worker restarting there redoes exactly the unfinished work.

use std::collections::BTreeMap;

use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    request: Uuid,
    /// Its terminal is in the transaction now being committed.
    sealed: bool,
}

/// The held requests of one partition, by offset, and the next offset to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    next: i64,
    open: BTreeMap<i64, Entry>,
}

impl Ledger {
    /// A partition read from `next` on (the committed offset).
    pub fn starting_at(next: i64) -> Self {
        Self {
            next,
            open: BTreeMap::new(),
        }
    }

    /// The message at `offset` is read and needs nothing (a result, a cancellation, a
    /// duplicate, a request already finished, an unreadable message).
    pub fn read(&mut self, offset: i64) {
        self.next = self.next.max(offset + 1);
    }

    /// The request at `offset` is read and held until its terminal is committed.
    pub fn hold(&mut self, offset: i64, request: Uuid) {
        self.read(offset);
        self.open.insert(
            offset,
            Entry {
                request,
                sealed: false,
            },
        );
    }

    /// The terminal of the request at `offset` goes into the transaction being built.
    pub fn seal(&mut self, offset: i64) {
        if let Some(e) = self.open.get_mut(&offset) {
            e.sealed = true;
        }
    }

    /// The transaction committed: its requests are done (offset and id of each).
    pub fn settle_sealed(&mut self) -> Vec<(i64, Uuid)> {
        let done: Vec<i64> = self
            .open
            .iter()
            .filter(|(_, e)| e.sealed)
            .map(|(o, _)| *o)
            .collect();
        done.into_iter()
            .filter_map(|o| self.open.remove(&o).map(|e| (o, e.request)))
            .collect()
    }

    /// The transaction was aborted: its requests are open again.
    pub fn unseal_all(&mut self) {
        for e in self.open.values_mut() {
            e.sealed = false;
        }
    }

    /// The request at `offset` needs no terminal from this worker any more (someone else's
    /// committed terminal was read).
    pub fn forget(&mut self, offset: i64) {
        self.open.remove(&offset);
    }

    /// The offset to commit with the transaction being built: the oldest request still
    /// open (not sealed into it), else the next offset to read.
    pub fn low_water(&self) -> i64 {
        self.open
            .iter()
            .find(|(_, e)| !e.sealed)
            .map_or(self.next, |(o, _)| *o)
    }

    /// The next offset to read.
    pub fn next(&self) -> i64 {
        self.next
    }

    /// Requests held, sealed or not.
    pub fn held(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn with_nothing_held_the_mark_is_the_next_offset() {
        let mut l = Ledger::starting_at(7);
        assert_eq!(l.low_water(), 7);
        l.read(7);
        l.read(8);
        assert_eq!(l.low_water(), 9);
    }

    #[test]
    fn the_mark_stays_at_the_oldest_unfinished_request() {
        let mut l = Ledger::starting_at(0);
        l.hold(0, id(1));
        l.read(1); // a result event
        l.hold(2, id(2));
        l.hold(3, id(3));
        assert_eq!(l.low_water(), 0);
        // The later requests finish first: the mark does not move past the first.
        l.seal(2);
        l.seal(3);
        assert_eq!(l.low_water(), 0);
        assert_eq!(l.settle_sealed(), vec![(2, id(2)), (3, id(3))]);
        assert_eq!(l.low_water(), 0);
        // Then the first one: everything read is done.
        l.seal(0);
        assert_eq!(l.low_water(), 4);
        assert_eq!(l.settle_sealed(), vec![(0, id(1))]);
        assert_eq!(l.low_water(), 4);
        assert_eq!(l.held(), 0);
    }

    #[test]
    fn an_aborted_transaction_reopens_its_requests() {
        let mut l = Ledger::starting_at(10);
        l.hold(10, id(1));
        l.hold(11, id(2));
        l.seal(10);
        assert_eq!(l.low_water(), 11);
        l.unseal_all();
        assert_eq!(l.low_water(), 10);
        assert!(l.settle_sealed().is_empty());
        assert_eq!(l.held(), 2);
    }

    #[test]
    fn a_terminal_produced_after_the_transaction_was_built_keeps_its_request_open() {
        let mut l = Ledger::starting_at(0);
        l.hold(0, id(1));
        l.hold(1, id(2));
        // Transaction 1 carries the terminal of request 2 only.
        l.seal(1);
        assert_eq!(l.low_water(), 0);
        // Request 1 finishes while transaction 1 commits: it is not in it.
        assert_eq!(l.settle_sealed(), vec![(1, id(2))]);
        assert_eq!(l.low_water(), 0);
        l.seal(0);
        assert_eq!(l.low_water(), 2);
    }

    #[test]
    fn forgetting_a_request_moves_the_mark() {
        let mut l = Ledger::starting_at(0);
        l.hold(0, id(1));
        l.hold(1, id(2));
        l.forget(0);
        assert_eq!(l.low_water(), 1);
    }

    #[test]
    fn the_mark_never_moves_back_when_reading_on() {
        let mut l = Ledger::starting_at(5);
        let mut last = l.low_water();
        for (i, offset) in (5..50).enumerate() {
            if i % 3 == 0 {
                l.hold(offset, id(offset as u128));
            } else {
                l.read(offset);
            }
            if i % 4 == 0 {
                l.seal(offset - 1);
                l.settle_sealed();
            }
            assert!(l.low_water() >= last);
            last = l.low_water();
        }
    }
}
