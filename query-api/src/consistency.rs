//! Read-your-writes: a request carrying the consistency tokens of earlier writes
//! (`<topic>:<partition>:<offset>`, as mutations return them) is answered only once the
//! read model has applied those positions, or fails with `CONSISTENCY_TIMEOUT`.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::changes::{ChangeFeed, TopicPartition};
use crate::error::QueryError;
use crate::read::ReadModel;

/// The HTTP header that carries consistency tokens (several: comma separated or repeated).
pub const HEADER: &str = "x-consistency-token";

/// How often the stored offsets are read while waiting (the fallback when no notification
/// comes, e.g. while the change feed reconnects).
const POLL: Duration = Duration::from_millis(200);

/// A position in the log: the write is visible once `next_offset` of its partition is past
/// `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Position {
    /// Parses `<topic>:<partition>:<offset>` (topics hold no `:`).
    pub fn parse(raw: &str) -> Result<Position, QueryError> {
        let bad = || QueryError::InvalidArgument {
            argument: "consistency token",
            reason: "must be <topic>:<partition>:<offset>",
        };
        let mut parts = raw.trim().rsplitn(3, ':');
        let (Some(offset), Some(partition), Some(topic)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let topic_ok = !topic.is_empty()
            && topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        match (topic_ok, partition.parse(), offset.parse()) {
            (true, Ok(partition), Ok(offset)) if partition >= 0 && offset >= 0 => Ok(Position {
                topic: topic.to_owned(),
                partition,
                offset,
            }),
            _ => Err(bad()),
        }
    }

    /// Every token of a comma-separated list (empty items are skipped).
    pub fn parse_list(raw: &str) -> Result<Vec<Position>, QueryError> {
        raw.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Position::parse)
            .collect()
    }

    fn reached(&self, offsets: &HashMap<TopicPartition, i64>) -> bool {
        offsets
            .get(&(self.topic.clone(), self.partition))
            .is_some_and(|next| *next > self.offset)
    }
}

/// How the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// The change feed has announced every position: the caches are up to date as well.
    Announced,
    /// The stored offsets show every position but the feed has not announced them yet: the
    /// request must read past the caches.
    Stored,
}

/// Waits until the read model has applied every position in `positions`, at most `timeout`.
pub async fn wait(
    feed: &ChangeFeed,
    read: &ReadModel,
    positions: &[Position],
    timeout: Duration,
) -> Result<Reached, QueryError> {
    if positions.is_empty() {
        return Ok(Reached::Announced);
    }
    let deadline = Instant::now() + timeout;
    let mut announced = feed.offsets();
    let mut next_poll = Instant::now();
    loop {
        if positions
            .iter()
            .all(|p| p.reached(&announced.borrow_and_update()))
        {
            return Ok(Reached::Announced);
        }
        if Instant::now() >= next_poll {
            let partitions: Vec<TopicPartition> = positions
                .iter()
                .map(|p| (p.topic.clone(), p.partition))
                .collect();
            let stored = read.projected(&partitions).await?;
            if positions.iter().all(|p| p.reached(&stored)) {
                // The notification is on its way when the feed listens; wait a moment for it
                // so the caches are fresh, else read past them.
                if !feed.connected() {
                    return Ok(Reached::Stored);
                }
                let grace = Instant::now() + POLL;
                while Instant::now() < grace.min(deadline) {
                    if positions
                        .iter()
                        .all(|p| p.reached(&announced.borrow_and_update()))
                    {
                        return Ok(Reached::Announced);
                    }
                    tokio::select! {
                        r = announced.changed() => if r.is_err() { break },
                        () = tokio::time::sleep_until(grace.min(deadline)) => {}
                    }
                }
                return Ok(Reached::Stored);
            }
            next_poll = Instant::now() + POLL;
        }
        if Instant::now() >= deadline {
            return Err(QueryError::ConsistencyTimeout {
                waited_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            });
        }
        tokio::select! {
            r = announced.changed() => if r.is_err() { next_poll = Instant::now() },
            () = tokio::time::sleep_until(next_poll.min(deadline)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_bad_ones_are_refused() {
        assert_eq!(
            Position::parse_list("gallery.interactions:4:17, x-y:0:0").ok(),
            Some(vec![
                Position {
                    topic: "gallery.interactions".into(),
                    partition: 4,
                    offset: 17
                },
                Position {
                    topic: "x-y".into(),
                    partition: 0,
                    offset: 0
                }
            ])
        );
        for bad in ["", "a:1", "a:b:1", "a:1:-1", ":1:1", "a b:1:1"] {
            assert!(Position::parse(bad).is_err(), "{bad}");
        }
    }
}
