//! Idempotency keys and what is derived from them: the ids of a keyed command's entities
//! (stable per user, key and purpose) and the fingerprint of a request.

use gallery_schemas::UserId;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Attempt;

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

/// Ids for one command: derived from (user, key) when keyed, fresh otherwise. A keyed
/// command's ids also carry the attempt that claimed the key.
#[derive(Debug, Clone)]
pub struct Ids {
    seed: Option<String>,
    attempt: Option<Attempt>,
}

impl Ids {
    pub fn fresh() -> Self {
        Self {
            seed: None,
            attempt: None,
        }
    }

    pub fn keyed(user: &UserId, key: &IdempotencyKey) -> Self {
        Self {
            seed: Some(format!("{}\u{0}{}", user.as_str(), key.as_str())),
            attempt: None,
        }
    }

    /// The ids of `attempt`'s command.
    pub(crate) fn of_attempt(attempt: Attempt) -> Self {
        Self {
            attempt: Some(attempt.clone()),
            ..Self::keyed(&attempt.user, &attempt.key)
        }
    }

    /// The attempt that claimed the key, for a keyed command.
    pub(crate) fn attempt(&self) -> Option<&Attempt> {
        self.attempt.as_ref()
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
