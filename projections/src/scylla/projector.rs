//! The Scylla projector loop: the Postgres projector's consumer, batching, decoding and dead
//! letters and consumer group, over the interactions topic, with the batch applied to Scylla
//! and the offsets stored after it.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;

use gallery_schemas::read_model::{self, TopicPartition, notification, scylla_announced_as};
use gallery_schemas::{EventCodec, Position, Stream, Topics};
use rdkafka::message::Message;

use super::store::ScyllaStore;
use super::{ScyllaSettings, connect, migrate};
use gallery_infra::restart::{self, Restart};

use crate::consume::{advise, dead_letter, decode, next_batch};
use crate::dead_letter::DeadLetterSink;
use crate::error::ProjectionError;
use crate::fold::scylla::{artwork_of, rounds};
use crate::group::{GroupSettings, Membership, group_consumer};
use crate::metrics;

/// How the Scylla projector connects and batches.
#[derive(Debug, Clone)]
pub struct ScyllaProjectorConfig {
    pub brokers: String,
    pub topics: Topics,
    pub scylla: ScyllaSettings,
    /// Name under which offsets are stored. The tables of a keyspace belong to one
    /// projection: a rebuild uses a new keyspace.
    pub projection: String,
    /// Messages per batch. Each round of reads and writes costs about the same whatever the
    /// batch's size; the facts of one artwork are applied [`FACTS_PER_ARTWORK`] at a time.
    pub max_batch: usize,
    /// How the projector shares partitions with other instances.
    pub group: GroupSettings,
    /// The Postgres database whose `read_model` channel hears every applied batch, as
    /// `scylla-<projection>` (see [`scylla_announced_as`]): the query API's caches, subscriptions and
    /// read-your-writes follow it. `None`: nobody is told.
    pub announce_to: Option<String>,
}

/// An artwork's facts applied at once, at most: its partition is written in one batch
/// statement, kept at a bounded size however hot the artwork or large the batch (a batch
/// holding more facts of one artwork is applied in several rounds, in log order).
pub const FACTS_PER_ARTWORK: usize = 100;

impl ScyllaProjectorConfig {
    /// Messages per batch.
    pub const DEFAULT_MAX_BATCH: usize = 1_000;

    pub fn new(brokers: String, topics: Topics, scylla: ScyllaSettings) -> Self {
        Self {
            brokers,
            topics,
            scylla,
            projection: read_model::PROJECTION.to_owned(),
            max_batch: Self::DEFAULT_MAX_BATCH,
            group: GroupSettings::default(),
            announce_to: None,
        }
    }
}

/// Folds the interactions topic (likes, favorites, comments, views) into Scylla.
#[derive(Debug)]
pub struct ScyllaProjector {
    config: ScyllaProjectorConfig,
    codec: EventCodec,
    dead_letters: DeadLetterSink,
}

impl ScyllaProjector {
    pub fn new(config: ScyllaProjectorConfig, codec: EventCodec) -> Result<Self, ProjectionError> {
        config.scylla.validate()?;
        let dead_letters = DeadLetterSink::new(
            &config.brokers,
            config.topics.dead_letters(),
            format!("projection-scylla:{}", config.projection),
        )?;
        Ok(Self {
            config,
            codec,
            dead_letters,
        })
    }

    /// Runs until `shutdown` resolves. Errors restart the session after a pause, which seeks
    /// back to the stored offsets.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        restart::until_stopped(
            crate::projector::session_backoff(),
            shutdown,
            || self.session(),
            |e, pause| {
                tracing::error!(error = %e, source = ?std::error::Error::source(e), ?pause, "scylla projector session failed; restarting");
                metrics::restarted(&self.config.projection, metrics::SCYLLA);
                Restart::AfterPause
            },
        )
        .await;
        tracing::info!(projection = %self.config.projection, "scylla projector stopped");
    }

    async fn session(&self) -> Result<(), ProjectionError> {
        let session = connect(&self.config.scylla).await?;
        migrate(&session, &self.config.scylla, &self.config.topics).await?;
        let store = ScyllaStore::new(
            session,
            &self.config.scylla.keyspace,
            self.config.projection.clone(),
        )
        .await?;
        let announcer = match &self.config.announce_to {
            Some(url) => Some(crate::postgres::connect(url).await?),
            None => None,
        };
        let announced_as = scylla_announced_as(&self.config.projection);
        let names = vec![self.config.topics.of(Stream::Interactions)];
        let stored = store.offsets().await?;
        // Instances that write the same keyspace share a group.
        let group = format!(
            "{}projection-scylla-{}-{}",
            self.config.topics.prefix(),
            self.config.projection,
            self.config.scylla.keyspace
        );
        let membership = Membership::new(&stored, self.config.projection.clone(), metrics::SCYLLA);
        let consumer = group_consumer(
            &self.config.brokers,
            &group,
            &self.config.group,
            &membership,
            &names,
        )?;
        tracing::info!(topics = ?names, keyspace = %self.config.scylla.keyspace, %group, "scylla projector started");

        let mut assignment = membership.changes();
        loop {
            let mut messages = next_batch(&consumer, None, self.config.max_batch).await?;
            if membership.changes() != assignment {
                store.forget_counts();
                assignment = membership.changes();
            }
            membership.keep_owned(&mut messages);
            if messages.is_empty() {
                continue;
            }
            let started = std::time::Instant::now();
            let decoded = decode(&self.codec, &self.config.topics, messages).await?;
            let mut next_offsets: HashMap<TopicPartition, i64> = HashMap::new();
            let mut facts = Vec::with_capacity(decoded.len());
            for (message, event) in &decoded {
                match event {
                    Ok(event) => facts.push((
                        Position {
                            topic: message.topic().to_owned(),
                            partition: message.partition(),
                            offset: message.offset(),
                        },
                        event,
                    )),
                    Err(reason) => {
                        self.dead_letters
                            .send(&dead_letter(message, reason))
                            .await?;
                        metrics::dead_lettered(&self.config.projection, metrics::SCYLLA);
                    }
                }
                let next = next_offsets
                    .entry((message.topic().to_owned(), message.partition()))
                    .or_insert(0);
                *next = (*next).max(message.offset() + 1);
            }
            for round in rounds(&facts, FACTS_PER_ARTWORK) {
                store.apply(round).await?;
            }
            // Told once applied and before the offsets are stored: a failure here replays the
            // batch (rewriting the same values) and tells again.
            if let Some(client) = &announcer {
                let artworks: BTreeSet<&str> =
                    facts.iter().filter_map(|(_, e)| artwork_of(e)).collect();
                let payload =
                    notification(&announced_as, &next_offsets, artworks, &BTreeSet::new());
                client
                    .execute(
                        "SELECT pg_notify($1, $2)",
                        &[&read_model::CHANNEL, &payload],
                    )
                    .await
                    .map_err(ProjectionError::pg("notify"))?;
            }
            store.store_offsets(&next_offsets).await?;
            membership.stored(&next_offsets);
            if membership.changes() != assignment {
                // Assigned or revoked during the batch: the next batch starts from what is stored.
                store.forget_counts();
            }
            metrics::batch_committed(
                &self.config.projection,
                metrics::SCYLLA,
                decoded.len(),
                started,
            );
            tracing::debug!(offsets = ?next_offsets, "scylla batch applied");
            advise(&consumer, &next_offsets);
        }
    }
}
