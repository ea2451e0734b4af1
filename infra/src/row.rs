//! Reading a Postgres row's columns by name, never by position: a column the row lacks, or
//! holds in another type (a schema change), is an error naming it instead of a panic.

use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

/// A column that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("postgres: column {column} cannot be read")]
pub struct ColumnError {
    pub column: &'static str,
    #[source]
    pub source: tokio_postgres::Error,
}

/// Reading a row's columns by name.
pub trait Columns {
    /// Column `name` as a `T`.
    fn column<'a, T: FromSql<'a>>(&'a self, name: &'static str) -> Result<T, ColumnError>;
}

impl Columns for Row {
    fn column<'a, T: FromSql<'a>>(&'a self, name: &'static str) -> Result<T, ColumnError> {
        self.try_get(name).map_err(|source| ColumnError {
            column: name,
            source,
        })
    }
}
