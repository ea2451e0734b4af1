//! Rebuilding the read model without downtime: replay the log into a new generation while the
//! live one keeps serving, then switch in one transaction.
//!
//! 1. Create generation `read_v<N+1>` and apply every migration in it.
//! 2. Replay every topic from offset 0 into it, up to the end offsets captured at start.
//! 3. Follow the live generation until it is at most `max_lag` messages behind it.
//! 4. Lock the pointer (`FOR UPDATE`): the live projector's next batch waits. Apply exactly up
//!    to the live generation's offsets, now frozen, point the views and the pointer at the new
//!    generation, commit. The live projector's waiting batch then sees the switch, rolls back
//!    and resumes in the new generation from its offsets. Readers see the old tables until the
//!    commit and the new ones after it, both at the same offsets.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gallery_schemas::EventCodec;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::error::ProjectionError;
use crate::generations::{self, Generation};
use crate::postgres::{MIGRATION_LOCK, TopicPartition, create_generation, offsets_in};
use crate::runner::{Projector, ProjectorConfig, Target, connect};

/// How a rebuild runs.
#[derive(Debug, Clone)]
pub struct RebuildOptions {
    /// The switch waits until the new generation is at most this many messages behind.
    pub max_lag: i64,
    /// How long following the live generation may take before the rebuild gives up.
    pub follow_timeout: Duration,
    /// Drop the old generation after the switch instead of keeping it for a rollback.
    pub drop_old: bool,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        Self {
            max_lag: 1000,
            follow_timeout: Duration::from_secs(300),
            drop_old: false,
        }
    }
}

/// What a rebuild did.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub from: Generation,
    pub to: Generation,
    /// Messages applied to the new generation (the sum of its next offsets) at the switch.
    pub offsets: i64,
    pub dropped_old: bool,
}

/// Rebuilds the read model of `config` (whose `target` is ignored) into a new generation and
/// makes it live. On failure the new generation is marked failed and the old one stays live.
pub async fn rebuild(
    config: ProjectorConfig,
    codec: EventCodec,
    options: &RebuildOptions,
) -> Result<RebuildReport, ProjectionError> {
    let mut admin = connect(&config.postgres_url).await?;
    let from = crate::postgres::migrate(&mut admin).await?;
    let to = create_generation(&mut admin).await?;
    tracing::info!(%from, %to, "rebuilding the read model");
    match replay_and_switch(&mut admin, config, codec, options, &from, &to).await {
        Ok(offsets) => {
            let dropped_old = options.drop_old && drop_generation(&mut admin, &from).await?;
            Ok(RebuildReport {
                from,
                to,
                offsets,
                dropped_old,
            })
        }
        Err(e) => {
            if let Err(mark) = generations::mark_failed(&admin, &to).await {
                tracing::warn!(error = %mark, generation = %to, "could not mark the rebuild failed");
            }
            Err(e)
        }
    }
}

async fn replay_and_switch(
    admin: &mut tokio_postgres::Client,
    config: ProjectorConfig,
    codec: EventCodec,
    options: &RebuildOptions,
    from: &Generation,
    to: &Generation,
) -> Result<i64, ProjectionError> {
    let projection = config.projection.clone();
    let brokers = config.brokers.clone();
    let projector = Projector::new(
        ProjectorConfig {
            target: Target::Pinned(to.clone()),
            ..config
        },
        codec,
    )?;
    let mut session = projector.open().await?;
    // The live projector has dead-lettered the invalid messages it passed: only those beyond
    // it (new ones, or all of them when the live generation is new) are sent again.
    session.dead_lettered_below = offsets_in(&*admin, from, &projection).await?;

    let ends = end_offsets(&brokers, &session.partitions).await?;
    projector.catch_up(&mut session, &ends).await?;
    tracing::info!(generation = %to, "replayed up to the end offsets captured at start");

    let started = Instant::now();
    loop {
        let live = offsets_in(&*admin, from, &projection).await?;
        let lag = lag(&session.applied, &live);
        if lag <= options.max_lag {
            break;
        }
        if started.elapsed() > options.follow_timeout {
            return Err(ProjectionError::Lagging {
                lag,
                bound: options.max_lag,
                waited_secs: started.elapsed().as_secs(),
            });
        }
        session.dead_lettered_below = live.clone();
        projector.catch_up(&mut session, &live).await?;
    }

    let tx = admin
        .transaction()
        .await
        .map_err(ProjectionError::pg("begin switch"))?;
    // A process starting meanwhile migrates (and may re-point the views) before or after the
    // switch, never across it.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(ProjectionError::pg("lock migrations"))?;
    let live = generations::live_locked(&tx, true).await?;
    if &live != from {
        return Err(ProjectionError::SwitchedMeanwhile {
            expected: from.clone(),
            found: live,
        });
    }
    // The live projector cannot commit now: its offsets are final for the old generation.
    let frozen = offsets_in(&tx, from, &projection).await?;
    session.dead_lettered_below = frozen.clone();
    projector.catch_up(&mut session, &frozen).await?;
    generations::switch(&tx, from, to).await?;
    tx.commit()
        .await
        .map_err(ProjectionError::pg("commit switch"))?;
    let offsets = session.applied.values().sum();
    tracing::info!(%from, %to, offsets, "read model switched");
    Ok(offsets)
}

/// Messages `live` has applied that `ours` has not, over every partition.
fn lag(ours: &HashMap<TopicPartition, i64>, live: &HashMap<TopicPartition, i64>) -> i64 {
    live.iter()
        .map(|(tp, o)| (o - ours.get(tp).copied().unwrap_or(0)).max(0))
        .sum()
}

async fn drop_generation(
    admin: &mut tokio_postgres::Client,
    generation: &Generation,
) -> Result<bool, ProjectionError> {
    let tx = admin
        .transaction()
        .await
        .map_err(ProjectionError::pg("begin drop"))?;
    let dropped = generations::drop_unused(&tx, Some(generation)).await?;
    tx.commit()
        .await
        .map_err(ProjectionError::pg("commit drop"))?;
    Ok(!dropped.is_empty())
}

/// Drops every generation that is neither live nor being built (retired by a switch, or left
/// by a failed rebuild); returns them.
pub async fn collect_garbage(postgres_url: &str) -> Result<Vec<Generation>, ProjectionError> {
    let mut admin = connect(postgres_url).await?;
    crate::postgres::migrate(&mut admin).await?;
    let tx = admin
        .transaction()
        .await
        .map_err(ProjectionError::pg("begin gc"))?;
    let dropped = generations::drop_unused(&tx, None).await?;
    tx.commit()
        .await
        .map_err(ProjectionError::pg("commit gc"))?;
    Ok(dropped)
}

/// The high watermark of every partition.
async fn end_offsets(
    brokers: &str,
    partitions: &[TopicPartition],
) -> Result<HashMap<TopicPartition, i64>, ProjectionError> {
    let brokers = brokers.to_owned();
    let partitions = partitions.to_vec();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .map_err(ProjectionError::kafka("create metadata client"))?;
        let mut out = HashMap::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            let (_, high) = consumer
                .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                .map_err(ProjectionError::kafka("fetch end offsets"))?;
            out.insert((topic, partition), high);
        }
        Ok(out)
    })
    .await
    .map_err(ProjectionError::Task)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_only_what_the_live_generation_has_and_we_lack() {
        let tp = |p| ("t".to_owned(), p);
        let ours = HashMap::from([(tp(0), 10), (tp(1), 7)]);
        let live = HashMap::from([(tp(0), 12), (tp(1), 5), (tp(2), 3)]);
        assert_eq!(lag(&ours, &live), 2 + 3);
    }
}
