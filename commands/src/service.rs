//! The command library: decide which event a command produces, then publish it durably.
//! HTTP handlers and GraphQL mutations both call [`Commands`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use gallery_schemas::{Event, ImageRef, Position};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Principal;
use crate::db::DbError;
use crate::decide::generation::{Admission, Bounds};
use crate::error::CommandError;
use crate::idempotency::{Claim, ClaimError, Idempotency, IdempotencyKey, Ids, fingerprint};
use crate::ratelimit::{CommandClass, RateLimiter, Subject};

/// Why an event could not be made durable.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Kafka or the registry is unreachable or timed out; nothing is known to be written.
    #[error("event store unavailable: {message}")]
    Unavailable { message: String },
    /// Every Kafka broker is unreachable; the event was refused before it was sent.
    #[error("event store unavailable: every Kafka broker is down")]
    BrokersDown,
    /// The producer holds as many unacknowledged events as it may; the event was refused.
    #[error("event store overloaded: the producer queue is full")]
    QueueFull,
    /// The event could not be encoded (a bug or an incompatible schema).
    #[error("event could not be encoded: {message}")]
    Encode { message: String },
}

impl PublishError {
    /// True when retrying later may succeed (the client gets `503` and `Retry-After`).
    pub fn is_transient(&self) -> bool {
        match self {
            PublishError::Unavailable { .. }
            | PublishError::BrokersDown
            | PublishError::QueueFull => true,
            PublishError::Encode { .. } => false,
        }
    }
}

pub type PublishFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Position, PublishError>> + Send + 'a>>;

/// Writes events durably. Resolves only once the event is acknowledged by every in-sync
/// replica; the returned position is where it landed.
pub trait EventPublisher: Send + Sync + std::fmt::Debug {
    fn publish<'a>(&'a self, event: &'a Event) -> PublishFuture<'a>;
}

/// What kind of image is being stored (they have different limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// A curator's artwork image.
    Artwork,
    /// A visitor's photo for image-to-image.
    Photo,
}

pub type ImageFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ImageRef, CommandError>> + Send + 'a>>;

/// Checks an uploaded image by its content and stores it, content-addressed.
pub trait ImageStore: Send + Sync + std::fmt::Debug {
    fn put_image(&self, bytes: Vec<u8>, kind: ImageKind) -> ImageFuture<'_>;
}

/// Why a generation request is refused for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overload {
    pub backlog: u64,
    /// Seconds the client should wait.
    pub retry_after: u64,
}

/// Admits generation requests given the backlog.
pub trait AdmissionPolicy: Send + Sync + std::fmt::Debug {
    fn admit(&self) -> Result<Admission, Overload>;
}

/// Admits everything normally.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysAdmit;

impl AdmissionPolicy for AlwaysAdmit {
    fn admit(&self) -> Result<Admission, Overload> {
        Ok(Admission::Normal)
    }
}

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
        event: Event,
        id: Option<String>,
    ) -> Result<Accepted, CommandError> {
        let position = self.publisher.publish(&event).await?;
        Ok(accepted(&event, position, id))
    }

    /// Publishes `event`, records its effect on the aggregate state, and commits `tx`. The
    /// row locks taken while deciding are held until the event is durable.
    pub(crate) async fn publish_in(
        &self,
        tx: Transaction<'_>,
        event: Event,
        id: Option<String>,
    ) -> Result<Accepted, CommandError> {
        let position = self.publisher.publish(&event).await?;
        crate::state::record(&tx, &event).await?;
        if let Err(e) = tx.commit().await {
            // The event is durable; a retry with the same key re-sends the same event id,
            // which every consumer applies once.
            tracing::error!(error = %e, event_id = %event.event_id(), "event published but state not recorded");
            return Err(DbError::pg("commit command state")(e).into());
        }
        Ok(accepted(&event, position, id))
    }

    /// Runs `run` once per idempotency key: a retry with the same key and request replays the
    /// stored result; the same key with another request is refused.
    pub(crate) async fn once<F, Fut>(
        &self,
        cx: &Context<'_>,
        (command, class): (&str, CommandClass),
        request: serde_json::Value,
        run: F,
    ) -> Result<Accepted, CommandError>
    where
        F: FnOnce(Ids) -> Fut,
        Fut: Future<Output = Result<Accepted, CommandError>>,
    {
        self.limit(cx.who, class)?;
        let Some(key) = cx.key else {
            return run(Ids::fresh()).await;
        };
        let user = &cx.who.user;
        let hash = fingerprint(command, request.to_string().as_bytes());
        match self.idempotency.claim(user, key, &hash).await {
            Ok(Claim::Replay(stored)) => {
                return serde_json::from_value(stored).map_err(CommandError::StoredResult);
            }
            Ok(Claim::Fresh) => {}
            Err(ClaimError::Mismatch) => return Err(CommandError::IdempotencyMismatch),
            Err(ClaimError::InProgress) => return Err(CommandError::IdempotencyInProgress),
            Err(ClaimError::Db(e)) => return Err(e.into()),
        }
        match run(Ids::keyed(user, key)).await {
            Ok(done) => {
                let stored = serde_json::to_value(&done).map_err(CommandError::StoredResult)?;
                if let Err(e) = self.idempotency.complete(user, key, &stored).await {
                    // The command is done; a retry after the claim goes stale repeats it with
                    // the same ids, which consumers apply once.
                    tracing::warn!(error = %e, "could not store an idempotent result");
                }
                Ok(done)
            }
            Err(e) => {
                if let Err(release) = self.idempotency.release(user, key).await {
                    tracing::warn!(error = %release, "could not release an idempotency key");
                }
                Err(e)
            }
        }
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
