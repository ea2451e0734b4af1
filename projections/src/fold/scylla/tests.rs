//! The Scylla fold as given / when / then: what one batch writes to an artwork's partition,
//! the users' lists, comments, views and the popularity rows, with the offsets that decide
//! them. The properties over any log are in `properties.rs`.

use super::*;
use gallery_schemas::{
    ArtworkId, ArtworkViewed, CommentBody, CommentDeleted, CommentPosted, FavoriteSet, LikeSet,
    UserId,
};

pub(super) const H: i64 = HOUR_MS;

fn artwork(a: &str) -> ArtworkId {
    ArtworkId::parse(a).unwrap_or_else(|e| unreachable!("{e}"))
}

fn user(u: &str) -> UserId {
    UserId::parse(u).unwrap_or_else(|e| unreachable!("{e}"))
}

pub(super) fn like(id: u128, a: &str, u: &str, liked: bool, at: i64) -> Event {
    Event::LikeSet(LikeSet {
        event_id: Uuid::from_u128(id),
        user_id: user(u),
        artwork_id: artwork(a),
        liked,
        occurred_at: at,
    })
}

pub(super) fn favorite(id: u128, a: &str, u: &str, favorited: bool, at: i64) -> Event {
    Event::FavoriteSet(FavoriteSet {
        event_id: Uuid::from_u128(id),
        user_id: user(u),
        artwork_id: artwork(a),
        favorited,
        occurred_at: at,
    })
}

pub(super) fn posted(id: u128, comment: Uuid, a: &str, at: i64) -> Event {
    Event::CommentPosted(CommentPosted {
        event_id: Uuid::from_u128(id),
        comment_id: comment,
        artwork_id: artwork(a),
        user_id: user("ada"),
        body: CommentBody::parse("nice").unwrap_or_else(|e| unreachable!("{e}")),
        occurred_at: at,
    })
}

pub(super) fn deleted(id: u128, comment: Uuid, a: &str, at: i64) -> Event {
    Event::CommentDeleted(CommentDeleted {
        event_id: Uuid::from_u128(id),
        comment_id: comment,
        artwork_id: artwork(a),
        deleted_by: user("ada"),
        occurred_at: at,
    })
}

pub(super) fn view(id: u128, a: &str, at: i64) -> Event {
    Event::ArtworkViewed(ArtworkViewed {
        event_id: Uuid::from_u128(id),
        artwork_id: artwork(a),
        user_id: None,
        occurred_at: at,
    })
}

/// The position of the message at `offset` (one partition: all facts of an artwork share one).
fn at(offset: i64) -> Position {
    Position {
        topic: "g.interactions".to_owned(),
        partition: 0,
        offset,
    }
}

/// `events` at offsets `first`, `first + 1`, ...
pub(super) fn positioned(first: i64, events: &[Event]) -> Vec<Positioned<'_>> {
    events
        .iter()
        .zip(first..)
        .map(|(e, o)| (at(o), e))
        .collect()
}

fn plan_of(
    first: i64,
    events: &[Event],
    states: &HashMap<String, ArtworkState>,
    stored: &StoredRows,
) -> ScyllaPlan {
    InteractionBatch::new(&positioned(first, events), states).plan(stored)
}

fn nothing() -> HashMap<String, ArtworkState> {
    HashMap::new()
}

fn state_of(a: &str, state: ArtworkState) -> HashMap<String, ArtworkState> {
    HashMap::from([(a.to_owned(), state)])
}

fn partition<'p>(plan: &'p ScyllaPlan, a: &str) -> &'p PartitionWrite {
    plan.partitions
        .get(a)
        .unwrap_or_else(|| unreachable!("no partition of {a} in {plan:?}"))
}

/// The stored row of `comment` of artwork `a`, posted at 20 ms.
fn comment_stored(comment: Uuid, posted_offset: i64, deleted_offset: Option<i64>) -> StoredRows {
    StoredRows {
        comments: vec![CommentRow {
            comment_id: comment,
            artwork_id: Some("a".into()),
            posted_at_ms: Some(20),
            posted_offset: Some(posted_offset),
            deleted_offset,
        }],
        ..StoredRows::default()
    }
}

fn popular(hour_ms: i64, net_likes: i64, views: i64, decided_at: i64) -> PopularRow {
    PopularRow {
        hour_ms,
        artwork_id: "a".to_owned(),
        net_likes,
        views,
        decided_at,
    }
}

#[test]
fn a_like_then_an_unlike_in_one_batch_counts_nothing_but_lands_in_both_hours() {
    // Given nothing stored; when u likes a and takes it back an hour later, in one batch:
    let events = [
        like(1, "a", "u", true, 10),
        like(2, "a", "u", false, H + 10),
    ];
    let plan = plan_of(0, &events, &nothing(), &StoredRows::default());

    // then the partition counts no like, keeps both transitions in their hours, is folded up
    // to after the unlike and stamped with it,
    let p = partition(&plan, "a");
    assert_eq!(p.decided_at, 1);
    assert_eq!(
        p.state,
        ArtworkState {
            like_hours: BTreeMap::from([(0, 1), (H, -1)]),
            next_offset: 2,
            ..ArtworkState::default()
        }
    );
    assert_eq!(p.hours.likes_changed, BTreeMap::from([(0, 1), (H, -1)]));
    assert!(p.hours.likes_dropped.is_empty() && p.hours.views_changed.is_empty());
    // the pair's row holds the unlike, decided by it,
    assert_eq!(p.pairs.len(), 1);
    assert_eq!(
        (p.pairs[0].kind, p.pairs[0].user.as_str()),
        (SetKind::Like, "u")
    );
    assert_eq!((p.pairs[0].fact.on, p.pairs[0].decided_at), (false, 1));
    // the user's list loses the entry the like may have written,
    assert_eq!(
        plan.derived,
        vec![DerivedRow::DeleteMark(MarkEntry {
            kind: SetKind::Like,
            user: "u".into(),
            artwork: "a".into(),
            at_ms: 10,
            decided_at: 1,
        })]
    );
    // both events are remembered where they were first applied,
    let positions: Vec<(SetKind, i64)> = plan.positions["a"]
        .iter()
        .map(|r| (r.kind, r.at.offset))
        .collect();
    assert_eq!(positions, vec![(SetKind::Like, 0), (SetKind::Like, 1)]);
    // and both hours are copied into the popularity rows.
    assert_eq!(
        plan.popular,
        vec![popular(0, 1, 0, 1), popular(H, -1, 0, 1)]
    );
}

#[test]
fn facts_the_partition_holds_are_not_folded_again_but_their_hours_are_copied_again() {
    // Given a partition folded up to offset 5 with one like in hour 0;
    let stored = ArtworkState {
        likes: 1,
        like_hours: BTreeMap::from([(0, 1)]),
        next_offset: 5,
        ..ArtworkState::default()
    };
    // when the batch holding that like (at offset 4) is read again,
    let events = [like(1, "a", "u", true, 10)];
    let batch_facts = positioned(4, &events);
    let states = state_of("a", stored);
    let batch = InteractionBatch::new(&batch_facts, &states);
    // then there is nothing to read or fold, and the popularity row is rewritten as it was.
    assert!(batch.is_empty() && batch.pairs().is_empty() && batch.events().is_empty());
    let plan = batch.plan(&StoredRows::default());
    assert!(plan.derived.is_empty() && plan.positions.is_empty() && plan.partitions.is_empty());
    assert_eq!(plan.popular, vec![popular(0, 1, 0, 4)]);
}

#[test]
fn favorites_count_apart_from_likes_and_have_no_hours() {
    let events = [favorite(1, "a", "u", true, 10)];
    let plan = plan_of(3, &events, &nothing(), &StoredRows::default());
    let p = partition(&plan, "a");
    assert_eq!((p.state.likes, p.state.favorites), (0, 1));
    assert!(p.state.like_hours.is_empty() && p.hours == HourChanges::default());
    assert_eq!(p.pairs[0].kind, SetKind::Favorite);
    assert_eq!(
        plan.derived,
        vec![DerivedRow::InsertMark(MarkEntry {
            kind: SetKind::Favorite,
            user: "u".into(),
            artwork: "a".into(),
            at_ms: 10,
            decided_at: 3,
        })]
    );
    assert_eq!(plan.positions["a"][0].kind, SetKind::Favorite);
    assert!(
        plan.popular.is_empty(),
        "favorites are not in the popularity"
    );
}

#[test]
fn a_copy_of_a_like_applied_elsewhere_changes_nothing_but_the_partitions_offset() {
    // Given the like applied at offset 0 and stored as the pair's current fact;
    let original = like(1, "a", "u", true, 10);
    let mut stored = StoredRows::default();
    stored
        .applied
        .likes
        .insert(("a".into(), Uuid::from_u128(1)), at(0));
    stored.facts.likes.insert(
        ("a".into(), "u".into()),
        SetFact {
            on: true,
            event_id: Uuid::from_u128(1),
            occurred_at_ms: 10,
        },
    );
    let states = state_of(
        "a",
        ArtworkState {
            likes: 1,
            like_hours: BTreeMap::from([(0, 1)]),
            next_offset: 1,
            ..ArtworkState::default()
        },
    );
    // when a copy of it (a re-sent command, another time) comes at offset 7,
    let copy = match &original {
        Event::LikeSet(e) => Event::LikeSet(LikeSet {
            occurred_at: 5 * H,
            ..e.clone()
        }),
        _ => unreachable!(),
    };
    let plan = plan_of(7, &[copy], &states, &stored);
    // then the counts, hours, pairs and lists stay, and only the offset moves on.
    let p = partition(&plan, "a");
    assert_eq!(
        p.state,
        ArtworkState {
            next_offset: 8,
            ..states["a"].clone()
        }
    );
    assert!(p.pairs.is_empty() && plan.derived.is_empty() && plan.positions.is_empty());
    assert!(plan.popular.is_empty(), "no fact landed in the copy's hour");
}

#[test]
fn a_comment_written_beyond_the_partition_is_written_again_and_its_deletion_unlists_it() {
    // Given a partition folded up to 3, and the rows of an interrupted run that posted (at 5)
    // and deleted (at 6) a comment;
    let comment = Uuid::from_u128(50);
    let states = state_of(
        "a",
        ArtworkState {
            next_offset: 3,
            ..ArtworkState::default()
        },
    );
    let stored = comment_stored(comment, 5, Some(6));
    // when the batch is replayed,
    let events = [posted(1, comment, "a", 20), deleted(2, comment, "a", 30)];
    let plan = plan_of(5, &events, &states, &stored);
    // then both are written again at their offsets and the count is unchanged.
    assert_eq!(plan.derived.len(), 2);
    assert!(matches!(
        &plan.derived[0],
        DerivedRow::Comment { comment: c, posted_offset: 5 } if c.comment_id == comment && c.posted_at_ms == 20
    ));
    assert_eq!(
        plan.derived[1],
        DerivedRow::CommentDeleted {
            comment_id: comment,
            deleted_offset: 6,
            listed: Some(("a".into(), 20)),
        }
    );
    assert_eq!(partition(&plan, "a").state.comments, 0);
}

#[test]
fn deleting_a_stored_comment_lowers_the_count_and_unlists_it_where_it_was_posted() {
    let comment = Uuid::from_u128(50);
    let states = state_of(
        "a",
        ArtworkState {
            comments: 1,
            next_offset: 3,
            ..ArtworkState::default()
        },
    );
    let stored = comment_stored(comment, 1, None);
    let plan = plan_of(3, &[deleted(2, comment, "a", 30)], &states, &stored);
    assert_eq!(partition(&plan, "a").state.comments, 0);
    assert_eq!(
        plan.derived,
        vec![DerivedRow::CommentDeleted {
            comment_id: comment,
            deleted_offset: 3,
            listed: Some(("a".into(), 20)),
        }]
    );
    // Deleted again later: no change.
    let states = state_of("a", partition(&plan, "a").state.clone());
    let stored = comment_stored(comment, 1, Some(3));
    let again = plan_of(4, &[deleted(3, comment, "a", 40)], &states, &stored);
    assert!(again.derived.is_empty());
    assert_eq!(partition(&again, "a").state.comments, 0);
}

#[test]
fn a_view_counts_once_unless_its_row_lies_beyond_the_partition() {
    // Given a partition folded up to 2, a view stored at 1 and one an interrupted run wrote
    // at 4;
    let states = state_of(
        "a",
        ArtworkState {
            views: 1,
            view_hours: BTreeMap::from([(0, 1)]),
            next_offset: 2,
            ..ArtworkState::default()
        },
    );
    let row = |id: u128, offset| ViewRow {
        artwork_id: "a".into(),
        event_id: Uuid::from_u128(id),
        offset,
    };
    let stored = StoredRows {
        views: vec![row(1, 1), row(2, 4)],
        ..StoredRows::default()
    };
    // when a copy of the first and the second come again (at 3 and 4),
    let events = [view(1, "a", 0), view(2, "a", H)];
    let batch_facts = positioned(3, &events);
    let batch = InteractionBatch::new(&batch_facts, &states);
    assert_eq!(
        batch.view_ids(),
        BTreeMap::from([("a".to_owned(), vec![Uuid::from_u128(1), Uuid::from_u128(2)])])
    );
    let plan = batch.plan(&stored);
    // then only the second counts, in its hour, written again at its offset.
    assert_eq!(
        plan.derived,
        vec![DerivedRow::View {
            artwork_id: "a".into(),
            event_id: Uuid::from_u128(2),
            offset: 4,
        }]
    );
    let p = partition(&plan, "a");
    assert_eq!(p.state.views, 2);
    assert_eq!(p.hours.views_changed, BTreeMap::from([(H, 1)]));
    assert_eq!(plan.popular, vec![popular(0, 0, 1, 4), popular(H, 0, 1, 4)]);
}

#[test]
fn a_fact_nine_days_later_drops_the_old_hours_and_their_popularity() {
    // Given a partition with two likes in hour 0;
    let states = state_of(
        "a",
        ArtworkState {
            likes: 2,
            like_hours: BTreeMap::from([(0, 2)]),
            next_offset: 2,
            ..ArtworkState::default()
        },
    );
    // when a like comes nine days later, with a view of hour 0 in the same batch,
    let late = 9 * 24 * H;
    let events = [like(3, "a", "v", true, late), view(4, "a", 0)];
    let plan = plan_of(2, &events, &states, &StoredRows::default());
    // then hour 0 leaves the likes' hours (the views' own newest is hour 0, so it stays
    // there), and no popularity row is written for it.
    let p = partition(&plan, "a");
    assert_eq!(p.hours.likes_changed, BTreeMap::from([(late, 1)]));
    assert_eq!(p.hours.likes_dropped, vec![0]);
    assert_eq!(p.state.like_hours, BTreeMap::from([(late, 1)]));
    assert_eq!(p.state.view_hours, BTreeMap::from([(0, 1)]));
    assert_eq!(plan.popular, vec![popular(late, 1, 0, 3)]);
}

#[test]
fn hours_add_up_and_the_oldest_beyond_the_kept_span_are_dropped() {
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

#[test]
fn the_batch_asks_for_each_pair_and_event_once() {
    let events = [
        like(1, "b", "v", true, 0),
        favorite(2, "b", "u", true, 0),
        like(1, "b", "v", true, 0),
        like(3, "a", "u", true, 0),
    ];
    let batch_facts = positioned(0, &events);
    assert_eq!(artworks(&batch_facts), vec!["a".to_owned(), "b".to_owned()]);
    let states = nothing();
    let batch = InteractionBatch::new(&batch_facts, &states);
    assert_eq!(
        batch.pairs(),
        BTreeMap::from([
            ("a".to_owned(), vec!["u".to_owned()]),
            ("b".to_owned(), vec!["u".to_owned(), "v".to_owned()]),
        ])
    );
    assert_eq!(
        batch.events(),
        BTreeMap::from([
            ("a".to_owned(), vec![Uuid::from_u128(3)]),
            ("b".to_owned(), vec![Uuid::from_u128(1), Uuid::from_u128(2)]),
        ])
    );
}

#[test]
fn a_hot_artwork_is_applied_in_rounds_in_log_order() {
    // 250 facts of `hot`, every sixth one of `cold` between them.
    let events: Vec<Event> = (0..300)
        .map(|i| view(i, if i % 6 == 5 { "cold" } else { "hot" }, 0))
        .collect();
    let facts = positioned(0, &events);
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
