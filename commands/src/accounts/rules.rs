//! The pure rules of accounts: what a username, a password and a display name must be, how a
//! role is spelled, and what presenting a refresh token decides. No I/O here.

use std::fmt;
use std::time::SystemTime;

use gallery_schemas::{IdError, PersonName, Role, TextError, UserId};

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password accepted, in characters (bounds the hashing work a request can cause).
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Why a password is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("must be at least {MIN_PASSWORD_CHARS} characters long, got {len}")]
    TooShort { len: usize },
    #[error("must be at most {MAX_PASSWORD_CHARS} characters long, got {len}")]
    TooLong { len: usize },
}

/// A password that meets the rules. Never printed.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Checks the length in characters (not bytes); nothing is trimmed.
    pub fn parse(raw: impl Into<String>) -> Result<Self, PasswordError> {
        let raw = raw.into();
        let len = raw.chars().count();
        if len < MIN_PASSWORD_CHARS {
            return Err(PasswordError::TooShort { len });
        }
        if len > MAX_PASSWORD_CHARS {
            return Err(PasswordError::TooLong { len });
        }
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A role name that is not one of `visitor`, `curator`, `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of \"visitor\", \"curator\" or \"admin\" (got {found:?})")]
pub struct UnknownRole {
    pub found: String,
}

/// How a role is spelled in the API and stored in the accounts table.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Visitor => "visitor",
        Role::Curator => "curator",
        Role::Admin => "admin",
    }
}

/// Parses a role name, ignoring ASCII case.
pub fn parse_role(raw: &str) -> Result<Role, UnknownRole> {
    match raw.to_ascii_lowercase().as_str() {
        "visitor" => Ok(Role::Visitor),
        "curator" => Ok(Role::Curator),
        "admin" => Ok(Role::Admin),
        _ => Err(UnknownRole {
            found: raw.to_owned(),
        }),
    }
}

/// Which input was refused, and why. The `Display` names the field for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    #[error("username: {0}")]
    Username(#[source] IdError),
    #[error("password: {0}")]
    Password(#[source] PasswordError),
    #[error("displayName: {0}")]
    DisplayName(#[source] TextError),
    #[error("role: {0}")]
    Role(#[source] UnknownRole),
    #[error("user id: {0}")]
    UserId(#[source] IdError),
}

/// A username: exactly a valid [`UserId`] (1 to 64 ASCII letters, digits, `-` or `_`).
pub fn parse_username(raw: &str) -> Result<UserId, InvalidInput> {
    UserId::parse(raw).map_err(InvalidInput::Username)
}

/// Everything a new account needs, checked.
#[derive(Debug, Clone)]
pub struct Registration {
    pub username: UserId,
    pub password: Password,
    pub display_name: PersonName,
}

impl Registration {
    pub fn parse(
        username: &str,
        password: String,
        display_name: String,
    ) -> Result<Self, InvalidInput> {
        Ok(Self {
            username: parse_username(username)?,
            password: Password::parse(password).map_err(InvalidInput::Password)?,
            display_name: PersonName::parse(display_name).map_err(InvalidInput::DisplayName)?,
        })
    }
}

/// What the store knows about a presented refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshState {
    pub used: bool,
    pub revoked: bool,
    pub expires_at: SystemTime,
}

/// Why a refresh token is not accepted. Clients see one answer for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefreshRejection {
    #[error("refresh token is unknown")]
    Unknown,
    #[error("refresh token has expired")]
    Expired,
    #[error("refresh token's family was revoked")]
    Revoked,
    #[error("refresh token was already used; its family is now revoked")]
    Reused,
}

/// What presenting a refresh token leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshDecision {
    /// Mark it used and issue its successor in the same family.
    Rotate,
    /// A used token came back: someone holds a copy. Revoke the whole family, then refuse.
    RevokeFamily,
    /// Refuse, changing nothing.
    Reject(RefreshRejection),
}

/// Decides what to do with a presented refresh token (`None`: the store does not know it).
pub fn decide_refresh(state: Option<&RefreshState>, now: SystemTime) -> RefreshDecision {
    let Some(state) = state else {
        return RefreshDecision::Reject(RefreshRejection::Unknown);
    };
    if state.revoked {
        RefreshDecision::Reject(RefreshRejection::Revoked)
    } else if state.used {
        RefreshDecision::RevokeFamily
    } else if state.expires_at <= now {
        RefreshDecision::Reject(RefreshRejection::Expired)
    } else {
        RefreshDecision::Rotate
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn passwords_are_counted_in_characters_and_bounded() {
        assert!(matches!(
            Password::parse("short"),
            Err(PasswordError::TooShort { len: 5 })
        ));
        assert!(Password::parse("é".repeat(10)).is_ok());
        assert!(matches!(
            Password::parse("é".repeat(9)),
            Err(PasswordError::TooShort { len: 9 })
        ));
        assert!(Password::parse("x".repeat(256)).is_ok());
        assert!(matches!(
            Password::parse("x".repeat(257)),
            Err(PasswordError::TooLong { len: 257 })
        ));
    }

    #[test]
    fn a_password_never_prints() {
        let p = Password::parse("correct horse battery").map(|p| format!("{p:?}"));
        assert_eq!(p.as_deref(), Ok("Password(<redacted>)"));
    }

    #[test]
    fn usernames_are_user_ids() {
        assert!(parse_username("ada_lovelace-1").is_ok());
        for bad in ["", "ada lovelace", "ada@example.org", &"a".repeat(65)] {
            assert!(
                matches!(parse_username(bad), Err(InvalidInput::Username(_))),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn a_refused_registration_names_its_field() {
        let err = |u: &str, p: &str, d: &str| {
            Registration::parse(u, p.into(), d.into())
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert!(err("ada", "long enough!", "Ada").is_ok());
        assert!(err("a d a", "long enough!", "Ada").is_err_and(|m| m.starts_with("username:")));
        assert!(err("ada", "short", "Ada").is_err_and(|m| m.starts_with("password:")));
        assert!(err("ada", "long enough!", " ").is_err_and(|m| m.starts_with("displayName:")));
        assert!(err("ada", "long enough!", "A\u{7}").is_err_and(|m| m.starts_with("displayName:")));
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in [Role::Visitor, Role::Curator, Role::Admin] {
            assert_eq!(parse_role(role_name(role)), Ok(role));
        }
        assert_eq!(parse_role("Curator"), Ok(Role::Curator));
        assert!(parse_role("root").is_err());
    }

    fn state(used: bool, revoked: bool, expires_in: i64) -> RefreshState {
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let expires_at = if expires_in >= 0 {
            base + Duration::from_secs(expires_in.unsigned_abs())
        } else {
            base - Duration::from_secs(expires_in.unsigned_abs())
        };
        RefreshState {
            used,
            revoked,
            expires_at,
        }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
    }

    #[test]
    fn a_fresh_token_rotates() {
        assert_eq!(
            decide_refresh(Some(&state(false, false, 60)), now()),
            RefreshDecision::Rotate
        );
    }

    #[test]
    fn a_used_token_revokes_its_family() {
        assert_eq!(
            decide_refresh(Some(&state(true, false, 60)), now()),
            RefreshDecision::RevokeFamily
        );
        // Even after expiry: the copy is evidence of theft either way.
        assert_eq!(
            decide_refresh(Some(&state(true, false, -60)), now()),
            RefreshDecision::RevokeFamily
        );
    }

    #[test]
    fn revoked_expired_and_unknown_tokens_are_refused_without_side_effects() {
        assert_eq!(
            decide_refresh(Some(&state(true, true, 60)), now()),
            RefreshDecision::Reject(RefreshRejection::Revoked)
        );
        assert_eq!(
            decide_refresh(Some(&state(false, true, 60)), now()),
            RefreshDecision::Reject(RefreshRejection::Revoked)
        );
        assert_eq!(
            decide_refresh(Some(&state(false, false, 0)), now()),
            RefreshDecision::Reject(RefreshRejection::Expired)
        );
        assert_eq!(
            decide_refresh(None, now()),
            RefreshDecision::Reject(RefreshRejection::Unknown)
        );
    }
}
