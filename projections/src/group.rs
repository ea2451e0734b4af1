//! Consumer-group membership of the projectors.
//!
//! Projector instances of one projection share its partitions through a Kafka consumer group.
//! Kafka's committed group offsets are advisory: the read model's own stored offsets decide
//! where a partition resumes. So on every assignment the consumer is placed at the offsets the
//! instance knows are stored (read at the start of the session, raised after each batch it
//! commits). Another instance may have stored more since; resuming lower is safe, because a
//! batch skips what its store already holds (the Postgres offsets are read under a row lock in
//! the batch's transaction; Scylla rows carry the offset they are folded to), and never higher
//! than what is stored, so nothing is skipped.
//!
//! Rebalance callbacks run inside the consumer's poll, that is while a batch is being
//! gathered, never while one is applied. A batch therefore only keeps the messages of
//! partitions still owned when it is complete ([`Membership::keep_owned`]), and with the eager
//! protocol no other instance is given a partition before this one has let go of it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use gallery_infra::kafka::{self, Progress};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::error::ProjectionError;
use gallery_schemas::read_model::TopicPartition;

/// How a projector takes part in its consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    /// How long the group waits for a silent member before giving its partitions to others.
    pub session_timeout: Duration,
    /// A stable name of this instance (static membership): a restarted instance with the same
    /// name gets its partitions back at once, without a rebalance. Two live instances must never
    /// share one.
    pub instance_id: Option<String>,
}

impl Default for GroupSettings {
    fn default() -> Self {
        crate::settings::ProjectionsSettings::default().group()
    }
}

/// Which partitions this instance owns, and where each resumes when it is assigned.
#[derive(Debug, Default)]
pub(crate) struct Membership {
    state: Mutex<State>,
    /// Changes of assignment so far (assigned or revoked partitions).
    changes: std::sync::atomic::AtomicU64,
    /// The `projection` and `store` labels of the lag gauge.
    labels: (String, &'static str),
}

#[derive(Debug, Default)]
struct State {
    /// The next offset to read per partition: stored as far as this instance knows.
    resume_at: HashMap<TopicPartition, i64>,
    /// Per partition, the offset after the last message handed to the projector since it was
    /// assigned.
    received: HashMap<TopicPartition, i64>,
    owned: HashSet<TopicPartition>,
}

impl Membership {
    /// A membership that resumes at `stored` and owns nothing yet; it reports the lag of
    /// `projection` in `store` (see [`crate::metrics::LAG`]) from the consumer's statistics.
    pub(crate) fn new(
        stored: &HashMap<TopicPartition, i64>,
        projection: String,
        store: &'static str,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                resume_at: stored.clone(),
                received: HashMap::new(),
                owned: HashSet::new(),
            }),
            labels: (projection, store),
            changes: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// How many times the assignment has changed: a store that keeps state of its
    /// partitions between batches compares it before and after each batch.
    pub(crate) fn changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Acquire)
    }

    fn changed(&self) {
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Per topic, the messages of the owned partitions beyond what the store holds. Offsets
    /// below the consumer's position that were never handed over are transaction markers (or
    /// aborted messages), not messages to apply: once everything handed over is stored, the
    /// store holds everything up to the position.
    fn lag(&self, progress: &HashMap<TopicPartition, Progress>) -> HashMap<String, i64> {
        let state = self.state();
        let mut lag: HashMap<String, i64> = HashMap::new();
        for tp in &state.owned {
            let Some(p) = progress.get(tp) else {
                continue;
            };
            let stored = state.resume_at.get(tp).copied().unwrap_or(0);
            let all_stored = state.received.get(tp).is_none_or(|r| *r <= stored);
            // The consumer's position is past the transaction markers (and aborted messages)
            // it has read, which are never handed over, so it counts once every message
            // handed over is stored.
            let held = match p.position {
                Some(position) if all_stored => stored.max(position),
                _ => stored,
            };
            *lag.entry(tp.0.clone()).or_insert(0) +=
                i64::try_from(p.at(held).lag()).unwrap_or(i64::MAX);
        }
        lag
    }

    /// Records that `message` was handed to the projector.
    pub(crate) fn received(&self, message: &OwnedMessage) {
        let mut state = self.state();
        let next = state
            .received
            .entry((message.topic().to_owned(), message.partition()))
            .or_insert(0);
        *next = (*next).max(message.offset() + 1);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every operation, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that the store holds everything below `next_offsets`.
    pub(crate) fn stored(&self, next_offsets: &HashMap<TopicPartition, i64>) {
        let mut state = self.state();
        for (tp, next) in next_offsets {
            let at = state.resume_at.entry(tp.clone()).or_insert(0);
            *at = (*at).max(*next);
        }
    }

    /// The owned partitions, sorted.
    #[cfg(test)]
    fn owned(&self) -> Vec<TopicPartition> {
        let mut owned: Vec<TopicPartition> = self.state().owned.iter().cloned().collect();
        owned.sort();
        owned
    }

    /// Drops the messages of partitions no longer owned, and any message at or below one
    /// already kept of its partition (a partition revoked and assigned again within one batch
    /// is read again from its stored offset). Returns how many were dropped.
    pub(crate) fn keep_owned(&self, messages: &mut Vec<OwnedMessage>) -> usize {
        let state = self.state();
        let before = messages.len();
        let mut last: HashMap<(String, i32), i64> = HashMap::new();
        messages.retain(|m| {
            let tp = (m.topic().to_owned(), m.partition());
            if !state.owned.contains(&tp) {
                return false;
            }
            match last.get(&tp) {
                Some(l) if m.offset() <= *l => false,
                _ => {
                    last.insert(tp, m.offset());
                    true
                }
            }
        });
        before - messages.len()
    }

    /// Sets each partition of an assignment to its resume offset (the beginning if unknown)
    /// and records it as owned.
    fn assigned(&self, tpl: &mut TopicPartitionList) {
        let mut state = self.state();
        for mut elem in tpl.elements() {
            let tp = (elem.topic().to_owned(), elem.partition());
            state.received.remove(&tp);
            let offset = state
                .resume_at
                .get(&tp)
                .map_or(Offset::Beginning, |o| Offset::Offset(*o));
            if let Err(e) = elem.set_offset(offset) {
                tracing::warn!(topic = %tp.0, partition = tp.1, error = %e, "could not set the resume offset");
            }
            state.owned.insert(tp);
        }
        self.changed();
    }

    fn revoked(&self, tpl: &TopicPartitionList) {
        let mut state = self.state();
        for elem in tpl.elements() {
            state
                .owned
                .remove(&(elem.topic().to_owned(), elem.partition()));
        }
        self.changed();
    }

    fn revoke_all(&self) {
        self.state().owned.clear();
        self.changed();
    }
}

/// The consumer context that places assigned partitions at their stored offsets.
#[derive(Debug, Clone)]
pub(crate) struct GroupContext(Arc<Membership>);

impl GroupContext {
    pub(crate) fn membership(&self) -> &Membership {
        &self.0
    }
}

impl ClientContext for GroupContext {
    // Served inside the consumer's poll, like the rebalance callbacks: never between a message
    // handed over and [`Membership::received`].
    fn stats(&self, statistics: Statistics) {
        let (projection, store) = &self.0.labels;
        let progress: HashMap<TopicPartition, Progress> = kafka::progress(&statistics)
            .map(|p| ((p.topic, p.partition), p.progress))
            .collect();
        for (topic, lag) in self.0.lag(&progress) {
            // A message count as a float gauge: exact up to 2^53.
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!(
                crate::metrics::LAG,
                "projection" => projection.clone(),
                "store" => *store,
                "topic" => topic,
            )
            .set(lag as f64);
        }
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        if let Err((step, e)) = kafka::rebalance(self, consumer, err, tpl) {
            tracing::error!(error = %e, ?step, "applying a rebalance failed");
        }
    }
}

impl kafka::Member for GroupContext {
    fn assigned(&self, _: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        self.0.assigned(tpl);
    }

    fn revoked(&self, _: &BaseConsumer<Self>, revoked: kafka::Revoked<'_>) {
        match revoked {
            kafka::Revoked::These(tpl) => self.0.revoked(tpl),
            kafka::Revoked::All(_) => self.0.revoke_all(),
        }
    }
}

/// A consumer of `group` over `topics`, placing assigned partitions by `membership`. Offsets
/// are stored by the projector, never automatically.
pub(crate) fn group_consumer(
    brokers: &str,
    group: &str,
    settings: &GroupSettings,
    membership: &Arc<Membership>,
    topics: &[String],
) -> Result<StreamConsumer<GroupContext>, ProjectionError> {
    let consumer = consumer(brokers, group, Some(settings), membership)?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .map_err(ProjectionError::kafka("subscribe"))?;
    Ok(consumer)
}

/// A consumer assigned every partition of `partitions` at its stored offset, outside any
/// group's assignment (a rebuild reads every partition itself).
pub(crate) fn assigned_consumer(
    brokers: &str,
    group: &str,
    membership: &Arc<Membership>,
    partitions: &[TopicPartition],
) -> Result<StreamConsumer<GroupContext>, ProjectionError> {
    let consumer = consumer(brokers, group, None, membership)?;
    let mut assignment = TopicPartitionList::new();
    for (topic, partition) in partitions {
        assignment.add_partition(topic, *partition);
    }
    membership.assigned(&mut assignment);
    consumer
        .assign(&assignment)
        .map_err(ProjectionError::kafka("assign partitions"))?;
    Ok(consumer)
}

fn consumer(
    brokers: &str,
    group: &str,
    settings: Option<&GroupSettings>,
    membership: &Arc<Membership>,
) -> Result<StreamConsumer<GroupContext>, ProjectionError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        // For the lag gauge.
        .set("statistics.interval.ms", "5000");
    if let Some(settings) = settings {
        config.set(
            "session.timeout.ms",
            settings.session_timeout.as_millis().to_string(),
        );
        if let Some(id) = &settings.instance_id {
            config.set("group.instance.id", id);
        }
    }
    config
        .create_with_context(GroupContext(membership.clone()))
        .map_err(ProjectionError::kafka("create consumer"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    #[test]
    fn the_lag_counts_owned_partitions_beyond_the_stored_offsets() {
        let membership = Membership::new(
            &HashMap::from([(("t".to_owned(), 0), 40), (("u".to_owned(), 0), 7)]),
            "p".into(),
            "postgres",
        );
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in [("t", 0), ("t", 1), ("u", 0)] {
            tpl.add_partition(topic, partition);
        }
        membership.assigned(&mut tpl);
        let stable = progress(&[
            ("t", 0, 42, None),
            ("t", 1, 5, None),
            ("u", 0, 7, None),
            // Not owned: not this instance's lag.
            ("t", 2, 1000, None),
        ]);
        let lag = membership.lag(&stable);
        assert_eq!(lag.get("t"), Some(&(2 + 5)));
        assert_eq!(lag.get("u"), Some(&0));
        membership.stored(&HashMap::from([(("t".to_owned(), 1), 5)]));
        assert_eq!(membership.lag(&stable).get("t"), Some(&2));
    }

    fn progress(of: &[(&str, i32, i64, Option<i64>)]) -> HashMap<TopicPartition, Progress> {
        of.iter()
            .map(|(t, p, stable, position)| {
                let progress = Progress {
                    start: 0,
                    end: *stable,
                    position: *position,
                };
                (((*t).to_owned(), *p), progress)
            })
            .collect()
    }

    #[test]
    fn transaction_markers_past_the_last_stored_message_are_no_lag() {
        // Given a transactional partition: messages at 0 and 1, each followed by a commit
        // marker (offsets 2 and 3); the last stable offset is 4.
        let membership = Membership::new(&HashMap::new(), "p".into(), "postgres");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("g", 0);
        membership.assigned(&mut tpl);
        // Both messages handed over and stored; the consumer has read past the markers.
        membership.received(&message("g", 0, 0));
        membership.received(&message("g", 0, 1));
        membership.stored(&HashMap::from([(("g".to_owned(), 0), 2)]));
        let caught_up = progress(&[("g", 0, 4, Some(4))]);
        assert_eq!(membership.lag(&caught_up).get("g"), Some(&0));
        // Before the consumer has read past them, they still count: it cannot know yet.
        assert_eq!(
            membership.lag(&progress(&[("g", 0, 4, Some(2))])).get("g"),
            Some(&2)
        );
        // A message handed over and not stored yet is lag, whatever the position.
        membership.received(&message("g", 0, 4));
        let behind = progress(&[("g", 0, 6, Some(6))]);
        assert_eq!(membership.lag(&behind).get("g"), Some(&4));
        membership.stored(&HashMap::from([(("g".to_owned(), 0), 5)]));
        assert_eq!(membership.lag(&behind).get("g"), Some(&0));
    }

    fn message(topic: &str, partition: i32, offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            None,
            None,
            topic.to_owned(),
            Timestamp::NotAvailable,
            partition,
            offset,
            None,
        )
    }

    fn offsets(messages: &[OwnedMessage]) -> Vec<(i32, i64)> {
        messages
            .iter()
            .map(|m| (m.partition(), m.offset()))
            .collect()
    }

    #[test]
    fn an_assignment_resumes_at_the_stored_offsets_or_the_beginning() {
        let membership = Membership::new(
            &HashMap::from([(("t".to_owned(), 0), 42)]),
            "p".into(),
            "postgres",
        );
        membership.stored(&HashMap::from([
            (("t".to_owned(), 0), 40),
            (("t".to_owned(), 1), 7),
        ]));
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("t", 0);
        tpl.add_partition("t", 1);
        tpl.add_partition("t", 2);
        membership.assigned(&mut tpl);
        let at: Vec<Offset> = tpl.elements().iter().map(|e| e.offset()).collect();
        // Stored offsets only rise: 40 after 42 keeps 42.
        assert_eq!(
            at,
            vec![Offset::Offset(42), Offset::Offset(7), Offset::Beginning]
        );
        assert_eq!(
            membership.owned(),
            vec![
                ("t".to_owned(), 0),
                ("t".to_owned(), 1),
                ("t".to_owned(), 2)
            ]
        );
    }

    #[test]
    fn a_batch_keeps_only_owned_partitions_in_offset_order_without_repeats() {
        let membership = Membership::new(&HashMap::new(), "p".into(), "postgres");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("t", 0);
        tpl.add_partition("t", 1);
        membership.assigned(&mut tpl);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("t", 1);
        membership.revoked(&tpl);
        let mut batch = vec![
            message("t", 0, 5),
            message("t", 1, 9),
            message("t", 0, 6),
            message("t", 0, 5), // read again after a revoke and a new assignment
            message("t", 0, 6),
            message("t", 0, 7),
            message("u", 0, 1),
        ];
        assert_eq!(membership.keep_owned(&mut batch), 4);
        assert_eq!(offsets(&batch), vec![(0, 5), (0, 6), (0, 7)]);
        membership.revoke_all();
        assert_eq!(membership.keep_owned(&mut batch), 3);
        assert!(batch.is_empty());
    }
}
