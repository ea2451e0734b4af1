//! Identifiers carried by events, parsed once at the edge.

use std::fmt;

/// Longest identifier accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} bytes long, at most {MAX_ID_LEN} are allowed")]
    TooLong { kind: &'static str, len: usize },
    #[error("{kind} may contain only ASCII letters, digits, '-' and '_' (found {found:?})")]
    BadChar { kind: &'static str, found: char },
}

fn check(kind: &'static str, raw: &str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if raw.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            len: raw.len(),
        });
    }
    if let Some(found) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(IdError::BadChar { kind, found });
    }
    Ok(())
}

/// The characters of an identifier, as a regular expression class.
const ID_CHARS: &str = "[A-Za-z0-9_-]";

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses a raw string: 1 to 64 ASCII letters, digits, `-` or `_`.
            pub fn parse(raw: &str) -> Result<Self, IdError> {
                check($kind, raw)?;
                Ok(Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The rule of [`Self::parse`] as a JSON Schema.
            pub fn json_schema() -> serde_json::Value {
                crate::json_schema::string(
                    &format!("{ID_CHARS}{{1,{MAX_ID_LEN}}}"),
                    1,
                    MAX_ID_LEN,
                    &format!("{} of 1 to {MAX_ID_LEN} ASCII letters, digits, '-' or '_'.", $kind),
                )
            }
        }

        /// Serialized as its text, borrowed (no copy per event encoded).
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(raw: String) -> Result<Self, IdError> {
                check($kind, &raw)?;
                Ok(Self(raw))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(raw: &str) -> Result<Self, IdError> {
                Self::parse(raw)
            }
        }
    };
}

id_type!(
    /// The id of an artwork; the Kafka key of every interaction with it.
    ArtworkId,
    "artwork id"
);
id_type!(
    /// The id of a user (the subject of their token).
    UserId,
    "user id"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_empty_long_and_odd_characters() {
        assert_eq!(
            ArtworkId::parse(""),
            Err(IdError::Empty { kind: "artwork id" })
        );
        assert!(matches!(
            ArtworkId::parse(&"a".repeat(65)),
            Err(IdError::TooLong { len: 65, .. })
        ));
        assert!(matches!(
            UserId::parse("a/b"),
            Err(IdError::BadChar { found: '/', .. })
        ));
        assert!(UserId::parse("ada_lovelace-1815").is_ok());
    }

    proptest! {
        #[test]
        fn the_json_schema_pattern_accepts_exactly_what_parse_accepts(raw in "[A-Za-z0-9_ /é\\-]{0,70}") {
            let schema = ArtworkId::json_schema();
            let pattern = crate::json_schema::tests::compiled(schema["pattern"].as_str().unwrap_or(""));
            prop_assert_eq!(pattern.is_match(&raw), ArtworkId::parse(&raw).is_ok(), "{:?}", raw);
        }

        #[test]
        fn valid_ids_round_trip(raw in "[A-Za-z0-9_-]{1,64}") {
            let id = ArtworkId::parse(&raw).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(id.as_str(), raw.as_str());
        }
    }
}
