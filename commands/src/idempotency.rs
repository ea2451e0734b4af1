//! Client idempotency: a command sent again with the same `Idempotency-Key` returns the
//! original result and writes no second event; the same key with a different request is
//! refused. Ids of a keyed command are derived from the key, so even a retry after a crash
//! between Kafka's acknowledgement and the stored result re-sends the same event id.

use std::time::Duration;

use deadpool_postgres::Pool;
use gallery_schemas::UserId;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::DbError;

/// Namespace of the ids derived from idempotency keys.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6761_6c6c_6572_7900_6964_656d_706f_7465);

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 200;

/// A client-supplied idempotency key: 1 to 200 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

/// Why a key is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters")]
pub struct BadKey;

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, BadKey> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_KEY_LEN
            && raw.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(BadKey)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Ids for one command: derived from (user, key) when keyed, fresh otherwise.
#[derive(Debug, Clone)]
pub struct Ids {
    seed: Option<String>,
}

impl Ids {
    pub fn fresh() -> Self {
        Self { seed: None }
    }

    pub fn keyed(user: &UserId, key: &IdempotencyKey) -> Self {
        Self {
            seed: Some(format!("{}\u{0}{}", user.as_str(), key.as_str())),
        }
    }

    /// The id named `purpose` ("event", "comment", ...): stable for a keyed command.
    pub fn id(&self, purpose: &str) -> Uuid {
        match &self.seed {
            Some(seed) => Uuid::new_v5(&ID_NAMESPACE, format!("{seed}\u{0}{purpose}").as_bytes()),
            None => Uuid::now_v7(),
        }
    }

    /// A random-looking seed for generation; stable for a keyed command.
    pub fn seed(&self) -> i64 {
        let id = self.id("seed");
        let bytes = id.as_bytes();
        let mut n = [0u8; 8];
        n.copy_from_slice(&bytes[..8]);
        // Non-negative and within 2^53, so it survives JSON clients intact.
        i64::from_be_bytes(n) & ((1_i64 << 53) - 1)
    }
}

/// A fingerprint of a request: the command's name and its canonical body.
pub fn fingerprint(command: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(command.as_bytes());
    h.update([0]);
    h.update(body);
    hex::encode(h.finalize())
}

/// What a claim on a key found.
#[derive(Debug)]
pub enum Claim {
    /// First use (or a stale, unfinished earlier attempt): run the command.
    Fresh,
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

/// The store of keys (table `commands.idempotency_keys`).
#[derive(Debug, Clone)]
pub struct Idempotency {
    pool: Pool,
    /// After this long, an unfinished attempt is taken over by a retry.
    stale_after: Duration,
}

impl Idempotency {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            stale_after: Duration::from_secs(60),
        }
    }

    pub async fn claim(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        request_hash: &str,
    ) -> Result<Claim, ClaimError> {
        let client = self.pool.get().await.map_err(DbError::from)?;
        let inserted = client
            .execute(
                "INSERT INTO commands.idempotency_keys (user_id, key, request_hash)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&user.as_str(), &key.as_str(), &request_hash],
            )
            .await
            .map_err(DbError::pg("claim idempotency key"))?;
        if inserted == 1 {
            return Ok(Claim::Fresh);
        }
        let row = client
            .query_one(
                "SELECT request_hash, response,
                        extract(epoch FROM now() - created_at)::float8
                 FROM commands.idempotency_keys WHERE user_id = $1 AND key = $2",
                &[&user.as_str(), &key.as_str()],
            )
            .await
            .map_err(DbError::pg("read idempotency key"))?;
        let (stored_hash, response, age): (String, Option<serde_json::Value>, f64) =
            (row.get(0), row.get(1), row.get(2));
        if stored_hash != request_hash {
            return Err(ClaimError::Mismatch);
        }
        if let Some(response) = response {
            return Ok(Claim::Replay(response));
        }
        if age < self.stale_after.as_secs_f64() {
            return Err(ClaimError::InProgress);
        }
        // An attempt that never finished (its process died): take it over, once.
        let taken = client
            .execute(
                "UPDATE commands.idempotency_keys SET created_at = now()
                 WHERE user_id = $1 AND key = $2 AND response IS NULL
                   AND now() - created_at >= make_interval(secs => $3)",
                &[
                    &user.as_str(),
                    &key.as_str(),
                    &self.stale_after.as_secs_f64(),
                ],
            )
            .await
            .map_err(DbError::pg("take over idempotency key"))?;
        if taken == 1 {
            Ok(Claim::Fresh)
        } else {
            Err(ClaimError::InProgress)
        }
    }

    /// Stores the result of a finished command.
    pub async fn complete(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        response: &serde_json::Value,
    ) -> Result<(), DbError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE commands.idempotency_keys SET response = $3
                 WHERE user_id = $1 AND key = $2",
                &[&user.as_str(), &key.as_str(), response],
            )
            .await
            .map_err(DbError::pg("store idempotent result"))?;
        Ok(())
    }

    /// Forgets a claim whose command failed without writing anything, so it can be retried.
    pub async fn release(&self, user: &UserId, key: &IdempotencyKey) -> Result<(), DbError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM commands.idempotency_keys
                 WHERE user_id = $1 AND key = $2 AND response IS NULL",
                &[&user.as_str(), &key.as_str()],
            )
            .await
            .map_err(DbError::pg("release idempotency key"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert!(IdempotencyKey::parse("order-42_a.b").is_ok());
        assert_eq!(IdempotencyKey::parse(""), Err(BadKey));
        assert_eq!(IdempotencyKey::parse("has space"), Err(BadKey));
        assert_eq!(IdempotencyKey::parse(&"k".repeat(201)), Err(BadKey));
    }

    #[test]
    fn keyed_ids_are_stable_per_user_key_and_purpose() {
        let ada = UserId::parse("ada").unwrap_or_else(|e| unreachable!("{e}"));
        let bob = UserId::parse("bob").unwrap_or_else(|e| unreachable!("{e}"));
        let key = IdempotencyKey::parse("k1").unwrap_or_else(|e| unreachable!("{e}"));
        let a = Ids::keyed(&ada, &key);
        assert_eq!(a.id("event"), Ids::keyed(&ada, &key).id("event"));
        assert_ne!(a.id("event"), a.id("comment"));
        assert_ne!(a.id("event"), Ids::keyed(&bob, &key).id("event"));
        assert_eq!(a.seed(), Ids::keyed(&ada, &key).seed());
        assert!(a.seed() >= 0);
        assert_ne!(Ids::fresh().id("event"), Ids::fresh().id("event"));
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        assert_eq!(fingerprint("like", b"{}"), fingerprint("like", b"{}"));
        assert_ne!(fingerprint("like", b"{}"), fingerprint("unlike", b"{}"));
        assert_ne!(fingerprint("a", b"bc"), fingerprint("ab", b"c"));
    }
}
