//! The write side's own state in Postgres (schema `commands`): accounts, idempotency keys and
//! the little aggregate state commands are decided on. Read models live elsewhere.

use gallery_infra::Migrations;
use tokio_postgres::Client;

/// The `commands` schema's tables: `migrations/*.sql`, each applied once, in order. Append
/// only. Versions 100 and up are the accounts'.
pub const MIGRATIONS: Migrations = Migrations {
    name: "commands",
    history: "commands.schema_migrations",
    lock: 0x0063_6f6d_6d61_6e64,
    steps: gallery_infra::steps![
        1 => "0001_idempotency_keys.sql",
        2 => "0002_aggregates.sql",
        3 => "0003_attempt_owner_and_event.sql",
        4 => "0004_decided_at.sql",
        5 => "0005_unsettled_until.sql",
        100 => "0100_users.sql",
        101 => "0101_refresh_tokens.sql",
    ],
};

/// Why the write side's database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("postgres: {context}")]
    Postgres {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A row lacks a column the code reads, or holds it in another type (a schema change).
    #[error(transparent)]
    Column(#[from] gallery_infra::ColumnError),
    #[error("postgres pool")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// Every lease id this process tried is held by another session.
    #[error("no free idempotency lease after {tries} random ids")]
    NoLease { tries: usize },
    /// The connection holding the process's lease closed; the next claim takes it again.
    #[error("the idempotency lease's connection is lost")]
    LeaseLost,
    #[error(transparent)]
    Migration(#[from] gallery_infra::MigrationError),
    /// A stored row holds a value no type of the write side spells.
    #[error("a stored {table} row")]
    Stored {
        table: &'static str,
        #[source]
        source: gallery_schemas::UnknownStatus,
    },
}

impl DbError {
    pub(crate) fn pg(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |source| DbError::Postgres { context, source }
    }

    /// Whether retrying may help: every failure but a row the code cannot read.
    pub(crate) fn is_unavailable(&self) -> bool {
        !matches!(self, DbError::Column(_))
    }
}

/// Brings the `commands` schema up to date. Safe to call from several processes at once.
pub async fn migrate(client: &mut Client) -> Result<(), DbError> {
    let tx = client
        .transaction()
        .await
        .map_err(DbError::pg("begin migration"))?;
    MIGRATIONS.lock(&tx).await?;
    tx.batch_execute("CREATE SCHEMA IF NOT EXISTS commands")
        .await
        .map_err(DbError::pg("create commands schema"))?;
    MIGRATIONS.apply(&tx).await?;
    tx.commit().await.map_err(DbError::pg("commit migration"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_migrations_ascend() {
        assert!(super::MIGRATIONS.ascending());
        assert_eq!(super::MIGRATIONS.steps.len(), 7);
    }
}
