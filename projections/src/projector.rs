//! The projector loop: read a batch, decode, dead-letter what is invalid, apply the rest and
//! the offsets in one Postgres transaction. Any infrastructure error restarts the session,
//! which seeks back to the offsets stored in Postgres, so nothing is skipped or applied twice.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use gallery_schemas::read_model::{self, TopicPartition};
use gallery_schemas::{EventCodec, Position, Topics};
use std::sync::Arc;

use rdkafka::Offset;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use tokio_postgres::Client;

use gallery_infra::restart::{self, Backoff, Restart};

use crate::consume::{advise, dead_letter, decode, next_batch, partitions_of};
use crate::dead_letter::DeadLetterSink;
use crate::deployment::STREAMS;
use crate::error::ProjectionError;
use crate::generations::{self, Generation};
use crate::group::{GroupContext, GroupSettings, Membership, assigned_consumer, group_consumer};
use crate::metrics;
use crate::postgres::{Batch, PostgresStore, connect, database_name, migrate};

/// The pauses before a failed projector session starts again.
pub(crate) fn session_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(200), Duration::from_secs(10))
}

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
            projection: read_model::PROJECTION.to_owned(),
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
        restart::until_stopped(
            session_backoff(),
            shutdown,
            || self.session(),
            |e, pause| match e {
                ProjectionError::Moved { from, to } => {
                    tracing::info!(%from, %to, "read model switched; projector follows");
                    Restart::AtOnce
                }
                e => {
                    tracing::error!(error = %e, source = ?std::error::Error::source(e), ?pause, "projector session failed; restarting");
                    metrics::restarted(&self.config.projection, metrics::POSTGRES);
                    Restart::AfterPause
                }
            },
        )
        .await;
        tracing::info!(projection = %self.config.projection, "projector stopped");
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
