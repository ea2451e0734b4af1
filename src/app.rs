//! Starting and stopping the roles.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use gallery_commands::write_side::{WriteDeps, WriteSettings, WriteSide};
use gallery_commands::{MediaStore, StoreLocation, TokenKeys};
use gallery_gpu_workers::settings::PainterDeps;
use gallery_projections::settings::{Projectors, ProjectorsSettings};
use gallery_query_api::settings::{Api, ApiDeps};
use gallery_schemas::EventCodec;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_postgres::NoTls;

use crate::config::{Config, ReadStore};
use crate::supervise::{RoleFailure, Supervisor};

/// Which roles one process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub commands: bool,
    pub projections: bool,
    pub query_api: bool,
    /// The AI painter: the generation worker.
    pub painter: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        commands: true,
        projections: true,
        query_api: true,
        painter: true,
    };
    pub const NONE: Roles = Roles {
        commands: false,
        projections: false,
        query_api: false,
        painter: false,
    };
    pub const COMMANDS: Roles = Roles {
        commands: true,
        ..Roles::NONE
    };
    pub const PROJECTIONS: Roles = Roles {
        projections: true,
        ..Roles::NONE
    };
    pub const QUERY_API: Roles = Roles {
        query_api: true,
        ..Roles::NONE
    };
    /// Everything but the painter: the write side, the projectors and GraphQL (for tests that
    /// watch generation requests stay unanswered).
    pub const SERVICES: Roles = Roles {
        painter: false,
        ..Roles::ALL
    };
    pub const PAINTER: Roles = Roles {
        painter: true,
        ..Roles::NONE
    };
}

/// Why a role could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("Kafka at {brokers}")]
    Kafka {
        brokers: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("schema registry client")]
    Codec(#[from] gallery_schemas::CodecError),
    #[error("signing keys")]
    Auth(#[from] gallery_commands::AuthError),
    #[error("Postgres")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("Postgres read model")]
    Projection(#[from] gallery_projections::ProjectionError),
    #[error("Scylla read model at {nodes}")]
    Scylla {
        nodes: String,
        #[source]
        source: gallery_projections::ProjectionError,
    },
    #[error("GraphQL API")]
    Api(#[from] gallery_query_api::settings::BuildError),
    #[error("write side")]
    WriteSide(#[from] gallery_commands::write_side::BuildError),
    #[error("Postgres pool")]
    Pool(#[from] deadpool_postgres::BuildError),
    #[error("image store")]
    Media(#[from] gallery_commands::MediaError),
    #[error("write-side database")]
    CommandsDb(#[from] gallery_commands::db::DbError),
    #[error("AI painter")]
    Painter(#[from] gallery_gpu_workers::WorkerError),
    #[error("metrics")]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Running roles. Dropping it does not stop them; call [`Running::stop`]. A role that ends
/// before it is asked to is reported by [`Running::failed`].
#[derive(Debug)]
pub struct Running {
    /// Where the command service listens, if it runs.
    pub commands_addr: Option<SocketAddr>,
    /// Where the GraphQL API listens, if it runs.
    pub query_addr: Option<SocketAddr>,
    /// Where the metrics are served, if they are.
    pub metrics_addr: Option<SocketAddr>,
    /// Read-model statements the GraphQL API has run, if it runs.
    pub query_statements: Option<gallery_query_api::StatementCounter>,
    shutdown: watch::Sender<bool>,
    roles: Supervisor,
}

impl Running {
    /// Asks every role to stop and waits for them (in-flight requests finish first).
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        self.roles.join_all().await;
    }

    /// Resolves when a role ends although it was not asked to (it returned, failed or
    /// panicked), naming the role and the cause; pending while every role runs. Cancel-safe.
    pub async fn failed(&mut self) -> RoleFailure {
        self.roles.failed().await
    }

    /// Runs `task` as one more role of this process, watched like the others: its end before
    /// [`Running::stop`] is a failure of the process.
    pub fn supervise<F>(&mut self, role: &'static str, task: F)
    where
        F: std::future::Future<Output = Result<(), crate::supervise::RoleError>> + Send + 'static,
    {
        self.roles.spawn(role, task);
    }
}

/// Runs until `stop` resolves (a signal) or a role fails, then stops every role. A failed role
/// is logged with its cause and returned, so that the process exits non-zero and is restarted
/// by whatever supervises it.
pub async fn run_until_stopped(
    mut running: Running,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), RoleFailure> {
    let failure = tokio::select! {
        () = stop => None,
        failure = running.failed() => Some(failure),
    };
    match &failure {
        None => tracing::info!("shutting down"),
        Some(failure) => crate::supervise::log(failure, "stopping the process"),
    }
    running.stop().await;
    failure.map_or(Ok(()), Err)
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Listens on `addr` and serves `app` (with the peer's address, under the edge's timeouts)
/// until the roles stop, as the role `what` of `supervisor`; returns the address bound (a port
/// 0 resolved).
async fn serve_http(
    addr: SocketAddr,
    app: axum::Router,
    (what, http): (&'static str, &crate::edge::HttpSettings),
    supervisor: &mut Supervisor,
    stop: &watch::Receiver<bool>,
) -> Result<SocketAddr, StartError> {
    let listen_error = |source| StartError::Listen { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    let stop = stopped(stop.clone());
    let http = *http;
    supervisor.spawn(what, async move {
        crate::edge::serve(listener, app, &http, stop).await;
        Ok(())
    });
    Ok(bound)
}

fn kafka_error(config: &Config) -> impl FnOnce(rdkafka::error::KafkaError) -> StartError + '_ {
    |source| StartError::Kafka {
        brokers: config.kafka.brokers.clone(),
        source,
    }
}

/// A connection pool to the configured Postgres database (connections open on first use).
pub fn pg_pool(config: &Config) -> Result<Pool, StartError> {
    let pg: tokio_postgres::Config = config.postgres.url.expose().parse()?;
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(config.postgres.pool_size)
        .build()?)
}

/// How long a starting role waits for the schema registry to answer (it may be starting too,
/// or busy) before it gives up.
const REGISTRY_PATIENCE: Duration = Duration::from_secs(60);

/// Registers every schema, trying again while the registry is unreachable, for up to
/// [`REGISTRY_PATIENCE`]; a refusal (an incompatible schema) fails at once.
async fn register_schemas(codec: &EventCodec, config: &Config) -> Result<(), StartError> {
    let deadline = tokio::time::Instant::now() + REGISTRY_PATIENCE;
    let mut pause = Duration::from_millis(200);
    loop {
        match codec.register_all(&config.topics()).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() && tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!(error = %e, url = %config.registry.url, ?pause, "schema registry unavailable; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Starts `roles`. Creates missing topics and brings the read model up to date first.
pub async fn start(config: &Config, roles: Roles) -> Result<Running, StartError> {
    if config.auth.uses_dev_secret() && (roles.commands || roles.query_api) {
        tracing::warn!(
            "auth.jwt_secret is the built-in development secret; set GALLERY_AUTH__JWT_SECRET in production"
        );
    }
    if config.query_api.uses_dev_media_secret() && roles.query_api {
        tracing::warn!(
            "query_api.media_url_secret is the built-in development secret; set GALLERY_QUERY_API__MEDIA_URL_SECRET in production"
        );
    }
    crate::topics::ensure_topics(config)
        .await
        .map_err(kafka_error(config))?;
    let codec = EventCodec::new(&config.registry())?;
    if roles.commands || roles.query_api || roles.painter {
        // Writers register every schema (BACKWARD-checked by the registry) before any command.
        register_schemas(&codec, config).await?;
    }
    // One image store per process: uploads and the painter's sources and results meet in it
    // (with `memory://` they could not meet otherwise).
    let media = if roles.commands || roles.query_api || roles.painter {
        Some(MediaStore::open(&config.media)?)
    } else {
        None
    };
    let keys = Arc::new(TokenKeys::from_secret(
        config.auth.jwt_secret.expose().as_bytes(),
    )?);
    let (shutdown, rx) = watch::channel(false);
    let mut supervisor = Supervisor::default();
    // First, so that every role records from the start.
    let metrics_addr = if config.metrics.enabled {
        let handle = crate::metrics::recorder()?;
        let app = crate::metrics::router(handle);
        let addr = serve_http(
            config.metrics.listen,
            app,
            ("metrics server", &config.http),
            &mut supervisor,
            &rx,
        )
        .await?;
        tracing::info!("metrics on http://{addr}/metrics");
        Some(addr)
    } else {
        None
    };
    let mut running_commands = None;
    let mut running_query = None;
    let mut query_statements = None;

    if roles.projections || roles.query_api || roles.commands {
        let (mut client, connection) =
            tokio_postgres::connect(config.postgres.url.expose(), NoTls).await?;
        let conn = tokio::spawn(connection);
        gallery_projections::migrate(&mut client, &config.topics()).await?;
        gallery_commands::db::migrate(&mut client).await?;
        drop(client);
        let _ = conn.await;
    }

    // With the Scylla read store, the keyspace is brought up to date like the Postgres schema;
    // the session serves the GraphQL reads.
    let scylla = if config.read.store == ReadStore::Scylla && (roles.projections || roles.query_api)
    {
        let settings = &config.scylla;
        let scylla_error = |source| StartError::Scylla {
            nodes: config.scylla.nodes.clone(),
            source,
        };
        let session = gallery_projections::scylla::connect(settings)
            .await
            .map_err(scylla_error)?;
        gallery_projections::scylla::migrate(&session, settings, &config.topics())
            .await
            .map_err(scylla_error)?;
        Some(session)
    } else {
        None
    };

    // The command service and the GraphQL mutations share one write side: one idempotent
    // producer, one pool, one password hasher.
    let writes = match (roles.commands || roles.query_api, &media) {
        (true, Some(media)) => {
            let write_side = WriteSide::build(
                WriteSettings {
                    kafka: &config.kafka,
                    accounts: &config.accounts,
                    limits: config.limits,
                    generation: &config.generation,
                    images: config.media.limits,
                },
                WriteDeps {
                    codec: codec.clone(),
                    pool: pg_pool(config)?,
                    keys: keys.clone(),
                    media: media.clone(),
                },
            )?;
            supervisor.spawn_infallible(
                "generation backlog monitor",
                write_side.backlog.run(stopped(rx.clone())),
            );
            Some(gallery_query_api::Writes {
                commands: write_side.commands,
                accounts: write_side.accounts,
            })
        }
        _ => None,
    };

    if let (true, Some(writes)) = (roles.commands, &writes) {
        let app = gallery_commands::http::router(gallery_commands::http::HttpState {
            commands: writes.commands.clone(),
            keys: keys.clone(),
            accounts: writes.accounts.clone(),
        });
        let app = crate::edge::guard(
            app,
            &config.http,
            crate::edge::Refusals {
                too_large: gallery_commands::http::payload_too_large,
                too_slow: gallery_commands::http::body_too_slow,
            },
        );
        let app = crate::metrics::track(app, "commands");
        let addr = serve_http(
            config.commands.listen,
            app,
            ("command service", &config.http),
            &mut supervisor,
            &rx,
        )
        .await?;
        tracing::info!("commands listening on http://{addr}");
        running_commands = Some(addr);
    }

    if let (true, Some(writes), Some(images)) = (roles.query_api, writes, media.clone()) {
        let api = Api::build(
            &config.query_api,
            &config.read,
            ApiDeps {
                pool: pg_pool(config)?,
                postgres_url: config.postgres.url.expose().to_owned(),
                scylla: scylla.map(|s| (s, config.scylla.keyspace.clone())),
                topics: config.topics(),
                writes,
                keys: keys.clone(),
                images,
            },
        )
        .await?;
        query_statements = Some(api.statements);
        supervisor.spawn_infallible(
            "read-model change feed",
            api.feed
                .listen(config.postgres.url.expose().to_owned(), stopped(rx.clone())),
        );
        let app = crate::edge::guard(
            gallery_query_api::router(api.state),
            &config.http,
            crate::edge::Refusals {
                too_large: gallery_query_api::payload_too_large,
                too_slow: gallery_query_api::body_too_slow,
            },
        );
        let app = crate::metrics::track(app, "query-api");
        let addr = serve_http(
            config.query_api.listen,
            app,
            ("GraphQL API", &config.http),
            &mut supervisor,
            &rx,
        )
        .await?;
        tracing::info!("GraphQL listening on http://{addr}/graphql");
        running_query = Some(addr);
    }

    if roles.projections {
        let projectors = Projectors::build(projectors_settings(config), codec.clone())?;
        supervisor.spawn_infallible(
            "Postgres projector",
            projectors.postgres.run(stopped(rx.clone())),
        );
        tracing::info!("projector running");
        if let Some(scylla) = projectors.scylla {
            supervisor.spawn_infallible("Scylla projector", scylla.run(stopped(rx.clone())));
            tracing::info!(keyspace = %config.scylla.keyspace, "scylla projector running");
        }
    }

    if let (true, Some(media)) = (roles.painter, &media) {
        let worker = gallery_gpu_workers::Worker::build(
            &config.painter,
            config.painter_settings(),
            PainterDeps {
                codec: codec.clone(),
                store: media.object_store(),
                content_types: matches!(media.location(), StoreLocation::S3 { .. }),
            },
        )?;
        supervisor.spawn_infallible("painter", worker.run(stopped(rx.clone())));
        tracing::info!(worker = %config.painter.worker_id, "painter running");
    }

    Ok(Running {
        commands_addr: running_commands,
        query_addr: running_query,
        metrics_addr,
        query_statements,
        shutdown,
        roles: supervisor,
    })
}

/// Replays the log into a new generation of the read model while the live one serves, then
/// switches to it (the `gallery projections rebuild` command).
pub async fn rebuild_read_model(
    config: &Config,
    options: &gallery_projections::RebuildOptions,
) -> Result<gallery_projections::RebuildReport, StartError> {
    crate::topics::ensure_topics(config)
        .await
        .map_err(kafka_error(config))?;
    let codec = EventCodec::new(&config.registry())?;
    Ok(
        gallery_projections::rebuild(projectors_settings(config).postgres(), codec, options)
            .await?,
    )
}

/// Drops the generations of the read model that are no longer live (the `gallery projections
/// gc` command).
pub async fn collect_read_model_garbage(
    config: &Config,
) -> Result<gallery_projections::GarbageReport, StartError> {
    Ok(
        gallery_projections::collect_garbage(config.postgres.url.expose(), &config.topics())
            .await?,
    )
}

/// The sections the projectors read; the Scylla read model's only with `read.store = "scylla"`.
fn projectors_settings(config: &Config) -> ProjectorsSettings<'_> {
    ProjectorsSettings {
        kafka: &config.kafka,
        postgres_url: config.postgres.url.expose(),
        projections: &config.projections,
        scylla: (config.read.store == ReadStore::Scylla).then_some(&config.scylla),
    }
}

/// Prints a token for `user` (the `gallery token` command).
pub fn print_token(
    config: &Config,
    user: &str,
    role: gallery_schemas::Role,
    ttl: Duration,
) -> anyhow::Result<()> {
    let user = gallery_schemas::UserId::parse(user)?;
    let keys = TokenKeys::from_secret(config.auth.jwt_secret.expose().as_bytes())?;
    let who = gallery_commands::Principal::new(user, role);
    println!("{}", keys.issue(&who, ttl)?);
    Ok(())
}

/// Sets a user's role directly in the accounts store (the `gallery users set-role` command,
/// which makes the first admin). Brings the `commands` schema up to date first.
pub async fn set_user_role(
    config: &Config,
    user: &str,
    role: gallery_schemas::Role,
) -> anyhow::Result<gallery_commands::accounts::Account> {
    let user = gallery_schemas::UserId::parse(user)?;
    let (mut client, connection) =
        tokio_postgres::connect(config.postgres.url.expose(), NoTls).await?;
    let conn = tokio::spawn(connection);
    gallery_commands::db::migrate(&mut client).await?;
    drop(client);
    let _ = conn.await;
    let account = gallery_commands::accounts::assign_role(&pg_pool(config)?, &user, role).await?;
    Ok(account)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
