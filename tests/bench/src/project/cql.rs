//! The Scylla side (Cassandra here): how far the Scylla projector has applied, whether its
//! counts are the generator's, and the baseline: the same final rows written with prepared
//! statements in unlogged batches, one partition per batch, many batches in flight, no Kafka.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use gallery_projections::scylla::ScyllaSettings;
use gallery_schemas::Topics;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;

use super::Names;
use super::fill::Placed;
use super::workload::{Counts, Model, comment_body};

/// Key and value columns of rows of one hour bucket.
type Pairs = Vec<(CqlValue, CqlValue)>;

pub async fn connect(nodes: &[String]) -> anyhow::Result<Session> {
    SessionBuilder::new()
        .known_nodes(nodes)
        .build()
        .await
        .context("could not reach Cassandra (is `scripts/stack up cassandra` running?)")
}

/// Messages the Scylla projector has applied (the sum of its stored offsets); 0 while its
/// tables do not exist yet.
pub async fn applied(session: &Session, keyspace: &str) -> i64 {
    let query =
        format!("SELECT next_offset FROM {keyspace}.projection_offsets WHERE projection = ?");
    let Ok(result) = session
        .query_unpaged(query, (gallery_schemas::read_model::PROJECTION,))
        .await
    else {
        return 0;
    };
    let Ok(rows) = result.into_rows_result() else {
        return 0;
    };
    rows.rows::<(Option<i64>,)>()
        .map(|rows| rows.filter_map(Result::ok).filter_map(|(o,)| o).sum())
        .unwrap_or(0)
}

/// Compares every artwork's counts in the keyspace with the model's; returns how many
/// artworks were compared.
pub async fn check(session: &Session, keyspace: &str, model: &Model) -> anyhow::Result<usize> {
    type Row = (String, Option<i64>, Option<i64>, Option<i64>, Option<i64>);
    let mut rows = session
        .query_iter(
            format!(
                "SELECT artwork_id, likes, favorites, comments, views FROM {keyspace}.artwork_state
                 PER PARTITION LIMIT 1"
            ),
            (),
        )
        .await?
        .rows_stream::<Row>()?;
    let mut stored = std::collections::HashMap::new();
    while let Some((artwork, likes, favorites, comments, views)) = rows.try_next().await? {
        let counts = Counts {
            likes: likes.unwrap_or(0),
            favorites: favorites.unwrap_or(0),
            comments: comments.unwrap_or(0),
            views: views.unwrap_or(0),
        };
        stored.insert(artwork, counts);
    }
    super::compare(model, |artwork| stored.remove(artwork).unwrap_or_default())?;
    anyhow::ensure!(
        stored.is_empty(),
        "the keyspace counts artworks the log never named: {:?}",
        stored.keys().take(3).collect::<Vec<_>>()
    );
    Ok(model.counts.len())
}

pub async fn drop_keyspace(session: &Session, keyspace: &str) -> anyhow::Result<()> {
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
        .await?;
    Ok(())
}

type Values = Vec<Option<CqlValue>>;

fn text(s: &str) -> Option<CqlValue> {
    Some(CqlValue::Text(s.to_owned()))
}
fn big(v: i64) -> Option<CqlValue> {
    Some(CqlValue::BigInt(v))
}

/// Statements in one unlogged batch at most (Cassandra warns above 5 KiB of batch and refuses
/// above 50 KiB by default).
const PER_BATCH: usize = 32;
/// Batches in flight at once.
const IN_FLIGHT: usize = 128;

/// The baseline: the model's final rows, as the Scylla projector leaves them, written into a
/// fresh keyspace (its tables made by Gallery's own migration) with prepared statements,
/// grouped by partition into unlogged batches. Returns the time of the writes and how many
/// statements were written.
pub async fn batch_baseline(
    session: &Session,
    settings: &ScyllaSettings,
    topics: &Topics,
    model: &Model,
    placed: &Placed,
    names: &Names,
) -> anyhow::Result<(Duration, usize)> {
    gallery_projections::scylla::migrate(session, settings, topics).await?;
    let ks = &settings.keyspace;
    let prepare = |cql: String| async move { session.prepare(cql).await };
    let counts = prepare(format!(
        "UPDATE {ks}.artwork_state USING TIMESTAMP ? SET likes = ?, favorites = ?,
         comments = ?, views = ?, next_offset = ?, like_hours = ?, view_hours = ?
         WHERE artwork_id = ?"
    ))
    .await?;
    let like = prepare(format!(
        "UPDATE {ks}.artwork_state USING TIMESTAMP ? SET liked = ?, like_event = ?,
         liked_at_ms = ? WHERE artwork_id = ? AND user_id = ?"
    ))
    .await?;
    let favorite = prepare(format!(
        "UPDATE {ks}.artwork_state USING TIMESTAMP ? SET favorited = ?, favorite_event = ?,
         favorited_at_ms = ? WHERE artwork_id = ? AND user_id = ?"
    ))
    .await?;
    let mark = prepare(format!(
        "INSERT INTO {ks}.user_marks (user_id, mark, at_ms, artwork_id) VALUES (?, ?, ?, ?)
         USING TIMESTAMP ?"
    ))
    .await?;
    let position = prepare(format!(
        "INSERT INTO {ks}.set_event_positions (artwork_id, event_id, mark, topic, partition,
         message_offset) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
    ))
    .await?;
    let comment = prepare(format!(
        "INSERT INTO {ks}.comments (comment_id, artwork_id, user_id, body, posted_at_ms,
         posted_offset, deleted_offset) VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
    ))
    .await?;
    let listed = prepare(format!(
        "INSERT INTO {ks}.artwork_comments (artwork_id, posted_at_ms, comment_id, user_id,
         body) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?"
    ))
    .await?;
    let view = prepare(format!(
        "INSERT INTO {ks}.artwork_views (artwork_id, event_id, view_offset) VALUES (?, ?, ?)
         USING TIMESTAMP ?"
    ))
    .await?;
    let popular = prepare(format!(
        "INSERT INTO {ks}.popular_hours (hour_ms, artwork_id, net_likes, views)
         VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
    ))
    .await?;
    let offset = prepare(format!(
        "UPDATE {ks}.projection_offsets SET next_offset = ?
         WHERE projection = ? AND topic = ? AND partition = ?"
    ))
    .await?;

    // The rows, grouped by partition key (the batches are built before the clock starts).
    let topic = topics.interactions();
    let at = |index: u64| placed[usize::try_from(index).unwrap_or(usize::MAX)].1;
    let mut groups: BTreeMap<String, Vec<(&PreparedStatement, Values)>> = BTreeMap::new();
    let mut add = |key: String, statement, values: Values| {
        groups.entry(key).or_default().push((statement, values));
    };
    // The newest offset of each artwork's facts: the stamp of its counts.
    let mut last = vec![0_i64; model.counts.len()];
    let mut last_of = |artwork: u32, index: u64| {
        let slot = &mut last[artwork as usize];
        *slot = (*slot).max(at(index));
    };
    for e in &model.set_events {
        last_of(e.artwork, e.index);
        let (partition, o) = placed[usize::try_from(e.index)?];
        add(
            format!("p{}", e.artwork),
            &position,
            vec![
                text(names.artwork(e.artwork)),
                Some(CqlValue::Uuid(e.event_id)),
                text(if e.like { "like" } else { "favorite" }),
                text(&topic),
                Some(CqlValue::Int(partition)),
                big(o),
                big(o + 1),
            ],
        );
    }
    for (rows, statement, kind) in [
        (&model.likes, &like, "like"),
        (&model.favorites, &favorite, "favorite"),
    ] {
        for ((a, u), r) in rows {
            let stamp = big(r.at_ms);
            add(
                format!("s{a}"),
                statement,
                vec![
                    stamp.clone(),
                    Some(CqlValue::Boolean(r.on)),
                    Some(CqlValue::Uuid(r.event_id)),
                    big(r.at_ms),
                    text(names.artwork(*a)),
                    text(names.user(*u)),
                ],
            );
            if r.on {
                add(
                    format!("m{u}{kind}"),
                    &mark,
                    vec![
                        text(names.user(*u)),
                        text(kind),
                        big(r.at_ms),
                        text(names.artwork(*a)),
                        stamp,
                    ],
                );
            }
        }
    }
    for c in &model.comments {
        last_of(c.artwork, c.deleted.map_or(c.index, |(_, _, i)| i));
        let posted = at(c.index);
        let deleted = c.deleted.map(|(_, _, i)| at(i));
        let id = Some(CqlValue::Uuid(c.id));
        let body = comment_body(c.index);
        add(
            format!("c{}", c.id),
            &comment,
            vec![
                id,
                text(names.artwork(c.artwork)),
                text(names.user(c.user)),
                text(&body),
                big(c.posted_at_ms),
                big(posted),
                deleted.and_then(big),
                big(deleted.unwrap_or(posted) + 1),
            ],
        );
        if deleted.is_none() {
            add(
                format!("l{}", c.artwork),
                &listed,
                vec![
                    text(names.artwork(c.artwork)),
                    big(c.posted_at_ms),
                    text(&c.id.to_string()),
                    text(names.user(c.user)),
                    text(&body),
                    big(posted + 1),
                ],
            );
        }
    }
    for v in &model.views {
        last_of(v.artwork, v.index);
        let o = at(v.index);
        add(
            format!("v{}", v.artwork),
            &view,
            vec![
                text(names.artwork(v.artwork)),
                Some(CqlValue::Uuid(v.event_id)),
                big(o),
                big(o + 1),
            ],
        );
    }
    let mut hours: BTreeMap<u32, (Pairs, Pairs)> = BTreeMap::new();
    let mut popular_rows: BTreeMap<(i64, u32), (i64, i64)> = BTreeMap::new();
    for ((hour, a), n) in &model.like_hours {
        hours
            .entry(*a)
            .or_default()
            .0
            .push((CqlValue::BigInt(*hour), CqlValue::BigInt(*n)));
        popular_rows.entry((*hour, *a)).or_default().0 = *n;
    }
    for ((hour, a), n) in &model.view_hours {
        hours
            .entry(*a)
            .or_default()
            .1
            .push((CqlValue::BigInt(*hour), CqlValue::BigInt(*n)));
        popular_rows.entry((*hour, *a)).or_default().1 = *n;
    }
    for ((hour, a), (likes, views)) in popular_rows {
        add(
            format!("h{hour}"),
            &popular,
            vec![
                big(hour),
                text(names.artwork(a)),
                big(likes),
                big(views),
                big(last[a as usize] + 1),
            ],
        );
    }
    for (n, c) in model.counts.iter().enumerate() {
        let a = u32::try_from(n)?;
        let (like_hours, view_hours) = hours.remove(&a).unwrap_or_default();
        if *c == Counts::default() && like_hours.is_empty() && view_hours.is_empty() {
            continue;
        }
        add(
            format!("s{a}"),
            &counts,
            vec![
                big(last[n] + 1),
                big(c.likes),
                big(c.favorites),
                big(c.comments),
                big(c.views),
                big(last[n] + 1),
                Some(CqlValue::Map(like_hours)),
                Some(CqlValue::Map(view_hours)),
                text(names.artwork(a)),
            ],
        );
    }
    for ((t, partition), next) in super::next_offsets(&topic, placed) {
        add(
            "o".into(),
            &offset,
            vec![
                big(next),
                text(gallery_schemas::read_model::PROJECTION),
                text(&t),
                Some(CqlValue::Int(partition)),
            ],
        );
    }

    let mut batches = Vec::new();
    let mut statements = 0;
    for group in groups.into_values() {
        for chunk in group.chunks(PER_BATCH) {
            let mut batch = Batch::new(BatchType::Unlogged);
            let mut values = Vec::with_capacity(chunk.len());
            for (statement, v) in chunk {
                batch.append_statement((*statement).clone());
                values.push(v.clone());
            }
            statements += chunk.len();
            batches.push((batch, values));
        }
    }
    let started = Instant::now();
    futures::stream::iter(batches.iter())
        .map(|(batch, values)| session.batch(batch, values))
        .buffer_unordered(IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) })
        .await
        .context("a batch of the baseline failed")?;
    let took = started.elapsed();
    let counted = check(session, ks, model).await?;
    tracing::debug!(counted, "the batch baseline's counts are the generator's");
    Ok((took, statements))
}
