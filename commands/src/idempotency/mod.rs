//! Client idempotency: a command sent again with the same `Idempotency-Key` returns the
//! original result and writes no second event; the same key with a different request is
//! refused. Ids of a keyed command are derived from the key, and the event an attempt decides
//! is stored with its claim (the exact bytes, and when) before it is sent. A retry after a
//! crash is answered as soon as the crashed attempt can no longer write (see [`Idempotency`]):
//! if the crash came after Kafka's acknowledgement, before the stored result, the retry finds
//! the event in the log and answers with its position, sending nothing; if it came before the
//! send, the retry sends those very bytes (same event id, same time).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use deadpool_postgres::Pool;
use gallery_schemas::UserId;
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::db::DbError;
use crate::ports::Encoded;
use gallery_infra::Columns;

mod key;
mod lease;

pub use key::{BadKey, IdempotencyKey, Ids, MAX_KEY_LEN, fingerprint};
use lease::{LEASE_NAMESPACE, Lease};

/// After this long, a claim stored by a version before attempts and leases counts as dead
/// (that version's rule), so that a rolling upgrade takes over none of its live attempts.
const LEGACY_STALE_SECS: u32 = 60;

/// The attempt a claim belongs to. Each attempt at a keyed command has its own id; a
/// takeover replaces it, and every later write of the replaced attempt is refused (fenced).
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    user: UserId,
    key: IdempotencyKey,
    id: Uuid,
}

/// What an earlier attempt decided and may have sent: a takeover looks for exactly this in
/// the log, and sends it if it is not there.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub message: Encoded,
    /// The id of what the command created, for the answer.
    pub result_id: Option<String>,
    /// When the attempt that decided it stored it (Postgres' clock): it was sent after. None
    /// while it is being stored, and for a claim of a version that did not record it.
    pub decided_at: Option<SystemTime>,
}

/// What a claim on a key found.
#[derive(Debug)]
pub(crate) enum Claim {
    /// First use, or an earlier attempt that died before it decided: run the command.
    Fresh(Attempt),
    /// An earlier attempt died after it decided (its event may be in Kafka): answer with its
    /// position if the log holds it, send it otherwise.
    Resend(Attempt, Pending),
    /// Done before: this is the stored result.
    Replay(serde_json::Value),
}

/// Why a key cannot be used now.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("this Idempotency-Key was used with a different request")]
    Mismatch,
    #[error("a request with this Idempotency-Key is still in progress")]
    InProgress,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<gallery_infra::ColumnError> for ClaimError {
    fn from(e: gallery_infra::ColumnError) -> Self {
        ClaimError::Db(e.into())
    }
}

/// The store of keys (table `commands.idempotency_keys`).
///
/// An attempt is alive while both hold: the process running it is alive, and its deadline has
/// not passed. A process is alive while it holds its lease, a session-level advisory lock on a
/// connection of its own: Postgres releases it as soon as that connection closes, so a
/// process that dies (even by SIGKILL) gives up its attempts at once. The deadline covers a
/// process that lives on but cannot finish (hung, or cut off from Postgres): it is the
/// publisher's [`max_in_flight`](crate::EventPublisher::max_in_flight) after the attempt
/// claimed the key or sent its event, after which nothing the attempt sent can still be
/// written. A dead attempt is taken over by the next retry.
///
/// An acknowledged command is in the log once. An attempt stores its event (the exact bytes,
/// and the time, `decided_at`) with its claim before sending, only while it still owns the
/// claim; a takeover of an attempt that had decided its event (a
/// [`Claim::Resend`]) first searches the log for those bytes: in the partition the message key
/// is placed on ([`crate::placement`]), from `decided_at` less a margin for the clocks, to a
/// mark the search appends there a moment after it began and reads once every in-sync replica
/// has it ([`crate::lookup`]): every message appended before the mark is below it, committed
/// or not. Found, the event is answered with its position and nothing is sent; not found, it
/// is sent. A message not found will not appear later, because the attempt that could send it
/// can no longer write: its process is gone (its connections with it, and a produce request
/// the broker had received is appended within the moment the search waits before marking),
/// or its deadline has passed (every send it began has resolved), or its send failed
/// in a way that may still write (a request timed out at a leader that died, to be appended
/// by the next one) and it was not taken over before `unsettled_until`, as long as a send may
/// be in flight after that failure. A search that fails for a while (Kafka unreachable or slow
/// during an election) refuses the retry, and the next one searches again. What remains:
///
/// - a request of a killed process that the broker appends more than that moment later (a
///   broker stalled between reading the request and appending it), or an attempt whose
///   process lives on after losing its lease connection: its send may land after the search;
/// - a search that cannot be done at all (a partition count changed since the send, more than
///   [`crate::lookup::MAX_MESSAGES`] to read, a claim of a version without `decided_at`).
///
/// In those cases the takeover sends the same bytes again, as before there was a search: every
/// copy of an event id is byte for byte the same, and every consumer applies it once. The hot
/// path pays nothing for this: only a takeover searches, and `decided_at` is written by the
/// statement that stores the event anyway.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pool: Pool,
    lease: Arc<Lease>,
}

/// Columns of a claim that a takeover needs.
const PENDING_COLUMNS: &str = "topic, message_key, payload, result_id, decided_at";

impl Idempotency {
    pub fn new(pool: Pool) -> Self {
        Self {
            lease: Arc::new(Lease::new(pool.clone())),
            pool,
        }
    }

    /// Claims `key` for a new attempt of the request `request_hash`, which may run for
    /// `bound` before it must have sent its event (or be taken over).
    pub(crate) async fn claim(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        request_hash: &str,
        bound: Duration,
    ) -> Result<Claim, ClaimError> {
        let owner = self.lease.id().await?;
        let client = self.pool.get().await.map_err(DbError::from)?;
        let attempt = Attempt {
            user: user.clone(),
            key: key.clone(),
            id: Uuid::new_v4(),
        };
        let bound = bound.as_secs_f64();
        // The row can vanish between the insert and the read (a failed attempt releases
        // it): then the insert is tried again.
        for _ in 0..3 {
            let inserted = client
                .execute(
                    include_str!("../../sql/claim_key.sql"),
                    &[
                        &user.as_str(),
                        &key.as_str(),
                        &request_hash,
                        &owner,
                        &attempt.id,
                        &bound,
                    ],
                )
                .await
                .map_err(DbError::pg("claim idempotency key"))?;
            if inserted == 1 {
                return Ok(Claim::Fresh(attempt));
            }
            let found = client
                .query_opt(
                    &format!(
                        "SELECT request_hash, response, attempt,
                                CASE WHEN attempt IS NULL
                                -- A claim of a version before attempts (during an upgrade):
                                -- that version's rule.
                                THEN created_at <= now() - make_interval(secs => {LEGACY_STALE_SECS})
                                ELSE (owner IS NULL OR expires_at <= now() OR NOT EXISTS (
                                    SELECT 1 FROM pg_locks l
                                    WHERE l.locktype = 'advisory' AND l.granted
                                      AND l.database = (SELECT oid FROM pg_database
                                                        WHERE datname = current_database())
                                      AND l.classid = {LEASE_NAMESPACE}::oid
                                      AND l.objid = k.owner::oid AND l.objsubid = 2
                                )) AND (unsettled_until IS NULL OR unsettled_until <= now())
                                END AS dead
                         FROM commands.idempotency_keys k WHERE user_id = $1 AND key = $2"
                    ),
                    &[&user.as_str(), &key.as_str()],
                )
                .await
                .map_err(DbError::pg("read idempotency key"))?;
            let Some(row) = found else { continue };
            let stored_hash: String = row.column("request_hash")?;
            if stored_hash != request_hash {
                return Err(ClaimError::Mismatch);
            }
            if let Some(response) = row.column::<Option<serde_json::Value>>("response")? {
                return Ok(Claim::Replay(response));
            }
            if !row.column::<bool>("dead")? {
                return Err(ClaimError::InProgress);
            }
            // The attempt is dead: take it over, unless another retry just did.
            let previous: Option<Uuid> = row.column("attempt")?;
            let taken = client
                .query_opt(
                    &format!(
                        "UPDATE commands.idempotency_keys
                         SET owner = $3, attempt = $4, created_at = now(),
                             expires_at = now() + make_interval(secs => $5),
                             unsettled_until = NULL
                         WHERE user_id = $1 AND key = $2 AND response IS NULL
                           AND attempt IS NOT DISTINCT FROM $6
                         RETURNING {PENDING_COLUMNS}"
                    ),
                    &[
                        &user.as_str(),
                        &key.as_str(),
                        &owner,
                        &attempt.id,
                        &bound,
                        &previous,
                    ],
                )
                .await
                .map_err(DbError::pg("take over idempotency key"))?;
            let Some(row) = taken else {
                return Err(ClaimError::InProgress);
            };
            tracing::info!(key = key.as_str(), "took over the claim of a dead attempt");
            return Ok(match pending(&row)? {
                Some(pending) => Claim::Resend(attempt, pending),
                None => Claim::Fresh(attempt),
            });
        }
        Err(ClaimError::InProgress)
    }

    /// Stores the event `attempt` decided, before it is sent; refused (`false`) when the
    /// attempt no longer owns its claim, and then it must send nothing.
    pub(crate) async fn prepare(
        &self,
        through: Through,
        attempt: &Attempt,
        pending: &Pending,
        bound: Duration,
    ) -> Result<bool, DbError> {
        let m = &pending.message;
        let n = self
            .execute(
                through,
                include_str!("../../sql/store_decided_event.sql"),
                &[
                    &attempt.user.as_str(),
                    &attempt.key.as_str(),
                    &attempt.id,
                    &m.topic,
                    &m.key,
                    &m.payload,
                    &pending.result_id,
                    &bound.as_secs_f64(),
                ],
                "store the decided event",
            )
            .await?;
        Ok(n == 1)
    }

    /// Stores the result of a finished command, in `tx` (with the state it changed).
    pub(crate) async fn complete_in(
        tx: &Transaction<'_>,
        attempt: &Attempt,
        response: &serde_json::Value,
    ) -> Result<(), DbError> {
        tx.execute(
            COMPLETE,
            &[
                &attempt.user.as_str(),
                &attempt.key.as_str(),
                &attempt.id,
                response,
            ],
        )
        .await
        .map_err(DbError::pg("store idempotent result"))?;
        Ok(())
    }

    /// Stores the result of a finished command.
    pub(crate) async fn complete(
        &self,
        attempt: &Attempt,
        response: &serde_json::Value,
    ) -> Result<(), DbError> {
        self.execute(
            Through::Pool,
            COMPLETE,
            &[
                &attempt.user.as_str(),
                &attempt.key.as_str(),
                &attempt.id,
                response,
            ],
            "store idempotent result",
        )
        .await
        .map(drop)
    }

    /// Forgets a claim whose attempt wrote nothing, so a retry runs the command afresh.
    pub(crate) async fn release(&self, through: Through, attempt: &Attempt) -> Result<(), DbError> {
        self.settle(
            through,
            attempt,
            include_str!("../../sql/release_key.sql"),
            "release idempotency key",
        )
        .await
    }

    /// After a failed attempt: forgets its claim if it decided no event, and gives the claim
    /// up (see [`Idempotency::abandon`]) if it did, since that event may be in Kafka.
    pub(crate) async fn release_undecided(&self, attempt: &Attempt) -> Result<(), DbError> {
        self.settle(
            Through::Pool,
            attempt,
            include_str!("../../sql/release_undecided_key.sql"),
            "release idempotency key",
        )
        .await?;
        self.abandon(Through::Pool, attempt).await
    }

    /// Gives up a claim whose event may have been written: the next retry takes it over at
    /// once, and answers with the event's position in the log or sends it.
    pub(crate) async fn abandon(&self, through: Through, attempt: &Attempt) -> Result<(), DbError> {
        self.settle(
            through,
            attempt,
            include_str!("../../sql/give_up_key.sql"),
            "give up idempotency key",
        )
        .await
    }

    /// Gives up a claim whose send failed in a way that may still write its event, for the
    /// next retry to take over once `unsettled` has passed and not before: by then the request
    /// that failed has been appended and replicated, or will never be, so the takeover's search
    /// sees what it wrote. Until then a retry is refused as in progress. A later
    /// [`Idempotency::abandon`] of the same attempt leaves the wait as it is.
    pub(crate) async fn abandon_unsettled(
        &self,
        through: Through,
        attempt: &Attempt,
        unsettled: Duration,
    ) -> Result<(), DbError> {
        self.execute(
            through,
            include_str!("../../sql/give_up_key_after_failed_send.sql"),
            &[
                &attempt.user.as_str(),
                &attempt.key.as_str(),
                &attempt.id,
                &unsettled.as_secs_f64(),
            ],
            "give up idempotency key after its send failed",
        )
        .await
        .map(drop)
    }

    async fn settle(
        &self,
        through: Through,
        attempt: &Attempt,
        sql: &str,
        context: &'static str,
    ) -> Result<(), DbError> {
        self.execute(
            through,
            sql,
            &[&attempt.user.as_str(), &attempt.key.as_str(), &attempt.id],
            context,
        )
        .await
        .map(drop)
    }

    async fn execute(
        &self,
        through: Through,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        context: &'static str,
    ) -> Result<u64, DbError> {
        let done = match through {
            Through::Pool => self.pool.get().await?.execute(sql, params).await,
            Through::Lease => self.lease.connection().await?.execute(sql, params).await,
        };
        done.map_err(DbError::pg(context))
    }
}

/// Which connection a write to a claim goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Through {
    /// One from the pool: for a command that holds no other connection now.
    Pool,
    /// The process's lease connection: for a command that holds a pool connection (its
    /// decision's transaction), so that it never waits for a second one (commands each
    /// holding one and waiting for another could exhaust the pool for good).
    Lease,
}

/// Stores a result, only for the attempt that owns the claim.
const COMPLETE: &str = include_str!("../../sql/complete_key.sql");

/// The decided event of a claim row, if any.
fn pending(row: &tokio_postgres::Row) -> Result<Option<Pending>, DbError> {
    let payload: Option<Vec<u8>> = row.column("payload")?;
    let topic: Option<String> = row.column("topic")?;
    let key: Option<String> = row.column("message_key")?;
    Ok(match (topic, key, payload) {
        (Some(topic), Some(key), Some(payload)) => Some(Pending {
            message: Encoded {
                topic,
                key,
                payload,
            },
            result_id: row.column("result_id")?,
            decided_at: row.column("decided_at")?,
        }),
        _ => None,
    })
}
