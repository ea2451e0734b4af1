//! The Postgres read model, and the offsets stored with it.

mod catalog;
mod generation;
mod interactions;
mod users;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use gallery_schemas::{Event, Position, Topics};
use tokio_postgres::{Client, GenericClient, Transaction};

use crate::error::ProjectionError;
use crate::fold::SetBatch;
use crate::fold::catalog::CatalogBatch;
use crate::fold::comments::CommentBatch;
use crate::fold::generation::GenerationBatch;
use crate::fold::users::UserBatch;
use crate::fold::views::ViewBatch;
use crate::generations::{self, Generation};

/// Schema changes, applied in order, each once. Append only.
const MIGRATIONS: &[(i32, &str)] = &[
    (
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
    ),
    (2, MIGRATION_2),
    (3, MIGRATION_3),
    (4, MIGRATION_4),
];

/// The read model of every event. The projection of the first migration folded likes only,
/// under another name; its rows are dropped, so the new projection rebuilds them from the log
/// together with everything else.
const MIGRATION_2: &str = "
    DELETE FROM projection_offsets WHERE projection = 'likes';
    TRUNCATE artwork_likes, artwork_stats;
    DROP INDEX artwork_likes_by_user;
    CREATE INDEX artwork_likes_by_user ON artwork_likes (user_id, occurred_at_ms DESC, artwork_id DESC)
        WHERE liked;
    ALTER TABLE artwork_stats
        ADD COLUMN favorite_count bigint NOT NULL DEFAULT 0 CHECK (favorite_count >= 0),
        ADD COLUMN comment_count  bigint NOT NULL DEFAULT 0 CHECK (comment_count >= 0),
        ADD COLUMN view_count     bigint NOT NULL DEFAULT 0 CHECK (view_count >= 0);
    CREATE TABLE artwork_favorites (
        artwork_id     text    NOT NULL,
        user_id        text    NOT NULL,
        favorited      boolean NOT NULL,
        event_id       uuid    NOT NULL,
        occurred_at_ms bigint  NOT NULL,
        PRIMARY KEY (artwork_id, user_id)
    );
    CREATE INDEX artwork_favorites_by_user
        ON artwork_favorites (user_id, occurred_at_ms DESC, artwork_id DESC) WHERE favorited;
    CREATE TABLE like_buckets (
        hour_ms    bigint NOT NULL,
        artwork_id text   NOT NULL,
        net_likes  bigint NOT NULL,
        PRIMARY KEY (hour_ms, artwork_id)
    );
    CREATE TABLE artwork_views (
        event_id     uuid   PRIMARY KEY,
        artwork_id   text   NOT NULL,
        user_id      text,
        viewed_at_ms bigint NOT NULL
    );
    CREATE TABLE view_buckets (
        hour_ms    bigint NOT NULL,
        artwork_id text   NOT NULL,
        views      bigint NOT NULL CHECK (views >= 0),
        PRIMARY KEY (hour_ms, artwork_id)
    );
    CREATE TABLE comments (
        comment_id    uuid    PRIMARY KEY,
        artwork_id    text    NOT NULL,
        user_id       text    NOT NULL,
        body          text    NOT NULL,
        posted_at_ms  bigint  NOT NULL,
        deleted       boolean NOT NULL DEFAULT false,
        deleted_by    text,
        deleted_at_ms bigint
    );
    CREATE INDEX comments_by_artwork ON comments (artwork_id, posted_at_ms DESC, comment_id DESC)
        WHERE NOT deleted;
    CREATE TABLE users (
        user_id          text   PRIMARY KEY,
        display_name     text   NOT NULL,
        role             text   NOT NULL CHECK (role IN ('visitor', 'curator', 'admin')),
        registered_at_ms bigint NOT NULL
    );
    CREATE TABLE exhibitions (
        exhibition_id   uuid   PRIMARY KEY,
        curator_id      text   NOT NULL,
        title           text   NOT NULL,
        description     text   NOT NULL,
        opens_at_ms     bigint NOT NULL,
        closes_at_ms    bigint NOT NULL,
        status          text   NOT NULL CHECK (status IN ('draft', 'published', 'closed')),
        created_at_ms   bigint NOT NULL,
        published_at_ms bigint,
        closed_at_ms    bigint
    );
    CREATE INDEX exhibitions_by_schedule ON exhibitions (opens_at_ms, exhibition_id);
    CREATE INDEX exhibitions_by_status ON exhibitions (status, opens_at_ms, exhibition_id);
    CREATE TABLE artworks (
        artwork_id         text    PRIMARY KEY,
        exhibition_id      uuid    NOT NULL,
        title              text    NOT NULL,
        artist             text    NOT NULL,
        year               integer,
        style              text,
        description        text    NOT NULL,
        image_key          text    NOT NULL,
        image_content_type text    NOT NULL,
        image_width        integer NOT NULL,
        image_height       integer NOT NULL,
        added_by           text    NOT NULL,
        added_at_ms        bigint  NOT NULL,
        removed            boolean NOT NULL DEFAULT false,
        removed_at_ms      bigint
    );
    CREATE INDEX artworks_by_added ON artworks (added_at_ms DESC, artwork_id DESC) WHERE NOT removed;
    CREATE INDEX artworks_by_exhibition ON artworks (exhibition_id, added_at_ms DESC, artwork_id DESC)
        WHERE NOT removed;
    CREATE TABLE generation_jobs (
        request_id        uuid    PRIMARY KEY,
        user_id           text    NOT NULL,
        mode              text    NOT NULL CHECK (mode IN ('text_to_image', 'image_to_image')),
        prompt            text,
        negative_prompt   text,
        style             text    NOT NULL,
        seed              bigint  NOT NULL,
        steps             integer NOT NULL,
        width             integer NOT NULL,
        height            integer NOT NULL,
        source_image_key  text,
        degraded          boolean NOT NULL,
        status            text    NOT NULL
            CHECK (status IN ('requested', 'running', 'completed', 'failed', 'cancelled')),
        requested_at_ms   bigint  NOT NULL,
        cancelled_at_ms   bigint,
        -- Filled by the AI painter's result events.
        progress          real    CHECK (progress BETWEEN 0 AND 1),
        result_image_keys text[]  NOT NULL DEFAULT '{}',
        failure_reason    text,
        finished_at_ms    bigint
    );
    CREATE INDEX generation_jobs_by_user ON generation_jobs (user_id, requested_at_ms DESC, request_id DESC);
";

/// The AI painter's results on generation jobs: the `cancelling` status, the start, the
/// progress (step of steps), the result images with their sizes and content types, the
/// failure's code. The placeholder columns of migration 2 that no event ever filled go (the
/// view over the table depends on them, hence `CASCADE`: `migrate` points the views again).
/// A read model that skipped result events before this migration catches up with a rebuild.
const MIGRATION_3: &str = "
    ALTER TABLE generation_jobs
        DROP COLUMN progress CASCADE,
        DROP COLUMN result_image_keys CASCADE,
        DROP CONSTRAINT generation_jobs_status_check,
        ADD CONSTRAINT generation_jobs_status_check CHECK (status IN
            ('requested', 'running', 'cancelling', 'completed', 'failed', 'cancelled')),
        ADD COLUMN model                          text,
        ADD COLUMN started_at_ms                  bigint,
        ADD COLUMN progress_step                  integer,
        ADD COLUMN progress_steps                 integer,
        ADD COLUMN progress_at_ms                 bigint,
        ADD COLUMN result_image_key               text,
        ADD COLUMN result_image_content_type      text,
        ADD COLUMN result_image_width             integer,
        ADD COLUMN result_image_height            integer,
        ADD COLUMN result_image_size_bytes        bigint,
        ADD COLUMN result_webp_key                text,
        ADD COLUMN result_webp_content_type       text,
        ADD COLUMN result_webp_width              integer,
        ADD COLUMN result_webp_height             integer,
        ADD COLUMN result_webp_size_bytes         bigint,
        ADD COLUMN result_thumbnail_key           text,
        ADD COLUMN result_thumbnail_content_type  text,
        ADD COLUMN result_thumbnail_width         integer,
        ADD COLUMN result_thumbnail_height        integer,
        ADD COLUMN result_thumbnail_size_bytes    bigint,
        ADD COLUMN cache_hit                      boolean,
        ADD COLUMN result_degraded                boolean,
        ADD COLUMN result_steps                   integer,
        ADD COLUMN duration_ms                    bigint,
        ADD COLUMN failure_code                   text,
        ADD CONSTRAINT generation_jobs_result_when_completed
            CHECK ((status = 'completed') = (result_image_key IS NOT NULL)),
        ADD CONSTRAINT generation_jobs_failure_when_failed
            CHECK ((status = 'failed') = (failure_code IS NOT NULL)),
        ADD CONSTRAINT generation_jobs_progress_whole
            CHECK ((progress_step IS NULL) = (progress_steps IS NULL));
";

/// Where each like and favorite event was first applied: the position of its first message,
/// so that a copy of the event (the same id at another position) changes nothing, whenever it
/// comes (see [`crate::fold::sets`]). Written in each batch's transaction, never deleted: one
/// row per like or favorite event. A read model projected before this migration remembers no
/// position for the events it applied before; a rebuild fills them in from the log.
const MIGRATION_4: &str = "
    CREATE TABLE set_event_positions (
        artwork_id     text    NOT NULL,
        mark           text    NOT NULL CHECK (mark IN ('like', 'favorite')),
        event_id       uuid    NOT NULL,
        topic          text    NOT NULL,
        partition      integer NOT NULL,
        message_offset bigint  NOT NULL CHECK (message_offset >= 0),
        PRIMARY KEY (artwork_id, mark, event_id)
    );
";

/// Key of the advisory lock that serialises migrations between processes.
pub(crate) const MIGRATION_LOCK: i64 = 0x0067_616c_6c65_7279;

/// Brings the read model up to date: the generations layout (see [`crate::generations`]),
/// the live generation's tables, and the views over them in `public`; refuses a read model of
/// another deployment than the one of `topics`, and records its topic prefix with a read model
/// that has none yet (see [`crate::deployment`]). Safe to call from several processes at
/// once. Returns the live generation.
pub async fn migrate(client: &mut Client, topics: &Topics) -> Result<Generation, ProjectionError> {
    let tx = client
        .transaction()
        .await
        .map_err(ProjectionError::pg("begin migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(ProjectionError::pg("lock migrations"))?;
    let (live, created) = generations::ensure_layout(&tx).await?;
    generations::claim(&tx, topics).await?;
    let applied = migrate_in(&tx, &live).await?;
    if created || applied > 0 || generations::views_missing(&tx, &live).await? {
        generations::point_views(&tx, &live).await?;
    }
    tx.commit()
        .await
        .map_err(ProjectionError::pg("commit migration"))?;
    Ok(live)
}

/// Creates a new, empty generation with every migration applied, not live yet.
pub(crate) async fn create_generation(client: &mut Client) -> Result<Generation, ProjectionError> {
    let tx = client
        .transaction()
        .await
        .map_err(ProjectionError::pg("begin migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(ProjectionError::pg("lock migrations"))?;
    generations::ensure_layout(&tx).await?;
    let generation = generations::create(&tx).await?;
    migrate_in(&tx, &generation).await?;
    tx.commit()
        .await
        .map_err(ProjectionError::pg("commit migration"))?;
    Ok(generation)
}

/// Applies the missing migrations inside `generation`'s schema; returns how many.
async fn migrate_in(
    tx: &Transaction<'_>,
    generation: &Generation,
) -> Result<usize, ProjectionError> {
    tx.batch_execute(&format!("SET LOCAL search_path TO {generation}"))
        .await
        .map_err(ProjectionError::pg("enter generation"))?;
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
    let mut count = 0;
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
        tracing::info!(version, %generation, "applied read-model migration");
        count += 1;
    }
    tx.batch_execute("SET LOCAL search_path TO public")
        .await
        .map_err(ProjectionError::pg("leave generation"))?;
    Ok(count)
}

/// The stored next offsets of `projection` in `generation`, whatever the session's path.
pub(crate) async fn offsets_in(
    client: &impl GenericClient,
    generation: &Generation,
    projection: &str,
) -> Result<HashMap<TopicPartition, i64>, ProjectionError> {
    let rows = client
        .query(
            &format!(
                "SELECT topic, partition, next_offset FROM {generation}.projection_offsets
                 WHERE projection = $1"
            ),
            &[&projection],
        )
        .await
        .map_err(ProjectionError::pg("read offsets"))?;
    Ok(rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect())
}

/// One projection's view of Postgres.
#[derive(Debug)]
pub struct PostgresStore {
    projection: String,
    /// The projection named in the batches' notifications.
    announce_as: String,
}

/// A (topic, partition) pair.
pub type TopicPartition = (String, i32);

/// A batch ready to be written: the folded events of every topic plus the next offset per
/// partition.
#[derive(Debug, Default)]
pub struct Batch {
    pub likes: SetBatch,
    pub favorites: SetBatch,
    pub comments: CommentBatch,
    pub views: ViewBatch,
    pub catalog: CatalogBatch,
    pub users: UserBatch,
    pub generation: GenerationBatch,
    /// (topic, partition) -> offset of the next message to read.
    pub next_offsets: HashMap<TopicPartition, i64>,
    /// Artworks whose rows (catalog, counts, marks, comments) the batch may change.
    pub changed_artworks: BTreeSet<String>,
    /// Generation jobs the batch may change.
    pub changed_jobs: BTreeSet<uuid::Uuid>,
}

impl Batch {
    /// Adds one event, in log order, with its message's position.
    pub fn add(&mut self, event: &Event, at: &Position) {
        self.note_change(event);
        match event {
            Event::UserRegistered(e) => self.users.add(e),
            Event::ExhibitionCreated(e) => self.catalog.add_created(e),
            Event::ArtworkAdded(e) => self.catalog.add_added(e),
            Event::ArtworkRemoved(e) => self.catalog.add_removed(e),
            Event::ExhibitionPublished(e) => self.catalog.add_published(e),
            Event::ExhibitionClosed(e) => self.catalog.add_closed(e),
            Event::LikeSet(e) => self.likes.add_like(e, at.clone()),
            Event::FavoriteSet(e) => self.favorites.add_favorite(e, at.clone()),
            Event::CommentPosted(e) => self.comments.add_posted(e),
            Event::CommentDeleted(e) => self.comments.add_deleted(e),
            Event::ArtworkViewed(e) => self.views.add(e),
            Event::GenerationRequested(e) => self.generation.add_requested(e),
            Event::GenerationCancelled(e) => self.generation.add_cancelled(e),
            Event::GenerationStarted(e) => self.generation.add_started(e),
            Event::GenerationProgressed(e) => self.generation.add_progressed(e),
            Event::GenerationCompleted(e) => self.generation.add_completed(e),
            Event::GenerationFailed(e) => self.generation.add_failed(e),
            Event::GenerationCancelConfirmed(e) => self.generation.add_cancel_confirmed(e),
        }
    }
}

impl Batch {
    fn note_change(&mut self, event: &Event) {
        let artwork = match event {
            Event::ArtworkAdded(e) => Some(&e.artwork_id),
            Event::ArtworkRemoved(e) => Some(&e.artwork_id),
            Event::LikeSet(e) => Some(&e.artwork_id),
            Event::FavoriteSet(e) => Some(&e.artwork_id),
            Event::CommentPosted(e) => Some(&e.artwork_id),
            Event::CommentDeleted(e) => Some(&e.artwork_id),
            Event::ArtworkViewed(e) => Some(&e.artwork_id),
            _ => None,
        };
        if let Some(id) = artwork {
            self.changed_artworks.insert(id.as_str().to_owned());
        }
        let job = match event {
            Event::GenerationRequested(e) => Some(e.request_id),
            Event::GenerationCancelled(e) => Some(e.request_id),
            Event::GenerationStarted(e) => Some(e.request_id),
            Event::GenerationProgressed(e) => Some(e.request_id),
            Event::GenerationCompleted(e) => Some(e.request_id),
            Event::GenerationFailed(e) => Some(e.request_id),
            Event::GenerationCancelConfirmed(e) => Some(e.request_id),
            _ => None,
        };
        if let Some(id) = job {
            self.changed_jobs.insert(id);
        }
    }

    /// The payload of the `read_model` notification of this batch (see [`notification`]).
    pub fn notification(&self, projection: &str) -> String {
        notification(
            projection,
            &self.next_offsets,
            self.changed_artworks.iter().map(String::as_str),
            &self.changed_jobs,
        )
    }
}

/// The payload of a `read_model` notification: one line per fact, `p <projection>` first, then
/// `o <topic> <partition> <next_offset>`, `a <artwork id>`, `j <job id>`; a line `*` instead of
/// the `a` and `j` lines means "anything may have changed" (the payload would pass Postgres'
/// limit). Topics, names and ids hold no spaces or line breaks.
pub fn notification<'a>(
    projection: &str,
    next_offsets: &HashMap<TopicPartition, i64>,
    artworks: impl IntoIterator<Item = &'a str>,
    jobs: &BTreeSet<uuid::Uuid>,
) -> String {
    let mut offsets = format!("p {projection}\n");
    for ((topic, partition), next) in next_offsets {
        let _ = writeln!(offsets, "o {topic} {partition} {next}");
    }
    let mut changes = String::new();
    for id in artworks {
        let _ = writeln!(changes, "a {id}");
    }
    for id in jobs {
        let _ = writeln!(changes, "j {id}");
    }
    if offsets.len() + changes.len() > NOTIFY_LIMIT {
        changes = "*\n".to_owned();
    }
    if offsets.len() + changes.len() > NOTIFY_LIMIT {
        offsets = format!("p {projection}\n");
    }
    offsets + &changes
}

/// The channel on which every committed batch is announced (see [`Batch::notification`]).
pub const NOTIFY_CHANNEL: &str = "read_model";

/// Largest notification payload sent (Postgres refuses 8000 bytes and more).
const NOTIFY_LIMIT: usize = 7_900;

impl PostgresStore {
    pub fn new(projection: impl Into<String>) -> Self {
        let projection = projection.into();
        Self {
            announce_as: projection.clone(),
            projection,
        }
    }

    /// Announces batches under another name: a rebuild's batches go to a generation nobody
    /// reads yet, so readers waiting for an offset must not take them for the live one's.
    pub fn announced_as(self, name: impl Into<String>) -> Self {
        Self {
            announce_as: name.into(),
            ..self
        }
    }

    /// The stored next offset of every partition this projection has read.
    pub async fn offsets(
        &self,
        client: &impl GenericClient,
    ) -> Result<HashMap<TopicPartition, i64>, ProjectionError> {
        let rows = client
            .query(
                "SELECT topic, partition, next_offset FROM projection_offsets
                 WHERE projection = $1",
                &[&self.projection],
            )
            .await
            .map_err(ProjectionError::pg("read offsets"))?;
        Ok(rows
            .iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect())
    }

    /// Applies `batch` and records its offsets in one transaction. Messages below the stored
    /// offsets were applied already (by an earlier run or a concurrent projector) and are
    /// skipped by the caller through [`PostgresStore::lock_offsets`].
    pub async fn apply(&self, tx: &Transaction<'_>, batch: &Batch) -> Result<(), ProjectionError> {
        users_and_jobs(tx, batch).await?;
        if !batch.catalog.is_empty() {
            catalog::apply(tx, &batch.catalog).await?;
        }
        interactions::apply(tx, batch).await?;
        let mut topics = Vec::with_capacity(batch.next_offsets.len());
        let mut partitions = Vec::with_capacity(batch.next_offsets.len());
        let mut offsets = Vec::with_capacity(batch.next_offsets.len());
        for ((t, p), o) in &batch.next_offsets {
            topics.push(t.as_str());
            partitions.push(*p);
            offsets.push(*o);
        }
        tx.execute(
            "INSERT INTO projection_offsets (projection, topic, partition, next_offset)
             SELECT $1, t, p, o FROM unnest($2::text[], $3::integer[], $4::bigint[]) AS x(t, p, o)
             ON CONFLICT (projection, topic, partition)
             DO UPDATE SET next_offset = GREATEST(projection_offsets.next_offset, excluded.next_offset)",
            &[&self.projection, &topics, &partitions, &offsets],
        )
        .await
        .map_err(ProjectionError::pg("store offsets"))?;
        // Delivered to listeners only when the transaction commits.
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[&NOTIFY_CHANNEL, &batch.notification(&self.announce_as)],
        )
        .await
        .map_err(ProjectionError::pg("notify"))?;
        Ok(())
    }

    /// Locks the offset rows of `partitions` for this transaction and returns the stored
    /// next offsets, so two projectors never apply the same messages.
    pub async fn lock_offsets(
        &self,
        tx: &Transaction<'_>,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>, ProjectionError> {
        let (topics, numbers): (Vec<&str>, Vec<i32>) =
            partitions.iter().map(|(t, p)| (t.as_str(), *p)).unzip();
        tx.execute(
            "INSERT INTO projection_offsets (projection, topic, partition, next_offset)
             SELECT $1, t, p, 0 FROM unnest($2::text[], $3::integer[]) AS x(t, p)
             ON CONFLICT DO NOTHING",
            &[&self.projection, &topics, &numbers],
        )
        .await
        .map_err(ProjectionError::pg("create offset rows"))?;
        let rows = tx
            .query(
                "SELECT o.topic, o.partition, o.next_offset FROM projection_offsets o
                 JOIN unnest($2::text[], $3::integer[]) AS x(t, p)
                   ON o.topic = x.t AND o.partition = x.p
                 WHERE o.projection = $1
                 ORDER BY o.topic, o.partition FOR UPDATE OF o",
                &[&self.projection, &topics, &numbers],
            )
            .await
            .map_err(ProjectionError::pg("lock offsets"))?;
        Ok(rows
            .iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect())
    }
}

async fn users_and_jobs(tx: &Transaction<'_>, batch: &Batch) -> Result<(), ProjectionError> {
    if !batch.users.is_empty() {
        users::apply(tx, &batch.users).await?;
    }
    if !batch.generation.is_empty() {
        generation::apply(tx, &batch.generation).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_names_offsets_and_changes_and_stays_under_the_limit() {
        let mut batch = Batch::default();
        batch.next_offsets.insert(("g.interactions".into(), 2), 18);
        batch.changed_artworks.insert("sunflowers".into());
        batch.changed_jobs.insert(uuid::Uuid::nil());
        assert_eq!(
            batch.notification("read-model"),
            format!(
                "p read-model\no g.interactions 2 18\na sunflowers\nj {}\n",
                uuid::Uuid::nil()
            )
        );
        for n in 0..2_000 {
            batch.changed_artworks.insert(format!("artwork-{n}"));
        }
        let big = batch.notification("read-model");
        assert!(big.len() < 8_000);
        assert_eq!(big, "p read-model\no g.interactions 2 18\n*\n");
    }

    #[test]
    fn the_workers_events_mark_their_job_changed() {
        let user = gallery_schemas::UserId::parse("ada").unwrap_or_else(|e| unreachable!("{e}"));
        let (a, b) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let mut batch = Batch::default();
        let at = |offset| Position {
            topic: "g.generation".into(),
            partition: 0,
            offset,
        };
        batch.add(
            &Event::GenerationProgressed(gallery_schemas::GenerationProgressed {
                event_id: uuid::Uuid::now_v7(),
                request_id: a,
                user_id: user.clone(),
                step: 1,
                steps: 2,
                occurred_at: 0,
            }),
            &at(0),
        );
        batch.add(
            &Event::GenerationCancelConfirmed(gallery_schemas::GenerationCancelConfirmed {
                event_id: uuid::Uuid::now_v7(),
                request_id: b,
                user_id: user,
                step: 0,
                occurred_at: 0,
            }),
            &at(1),
        );
        assert_eq!(batch.generation.ids(), vec![a, b]);
        assert_eq!(
            batch.notification("read-model"),
            format!("p read-model\nj {a}\nj {b}\n")
        );
    }
}
