//! The rules of the identifiers and texts, rendered as JSON Schema for the API documents: the
//! same constants and the same character classes their parsers check, so a document cannot
//! promise what a parser refuses. Patterns are ECMA-262 (what JSON Schema specifies) and read
//! the same in Python's and Rust's regular expressions.

use serde_json::{Value, json};

/// What follows `$` in every pattern: it keeps a search-based engine (Python's, which
/// property-based clients use) from reading `$` as "before a final line break" too. Rust's
/// `regex` has no lookahead and needs none (its `$` is the very end): strip it there.
pub const END_GUARD: &str = "(?![\\s\\S])";

/// `^body$`, matched against the whole value.
pub fn anchored(body: &str) -> String {
    format!("^{body}${END_GUARD}")
}

/// A string schema with a pattern and length bounds in characters.
pub fn string(pattern: &str, min: usize, max: usize, description: &str) -> Value {
    json!({
        "type": "string",
        "minLength": min,
        "maxLength": max,
        "pattern": anchored(pattern),
        "description": description,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    /// The regular expression of a document's pattern, for the parsers' agreement tests (Rust's
    /// `$` already means the very end, and it has no lookahead).
    pub(crate) fn compiled(pattern: &str) -> regex::Regex {
        let plain = pattern.strip_suffix(super::END_GUARD).unwrap_or(pattern);
        regex::Regex::new(plain).unwrap_or_else(|e| unreachable!("{pattern}: {e}"))
    }
}
