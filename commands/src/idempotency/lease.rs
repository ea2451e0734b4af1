//! The process's lease: a session-level advisory lock that says this process is alive, so
//! that a retry takes over only the attempts of a process that died.

use std::sync::Arc;

use deadpool_postgres::Pool;
use gallery_infra::Columns;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::db::DbError;

/// Namespace (first key) of the advisory locks that mark a process as alive.
pub(super) const LEASE_NAMESPACE: i32 = 0x6964_656d; // "idem"

/// How many random lease ids a process tries before it gives up (ids collide with
/// probability 2^-31 each).
const LEASE_TRIES: usize = 8;

/// This process's lease: a session-level advisory lock `(LEASE_NAMESPACE, id)` held on a
/// connection taken out of the pool for good, re-established (by a claim) when that
/// connection closes.
#[derive(Debug)]
pub(super) struct Lease {
    pool: Pool,
    held: Mutex<Option<Held>>,
}

struct Held {
    id: i32,
    client: Arc<deadpool_postgres::ClientWrapper>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Lease {
    pub(super) fn new(pool: Pool) -> Self {
        Self {
            pool,
            held: Mutex::new(None),
        }
    }

    /// The id of the lease this process holds, taking it first if needed.
    pub(super) async fn id(&self) -> Result<i32, DbError> {
        let mut held = self.held.lock().await;
        if let Some(h) = held.as_ref()
            && !h.client.is_closed()
        {
            return Ok(h.id);
        }
        // Keep the id across a reconnection, so attempts claimed before stay alive.
        let previous = held.take().map(|h| h.id);
        let client = deadpool_postgres::Object::take(self.pool.get().await?);
        let candidates = previous
            .into_iter()
            .chain(std::iter::repeat_with(random_lease_id))
            .take(LEASE_TRIES);
        for id in candidates {
            let row = client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2) AS locked",
                    &[&LEASE_NAMESPACE, &id],
                )
                .await
                .map_err(DbError::pg("take the process lease"))?;
            if row.column::<bool>("locked")? {
                tracing::debug!(lease = id, "holding the idempotency lease");
                *held = Some(Held {
                    id,
                    client: Arc::new(client),
                });
                return Ok(id);
            }
        }
        Err(DbError::NoLease { tries: LEASE_TRIES })
    }

    /// The lease's connection, without waiting for the pool: an error when it is lost.
    pub(super) async fn connection(
        &self,
    ) -> Result<Arc<deadpool_postgres::ClientWrapper>, DbError> {
        match self.held.lock().await.as_ref() {
            Some(h) if !h.client.is_closed() => Ok(h.client.clone()),
            _ => Err(DbError::LeaseLost),
        }
    }
}

/// A random non-negative lease id.
fn random_lease_id() -> i32 {
    let bytes = Uuid::new_v4().into_bytes();
    i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) & i32::MAX
}
