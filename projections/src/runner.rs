//! The projector loop: read a batch, decode, dead-letter what is invalid, apply the rest and
//! the offsets in one Postgres transaction. Any infrastructure error restarts the session,
//! which seeks back to the offsets stored in Postgres, so nothing is skipped or applied twice.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use gallery_schemas::{Event, EventCodec, Position, Topics};
use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_postgres::{Client, NoTls};

use crate::dead_letter::{DeadLetter, DeadLetterSink};
use crate::deployment::STREAMS;
use crate::error::ProjectionError;
use crate::generations::{self, Generation};
use crate::group::{GroupContext, GroupSettings, Membership, assigned_consumer, group_consumer};
use crate::metrics;
use crate::postgres::{Batch, PostgresStore, TopicPartition, migrate};

/// The name under which the Postgres read model stores its offsets.
pub const DEFAULT_PROJECTION: &str = "read-model";

/// How a projector connects and batches.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    pub brokers: String,
    pub postgres_url: String,
    pub topics: Topics,
    /// Name under which offsets are stored; a new name replays from the start.
    pub projection: String,
    /// Most messages in a batch; a batch holds what the consumer has at hand, never waiting
    /// for more.
    pub max_batch: usize,
    /// Which generation of the read model to write.
    pub target: Target,
    /// How the live projector shares partitions with other instances.
    pub group: GroupSettings,
}

/// Which generation of the read model a projector writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The live one, following every switch (the `gallery projections` role).
    Live,
    /// One fixed generation, live or not (a rebuild).
    Pinned(Generation),
}

impl ProjectorConfig {
    /// Messages per transaction: the statements of a batch cost about the same whatever its
    /// size, so a backlog is applied in few, large transactions.
    pub const DEFAULT_MAX_BATCH: usize = 5_000;

    pub fn new(brokers: String, postgres_url: String, topics: Topics) -> Self {
        Self {
            brokers,
            postgres_url,
            topics,
            projection: DEFAULT_PROJECTION.to_owned(),
            max_batch: Self::DEFAULT_MAX_BATCH,
            target: Target::Live,
            group: GroupSettings::default(),
        }
    }
}

/// Folds the events of every topic (users, catalog, interactions, generation) into the
/// Postgres read model.
#[derive(Debug)]
pub struct Projector {
    config: ProjectorConfig,
    codec: EventCodec,
    store: PostgresStore,
    dead_letters: DeadLetterSink,
}

impl Projector {
    pub fn new(config: ProjectorConfig, codec: EventCodec) -> Result<Self, ProjectionError> {
        let dead_letters = DeadLetterSink::new(
            &config.brokers,
            config.topics.dead_letters(),
            format!("projection:{}", config.projection),
        )?;
        Ok(Self {
            store: match &config.target {
                Target::Live => PostgresStore::new(config.projection.clone()),
                Target::Pinned(g) => PostgresStore::new(config.projection.clone())
                    .announced_as(format!("{}@{g}", config.projection)),
            },
            config,
            codec,
            dead_letters,
        })
    }

    /// Runs until `shutdown` resolves. Errors restart the session after a pause; they never
    /// end the loop. A switch of the live generation restarts it at once, in the new one.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut pause = Duration::from_millis(200);
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    tracing::info!(projection = %self.config.projection, "projector stopped");
                    return;
                }
                result = self.session() => match result {
                    Err(ProjectionError::Moved { from, to }) => {
                        tracing::info!(%from, %to, "read model switched; projector follows");
                        pause = Duration::from_millis(200);
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, source = ?std::error::Error::source(&e), ?pause, "projector session failed; restarting");
                        metrics::restarted(&self.config.projection, metrics::POSTGRES);
                    }
                    Ok(()) => {}
                }
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }

    async fn session(&self) -> Result<(), ProjectionError> {
        let mut session = self.open().await?;
        loop {
            let mut messages = next_batch(&session.consumer, None, self.config.max_batch).await?;
            let dropped = session.membership.keep_owned(&mut messages);
            if dropped > 0 {
                tracing::debug!(
                    dropped,
                    "messages of revoked partitions or read again dropped"
                );
            }
            if messages.is_empty() {
                continue;
            }
            let committed = self.process(&mut session, messages).await?;
            advise(&session.consumer, &committed);
        }
    }

    /// Connects to Postgres (in the target generation) and Kafka: the live projector joins its
    /// consumer group, a pinned one (a rebuild) reads every partition itself. Either way a
    /// partition starts at its stored offset.
    pub(crate) async fn open(&self) -> Result<Session, ProjectionError> {
        let mut client = connect(&self.config.postgres_url).await?;
        let live = migrate(&mut client, &self.config.topics).await?;
        let generation = match &self.config.target {
            Target::Live => live,
            Target::Pinned(g) => g.clone(),
        };
        client
            .batch_execute(&format!("SET search_path TO {generation}"))
            .await
            .map_err(ProjectionError::pg("enter generation"))?;
        let topics = self.config.topics.clone();
        let names: Vec<String> = STREAMS.iter().map(|s| topics.of(*s)).collect();
        let partitions = partitions_of(&self.config.brokers, &names).await?;
        let stored = self.store.offsets(&client).await?;

        // Instances that write the same database share a group; another database (a second
        // deployment on the same topics, a test) must read every partition itself.
        let database = database_name(&self.config.postgres_url);
        let group = match &self.config.target {
            Target::Live => format!(
                "{}projection-{}-{database}",
                topics.prefix(),
                self.config.projection
            ),
            Target::Pinned(g) => format!(
                "{}projection-{}-{database}-{g}",
                topics.prefix(),
                self.config.projection
            ),
        };
        let labelled = match &self.config.target {
            Target::Live => self.config.projection.clone(),
            Target::Pinned(g) => format!("{}@{g}", self.config.projection),
        };
        let membership = Membership::new(&stored, labelled.clone(), metrics::POSTGRES);
        let consumer = match &self.config.target {
            Target::Live => group_consumer(
                &self.config.brokers,
                &group,
                &self.config.group,
                &membership,
                &names,
            )?,
            Target::Pinned(_) => {
                assigned_consumer(&self.config.brokers, &group, &membership, &partitions)?
            }
        };
        tracing::info!(topics = ?names, partitions = partitions.len(), projection = %self.config.projection, %generation, %group, "projector started");
        Ok(Session {
            client,
            consumer,
            membership,
            dead_lettered_below: HashMap::new(),
            generation,
            partitions,
            applied: stored,
            label: labelled,
        })
    }

    /// Applies batches until every partition of `targets` is applied up to its offset (or
    /// the consumer is past it: transaction markers take offsets but carry no message), or
    /// until `deadline` passes: then it returns `false`, having stopped between two batches.
    /// A target in a partition the session does not read is an error: it would never be
    /// reached.
    pub(crate) async fn catch_up(
        &self,
        session: &mut Session,
        targets: &HashMap<TopicPartition, i64>,
        deadline: Option<Instant>,
    ) -> Result<bool, ProjectionError> {
        session.check_reads(targets)?;
        let idle = Duration::from_millis(300);
        loop {
            let behind: Vec<&TopicPartition> = targets
                .iter()
                .filter(|(tp, t)| session.applied.get(*tp).copied().unwrap_or(0) < **t)
                .map(|(tp, _)| tp)
                .collect();
            if behind.is_empty() {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            let mut messages =
                next_batch(&session.consumer, Some(idle), self.config.max_batch).await?;
            session.membership.keep_owned(&mut messages);
            if messages.is_empty() {
                let position = session
                    .consumer
                    .position()
                    .map_err(ProjectionError::kafka("read position"))?;
                let past = behind.iter().all(|tp| {
                    match position.find_partition(&tp.0, tp.1).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => targets.get(*tp).is_some_and(|t| o >= *t),
                        _ => false,
                    }
                });
                if past {
                    return Ok(true);
                }
                continue;
            }
            self.process(session, messages).await?;
        }
    }

    async fn process(
        &self,
        session: &mut Session,
        messages: Vec<OwnedMessage>,
    ) -> Result<HashMap<TopicPartition, i64>, ProjectionError> {
        let started = std::time::Instant::now();
        let decoded = decode(&self.codec, &self.config.topics, messages).await?;
        let partitions: Vec<TopicPartition> = decoded
            .iter()
            .map(|(m, _)| (m.topic().to_owned(), m.partition()))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();

        let tx = session
            .client
            .transaction()
            .await
            .map_err(ProjectionError::pg("begin batch"))?;
        if self.config.target == Target::Live {
            // Holds off a switch until this batch commits, and sees one that happened.
            let live = generations::live_locked(&tx, false).await?;
            if live != session.generation {
                return Err(ProjectionError::Moved {
                    from: session.generation.clone(),
                    to: live,
                });
            }
        }
        let applied_up_to = self.store.lock_offsets(&tx, &partitions).await?;
        let mut batch = Batch::default();
        for (message, event) in &decoded {
            let position = (message.topic().to_owned(), message.partition());
            let offset = message.offset();
            if offset < applied_up_to.get(&position).copied().unwrap_or(0) {
                continue; // applied before this session
            }
            match event {
                Ok(event) => batch.add(
                    event,
                    &Position {
                        topic: position.0.clone(),
                        partition: position.1,
                        offset,
                    },
                ),
                Err(reason) => {
                    let sent_before = session.dead_lettered_below.get(&position);
                    if sent_before.is_some_and(|below| offset < *below) {
                        tracing::debug!(topic = %position.0, partition = position.1, offset, "invalid message, dead-lettered before");
                    } else {
                        self.dead_letters
                            .send(&dead_letter(message, reason))
                            .await?;
                        metrics::dead_lettered(&session.label, metrics::POSTGRES);
                    }
                }
            }
            let next = batch.next_offsets.entry(position).or_insert(0);
            *next = (*next).max(offset + 1);
        }
        // What the store held already, applied by an earlier run or another instance.
        session.membership.stored(&applied_up_to);
        if batch.next_offsets.is_empty() {
            return Ok(HashMap::new());
        }
        self.store.apply(&tx, &batch).await?;
        tx.commit()
            .await
            .map_err(ProjectionError::pg("commit batch"))?;
        metrics::batch_committed(&session.label, metrics::POSTGRES, decoded.len(), started);
        tracing::debug!(offsets = ?batch.next_offsets, "batch applied");
        for (tp, o) in &batch.next_offsets {
            let applied = session.applied.entry(tp.clone()).or_insert(0);
            *applied = (*applied).max(*o);
        }
        session.membership.stored(&batch.next_offsets);
        Ok(batch.next_offsets)
    }
}

/// A projector's connections: Postgres with its path in one generation, and a consumer
/// placed at that generation's stored offsets.
pub(crate) struct Session {
    client: Client,
    consumer: StreamConsumer<GroupContext>,
    membership: Arc<Membership>,
    pub(crate) generation: Generation,
    pub(crate) partitions: Vec<TopicPartition>,
    /// The next offset to apply per partition, as stored.
    pub(crate) applied: HashMap<TopicPartition, i64>,
    /// Per partition, the offset below which invalid messages were dead-lettered already
    /// (by the live generation, when this session rebuilds another one).
    pub(crate) dead_lettered_below: HashMap<TopicPartition, i64>,
    /// The `projection` label of its metrics (a rebuild's names its generation).
    label: String,
}

impl Session {
    /// Fails when `offsets` name a partition this session does not read.
    pub(crate) fn check_reads(
        &self,
        offsets: &HashMap<TopicPartition, i64>,
    ) -> Result<(), ProjectionError> {
        let mut unread: Vec<String> = offsets
            .keys()
            .filter(|tp| !self.partitions.contains(tp))
            .map(|(topic, partition)| format!("{topic}/{partition}"))
            .collect();
        if unread.is_empty() {
            return Ok(());
        }
        unread.sort();
        Err(ProjectionError::UnreadPartitions { partitions: unread })
    }
}

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

/// The database a Postgres URL names (Postgres' default, the user's name, when it names none).
fn database_name(url: &str) -> String {
    let config = url.parse::<tokio_postgres::Config>().ok();
    let named = config
        .as_ref()
        .and_then(|c| c.get_dbname().or(c.get_user()));
    named.unwrap_or("postgres").to_owned()
}

pub(crate) async fn connect(url: &str) -> Result<Client, ProjectionError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(ProjectionError::pg("connect"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
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
