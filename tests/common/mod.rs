//! Shared helpers of the end-to-end tests. They run against the real local stack
//! (`scripts/stack up`), each test in its own topics (a random prefix) and its own database.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod facts;
pub mod generation;
pub mod kafka;
pub mod log;
pub mod private_stack;
pub mod scylla;
pub mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use gallery::config::Secret;
use gallery::{Config, Roles, Running};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};
use tokio_postgres::NoTls;

/// The repository's directory: the one `cargo test` runs the test for (its environment), so a
/// test binary built in another checkout still reads this one's files.
pub fn repo_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        std::path::PathBuf::from,
    )
}

/// The stack's defaults, overridable with the same variables `gallery` reads.
pub fn base_config() -> Config {
    Config::load(None, &Default::default()).expect("configuration")
}

/// A fresh deployment: its own topic prefix and database.
pub struct TestEnv {
    pub config: Config,
    pub db_name: String,
}

impl TestEnv {
    pub async fn new() -> Self {
        // Logs of the roles under test, shown for failing tests; GALLERY_LOG filters them.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("GALLERY_LOG")
                    .unwrap_or_else(|_| "info,rdkafka=warn,tokio_postgres=warn".into()),
            )
            .try_init();
        let mut config = base_config();
        let id = uuid::Uuid::new_v4().simple().to_string();
        config.kafka.topic_prefix = format!("test-{id}.");
        config.kafka.partitions = 3;
        let db_name = format!("gallery_test_{id}");
        let admin = connect(config.postgres.url.expose()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {db_name}"))
            .await
            .expect("create test database");
        let mut pg: tokio_postgres::Config = config.postgres.url.expose().parse().unwrap();
        pg.dbname(&db_name);
        config.postgres.url = Secret::new(pg_url(&pg));
        config.commands.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.query_api.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.metrics.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.media.store_url = std::env::temp_dir()
            .join(format!("gallery-test-{id}"))
            .display()
            .to_string();
        Self { config, db_name }
    }

    /// The same deployment (topics) with another, empty database: a rebuild of the read model.
    pub async fn with_fresh_database(&self) -> TestEnv {
        let mut config = self.config.clone();
        let db_name = format!("gallery_test_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(base_config().postgres.url.expose()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {db_name}"))
            .await
            .expect("create test database");
        let mut pg: tokio_postgres::Config = config.postgres.url.expose().parse().unwrap();
        pg.dbname(&db_name);
        config.postgres.url = Secret::new(pg_url(&pg));
        TestEnv { config, db_name }
    }

    /// Waits until the read model has applied everything on the event topics now.
    pub async fn wait_everything_projected(&self) {
        let topics = self.config.topics();
        for topic in [
            topics.users(),
            topics.catalog(),
            topics.interactions(),
            topics.generation(),
        ] {
            for (p, high) in self.end_offsets(&topic) {
                if high > 0 {
                    self.wait_projected(&topic, p, high - 1).await;
                }
            }
        }
    }

    pub async fn start(&self, roles: Roles) -> App {
        let running = gallery::start(&self.config, roles)
            .await
            .expect("start roles");
        App {
            running: Some(running),
            http: reqwest::Client::new(),
            config: self.config.clone(),
        }
    }

    pub async fn db(&self) -> tokio_postgres::Client {
        connect(self.config.postgres.url.expose()).await
    }

    pub fn token(&self, user: &str) -> String {
        self.token_as(user, gallery_schemas::Role::Visitor)
    }

    pub fn token_as(&self, user: &str, role: gallery_schemas::Role) -> String {
        let keys = gallery_commands::TokenKeys::from_secret(
            self.config.auth.jwt_secret.expose().as_bytes(),
        )
        .unwrap();
        let who =
            gallery_commands::Principal::new(gallery_schemas::UserId::parse(user).unwrap(), role);
        keys.issue(&who, Duration::from_secs(3600)).unwrap()
    }

    /// Waits until the read-model projection has applied `offset` of `partition`.
    pub async fn wait_projected(&self, topic: &str, partition: i32, offset: i64) {
        let db = self.db().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            let row = db
                .query_opt(
                    "SELECT next_offset FROM projection_offsets
                     WHERE projection = 'read-model' AND topic = $1 AND partition = $2",
                    &[&topic, &partition],
                )
                .await
                .ok()
                .flatten();
            if row.is_some_and(|r| r.get::<_, i64>(0) > offset) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "projection did not reach {topic}/{partition}@{offset} within 90 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many messages the read-model projection has applied, over all partitions.
    pub async fn projected_count(&self) -> i64 {
        let db = self.db().await;
        db.query_one(
            "SELECT COALESCE(sum(next_offset), 0)::bigint FROM projection_offsets
             WHERE projection = 'read-model'",
            &[],
        )
        .await
        .map_or(0, |r| r.get(0))
    }

    /// Waits until every position in `highest` (partition -> offset) is projected.
    pub async fn wait_all_projected(&self, topic: &str, highest: &HashMap<i32, i64>) {
        for (p, o) in highest {
            self.wait_projected(topic, *p, *o).await;
        }
    }

    /// End offsets of every partition of `topic` as readers of committed events see them:
    /// last stable offsets (librdkafka reads `read_committed` by default), which are the high
    /// watermarks unless a transaction is open.
    pub fn end_offsets(&self, topic: &str) -> HashMap<i32, i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.config.kafka.brokers)
            .create()
            .unwrap();
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let mut out = HashMap::new();
        for t in metadata.topics() {
            for p in t.partitions() {
                let (_, high) = consumer
                    .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                    .unwrap();
                out.insert(p.id(), high);
            }
        }
        out
    }
}

/// The RFC 3339 time `days` days from now.
pub fn future(days: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Creates an exhibition titled `title` as `curator`, open from tomorrow until `closes_in` days
/// from now; returns its id (the command answered 202).
pub async fn create_exhibition(app: &App, curator: &str, title: &str, closes_in: i64) -> String {
    let (status, body) = send(
        app,
        "POST",
        "/v1/exhibitions",
        Some(curator),
        None,
        Some(json!({"title": title, "opensAt": future(1), "closesAt": future(closes_in)})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// Sends a command (with a bearer `token` and an `Idempotency-Key` when given); returns the
/// status and the JSON body.
pub async fn send(
    app: &App,
    method: &str,
    path: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app.http.request(method, app.commands_url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// End offsets of every topic of the deployment, to prove a refusal wrote nothing.
pub fn offsets(env: &TestEnv) -> HashMap<String, HashMap<i32, i64>> {
    env.config
        .topics()
        .all()
        .into_iter()
        .map(|t| (t.clone(), env.end_offsets(&t)))
        .collect()
}

/// A consumer of `partitions` of `topic` from their beginning, as downstream readers see them
/// (`read_committed`); assigned by hand and never committing, its group only names it.
pub fn reader_from_start(
    brokers: &str,
    topic: &str,
    partitions: impl IntoIterator<Item = i32>,
) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in partitions {
        assignment
            .add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    consumer
}

/// The `gallery` binary with `args`, configured for `env`'s topics and database.
pub fn gallery_command(env: &TestEnv, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_gallery"));
    command
        .args(args)
        .env("GALLERY_POSTGRES__URL", env.config.postgres.url.expose())
        .env("GALLERY_KAFKA__BROKERS", &env.config.kafka.brokers)
        .env(
            "GALLERY_KAFKA__TOPIC_PREFIX",
            &env.config.kafka.topic_prefix,
        )
        .env(
            "GALLERY_KAFKA__PARTITIONS",
            env.config.kafka.partitions.to_string(),
        )
        .env("GALLERY_REGISTRY__URL", &env.config.registry.url)
        .env(
            "GALLERY_METRICS__LISTEN",
            env.config.metrics.listen.to_string(),
        )
        .env("GALLERY_LOG", "warn")
        .kill_on_drop(true);
    command
}

/// Samples the smallest like or favorite count of the read model every 15 ms until `stop`;
/// returns how many samples saw counts, and the smallest count seen.
pub fn sample_smallest_count(
    env: std::sync::Arc<TestEnv>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(u32, i64)> {
    tokio::spawn(async move {
        let db = env.db().await;
        let (mut samples, mut smallest) = (0_u32, i64::MAX);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            // An error only before the first projector created the tables.
            if let Ok(row) = db
                .query_one(
                    "SELECT min(least(like_count, favorite_count)) FROM artwork_stats",
                    &[],
                )
                .await
                && let Some(m) = row.get::<_, Option<i64>>(0)
            {
                smallest = smallest.min(m);
                samples += 1;
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        (samples, smallest)
    })
}

/// An error with its causes, as `gallery` prints them.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// `gallery projections` for `env`, with extra configuration `vars`, its output discarded.
/// A port free on 127.0.0.1 right now (for a process that must be told its port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `url` answers `200` (a server the test started as a process of its own),
/// for at most two minutes.
pub async fn wait_until_up(http: &reqwest::Client, url: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The text `GET <base>/metrics` answers, and the value of one sample in it.
pub async fn scrape(base: &str) -> String {
    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The value of the sample `series` (a metric name with its labels, exactly as rendered) in
/// Prometheus text.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

pub fn spawn_projector(env: &TestEnv, vars: &[(&str, &str)]) -> tokio::process::Child {
    gallery_command(env, &["projections"])
        .envs(vars.iter().copied())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn gallery projections")
}

pub fn pg_url(pg: &tokio_postgres::Config) -> String {
    let host = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let user = pg.get_user().unwrap_or("gallery");
    let password = pg
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let db = pg.get_dbname().unwrap_or("gallery");
    format!("postgres://{user}:{password}@{host}:{port}/{db}")
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to postgres (is `scripts/stack up` running?)");
    tokio::spawn(connection);
    client
}

/// Roles running in this process, plus an HTTP client for them.
pub struct App {
    running: Option<Running>,
    pub http: reqwest::Client,
    pub config: Config,
}

/// A 202 from the command service.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub event_id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl App {
    pub fn commands_url(&self, path: &str) -> String {
        let addr = self.running.as_ref().unwrap().commands_addr.unwrap();
        format!("http://{addr}{path}")
    }

    /// Read-model statements the GraphQL API has run so far.
    pub fn query_statements(&self) -> usize {
        self.running
            .as_ref()
            .and_then(|r| r.query_statements.as_ref())
            .map_or(0, |c| c.get())
    }

    pub fn graphql_url(&self) -> String {
        let addr = self.running.as_ref().unwrap().query_addr.unwrap();
        format!("http://{addr}/graphql")
    }

    /// PUT (like) or DELETE (unlike) with `token`; returns the status and the JSON body.
    pub async fn set_like(&self, token: Option<&str>, artwork: &str, liked: bool) -> (u16, Value) {
        let url = self.commands_url(&format!("/v1/artworks/{artwork}/like"));
        let mut req = if liked {
            self.http.put(url)
        } else {
            self.http.delete(url)
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("command request");
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Like or unlike, asserting a 202.
    pub async fn accept_like(&self, token: &str, artwork: &str, liked: bool) -> Accepted {
        let (status, body) = self.set_like(Some(token), artwork, liked).await;
        assert_eq!(status, 202, "unexpected response {body}");
        Accepted {
            event_id: body["eventId"].as_str().unwrap().to_owned(),
            topic: body["position"]["topic"].as_str().unwrap().to_owned(),
            partition: i32::try_from(body["position"]["partition"].as_i64().unwrap()).unwrap(),
            offset: body["position"]["offset"].as_i64().unwrap(),
        }
    }

    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        self.graphql_after(token, None, query, variables).await
    }

    /// A GraphQL request that reads no older than `seen` (its consistency token).
    pub async fn graphql_after(
        &self,
        token: Option<&str>,
        seen: Option<&Accepted>,
        query: &str,
        variables: Value,
    ) -> Value {
        let mut req = self
            .http
            .post(self.graphql_url())
            .json(&json!({"query": query, "variables": variables}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(a) = seen {
            let position = format!("{}:{}:{}", a.topic, a.partition, a.offset);
            req = req.header("X-Consistency-Token", position);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// (likeCount, viewerHasLiked) of `artwork` as `token`'s user sees it.
    pub async fn artwork_likes(&self, token: Option<&str>, artwork: &str) -> (i64, bool) {
        self.artwork_likes_after(token, None, artwork).await
    }

    /// (likeCount, viewerHasLiked) of `artwork`, no older than `seen`.
    pub async fn artwork_likes_after(
        &self,
        token: Option<&str>,
        seen: Option<&Accepted>,
        artwork: &str,
    ) -> (i64, bool) {
        let body = self
            .graphql_after(
                token,
                seen,
                "query($id: ID!) { artwork(id: $id) { id likeCount viewerHasLiked } }",
                json!({"id": artwork}),
            )
            .await;
        assert!(body.get("errors").is_none(), "graphql errors: {body}");
        let a = &body["data"]["artwork"];
        (
            a["likeCount"].as_i64().unwrap(),
            a["viewerHasLiked"].as_bool().unwrap(),
        )
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

/// A PNG of the given size (a gradient).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A multipart form: text fields, then one file.
pub async fn post_form(
    app: &App,
    path: &str,
    token: &str,
    fields: &[(&str, &str)],
    file: (&str, &str, &[u8]),
) -> (u16, Value) {
    let (content_type, body) = multipart(fields, file);
    let resp = app
        .http
        .post(app.commands_url(path))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The content type and body of a multipart form: text fields, then one file
/// (name, file name, bytes).
pub fn multipart(fields: &[(&str, &str)], file: (&str, &str, &[u8])) -> (String, Vec<u8>) {
    let boundary = "gallery-upload-boundary";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    let (name, filename, bytes) = file;
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A "fragment bomb": a GraphQL query whose fragments each spread the next twice, selecting
/// 2^`levels` fields when expanded, in a few hundred bytes.
pub fn fragment_bomb(levels: usize) -> String {
    let mut bomb = String::from("query { ...F0 }");
    for i in 0..levels {
        bomb.push_str(&format!(
            " fragment F{i} on QueryRoot {{ ...F{n} ...F{n} }}",
            n = i + 1
        ));
    }
    bomb.push_str(&format!(
        " fragment F{levels} on QueryRoot {{ __typename }}"
    ));
    bomb
}
