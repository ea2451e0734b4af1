//! Consumers that fold events into read models, exactly-once in effect.
//!
//! The Postgres projector applies a batch of facts and stores the next offset of every
//! partition it read in the same transaction, and on start seeks to those stored offsets:
//! Kafka's committed group offsets are advisory only. Like facts have set semantics (the
//! latest fact per artwork and user wins), so replaying a fact changes nothing.

mod dead_letter;
mod error;
pub mod fold;
mod postgres;
mod runner;

pub use dead_letter::{DeadLetter, DeadLetterSink, headers as dead_letter_headers};
pub use error::ProjectionError;
pub use postgres::{PostgresStore, migrate};
pub use runner::{Projector, ProjectorConfig};
