//! Likes, favorites, comments and views.

use gallery_schemas::{
    ArtworkId, ArtworkViewed, CommentBody, CommentDeleted, CommentPosted, Event, FavoriteSet,
    LikeSet, UserId,
};
use uuid::Uuid;

use super::Refusal;
use crate::auth::Principal;

/// `user` sets their like of `artwork`.
pub fn like(user: &UserId, artwork: &ArtworkId, liked: bool, event_id: Uuid, now: i64) -> Event {
    LikeSet {
        event_id,
        user_id: user.clone(),
        artwork_id: artwork.clone(),
        liked,
        occurred_at: now,
    }
    .into()
}

/// `user` sets their favorite of `artwork`.
pub fn favorite(
    user: &UserId,
    artwork: &ArtworkId,
    favorited: bool,
    event_id: Uuid,
    now: i64,
) -> Event {
    FavoriteSet {
        event_id,
        user_id: user.clone(),
        artwork_id: artwork.clone(),
        favorited,
        occurred_at: now,
    }
    .into()
}

/// `user` posts a comment with a raw body (checked here).
pub fn post_comment(
    user: &UserId,
    artwork: &ArtworkId,
    body: &str,
    comment_id: Uuid,
    event_id: Uuid,
    now: i64,
) -> Result<Event, Refusal> {
    let body = CommentBody::parse(body).map_err(Refusal::text("body"))?;
    Ok(CommentPosted {
        event_id,
        comment_id,
        artwork_id: artwork.clone(),
        user_id: user.clone(),
        body,
        occurred_at: now,
    }
    .into())
}

/// What the write side knows about a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentState {
    pub artwork_id: ArtworkId,
    pub author: UserId,
    pub deleted: bool,
}

/// Deletes a comment: only its author or an admin, only once (a second deletion is a
/// conflict with the comment's state, not an unknown comment).
pub fn delete_comment(
    who: &Principal,
    artwork: &ArtworkId,
    comment_id: Uuid,
    state: Option<&CommentState>,
    event_id: Uuid,
    now: i64,
) -> Result<Event, Refusal> {
    let state = state
        .filter(|s| &s.artwork_id == artwork)
        .ok_or(Refusal::NotFound { what: "comment" })?;
    if state.author != who.user && !who.is_admin() {
        return Err(Refusal::Forbidden {
            reason: "only the comment's author or an admin may delete it",
        });
    }
    if state.deleted {
        return Err(Refusal::Conflict {
            reason: "the comment is already deleted",
        });
    }
    Ok(CommentDeleted {
        event_id,
        comment_id,
        artwork_id: artwork.clone(),
        deleted_by: who.user.clone(),
        occurred_at: now,
    }
    .into())
}

/// A view, by a user or anonymous.
pub fn view(viewer: Option<&UserId>, artwork: &ArtworkId, event_id: Uuid, now: i64) -> Event {
    ArtworkViewed {
        event_id,
        artwork_id: artwork.clone(),
        user_id: viewer.cloned(),
        occurred_at: now,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gallery_schemas::Role;

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap_or_else(|e| unreachable!("{e}"))
    }
    fn a(s: &str) -> ArtworkId {
        ArtworkId::parse(s).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn a_comment_with_control_characters_is_refused() {
        let r = post_comment(&u("ada"), &a("x"), "hi\u{0}", Uuid::nil(), Uuid::nil(), 0);
        assert!(matches!(r, Err(Refusal::Text { field: "body", .. })));
    }

    #[test]
    fn an_over_long_comment_is_refused() {
        let long = "x".repeat(CommentBody::MAX_CHARS + 1);
        let r = post_comment(&u("ada"), &a("x"), &long, Uuid::nil(), Uuid::nil(), 0);
        assert!(matches!(r, Err(Refusal::Text { .. })));
    }

    #[test]
    fn given_a_comment_when_another_visitor_deletes_it_then_forbidden() {
        let state = CommentState {
            artwork_id: a("x"),
            author: u("ada"),
            deleted: false,
        };
        let bob = Principal::new(u("bob"), Role::Visitor);
        let r = delete_comment(&bob, &a("x"), Uuid::nil(), Some(&state), Uuid::nil(), 0);
        assert!(matches!(r, Err(Refusal::Forbidden { .. })));
    }

    #[test]
    fn given_a_comment_when_its_author_or_an_admin_deletes_it_then_deleted() {
        let state = CommentState {
            artwork_id: a("x"),
            author: u("ada"),
            deleted: false,
        };
        for who in [
            Principal::new(u("ada"), Role::Visitor),
            Principal::new(u("root"), Role::Admin),
        ] {
            let r = delete_comment(&who, &a("x"), Uuid::nil(), Some(&state), Uuid::nil(), 7);
            assert!(matches!(r, Ok(Event::CommentDeleted(ref d)) if d.deleted_by == who.user));
        }
    }

    #[test]
    fn an_unknown_comment_or_one_on_another_artwork_is_not_found() {
        let ada = Principal::new(u("ada"), Role::Visitor);
        let elsewhere = CommentState {
            artwork_id: a("y"),
            author: u("ada"),
            deleted: false,
        };
        for state in [None, Some(&elsewhere)] {
            let r = delete_comment(&ada, &a("x"), Uuid::nil(), state, Uuid::nil(), 0);
            assert_eq!(r, Err(Refusal::NotFound { what: "comment" }));
        }
    }

    #[test]
    fn given_a_deleted_comment_when_its_author_or_an_admin_deletes_it_again_then_conflict() {
        let deleted = CommentState {
            artwork_id: a("x"),
            author: u("ada"),
            deleted: true,
        };
        for who in [
            Principal::new(u("ada"), Role::Visitor),
            Principal::new(u("root"), Role::Admin),
        ] {
            let r = delete_comment(&who, &a("x"), Uuid::nil(), Some(&deleted), Uuid::nil(), 0);
            assert_eq!(
                r,
                Err(Refusal::Conflict {
                    reason: "the comment is already deleted"
                })
            );
        }
        // Anyone else is still told they may not, whatever the comment's state.
        let bob = Principal::new(u("bob"), Role::Visitor);
        let r = delete_comment(&bob, &a("x"), Uuid::nil(), Some(&deleted), Uuid::nil(), 0);
        assert!(matches!(r, Err(Refusal::Forbidden { .. })));
    }
}
