//! The prepared CQL statements of the Scylla projector, `{ks}` standing for the keyspace.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use crate::error::ProjectionError;

/// The prepared statements of one session.
#[derive(Debug)]
pub(super) struct Statements {
    pub(super) read_counts: PreparedStatement,
    pub(super) read_marks: PreparedStatement,
    pub(super) read_positions: PreparedStatement,
    pub(super) read_comments: PreparedStatement,
    pub(super) read_views: PreparedStatement,
    pub(super) write_counts: PreparedStatement,
    pub(super) write_like: PreparedStatement,
    pub(super) write_favorite: PreparedStatement,
    pub(super) insert_mark: PreparedStatement,
    pub(super) delete_mark: PreparedStatement,
    pub(super) write_position: PreparedStatement,
    pub(super) insert_comment: PreparedStatement,
    pub(super) list_comment: PreparedStatement,
    pub(super) delete_comment: PreparedStatement,
    pub(super) unlist_comment: PreparedStatement,
    pub(super) insert_view: PreparedStatement,
    pub(super) read_offsets: PreparedStatement,
    pub(super) write_offset: PreparedStatement,
    pub(super) write_hours: PreparedStatement,
    pub(super) drop_hours: PreparedStatement,
    pub(super) write_popular: PreparedStatement,
}

impl Statements {
    /// Prepares every statement for the keyspace `keyspace`.
    pub(super) async fn prepare(
        session: &Session,
        keyspace: &str,
    ) -> Result<Self, ProjectionError> {
        let p = |cql: &'static str| {
            let cql = cql.replace("{ks}", keyspace);
            async move {
                session
                    .prepare(cql)
                    .await
                    .map_err(ProjectionError::cql("prepare"))
            }
        };
        Ok(Self {
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
        })
    }
}
