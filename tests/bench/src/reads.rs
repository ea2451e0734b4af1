//! The read workload of the `graphql` scenario, pure so that it is tested without a server:
//! who likes what after the seeding (so every answer can be checked against it), the requests
//! (GraphQL documents, or the baselines' REST paths), and the answers' shape, which Gallery and
//! the baselines share (the baselines answer the JSON a GraphQL server would).
//!
//! Artworks are numbered in the order the seeding added them; the API lists them newest first,
//! so page `k` holds the numbers `n - 1 - 20k` downwards.

use serde::{Deserialize, Serialize};

/// Artworks per page, as the page query asks.
pub const PAGE: usize = 20;

/// `artwork(id) { likeCount viewerHasLiked }`.
pub const ARTWORK_QUERY: &str =
    "query Likes($id: ID!) { artwork(id: $id) { likeCount viewerHasLiked } }";

/// A page of 20 artworks with their stats, as a client scrolling the catalog asks for it.
pub const PAGE_QUERY: &str = "query Page($after: String) { artworks(first: 20, after: $after) { nodes { id likeCount viewerHasLiked stats { likes favorites comments views } } pageInfo { hasNextPage endCursor } } }";

/// Who likes what: a share of 5 to 64 % of the users per artwork, different artworks
/// different shares, spread over the users by a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed {
    pub users: u64,
    pub artworks: u64,
}

/// A 64-bit mix of two numbers (splitmix64's finalizer).
fn mix(user: u64, artwork: u64) -> u64 {
    let mut x =
        user.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ artwork.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Seed {
    /// Whether `user` likes artwork number `artwork` once the seeding is projected.
    pub fn likes(&self, user: u64, artwork: u64) -> bool {
        let share = 5 + (artwork * 37) % 60;
        mix(user, artwork) % 100 < share
    }

    /// Every artwork's like count.
    pub fn counts(&self) -> Vec<i64> {
        (0..self.artworks)
            .map(|a| {
                let n = (0..self.users).filter(|&u| self.likes(u, a)).count();
                i64::try_from(n).unwrap_or(i64::MAX)
            })
            .collect()
    }

    /// Every (user, artwork) like of the seeding, artworks interleaved (consecutive likes go
    /// to different artworks, so to different partitions).
    pub fn likes_to_send(&self) -> Vec<(u64, u64)> {
        (0..self.users)
            .flat_map(|u| (0..self.artworks).map(move |a| (u, a)))
            .filter(|&(u, a)| self.likes(u, a))
            .collect()
    }
}

/// What the seeding put in the read model: the artworks' ids (in the order they were added)
/// and who likes what.
#[derive(Debug, Clone)]
pub struct Truth {
    pub seed: Seed,
    pub ids: Vec<String>,
    counts: Vec<i64>,
}

impl Truth {
    pub fn new(seed: Seed, ids: Vec<String>) -> anyhow::Result<Self> {
        anyhow::ensure!(
            u64::try_from(ids.len())? == seed.artworks,
            "{} artwork ids for {} artworks",
            ids.len(),
            seed.artworks
        );
        Ok(Self {
            counts: seed.counts(),
            seed,
            ids,
        })
    }

    /// The artwork numbers of page `page` (newest first).
    pub fn page(&self, page: usize) -> impl Iterator<Item = usize> + '_ {
        let n = self.ids.len();
        (page * PAGE..((page + 1) * PAGE).min(n)).map(move |k| n - 1 - k)
    }

    pub fn pages(&self) -> usize {
        self.ids.len().div_ceil(PAGE)
    }

    /// Checks `artwork(id) { likeCount viewerHasLiked }` as `user` asked it.
    pub fn check_artwork(&self, body: &[u8], user: u64, artwork: usize) -> Result<(), String> {
        let data: ArtworkData = data_of(body)?;
        let want = self.counts.get(artwork).copied().unwrap_or(-1);
        if data.artwork.like_count != want {
            return Err("body: wrong likeCount".into());
        }
        if data.artwork.viewer_has_liked != self.seed.likes(user, artwork as u64) {
            return Err("body: wrong viewerHasLiked".into());
        }
        Ok(())
    }

    /// Checks page `page` as `user` asked it; the cursor of the next page, or `None` after the
    /// last one.
    pub fn check_page(
        &self,
        body: &[u8],
        user: u64,
        page: usize,
    ) -> Result<Option<String>, String> {
        let data: PageData = data_of(body)?;
        let nodes = &data.artworks.nodes;
        let expected: Vec<usize> = self.page(page).collect();
        if nodes.len() != expected.len() {
            return Err("body: wrong page length".into());
        }
        for (node, &a) in nodes.iter().zip(&expected) {
            if node.id != self.ids[a] {
                return Err("body: wrong artwork on the page".into());
            }
            let likes = self.counts[a];
            if node.like_count != likes
                || node.stats
                    != (StatsBody {
                        likes,
                        favorites: 0,
                        comments: 0,
                        views: 0,
                    })
            {
                return Err("body: wrong counts".into());
            }
            if node.viewer_has_liked != self.seed.likes(user, a as u64) {
                return Err("body: wrong viewerHasLiked".into());
            }
        }
        let last = page + 1 >= self.pages();
        match (&data.artworks.page_info, last) {
            (
                PageInfo {
                    has_next_page: false,
                    ..
                },
                true,
            ) => Ok(None),
            (
                PageInfo {
                    has_next_page: true,
                    end_cursor: Some(c),
                },
                false,
            ) if !c.is_empty() => Ok(Some(c.clone())),
            _ => Err("body: wrong pageInfo".into()),
        }
    }
}

/// The `data` of an answer; any `errors` make it wrong, whatever the status.
fn data_of<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    let answer: Answer<T> =
        serde_json::from_slice(body).map_err(|_| "body: not the expected answer".to_owned())?;
    if let Some(errors) = answer.errors.filter(|e| !e.is_empty()) {
        let code = errors
            .first()
            .and_then(|e| e.extensions.as_ref())
            .and_then(|x| x.code.clone())
            .unwrap_or_else(|| "no code".into());
        return Err(format!("GraphQL error {code}"));
    }
    answer.data.ok_or_else(|| "body: no data".to_owned())
}

/// A GraphQL answer (the baselines answer the same shape).
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer<T> {
    pub data: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ErrorBody>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
    pub extensions: Option<Extensions>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Extensions {
    pub code: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ArtworkData {
    pub artwork: Likes,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Likes {
    pub like_count: i64,
    pub viewer_has_liked: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PageData {
    pub artworks: PageBody,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageBody {
    pub nodes: Vec<Node>,
    pub page_info: PageInfo,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub id: String,
    pub like_count: i64,
    pub viewer_has_liked: bool,
    pub stats: StatsBody,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsBody {
    pub likes: i64,
    pub favorites: i64,
    pub comments: i64,
    pub views: i64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

/// The body of a GraphQL request for `artwork(id)`.
pub fn artwork_request(id: &str) -> Vec<u8> {
    serde_json::json!({"query": ARTWORK_QUERY, "variables": {"id": id}})
        .to_string()
        .into_bytes()
}

/// The body of a GraphQL request for the page after `cursor`.
pub fn page_request(cursor: Option<&str>) -> Vec<u8> {
    serde_json::json!({"query": PAGE_QUERY, "variables": {"after": cursor}})
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth(artworks: u64) -> Truth {
        let seed = Seed {
            users: 200,
            artworks,
        };
        let ids = (0..artworks).map(|a| format!("id-{a}")).collect();
        Truth::new(seed, ids).unwrap()
    }

    #[test]
    fn shares_differ_per_artwork_and_counts_agree_with_the_likes_sent() {
        let t = truth(50);
        let counts = t.seed.counts();
        assert!(counts.iter().all(|&c| (1..200).contains(&c)), "{counts:?}");
        assert!(counts.iter().min() < Some(&40) && counts.iter().max() > Some(&100));
        let sent = t.seed.likes_to_send();
        assert_eq!(sent.len() as i64, counts.iter().sum::<i64>());
        // Consecutive likes go to different artworks.
        assert!(
            sent.windows(2)
                .all(|w| w[0].1 != w[1].1 || w[0].0 != w[1].0)
        );
    }

    fn artwork_body(count: i64, liked: bool) -> Vec<u8> {
        serde_json::to_vec(&Answer {
            data: Some(ArtworkData {
                artwork: Likes {
                    like_count: count,
                    viewer_has_liked: liked,
                },
            }),
            errors: None,
        })
        .unwrap()
    }

    #[test]
    fn an_artwork_answer_is_checked_against_the_seeding() {
        let t = truth(10);
        let count = t.seed.counts()[3];
        let user = (0..200).find(|&u| t.seed.likes(u, 3)).unwrap();
        let other = (0..200).find(|&u| !t.seed.likes(u, 3)).unwrap();
        assert_eq!(t.check_artwork(&artwork_body(count, true), user, 3), Ok(()));
        assert_eq!(
            t.check_artwork(&artwork_body(count, false), other, 3),
            Ok(())
        );
        assert_eq!(
            t.check_artwork(&artwork_body(count, false), user, 3),
            Err("body: wrong viewerHasLiked".into())
        );
        assert_eq!(
            t.check_artwork(&artwork_body(count + 1, true), user, 3),
            Err("body: wrong likeCount".into())
        );
        // A 200 carrying an error is a failure, with the error's code.
        let error = br#"{"data":null,"errors":[{"message":"x","extensions":{"code":"INTERNAL"}}]}"#;
        assert_eq!(
            t.check_artwork(error, user, 3),
            Err("GraphQL error INTERNAL".into())
        );
        assert!(t.check_artwork(b"<html>", user, 3).is_err());
    }

    fn page_body(t: &Truth, user: u64, page: usize, next: Option<&str>) -> Vec<u8> {
        let nodes = t
            .page(page)
            .map(|a| Node {
                id: t.ids[a].clone(),
                like_count: t.counts[a],
                viewer_has_liked: t.seed.likes(user, a as u64),
                stats: StatsBody {
                    likes: t.counts[a],
                    favorites: 0,
                    comments: 0,
                    views: 0,
                },
            })
            .collect();
        serde_json::to_vec(&Answer {
            data: Some(PageData {
                artworks: PageBody {
                    nodes,
                    page_info: PageInfo {
                        has_next_page: next.is_some(),
                        end_cursor: next.map(str::to_owned),
                    },
                },
            }),
            errors: None,
        })
        .unwrap()
    }

    #[test]
    fn pages_walk_newest_first_to_the_end() {
        let t = truth(45);
        assert_eq!(t.pages(), 3);
        assert_eq!(t.page(0).next(), Some(44));
        assert_eq!(t.page(2).collect::<Vec<_>>(), vec![4, 3, 2, 1, 0]);
        assert_eq!(
            t.check_page(&page_body(&t, 7, 0, Some("c1")), 7, 0),
            Ok(Some("c1".into()))
        );
        assert_eq!(t.check_page(&page_body(&t, 7, 2, None), 7, 2), Ok(None));
        // The right page for another user, the wrong page, a last page claiming more.
        let liked_differently = (0..200)
            .find(|&u| {
                t.page(0)
                    .any(|a| t.seed.likes(u, a as u64) != t.seed.likes(7, a as u64))
            })
            .unwrap();
        assert!(
            t.check_page(&page_body(&t, liked_differently, 0, Some("c")), 7, 0)
                .is_err()
        );
        assert!(t.check_page(&page_body(&t, 7, 1, Some("c")), 7, 0).is_err());
        assert_eq!(
            t.check_page(&page_body(&t, 7, 2, Some("c")), 7, 2),
            Err("body: wrong pageInfo".into())
        );
    }
}
