//! Rebuilding the read model without downtime: replay the log into a new generation while the
//! live one keeps serving, then switch in one short transaction.
//!
//! 1. Create generation `read_v<N+1>` and apply every migration in it. The rebuild holds it
//!    (a session advisory lock) for as long as its connection lives, so `gc` can tell an
//!    abandoned `building` generation from one being built.
//! 2. Replay every topic from offset 0 into it, up to the end offsets captured at start.
//! 3. Follow the live generation until it is at most `max_lag` messages behind it. Before any
//!    lock is taken, the live generation's offsets must name only partitions the rebuild
//!    reads: a target it cannot read would never be reached.
//! 4. Lock the pointer (`FOR UPDATE`): the live projector's next batch waits. Apply exactly up
//!    to the live generation's offsets, now frozen, point the views and the pointer at the new
//!    generation, commit. The live projector's waiting batch then sees the switch, rolls back
//!    and resumes in the new generation from its offsets. Readers see the old tables until the
//!    commit and the new ones after it, both at the same offsets.
//!
//! Steps 3 and 4 end within the follow timeout, and one attempt at step 4 holds the lock for
//! at most [`SWITCH_WINDOW`]: Postgres itself gives up waiting for a lock, a statement or an
//! idle transaction beyond it (`lock_timeout`, `statement_timeout`,
//! `idle_in_transaction_session_timeout`), and the catch-up under the lock stops between two
//! batches once the window has passed. An attempt that does not fit rolls back, lets the live
//! projector go on, follows again and tries again, until the timeout.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gallery_schemas::{EventCodec, Topics};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_postgres::Transaction;
use tokio_postgres::error::SqlState;

use crate::error::ProjectionError;
use crate::generations::{self, Generation};
use crate::postgres::connect;
use crate::postgres::{MIGRATIONS, create_generation, offsets_in};
use crate::projector::{Projector, ProjectorConfig, Session, Target};
use gallery_schemas::read_model::TopicPartition;

/// How a rebuild runs.
#[derive(Debug, Clone)]
pub struct RebuildOptions {
    /// The switch waits until the new generation is at most this many messages behind.
    pub max_lag: i64,
    /// How long following the live generation and switching to the new one may take before
    /// the rebuild gives up (the replay up to the end offsets captured at start is not
    /// counted).
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
    /// How long the switch held the pointer locked (the live projector waited at most this).
    pub locked_for: Duration,
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
    let from = crate::postgres::migrate(&mut admin, &config.topics).await?;
    let to = create_generation(&mut admin).await?;
    tracing::info!(%from, %to, "rebuilding the read model");
    match replay_and_switch(&mut admin, config, codec, options, &from, &to).await {
        Ok(Switched {
            offsets,
            locked_for,
        }) => {
            let dropped_old = options.drop_old && drop_generation(&mut admin, &from).await?;
            Ok(RebuildReport {
                from,
                to,
                offsets,
                locked_for,
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
) -> Result<Switched, ProjectionError> {
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
    session.check_reads(&session.dead_lettered_below)?;

    let ends = end_offsets(&brokers, &session.partitions).await?;
    projector.catch_up(&mut session, &ends, None).await?;
    tracing::info!(generation = %to, "replayed up to the end offsets captured at start");

    let started = Instant::now();
    let deadline = started + options.follow_timeout;
    let mut last_attempt = "never as close as the maximum lag";
    loop {
        let live = offsets_in(&*admin, from, &projection).await?;
        // Before any lock: a target the session cannot read would never be reached.
        session.check_reads(&live)?;
        let lag = lag(&session.applied, &live);
        if lag <= options.max_lag {
            let attempt = Attempt {
                projection: &projection,
                from,
                to,
                max_lag: options.max_lag,
                window_end: deadline.min(Instant::now() + SWITCH_WINDOW),
            };
            match attempt.run(admin, &projector, &mut session).await? {
                Outcome::Switched(switched) => return Ok(switched),
                Outcome::Retry(why) => {
                    tracing::info!(
                        reason = why,
                        "the switch did not fit its window; following again"
                    );
                    last_attempt = why;
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(if lag <= options.max_lag {
                ProjectionError::SwitchTimedOut {
                    waited_secs: started.elapsed().as_secs(),
                    last_attempt,
                }
            } else {
                ProjectionError::Lagging {
                    lag,
                    bound: options.max_lag,
                    waited_secs: started.elapsed().as_secs(),
                }
            });
        }
        session.dead_lettered_below = live.clone();
        projector
            .catch_up(&mut session, &live, Some(deadline))
            .await?;
    }
}

/// The longest one attempt to switch holds the pointer locked.
pub const SWITCH_WINDOW: Duration = Duration::from_secs(2);

/// What a switch did.
#[derive(Debug)]
struct Switched {
    /// Messages applied to the new generation (the sum of its next offsets).
    offsets: i64,
    /// How long the pointer was locked.
    locked_for: Duration,
}

/// How one attempt to switch ended, unless it failed.
#[derive(Debug)]
enum Outcome {
    Switched(Switched),
    /// It did not fit its window and rolled back; why.
    Retry(&'static str),
}

/// One attempt at step 4, ending by `window_end`.
struct Attempt<'a> {
    projection: &'a str,
    from: &'a Generation,
    to: &'a Generation,
    max_lag: i64,
    window_end: Instant,
}

impl Attempt<'_> {
    async fn run(
        &self,
        admin: &mut tokio_postgres::Client,
        projector: &Projector,
        session: &mut Session,
    ) -> Result<Outcome, ProjectionError> {
        let window = self.window_end.saturating_duration_since(Instant::now());
        if window < Duration::from_millis(10) {
            return Ok(Outcome::Retry("no time was left"));
        }
        let tx = admin
            .transaction()
            .await
            .map_err(ProjectionError::pg("begin switch"))?;
        match self.locked(tx, window, projector, session).await {
            Err(e) if timed_out(&e) => Ok(Outcome::Retry(
                "Postgres ended a wait for a lock or a statement at the window's end",
            )),
            // Dropping the transaction rolled it back.
            other => other,
        }
    }

    async fn locked(
        &self,
        tx: Transaction<'_>,
        window: Duration,
        projector: &Projector,
        session: &mut Session,
    ) -> Result<Outcome, ProjectionError> {
        let ms = window.as_millis();
        // Postgres bounds every wait of this transaction, also when this process stalls: an
        // idle transaction beyond the window (twice, for a batch under way) ends its session,
        // and so its locks.
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = {ms}; SET LOCAL statement_timeout = {ms};
             SET LOCAL idle_in_transaction_session_timeout = {}",
            ms.saturating_mul(2)
        ))
        .await
        .map_err(ProjectionError::pg("bound the switch"))?;
        // A process starting meanwhile migrates (and may re-point the views) before or after
        // the switch, never across it.
        MIGRATIONS.lock(&tx).await?;
        let live = generations::live_locked(&tx, true).await?;
        let locked_at = Instant::now();
        if &live != self.from {
            return Err(ProjectionError::SwitchedMeanwhile {
                expected: self.from.clone(),
                found: live,
            });
        }
        // The live projector cannot commit now: its offsets are final for the old generation.
        let frozen = offsets_in(&tx, self.from, self.projection).await?;
        session.check_reads(&frozen)?;
        if lag(&session.applied, &frozen) > self.max_lag {
            return Ok(Outcome::Retry("the live read model had moved ahead"));
        }
        session.dead_lettered_below = frozen.clone();
        if !projector
            .catch_up(session, &frozen, Some(self.window_end))
            .await?
        {
            return Ok(Outcome::Retry("the catch-up under the lock took too long"));
        }
        generations::switch(&tx, self.from, self.to).await?;
        tx.commit()
            .await
            .map_err(ProjectionError::pg("commit switch"))?;
        let locked_for = locked_at.elapsed();
        let offsets = session.applied.values().sum();
        tracing::info!(from = %self.from, to = %self.to, offsets, ?locked_for, "read model switched");
        Ok(Outcome::Switched(Switched {
            offsets,
            locked_for,
        }))
    }
}

/// Whether Postgres gave up a wait bounded by the switch's timeouts.
fn timed_out(e: &ProjectionError) -> bool {
    let ProjectionError::Postgres { source, .. } = e else {
        return false;
    };
    source.code().is_some_and(|code| {
        *code == SqlState::LOCK_NOT_AVAILABLE || *code == SqlState::QUERY_CANCELED
    })
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

/// What `gc` found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GarbageReport {
    /// Generations dropped: retired by a switch, left by a failed rebuild, or abandoned.
    pub dropped: Vec<Generation>,
    /// Those of `dropped` that were still `building` with no rebuild holding them (a rebuild
    /// killed before it could mark its generation failed).
    pub abandoned: Vec<Generation>,
    /// Generations a running rebuild is building, kept.
    pub building: Vec<Generation>,
}

/// Drops every generation that is neither live nor being built (retired by a switch, left by a
/// failed rebuild, or abandoned by a rebuild that stopped), and reports them and the ones
/// being built. Refuses another deployment's read model, like every role.
pub async fn collect_garbage(
    postgres_url: &str,
    topics: &Topics,
) -> Result<GarbageReport, ProjectionError> {
    let mut admin = connect(postgres_url).await?;
    crate::postgres::migrate(&mut admin, topics).await?;
    let tx = admin
        .transaction()
        .await
        .map_err(ProjectionError::pg("begin gc"))?;
    // Under the migration lock, so that no rebuild creates a generation meanwhile.
    MIGRATIONS.lock(&tx).await?;
    let (building, abandoned) = generations::sort_building(&tx).await?;
    let dropped = generations::drop_unused(&tx, None).await?;
    tx.commit()
        .await
        .map_err(ProjectionError::pg("commit gc"))?;
    for generation in &abandoned {
        tracing::info!(%generation, "dropped a generation abandoned while it was being built");
    }
    Ok(GarbageReport {
        dropped,
        abandoned,
        building,
    })
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
