//! The read baselines of the `graphql` scenario, each answering `GET /artworks/{id}` and
//! `GET /artworks?after=<cursor>` with the JSON the GraphQL API answers (so one check serves
//! all), after checking the caller's token as the API does:
//!
//! - `cache`: a plain axum handler reading the API's own cache ([`HotCache`], the same keys,
//!   filled the same way on a miss through the API's [`ReadModel`] and emptied by the same
//!   change feed), counts and the viewer's flags alike; the catalog's order held in memory
//!   (loaded once);
//! - `rest`: a REST handler querying Postgres per request: one prepared statement per answer
//!   over the same rows (the read model's tables).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use gallery_commands::TokenKeys;
use gallery_query_api::{CacheSettings, ChangeFeed, HotCache, ReadModel};
use gallery_schemas::ArtworkId;
use serde::Serialize;
use tokio_postgres::NoTls;

use crate::reads::{
    Answer, ArtworkData, ErrorBody, Extensions, Likes, Node, PAGE, PageBody, PageData, PageInfo,
    StatsBody,
};

/// A refusal or failure, as a GraphQL error answer.
fn refused(status: StatusCode, code: &str, message: String) -> Response {
    let answer: Answer<()> = Answer {
        data: None,
        errors: Some(vec![ErrorBody {
            message,
            extensions: Some(Extensions {
                code: Some(code.to_owned()),
            }),
        }]),
    };
    (status, axum::Json(answer)).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    refused(StatusCode::SERVICE_UNAVAILABLE, "INTERNAL", e.to_string())
}

fn answer<T: Serialize>(data: T) -> Response {
    axum::Json(Answer {
        data: Some(data),
        errors: None,
    })
    .into_response()
}

/// The caller's user id, checked as the API checks it.
#[allow(
    clippy::result_large_err,
    reason = "a refusal is the handler's answer, built once per refused request"
)]
fn viewer(keys: &TokenKeys, headers: &HeaderMap) -> Result<String, Response> {
    let header = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    keys.verify_header(header)
        .map(|who| who.user.as_str().to_owned())
        .map_err(|e| refused(StatusCode::OK, "UNAUTHENTICATED", e.to_string()))
}

/// The caller's user id and the artwork asked for, checked as the API checks them.
#[allow(
    clippy::result_large_err,
    reason = "a refusal is the handler's answer, built once per refused request"
)]
fn viewer_and_artwork(
    keys: &TokenKeys,
    headers: &HeaderMap,
    raw: &str,
) -> Result<(String, ArtworkId), Response> {
    let user = viewer(keys, headers)?;
    let id = ArtworkId::parse(raw)
        .map_err(|e| refused(StatusCode::OK, "BAD_USER_INPUT", e.to_string()))?;
    Ok((user, id))
}

fn pool(url: &str, size: usize) -> anyhow::Result<Pool> {
    let config: tokio_postgres::Config = url.parse()?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager).max_size(size).build()?)
}

/// The `cache` baseline's state.
#[derive(Debug)]
struct Cached {
    keys: TokenKeys,
    read: ReadModel,
    cache: HotCache,
    /// The catalog's artwork ids, newest first.
    order: Vec<String>,
}

pub async fn cache(
    url: &str,
    pool_size: usize,
    settings: CacheSettings,
    keys: TokenKeys,
) -> anyhow::Result<Router> {
    let read = ReadModel::new(pool(url, pool_size)?);
    let cache = HotCache::new(settings);
    let feed = ChangeFeed::new();
    feed.observe(Arc::new(cache.clone()));
    tokio::spawn(feed.clone().listen(url.to_owned(), std::future::pending()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !feed.connected() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the change feed did not connect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut order = Vec::new();
    let mut after = None;
    loop {
        let rows = read.artworks_page(None, after, 100).await?;
        let Some(last) = rows.last() else { break };
        after = Some((last.added_at_ms, last.artwork_id.clone()));
        order.extend(rows.into_iter().map(|r| r.artwork_id));
    }
    let state = Arc::new(Cached {
        keys,
        read,
        cache,
        order,
    });
    Ok(Router::new()
        .route("/artworks/{id}", get(cached_artwork))
        .route("/artworks", get(cached_page))
        .with_state(state))
}

impl Cached {
    async fn stats(&self, id: &str) -> anyhow::Result<StatsBody> {
        let stats = match self.cache.stats(id).await {
            Some(hit) => hit,
            None => {
                let epoch = self.cache.epoch();
                let read = self.read.stats(&[id.to_owned()]).await?;
                let stats = read.into_iter().next().map(|(_, s)| s).unwrap_or_default();
                self.cache.put_stats(id, stats, epoch).await;
                stats
            }
        };
        Ok(StatsBody {
            likes: stats.likes,
            favorites: stats.favorites,
            comments: stats.comments,
            views: stats.views,
        })
    }

    async fn liked(&self, id: &str, user: &str) -> anyhow::Result<bool> {
        if let Some((liked, _)) = self.cache.flags(id, user).await {
            return Ok(liked);
        }
        let epoch = self.cache.epoch();
        let key = (user.to_owned(), id.to_owned());
        let read = self.read.flags(std::slice::from_ref(&key)).await?;
        let flags = read.first().map_or((false, false), |(_, flags)| *flags);
        self.cache.put_flags(id, user, flags, epoch).await;
        Ok(flags.0)
    }
}

async fn cached_artwork(
    State(s): State<Arc<Cached>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (user, id) = match viewer_and_artwork(&s.keys, &headers, &id) {
        Ok(found) => found,
        Err(r) => return r,
    };
    let likes = async {
        let stats = s.stats(id.as_str()).await?;
        let liked = s.liked(id.as_str(), &user).await?;
        anyhow::Ok(Likes {
            like_count: stats.likes,
            viewer_has_liked: liked,
        })
    };
    match likes.await {
        Ok(artwork) => answer(ArtworkData { artwork }),
        Err(e) => internal(e),
    }
}

async fn cached_page(
    State(s): State<Arc<Cached>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let user = match viewer(&s.keys, &headers) {
        Ok(user) => user,
        Err(r) => return r,
    };
    let start = match query.get("after").map(|c| c.parse::<usize>()) {
        None => 0,
        Some(Ok(at)) => at + 1,
        Some(Err(e)) => return refused(StatusCode::OK, "BAD_USER_INPUT", e.to_string()),
    };
    let ids = s.order.get(start..).unwrap_or_default();
    let ids = &ids[..ids.len().min(PAGE)];
    let mut nodes = Vec::with_capacity(ids.len());
    for id in ids {
        let node = async {
            let stats = s.stats(id).await?;
            anyhow::Ok(Node {
                id: id.clone(),
                like_count: stats.likes,
                viewer_has_liked: s.liked(id, &user).await?,
                stats,
            })
        };
        match node.await {
            Ok(node) => nodes.push(node),
            Err(e) => return internal(e),
        }
    }
    let end = start + ids.len();
    answer(PageData {
        artworks: PageBody {
            nodes,
            page_info: PageInfo {
                has_next_page: end < s.order.len(),
                end_cursor: end.checked_sub(1).map(|last| last.to_string()),
            },
        },
    })
}

/// The `rest` baseline's state.
#[derive(Debug)]
struct Rest {
    keys: TokenKeys,
    pool: Pool,
}

const ARTWORK_SQL: &str = "SELECT
    COALESCE((SELECT like_count FROM artwork_stats WHERE artwork_id = $1), 0) AS likes,
    COALESCE((SELECT liked FROM artwork_likes WHERE artwork_id = $1 AND user_id = $2), false) AS liked";

const PAGE_SQL: &str = "SELECT a.artwork_id, a.added_at_ms,
    COALESCE(s.like_count, 0) AS likes, COALESCE(s.favorite_count, 0) AS favorites,
    COALESCE(s.comment_count, 0) AS comments, COALESCE(s.view_count, 0) AS views,
    COALESCE(l.liked, false) AS liked
  FROM artworks a
  LEFT JOIN artwork_stats s ON s.artwork_id = a.artwork_id
  LEFT JOIN artwork_likes l ON l.artwork_id = a.artwork_id AND l.user_id = $3
  WHERE NOT a.removed AND ($1::bigint IS NULL OR (a.added_at_ms, a.artwork_id) < ($1, $2::text))
  ORDER BY a.added_at_ms DESC, a.artwork_id DESC LIMIT $4";

pub fn rest(url: &str, pool_size: usize, keys: TokenKeys) -> anyhow::Result<Router> {
    let state = Arc::new(Rest {
        keys,
        pool: pool(url, pool_size)?,
    });
    Ok(Router::new()
        .route("/artworks/{id}", get(rest_artwork))
        .route("/artworks", get(rest_page))
        .with_state(state))
}

async fn rest_artwork(
    State(s): State<Arc<Rest>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (user, id) = match viewer_and_artwork(&s.keys, &headers, &id) {
        Ok(found) => found,
        Err(r) => return r,
    };
    let likes = async {
        let client = s.pool.get().await?;
        let statement = client.prepare_cached(ARTWORK_SQL).await?;
        let row = client.query_one(&statement, &[&id.as_str(), &user]).await?;
        anyhow::Ok(Likes {
            like_count: row.try_get("likes")?,
            viewer_has_liked: row.try_get("liked")?,
        })
    };
    match likes.await {
        Ok(artwork) => answer(ArtworkData { artwork }),
        Err(e) => internal(format!("{e:#}")),
    }
}

/// A `rest` cursor: `<added_at_ms>.<artwork id>` (ids have no dots).
fn rest_cursor(raw: &str) -> Option<(i64, String)> {
    let (at, id) = raw.split_once('.')?;
    Some((
        at.parse().ok()?,
        ArtworkId::parse(id).ok()?.as_str().to_owned(),
    ))
}

async fn rest_page(
    State(s): State<Arc<Rest>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let user = match viewer(&s.keys, &headers) {
        Ok(user) => user,
        Err(r) => return r,
    };
    let after = match query.get("after").map(|c| rest_cursor(c)) {
        None => None,
        Some(Some(after)) => Some(after),
        Some(None) => {
            return refused(StatusCode::OK, "BAD_USER_INPUT", "not a cursor".to_owned());
        }
    };
    let (at, id) = after.unzip();
    let limit = i64::try_from(PAGE + 1).unwrap_or(21);
    let page = async {
        let client = s.pool.get().await?;
        let statement = client.prepare_cached(PAGE_SQL).await?;
        let rows = client.query(&statement, &[&at, &id, &user, &limit]).await?;
        let mut nodes = Vec::with_capacity(PAGE);
        let mut last = None;
        for row in rows.iter().take(PAGE) {
            let id: String = row.try_get("artwork_id")?;
            let likes = row.try_get("likes")?;
            last = Some(format!("{}.{id}", row.try_get::<_, i64>("added_at_ms")?));
            nodes.push(Node {
                id,
                like_count: likes,
                viewer_has_liked: row.try_get("liked")?,
                stats: StatsBody {
                    likes,
                    favorites: row.try_get("favorites")?,
                    comments: row.try_get("comments")?,
                    views: row.try_get("views")?,
                },
            });
        }
        anyhow::Ok(PageData {
            artworks: PageBody {
                nodes,
                page_info: PageInfo {
                    has_next_page: rows.len() > PAGE,
                    end_cursor: last,
                },
            },
        })
    };
    match page.await {
        Ok(page) => answer(page),
        Err(e) => internal(format!("{e:#}")),
    }
}
