//! Refresh tokens: 32 random bytes, base64url without padding. Only their SHA-256 is stored,
//! so a copy of the database does not hand out sessions.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Random bytes in a refresh token.
pub const REFRESH_TOKEN_BYTES: usize = 32;

/// The operating system's random source failed.
#[derive(Debug, thiserror::Error)]
#[error("no randomness available: {0}")]
pub struct RandomError(getrandom::Error);

/// Fills a fresh array with random bytes from the operating system.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(RandomError)?;
    Ok(bytes)
}

/// A refresh token as the client holds it. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl RefreshToken {
    /// A new random token.
    pub fn generate() -> Result<Self, RandomError> {
        let bytes = random_bytes::<REFRESH_TOKEN_BYTES>()?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A token as presented by a client. Any string is accepted here: an unknown one is
    /// simply not found.
    pub fn from_client(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The key under which the store keeps this token.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_is_43_url_safe_characters_and_unique() {
        let a = RefreshToken::generate().map(|t| t.expose().to_owned());
        let b = RefreshToken::generate().map(|t| t.expose().to_owned());
        let (Ok(a), Ok(b)) = (a, b) else {
            unreachable!("the OS has randomness")
        };
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(a, b);
    }

    #[test]
    fn the_digest_is_sha256_of_the_text() {
        let t = RefreshToken::from_client("abc");
        let hex: String = t.digest().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(format!("{t:?}"), "RefreshToken(<redacted>)");
    }
}
