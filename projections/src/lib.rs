//! Consumers that fold events into read models, exactly-once in effect.
//!
//! The Postgres projector applies a batch of facts and stores the next offset of every
//! partition it read in the same transaction, and on start seeks to those stored offsets:
//! Kafka's committed group offsets are advisory only. Every fold is idempotent besides: facts
//! with set semantics (likes, favorites) keep the latest fact per artwork and user, and
//! everything else is keyed by its event or entity id, so replaying an event changes nothing.
//!
//! An event is applied once, even when the log holds it twice (a command re-sent after the
//! command service died between Kafka's acknowledgement and its answer, possibly after newer
//! facts of the pair). Both read models remember, per like and favorite event, the position
//! (topic, partition, offset) of the message that first applied it, written with the batch:
//! 1. a message whose event is remembered at another position is a copy: no change at all;
//! 2. the same message read again has the same position and is applied again as before, so a
//!    replay after a crash between the positions and the state loses nothing (a set of ids
//!    seen would take it for a copy and lose the fact for good);
//! 3. all facts of an artwork share one partition, and positions are kept per artwork, so the
//!    first position of an event is the same in every run, every batching and every rebuild.
//!
//! See [`fold::sets`] for the fold and its tests.
//!
//! The Scylla projector ([`scylla`]) folds the interactions with the same folds into absolute
//! values written with offset-derived timestamps, and stores its offsets after each batch.
//!
//! Instances of a projection share its partitions through a Kafka consumer group (see `GroupSettings`):
//! an assigned partition resumes at the offset its store holds, never at Kafka's.
//!
//! What each module owns: `fold` (the pure folds, of both read models), `postgres` (the read
//! model's tables in Postgres: the batch, its writes per table in `postgres/`, the stored
//! offsets, connections; the migrations are `migrations/*.sql`, and every statement longer
//! than a line that is not composed from column lists is a file of `sql/`, named by what it
//! does and loaded at compile time), `projector` (the Postgres
//! projector's session loop), `consume` (reading the topics: batches, decoding, dead letters,
//! partitions), `group` (consumer-group membership, rebalances, lag), `scylla` (the Scylla
//! projector), `generations`, `rebuild` and `deployment` (generations of the read model, their
//! rebuild and switch, the deployment a read model belongs to), `settings` (the `projections`
//! section of the configuration), `dead_letter`, `metrics`, `error`.

mod consume;
mod dead_letter;
mod deployment;
mod error;
pub mod fold;
mod generations;
mod group;
pub mod metrics;
mod postgres;
mod projector;
mod rebuild;
pub mod scylla;
pub mod settings;

pub use dead_letter::{DeadLetter, DeadLetterSink, headers as dead_letter_headers};
pub use deployment::ReadModelStore;
pub use error::{CqlError, ProjectionError, RowError};
pub use generations::Generation;
pub use group::GroupSettings;
pub use postgres::catalog::{
    ARTWORK_COLUMNS, EXHIBITION_COLUMNS, read_artwork as read_artwork_row,
    read_exhibition as read_exhibition_row,
};
pub use postgres::generation::{COLUMNS as JOB_COLUMNS, read_row as read_job_row};
pub use postgres::interactions::{COMMENT_COLUMNS, read_comment as read_comment_row};
pub use postgres::{PostgresStore, migrate, offsets_of};
pub use projector::{Projector, ProjectorConfig, Target};
pub use rebuild::{
    GarbageReport, RebuildOptions, RebuildReport, SWITCH_WINDOW, collect_garbage, rebuild,
};
