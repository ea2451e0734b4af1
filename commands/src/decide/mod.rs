//! The pure core of the write side: given the state a command needs and the command, decide
//! the event, or refuse with a reason. No I/O, no clock, no randomness: the caller passes ids
//! and the time, so every rule is tested synchronously (given / when / then).

pub mod catalog;
pub mod generation;
pub mod interactions;

use gallery_schemas::{IdError, TextError};

/// Why a command was refused by its rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{field}: {source}")]
    Id {
        field: &'static str,
        #[source]
        source: IdError,
    },
    #[error("{field}: {source}")]
    Text {
        field: &'static str,
        #[source]
        source: TextError,
    },
    #[error("{field} must be between {min} and {max}, got {got}")]
    OutOfRange {
        field: &'static str,
        min: i64,
        max: i64,
        got: i64,
    },
    #[error("{field}: {rule}")]
    Rule {
        field: &'static str,
        rule: &'static str,
    },
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("forbidden: {reason}")]
    Forbidden { reason: &'static str },
    #[error("conflict: {reason}")]
    Conflict { reason: &'static str },
}

impl Refusal {
    pub(crate) fn text(field: &'static str) -> impl FnOnce(TextError) -> Self {
        move |source| Refusal::Text { field, source }
    }

    pub(crate) fn id(field: &'static str) -> impl FnOnce(IdError) -> Self {
        move |source| Refusal::Id { field, source }
    }
}

/// Checks `got` is within `min..=max`.
pub(crate) fn in_range(field: &'static str, got: i64, min: i64, max: i64) -> Result<(), Refusal> {
    if (min..=max).contains(&got) {
        Ok(())
    } else {
        Err(Refusal::OutOfRange {
            field,
            min,
            max,
            got,
        })
    }
}
