//! What every Kafka consumer of Gallery does the same way: the rebalance callback of a
//! consumer-group member ([`rebalance`]: the group's protocol decides whether partitions are
//! taken and let go one by one or all at once; each change is logged once) and the lag of a
//! partition ([`Progress::lag`]; [`progress`] reads it from a consumer's statistics). What a
//! member does with the partitions it is given or loses is its own ([`Member`]): the
//! projectors place them at their stored offsets, the painter catches up on what its
//! predecessor finished.

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;

/// Partitions a member lets go of.
#[derive(Debug, Clone, Copy)]
pub enum Revoked<'a> {
    /// These, and it keeps the rest (the cooperative protocol).
    These(&'a TopicPartitionList),
    /// Every partition it has, listed here (the eager protocol, or a rebalance that failed).
    All(&'a TopicPartitionList),
}

impl Revoked<'_> {
    /// The partitions let go of.
    pub fn partitions(&self) -> &TopicPartitionList {
        match self {
            Self::These(tpl) | Self::All(tpl) => tpl,
        }
    }
}

/// A consumer-group member's side of a rebalance; [`rebalance`] calls it from the consumer's
/// poll, before the consumer applies the change.
pub trait Member: ConsumerContext + Sized {
    /// Partitions given to this member: it sets in `tpl` where each is read from (a partition
    /// left unset starts at the group's committed offset).
    fn assigned(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList);
    /// Partitions taken from this member.
    fn revoked(&self, consumer: &BaseConsumer<Self>, revoked: Revoked<'_>);
}

/// The step of a rebalance that the consumer could not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Assign,
    Unassign,
}

/// The rebalance callback of every consumer-group member (call it from
/// [`ConsumerContext::rebalance`]): tells `member` what changes, then applies the change, one
/// partition at a time under the cooperative protocol, the whole assignment under the eager
/// one. A failed rebalance lets go of every partition. Returns the step the consumer failed
/// to apply, for the member to act on.
pub fn rebalance<M: Member>(
    member: &M,
    consumer: &BaseConsumer<M>,
    err: RDKafkaRespErr,
    tpl: &mut TopicPartitionList,
) -> Result<(), (Step, KafkaError)> {
    let cooperative = matches!(
        consumer.rebalance_protocol(),
        RebalanceProtocol::Cooperative
    );
    match err {
        RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
            member.assigned(consumer, tpl);
            tracing::info!(partitions = ?describe(tpl), "partitions assigned");
            if cooperative {
                consumer.incremental_assign(tpl)
            } else {
                consumer.assign(tpl)
            }
            .map_err(|e| (Step::Assign, e))
        }
        RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
            let lost = consumer.assignment_lost();
            let result = if cooperative {
                member.revoked(consumer, Revoked::These(tpl));
                consumer.incremental_unassign(tpl)
            } else {
                member.revoked(consumer, Revoked::All(tpl));
                consumer.unassign()
            };
            tracing::info!(partitions = ?describe(tpl), lost, "partitions revoked");
            result.map_err(|e| (Step::Unassign, e))
        }
        other => {
            tracing::error!(error = ?other, "rebalance failed; letting go of every partition");
            let all = consumer.assignment().unwrap_or_default();
            member.revoked(consumer, Revoked::All(&all));
            consumer.unassign().map_err(|e| (Step::Unassign, e))
        }
    }
}

/// `topic/partition` of each partition of `tpl`, for the logs.
fn describe(tpl: &TopicPartitionList) -> Vec<String> {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect()
}

/// Where a reader stands in one partition, as far as its lag goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The first offset still in the log (the low watermark).
    pub start: i64,
    /// The end the reader can reach: the last stable offset for a `read_committed` reader.
    pub end: i64,
    /// The next offset the reader reads, when known.
    pub position: Option<i64>,
}

impl Progress {
    /// What the reader has still to read: from its position (the start without one; a
    /// position outside the log counts from its nearer end) to the end.
    pub fn lag(&self) -> u64 {
        let end = self.end.max(self.start);
        let from = self.position.unwrap_or(self.start).clamp(self.start, end);
        u64::try_from(end - from).unwrap_or(0)
    }

    /// The same reader at `position`.
    #[must_use]
    pub fn at(self, position: i64) -> Self {
        Self {
            position: Some(position),
            ..self
        }
    }
}

/// A partition in a consumer's statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProgress {
    pub topic: String,
    pub partition: i32,
    /// Whether the consumer is to read it (assigned to it); statistics go on reporting a
    /// partition for a while after it is let go.
    pub assigned: bool,
    pub progress: Progress,
}

/// Every partition whose end the consumer's statistics know (the last stable offset for a
/// `read_committed` consumer; librdkafka leaves an unknown offset negative), with the
/// consumer's position: the offset after the last message it handed over or the markers it
/// read past, or else the group's committed offset.
pub fn progress(statistics: &Statistics) -> impl Iterator<Item = PartitionProgress> + '_ {
    let known = |o: i64| (o >= 0).then_some(o);
    statistics.topics.iter().flat_map(move |(topic, t)| {
        t.partitions
            .values()
            .filter(|p| p.partition >= 0 && p.ls_offset >= 0)
            .map(move |p| PartitionProgress {
                topic: topic.clone(),
                partition: p.partition,
                assigned: p.desired,
                progress: Progress {
                    start: p.lo_offset.max(0),
                    end: p.ls_offset,
                    position: known(p.app_offset).or(known(p.committed_offset)),
                },
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: i64, end: i64, position: Option<i64>) -> u64 {
        Progress {
            start,
            end,
            position,
        }
        .lag()
    }

    #[test]
    fn the_lag_is_what_lies_between_the_position_and_the_end() {
        assert_eq!(at(0, 10, Some(4)), 6);
        assert_eq!(at(0, 10, Some(10)), 0);
        // No position yet: everything still in the log.
        assert_eq!(at(3, 10, None), 7);
    }

    #[test]
    fn a_position_outside_the_log_counts_from_its_nearer_end() {
        // Below the start (records deleted): from the start.
        assert_eq!(at(5, 10, Some(2)), 5);
        // Past the end (the end not refreshed yet, or a commit ahead of it): nothing.
        assert_eq!(at(0, 10, Some(12)), 0);
        // An end below the start is no lag.
        assert_eq!(at(5, 3, None), 0);
    }

    #[test]
    fn at_moves_only_the_position() {
        let p = Progress {
            start: 1,
            end: 9,
            position: None,
        };
        assert_eq!(p.at(4).lag(), 5);
        assert_eq!((p.at(4).start, p.at(4).end), (1, 9));
    }
}
