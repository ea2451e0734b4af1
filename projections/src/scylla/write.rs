//! How the Scylla projector writes a [`ScyllaPlan`]: each row bound to its statement with the
//! write timestamp of the offset that decides it ([`write_timestamp`]), the rows of one
//! partition grouped into unlogged batches, an artwork's partition in one batch.

use std::collections::{BTreeMap, HashMap};

use futures::future::try_join_all;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;
use uuid::Uuid;

use super::store::ScyllaStore;
use super::write_timestamp;
use crate::error::ProjectionError;
use crate::fold::SetKind;
use crate::fold::scylla::{DerivedRow, PartitionWrite, PopularRow, ScyllaPlan};

/// The values of one statement, in bind-marker order (`None` is null).
type Values = Vec<Option<CqlValue>>;

/// Statements with their values.
type Rows<'s> = Vec<(&'s PreparedStatement, Values)>;

/// Statements grouped by the artwork whose partition they write.
type ByArtwork<'s> = BTreeMap<String, Rows<'s>>;

/// Most rows of one partition written in one unlogged batch.
const ROWS_PER_BATCH: usize = 32;

/// About the most bytes of values in one unlogged batch (Cassandra warns of batches over
/// 5 KiB by default, and refuses them over 50 KiB).
const BYTES_PER_BATCH: usize = 4 * 1024;

/// `rows` in order, cut into chunks of at most [`ROWS_PER_BATCH`] rows and [`BYTES_PER_BATCH`]
/// bytes as `size` tells them (a row larger than that alone), none empty.
fn chunks<T>(rows: Vec<T>, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut chunk = Vec::new();
    let mut bytes = 0;
    for row in rows {
        let n = size(&row);
        if !chunk.is_empty() && (chunk.len() == ROWS_PER_BATCH || bytes + n > BYTES_PER_BATCH) {
            out.push(std::mem::take(&mut chunk));
            bytes = 0;
        }
        bytes += n;
        chunk.push(row);
    }
    if !chunk.is_empty() {
        out.push(chunk);
    }
    out
}

/// About the bytes `values` take on the wire.
fn approximate_size(values: &Values) -> usize {
    values
        .iter()
        .map(|v| match v {
            Some(CqlValue::Text(s) | CqlValue::Ascii(s)) => s.len() + 4,
            Some(CqlValue::Blob(b)) => b.len() + 4,
            _ => 12,
        })
        .sum()
}

fn text(s: &str) -> Option<CqlValue> {
    Some(CqlValue::Text(s.to_owned()))
}
fn big(v: i64) -> Option<CqlValue> {
    Some(CqlValue::BigInt(v))
}
fn id(v: Uuid) -> Option<CqlValue> {
    Some(CqlValue::Uuid(v))
}
fn flag(v: bool) -> Option<CqlValue> {
    Some(CqlValue::Boolean(v))
}
fn int(v: i32) -> Option<CqlValue> {
    Some(CqlValue::Int(v))
}
/// The write timestamp of a row decided by the fact at `offset`.
fn stamp(offset: i64) -> Option<CqlValue> {
    big(write_timestamp(offset))
}

fn hour_map(values: &BTreeMap<i64, i64>) -> Option<CqlValue> {
    Some(CqlValue::Map(
        values
            .iter()
            .map(|(h, v)| (CqlValue::BigInt(*h), CqlValue::BigInt(*v)))
            .collect(),
    ))
}

fn hour_set(hours: &[i64]) -> Option<CqlValue> {
    Some(CqlValue::Set(
        hours.iter().map(|h| CqlValue::BigInt(*h)).collect(),
    ))
}

impl ScyllaStore {
    /// Writes the rows outside the artworks' partitions (the users' lists, comments, views)
    /// and the events' positions: first, so that if the process dies before an artwork's
    /// partition is written, the replay recomputes and rewrites them identically.
    pub(super) async fn write_derived(&self, plan: &ScyllaPlan) -> Result<(), ProjectionError> {
        let s = &self.statements;
        let mut writes: Rows<'_> = Vec::new();
        for row in &plan.derived {
            match row {
                DerivedRow::InsertMark(m) => writes.push((
                    &s.insert_mark,
                    vec![
                        text(&m.user),
                        text(m.kind.mark()),
                        big(m.at_ms),
                        text(&m.artwork),
                        stamp(m.decided_at),
                    ],
                )),
                DerivedRow::DeleteMark(m) => writes.push((
                    &s.delete_mark,
                    vec![
                        stamp(m.decided_at),
                        text(&m.user),
                        text(m.kind.mark()),
                        big(m.at_ms),
                        text(&m.artwork),
                    ],
                )),
                DerivedRow::Comment {
                    comment: c,
                    posted_offset,
                } => {
                    let ts = stamp(*posted_offset);
                    writes.push((
                        &s.insert_comment,
                        vec![
                            id(c.comment_id),
                            text(&c.artwork_id),
                            text(&c.user_id),
                            text(&c.body),
                            big(c.posted_at_ms),
                            big(*posted_offset),
                            ts.clone(),
                        ],
                    ));
                    writes.push((
                        &s.list_comment,
                        vec![
                            text(&c.artwork_id),
                            big(c.posted_at_ms),
                            text(&c.comment_id.to_string()),
                            text(&c.user_id),
                            text(&c.body),
                            ts,
                        ],
                    ));
                }
                DerivedRow::CommentDeleted {
                    comment_id,
                    deleted_offset,
                    listed,
                } => {
                    let ts = stamp(*deleted_offset);
                    writes.push((
                        &s.delete_comment,
                        vec![ts.clone(), big(*deleted_offset), id(*comment_id)],
                    ));
                    if let Some((artwork, posted_at)) = listed {
                        writes.push((
                            &s.unlist_comment,
                            vec![
                                ts,
                                text(artwork),
                                big(*posted_at),
                                text(&comment_id.to_string()),
                            ],
                        ));
                    }
                }
                DerivedRow::View {
                    artwork_id,
                    event_id,
                    offset,
                } => writes.push((
                    &s.insert_view,
                    vec![
                        text(artwork_id),
                        id(*event_id),
                        big(*offset),
                        stamp(*offset),
                    ],
                )),
            }
        }
        let mut positions: ByArtwork<'_> = BTreeMap::new();
        for (artwork, rows) in &plan.positions {
            let statements = rows.iter().map(|p| {
                let values = vec![
                    text(artwork),
                    id(p.event_id),
                    text(p.kind.mark()),
                    text(&p.at.topic),
                    int(p.at.partition),
                    big(p.at.offset),
                    stamp(p.at.offset),
                ];
                (&s.write_position, values)
            });
            positions.insert(artwork.clone(), statements.collect());
        }
        futures::try_join!(
            self.exec(writes),
            self.exec_batches(positions, "write set event positions")
        )?;
        Ok(())
    }

    /// Writes each artwork's partition (its counts, hours and pairs) as one batch.
    pub(super) async fn write_partitions(&self, plan: &ScyllaPlan) -> Result<(), ProjectionError> {
        let partitions: ByArtwork<'_> = plan
            .partitions
            .iter()
            .map(|(artwork, p)| (artwork.clone(), self.partition(artwork, p)))
            .collect();
        self.exec_batches(partitions, "write artwork partition")
            .await
    }

    fn partition(&self, artwork: &str, p: &PartitionWrite) -> Rows<'_> {
        let s = &self.statements;
        let ts = stamp(p.decided_at);
        let after = &p.state;
        let mut batch = vec![(
            &s.write_counts,
            vec![
                ts.clone(),
                big(after.likes),
                big(after.favorites),
                big(after.comments),
                big(after.views),
                big(after.next_offset),
                text(artwork),
            ],
        )];
        let hours = &p.hours;
        if !hours.likes_changed.is_empty() || !hours.views_changed.is_empty() {
            batch.push((
                &s.write_hours,
                vec![
                    ts.clone(),
                    hour_map(&hours.likes_changed),
                    hour_map(&hours.views_changed),
                    text(artwork),
                ],
            ));
        }
        if !hours.likes_dropped.is_empty() || !hours.views_dropped.is_empty() {
            batch.push((
                &s.drop_hours,
                vec![
                    ts,
                    hour_set(&hours.likes_dropped),
                    hour_set(&hours.views_dropped),
                    text(artwork),
                ],
            ));
        }
        for pair in &p.pairs {
            let statement = match pair.kind {
                SetKind::Like => &s.write_like,
                SetKind::Favorite => &s.write_favorite,
            };
            batch.push((
                statement,
                vec![
                    stamp(pair.decided_at),
                    flag(pair.fact.on),
                    id(pair.fact.event_id),
                    big(pair.fact.occurred_at_ms),
                    text(artwork),
                    text(&pair.user),
                ],
            ));
        }
        batch
    }

    /// Copies the hourly values of the artworks' partitions into `popular_hours`, partitioned
    /// by hour for the popularity reads. Absolute values, stamped with the partition's offset:
    /// a replay rewrites them.
    pub(super) async fn write_popular(&self, rows: &[PopularRow]) -> Result<(), ProjectionError> {
        let writes = rows
            .iter()
            .map(|r| {
                let values = vec![
                    big(r.hour_ms),
                    text(&r.artwork_id),
                    big(r.net_likes),
                    big(r.views),
                    stamp(r.decided_at),
                ];
                (&self.statements.write_popular, values)
            })
            .collect();
        self.exec(writes).await
    }

    /// Writes rows of any tables and partitions: those of one partition of one table together,
    /// in unlogged batches of at most [`ROWS_PER_BATCH`] rows and about [`BYTES_PER_BATCH`]
    /// (one request and one mutation each instead of one per row), everything at once.
    async fn exec(&self, writes: Rows<'_>) -> Result<(), ProjectionError> {
        const WHAT: &str = "write derived rows";
        // (table, partition key) -> its rows.
        let mut partitions: HashMap<(&str, Vec<u8>), Rows<'_>> = HashMap::new();
        for (statement, values) in writes {
            let table = statement.get_table_spec().map_or("", |t| t.table_name());
            let key = statement
                .compute_partition_key(&values)
                .map_err(ProjectionError::cql(WHAT))?
                .to_vec();
            partitions
                .entry((table, key))
                .or_default()
                .push((statement, values));
        }
        let requests = partitions
            .into_values()
            .flat_map(|rows| chunks(rows, |(_, values)| approximate_size(values)));
        let requests = requests.map(|mut rows| async move {
            if rows.len() == 1
                && let Some((statement, values)) = rows.pop()
            {
                self.session
                    .execute_unpaged(statement, values)
                    .await
                    .map(drop)
                    .map_err(ProjectionError::cql(WHAT))
            } else {
                let mut batch = Batch::new(BatchType::Unlogged);
                let mut values: Vec<Values> = Vec::with_capacity(rows.len());
                for (statement, v) in rows {
                    batch.append_statement(statement.clone());
                    values.push(v);
                }
                self.session
                    .batch(&batch, values)
                    .await
                    .map(drop)
                    .map_err(ProjectionError::cql(WHAT))
            }
        });
        try_join_all(requests).await?;
        Ok(())
    }

    /// Writes each group of statements, all of one partition, as one unlogged batch, which
    /// Scylla and Cassandra apply atomically and in isolation.
    async fn exec_batches(
        &self,
        groups: ByArtwork<'_>,
        what: &'static str,
    ) -> Result<(), ProjectionError> {
        let batches = groups.into_values().map(|statements| {
            let mut batch = Batch::new(BatchType::Unlogged);
            let mut values: Vec<Values> = Vec::with_capacity(statements.len());
            for (statement, v) in statements {
                batch.append_statement(statement.clone());
                values.push(v);
            }
            async move {
                self.session
                    .batch(&batch, values)
                    .await
                    .map_err(ProjectionError::cql(what))
            }
        });
        try_join_all(batches).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_a_partition_go_in_chunks_bounded_by_count_and_bytes() {
        let lens = |c: &[Vec<usize>]| c.iter().map(Vec::len).collect::<Vec<_>>();
        let by_count = chunks((0..70).map(|_| 10).collect(), |n| *n);
        assert_eq!(lens(&by_count), vec![32, 32, 6]);
        let by_bytes = chunks(vec![1_500, 1_500, 1_500, 1_500], |n| *n);
        assert_eq!(lens(&by_bytes), vec![2, 2]);
        let large = chunks(vec![10, 50_000, 10], |n| *n);
        assert_eq!(large, vec![vec![10], vec![50_000], vec![10]]);
        assert!(chunks(Vec::<usize>::new(), |n| *n).is_empty());
        let order = chunks((0..40).collect::<Vec<usize>>(), |_| 1);
        assert_eq!(order.concat(), (0..40).collect::<Vec<_>>());
    }
}
