//! Bounded, printable text carried by events (titles, comments, prompts), parsed once at the
//! edge. Deserialising an event checks the same rules, so a consumer never sees text a
//! command would have refused.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not acceptable text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} characters long, at most {max} are allowed")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{kind} must not contain control characters (found U+{code:04X})")]
    Control { kind: &'static str, code: u32 },
}

/// Checks length (in characters) and content. Newlines are allowed only in multi-line text.
fn check(
    kind: &'static str,
    raw: &str,
    min: usize,
    max: usize,
    multiline: bool,
) -> Result<(), TextError> {
    let len = raw.chars().count();
    if len < min || (min > 0 && raw.trim().is_empty()) {
        return Err(TextError::Empty { kind });
    }
    if len > max {
        return Err(TextError::TooLong { kind, len, max });
    }
    if let Some(c) = raw
        .chars()
        .find(|c| c.is_control() && !(multiline && (*c == '\n' || *c == '\r' || *c == '\t')))
    {
        return Err(TextError::Control {
            kind,
            code: u32::from(c),
        });
    }
    Ok(())
}

/// Any character but a control, as a regular expression class (what single-line text holds).
const LINE_CHARS: &str = "[^\\x00-\\x1f\\x7f-\\x9f]";
/// Any character but a control other than a line break or a tab (what multi-line text holds).
const MULTILINE_CHARS: &str = "[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]";
/// A character that is neither a control nor white space (Unicode's `White_Space`, what
/// `str::trim` removes): required text holds at least one.
const VISIBLE_CHAR: &str =
    "[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

/// The rule of [`check`] as a JSON Schema: length bounds in characters, and a pattern for the
/// characters (no controls; line breaks and tabs in multi-line text; not blank when required).
fn json_schema(kind: &str, min: usize, max: usize, multiline: bool) -> serde_json::Value {
    let chars = if multiline {
        MULTILINE_CHARS
    } else {
        LINE_CHARS
    };
    let pattern = if min == 0 {
        format!("{chars}*")
    } else {
        format!("{chars}*{VISIBLE_CHAR}{chars}*")
    };
    let lines = if multiline {
        "no control characters but line breaks and tabs"
    } else {
        "one line, no control characters"
    };
    let blank = if min > 0 { ", not blank" } else { "" };
    crate::json_schema::string(
        &pattern,
        min,
        max,
        &format!("A {kind}: {min} to {max} characters, {lines}{blank}."),
    )
}

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, min = $min:expr, max = $max:expr, multiline = $ml:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl $name {
            /// Longest value accepted, in characters.
            pub const MAX_CHARS: usize = $max;

            pub fn parse(raw: impl Into<String>) -> Result<Self, TextError> {
                let raw = raw.into();
                check($kind, &raw, $min, $max, $ml)?;
                Ok(Self(raw))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The rule of [`Self::parse`] as a JSON Schema.
            pub fn json_schema() -> serde_json::Value {
                json_schema($kind, $min, $max, $ml)
            }
        }

        /// Serialized as its text, borrowed (no copy per event encoded).
        impl Serialize for $name {
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
            type Error = TextError;
            fn try_from(raw: String) -> Result<Self, TextError> {
                Self::parse(raw)
            }
        }

        impl From<$name> for String {
            fn from(t: $name) -> String {
                t.0
            }
        }
    };
}

text_type!(
    /// A title of an exhibition or an artwork.
    Title, "title", min = 1, max = 200, multiline = false
);
text_type!(
    /// A longer description; may be empty, may span lines.
    Description, "description", min = 0, max = 5000, multiline = true
);
text_type!(
    /// The text of a comment.
    CommentBody, "comment", min = 1, max = 2000, multiline = true
);
text_type!(
    /// A person's name (an artist, a user's display name).
    PersonName, "name", min = 1, max = 120, multiline = false
);
text_type!(
    /// The name of a style ("impressionism", "the-starry-night").
    StyleName, "style", min = 1, max = 64, multiline = false
);
text_type!(
    /// A text-to-image prompt or negative prompt.
    Prompt, "prompt", min = 1, max = 1000, multiline = true
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn limits_are_counted_in_characters_not_bytes() {
        assert!(Title::parse("é".repeat(200)).is_ok());
        assert_eq!(
            Title::parse("é".repeat(201)),
            Err(TextError::TooLong {
                kind: "title",
                len: 201,
                max: 200
            })
        );
    }

    #[test]
    fn control_characters_are_refused_newlines_only_where_multiline() {
        assert!(CommentBody::parse("two\nlines").is_ok());
        assert!(matches!(
            Title::parse("two\nlines"),
            Err(TextError::Control { code: 0x0A, .. })
        ));
        assert!(matches!(
            CommentBody::parse("bell\u{7}"),
            Err(TextError::Control { code: 7, .. })
        ));
    }

    #[test]
    fn blank_required_text_is_empty() {
        assert_eq!(
            CommentBody::parse("   "),
            Err(TextError::Empty { kind: "comment" })
        );
        assert!(Description::parse("").is_ok());
    }

    /// Strings near every rule: controls (line breaks and tabs among them), white space of
    /// several kinds, ordinary and wide characters, around the length bounds.
    fn near_the_rules() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('a'),
                Just('é'),
                Just('\u{1F3A8}'),
                Just(' '),
                Just('\u{a0}'),
                Just('\u{3000}'),
                Just('\u{2028}'),
                Just('\n'),
                Just('\r'),
                Just('\t'),
                Just('\u{0}'),
                Just('\u{7}'),
                Just('\u{7f}'),
                Just('\u{85}'),
                Just('\u{feff}'),
            ],
            0..70,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    fn agrees(schema: &serde_json::Value, raw: &str, parsed: bool) -> Result<(), TestCaseError> {
        let pattern = crate::json_schema::tests::compiled(schema["pattern"].as_str().unwrap_or(""));
        let len = raw.chars().count();
        let fits = |key: &str| schema[key].as_u64().and_then(|n| usize::try_from(n).ok());
        let within = fits("minLength").is_some_and(|min| len >= min)
            && fits("maxLength").is_some_and(|max| len <= max);
        prop_assert_eq!(pattern.is_match(raw) && within, parsed, "{:?}", raw);
        Ok(())
    }

    proptest! {
        #[test]
        fn the_json_schemas_accept_exactly_what_parse_accepts(raw in near_the_rules()) {
            agrees(&Title::json_schema(), &raw, Title::parse(raw.clone()).is_ok())?;
            agrees(&Description::json_schema(), &raw, Description::parse(raw.clone()).is_ok())?;
            agrees(&CommentBody::json_schema(), &raw, CommentBody::parse(raw.clone()).is_ok())?;
            agrees(&PersonName::json_schema(), &raw, PersonName::parse(raw.clone()).is_ok())?;
            agrees(&StyleName::json_schema(), &raw, StyleName::parse(raw.clone()).is_ok())?;
            agrees(&Prompt::json_schema(), &raw, Prompt::parse(raw.clone()).is_ok())?;
        }

        #[test]
        fn printable_text_within_limits_is_accepted(s in "[^\\p{Cc}]{1,200}") {
            prop_assume!(!s.trim().is_empty());
            prop_assert!(Title::parse(s.clone()).is_ok());
        }
    }
}
