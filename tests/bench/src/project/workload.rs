//! The log the projectors fold, generated, and what it must fold into.
//!
//! A seeded, deterministic mix of interaction facts over many users and artworks (popular
//! artworks drawn more often): likes and unlikes, favorites and unfavorites, views (some
//! anonymous), comments and their deletions. An unlike (unfavorite) undoes an earlier like
//! (favorite), possibly one undone already, and a deletion deletes a comment not deleted yet,
//! as the command service would allow. [`Model`] folds every fact as it is generated: the
//! counts the read models must show and the rows they must hold, which the baselines load
//! without Kafka.

use std::collections::HashMap;

use gallery_schemas::{
    ArtworkId, ArtworkViewed, CommentBody, CommentDeleted, CommentPosted, Event, FavoriteSet,
    LikeSet, UserId,
};
use uuid::Uuid;

/// Per 100 facts: likes, unlikes, favorites, unfavorites, views, comments, deletions.
const MIX: [(Kind, u64); 7] = [
    (Kind::Like, 40),
    (Kind::Unlike, 8),
    (Kind::Favorite, 15),
    (Kind::Unfavorite, 4),
    (Kind::View, 28),
    (Kind::Comment, 4),
    (Kind::Uncomment, 1),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Like,
    Unlike,
    Favorite,
    Unfavorite,
    View,
    Comment,
    Uncomment,
}

/// SplitMix64: small, fast, and the same sequence on every machine.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: no modulo bias worth speaking of for these sizes.
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Skewed towards 0: the square of a uniform fraction, so the first tenth of `0..n` draws
    /// about a third of the picks (popular artworks).
    fn skewed(&mut self, n: u64) -> u64 {
        let a = self.below(n);
        let b = self.below(n);
        a * b / n
    }

    fn uuid(&mut self) -> Uuid {
        let (hi, lo) = (self.next(), self.next());
        uuid::Builder::from_random_bytes(((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes())
            .into_uuid()
    }
}

/// A pair's current like or favorite, as the read models keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetRow {
    pub on: bool,
    pub event_id: Uuid,
    pub at_ms: i64,
}

/// A like or favorite event, applied once (`set_event_positions`); `index` is its place in the
/// log as generated (its partition and offset are known once produced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetEventRow {
    pub artwork: u32,
    pub like: bool,
    pub event_id: Uuid,
    pub index: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentRow {
    pub id: Uuid,
    pub artwork: u32,
    pub user: u32,
    pub posted_at_ms: i64,
    pub index: u64,
    /// By whom, when, and the deletion's place in the log.
    pub deleted: Option<(u32, i64, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewRow {
    pub event_id: Uuid,
    pub artwork: u32,
    pub user: Option<u32>,
    pub at_ms: i64,
    pub index: u64,
}

/// An artwork's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub likes: i64,
    pub favorites: i64,
    pub comments: i64,
    pub views: i64,
}

/// Everything the generated log folds into.
#[derive(Debug, Default)]
pub struct Model {
    /// Per (artwork, user).
    pub likes: HashMap<(u32, u32), SetRow>,
    pub favorites: HashMap<(u32, u32), SetRow>,
    pub set_events: Vec<SetEventRow>,
    pub comments: Vec<CommentRow>,
    pub views: Vec<ViewRow>,
    /// Per artwork, indexed by artwork number.
    pub counts: Vec<Counts>,
    /// Net likes and views per (hour start, artwork).
    pub like_hours: HashMap<(i64, u32), i64>,
    pub view_hours: HashMap<(i64, u32), i64>,
}

/// Generates facts one by one and folds each into its [`Model`].
#[derive(Debug)]
pub struct Generator {
    rng: Rng,
    users: u64,
    artworks: u64,
    start_ms: i64,
    step_ms: i64,
    index: u64,
    /// Pairs liked (favorited) once, for unlikes (unfavorites) to undo.
    liked: Vec<(u32, u32)>,
    favorited: Vec<(u32, u32)>,
    /// Comments not deleted, as indices into `model.comments`.
    live_comments: Vec<usize>,
    pub model: Model,
}

pub fn user_id(user: u32) -> String {
    format!("fan-{user}")
}

pub fn artwork_id(artwork: u32) -> String {
    format!("work-{artwork}")
}

pub fn comment_body(index: u64) -> String {
    format!("The light in this one, look at the light! ({index})")
}

/// Start of the hour bucket of `at_ms`, as the projectors compute it.
pub fn hour_of(at_ms: i64) -> i64 {
    gallery_projections::fold::hour_of(at_ms)
}

impl Generator {
    /// `events` facts spread evenly over `span_ms` from `start_ms`.
    pub fn new(
        seed: u64,
        users: u32,
        artworks: u32,
        start_ms: i64,
        span_ms: i64,
        events: u64,
    ) -> Self {
        let artworks = artworks.max(1);
        Self {
            rng: Rng(seed),
            users: u64::from(users.max(1)),
            artworks: u64::from(artworks),
            start_ms,
            step_ms: span_ms / i64::try_from(events.max(1)).unwrap_or(i64::MAX),
            index: 0,
            liked: Vec::new(),
            favorited: Vec::new(),
            live_comments: Vec::new(),
            model: Model {
                counts: vec![Counts::default(); artworks as usize],
                ..Model::default()
            },
        }
    }

    fn kind(&mut self) -> Kind {
        let mut pick = self.rng.below(100);
        for (kind, weight) in MIX {
            if pick < weight {
                return kind;
            }
            pick -= weight;
        }
        Kind::View
    }

    /// The next fact of the log, folded into the model.
    pub fn next_event(&mut self) -> anyhow::Result<Event> {
        let index = self.index;
        self.index += 1;
        let at = self.start_ms + self.step_ms * i64::try_from(index)?;
        let event_id = self.rng.uuid();
        let mut kind = self.kind();
        // Nothing to undo yet: a fact of the opposite kind instead.
        kind = match kind {
            Kind::Unlike if self.liked.is_empty() => Kind::Like,
            Kind::Unfavorite if self.favorited.is_empty() => Kind::Favorite,
            Kind::Uncomment if self.live_comments.is_empty() => Kind::Comment,
            k => k,
        };
        let user = self.rng.below(self.users) as u32;
        let artwork = self.rng.skewed(self.artworks) as u32;
        let event = match kind {
            Kind::Like | Kind::Favorite => {
                let like = kind == Kind::Like;
                self.set(like, (artwork, user), true, event_id, at, index);
                set_event(like, artwork, user, true, event_id, at)?
            }
            Kind::Unlike | Kind::Unfavorite => {
                let like = kind == Kind::Unlike;
                let pairs = if like { &self.liked } else { &self.favorited };
                let (artwork, user) = pairs[self.rng.below(pairs.len() as u64) as usize];
                self.set(like, (artwork, user), false, event_id, at, index);
                set_event(like, artwork, user, false, event_id, at)?
            }
            Kind::View => {
                // A fifth of the views are anonymous.
                let viewer = (self.rng.below(5) > 0).then_some(user);
                self.model.views.push(ViewRow {
                    event_id,
                    artwork,
                    user: viewer,
                    at_ms: at,
                    index,
                });
                self.model.counts[artwork as usize].views += 1;
                *self
                    .model
                    .view_hours
                    .entry((hour_of(at), artwork))
                    .or_insert(0) += 1;
                Event::ArtworkViewed(ArtworkViewed {
                    event_id,
                    artwork_id: ArtworkId::parse(&artwork_id(artwork))?,
                    user_id: viewer.map(|u| UserId::parse(&user_id(u))).transpose()?,
                    occurred_at: at,
                })
            }
            Kind::Comment => {
                let id = self.rng.uuid();
                self.live_comments.push(self.model.comments.len());
                self.model.comments.push(CommentRow {
                    id,
                    artwork,
                    user,
                    posted_at_ms: at,
                    index,
                    deleted: None,
                });
                self.model.counts[artwork as usize].comments += 1;
                Event::CommentPosted(CommentPosted {
                    event_id,
                    comment_id: id,
                    artwork_id: ArtworkId::parse(&artwork_id(artwork))?,
                    user_id: UserId::parse(&user_id(user))?,
                    body: CommentBody::parse(comment_body(index))?,
                    occurred_at: at,
                })
            }
            Kind::Uncomment => {
                let pick = self.rng.below(self.live_comments.len() as u64) as usize;
                let comment = &mut self.model.comments[self.live_comments.swap_remove(pick)];
                // Its author deletes it.
                comment.deleted = Some((comment.user, at, index));
                self.model.counts[comment.artwork as usize].comments -= 1;
                Event::CommentDeleted(CommentDeleted {
                    event_id,
                    comment_id: comment.id,
                    artwork_id: ArtworkId::parse(&artwork_id(comment.artwork))?,
                    deleted_by: UserId::parse(&user_id(comment.user))?,
                    occurred_at: at,
                })
            }
        };
        Ok(event)
    }

    /// Folds a like (`like`) or favorite fact.
    fn set(&mut self, like: bool, pair: (u32, u32), on: bool, event_id: Uuid, at: i64, index: u64) {
        let (rows, undo) = if like {
            (&mut self.model.likes, &mut self.liked)
        } else {
            (&mut self.model.favorites, &mut self.favorited)
        };
        let was = rows
            .insert(
                pair,
                SetRow {
                    on,
                    event_id,
                    at_ms: at,
                },
            )
            .is_some_and(|r| r.on);
        if on && !was {
            undo.push(pair);
        }
        let delta = i64::from(on) - i64::from(was);
        let counts = &mut self.model.counts[pair.0 as usize];
        if like {
            counts.likes += delta;
            if delta != 0 {
                *self
                    .model
                    .like_hours
                    .entry((hour_of(at), pair.0))
                    .or_insert(0) += delta;
            }
        } else {
            counts.favorites += delta;
        }
        self.model.set_events.push(SetEventRow {
            artwork: pair.0,
            like,
            event_id,
            index,
        });
    }
}

fn set_event(
    like: bool,
    artwork: u32,
    user: u32,
    on: bool,
    event_id: Uuid,
    at: i64,
) -> anyhow::Result<Event> {
    let artwork_id = ArtworkId::parse(&artwork_id(artwork))?;
    let user_id = UserId::parse(&user_id(user))?;
    Ok(if like {
        Event::LikeSet(LikeSet {
            event_id,
            user_id,
            artwork_id,
            liked: on,
            occurred_at: at,
        })
    } else {
        Event::FavoriteSet(FavoriteSet {
            event_id,
            user_id,
            artwork_id,
            favorited: on,
            occurred_at: at,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(seed: u64, n: u64) -> (Vec<Event>, Model) {
        let mut g = Generator::new(seed, 50, 20, 0, 10 * 3_600_000, n);
        let events = (0..n)
            .map(|_| g.next_event())
            .collect::<anyhow::Result<Vec<_>>>();
        (events.unwrap_or_else(|e| unreachable!("{e}")), g.model)
    }

    /// The counts folded the naive way: replay every fact in order.
    fn replay(events: &[Event]) -> HashMap<String, Counts> {
        let mut likes: HashMap<(String, String), bool> = HashMap::new();
        let mut favorites: HashMap<(String, String), bool> = HashMap::new();
        let mut deleted = std::collections::HashSet::new();
        let mut out: HashMap<String, Counts> = HashMap::new();
        for e in events {
            match e {
                Event::LikeSet(e) => {
                    likes.insert((e.artwork_id.to_string(), e.user_id.to_string()), e.liked);
                }
                Event::FavoriteSet(e) => {
                    favorites.insert(
                        (e.artwork_id.to_string(), e.user_id.to_string()),
                        e.favorited,
                    );
                }
                Event::ArtworkViewed(e) => {
                    out.entry(e.artwork_id.to_string()).or_default().views += 1
                }
                Event::CommentPosted(e) => {
                    out.entry(e.artwork_id.to_string()).or_default().comments += 1;
                }
                Event::CommentDeleted(e) => {
                    assert!(deleted.insert(e.comment_id), "a comment deleted twice");
                    out.entry(e.artwork_id.to_string()).or_default().comments -= 1;
                }
                _ => unreachable!("only interactions"),
            }
        }
        for ((a, _), on) in likes {
            out.entry(a).or_default().likes += i64::from(on);
        }
        for ((a, _), on) in favorites {
            out.entry(a).or_default().favorites += i64::from(on);
        }
        out
    }

    #[test]
    fn the_model_counts_what_a_replay_of_the_log_counts() {
        let (events, model) = log(7, 5_000);
        let replayed = replay(&events);
        for (n, counts) in model.counts.iter().enumerate() {
            let expected = replayed
                .get(&artwork_id(n as u32))
                .copied()
                .unwrap_or_default();
            assert_eq!(*counts, expected, "artwork {n}");
        }
        let on = model.likes.values().filter(|r| r.on).count() as i64;
        assert_eq!(on, model.counts.iter().map(|c| c.likes).sum::<i64>());
        let net: i64 = model.like_hours.values().sum();
        assert_eq!(net, on, "the hours' net likes add up to the likes");
        assert_eq!(
            model.views.len() as i64,
            model.view_hours.values().sum::<i64>()
        );
    }

    #[test]
    fn the_log_mixes_every_kind_and_undoes_some() {
        let (events, model) = log(1, 5_000);
        let count = |f: fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
        assert!(count(|e| matches!(e, Event::LikeSet(l) if !l.liked)) > 200);
        assert!(count(|e| matches!(e, Event::FavoriteSet(f) if !f.favorited)) > 100);
        assert!(count(|e| matches!(e, Event::CommentDeleted(_))) > 20);
        assert!(count(|e| matches!(e, Event::ArtworkViewed(v) if v.user_id.is_none())) > 100);
        assert!(
            model.likes.values().any(|r| !r.on),
            "some unlike undid a like"
        );
        assert_eq!(
            model.set_events.len(),
            count(|e| matches!(e, Event::LikeSet(_) | Event::FavoriteSet(_)))
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_log() {
        assert_eq!(log(3, 300).0, log(3, 300).0);
        assert_ne!(log(3, 300).0, log(4, 300).0);
    }
}
