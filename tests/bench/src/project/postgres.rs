//! The Postgres side: how far the projector has applied, whether its counts are the
//! generator's, and the baseline: the same final rows loaded with `COPY` into staging tables
//! and merged into the read model's tables in one transaction, no Kafka.

use std::pin::pin;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gallery_schemas::Topics;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Transaction};

use super::Names;
use super::fill::Placed;
use super::workload::{Counts, Model, comment_body};

pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .context("could not reach Postgres")?;
    tokio::spawn(connection);
    Ok(client)
}

/// Messages the live read model has applied (the sum of its stored next offsets); 0 while its
/// tables do not exist yet.
pub async fn applied(client: &Client) -> i64 {
    client
        .query_one(
            "SELECT coalesce(sum(next_offset), 0)::bigint FROM public.projection_offsets",
            &[],
        )
        .await
        .map_or(0, |row| row.get(0))
}

/// Compares every artwork's four counts in the live read model with the model's; returns how
/// many artworks were compared.
pub async fn check(client: &Client, model: &Model) -> anyhow::Result<usize> {
    let rows = client
        .query(
            "SELECT artwork_id, like_count, favorite_count, comment_count, view_count
             FROM public.artwork_stats",
            &[],
        )
        .await?;
    let mut stored = std::collections::HashMap::new();
    for row in &rows {
        let counts = Counts {
            likes: row.try_get("like_count")?,
            favorites: row.try_get("favorite_count")?,
            comments: row.try_get("comment_count")?,
            views: row.try_get("view_count")?,
        };
        stored.insert(row.try_get::<_, String>("artwork_id")?, counts);
    }
    super::compare(model, |artwork| stored.remove(artwork).unwrap_or_default())?;
    anyhow::ensure!(
        stored.is_empty(),
        "the read model counts artworks the log never named: {:?}",
        stored.keys().take(3).collect::<Vec<_>>()
    );
    Ok(model.counts.len())
}

/// One table of the read model: its columns (name, type) and its key.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Type)],
    key: &'static [&'static str],
}

impl Table {
    fn list(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(n, _)| *n).collect();
        names.join(", ")
    }

    /// Creates the staging table and opens the `COPY` into it.
    async fn stage(&self, tx: &Transaction<'_>, g: &str) -> anyhow::Result<BinaryCopyInWriter> {
        let name = self.name;
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE staged_{name} (LIKE {g}.{name}) ON COMMIT DROP"
        ))
        .await?;
        let sink = tx
            .copy_in(&format!(
                "COPY staged_{name} ({}) FROM STDIN (FORMAT binary)",
                self.list()
            ))
            .await?;
        let types: Vec<Type> = self.columns.iter().map(|(_, t)| t.clone()).collect();
        Ok(BinaryCopyInWriter::new(sink, &types))
    }

    /// The one merge of the staged rows into the real table.
    async fn merge(&self, tx: &Transaction<'_>, g: &str) -> anyhow::Result<u64> {
        let (name, list) = (self.name, self.list());
        let set: Vec<String> = self
            .columns
            .iter()
            .filter(|(c, _)| !self.key.contains(c))
            .map(|(c, _)| format!("{c} = excluded.{c}"))
            .collect();
        Ok(tx
            .execute(
                &format!(
                    "INSERT INTO {g}.{name} ({list}) SELECT {list} FROM staged_{name}
                     ON CONFLICT ({}) DO UPDATE SET {}",
                    self.key.join(", "),
                    set.join(", ")
                ),
                &[],
            )
            .await?)
    }
}

const SET_COLUMNS: [(&str, Type); 5] = [
    ("artwork_id", Type::TEXT),
    ("user_id", Type::TEXT),
    ("liked", Type::BOOL),
    ("event_id", Type::UUID),
    ("occurred_at_ms", Type::INT8),
];
const LIKES: Table = Table {
    name: "artwork_likes",
    columns: &SET_COLUMNS,
    key: &["artwork_id", "user_id"],
};
const FAVORITES: Table = Table {
    name: "artwork_favorites",
    columns: &[
        ("artwork_id", Type::TEXT),
        ("user_id", Type::TEXT),
        ("favorited", Type::BOOL),
        ("event_id", Type::UUID),
        ("occurred_at_ms", Type::INT8),
    ],
    key: &["artwork_id", "user_id"],
};
const POSITIONS: Table = Table {
    name: "set_event_positions",
    columns: &[
        ("artwork_id", Type::TEXT),
        ("mark", Type::TEXT),
        ("event_id", Type::UUID),
        ("topic", Type::TEXT),
        ("partition", Type::INT4),
        ("message_offset", Type::INT8),
    ],
    key: &["artwork_id", "mark", "event_id"],
};
const COMMENTS: Table = Table {
    name: "comments",
    columns: &[
        ("comment_id", Type::UUID),
        ("artwork_id", Type::TEXT),
        ("user_id", Type::TEXT),
        ("body", Type::TEXT),
        ("posted_at_ms", Type::INT8),
        ("deleted", Type::BOOL),
        ("deleted_by", Type::TEXT),
        ("deleted_at_ms", Type::INT8),
    ],
    key: &["comment_id"],
};
const VIEWS: Table = Table {
    name: "artwork_views",
    columns: &[
        ("event_id", Type::UUID),
        ("artwork_id", Type::TEXT),
        ("user_id", Type::TEXT),
        ("viewed_at_ms", Type::INT8),
    ],
    key: &["event_id"],
};
const STATS: Table = Table {
    name: "artwork_stats",
    columns: &[
        ("artwork_id", Type::TEXT),
        ("like_count", Type::INT8),
        ("favorite_count", Type::INT8),
        ("comment_count", Type::INT8),
        ("view_count", Type::INT8),
    ],
    key: &["artwork_id"],
};
const LIKE_BUCKETS: Table = Table {
    name: "like_buckets",
    columns: &[
        ("hour_ms", Type::INT8),
        ("artwork_id", Type::TEXT),
        ("net_likes", Type::INT8),
    ],
    key: &["hour_ms", "artwork_id"],
};
const VIEW_BUCKETS: Table = Table {
    name: "view_buckets",
    columns: &[
        ("hour_ms", Type::INT8),
        ("artwork_id", Type::TEXT),
        ("views", Type::INT8),
    ],
    key: &["hour_ms", "artwork_id"],
};
const OFFSETS: Table = Table {
    name: "projection_offsets",
    columns: &[
        ("projection", Type::TEXT),
        ("topic", Type::TEXT),
        ("partition", Type::INT4),
        ("next_offset", Type::INT8),
    ],
    key: &["projection", "topic", "partition"],
};

/// The baseline: loads the model's final rows into a fresh read model at `url` (its tables
/// made by Gallery's own migrations), each table through `COPY` into a staging table and one
/// merge, all in one transaction. Returns the time from `BEGIN` to `COMMIT` and the rows.
pub async fn copy_baseline(
    url: &str,
    topics: &Topics,
    model: &Model,
    placed: &Placed,
    names: &Names,
) -> anyhow::Result<(Duration, u64)> {
    let mut client = connect(url).await?;
    let generation = gallery_projections::migrate(&mut client, topics).await?;
    let g = generation.to_string();
    let topic = topics.interactions();
    let started = Instant::now();
    let tx = client.transaction().await?;
    let mut rows = 0;

    for (table, pairs) in [(&LIKES, &model.likes), (&FAVORITES, &model.favorites)] {
        let mut w = pin!(table.stage(&tx, &g).await?);
        for ((a, u), r) in pairs {
            let (artwork, user) = (names.artwork(*a), names.user(*u));
            w.as_mut()
                .write(&[&artwork, &user, &r.on, &r.event_id, &r.at_ms])
                .await?;
        }
        w.finish().await?;
        rows += table.merge(&tx, &g).await?;
    }

    let mut w = pin!(POSITIONS.stage(&tx, &g).await?);
    for e in &model.set_events {
        let (partition, offset) = placed[usize::try_from(e.index)?];
        let mark = if e.like { "like" } else { "favorite" };
        let artwork = names.artwork(e.artwork);
        let row: [&(dyn ToSql + Sync); 6] =
            [&artwork, &mark, &e.event_id, &topic, &partition, &offset];
        w.as_mut().write(&row).await?;
    }
    w.finish().await?;
    rows += POSITIONS.merge(&tx, &g).await?;

    let mut w = pin!(COMMENTS.stage(&tx, &g).await?);
    for c in &model.comments {
        let (artwork, user) = (names.artwork(c.artwork), names.user(c.user));
        let body = comment_body(c.index);
        let by = c.deleted.map(|(by, _, _)| names.user(by));
        let at = c.deleted.map(|(_, at, _)| at);
        let row: [&(dyn ToSql + Sync); 8] = [
            &c.id,
            &artwork,
            &user,
            &body,
            &c.posted_at_ms,
            &c.deleted.is_some(),
            &by,
            &at,
        ];
        w.as_mut().write(&row).await?;
    }
    w.finish().await?;
    rows += COMMENTS.merge(&tx, &g).await?;

    let mut w = pin!(VIEWS.stage(&tx, &g).await?);
    for v in &model.views {
        let (artwork, user) = (names.artwork(v.artwork), v.user.map(|u| names.user(u)));
        w.as_mut()
            .write(&[&v.event_id, &artwork, &user, &v.at_ms])
            .await?;
    }
    w.finish().await?;
    rows += VIEWS.merge(&tx, &g).await?;

    let mut w = pin!(STATS.stage(&tx, &g).await?);
    for (n, c) in model.counts.iter().enumerate() {
        if *c == Counts::default() {
            continue;
        }
        let artwork = names.artwork(u32::try_from(n)?);
        w.as_mut()
            .write(&[&artwork, &c.likes, &c.favorites, &c.comments, &c.views])
            .await?;
    }
    w.finish().await?;
    rows += STATS.merge(&tx, &g).await?;

    for (table, hours) in [
        (&LIKE_BUCKETS, &model.like_hours),
        (&VIEW_BUCKETS, &model.view_hours),
    ] {
        let mut w = pin!(table.stage(&tx, &g).await?);
        for ((hour, a), value) in hours {
            let artwork = names.artwork(*a);
            w.as_mut().write(&[hour, &artwork, value]).await?;
        }
        w.finish().await?;
        rows += table.merge(&tx, &g).await?;
    }

    let mut w = pin!(OFFSETS.stage(&tx, &g).await?);
    for ((topic, partition), next) in super::next_offsets(&topic, placed) {
        let projection = gallery_schemas::read_model::PROJECTION;
        w.as_mut()
            .write(&[&projection, &topic, &partition, &next])
            .await?;
    }
    w.finish().await?;
    rows += OFFSETS.merge(&tx, &g).await?;

    tx.commit().await?;
    let took = started.elapsed();
    // The same counts as the projector's, or the baseline measured something else.
    let counted = check(&client, model).await?;
    tracing::debug!(counted, "the COPY baseline's counts are the generator's");
    Ok((took, rows))
}
