//! The write side's own state in Postgres (schema `commands`): accounts, idempotency keys and
//! the little aggregate state commands are decided on. Read models live elsewhere.

use tokio_postgres::Client;

/// Schema changes of the `commands` schema, applied in order, each once. Append only.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE commands.idempotency_keys (
             user_id      text        NOT NULL,
             key          text        NOT NULL,
             request_hash text        NOT NULL,
             response     jsonb,
             created_at   timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (user_id, key)
         );",
    ),
    (
        2,
        "CREATE TABLE commands.exhibitions (
             exhibition_id uuid PRIMARY KEY,
             curator_id    text NOT NULL,
             status        text NOT NULL CHECK (status IN ('draft', 'published', 'closed')),
             artworks      bigint NOT NULL DEFAULT 0 CHECK (artworks >= 0)
         );
         CREATE TABLE commands.artworks (
             artwork_id    text PRIMARY KEY,
             exhibition_id uuid NOT NULL,
             removed       boolean NOT NULL DEFAULT false
         );
         CREATE TABLE commands.comments (
             comment_id uuid PRIMARY KEY,
             artwork_id text NOT NULL,
             author_id  text NOT NULL,
             deleted    boolean NOT NULL DEFAULT false
         );
         CREATE TABLE commands.generations (
             request_id uuid PRIMARY KEY,
             user_id    text NOT NULL,
             cancelled  boolean NOT NULL DEFAULT false
         );",
    ),
    // An attempt's owner (the lease of its process) and deadline, and the event it decided
    // (the exact message, stored before it is sent, so that a takeover can look for those
    // bytes in the log, and send them if they are not there) with the id of what it created.
    (
        3,
        "ALTER TABLE commands.idempotency_keys
             ADD COLUMN owner       integer,
             ADD COLUMN attempt     uuid,
             ADD COLUMN expires_at  timestamptz,
             ADD COLUMN topic       text,
             ADD COLUMN message_key text,
             ADD COLUMN payload     bytea,
             ADD COLUMN result_id   text;",
    ),
    // When an attempt stored its decided event (before sending it; a takeover keeps it): a
    // takeover looks for the event in the log from then on.
    (
        4,
        "ALTER TABLE commands.idempotency_keys ADD COLUMN decided_at timestamptz;",
    ),
    // Until when an attempt whose send failed may still see its event written (a request the
    // broker holds but has not yet appended or replicated): nobody takes over before, so the
    // takeover's search sees what that send wrote.
    (
        5,
        "ALTER TABLE commands.idempotency_keys ADD COLUMN unsettled_until timestamptz;",
    ),
    // Accounts (versions 100 and up). The user id is the username; usernames are unique
    // ignoring case, so "Ada" cannot pass for "ada".
    (
        100,
        "CREATE TABLE commands.users (
             user_id       text        PRIMARY KEY,
             display_name  text        NOT NULL,
             password_hash text        NOT NULL,
             role          text        NOT NULL DEFAULT 'visitor'
                                       CHECK (role IN ('visitor', 'curator', 'admin')),
             created_at    timestamptz NOT NULL DEFAULT now()
         );
         CREATE UNIQUE INDEX users_user_id_ci ON commands.users (lower(user_id));",
    ),
    // Refresh tokens, stored as SHA-256 digests. A family is one login's chain of rotations.
    (
        101,
        "CREATE TABLE commands.refresh_tokens (
             token_hash bytea       PRIMARY KEY CHECK (length(token_hash) = 32),
             user_id    text        NOT NULL REFERENCES commands.users (user_id),
             family_id  uuid        NOT NULL,
             expires_at timestamptz NOT NULL,
             used       boolean     NOT NULL DEFAULT false,
             used_at    timestamptz,
             revoked    boolean     NOT NULL DEFAULT false,
             created_at timestamptz NOT NULL DEFAULT now()
         );
         CREATE INDEX refresh_tokens_family ON commands.refresh_tokens (family_id);
         CREATE INDEX refresh_tokens_expiry ON commands.refresh_tokens (expires_at);",
    ),
];

/// Key of the advisory lock that serialises migrations between processes.
const MIGRATION_LOCK: i64 = 0x0063_6f6d_6d61_6e64;

/// Why the write side's database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("postgres: {context}")]
    Postgres {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("postgres pool")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// Every lease id this process tried is held by another session.
    #[error("no free idempotency lease after {tries} random ids")]
    NoLease { tries: usize },
    /// The connection holding the process's lease closed; the next claim takes it again.
    #[error("the idempotency lease's connection is lost")]
    LeaseLost,
}

impl DbError {
    pub(crate) fn pg(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |source| DbError::Postgres { context, source }
    }
}

/// Brings the `commands` schema up to date. Safe to call from several processes at once.
pub async fn migrate(client: &mut Client) -> Result<(), DbError> {
    let tx = client
        .transaction()
        .await
        .map_err(DbError::pg("begin migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(DbError::pg("lock migrations"))?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS commands;
         CREATE TABLE IF NOT EXISTS commands.schema_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(DbError::pg("create commands schema"))?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM commands.schema_migrations", &[])
        .await
        .map_err(DbError::pg("read migrations"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(DbError::pg("apply migration"))?;
        tx.execute(
            "INSERT INTO commands.schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(DbError::pg("record migration"))?;
        tracing::info!(version, "applied commands migration");
    }
    tx.commit().await.map_err(DbError::pg("commit migration"))
}
