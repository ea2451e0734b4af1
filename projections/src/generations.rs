//! Generations of the Postgres read model, and the switch between them.
//!
//! Every generation lives in its own Postgres schema, `read_v<N>`, with all of the read-model
//! tables and its own `projection_offsets`. `public.read_model_current` names the live one, and
//! `public` holds one view per read-model table (`public.artworks` is
//! `SELECT * FROM read_v<N>.artworks`), so readers query unqualified names and never learn
//! about generations. A switch replaces the views and the pointer in one transaction; a writer
//! locks the pointer row `FOR SHARE` in each batch, so it never writes into a generation that
//! is no longer live, and moves to the new one at its next batch.

use std::fmt;

use gallery_schemas::Topics;
use tokio_postgres::{GenericClient, Transaction};

use gallery_schemas::read_model;

use crate::deployment::{self, Owner, ReadModelStore};
use crate::error::ProjectionError;
use gallery_infra::Columns;

const LAYOUT: &str = "
    CREATE TABLE IF NOT EXISTS public.read_model_current (
        name        text        PRIMARY KEY,
        schema_name text        NOT NULL,
        switched_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE IF NOT EXISTS public.read_model_generations (
        schema_name text        PRIMARY KEY,
        number      integer     NOT NULL UNIQUE CHECK (number > 0),
        state       text        NOT NULL CHECK (state IN ('building', 'live', 'retired', 'failed')),
        created_at  timestamptz NOT NULL DEFAULT now(),
        switched_at timestamptz
    );
    CREATE TABLE IF NOT EXISTS public.read_model_deployment (
        name         text        PRIMARY KEY,
        topic_prefix text        NOT NULL,
        recorded_at  timestamptz NOT NULL DEFAULT now()
    );";

/// Class of the advisory locks by which a rebuild holds the generation it builds, for as long
/// as its connection lives (the second key is the generation's number): a `building`
/// generation nobody holds was abandoned.
const BUILD_LOCK: i32 = 0x6761_6c6c;

/// Tables of the read model from before generations, moved into the first one.
const LEGACY_TABLES: &[&str] = &[
    "schema_migrations",
    "projection_offsets",
    "artwork_likes",
    "artwork_stats",
    "artwork_favorites",
    "like_buckets",
    "artwork_views",
    "view_buckets",
    "comments",
    "users",
    "exhibitions",
    "artworks",
    "generation_jobs",
];

/// A generation's schema name, `read_v<N>`: only ever built from its number or parsed, so it
/// is safe to put into SQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Generation(u32);

impl Generation {
    pub fn number(&self) -> u32 {
        self.0
    }

    /// Parses `read_v<N>` (N > 0).
    pub fn parse(name: &str) -> Result<Self, ProjectionError> {
        name.strip_prefix("read_v")
            .filter(|n| !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse().ok())
            .map(Generation)
            .ok_or_else(|| ProjectionError::Stored {
                table: "read_model_current",
                column: "schema_name",
                value: name.to_owned(),
            })
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "read_v{}", self.0)
    }
}

/// Creates the pointer and the generations table, and the first generation when there is
/// none: empty, or holding the tables of a read model from before generations, moved in.
/// Returns the live generation and whether it was created now. Call under the migration lock.
pub(crate) async fn ensure_layout(
    tx: &Transaction<'_>,
) -> Result<(Generation, bool), ProjectionError> {
    tx.batch_execute(LAYOUT)
        .await
        .map_err(ProjectionError::pg("create read-model pointer"))?;
    if let Some(live) = live(tx).await? {
        return Ok((live, false));
    }
    let first = Generation(1);
    tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {first}"))
        .await
        .map_err(ProjectionError::pg("create first generation"))?;
    let legacy: Vec<String> = tx
        .query(
            include_str!("../sql/find_tables_from_before_generations.sql"),
            &[&LEGACY_TABLES],
        )
        .await
        .map_err(ProjectionError::pg("find tables from before generations"))?
        .iter()
        .map(|r| r.column("tablename"))
        .collect::<Result<_, _>>()?;
    for table in &legacy {
        tx.batch_execute(&format!("ALTER TABLE public.{table} SET SCHEMA {first}"))
            .await
            .map_err(ProjectionError::pg(
                "move a table into the first generation",
            ))?;
    }
    if !legacy.is_empty() {
        tracing::info!(generation = %first, tables = legacy.len(), "moved the read model into its first generation");
    }
    tx.execute(
        include_str!("../sql/record_first_generation.sql"),
        &[&first.to_string(), &(first.0 as i32)],
    )
    .await
    .map_err(ProjectionError::pg("record first generation"))?;
    tx.execute(
        "INSERT INTO public.read_model_current (name, schema_name) VALUES ($1, $2)",
        &[&read_model::PROJECTION, &first.to_string()],
    )
    .await
    .map_err(ProjectionError::pg("point at first generation"))?;
    Ok((first, true))
}

/// Refuses the read model of another deployment (see [`crate::deployment`]), and records the
/// topic prefix of `topics` with one that records none yet. Call under the migration lock,
/// after [`ensure_layout`].
pub(crate) async fn claim(tx: &Transaction<'_>, topics: &Topics) -> Result<(), ProjectionError> {
    let recorded: Option<String> = tx
        .query_opt(
            "SELECT topic_prefix FROM public.read_model_deployment WHERE name = $1",
            &[&read_model::PROJECTION],
        )
        .await
        .map_err(ProjectionError::pg("read the read model's deployment"))?
        .map(|r| r.column("topic_prefix"))
        .transpose()?;
    let held = topics_held(tx).await?;
    if deployment::owner(topics, ReadModelStore::Postgres, recorded.as_deref(), held)?
        == Owner::Unclaimed
    {
        tx.execute(
            "INSERT INTO public.read_model_deployment (name, topic_prefix) VALUES ($1, $2)",
            &[&read_model::PROJECTION, &topics.prefix()],
        )
        .await
        .map_err(ProjectionError::pg("record the read model's deployment"))?;
        tracing::info!(
            prefix = topics.prefix(),
            "recorded the deployment of the read model"
        );
    }
    Ok(())
}

/// The topics the offsets of every generation name.
async fn topics_held(tx: &Transaction<'_>) -> Result<Vec<String>, ProjectionError> {
    let generations = tx
        .query(include_str!("../sql/list_generations.sql"), &[])
        .await
        .map_err(ProjectionError::pg("list generations"))?;
    let mut topics = Vec::new();
    for row in generations {
        let generation = Generation::parse(row.column("schema_name")?)?;
        let rows = tx
            .query(
                &format!("SELECT DISTINCT topic FROM {generation}.projection_offsets"),
                &[],
            )
            .await
            .map_err(ProjectionError::pg("read the topics of the offsets"))?;
        for r in &rows {
            topics.push(r.column("topic")?);
        }
    }
    Ok(topics)
}

/// The live generation, if the layout exists and names one.
pub(crate) async fn live(
    client: &impl GenericClient,
) -> Result<Option<Generation>, ProjectionError> {
    let row = client
        .query_opt(
            "SELECT schema_name FROM public.read_model_current WHERE name = $1",
            &[&read_model::PROJECTION],
        )
        .await
        .map_err(ProjectionError::pg("read live generation"))?;
    row.map(|r| Generation::parse(r.column("schema_name")?))
        .transpose()
}

/// The live generation, with the pointer locked against a switch until `tx` ends.
pub(crate) async fn live_locked(
    tx: &Transaction<'_>,
    exclusive: bool,
) -> Result<Generation, ProjectionError> {
    let sql = if exclusive {
        "SELECT schema_name FROM public.read_model_current WHERE name = $1 FOR UPDATE"
    } else {
        "SELECT schema_name FROM public.read_model_current WHERE name = $1 FOR SHARE"
    };
    let row = tx
        .query_one(sql, &[&read_model::PROJECTION])
        .await
        .map_err(ProjectionError::pg("lock live generation"))?;
    Generation::parse(row.column("schema_name")?)
}

/// Creates the schema of a new generation (numbered after every earlier one) in state
/// `building`. Call under the migration lock.
pub(crate) async fn create(tx: &Transaction<'_>) -> Result<Generation, ProjectionError> {
    let row = tx
        .query_one(
            "SELECT COALESCE(max(number), 0) + 1 AS number FROM public.read_model_generations",
            &[],
        )
        .await
        .map_err(ProjectionError::pg("number a new generation"))?;
    let number: i32 = row.column("number")?;
    let generation = Generation(number.unsigned_abs());
    tx.batch_execute(&format!("CREATE SCHEMA {generation}"))
        .await
        .map_err(ProjectionError::pg("create generation schema"))?;
    tx.execute(
        include_str!("../sql/record_new_generation.sql"),
        &[&generation.to_string(), &number],
    )
    .await
    .map_err(ProjectionError::pg("record new generation"))?;
    // A session lock: held after the commit, until the connection ends.
    tx.execute(
        "SELECT pg_advisory_lock($1::int4, $2::int4)",
        &[&BUILD_LOCK, &number],
    )
    .await
    .map_err(ProjectionError::pg("hold the new generation"))?;
    Ok(generation)
}

/// Points the views and `read_model_current` at `to`, in `tx` (whose caller holds the pointer
/// row locked), and marks `from` retired.
pub(crate) async fn switch(
    tx: &Transaction<'_>,
    from: &Generation,
    to: &Generation,
) -> Result<(), ProjectionError> {
    point_views(tx, to).await?;
    tx.execute(
        "UPDATE public.read_model_current SET schema_name = $2, switched_at = now() WHERE name = $1",
        &[&read_model::PROJECTION, &to.to_string()],
    )
    .await
    .map_err(ProjectionError::pg("switch live generation"))?;
    tx.execute(
        include_str!("../sql/record_switch.sql"),
        &[&from.to_string(), &to.to_string()],
    )
    .await
    .map_err(ProjectionError::pg("record switch"))?;
    Ok(())
}

/// Marks a generation that will never be live as failed (best effort), so `gc` drops it.
pub(crate) async fn mark_failed(
    client: &impl GenericClient,
    generation: &Generation,
) -> Result<(), ProjectionError> {
    client
        .execute(
            include_str!("../sql/mark_generation_failed.sql"),
            &[&generation.to_string()],
        )
        .await
        .map_err(ProjectionError::pg("mark generation failed"))?;
    Ok(())
}

/// The generations in state `building`: those a rebuild still holds, and the others, which
/// were abandoned (their rebuild's connection ended without marking them) and are marked
/// failed now, so that [`drop_unused`] drops them. Returns (held, abandoned).
pub(crate) async fn sort_building(
    tx: &Transaction<'_>,
) -> Result<(Vec<Generation>, Vec<Generation>), ProjectionError> {
    let rows = tx
        .query(include_str!("../sql/list_building_generations.sql"), &[])
        .await
        .map_err(ProjectionError::pg("list building generations"))?;
    let (mut held, mut abandoned) = (Vec::new(), Vec::new());
    for row in rows {
        let generation = Generation::parse(row.column("schema_name")?)?;
        let number: i32 = row.column("number")?;
        let free: bool = tx
            .query_one(
                "SELECT pg_try_advisory_xact_lock($1::int4, $2::int4) AS free",
                &[&BUILD_LOCK, &number],
            )
            .await
            .map_err(ProjectionError::pg("probe a building generation"))?
            .column("free")?;
        if free {
            mark_failed(tx, &generation).await?;
            abandoned.push(generation);
        } else {
            held.push(generation);
        }
    }
    Ok((held, abandoned))
}

/// Drops the schemas of retired and failed generations; returns them.
pub(crate) async fn drop_unused(
    tx: &Transaction<'_>,
    only: Option<&Generation>,
) -> Result<Vec<Generation>, ProjectionError> {
    let rows = tx
        .query(
            include_str!("../sql/list_unused_generations.sql"),
            &[&only.map(ToString::to_string)],
        )
        .await
        .map_err(ProjectionError::pg("list unused generations"))?;
    let mut dropped = Vec::with_capacity(rows.len());
    for row in rows {
        let generation = Generation::parse(row.column("schema_name")?)?;
        tx.batch_execute(&format!("DROP SCHEMA IF EXISTS {generation} CASCADE"))
            .await
            .map_err(ProjectionError::pg("drop generation schema"))?;
        tx.execute(
            "DELETE FROM public.read_model_generations WHERE schema_name = $1",
            &[&generation.to_string()],
        )
        .await
        .map_err(ProjectionError::pg("forget generation"))?;
        dropped.push(generation);
    }
    Ok(dropped)
}

/// Whether a view in `public` is missing for some table of `generation`.
pub(crate) async fn views_missing(
    tx: &Transaction<'_>,
    generation: &Generation,
) -> Result<bool, ProjectionError> {
    let row = tx
        .query_one(
            include_str!("../sql/check_read_model_views.sql"),
            &[&generation.to_string()],
        )
        .await
        .map_err(ProjectionError::pg("check read-model views"))?;
    Ok(row.column::<i64>("missing")? > 0)
}

/// Recreates one view in `public` per table of `generation`, and drops the views of tables
/// that only other generations have.
pub(crate) async fn point_views(
    tx: &Transaction<'_>,
    generation: &Generation,
) -> Result<(), ProjectionError> {
    let rows = tx
        .query(
            include_str!("../sql/list_read_model_tables.sql"),
            &[&generation.to_string()],
        )
        .await
        .map_err(ProjectionError::pg("list read-model tables"))?;
    for row in rows {
        let table: String = row.column("tablename")?;
        let ours: bool = row.column("ours")?;
        let mut sql = format!("DROP VIEW IF EXISTS public.\"{table}\";");
        if ours {
            sql.push_str(&format!(
                "CREATE VIEW public.\"{table}\" AS SELECT * FROM {generation}.\"{table}\";"
            ));
        }
        tx.batch_execute(&sql)
            .await
            .map_err(ProjectionError::pg("point read-model views"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_names_round_trip_and_nothing_else_parses() {
        assert_eq!(
            Generation::parse("read_v12").map(|g| g.to_string()).ok(),
            Some("read_v12".into())
        );
        for bad in [
            "read_v0",
            "read_v01",
            "read_v",
            "read_v1;drop",
            "public",
            "read_v-1",
        ] {
            assert!(Generation::parse(bad).is_err(), "{bad}");
        }
    }
}
