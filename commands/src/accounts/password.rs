//! Password hashing with Argon2id, stored as PHC strings. Hashing is deliberately slow, so it
//! runs on the blocking pool, a bounded number at a time, and never on the async workers.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OnceCell, Semaphore};

use super::rules::Password;
use super::token::{RandomError, random_bytes};

/// The cost of one hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    /// Memory, in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
}

impl Default for HashCost {
    /// Argon2id's recommended defaults (19 MiB, 2 passes, 1 lane).
    fn default() -> Self {
        Self {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
        }
    }
}

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("invalid Argon2 parameters")]
    Params(#[source] argon2::Error),
    #[error("password hashing failed")]
    Hash(#[source] argon2::password_hash::Error),
    #[error("stored password hash is not a valid PHC string")]
    Stored(#[source] argon2::password_hash::Error),
    #[error("salt")]
    Salt(#[from] RandomError),
    #[error("hashing task did not finish")]
    Task(#[from] tokio::task::JoinError),
}

/// Hashes and verifies passwords.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// A hash of a random password with the current cost, verified against when a user does
    /// not exist, so that a missing user costs as much time as a wrong password.
    dummy: Arc<OnceCell<String>>,
}

impl PasswordHasher {
    /// At most `concurrency` hashes run at once (each holds `cost.memory_kib` of memory).
    pub fn new(cost: HashCost, concurrency: usize) -> Result<Self, HashError> {
        let params =
            Params::new(cost.memory_kib, cost.iterations, 1, None).map_err(HashError::Params)?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy: Arc::new(OnceCell::new()),
        })
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    /// The PHC string of `password` with a fresh random salt.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        self.hash_text(password.expose().to_owned()).await
    }

    async fn hash_text(&self, password: String) -> Result<String, HashError> {
        let salt = SaltString::encode_b64(&random_bytes::<16>()?).map_err(HashError::Hash)?;
        let params = self.params.clone();
        let _permit = self.permits.acquire().await;
        tokio::task::spawn_blocking(move || {
            Self::argon2(params)
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(HashError::Hash)
        })
        .await?
    }

    /// Whether `password` matches the stored PHC string (whatever cost it was hashed with).
    pub async fn verify(&self, password: &Password, stored: &str) -> Result<bool, HashError> {
        let password = password.expose().to_owned();
        let stored = stored.to_owned();
        let _permit = self.permits.acquire().await;
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&stored).map_err(HashError::Stored)?;
            match Argon2::default().verify_password(password.as_bytes(), &parsed) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::Password) => Ok(false),
                Err(e) => Err(HashError::Hash(e)),
            }
        })
        .await?
    }

    /// Spends the time of a verification without any account: always `false`.
    pub async fn verify_nobody(&self, password: &Password) -> Result<bool, HashError> {
        let dummy = self
            .dummy
            .get_or_try_init(|| async {
                let random = random_bytes::<24>()?;
                self.hash_text(random.iter().map(|b| format!("{b:02x}")).collect())
                    .await
            })
            .await?;
        self.verify(password, dummy).await.map(|_| false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn light() -> PasswordHasher {
        PasswordHasher::new(
            HashCost {
                memory_kib: 64,
                iterations: 1,
            },
            2,
        )
        .unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn pw(s: &str) -> Password {
        Password::parse(s).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let h = light();
        let stored = h.hash(&pw("correct horse")).await;
        let Ok(stored) = stored else {
            unreachable!("hashing works")
        };
        assert!(stored.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(!stored.contains("correct horse"));
        assert!(matches!(
            h.verify(&pw("correct horse"), &stored).await,
            Ok(true)
        ));
        assert!(matches!(
            h.verify(&pw("wrong horse!"), &stored).await,
            Ok(false)
        ));
    }

    #[tokio::test]
    async fn the_same_password_gets_a_new_salt_each_time() {
        let h = light();
        let a = h.hash(&pw("correct horse")).await.ok();
        let b = h.hash(&pw("correct horse")).await.ok();
        assert!(a.is_some());
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn nobody_never_verifies() {
        let h = light();
        assert!(matches!(
            h.verify_nobody(&pw("anything at all")).await,
            Ok(false)
        ));
    }

    #[tokio::test]
    async fn a_corrupt_stored_hash_is_an_error_not_a_match() {
        let h = light();
        assert!(matches!(
            h.verify(&pw("correct horse"), "not a phc string").await,
            Err(HashError::Stored(_))
        ));
    }

    #[test]
    fn too_little_memory_is_refused() {
        assert!(matches!(
            PasswordHasher::new(
                HashCost {
                    memory_kib: 1,
                    iterations: 1
                },
                1
            ),
            Err(HashError::Params(_))
        ));
    }
}
