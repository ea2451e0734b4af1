//! Schema migrations in Postgres: numbered steps, each applied once and recorded in a history
//! table, inside the caller's transaction.
//!
//! The caller owns the transaction, so what it does around the migrations (create a schema,
//! create a read-model generation and point views at it) commits or rolls back with them, and
//! it serialises concurrent starts with [`Migrations::lock`], a transaction-scoped advisory
//! lock: the second process to start waits, then finds every step recorded and applies none.
//! A step that fails rolls back everything the transaction did; the error names the step.
//!
//! Steps are append-only: a released step is never edited, a change is a new step. Their SQL
//! lives in `.sql` files beside the crate that owns the tables, included at compile time.
//!
//! Written here rather than taken from `refinery` (which runs `.sql` files on tokio-postgres
//! too): refinery opens and commits its own transactions on the client it is given, so the
//! read model's migrations could not commit together with the generation they are applied to
//! (a rebuild applies every step into a new, not yet live schema, then the views are pointed
//! at it in the same transaction), and it takes no lock, so two roles starting at once would
//! both apply a step. Both are what this runner is for; the rest (numbered steps, a history
//! table, SQL included at compile time) is a few lines.

use tokio_postgres::Transaction;

/// One step: its version (ascending, unique) and its SQL (one or more statements).
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub sql: &'static str,
}

/// The steps of a crate's `migrations/` directory: `steps![1 => "0001_users.sql", ...]` is
/// the `&[Migration]` whose SQL is each file's, included at compile time.
#[macro_export]
macro_rules! steps {
    ($($version:literal => $file:literal),+ $(,)?) => {
        &[$($crate::Migration {
            version: $version,
            sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $file)),
        }),+]
    };
}

/// The migrations of one set of tables.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    /// What they build, for logs and errors (`commands`, `read model`).
    pub name: &'static str,
    /// The history table, schema-qualified unless it follows the transaction's `search_path`;
    /// created when missing, with a `version integer` primary key and an `applied_at` time.
    pub history: &'static str,
    /// The key of the advisory lock that serialises the processes applying them.
    pub lock: i64,
    /// In ascending version order.
    pub steps: &'static [Migration],
}

/// A migration could not be applied (the transaction is to be rolled back).
#[derive(Debug, thiserror::Error)]
#[error("{name} migrations: {action}{}", version.map(|v| format!(" (version {v})")).unwrap_or_default())]
pub struct MigrationError {
    pub name: &'static str,
    /// What was being done (`lock`, `read history`, `apply`, `record`).
    pub action: &'static str,
    /// The step, when one was being applied or recorded.
    pub version: Option<i32>,
    #[source]
    pub source: tokio_postgres::Error,
}

impl Migrations {
    fn error(
        &self,
        action: &'static str,
        version: Option<i32>,
    ) -> impl FnOnce(tokio_postgres::Error) -> MigrationError {
        let name = self.name;
        move |source| MigrationError {
            name,
            action,
            version,
            source,
        }
    }

    /// Waits for the other processes applying these migrations to commit or roll back; held
    /// until `tx` ends.
    pub async fn lock(&self, tx: &Transaction<'_>) -> Result<(), MigrationError> {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&self.lock])
            .await
            .map(drop)
            .map_err(self.error("lock", None))
    }

    /// Applies the steps the history does not record, in order, inside `tx`; returns the
    /// versions applied. Call under [`Migrations::lock`].
    pub async fn apply(&self, tx: &Transaction<'_>) -> Result<Vec<i32>, MigrationError> {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} (
                 version    integer     PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
            self.history
        ))
        .await
        .map_err(self.error("create history", None))?;
        let recorded = tx
            .query(&format!("SELECT version FROM {}", self.history), &[])
            .await
            .map_err(self.error("read history", None))?;
        let mut applied_before = Vec::with_capacity(recorded.len());
        for row in &recorded {
            applied_before.push(
                row.try_get::<_, i32>("version")
                    .map_err(self.error("read history", None))?,
            );
        }
        let record = format!("INSERT INTO {} (version) VALUES ($1)", self.history);
        let mut applied = Vec::new();
        for step in self.steps {
            if applied_before.contains(&step.version) {
                continue;
            }
            tx.batch_execute(step.sql)
                .await
                .map_err(self.error("apply", Some(step.version)))?;
            tx.execute(&record, &[&step.version])
                .await
                .map_err(self.error("record", Some(step.version)))?;
            tracing::info!(
                migrations = self.name,
                version = step.version,
                "applied migration"
            );
            applied.push(step.version);
        }
        Ok(applied)
    }

    /// Whether the versions strictly ascend (each crate checks its list in a unit test).
    pub fn ascending(&self) -> bool {
        self.steps.windows(2).all(|w| w[0].version < w[1].version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: &[Migration] = &[
        Migration {
            version: 1,
            sql: "CREATE TABLE a ()",
        },
        Migration {
            version: 3,
            sql: "CREATE TABLE b ()",
        },
    ];

    fn migrations(steps: &'static [Migration]) -> Migrations {
        Migrations {
            name: "test",
            history: "schema_migrations",
            lock: 1,
            steps,
        }
    }

    #[test]
    fn versions_must_strictly_ascend() {
        assert!(migrations(STEPS).ascending());
        const SAME: &[Migration] = &[
            Migration {
                version: 2,
                sql: "",
            },
            Migration {
                version: 2,
                sql: "",
            },
        ];
        assert!(!migrations(SAME).ascending());
        const REVERSED: &[Migration] = &[STEPS[1], STEPS[0]];
        assert!(!migrations(REVERSED).ascending());
    }
}
