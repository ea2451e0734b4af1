//! The keyspace and its tables. Every statement is idempotent (`IF NOT EXISTS`), so every
//! role that uses Scylla applies them on start.

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use gallery_schemas::Topics;

use super::ScyllaSettings;
use crate::deployment::{self, Owner, ReadModelStore};
use crate::error::ProjectionError;

/// The tables, `{ks}` standing for the keyspace. Counts are plain `bigint` columns holding
/// absolute values, never CQL counters.
const TABLES: &[&str] = &[
    // One partition per artwork: its counts (static) and each user's latest like and favorite.
    // `next_offset`: the artwork's Kafka partition is folded in up to (not including) it.
    "CREATE TABLE IF NOT EXISTS {ks}.artwork_state (
        artwork_id      text,
        user_id         text,
        likes           bigint static,
        favorites       bigint static,
        comments        bigint static,
        views           bigint static,
        next_offset     bigint static,
        like_hours      map<bigint, bigint> static,
        view_hours      map<bigint, bigint> static,
        liked           boolean,
        like_event      uuid,
        liked_at_ms     bigint,
        favorited       boolean,
        favorite_event  uuid,
        favorited_at_ms bigint,
        PRIMARY KEY (artwork_id, user_id)
    )",
    // Net likes and views per hour and artwork, copied from the artworks' partitions (their
    // `like_hours` and `view_hours`, each hour's start in ms) for the popularity reads: one
    // partition per hour.
    "CREATE TABLE IF NOT EXISTS {ks}.popular_hours (
        hour_ms    bigint,
        artwork_id text,
        net_likes  bigint,
        views      bigint,
        PRIMARY KEY (hour_ms, artwork_id)
    )",
    // The artworks a user likes (mark = 'like') or favorites ('favorite') now, newest first.
    "CREATE TABLE IF NOT EXISTS {ks}.user_marks (
        user_id    text,
        mark       text,
        at_ms      bigint,
        artwork_id text,
        PRIMARY KEY ((user_id, mark), at_ms, artwork_id)
    ) WITH CLUSTERING ORDER BY (at_ms DESC, artwork_id DESC)",
    // Where each like (mark = 'like') and favorite ('favorite') event of an artwork was first
    // applied: the position of its first message, so that a copy (the same event id at
    // another position) changes nothing (see `crate::fold::sets`). Written with the users'
    // lists, before the artwork's partition; one row per like or favorite event, never deleted.
    "CREATE TABLE IF NOT EXISTS {ks}.set_event_positions (
        artwork_id     text,
        event_id       uuid,
        mark           text,
        topic          text,
        partition      int,
        message_offset bigint,
        PRIMARY KEY (artwork_id, event_id, mark)
    )",
    // Every comment by id, with the offsets of its posting and deletion.
    "CREATE TABLE IF NOT EXISTS {ks}.comments (
        comment_id     uuid PRIMARY KEY,
        artwork_id     text,
        user_id        text,
        body           text,
        posted_at_ms   bigint,
        posted_offset  bigint,
        deleted_offset bigint
    )",
    // An artwork's comments not deleted, newest first. The id is text (lower-case hex) so
    // ties order byte-wise, as Postgres orders uuids.
    "CREATE TABLE IF NOT EXISTS {ks}.artwork_comments (
        artwork_id   text,
        posted_at_ms bigint,
        comment_id   text,
        user_id      text,
        body         text,
        PRIMARY KEY (artwork_id, posted_at_ms, comment_id)
    ) WITH CLUSTERING ORDER BY (posted_at_ms DESC, comment_id DESC)",
    // Views by event id, so a view produced twice counts once.
    "CREATE TABLE IF NOT EXISTS {ks}.artwork_views (
        artwork_id  text,
        event_id    uuid,
        view_offset bigint,
        PRIMARY KEY (artwork_id, event_id)
    )",
    // Where each projection resumes: written after its batch, a hint to seek to (the
    // partitions' `next_offset` decide what is applied).
    "CREATE TABLE IF NOT EXISTS {ks}.projection_offsets (
        projection  text,
        topic       text,
        partition   int,
        next_offset bigint,
        PRIMARY KEY (projection, topic, partition)
    )",
    // The topic prefix of the deployment whose read model this is (see `crate::deployment`).
    "CREATE TABLE IF NOT EXISTS {ks}.deployment (
        name         text PRIMARY KEY,
        topic_prefix text
    )",
];

/// Opens a session to the cluster (no keyspace selected; statements name it).
pub async fn connect(settings: &ScyllaSettings) -> Result<Session, ProjectionError> {
    settings.validate()?;
    SessionBuilder::new()
        .known_nodes(settings.contact_points())
        .build()
        .await
        .map_err(ProjectionError::cql("connect"))
}

/// Creates the keyspace and its tables when missing, and waits until the nodes agree; then
/// refuses a keyspace of another deployment than the one of `topics`, and records its topic
/// prefix with a keyspace that has none yet (see [`crate::deployment`]).
pub async fn migrate(
    session: &Session,
    settings: &ScyllaSettings,
    topics: &Topics,
) -> Result<(), ProjectionError> {
    settings.validate()?;
    let ks = &settings.keyspace;
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': {}}}",
                settings.replication_factor
            ),
            (),
        )
        .await
        .map_err(ProjectionError::cql("create keyspace"))?;
    for table in TABLES {
        session
            .query_unpaged(table.replace("{ks}", ks), ())
            .await
            .map_err(ProjectionError::cql("create table"))?;
    }
    add_missing_columns(session, ks).await?;
    session
        .await_schema_agreement()
        .await
        .map_err(ProjectionError::cql("schema agreement"))?;
    claim(session, ks, topics).await
}

async fn claim(session: &Session, ks: &str, topics: &Topics) -> Result<(), ProjectionError> {
    let recorded = recorded_prefix(session, ks).await?;
    let what = "read the topics of the offsets";
    let held: Vec<String> = session
        .query_unpaged(format!("SELECT topic FROM {ks}.projection_offsets"), ())
        .await
        .map_err(ProjectionError::cql(what))?
        .into_rows_result()
        .map_err(ProjectionError::cql(what))?
        .rows::<(String,)>()
        .map_err(ProjectionError::cql(what))?
        .map(|row| row.map(|(topic,)| topic))
        .collect::<Result<_, _>>()
        .map_err(ProjectionError::cql(what))?;
    let owner = deployment::owner(topics, ReadModelStore::Scylla, recorded.as_deref(), held)?;
    if owner == Owner::Ours {
        return Ok(());
    }
    // A lightweight transaction: of two deployments claiming a new keyspace at once, one wins
    // and the other reads the winner's prefix below.
    session
        .query_unpaged(
            format!("INSERT INTO {ks}.deployment (name, topic_prefix) VALUES (?, ?) IF NOT EXISTS"),
            (gallery_schemas::read_model::PROJECTION, topics.prefix()),
        )
        .await
        .map_err(ProjectionError::cql("record the keyspace's deployment"))?;
    let recorded = recorded_prefix(session, ks).await?;
    deployment::owner(topics, ReadModelStore::Scylla, recorded.as_deref(), [])?;
    tracing::info!(
        keyspace = ks,
        prefix = topics.prefix(),
        "recorded the deployment of the keyspace"
    );
    Ok(())
}

async fn recorded_prefix(session: &Session, ks: &str) -> Result<Option<String>, ProjectionError> {
    let what = "read the keyspace's deployment";
    let rows = session
        .query_unpaged(
            format!("SELECT topic_prefix FROM {ks}.deployment WHERE name = ?"),
            (gallery_schemas::read_model::PROJECTION,),
        )
        .await
        .map_err(ProjectionError::cql(what))?
        .into_rows_result()
        .map_err(ProjectionError::cql(what))?;
    let prefix = rows
        .maybe_first_row::<(Option<String>,)>()
        .map_err(ProjectionError::cql(what))?;
    Ok(prefix.and_then(|(p,)| p))
}

/// Columns added to tables after their first release: (table, column, type).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("artwork_state", "like_hours", "map<bigint, bigint> static"),
    ("artwork_state", "view_hours", "map<bigint, bigint> static"),
];

/// Adds the columns of [`ADDED_COLUMNS`] that a keyspace created before them lacks (CQL has
/// no `ADD COLUMN IF NOT EXISTS` in every version).
async fn add_missing_columns(session: &Session, ks: &str) -> Result<(), ProjectionError> {
    let what = "read the schema";
    for (table, column, kind) in ADDED_COLUMNS {
        let rows = session
            .query_unpaged(
                "SELECT column_name FROM system_schema.columns
                 WHERE keyspace_name = ? AND table_name = ? AND column_name = ?",
                (ks, *table, *column),
            )
            .await
            .map_err(ProjectionError::cql(what))?
            .into_rows_result()
            .map_err(ProjectionError::cql(what))?;
        if rows.rows_num() == 0 {
            session
                .query_unpaged(format!("ALTER TABLE {ks}.{table} ADD {column} {kind}"), ())
                .await
                .map_err(ProjectionError::cql("add a column"))?;
        }
    }
    Ok(())
}
