//! What every crate's settings share: the error of a refused value (its key and the reason),
//! the checks written once (a range, a name), a secret that never prints, and the Postgres
//! section every role that uses the database reads.
//!
//! Each crate owns the sections of the configuration it reads (`settings.rs` in the crate: one
//! `Deserialize + Default` type per section, its defaults and its `validate()` next to the
//! fields); the binary only composes them and layers the sources.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A configuration value refused: the key at fault (`section.key`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration key {key}: {reason}")]
pub struct Invalid {
    pub key: &'static str,
    pub reason: String,
}

/// The refusal of `key` for `reason`.
pub fn invalid(key: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        key,
        reason: reason.into(),
    }
}

/// `value` of `key` within `range`, else "must be between <start> and <end>".
pub fn between<T: PartialOrd + fmt::Display>(
    key: &'static str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<(), Invalid> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("must be between {} and {}", range.start(), range.end()),
        ))
    }
}

/// `value` of `key` at least `min`, else "must be at least <min>".
pub fn at_least<T: PartialOrd + fmt::Display>(
    key: &'static str,
    value: T,
    min: T,
) -> Result<(), Invalid> {
    if value >= min {
        Ok(())
    } else {
        Err(invalid(key, format!("must be at least {min}")))
    }
}

/// A name that goes into Kafka's names (a topic prefix, a transactional id, a group member):
/// ASCII letters, digits, `.`, `_` and `-`, of a length within `len`.
pub fn name(key: &'static str, value: &str, len: RangeInclusive<usize>) -> Result<(), Invalid> {
    let ok = len.contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!(
                "may hold only ASCII letters, digits, '.', '_' and '-' ({} to {})",
                len.start(),
                len.end()
            ),
        ))
    }
}

/// A string that never prints (connection strings with passwords, signing keys).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The `postgres` section: the database of the write side's tables and the read model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    /// A `postgres://` connection URL (or key-value string).
    pub url: Secret,
    /// Connections of each pool at most.
    pub pool_size: usize,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self {
            url: Secret::new("postgres://gallery:gallery@127.0.0.1:5432/gallery"),
            pool_size: 16,
        }
    }
}

impl PostgresSettings {
    pub fn validate(&self) -> Result<(), Invalid> {
        self.connection()?;
        at_least("postgres.pool_size", self.pool_size, 1)
    }

    /// The parsed connection settings.
    pub fn connection(&self) -> Result<tokio_postgres::Config, Invalid> {
        tokio_postgres::Config::from_str(self.url.expose())
            .map_err(|e| invalid("postgres.url", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_minimums_name_their_bounds() {
        assert_eq!(between("a.b", 5, 1..=10), Ok(()));
        let e = between("a.b", 11, 1..=10).unwrap_err();
        assert_eq!(
            (e.key, e.reason.as_str()),
            ("a.b", "must be between 1 and 10")
        );
        assert_eq!(
            at_least("a.c", 0, 1).unwrap_err().reason,
            "must be at least 1"
        );
    }

    #[test]
    fn a_name_is_ascii_letters_digits_dots_underscores_and_dashes_of_its_length() {
        assert_eq!(name("k", "gallery.test-1_a", 1..=100), Ok(()));
        assert_eq!(name("k", "", 0..=100), Ok(()));
        for bad in ["", "a b", "a/b", "é", &"x".repeat(101)] {
            let e = name("k", bad, 1..=100).unwrap_err();
            assert_eq!(e.key, "k", "{bad:?}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let s = PostgresSettings {
            url: Secret::new("postgres://u:hunter2@h/db"),
            pool_size: 1,
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn a_bad_postgres_url_or_an_empty_pool_is_refused_with_its_key() {
        assert_eq!(PostgresSettings::default().validate(), Ok(()));
        let url = PostgresSettings {
            url: Secret::new("postgres://h:notaport/db"),
            ..PostgresSettings::default()
        };
        assert_eq!(url.validate().unwrap_err().key, "postgres.url");
        let pool = PostgresSettings {
            pool_size: 0,
            ..PostgresSettings::default()
        };
        assert_eq!(pool.validate().unwrap_err().key, "postgres.pool_size");
    }
}
