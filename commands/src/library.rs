//! The command library: decide which event a command produces, then publish it durably.
//! HTTP handlers and GraphQL mutations both call [`Commands`].

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use gallery_schemas::{Event, Position};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Principal;
use crate::db::DbError;
use crate::decide::generation::Bounds;
use crate::error::CommandError;
use crate::idempotency::{
    Attempt, Claim, ClaimError, Idempotency, IdempotencyKey, Ids, Pending, Through, fingerprint,
};
use crate::metrics::{Takeover, took_over};
use crate::ports::{
    AdmissionPolicy, AlwaysAdmit, Encoded, EventPublisher, ImageStore, PublishError,
};
use crate::ratelimit::{CommandClass, RateLimiter, Subject};

/// What a client gets back for an accepted command; also what an idempotent retry replays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub event_id: Uuid,
    /// Where the event landed: a read-your-writes token for the read side.
    pub position: Position,
    /// The id of what the command created (a comment, an exhibition, an artwork, a
    /// generation request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// For generation requests: whether the request was scaled down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<bool>,
}

/// Who acts, and the idempotency key they sent, if any.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub who: &'a Principal,
    pub key: Option<&'a IdempotencyKey>,
}

/// The write side as a library.
#[derive(Debug, Clone)]
pub struct Commands {
    pub(crate) publisher: Arc<dyn EventPublisher>,
    pub(crate) pool: Pool,
    pub(crate) idempotency: Idempotency,
    pub(crate) images: Option<Arc<dyn ImageStore>>,
    pub(crate) admission: Arc<dyn AdmissionPolicy>,
    pub(crate) bounds: Bounds,
    pub(crate) limiter: Option<Arc<RateLimiter>>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Commands {
    pub fn new(publisher: Arc<dyn EventPublisher>, pool: Pool) -> Self {
        Self {
            publisher,
            idempotency: Idempotency::new(pool.clone()),
            pool,
            images: None,
            admission: Arc::new(AlwaysAdmit),
            bounds: Bounds::default(),
            limiter: None,
        }
    }

    /// Quotas per user and class of command; without one, nothing is limited.
    pub fn with_limiter(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Spends one command of `class` from a client address's quota (for commands without a
    /// user yet: register, login, refresh).
    pub fn limit_client(
        &self,
        ip: std::net::IpAddr,
        class: CommandClass,
    ) -> Result<(), CommandError> {
        match &self.limiter {
            Some(l) => Ok(l.check(Subject::Client(ip), class)?),
            None => Ok(()),
        }
    }

    /// Spends one command of `class` from `who`'s quota.
    pub(crate) fn limit(&self, who: &Principal, class: CommandClass) -> Result<(), CommandError> {
        match &self.limiter {
            Some(l) => Ok(l.check(Subject::User(&who.user), class)?),
            None => Ok(()),
        }
    }

    /// Where uploaded images go; without one, commands that carry images are unavailable.
    pub fn with_images(mut self, images: Arc<dyn ImageStore>) -> Self {
        self.images = Some(images);
        self
    }

    pub fn with_admission(mut self, admission: Arc<dyn AdmissionPolicy>) -> Self {
        self.admission = admission;
        self
    }

    pub fn with_bounds(mut self, bounds: Bounds) -> Self {
        self.bounds = bounds;
        self
    }

    /// Publishes a stateless event.
    pub(crate) async fn publish(
        &self,
        ids: &Ids,
        event: Event,
        id: Option<String>,
    ) -> Result<Accepted, CommandError> {
        let (position, attempt) = self.send_event(ids, Through::Pool, &event, &id).await?;
        let done = accepted(&event, position, id);
        if let Some(attempt) = attempt
            && let Err(e) = self
                .idempotency
                .complete(attempt, &stored_result(&done)?)
                .await
        {
            // The command is done; a retry once the claim expires finds the event in the
            // log and answers with its position.
            tracing::warn!(error = %e, "could not store an idempotent result");
        }
        Ok(done)
    }

    /// Publishes `event`, records its effect on the aggregate state (and, for a keyed
    /// command, its result), and commits `tx`. The row locks taken while deciding are held
    /// until the event is durable.
    pub(crate) async fn publish_in(
        &self,
        ids: &Ids,
        tx: Transaction<'_>,
        event: Event,
        id: Option<String>,
    ) -> Result<Accepted, CommandError> {
        let (position, attempt) = self.send_event(ids, Through::Lease, &event, &id).await?;
        self.record(attempt, tx, &event, position, id).await
    }

    /// Encodes and sends `event`; for a keyed command, first keeps the message with its claim
    /// (written `through` the pool or the lease), and settles the claim if the send fails.
    /// Returns where the event landed and the attempt, if keyed.
    async fn send_event<'i>(
        &self,
        ids: &'i Ids,
        through: Through,
        event: &Event,
        id: &Option<String>,
    ) -> Result<(Position, Option<&'i Attempt>), CommandError> {
        let message = self.publisher.encode(event).await?;
        let Some(attempt) = ids.attempt() else {
            return Ok((self.publisher.send(&message).await?, None));
        };
        let message = self.prepare(through, attempt, message, id).await?;
        let position = self.send_decided(through, attempt, &message, true).await?;
        Ok((position, Some(attempt)))
    }

    /// Keeps the event `attempt` decided with its claim, before anything is sent.
    async fn prepare(
        &self,
        through: Through,
        attempt: &Attempt,
        message: Encoded,
        id: &Option<String>,
    ) -> Result<Encoded, CommandError> {
        let pending = Pending {
            message,
            result_id: id.clone(),
            decided_at: None,
        };
        let bound = self.publisher.max_in_flight();
        if !self
            .idempotency
            .prepare(through, attempt, &pending, bound)
            .await?
        {
            // A retry took the claim over (this attempt looked dead): it answers.
            return Err(CommandError::IdempotencyInProgress);
        }
        Ok(pending.message)
    }

    /// Sends the message `attempt` decided (`own`: this attempt decided it; otherwise an
    /// earlier one did). On failure the claim is released when nothing can have been
    /// written and the decision is this attempt's own, and given up otherwise, so that the
    /// next retry looks for the message in the log and sends it again if it is not there.
    /// After a failure that may still write (a request the broker holds, appended or
    /// replicated late, as when its leader dies), that retry waits for as long as a send may
    /// be in flight: a search any sooner could miss a message that lands after it.
    async fn send_decided(
        &self,
        through: Through,
        attempt: &Attempt,
        message: &Encoded,
        own: bool,
    ) -> Result<Position, CommandError> {
        match self.publisher.send(message).await {
            Ok(position) => Ok(position),
            Err(e) => {
                let settled = if !e.surely_unwritten() {
                    let unsettled = self.publisher.max_in_flight();
                    self.idempotency
                        .abandon_unsettled(through, attempt, unsettled)
                        .await
                } else if own {
                    self.idempotency.release(through, attempt).await
                } else {
                    self.idempotency.abandon(through, attempt).await
                };
                if let Err(settle) = settled {
                    tracing::warn!(error = %settle, "could not settle an idempotency key");
                }
                Err(e.into())
            }
        }
    }

    /// Records a durable event's effect on the aggregate state in `tx`, with the result of
    /// `attempt` when keyed, and commits.
    async fn record(
        &self,
        attempt: Option<&Attempt>,
        tx: Transaction<'_>,
        event: &Event,
        position: Position,
        id: Option<String>,
    ) -> Result<Accepted, CommandError> {
        let done = accepted(event, position, id);
        let recorded = async {
            crate::repository::record(&tx, event).await?;
            if let Some(attempt) = attempt {
                Idempotency::complete_in(&tx, attempt, &stored_result(&done)?).await?;
            }
            tx.commit()
                .await
                .map_err(|e| CommandError::from(DbError::pg("commit command state")(e)))
        }
        .await;
        if let Err(e) = recorded {
            // The event is durable: a retry with the same key finds it in the log, answers
            // with its position and records its state.
            tracing::error!(error = %e, event_id = %event.event_id(), "event published but state not recorded");
            if let Some(attempt) = attempt
                && let Err(settle) = self.idempotency.abandon(Through::Lease, attempt).await
            {
                tracing::warn!(error = %settle, "could not give up an idempotency key");
            }
            return Err(e);
        }
        Ok(done)
    }

    /// Takes over from a dead attempt that decided `pending`: answers with the position of
    /// its event when the log holds it, sends it (again) otherwise, records its state and
    /// result, and answers as the first attempt would have.
    async fn resend(&self, attempt: &Attempt, pending: Pending) -> Result<Accepted, CommandError> {
        let event = self.publisher.decode(&pending.message).await?;
        let found = self.look_up(&pending).await?;
        let mut client = self.client().await?;
        let tx = Self::begin(&mut client).await?;
        let (position, outcome, what) = match found {
            Some(position) => (
                position,
                Takeover::FoundInLog,
                "found the event of a dead attempt in the log; not sending it again",
            ),
            None => (
                self.send_decided(Through::Lease, attempt, &pending.message, false)
                    .await?,
                Takeover::SentAgain,
                "sent the event of a dead attempt",
            ),
        };
        took_over(outcome);
        tracing::info!(
            event_id = %event.event_id(), topic = %position.topic,
            partition = position.partition, offset = position.offset,
            "{what}"
        );
        self.record(Some(attempt), tx, &event, position, pending.result_id)
            .await
    }

    /// Where the log holds `pending`'s message, if it does. A search that failed for a while
    /// (Kafka unreachable or slow) is an error: the command is refused as unavailable and the
    /// next retry searches again, since a message sent now could land beside one the search
    /// missed. A search that cannot be done at all (a claim of an earlier version without a
    /// decision time, a partition count changed since, too much to read) counts as not found:
    /// the message is sent again, as a copy every reader applies once.
    async fn look_up(&self, pending: &Pending) -> Result<Option<Position>, CommandError> {
        let topic = &pending.message.topic;
        let Some(since) = pending.decided_at else {
            tracing::warn!(%topic, "a dead attempt's event has no decision time (a claim of an earlier version); sending it again");
            return Ok(None);
        };
        match self.publisher.find(&pending.message, since).await {
            Ok(found) => Ok(found),
            Err(e) if e.is_transient() => {
                took_over(Takeover::SearchFailed);
                tracing::warn!(error = %e, %topic, "could not search the log for a dead attempt's event; the retry after this one searches again");
                Err(PublishError::Search(Box::new(e)).into())
            }
            Err(e) => {
                tracing::warn!(error = %e, %topic, "cannot search the log for a dead attempt's event; sending it again");
                Ok(None)
            }
        }
    }

    /// Runs `run` once per idempotency key: a retry with the same key and request replays the
    /// stored result; the same key with another request is refused; a retry after the
    /// attempt before it died answers with that attempt's event, found in the log or sent.
    /// `request` describes the request for the key's fingerprint; it is built only for a keyed
    /// command.
    pub(crate) async fn once<R, F, Fut>(
        &self,
        cx: &Context<'_>,
        (command, class): (&str, CommandClass),
        request: R,
        run: F,
    ) -> Result<Accepted, CommandError>
    where
        R: FnOnce() -> serde_json::Value,
        F: FnOnce(Ids) -> Fut,
        Fut: Future<Output = Result<Accepted, CommandError>>,
    {
        self.limit(cx.who, class)?;
        let Some(key) = cx.key else {
            return run(Ids::fresh()).await;
        };
        let user = &cx.who.user;
        let hash = fingerprint(command, request().to_string().as_bytes());
        let bound = self.publisher.max_in_flight();
        let attempt = match self.idempotency.claim(user, key, &hash, bound).await {
            Ok(Claim::Replay(stored)) => {
                return serde_json::from_value(stored).map_err(CommandError::StoredResult);
            }
            Ok(Claim::Resend(attempt, pending)) => {
                let result = self.resend(&attempt, pending).await;
                // The event may be in Kafka: the next retry looks for it again.
                if result.is_err()
                    && let Err(settle) = self.idempotency.abandon(Through::Pool, &attempt).await
                {
                    tracing::warn!(error = %settle, "could not give up an idempotency key");
                }
                return result;
            }
            Ok(Claim::Fresh(attempt)) => attempt,
            Err(ClaimError::Mismatch) => return Err(CommandError::IdempotencyMismatch),
            Err(ClaimError::InProgress) => return Err(CommandError::IdempotencyInProgress),
            Err(ClaimError::Db(e)) => return Err(e.into()),
        };
        let result = run(Ids::of_attempt(attempt.clone())).await;
        if result.is_err()
            && let Err(release) = self.idempotency.release_undecided(&attempt).await
        {
            tracing::warn!(error = %release, "could not release an idempotency key");
        }
        result
    }

    pub(crate) async fn begin<'c>(
        client: &'c mut deadpool_postgres::Object,
    ) -> Result<Transaction<'c>, CommandError> {
        Ok(client
            .transaction()
            .await
            .map_err(DbError::pg("begin command"))?)
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, CommandError> {
        Ok(self.pool.get().await.map_err(DbError::from)?)
    }

    pub(crate) fn images(&self) -> Result<&Arc<dyn ImageStore>, CommandError> {
        self.images.as_ref().ok_or(CommandError::NoImageStore)
    }
}

fn stored_result(done: &Accepted) -> Result<serde_json::Value, CommandError> {
    serde_json::to_value(done).map_err(CommandError::StoredResult)
}

fn accepted(event: &Event, position: Position, id: Option<String>) -> Accepted {
    let degraded = match event {
        Event::GenerationRequested(r) => Some(r.degraded),
        _ => None,
    };
    tracing::debug!(
        event_id = %event.event_id(), record = event.record_name(),
        topic = %position.topic, partition = position.partition, offset = position.offset,
        "event durable"
    );
    Accepted {
        event_id: event.event_id(),
        position,
        id,
        degraded,
    }
}
