//! Reading a projection's topics, the part both projectors share: batches of the messages a
//! consumer holds, decoded through the registry (what is no valid event of its topic carries
//! the reason, for the dead letters), the advisory offset commit, and the partitions of the
//! topics from the cluster's metadata.

use std::collections::HashMap;
use std::time::Duration;

use futures::FutureExt as _;
use gallery_schemas::read_model::TopicPartition;
use gallery_schemas::{Event, EventCodec, Topics};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::dead_letter::DeadLetter;
use crate::error::ProjectionError;
use crate::group::GroupContext;

/// A message and its event, or the reason it is not a valid event of its topic.
pub(crate) type Decoded = (OwnedMessage, Result<Event, String>);

/// Waits for one message (at most `wait`, else returns none), then takes the messages the
/// consumer already holds, up to `max` in all, without waiting for more. Each is recorded as
/// handed over (for the lag) before the consumer is polled again.
///
/// A batch never waits for messages that have not arrived: under load they pile up in the
/// consumer while the previous batch is applied, so batches grow with the load by themselves,
/// and a lone message is applied at once instead of after a linger.
pub(crate) async fn next_batch(
    consumer: &StreamConsumer<GroupContext>,
    wait: Option<Duration>,
    max: usize,
) -> Result<Vec<OwnedMessage>, ProjectionError> {
    let membership = consumer.context().membership();
    let handed = |message: OwnedMessage| {
        membership.received(&message);
        message
    };
    let first = match wait {
        None => consumer.recv().await,
        Some(wait) => match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(received) => received,
            Err(_elapsed) => return Ok(Vec::new()),
        },
    }
    .map_err(ProjectionError::kafka("receive"))?
    .detach();
    let mut batch = vec![handed(first)];
    take_ready(&mut batch, max, || {
        consumer
            .recv()
            .now_or_never()
            .map(|m| m.map(|m| handed(m.detach())))
    })
    .map_err(ProjectionError::kafka("receive"))?;
    Ok(batch)
}

/// Adds to `batch` what `ready` hands over without waiting (`None`: nothing is there now),
/// until `batch` holds `max`.
fn take_ready<M, E>(
    batch: &mut Vec<M>,
    max: usize,
    mut ready: impl FnMut() -> Option<Result<M, E>>,
) -> Result<(), E> {
    while batch.len() < max {
        match ready() {
            Some(message) => batch.push(message?),
            None => break,
        }
    }
    Ok(())
}

/// Decodes every message. A registry outage is an error (the session restarts and retries);
/// a message that is no valid event of its topic carries the reason, for the dead letters.
pub(crate) async fn decode(
    codec: &EventCodec,
    topics: &Topics,
    messages: Vec<OwnedMessage>,
) -> Result<Vec<Decoded>, ProjectionError> {
    let mut decoded = Vec::with_capacity(messages.len());
    for message in messages {
        let event = match codec.decode(message.payload()).await {
            Ok(event) if topics.of(event.stream()) != message.topic() => Err(format!(
                "a {} event does not belong on topic {}",
                event.record_name(),
                message.topic()
            )),
            Ok(event) => Ok(event),
            Err(e) if e.is_transient() => return Err(ProjectionError::Registry(e)),
            Err(e) => Err(e.to_string()),
        };
        decoded.push((message, event));
    }
    Ok(decoded)
}

/// The dead letter of a message that is not a valid event.
pub(crate) fn dead_letter(message: &OwnedMessage, reason: &str) -> DeadLetter {
    DeadLetter {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        reason: reason.to_owned(),
    }
}

/// Commits the offsets to Kafka's group as well, so lag shows in Kafka's tools. Advisory only:
/// the offsets in Postgres are the ones the projector seeks to.
pub(crate) fn advise<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    next_offsets: &HashMap<TopicPartition, i64>,
) {
    if next_offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, p), o) in next_offsets {
        if tpl
            .add_partition_offset(topic, *p, Offset::Offset(*o))
            .is_err()
        {
            return;
        }
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::debug!(error = %e, "advisory offset commit failed");
    }
}

/// The partitions of every topic in `topics`, from the cluster's metadata.
pub(crate) async fn partitions_of(
    brokers: &str,
    topics: &[String],
) -> Result<Vec<TopicPartition>, ProjectionError> {
    let brokers = brokers.to_owned();
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .map_err(ProjectionError::kafka("create metadata client"))?;
        let mut out = Vec::new();
        for topic in topics {
            let metadata = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map_err(ProjectionError::kafka("fetch metadata"))?;
            let partitions: Vec<TopicPartition> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| (topic.clone(), p.id())))
                .collect();
            if partitions.is_empty() {
                return Err(ProjectionError::MissingTopic { topic });
            }
            out.extend(partitions);
        }
        Ok(out)
    })
    .await
    .map_err(ProjectionError::Task)?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a consumer holds: `Some` at hand, `None` nothing right now.
    fn source(held: Vec<Option<u32>>) -> impl FnMut() -> Option<Result<u32, ()>> {
        let mut held = held.into_iter();
        move || held.next().flatten().map(Ok)
    }

    #[test]
    fn a_batch_takes_what_is_at_hand_and_never_waits_for_more() {
        // Two messages at hand, then none for a moment, then a third.
        let mut batch = vec![0];
        take_ready(
            &mut batch,
            1000,
            source(vec![Some(1), Some(2), None, Some(3)]),
        )
        .unwrap();
        assert_eq!(batch, [0, 1, 2], "the third is for the next batch");
        // A lone message is a batch of one at once.
        let mut lone = vec![0];
        take_ready(&mut lone, 1000, source(vec![None, Some(1)])).unwrap();
        assert_eq!(lone, [0]);
    }

    #[test]
    fn a_batch_stops_at_its_largest_and_at_an_error() {
        let mut batch = vec![0];
        take_ready(&mut batch, 3, source((1..10).map(Some).collect())).unwrap();
        assert_eq!(batch, [0, 1, 2]);
        let mut failing = vec![0];
        let mut calls = 0;
        let result = take_ready(&mut failing, 10, || {
            calls += 1;
            Some(if calls == 2 {
                Err("broker gone")
            } else {
                Ok(calls)
            })
        });
        assert_eq!(result, Err("broker gone"));
        assert_eq!(failing, [0, 1]);
    }
}
