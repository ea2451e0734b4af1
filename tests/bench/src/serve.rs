//! The baseline servers, each behind the middleware stack of Gallery's command service (the
//! edge's body limit and deadlines, the request metrics into an installed Prometheus recorder,
//! the same connection handling), on a runtime built as `gallery`'s own:
//!
//! - `noop`: answers a like at once with a `202` shaped as Gallery's (the HTTP ceiling);
//! - `crud`: authenticates the caller as Gallery does, then records the like as a CRUD service
//!   would: one Postgres transaction that inserts the membership row and, when it is new,
//!   counts it (synchronous commit, so the like is on disk when the answer leaves);
//! - `cache` and `rest`: the read baselines of the `graphql` scenario ([`crate::serve_reads`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use gallery::edge::{HttpSettings, Refusals};
use gallery_commands::{Accepted, TokenKeys};
use gallery_schemas::{ArtworkId, Position};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_postgres::NoTls;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Baseline {
    Noop,
    Crud,
    Cache,
    Rest,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[arg(value_enum)]
    baseline: Baseline,
    #[arg(long)]
    listen: SocketAddr,
    /// The topic the no-op answer names.
    #[arg(long, default_value = "")]
    topic: String,
    /// The CRUD service's database.
    #[arg(
        long,
        env = "GALLERY_BENCH_CRUD_URL",
        hide_env_values = true,
        default_value = ""
    )]
    postgres_url: String,
    /// The read baselines' database (Gallery's read model).
    #[arg(
        long,
        env = "GALLERY_BENCH_READ_URL",
        hide_env_values = true,
        default_value = ""
    )]
    read_url: String,
    /// The `cache` baseline's entries per kind (the query API's `query_api.cache_capacity`).
    #[arg(long, default_value_t = 10_000)]
    cache_capacity: u64,
    /// The `cache` baseline's entry lifetime (the query API's `query_api.cache_ttl_ms`).
    #[arg(long, default_value_t = 60_000)]
    cache_ttl_ms: u64,
    /// The CRUD service's (or a read baseline's) connections to Postgres.
    #[arg(long, default_value_t = 32)]
    pool_size: usize,
    #[arg(long, env = "GALLERY_BENCH_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
}

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "baselines listen only on loopback addresses, not {}",
        args.listen
    );
    // As `gallery`'s main: a multi-threaded runtime with a worker per core.
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(serve(args))
}

async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let routes = match args.baseline {
        Baseline::Noop => Router::new()
            .route("/v1/artworks/{id}/like", put(noop_like))
            .with_state(Arc::new(args.topic.clone())),
        Baseline::Crud => Router::new()
            .route("/v1/artworks/{id}/like", put(crud_like))
            .with_state(Arc::new(Crud::open(args).await?)),
        Baseline::Cache => {
            let keys = TokenKeys::from_secret(args.jwt_secret.as_bytes())?;
            let settings = gallery_query_api::CacheSettings {
                capacity: args.cache_capacity,
                ttl: std::time::Duration::from_millis(args.cache_ttl_ms),
            };
            crate::serve_reads::cache(&args.read_url, args.pool_size, settings, keys).await?
        }
        Baseline::Rest => {
            let keys = TokenKeys::from_secret(args.jwt_secret.as_bytes())?;
            crate::serve_reads::rest(&args.read_url, args.pool_size, keys)?
        }
    };
    let role = match args.baseline {
        Baseline::Noop | Baseline::Crud => "commands",
        Baseline::Cache | Baseline::Rest => "query-api",
    };
    let routes = routes.route("/healthz", get(|| async { "ok" }));
    let settings = HttpSettings::default();
    let app = gallery::edge::guard(
        routes,
        &settings,
        Refusals {
            too_large: gallery_commands::http::payload_too_large,
            too_slow: gallery_commands::http::body_too_slow,
        },
    );
    // Recorded as Gallery records, into a real recorder.
    gallery::metrics::recorder()?;
    let app = gallery::metrics::track(app, role);
    let listener = TcpListener::bind(args.listen).await?;
    gallery::edge::serve(listener, app, &settings, gallery::app::shutdown_signal()).await;
    Ok(())
}

async fn noop_like(State(topic): State<Arc<String>>, Path(_id): Path<String>) -> Response {
    let accepted = Accepted {
        event_id: uuid::Uuid::nil(),
        position: Position {
            topic: topic.as_ref().clone(),
            partition: 0,
            offset: 0,
        },
        id: None,
        degraded: None,
    };
    (StatusCode::ACCEPTED, axum::Json(accepted)).into_response()
}

/// The CRUD service's store.
#[derive(Debug)]
struct Crud {
    pool: Pool,
    keys: TokenKeys,
}

const CRUD_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS likes (
        user_id text NOT NULL,
        artwork_id text NOT NULL,
        liked_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, artwork_id)
    );
    CREATE TABLE IF NOT EXISTS artwork_likes (
        artwork_id text PRIMARY KEY,
        likes bigint NOT NULL
    );";

const INSERT_LIKE: &str =
    "INSERT INTO likes (user_id, artwork_id) VALUES ($1, $2) ON CONFLICT DO NOTHING";
const COUNT_LIKE: &str = "INSERT INTO artwork_likes (artwork_id, likes) VALUES ($1, 1)
    ON CONFLICT (artwork_id) DO UPDATE SET likes = artwork_likes.likes + 1 RETURNING likes";
const READ_LIKES: &str = "SELECT likes FROM artwork_likes WHERE artwork_id = $1";

impl Crud {
    async fn open(args: &ServeArgs) -> anyhow::Result<Self> {
        let config: tokio_postgres::Config = args.postgres_url.parse()?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager).max_size(args.pool_size).build()?;
        pool.get().await?.batch_execute(CRUD_SCHEMA).await?;
        Ok(Self {
            pool,
            keys: TokenKeys::from_secret(args.jwt_secret.as_bytes())?,
        })
    }

    /// Records the like; the artwork's count after it.
    async fn like(&self, user: &str, artwork: &str) -> anyhow::Result<i64> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let insert = tx.prepare_cached(INSERT_LIKE).await?;
        let likes = if tx.execute(&insert, &[&user, &artwork]).await? == 1 {
            let count = tx.prepare_cached(COUNT_LIKE).await?;
            tx.query_one(&count, &[&artwork]).await?.try_get("likes")?
        } else {
            let read = tx.prepare_cached(READ_LIKES).await?;
            tx.query_one(&read, &[&artwork]).await?.try_get("likes")?
        };
        tx.commit().await?;
        Ok(likes)
    }
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn crud_like(
    State(crud): State<Arc<Crud>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let header = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let who = match crud.keys.verify_header(header) {
        Ok(who) => who,
        Err(e) => return error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", e.to_string()),
    };
    let artwork = match ArtworkId::parse(&id) {
        Ok(artwork) => artwork,
        Err(e) => return error(StatusCode::BAD_REQUEST, "INVALID_INPUT", e.to_string()),
    };
    match crud.like(who.user.as_str(), artwork.as_str()).await {
        Ok(likes) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"artworkId": artwork.as_str(), "likes": likes})),
        )
            .into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            format!("{e:#}"),
        ),
    }
}
