//! The Postgres read model, and the offsets stored with it.

pub(crate) mod catalog;
pub(crate) mod generation;
pub(crate) mod interactions;
mod users;

use std::collections::{BTreeSet, HashMap};

use gallery_infra::{ColumnError, Migrations};
use gallery_schemas::read_model::{self, TopicPartition};
use gallery_schemas::{Event, Position, Topics};
use tokio_postgres::{Client, GenericClient, NoTls, Row, Transaction};

use crate::error::ProjectionError;
use crate::fold::SetBatch;
use crate::fold::catalog::CatalogBatch;
use crate::fold::comments::CommentBatch;
use crate::fold::generation::GenerationBatch;
use crate::fold::users::UserBatch;
use crate::fold::views::ViewBatch;
use crate::generations::{self, Generation};
use gallery_infra::Columns;

/// The read model's tables in a generation's schema (see [`crate::generations`]):
/// `migrations/*.sql`, each applied once, in order. Append only. The lock also serialises the
/// creation of generations and the switch between them.
pub(crate) const MIGRATIONS: Migrations = Migrations {
    name: "read model",
    history: "schema_migrations",
    lock: 0x0067_616c_6c65_7279,
    steps: gallery_infra::steps![
        1 => "0001_likes.sql",
        2 => "0002_every_event.sql",
        3 => "0003_painter_results.sql",
        4 => "0004_first_positions.sql",
    ],
};

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
    MIGRATIONS.lock(&tx).await?;
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
    MIGRATIONS.lock(&tx).await?;
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
    let applied = MIGRATIONS.apply(tx).await?;
    for version in &applied {
        tracing::info!(version, %generation, "applied read-model migration");
    }
    tx.batch_execute("SET LOCAL search_path TO public")
        .await
        .map_err(ProjectionError::pg("leave generation"))?;
    Ok(applied.len())
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
    Ok(offsets_of(&rows)?)
}

/// Rows of `projection_offsets` (`topic, partition, next_offset`), by partition: the
/// projector's positions, as it resumes from them and the query API waits for them.
pub fn offsets_of(rows: &[Row]) -> Result<HashMap<TopicPartition, i64>, ColumnError> {
    rows.iter()
        .map(|r| {
            Ok((
                (r.column("topic")?, r.column("partition")?),
                r.column("next_offset")?,
            ))
        })
        .collect()
}

/// One projection's view of Postgres.
#[derive(Debug)]
pub struct PostgresStore {
    projection: String,
    /// The projection named in the batches' notifications.
    announce_as: String,
}

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

    /// The payload announcing this batch (see [`read_model::notification`]).
    pub fn notification(&self, projection: &str) -> String {
        read_model::notification(
            projection,
            &self.next_offsets,
            self.changed_artworks.iter().map(String::as_str),
            &self.changed_jobs,
        )
    }
}

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
            .query(include_str!("../sql/read_offsets.sql"), &[&self.projection])
            .await
            .map_err(ProjectionError::pg("read offsets"))?;
        Ok(offsets_of(&rows)?)
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
            include_str!("../sql/store_offsets.sql"),
            &[&self.projection, &topics, &partitions, &offsets],
        )
        .await
        .map_err(ProjectionError::pg("store offsets"))?;
        // Delivered to listeners only when the transaction commits.
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[&read_model::CHANNEL, &batch.notification(&self.announce_as)],
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
            include_str!("../sql/create_offset_rows.sql"),
            &[&self.projection, &topics, &numbers],
        )
        .await
        .map_err(ProjectionError::pg("create offset rows"))?;
        let rows = tx
            .query(
                include_str!("../sql/lock_offsets.sql"),
                &[&self.projection, &topics, &numbers],
            )
            .await
            .map_err(ProjectionError::pg("lock offsets"))?;
        Ok(offsets_of(&rows)?)
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

/// The database a Postgres URL names (Postgres' default, the user's name, when it names none).
pub(crate) fn database_name(url: &str) -> String {
    let config = url.parse::<tokio_postgres::Config>().ok();
    let named = config
        .as_ref()
        .and_then(|c| c.get_dbname().or(c.get_user()));
    named.unwrap_or("postgres").to_owned()
}

pub(crate) async fn connect(url: &str) -> Result<Client, ProjectionError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(ProjectionError::pg("connect"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migrations_ascend() {
        assert!(MIGRATIONS.ascending());
        assert_eq!(MIGRATIONS.steps.len(), 4);
    }

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
