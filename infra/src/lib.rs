//! Infrastructure every Gallery crate that runs against a real store needs once, not once per
//! crate: the Postgres migration runner ([`migrate`]), rows read by column name ([`row`]),
//! the restart with backoff of every long-running session ([`restart`]), what every crate's
//! settings share ([`settings`]: the refusal of a value with its key, the range and name checks,
//! secrets, the `postgres` section), with the `cql` feature the one error type of CQL calls
//! (`cql`), and with the `kafka` feature the rebalance callback of every consumer-group
//! member and the lag of a partition (`kafka`). Nothing here knows an event, a table or a topic of
//! Gallery's: the crates that own them call it.

#[cfg(feature = "cql")]
pub mod cql;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod migrate;
pub mod restart;
pub mod row;
pub mod settings;

#[cfg(feature = "cql")]
pub use cql::CqlError;
pub use migrate::{Migration, MigrationError, Migrations};
pub use restart::{Backoff, Restart};
pub use row::{ColumnError, Columns};
pub use settings::{Invalid, PostgresSettings, Secret};
