//! The sections of the configuration the GraphQL API reads: `query_api` (where it listens,
//! how it protects and answers, how image URLs are signed) and `read` (which store the
//! interactions are read from). Defaults and checks sit next to the fields; a refusal names
//! its key. [`Api::build`] makes the API of a role from them.

use std::net::SocketAddr;
use std::time::Duration;

use gallery_infra::Secret;
use gallery_infra::settings::{Invalid, between, invalid};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use deadpool_postgres::Pool;
use gallery_commands::{MediaStore, TokenKeys};
use gallery_schemas::Topics;

use crate::guard::MAX_DEPTH_LIMIT;
use crate::{
    ApiSettings, CacheSettings, DEV_MEDIA_URL_SECRET, MediaSecret, MediaUrlSettings, MediaUrls,
};
use crate::{
    ApiState, ChangeFeed, InteractionStore, Media, MediaUrlError, QueryError, ReadModel,
    ScyllaReads, StatementCounter, Writes,
};

/// The `query_api` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueryApiSettings {
    pub listen: SocketAddr,
    /// Longest a request with `X-Consistency-Token` waits for the read model.
    pub consistency_timeout_ms: u64,
    /// Entries of the hot-read cache per kind (artwork details, counts); 0 turns it off.
    pub cache_capacity: u64,
    /// Longest a cached entry lives (changes invalidate it at once anyway).
    pub cache_ttl_ms: u64,
    /// Deepest field nesting of a query, fragments expanded.
    pub max_depth: usize,
    /// Highest complexity of a query (also the most fields it selects, fragments expanded).
    pub max_complexity: usize,
    /// Longest GraphQL document, in bytes.
    pub max_document_bytes: usize,
    /// Most lexical tokens of a GraphQL document.
    pub max_document_tokens: usize,
    /// Whether introspection (and GraphiQL) is on.
    pub introspection: bool,
    /// Longest a query or mutation may run.
    pub query_timeout_ms: u64,
    /// Automatic persisted queries kept in memory (least recently used dropped).
    pub persisted_queries: usize,
    /// Most subscriptions one WebSocket connection runs at once.
    pub max_subscriptions_per_connection: usize,
    /// Most WebSocket connections one process holds at once, initialised or not; one more is
    /// refused at the upgrade (503, `TOO_MANY_CONNECTIONS`). The default, 10,000, is sized for
    /// launch day (docs/PERFORMANCE.md): 100,000 watchers over the 12 query API processes the
    /// reads need is 8,300 each, and 10,000 leaves a fifth more for an uneven spread; at the
    /// measured 14.6 KB per idle subscription that is about 150 MB, and it stays below the
    /// 17,000 open files a process had there, so a flood is answered with 503 while files are
    /// left for HTTP clients and the pools, instead of `accept` failing for everyone.
    pub max_websocket_connections: usize,
    /// Longest a WebSocket connection may wait before its `connection_init`, in milliseconds
    /// (closed with 4408 beyond).
    pub ws_init_timeout_ms: u64,
    /// HMAC-SHA256 secret of the signed image URLs (`/media/...`), at least 32 bytes.
    pub media_url_secret: Secret,
    /// Shortest lifetime of a signed image URL, in seconds.
    pub media_url_ttl_secs: u64,
    /// Public origin of the API (`https://gallery.example.org`) for absolute image URLs;
    /// empty: URLs relative to the API.
    pub public_url: String,
}

impl Default for QueryApiSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            consistency_timeout_ms: 5_000,
            cache_capacity: 10_000,
            cache_ttl_ms: 60_000,
            max_depth: 16,
            max_complexity: 500,
            max_document_bytes: 65_536,
            max_document_tokens: 10_000,
            introspection: true,
            query_timeout_ms: 10_000,
            persisted_queries: 1_000,
            max_subscriptions_per_connection: 100,
            max_websocket_connections: 10_000,
            ws_init_timeout_ms: 10_000,
            media_url_secret: Secret::new(DEV_MEDIA_URL_SECRET),
            media_url_ttl_secs: 3_600,
            public_url: String::new(),
        }
    }
}

impl QueryApiSettings {
    pub fn validate(&self) -> Result<(), Invalid> {
        between(
            "query_api.consistency_timeout_ms",
            self.consistency_timeout_ms,
            1..=600_000,
        )?;
        between("query_api.cache_ttl_ms", self.cache_ttl_ms, 1..=86_400_000)?;
        if !(1..=MAX_DEPTH_LIMIT).contains(&self.max_depth) {
            return Err(invalid(
                "query_api.max_depth",
                format!(
                    "must be between 1 and {MAX_DEPTH_LIMIT} (the deepest the GraphQL parser \
                     can take)"
                ),
            ));
        }
        between(
            "query_api.max_document_bytes",
            self.max_document_bytes,
            64..=1 << 20,
        )?;
        between(
            "query_api.max_document_tokens",
            self.max_document_tokens,
            16..=1_000_000,
        )?;
        between(
            "query_api.max_complexity",
            self.max_complexity,
            1..=1_000_000,
        )?;
        between(
            "query_api.query_timeout_ms",
            self.query_timeout_ms,
            1..=600_000,
        )?;
        between(
            "query_api.persisted_queries",
            self.persisted_queries,
            1..=1_000_000,
        )?;
        between(
            "query_api.max_subscriptions_per_connection",
            self.max_subscriptions_per_connection,
            1..=10_000,
        )?;
        between(
            "query_api.max_websocket_connections",
            self.max_websocket_connections,
            1..=1_000_000,
        )?;
        between(
            "query_api.ws_init_timeout_ms",
            self.ws_init_timeout_ms,
            100..=60_000,
        )?;
        if !(60..=604_800).contains(&self.media_url_ttl_secs) {
            return Err(invalid(
                "query_api.media_url_ttl_secs",
                "must be between 60 (a minute) and 604800 (a week)",
            ));
        }
        let base = self.public_url.trim();
        let scheme_ok = base.starts_with("http://") || base.starts_with("https://");
        if !base.is_empty()
            && (!scheme_ok || base.contains(|c: char| c.is_whitespace() || c == '?' || c == '#'))
        {
            return Err(invalid(
                "query_api.public_url",
                "must be empty or an http:// or https:// URL without query or fragment",
            ));
        }
        MediaUrls::new(&self.media_url_settings())
            .map_err(|e| invalid("query_api.media_url_secret", e.to_string()))?;
        Ok(())
    }

    /// The API's tunables, as the handlers take them.
    pub fn api(&self) -> ApiSettings {
        ApiSettings {
            consistency_timeout: Duration::from_millis(self.consistency_timeout_ms),
            cache: CacheSettings {
                capacity: self.cache_capacity,
                ttl: Duration::from_millis(self.cache_ttl_ms),
            },
            max_depth: self.max_depth,
            max_complexity: self.max_complexity,
            max_document_bytes: self.max_document_bytes,
            max_document_tokens: self.max_document_tokens,
            introspection: self.introspection,
            query_timeout: Duration::from_millis(self.query_timeout_ms),
            persisted_queries: self.persisted_queries,
            max_subscriptions_per_connection: self.max_subscriptions_per_connection,
            max_websocket_connections: self.max_websocket_connections,
            ws_init_timeout: Duration::from_millis(self.ws_init_timeout_ms),
        }
    }

    /// How image URLs are signed.
    pub fn media_url_settings(&self) -> MediaUrlSettings {
        let base = self.public_url.trim();
        MediaUrlSettings {
            secret: MediaSecret::new(self.media_url_secret.expose().as_bytes()),
            ttl: Duration::from_secs(self.media_url_ttl_secs),
            public_base_url: (!base.is_empty()).then(|| base.to_owned()),
        }
    }

    /// Whether the media URL secret is the built-in development one.
    pub fn uses_dev_media_secret(&self) -> bool {
        self.media_url_secret.expose() == DEV_MEDIA_URL_SECRET
    }
}

/// Which store the GraphQL API reads interactions from.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReadStore {
    #[default]
    Postgres,
    Scylla,
}

/// The `read` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReadSettings {
    /// `postgres` or `scylla`: where counts, viewer flags, the viewer's likes and favorites
    /// and comments are read from (everything else is read from Postgres). With `scylla`, the
    /// projections role runs the Scylla projector besides the Postgres one.
    pub store: ReadStore,
}

/// What the API shares with the rest of the process.
#[derive(Debug)]
pub struct ApiDeps {
    /// The read model's database, and its URL for the change feed's `LISTEN`.
    pub pool: Pool,
    pub postgres_url: String,
    /// The session and keyspace of the Scylla read model, with `read.store = "scylla"`.
    pub scylla: Option<(scylla::client::session::Session, String)>,
    pub topics: Topics,
    /// The write side the mutations run on.
    pub writes: Writes,
    pub keys: Arc<TokenKeys>,
    /// The process's one image store.
    pub images: MediaStore,
}

/// Why the API could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("Scylla reads")]
    Scylla(#[from] QueryError),
    #[error("signed image URLs")]
    MediaUrls(#[from] MediaUrlError),
}

/// The GraphQL API of a `query-api` role, built: its state (for [`crate::router`]), the change
/// feed that must listen for the read model's changes, and the count of its statements.
#[derive(Debug)]
pub struct Api {
    pub state: ApiState,
    pub feed: ChangeFeed,
    pub statements: StatementCounter,
}

impl Api {
    pub async fn build(
        settings: &QueryApiSettings,
        read: &ReadSettings,
        deps: ApiDeps,
    ) -> Result<Self, BuildError> {
        let interactions = vec![deps.topics.interactions()];
        let mut model = ReadModel::new(deps.pool);
        let feed = match (read.store, deps.scylla) {
            (ReadStore::Scylla, Some((session, keyspace))) => {
                let reads = ScyllaReads::new(session, &keyspace)
                    .await?
                    .folding(interactions.clone());
                model = model.with_interactions(InteractionStore::Scylla(Arc::new(reads)));
                ChangeFeed::with_scylla(interactions)
            }
            _ => ChangeFeed::new(),
        };
        let statements = model.statements();
        let state = ApiState::new(
            model,
            deps.writes,
            deps.keys,
            feed.clone(),
            settings.api(),
            Media {
                store: deps.images,
                urls: MediaUrls::new(&settings.media_url_settings())?,
            },
        );
        Ok(Self {
            state,
            feed,
            statements,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_handlers_defaults() {
        let s = QueryApiSettings::default();
        assert_eq!(s.validate(), Ok(()));
        let api = s.api();
        assert_eq!(api.cache, CacheSettings::default());
        assert_eq!(
            api.consistency_timeout,
            ApiSettings::default().consistency_timeout
        );
        assert_eq!(s.media_url_settings().ttl, MediaUrlSettings::default().ttl);
        assert!(s.uses_dev_media_secret());
        assert_eq!(ReadSettings::default().store, ReadStore::Postgres);
    }

    #[test]
    fn a_bound_beyond_its_range_is_refused_with_its_key() {
        let deep = QueryApiSettings {
            max_depth: MAX_DEPTH_LIMIT + 1,
            ..QueryApiSettings::default()
        };
        assert_eq!(
            deep.validate().map_err(|e| e.key),
            Err("query_api.max_depth")
        );
        let slow = QueryApiSettings {
            query_timeout_ms: 0,
            ..QueryApiSettings::default()
        };
        assert_eq!(
            slow.validate().map_err(|e| e.key),
            Err("query_api.query_timeout_ms")
        );
    }
}
