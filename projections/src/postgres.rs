//! The Postgres read model of likes, and the offsets stored with it.

use std::collections::HashMap;

use tokio_postgres::{Client, GenericClient, Transaction};

use crate::error::ProjectionError;
use crate::fold::{LikeBatch, LikeKey};

/// Schema changes, applied in order, each once. Append only.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE projection_offsets (
         projection  text    NOT NULL,
         topic       text    NOT NULL,
         partition   integer NOT NULL,
         next_offset bigint  NOT NULL CHECK (next_offset >= 0),
         PRIMARY KEY (projection, topic, partition)
     );
     CREATE TABLE artwork_likes (
         artwork_id     text    NOT NULL,
         user_id        text    NOT NULL,
         liked          boolean NOT NULL,
         event_id       uuid    NOT NULL,
         occurred_at_ms bigint  NOT NULL,
         PRIMARY KEY (artwork_id, user_id)
     );
     CREATE INDEX artwork_likes_by_user ON artwork_likes (user_id, occurred_at_ms DESC)
         WHERE liked;
     CREATE TABLE artwork_stats (
         artwork_id text   PRIMARY KEY,
         like_count bigint NOT NULL DEFAULT 0 CHECK (like_count >= 0)
     );",
)];

/// Key of the advisory lock that serialises migrations between processes.
const MIGRATION_LOCK: i64 = 0x0067_616c_6c65_7279;

/// Brings the read-model schema up to date. Safe to call from several processes at once.
pub async fn migrate(client: &mut Client) -> Result<(), ProjectionError> {
    let tx = client
        .transaction()
        .await
        .map_err(ProjectionError::pg("begin migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(ProjectionError::pg("lock migrations"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(ProjectionError::pg("create schema_migrations"))?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(ProjectionError::pg("read schema_migrations"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(ProjectionError::pg("apply migration"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(ProjectionError::pg("record migration"))?;
        tracing::info!(version, "applied read-model migration");
    }
    tx.commit()
        .await
        .map_err(ProjectionError::pg("commit migration"))
}

/// One projection's view of Postgres.
#[derive(Debug)]
pub struct PostgresStore {
    projection: String,
}

/// A batch ready to be written: folded facts plus the next offset per partition.
#[derive(Debug, Default)]
pub struct Batch {
    pub likes: LikeBatch,
    /// partition -> offset of the next message to read.
    pub next_offsets: HashMap<i32, i64>,
}

impl PostgresStore {
    pub fn new(projection: impl Into<String>) -> Self {
        Self {
            projection: projection.into(),
        }
    }

    /// The stored next offset of every partition of `topic` this projection has read.
    pub async fn offsets(
        &self,
        client: &impl GenericClient,
        topic: &str,
    ) -> Result<HashMap<i32, i64>, ProjectionError> {
        let rows = client
            .query(
                "SELECT partition, next_offset FROM projection_offsets
                 WHERE projection = $1 AND topic = $2",
                &[&self.projection, &topic],
            )
            .await
            .map_err(ProjectionError::pg("read offsets"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Applies `batch` and records its offsets in one transaction. Messages below the stored
    /// offsets were applied already (by an earlier run or a concurrent projector) and are
    /// skipped by the caller through [`PostgresStore::lock_offsets`].
    pub async fn apply(
        &self,
        tx: &Transaction<'_>,
        topic: &str,
        batch: &Batch,
    ) -> Result<(), ProjectionError> {
        if !batch.likes.is_empty() {
            apply_likes(tx, &batch.likes).await?;
        }
        let (partitions, offsets): (Vec<i32>, Vec<i64>) =
            batch.next_offsets.iter().map(|(p, o)| (*p, *o)).unzip();
        tx.execute(
            "INSERT INTO projection_offsets (projection, topic, partition, next_offset)
             SELECT $1, $2, p, o FROM unnest($3::integer[], $4::bigint[]) AS t(p, o)
             ON CONFLICT (projection, topic, partition)
             DO UPDATE SET next_offset = GREATEST(projection_offsets.next_offset, excluded.next_offset)",
            &[&self.projection, &topic, &partitions, &offsets],
        )
        .await
        .map_err(ProjectionError::pg("store offsets"))?;
        Ok(())
    }

    /// Locks the offset rows of `partitions` for this transaction and returns the stored
    /// next offsets, so two projectors never apply the same messages.
    pub async fn lock_offsets(
        &self,
        tx: &Transaction<'_>,
        topic: &str,
        partitions: &[i32],
    ) -> Result<HashMap<i32, i64>, ProjectionError> {
        tx.execute(
            "INSERT INTO projection_offsets (projection, topic, partition, next_offset)
             SELECT $1, $2, p, 0 FROM unnest($3::integer[]) AS t(p)
             ON CONFLICT DO NOTHING",
            &[&self.projection, &topic, &partitions],
        )
        .await
        .map_err(ProjectionError::pg("create offset rows"))?;
        let rows = tx
            .query(
                "SELECT partition, next_offset FROM projection_offsets
                 WHERE projection = $1 AND topic = $2 AND partition = ANY($3)
                 ORDER BY partition FOR UPDATE",
                &[&self.projection, &topic, &partitions],
            )
            .await
            .map_err(ProjectionError::pg("lock offsets"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

async fn apply_likes(tx: &Transaction<'_>, likes: &LikeBatch) -> Result<(), ProjectionError> {
    let (artworks, users): (Vec<&str>, Vec<&str>) =
        likes.keys().map(|(a, u)| (a.as_str(), u.as_str())).unzip();
    let rows = tx
        .query(
            "SELECT l.artwork_id, l.user_id, l.liked
             FROM artwork_likes l
             JOIN unnest($1::text[], $2::text[]) AS k(a, u) ON l.artwork_id = k.a AND l.user_id = k.u
             ORDER BY l.artwork_id, l.user_id
             FOR UPDATE OF l",
            &[&artworks, &users],
        )
        .await
        .map_err(ProjectionError::pg("read like states"))?;
    let stored: HashMap<LikeKey, bool> = rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    let plan = likes.plan(&stored);

    let mut a = Vec::with_capacity(plan.upserts.len());
    let mut u = Vec::with_capacity(plan.upserts.len());
    let mut liked = Vec::with_capacity(plan.upserts.len());
    let mut ids = Vec::with_capacity(plan.upserts.len());
    let mut at = Vec::with_capacity(plan.upserts.len());
    for ((artwork, user), latest) in &plan.upserts {
        a.push(artwork.as_str());
        u.push(user.as_str());
        liked.push(latest.liked);
        ids.push(latest.event_id);
        at.push(latest.occurred_at_ms);
    }
    tx.execute(
        "INSERT INTO artwork_likes (artwork_id, user_id, liked, event_id, occurred_at_ms)
         SELECT * FROM unnest($1::text[], $2::text[], $3::boolean[], $4::uuid[], $5::bigint[])
         ON CONFLICT (artwork_id, user_id) DO UPDATE
         SET liked = excluded.liked, event_id = excluded.event_id,
             occurred_at_ms = excluded.occurred_at_ms",
        &[&a, &u, &liked, &ids, &at],
    )
    .await
    .map_err(ProjectionError::pg("upsert likes"))?;

    if !plan.count_deltas.is_empty() {
        let (artworks, deltas): (Vec<&str>, Vec<i64>) = plan
            .count_deltas
            .iter()
            .map(|(a, d)| (a.as_str(), *d))
            .unzip();
        // Create missing rows at 0, then add: a CHECK holds at every step, so a count can
        // never be written below zero.
        tx.execute(
            "INSERT INTO artwork_stats (artwork_id)
             SELECT unnest($1::text[]) ORDER BY 1
             ON CONFLICT (artwork_id) DO NOTHING",
            &[&artworks],
        )
        .await
        .map_err(ProjectionError::pg("create like counts"))?;
        tx.execute(
            "UPDATE artwork_stats s SET like_count = s.like_count + d.delta
             FROM unnest($1::text[], $2::bigint[]) AS d(artwork_id, delta)
             WHERE s.artwork_id = d.artwork_id",
            &[&artworks, &deltas],
        )
        .await
        .map_err(ProjectionError::pg("update like counts"))?;
    }
    Ok(())
}
