//! Signed bearer tokens (JWT, HS256): a token names its user (`sub`) and role, and expires
//! (`exp`). No write is accepted without a valid one, and a user acts only as themselves.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gallery_schemas::{IdError, Role, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Shortest signing secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Why a request is not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token (send `Authorization: Bearer <token>`)")]
    Missing,
    #[error("malformed Authorization header: expected `Bearer <token>`")]
    Malformed,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token is invalid")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    #[error("token subject is not a valid user id")]
    BadSubject(#[source] IdError),
    #[error("signing secret must be at least {MIN_SECRET_LEN} bytes, got {len}")]
    WeakSecret { len: usize },
    #[error("could not sign token")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    iat: u64,
    exp: u64,
}

/// Who is acting: the user a valid token names, and their role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: UserId,
    pub role: Role,
}

impl Principal {
    pub fn new(user: UserId, role: Role) -> Self {
        Self { user, role }
    }

    /// Curators and admins build exhibitions.
    pub fn is_curator(&self) -> bool {
        matches!(self.role, Role::Curator | Role::Admin)
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// The keys that sign and check tokens. The secret never appears in `Debug` output.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// What a valid token must hold; built once, not per request.
    validation: Validation,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(<redacted>)")
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenKeys {
    pub fn from_secret(secret: &[u8]) -> Result<Self, AuthError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(AuthError::WeakSecret { len: secret.len() });
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        // A token that says when it starts (`nbf`) is refused before then; jsonwebtoken
        // ignores `nbf` unless told.
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        })
    }

    /// Issues a token for `who`, valid for `ttl`.
    pub fn issue(&self, who: &Principal, ttl: Duration) -> Result<String, AuthError> {
        let iat = now_secs();
        let claims = Claims {
            sub: who.user.as_str().to_owned(),
            role: who.role,
            iat,
            exp: iat.saturating_add(ttl.as_secs()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(AuthError::Sign)
    }

    /// Checks a token's signature and expiry and returns who it names.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                _ => AuthError::Invalid(e),
            })?;
        let user = UserId::parse(&data.claims.sub).map_err(AuthError::BadSubject)?;
        Ok(Principal::new(user, data.claims.role))
    }

    /// Reads who is acting from an `Authorization` header value (`None` when absent).
    pub fn verify_header(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Malformed)?;
        self.verify(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> TokenKeys {
        TokenKeys::from_secret(secret.as_bytes()).unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn user() -> Principal {
        Principal::new(
            UserId::parse("ada").unwrap_or_else(|e| unreachable!("{e}")),
            Role::Curator,
        )
    }

    #[test]
    fn an_issued_token_verifies_to_its_user() {
        let k = keys("0123456789abcdef0123456789abcdef");
        let token = k.issue(&user(), Duration::from_secs(60));
        let verified = token.and_then(|t| k.verify_header(Some(&format!("Bearer {t}"))));
        assert_eq!(verified.ok(), Some(user()));
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let token = keys("0123456789abcdef0123456789abcdef")
            .issue(&user(), Duration::from_secs(60))
            .unwrap_or_default();
        let other = keys("fedcba9876543210fedcba9876543210");
        assert!(matches!(other.verify(&token), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let k = keys("0123456789abcdef0123456789abcdef");
        let claims = Claims {
            sub: "ada".into(),
            role: Role::Visitor,
            iat: 1,
            exp: 2,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.encoding)
            .unwrap_or_default();
        assert!(matches!(k.verify(&token), Err(AuthError::Expired)));
    }

    #[test]
    fn a_token_not_valid_yet_is_refused() {
        #[derive(Serialize)]
        struct Later {
            sub: &'static str,
            role: Role,
            iat: u64,
            nbf: u64,
            exp: u64,
        }
        let k = keys("0123456789abcdef0123456789abcdef");
        let later = Later {
            sub: "ada",
            role: Role::Visitor,
            iat: now_secs(),
            nbf: now_secs() + 3600,
            exp: now_secs() + 7200,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &later, &k.encoding)
            .unwrap_or_default();
        let r = k.verify(&token);
        assert!(matches!(r, Err(AuthError::NotYetValid)), "{r:?}");
    }

    #[test]
    fn missing_and_malformed_headers_are_told_apart() {
        let k = keys("0123456789abcdef0123456789abcdef");
        assert!(matches!(k.verify_header(None), Err(AuthError::Missing)));
        assert!(matches!(
            k.verify_header(Some("Basic abc")),
            Err(AuthError::Malformed)
        ));
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(matches!(
            TokenKeys::from_secret(b"short"),
            Err(AuthError::WeakSecret { len: 5 })
        ));
    }
}
