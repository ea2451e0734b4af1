//! Applying one batch of interaction facts to Scylla: read the state of the artworks the batch
//! touches as of each artwork's `next_offset`, fold with the pure folds, write the derived rows,
//! then each artwork's partition in one atomic single-partition batch.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use futures::future::try_join_all;
use gallery_schemas::Event;
use scylla::client::session::Session;
use scylla::response::query_result::QueryRowsResult;
use scylla::serialize::value::SerializeValue;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;
use uuid::Uuid;

use super::write_timestamp;
use crate::error::ProjectionError;
use crate::fold::comments::{CommentBatch, StoredComment};
use crate::fold::views::ViewBatch;
use crate::fold::{ListChange, Position, SetBatch, SetEvent, SetFact, SetKey, StatsDelta, hour_of};
use crate::postgres::TopicPartition;

/// The values of one statement, in bind-marker order (`None` is null).
type Values = Vec<Option<CqlValue>>;

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

/// Statements with their values.
type Rows<'s> = Vec<(&'s PreparedStatement, Values)>;

/// Statements grouped by the artwork whose partition they write.
type ByArtwork<'s> = BTreeMap<String, Rows<'s>>;

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

/// Partition keys in one `IN` at most: Scylla refuses more than 100 by default
/// (`max_partition_key_restrictions_per_query`), and a batch may touch many more artworks or
/// comments.
const KEYS_PER_IN: usize = 100;

/// How long an artwork keeps its hourly net likes and views, counted back from its newest
/// hour: longer than the longest popularity window (7 days).
const HOURS_KEPT_MS: i64 = 8 * 24 * 3_600_000;

/// An artwork's counts, its hourly net likes and views, and how far its partition is folded.
#[derive(Debug, Default, Clone)]
struct Counts {
    likes: i64,
    favorites: i64,
    comments: i64,
    views: i64,
    like_hours: BTreeMap<i64, i64>,
    view_hours: BTreeMap<i64, i64>,
    next_offset: i64,
}

impl Counts {
    fn plus(&self, d: StatsDelta) -> Self {
        Self {
            likes: self.likes + d.likes,
            favorites: self.favorites + d.favorites,
            comments: self.comments + d.comments,
            views: self.views + d.views,
            ..self.clone()
        }
    }
}

/// The hourly values after adding `deltas`, and the hours to drop: those older than
/// [`HOURS_KEPT_MS`] before the newest.
fn hours_after(
    before: &BTreeMap<i64, i64>,
    deltas: impl Iterator<Item = (i64, i64)>,
) -> (BTreeMap<i64, i64>, Vec<i64>) {
    let mut after = before.clone();
    let mut changed = BTreeMap::new();
    for (hour, d) in deltas {
        let value = after.entry(hour).or_insert(0);
        *value += d;
        changed.insert(hour, *value);
    }
    let newest = after.keys().next_back().copied().unwrap_or(0);
    let dropped: Vec<i64> = after
        .keys()
        .copied()
        .take_while(|h| *h < newest - HOURS_KEPT_MS)
        .collect();
    for hour in &dropped {
        changed.remove(hour);
    }
    (changed, dropped)
}

/// The prepared statements of one session.
#[derive(Debug)]
struct Statements {
    read_counts: PreparedStatement,
    read_marks: PreparedStatement,
    read_positions: PreparedStatement,
    read_comments: PreparedStatement,
    read_views: PreparedStatement,
    write_counts: PreparedStatement,
    write_like: PreparedStatement,
    write_favorite: PreparedStatement,
    insert_mark: PreparedStatement,
    delete_mark: PreparedStatement,
    write_position: PreparedStatement,
    insert_comment: PreparedStatement,
    list_comment: PreparedStatement,
    delete_comment: PreparedStatement,
    unlist_comment: PreparedStatement,
    insert_view: PreparedStatement,
    read_offsets: PreparedStatement,
    write_offset: PreparedStatement,
    write_hours: PreparedStatement,
    drop_hours: PreparedStatement,
    write_popular: PreparedStatement,
}

/// One projection's view of the Scylla keyspace.
#[derive(Debug)]
pub(crate) struct ScyllaStore {
    session: Session,
    projection: String,
    statements: Statements,
    /// Artworks' counts as this instance last read or wrote them: each the state of its
    /// partition at its `next_offset`, a function of the log up to there, so still true when
    /// another instance has folded further (folding on from it rewrites what that one wrote).
    /// Forgotten on every change of assignment (see [`ScyllaStore::forget_counts`]) and when
    /// it would pass [`KNOWN_COUNTS`] artworks.
    known: std::sync::Mutex<HashMap<String, Counts>>,
}

/// Most artworks whose counts a store keeps between batches.
const KNOWN_COUNTS: usize = 100_000;

/// An interaction fact and its message's position.
pub(crate) type Positioned<'a> = (Position, &'a Event);

/// One kind of set fact (likes or favorites) as stored in `artwork_state` and `user_marks`.
#[derive(Debug, Default)]
struct SetSide {
    batch: SetBatch,
    /// Offset of each pair's last fact in the batch, copies included: the timestamp of every
    /// write for the pair (its row in the artwork's partition, its list entries).
    last: BTreeMap<SetKey, i64>,
    /// Stored current fact per pair as of the artwork's `next_offset`.
    stored: HashMap<SetKey, SetFact>,
    /// Where the batch's events were first applied, as stored (possibly by an interrupted run
    /// of this batch: the same positions, so the replay applies them again).
    applied: HashMap<SetEvent, Position>,
}

impl SetSide {
    fn add(&mut self, artwork: &str, user: &str, fact: SetFact, at: &Position) {
        self.last
            .insert((artwork.to_owned(), user.to_owned()), at.offset);
        self.batch.add(artwork, user, fact, at.clone());
    }

    /// The write timestamp of a pair's writes.
    fn timestamp(&self, pair: &SetKey) -> Option<CqlValue> {
        big(write_timestamp(self.last.get(pair).copied().unwrap_or(0)))
    }
}

impl ScyllaStore {
    pub(crate) async fn new(
        session: Session,
        keyspace: &str,
        projection: String,
    ) -> Result<Self, ProjectionError> {
        let p = |cql: &'static str| {
            let cql = cql.replace("{ks}", keyspace);
            let session = &session;
            async move {
                session
                    .prepare(cql)
                    .await
                    .map_err(ProjectionError::cql("prepare"))
            }
        };
        let statements = Statements {
            read_counts: p(
                "SELECT artwork_id, likes, favorites, comments, views, next_offset, like_hours,
                 view_hours FROM {ks}.artwork_state WHERE artwork_id IN ? PER PARTITION LIMIT 1",
            )
            .await?,
            read_marks: p(
                "SELECT user_id, liked, like_event, liked_at_ms, favorited, favorite_event,
                 favorited_at_ms FROM {ks}.artwork_state WHERE artwork_id = ? AND user_id IN ?",
            )
            .await?,
            read_positions: p("SELECT event_id, mark, topic, partition, message_offset
                 FROM {ks}.set_event_positions WHERE artwork_id = ? AND event_id IN ?")
            .await?,
            read_comments: p("SELECT comment_id, artwork_id, posted_at_ms, posted_offset,
                 deleted_offset FROM {ks}.comments WHERE comment_id IN ?")
            .await?,
            read_views: p("SELECT event_id, view_offset FROM {ks}.artwork_views
                 WHERE artwork_id = ? AND event_id IN ?")
            .await?,
            write_counts: p("UPDATE {ks}.artwork_state USING TIMESTAMP ?
                 SET likes = ?, favorites = ?, comments = ?, views = ?, next_offset = ?
                 WHERE artwork_id = ?")
            .await?,
            write_like: p("UPDATE {ks}.artwork_state USING TIMESTAMP ?
                 SET liked = ?, like_event = ?, liked_at_ms = ? WHERE artwork_id = ? AND user_id = ?")
            .await?,
            write_favorite: p("UPDATE {ks}.artwork_state USING TIMESTAMP ?
                 SET favorited = ?, favorite_event = ?, favorited_at_ms = ?
                 WHERE artwork_id = ? AND user_id = ?")
            .await?,
            insert_mark: p(
                "INSERT INTO {ks}.user_marks (user_id, mark, at_ms, artwork_id)
                 VALUES (?, ?, ?, ?) USING TIMESTAMP ?",
            )
            .await?,
            delete_mark: p("DELETE FROM {ks}.user_marks USING TIMESTAMP ?
                 WHERE user_id = ? AND mark = ? AND at_ms = ? AND artwork_id = ?")
            .await?,
            write_position: p("INSERT INTO {ks}.set_event_positions (artwork_id, event_id, mark,
                 topic, partition, message_offset) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?")
            .await?,
            insert_comment: p("INSERT INTO {ks}.comments (comment_id, artwork_id, user_id, body,
                 posted_at_ms, posted_offset) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?")
            .await?,
            list_comment: p("INSERT INTO {ks}.artwork_comments (artwork_id, posted_at_ms,
                 comment_id, user_id, body) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?")
            .await?,
            delete_comment: p("UPDATE {ks}.comments USING TIMESTAMP ? SET deleted_offset = ?
                 WHERE comment_id = ?")
            .await?,
            unlist_comment: p("DELETE FROM {ks}.artwork_comments USING TIMESTAMP ?
                 WHERE artwork_id = ? AND posted_at_ms = ? AND comment_id = ?")
            .await?,
            insert_view: p("INSERT INTO {ks}.artwork_views (artwork_id, event_id, view_offset)
                 VALUES (?, ?, ?) USING TIMESTAMP ?")
            .await?,
            read_offsets: p("SELECT topic, partition, next_offset FROM {ks}.projection_offsets
                 WHERE projection = ?")
            .await?,
            write_offset: p("UPDATE {ks}.projection_offsets SET next_offset = ?
                 WHERE projection = ? AND topic = ? AND partition = ?")
            .await?,
            write_hours: p("UPDATE {ks}.artwork_state USING TIMESTAMP ?
                 SET like_hours = like_hours + ?, view_hours = view_hours + ? WHERE artwork_id = ?")
            .await?,
            drop_hours: p("UPDATE {ks}.artwork_state USING TIMESTAMP ?
                 SET like_hours = like_hours - ?, view_hours = view_hours - ? WHERE artwork_id = ?")
            .await?,
            write_popular: p(
                "INSERT INTO {ks}.popular_hours (hour_ms, artwork_id, net_likes, views)
                 VALUES (?, ?, ?, ?) USING TIMESTAMP ?",
            )
            .await?,
        };
        Ok(Self {
            session,
            projection,
            statements,
            known: std::sync::Mutex::new(HashMap::new()),
        })
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Counts>> {
        // Every operation leaves the map consistent, so a poisoned lock is still usable.
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets the counts kept between batches: the next batch reads its artworks' again.
    pub(crate) fn forget_counts(&self) {
        self.known().clear();
    }

    /// The counts of `artworks`, from those kept between batches, else read (an artwork
    /// never written has none).
    async fn counts(
        &self,
        artworks: &[String],
    ) -> Result<HashMap<String, Counts>, ProjectionError> {
        let mut out = HashMap::with_capacity(artworks.len());
        let mut missing = Vec::new();
        {
            let known = self.known();
            for a in artworks {
                match known.get(a) {
                    Some(c) => {
                        out.insert(a.clone(), c.clone());
                    }
                    None => missing.push(a.clone()),
                }
            }
        }
        if !missing.is_empty() {
            let read = self.read_counts(&missing).await?;
            self.remember(read.iter().map(|(a, c)| (a.clone(), c.clone())));
            out.extend(read);
        }
        Ok(out)
    }

    /// Keeps `counts`, each an artwork's partition as stored.
    fn remember(&self, counts: impl IntoIterator<Item = (String, Counts)>) {
        let mut known = self.known();
        for (artwork, c) in counts {
            if known.len() >= KNOWN_COUNTS && !known.contains_key(&artwork) {
                known.clear();
            }
            known.insert(artwork, c);
        }
    }

    /// The stored next offset of every partition this projection has read.
    pub(crate) async fn offsets(&self) -> Result<HashMap<TopicPartition, i64>, ProjectionError> {
        let rows = self
            .session
            .execute_unpaged(&self.statements.read_offsets, (&self.projection,))
            .await
            .map_err(ProjectionError::cql("read offsets"))?
            .into_rows_result()
            .map_err(ProjectionError::cql("read offsets"))?;
        let mut out = HashMap::new();
        for row in rows
            .rows::<(String, i32, i64)>()
            .map_err(ProjectionError::cql("read offsets"))?
        {
            let (topic, partition, next) = row.map_err(ProjectionError::cql("read offsets"))?;
            out.insert((topic, partition), next);
        }
        Ok(out)
    }

    /// Records where to resume, after the batch is applied.
    pub(crate) async fn store_offsets(
        &self,
        next_offsets: &HashMap<TopicPartition, i64>,
    ) -> Result<(), ProjectionError> {
        let writes = next_offsets.iter().map(|((topic, partition), next)| {
            self.session.execute_unpaged(
                &self.statements.write_offset,
                (*next, &self.projection, topic, *partition),
            )
        });
        try_join_all(writes)
            .await
            .map_err(ProjectionError::cql("store offsets"))?;
        Ok(())
    }

    /// Writes rows of any tables and partitions: those of one partition of one table together,
    /// in unlogged batches of at most [`ROWS_PER_BATCH`] rows and about [`BYTES_PER_BATCH`]
    /// (one request and one mutation each instead of one per row), everything at once.
    async fn exec(&self, writes: Vec<(&PreparedStatement, Values)>) -> Result<(), ProjectionError> {
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

    /// Runs `statement`, whose one bind marker is an `IN` of partition keys, over `keys` in
    /// groups of at most [`KEYS_PER_IN`], the groups at once.
    async fn select_partitions<K: SerializeValue + Sync>(
        &self,
        statement: &PreparedStatement,
        keys: &[K],
        what: &'static str,
    ) -> Result<Vec<QueryRowsResult>, ProjectionError> {
        let reads = keys.chunks(KEYS_PER_IN).map(|group| async move {
            self.session
                .execute_unpaged(statement, (group,))
                .await
                .map_err(ProjectionError::cql(what))?
                .into_rows_result()
                .map_err(ProjectionError::cql(what))
        });
        try_join_all(reads).await
    }

    async fn read_counts(
        &self,
        artworks: &[String],
    ) -> Result<HashMap<String, Counts>, ProjectionError> {
        let results = self
            .select_partitions(&self.statements.read_counts, artworks, "read counts")
            .await?;
        let mut out = HashMap::new();
        type Hours = Option<BTreeMap<i64, i64>>;
        type Row = (
            String,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Hours,
            Hours,
        );
        for rows in &results {
            for row in rows
                .rows::<Row>()
                .map_err(ProjectionError::cql("read counts"))?
            {
                let (a, likes, favorites, comments, views, next, like_hours, view_hours) =
                    row.map_err(ProjectionError::cql("read counts"))?;
                let counts = Counts {
                    likes: likes.unwrap_or(0),
                    favorites: favorites.unwrap_or(0),
                    comments: comments.unwrap_or(0),
                    views: views.unwrap_or(0),
                    like_hours: like_hours.unwrap_or_default(),
                    view_hours: view_hours.unwrap_or_default(),
                    next_offset: next.unwrap_or(0),
                };
                out.insert(a, counts);
            }
        }
        Ok(out)
    }

    /// The like and favorite state of (artwork, user) pairs, as of the partition's offset.
    async fn read_marks(
        &self,
        pairs: &BTreeMap<String, Vec<String>>,
        likes: &mut SetSide,
        favorites: &mut SetSide,
    ) -> Result<(), ProjectionError> {
        let reads = pairs.iter().map(|(artwork, users)| async move {
            let rows = self
                .session
                .execute_unpaged(&self.statements.read_marks, (artwork, users))
                .await
                .map_err(ProjectionError::cql("read like states"))?
                .into_rows_result()
                .map_err(ProjectionError::cql("read like states"))?;
            type Row = (
                String,
                Option<bool>,
                Option<Uuid>,
                Option<i64>,
                Option<bool>,
                Option<Uuid>,
                Option<i64>,
            );
            let mut out = Vec::new();
            for row in rows
                .rows::<Row>()
                .map_err(ProjectionError::cql("read like states"))?
            {
                out.push((
                    artwork.clone(),
                    row.map_err(ProjectionError::cql("read like states"))?,
                ));
            }
            Ok::<_, ProjectionError>(out)
        });
        for (artwork, (user, liked, like_event, liked_at, favorited, favorite_event, fav_at)) in
            try_join_all(reads).await?.into_iter().flatten()
        {
            let key = (artwork, user);
            let stored = |on, event_id, at: Option<i64>| SetFact {
                on,
                event_id,
                occurred_at_ms: at.unwrap_or(0),
            };
            if let (Some(on), Some(e)) = (liked, like_event) {
                likes.stored.insert(key.clone(), stored(on, e, liked_at));
            }
            if let (Some(on), Some(e)) = (favorited, favorite_event) {
                favorites.stored.insert(key, stored(on, e, fav_at));
            }
        }
        Ok(())
    }

    /// Where the events `events` (per artwork) were first applied, as stored: (likes, favorites).
    async fn read_positions(
        &self,
        events: &BTreeMap<String, Vec<Uuid>>,
    ) -> Result<(HashMap<SetEvent, Position>, HashMap<SetEvent, Position>), ProjectionError> {
        let what = "read set event positions";
        let reads = events.iter().map(|(artwork, ids)| async move {
            let rows = self
                .session
                .execute_unpaged(&self.statements.read_positions, (artwork, ids))
                .await
                .map_err(ProjectionError::cql(what))?
                .into_rows_result()
                .map_err(ProjectionError::cql(what))?;
            type Row = (Uuid, String, Option<String>, Option<i32>, Option<i64>);
            let mut out = Vec::new();
            for row in rows.rows::<Row>().map_err(ProjectionError::cql(what))? {
                let (event, mark, topic, partition, offset) =
                    row.map_err(ProjectionError::cql(what))?;
                // One statement writes every cell of a row, so none is missing.
                let (Some(topic), Some(partition), Some(offset)) = (topic, partition, offset)
                else {
                    continue;
                };
                let at = Position {
                    topic,
                    partition,
                    offset,
                };
                out.push((mark, (artwork.clone(), event), at));
            }
            Ok::<_, ProjectionError>(out)
        });
        let (mut likes, mut favorites) = (HashMap::new(), HashMap::new());
        for (mark, event, at) in try_join_all(reads).await?.into_iter().flatten() {
            match mark.as_str() {
                "like" => likes.insert(event, at),
                "favorite" => favorites.insert(event, at),
                _ => None, // written by no version of this projector
            };
        }
        Ok((likes, favorites))
    }

    /// Applies the interaction facts of one batch (facts other than interactions are ignored).
    pub(crate) async fn apply(&self, facts: &[Positioned<'_>]) -> Result<(), ProjectionError> {
        let mut artworks: Vec<String> = facts
            .iter()
            .filter_map(|(_, e)| artwork_of(e).map(str::to_owned))
            .collect();
        artworks.sort_unstable();
        artworks.dedup();
        if artworks.is_empty() {
            return Ok(());
        }
        let counts = self.counts(&artworks).await?;
        let through = |a: &str| counts.get(a).map_or(0, |c| c.next_offset);

        let mut likes = SetSide::default();
        let mut favorites = SetSide::default();
        let mut comments = CommentBatch::default();
        let mut posted_offsets: HashMap<Uuid, i64> = HashMap::new();
        let mut deleted_offsets: HashMap<Uuid, i64> = HashMap::new();
        let mut views = ViewBatch::default();
        let mut view_offsets: HashMap<Uuid, i64> = HashMap::new();
        let mut last_offset: BTreeMap<String, i64> = BTreeMap::new();
        // The popularity rows every fact may change, applied or not: a replay after a crash
        // between an artwork's partition and these rows writes them again.
        let mut popular: BTreeSet<(String, i64)> = BTreeSet::new();
        for (at, event) in facts {
            let offset = &at.offset;
            let Some(artwork) = artwork_of(event) else {
                continue;
            };
            match event {
                Event::LikeSet(e) => {
                    popular.insert((artwork.to_owned(), hour_of(e.occurred_at)));
                }
                Event::ArtworkViewed(e) => {
                    popular.insert((artwork.to_owned(), hour_of(e.occurred_at)));
                }
                _ => {}
            }
            if *offset < through(artwork) {
                continue; // folded into the partition already
            }
            let last = last_offset.entry(artwork.to_owned()).or_insert(*offset);
            *last = (*last).max(*offset);
            match event {
                Event::LikeSet(e) => likes.add(artwork, e.user_id.as_str(), e.into(), at),
                Event::FavoriteSet(e) => {
                    favorites.add(artwork, e.user_id.as_str(), e.into(), at);
                }
                Event::CommentPosted(e) => {
                    comments.add_posted(e);
                    posted_offsets.entry(e.comment_id).or_insert(*offset);
                }
                Event::CommentDeleted(e) => {
                    comments.add_deleted(e);
                    deleted_offsets.entry(e.comment_id).or_insert(*offset);
                }
                Event::ArtworkViewed(e) => {
                    views.add(e);
                    view_offsets.entry(e.event_id).or_insert(*offset);
                }
                _ => {}
            }
        }
        if last_offset.is_empty() {
            return self
                .write_popular(&popular, &counts, &BTreeMap::new())
                .await;
        }

        let mut pairs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (a, u) in likes.last.keys().chain(favorites.last.keys()) {
            pairs.entry(a.clone()).or_default().push(u.clone());
        }
        for users in pairs.values_mut() {
            users.sort_unstable();
            users.dedup();
        }
        let mut events: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
        for (a, e) in likes.batch.events().chain(favorites.batch.events()) {
            events.entry(a.clone()).or_default().push(*e);
        }
        for ids in events.values_mut() {
            ids.sort_unstable();
            ids.dedup();
        }
        let ((), (liked, favorited)) = futures::try_join!(
            self.read_marks(&pairs, &mut likes, &mut favorites),
            self.read_positions(&events)
        )?;
        likes.applied = liked;
        favorites.applied = favorited;

        let mut deltas: BTreeMap<String, StatsDelta> = BTreeMap::new();
        let mut like_hours: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
        let mut writes: Vec<(&PreparedStatement, Values)> = Vec::new();
        let mut rows: ByArtwork<'_> = BTreeMap::new();
        let mut positions: ByArtwork<'_> = BTreeMap::new();
        for (side, mark) in [(&likes, "like"), (&favorites, "favorite")] {
            let plan = side.batch.plan(&side.stored, &side.applied);
            for (a, d) in &plan.count_deltas {
                let entry = deltas.entry(a.clone()).or_default();
                if mark == "like" {
                    entry.likes += d;
                } else {
                    entry.favorites += d;
                }
            }
            if mark == "like" {
                for ((a, hour), d) in &plan.bucket_deltas {
                    like_hours.entry(a.clone()).or_default().push((*hour, *d));
                }
            }
            let state = if mark == "like" {
                &self.statements.write_like
            } else {
                &self.statements.write_favorite
            };
            for ((a, u), fact) in &plan.upserts {
                rows.entry(a.clone()).or_default().push((
                    state,
                    vec![
                        side.timestamp(&(a.clone(), u.clone())),
                        flag(fact.on),
                        id(fact.event_id),
                        big(fact.occurred_at_ms),
                        text(a),
                        text(u),
                    ],
                ));
            }
            self.mark_writes(side, &plan.lists, mark, &mut writes);
            for ((a, e), at) in &plan.positions {
                positions.entry(a.clone()).or_default().push((
                    &self.statements.write_position,
                    vec![
                        text(a),
                        id(*e),
                        text(mark),
                        text(&at.topic),
                        int(at.partition),
                        big(at.offset),
                        big(write_timestamp(at.offset)),
                    ],
                ));
            }
        }

        let (comment_deltas, comment_writes) = self
            .comment_writes(&comments, &counts, &posted_offsets, &deleted_offsets)
            .await?;
        for (a, d) in comment_deltas {
            deltas.entry(a).or_default().comments += d;
        }
        writes.extend(comment_writes);
        let (view_deltas, view_buckets, view_writes) =
            self.view_writes(&views, &counts, &view_offsets).await?;
        for (a, d) in view_deltas {
            deltas.entry(a).or_default().views += d;
        }
        let mut view_hours: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
        for ((a, hour), d) in view_buckets {
            view_hours.entry(a).or_default().push((hour, d));
        }
        writes.extend(view_writes);

        // Derived rows first: if the process dies before an artwork's partition is written,
        // the replay recomputes and rewrites them identically.
        futures::try_join!(
            self.exec(writes),
            self.exec_batches(positions, "write set event positions")
        )?;
        let mut folded: BTreeMap<String, Counts> = BTreeMap::new();
        let mut partitions: ByArtwork<'_> = BTreeMap::new();
        for (artwork, last) in &last_offset {
            let before = counts.get(artwork).cloned().unwrap_or_default();
            let mut after = before.plus(deltas.get(artwork).copied().unwrap_or_default());
            let (likes_changed, likes_dropped) = hours_after(
                &before.like_hours,
                like_hours.get(artwork).into_iter().flatten().copied(),
            );
            let (views_changed, views_dropped) = hours_after(
                &before.view_hours,
                view_hours.get(artwork).into_iter().flatten().copied(),
            );
            after.like_hours.extend(&likes_changed);
            after.view_hours.extend(&views_changed);
            for h in &likes_dropped {
                after.like_hours.remove(h);
            }
            for h in &views_dropped {
                after.view_hours.remove(h);
            }
            after.next_offset = last + 1;
            folded.insert(artwork.clone(), after.clone());
            let ts = big(write_timestamp(*last));
            let mut batch = vec![(
                &self.statements.write_counts,
                vec![
                    ts.clone(),
                    big(after.likes),
                    big(after.favorites),
                    big(after.comments),
                    big(after.views),
                    big(last + 1),
                    text(artwork),
                ],
            )];
            if !likes_changed.is_empty() || !views_changed.is_empty() {
                batch.push((
                    &self.statements.write_hours,
                    vec![
                        ts.clone(),
                        hour_map(&likes_changed),
                        hour_map(&views_changed),
                        text(artwork),
                    ],
                ));
            }
            if !likes_dropped.is_empty() || !views_dropped.is_empty() {
                batch.push((
                    &self.statements.drop_hours,
                    vec![
                        ts.clone(),
                        hour_set(&likes_dropped),
                        hour_set(&views_dropped),
                        text(artwork),
                    ],
                ));
            }
            batch.extend(rows.remove(artwork).unwrap_or_default());
            partitions.insert(artwork.clone(), batch);
        }
        self.exec_batches(partitions, "write artwork partition")
            .await?;
        self.remember(folded.iter().map(|(a, c)| (a.clone(), c.clone())));
        self.write_popular(&popular, &counts, &folded).await
    }

    /// Copies the hourly values of `rows` from the artworks' partitions (as folded by this
    /// batch, else as stored) into `popular_hours`, partitioned by hour for the popularity
    /// reads. Absolute values, stamped with the partition's offset: a replay rewrites them.
    async fn write_popular(
        &self,
        rows: &BTreeSet<(String, i64)>,
        stored: &HashMap<String, Counts>,
        folded: &BTreeMap<String, Counts>,
    ) -> Result<(), ProjectionError> {
        let mut writes: Vec<(&PreparedStatement, Values)> = Vec::new();
        for (artwork, hour) in rows {
            let Some(state) = folded.get(artwork).or_else(|| stored.get(artwork)) else {
                continue;
            };
            let newest = state
                .like_hours
                .keys()
                .chain(state.view_hours.keys())
                .max()
                .copied()
                .unwrap_or(*hour);
            if *hour < newest - HOURS_KEPT_MS || state.next_offset == 0 {
                continue; // dropped from the partition, or nothing folded yet
            }
            if !state.like_hours.contains_key(hour) && !state.view_hours.contains_key(hour) {
                continue; // no fact landed in this hour (a copy's time, say): no row
            }
            writes.push((
                &self.statements.write_popular,
                vec![
                    big(*hour),
                    text(artwork),
                    big(state.like_hours.get(hour).copied().unwrap_or(0)),
                    big(state.view_hours.get(hour).copied().unwrap_or(0)),
                    big(write_timestamp(state.next_offset - 1)),
                ],
            ));
        }
        self.exec(writes).await
    }

    /// The writes of the users' like (or favorite) lists as the fold changes them, each at
    /// the timestamp of the pair's last fact in the batch, so even entries written by an
    /// interrupted run of a longer batch are removed.
    fn mark_writes<'s>(
        &'s self,
        side: &SetSide,
        lists: &[(SetKey, ListChange)],
        mark: &str,
        writes: &mut Vec<(&'s PreparedStatement, Values)>,
    ) {
        for (pair, change) in lists {
            let (a, u) = pair;
            let ts = side.timestamp(pair);
            if let Some(at) = change.insert {
                writes.push((
                    &self.statements.insert_mark,
                    vec![text(u), text(mark), big(at), text(a), ts.clone()],
                ));
            }
            for at in &change.delete {
                writes.push((
                    &self.statements.delete_mark,
                    vec![ts.clone(), text(u), text(mark), big(*at), text(a)],
                ));
            }
        }
    }

    async fn comment_writes(
        &self,
        batch: &CommentBatch,
        counts: &HashMap<String, Counts>,
        posted_offsets: &HashMap<Uuid, i64>,
        deleted_offsets: &HashMap<Uuid, i64>,
    ) -> Result<(BTreeMap<String, i64>, Vec<(&PreparedStatement, Values)>), ProjectionError> {
        let mut writes: Vec<(&PreparedStatement, Values)> = Vec::new();
        if batch.is_empty() {
            return Ok((BTreeMap::new(), writes));
        }
        let results = self
            .select_partitions(
                &self.statements.read_comments,
                &batch.ids(),
                "read comments",
            )
            .await?;
        let mut stored: HashMap<Uuid, StoredComment> = HashMap::new();
        let mut listed: HashMap<Uuid, (String, i64)> = HashMap::new();
        // Every column may be null: a deletion's cells can land without the posting's when a
        // batch is interrupted (the replay writes the posting again).
        type Row = (Uuid, Option<String>, Option<i64>, Option<i64>, Option<i64>);
        for row in results
            .iter()
            .map(|rows| {
                rows.rows::<Row>()
                    .map_err(ProjectionError::cql("read comments"))
            })
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
        {
            let (comment, artwork, posted_at, posted, deleted) =
                row.map_err(ProjectionError::cql("read comments"))?;
            let (Some(artwork), Some(posted_at), Some(posted)) = (artwork, posted_at, posted)
            else {
                continue;
            };
            // As of the artwork's partition: rows written by an interrupted batch beyond it
            // are not applied yet. A comment of an artwork outside the batch is left alone.
            let Some(through) = counts.get(&artwork).map(|c| c.next_offset) else {
                continue;
            };
            if posted >= through {
                continue;
            }
            stored.insert(
                comment,
                StoredComment {
                    artwork_id: artwork.clone(),
                    deleted: deleted.is_some_and(|d| d < through),
                },
            );
            listed.insert(comment, (artwork, posted_at));
        }
        let plan = batch.plan(&stored);
        for c in &plan.inserts {
            let offset = posted_offsets.get(&c.comment_id).copied().unwrap_or(0);
            let ts = big(write_timestamp(offset));
            writes.push((
                &self.statements.insert_comment,
                vec![
                    id(c.comment_id),
                    text(&c.artwork_id),
                    text(&c.user_id),
                    text(&c.body),
                    big(c.posted_at_ms),
                    big(offset),
                    ts.clone(),
                ],
            ));
            writes.push((
                &self.statements.list_comment,
                vec![
                    text(&c.artwork_id),
                    big(c.posted_at_ms),
                    text(&c.comment_id.to_string()),
                    text(&c.user_id),
                    text(&c.body),
                    ts,
                ],
            ));
            listed.insert(c.comment_id, (c.artwork_id.clone(), c.posted_at_ms));
        }
        for d in &plan.deletions {
            let offset = deleted_offsets.get(&d.comment_id).copied().unwrap_or(0);
            let ts = big(write_timestamp(offset));
            writes.push((
                &self.statements.delete_comment,
                vec![ts.clone(), big(offset), id(d.comment_id)],
            ));
            if let Some((artwork, posted_at)) = listed.get(&d.comment_id) {
                writes.push((
                    &self.statements.unlist_comment,
                    vec![
                        ts,
                        text(artwork),
                        big(*posted_at),
                        text(&d.comment_id.to_string()),
                    ],
                ));
            }
        }
        Ok((plan.count_deltas, writes))
    }

    async fn view_writes(
        &self,
        batch: &ViewBatch,
        counts: &HashMap<String, Counts>,
        view_offsets: &HashMap<Uuid, i64>,
    ) -> Result<ViewWrites<'_>, ProjectionError> {
        let mut writes: Vec<(&PreparedStatement, Values)> = Vec::new();
        if batch.is_empty() {
            return Ok((BTreeMap::new(), BTreeMap::new(), writes));
        }
        let mut ids_of: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
        for v in batch.views() {
            ids_of
                .entry(v.artwork_id.clone())
                .or_default()
                .push(v.event_id);
        }
        let reads = ids_of.iter().map(|(artwork, ids)| async move {
            let rows = self
                .session
                .execute_unpaged(&self.statements.read_views, (artwork, ids))
                .await
                .map_err(ProjectionError::cql("read views"))?
                .into_rows_result()
                .map_err(ProjectionError::cql("read views"))?;
            let through = counts.get(artwork).map_or(0, |c| c.next_offset);
            let mut out = Vec::new();
            for row in rows
                .rows::<(Uuid, i64)>()
                .map_err(ProjectionError::cql("read views"))?
            {
                let (event, offset) = row.map_err(ProjectionError::cql("read views"))?;
                if offset < through {
                    out.push(event);
                }
            }
            Ok::<_, ProjectionError>(out)
        });
        let stored: HashSet<Uuid> = try_join_all(reads).await?.into_iter().flatten().collect();
        let plan = batch.plan(&stored);
        for v in &plan.inserts {
            let offset = view_offsets.get(&v.event_id).copied().unwrap_or(0);
            writes.push((
                &self.statements.insert_view,
                vec![
                    text(&v.artwork_id),
                    id(v.event_id),
                    big(offset),
                    big(write_timestamp(offset)),
                ],
            ));
        }
        Ok((plan.count_deltas, plan.bucket_deltas, writes))
    }
}

/// The views of a batch: count deltas per artwork, view deltas per (artwork, hour), writes.
type ViewWrites<'s> = (
    BTreeMap<String, i64>,
    BTreeMap<(String, i64), i64>,
    Vec<(&'s PreparedStatement, Values)>,
);

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

/// Cuts `facts` (in log order) into consecutive rounds, each holding at most `per_artwork`
/// facts of any one artwork, as few rounds as that allows. Applied one after the other, each
/// round reads what the one before wrote, so the result is that of the whole batch at once.
pub(crate) fn rounds<'f, 'e>(
    facts: &'f [Positioned<'e>],
    per_artwork: usize,
) -> Vec<&'f [Positioned<'e>]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut held: HashMap<&'e str, usize> = HashMap::new();
    for (i, (_, event)) in facts.iter().enumerate() {
        let Some(artwork) = artwork_of(event) else {
            continue;
        };
        let count = held.entry(artwork).or_insert(0);
        if *count >= per_artwork.max(1) {
            out.push(&facts[start..i]);
            start = i;
            held.clear();
            held.insert(artwork, 1);
        } else {
            *count += 1;
        }
    }
    if start < facts.len() || out.is_empty() {
        out.push(&facts[start..]);
    }
    out
}

/// The artwork an interaction fact is about.
pub(crate) fn artwork_of(event: &Event) -> Option<&str> {
    match event {
        Event::LikeSet(e) => Some(e.artwork_id.as_str()),
        Event::FavoriteSet(e) => Some(e.artwork_id.as_str()),
        Event::CommentPosted(e) => Some(e.artwork_id.as_str()),
        Event::CommentDeleted(e) => Some(e.artwork_id.as_str()),
        Event::ArtworkViewed(e) => Some(e.artwork_id.as_str()),
        _ => None,
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
    use gallery_schemas::{ArtworkId, ArtworkViewed};

    #[test]
    fn a_hot_artwork_is_applied_in_rounds_in_log_order() {
        let view = |artwork: &str| {
            Event::ArtworkViewed(ArtworkViewed {
                event_id: Uuid::now_v7(),
                artwork_id: ArtworkId::parse(artwork).unwrap_or_else(|e| unreachable!("{e}")),
                user_id: None,
                occurred_at: 0,
            })
        };
        // 250 facts of `hot`, every fifth one of `cold` between them.
        let events: Vec<Event> = (0..300)
            .map(|i| view(if i % 6 == 5 { "cold" } else { "hot" }))
            .collect();
        let facts: Vec<Positioned<'_>> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let at = Position {
                    topic: "t".into(),
                    partition: 0,
                    offset: i as i64,
                };
                (at, e)
            })
            .collect();
        let rounds = rounds(&facts, 100);
        assert_eq!(rounds.len(), 3);
        let per_round: Vec<usize> = rounds
            .iter()
            .map(|r| {
                r.iter()
                    .filter(|(_, e)| artwork_of(e) == Some("hot"))
                    .count()
            })
            .collect();
        assert_eq!(per_round, vec![100, 100, 50]);
        let offsets: Vec<i64> = rounds
            .iter()
            .flat_map(|r| r.iter().map(|(at, _)| at.offset))
            .collect();
        assert_eq!(
            offsets,
            (0..300).collect::<Vec<i64>>(),
            "every fact once, in order"
        );
        // Nothing to cut: one round, the batch itself.
        assert_eq!(super::rounds(&facts[..50], 100).len(), 1);
        assert_eq!(super::rounds(&[], 100).len(), 1);
    }

    #[test]
    fn hours_add_up_and_the_oldest_beyond_the_kept_span_are_dropped() {
        const H: i64 = 3_600_000;
        let before = BTreeMap::from([(0, 2), (5 * H, 1)]);
        let (changed, dropped) = hours_after(&before, [(5 * H, 1), (6 * H, -1)].into_iter());
        assert_eq!(changed, BTreeMap::from([(5 * H, 2), (6 * H, -1)]));
        assert!(dropped.is_empty());
        // A fact nine days later pushes hour 0 and 5 out of the kept span.
        let late = 9 * 24 * H;
        let (changed, dropped) = hours_after(&before, [(late, 1), (0, 1)].into_iter());
        assert_eq!(changed, BTreeMap::from([(late, 1)]));
        assert_eq!(dropped, vec![0, 5 * H]);
    }
}
