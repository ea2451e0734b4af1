//! The whole-system chaos soak (`scripts/soak` runs it for as long as asked; CI runs it for a
//! few minutes): Gallery's roles as processes of their own on a three-node Kafka cluster, the
//! Postgres read model and the Scylla one (Cassandra locally), while
//!
//! - clients (many users over many artworks) like, unlike, favorite, unfavorite, comment,
//!   delete their comments, view and ask the painter to repaint a photo (the real style
//!   network) through the HTTP API, round-robin over two command services, every command
//!   with an `Idempotency-Key` that each retry reuses, and record every `2xx` in a ledger;
//! - a driver SIGKILLs, at random moments and in a random order that reaches every one of them
//!   each round, a command service, a projector process (each runs the Postgres and the Scylla
//!   projector; two of them share each group), the painter and a query API (one over
//!   Postgres, one over Scylla), restarting each at once, and kills a broker and restarts it;
//! - samplers read every artwork's counts through both GraphQL APIs and the Postgres table
//!   throughout the run.
//!
//! At the end it prints its figures and every check's count, and fails on any non-zero:
//! acknowledged commands missing from the log (read with `read_committed`) or there more than
//! once; differences between the log's facts and Postgres, GraphQL over Postgres and GraphQL
//! over Cassandra, for every count and list; negative counts seen by the samplers; generation
//! requests without exactly one terminal event; images stored twice or by nobody.
//!
//! `GALLERY_SOAK_SECONDS` sets how long the clients run (default 150), and
//! `GALLERY_SOAK_KILL_EVERY_MS` the mean time between kills (default 4000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::facts::Lcg;
use common::facts::{Fact, Kind, Produced, Truth};
use common::log::Logged;
use common::private_stack::PrivateCluster;
use common::{TestEnv, gallery_command};
use gallery_schemas::Event;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::process::Child;
use tokio::time::Instant;

/// Concurrent clients; each sends one command at a time, as a user of [`USERS`].
const CLIENTS: usize = 12;
const USERS: u64 = 24;
const ARTWORKS: u64 = 24;
/// Bounds of a client's loop, beside the soak's length.
const MAX_COMMANDS_PER_CLIENT: usize = 1_000_000;
/// How long a command is retried (with its key) before the client gives up on it.
const PATIENCE: Duration = Duration::from_secs(120);
/// Photos the painter is asked to repaint, and one request at most every this long.
const PHOTOS: u32 = 3;
const PAINT_EVERY: Duration = Duration::from_secs(3);
/// How long the end waits for the painter, the projectors and the query APIs to catch up.
const SETTLE: Duration = Duration::from_secs(240);

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: a whole number"))
        })
        .unwrap_or(default)
}

fn artwork(n: u64) -> String {
    format!("soak-art-{n}")
}

fn user(n: u64) -> String {
    format!("soak-user-{n}")
}

// ---------------------------------------------------------------------------------------
// The roles, as processes the driver kills and restarts.

/// One role's process: how to start it, and its restarts.
struct Role {
    name: &'static str,
    args: &'static [&'static str],
    vars: Vec<(&'static str, String)>,
    child: Option<Child>,
    kills: usize,
}

impl Role {
    fn new(name: &'static str, args: &'static [&'static str]) -> Self {
        Self {
            name,
            args,
            vars: Vec::new(),
            child: None,
            kills: 0,
        }
    }

    fn var(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.vars.push((key, value.into()));
        self
    }

    /// Starts the process, its log (`GALLERY_LOG`, warnings by default) and its errors
    /// appended to `<logs>/<name>.log`.
    fn spawn(&mut self, env: &TestEnv, logs: &std::path::Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join(format!("{}.log", self.name)))
            .unwrap();
        let child = gallery_command(env, self.args)
            .envs(self.vars.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.name));
        self.child = Some(child);
    }

    /// SIGKILL, and waits until the process is gone.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
            self.kills += 1;
        }
    }

    /// Whether the process still runs (it must: a role exits only when it is killed).
    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

/// Every role of the deployment, two of each where two can share the work.
fn roles(env: &TestEnv, commands: [u16; 2], queries: [u16; 2]) -> Vec<Role> {
    let c = &env.config;
    let listen = |port: u16| format!("127.0.0.1:{port}");
    let common_vars = |role: Role| {
        role.var("GALLERY_KAFKA__REPLICATION_FACTOR", "3")
            .var("GALLERY_KAFKA__DELIVERY_TIMEOUT_MS", "5000")
            .var("GALLERY_MEDIA__STORE_URL", c.media.store_url.clone())
            .var("GALLERY_METRICS__ENABLED", "false")
    };
    let scylla = |role: Role| {
        role.var("GALLERY_READ_STORE", "scylla")
            .var("GALLERY_SCYLLA__KEYSPACE", c.scylla.keyspace.clone())
            .var("GALLERY_SCYLLA__NODES", c.scylla.nodes.clone())
    };
    let command = |name, port| {
        common_vars(Role::new(name, &["commands"]))
            .var("GALLERY_COMMANDS__LISTEN", listen(port))
            .var("GALLERY_LIMITS__INTERACTIONS_PER_MINUTE", "0")
            .var("GALLERY_LIMITS__GENERATION_PER_MINUTE", "0")
            .var("GALLERY_GENERATION__BACKLOG_THRESHOLD", "1000000")
            // Each takeover (what it found, what it sent, where) is worth keeping.
            .var("GALLERY_LOG", "warn,gallery_commands=info")
    };
    // Static membership: a restarted projector gets its partitions back at once.
    let projector = |name, id: &str| {
        scylla(common_vars(Role::new(name, &["projections"])))
            .var("GALLERY_PROJECTIONS__INSTANCE_ID", id)
    };
    vec![
        command("commands-a", commands[0]),
        command("commands-b", commands[1]),
        projector("projections-a", "soak-projector-a"),
        projector("projections-b", "soak-projector-b"),
        common_vars(Role::new("painter", &["painter"]))
            // A job or two a few seconds: its progress is worth keeping.
            .var("GALLERY_LOG", "info,rdkafka=warn,gallery_gpu_workers=debug")
            .var("GALLERY_PAINTER__DEVICE", "cpu")
            .var("GALLERY_PAINTER__THREADS", "1")
            .var("GALLERY_PAINTER__BACKLOG_THRESHOLD", "1000000")
            .var("GALLERY_PAINTER__MODELS_DIR", c.painter.models_dir.clone()),
        common_vars(Role::new("query-postgres", &["query-api"]))
            .var("GALLERY_QUERY_API__LISTEN", listen(queries[0])),
        scylla(common_vars(Role::new("query-scylla", &["query-api"])))
            .var("GALLERY_QUERY_API__LISTEN", listen(queries[1])),
    ]
}

/// What the driver did.
#[derive(Debug, Default)]
struct Kills {
    by_role: BTreeMap<&'static str, usize>,
    brokers: usize,
}

/// Kills a role or a broker at random moments (mean `every`) until `stop`, each role once
/// per round in a random order, restarting each role at once and each broker after a few
/// seconds (meanwhile roles go on being killed). Ends with every role and broker running.
async fn drive(
    env: Arc<TestEnv>,
    logs: PathBuf,
    mut roles: Vec<Role>,
    cluster: PrivateCluster,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> (Vec<Role>, PrivateCluster, Kills) {
    let started = Instant::now();
    let mut rng = Lcg::from_clock();
    let mut kills = Kills::default();
    let mut cluster = Some(cluster);
    let mut broker_back: Option<tokio::task::JoinHandle<PrivateCluster>> = None;
    let victims = roles.len() + 1;
    let mut round: Vec<usize> = Vec::new();
    let half = u64::try_from(every.as_millis()).unwrap() / 2;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(half + rng.next(2 * half + 1))).await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if round.is_empty() {
            round = (0..victims).collect();
            for i in (1..round.len()).rev() {
                round.swap(i, usize::try_from(rng.next(i as u64 + 1)).unwrap());
            }
        }
        let victim = round.pop().unwrap();
        if victim < roles.len() {
            let role = &mut roles[victim];
            assert!(role.running(), "{} exited on its own", role.name);
            role.kill().await;
            eprintln!("soak: {:>7.1?} killed {}", started.elapsed(), role.name);
            tokio::time::sleep(Duration::from_millis(200 + rng.next(800))).await;
            role.spawn(&env, &logs);
            continue;
        }
        // A broker, once the last one is back.
        if let Some(back) = broker_back.take() {
            cluster = Some(back.await.unwrap());
        }
        let node = PrivateCluster::NODES[usize::try_from(rng.next(3)).unwrap()];
        let down_for = Duration::from_millis(3_000 + rng.next(5_000));
        let c = cluster.take().unwrap();
        broker_back = Some(tokio::task::spawn_blocking(move || {
            c.kill(node);
            eprintln!("soak: {:>7.1?} killed broker {node}", started.elapsed());
            std::thread::sleep(down_for);
            c.up();
            eprintln!("soak: {:>7.1?} broker {node} is back", started.elapsed());
            c
        }));
        kills.brokers += 1;
    }
    if let Some(back) = broker_back.take() {
        cluster = Some(back.await.unwrap());
    }
    for role in &mut roles {
        assert!(role.running(), "{} exited on its own", role.name);
        kills.by_role.insert(role.name, role.kills);
    }
    (roles, cluster.unwrap(), kills)
}

// ---------------------------------------------------------------------------------------
// The clients and their ledger.

/// A command a client sends.
#[derive(Debug, Clone)]
enum Command {
    Like(String, bool),
    Favorite(String, bool),
    /// An artwork and the comment's text (the same on every attempt).
    Comment(String, String),
    DeleteComment(String, String),
    View(String),
    Paint(u32),
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Like(_, true) => "like",
            Command::Like(_, false) => "unlike",
            Command::Favorite(_, true) => "favorite",
            Command::Favorite(_, false) => "unfavorite",
            Command::Comment(..) => "comment",
            Command::DeleteComment(..) => "delete comment",
            Command::View(_) => "view",
            Command::Paint(_) => "paint",
        }
    }
}

/// A command answered `2xx`: the event its answer named, and where.
#[derive(Debug, Clone)]
struct Acked {
    command: &'static str,
    event_id: uuid::Uuid,
    topic: String,
    position: (i32, i64),
    /// What it created: a comment's id, a generation's request id.
    id: Option<String>,
}

/// What every client saw.
#[derive(Debug, Default)]
struct Ledger {
    acked: Vec<Acked>,
    /// Commands answered with a refusal (4xx other than "retry"), with status and code.
    refused: Vec<(String, u16, String)>,
    /// Commands still unanswered after [`PATIENCE`].
    gave_up: Vec<String>,
    /// Attempts sent again (same key) after a failure.
    retries: usize,
    /// Transport failures (connection refused or reset, timeouts), and retry-later answers.
    transport_errors: usize,
    retry_answers: BTreeMap<u16, usize>,
}

struct Client {
    http: reqwest::Client,
    bases: [String; 2],
    token: String,
    ledger: Arc<Mutex<Ledger>>,
    turn: usize,
}

enum Outcome {
    Acked(Acked),
    Refused,
    GaveUp,
}

impl Client {
    /// Sends `command` until it is answered `2xx` or refused, or [`PATIENCE`] runs out, the
    /// same `Idempotency-Key` on every attempt, round-robin over the command services.
    async fn execute(&mut self, command: &Command, photos: &[Vec<u8>]) -> Outcome {
        let key = uuid::Uuid::new_v4().to_string();
        let deadline = Instant::now() + PATIENCE;
        let mut attempt = 0_u32;
        loop {
            self.turn += 1;
            let base = &self.bases[self.turn % 2];
            let request = self
                .request(base, command, photos)
                .header("Idempotency-Key", &key);
            let mut wait = Duration::from_millis(100 * u64::from(attempt.min(10)) + 50);
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if let Some(after) = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                    {
                        wait = Duration::from_secs(after);
                    }
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    match status {
                        200..=299 => return Outcome::Acked(acked(command, &body)),
                        409 | 429 | 500..=599 => {
                            *self
                                .ledger
                                .lock()
                                .unwrap()
                                .retry_answers
                                .entry(status)
                                .or_default() += 1;
                        }
                        _ => {
                            let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
                            self.ledger.lock().unwrap().refused.push((
                                format!("{command:?}"),
                                status,
                                code,
                            ));
                            return Outcome::Refused;
                        }
                    }
                }
                Err(_) => self.ledger.lock().unwrap().transport_errors += 1,
            }
            if Instant::now() + wait > deadline {
                self.ledger
                    .lock()
                    .unwrap()
                    .gave_up
                    .push(format!("{command:?}"));
                return Outcome::GaveUp;
            }
            self.ledger.lock().unwrap().retries += 1;
            attempt += 1;
            tokio::time::sleep(wait).await;
        }
    }

    fn request(
        &self,
        base: &str,
        command: &Command,
        photos: &[Vec<u8>],
    ) -> reqwest::RequestBuilder {
        let http = &self.http;
        let on = |url: String, set: bool| if set { http.put(url) } else { http.delete(url) };
        let builder = match command {
            Command::Like(a, set) => on(format!("{base}/v1/artworks/{a}/like"), *set),
            Command::Favorite(a, set) => on(format!("{base}/v1/artworks/{a}/favorite"), *set),
            Command::Comment(a, text) => http
                .post(format!("{base}/v1/artworks/{a}/comments"))
                .json(&json!({ "body": text })),
            Command::DeleteComment(a, c) => {
                http.delete(format!("{base}/v1/artworks/{a}/comments/{c}"))
            }
            Command::View(a) => http.post(format!("{base}/v1/artworks/{a}/views")),
            Command::Paint(photo) => {
                let style = format!("style-{:02}", photo * 7 % 26);
                let fields = [("style", style.as_str()), ("width", "64"), ("height", "64")];
                let (content_type, body) =
                    common::multipart(&fields, ("photo", "me.png", &photos[*photo as usize]));
                http.post(format!("{base}/v1/generations/image-to-image"))
                    .header("content-type", content_type)
                    .body(body)
            }
        };
        builder.bearer_auth(&self.token)
    }
}

fn acked(command: &Command, body: &Value) -> Acked {
    let position = &body["position"];
    Acked {
        command: command.name(),
        event_id: body["eventId"].as_str().unwrap().parse().unwrap(),
        topic: position["topic"].as_str().unwrap().to_owned(),
        position: (
            i32::try_from(position["partition"].as_i64().unwrap()).unwrap(),
            position["offset"].as_i64().unwrap(),
        ),
        id: body["id"].as_str().map(str::to_owned),
    }
}

/// One client: commands of one user, chosen at random, until `stop` (then the one in
/// hand is finished); every `2xx` goes into the ledger.
async fn client(
    index: usize,
    mut client: Client,
    photos: Arc<Vec<Vec<u8>>>,
    paint: Arc<Mutex<Instant>>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Lcg::from_clock();
    rng.0 ^= index as u64;
    // The client's own comments still on show, by artwork.
    let mut comments: Vec<(String, String)> = Vec::new();
    for _ in 0..MAX_COMMANDS_PER_CLIENT {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let a = artwork(rng.next(ARTWORKS));
        let roll = rng.next(100);
        let command = match roll {
            0..=29 => Command::Like(a, true),
            30..=44 => Command::Like(a, false),
            45..=59 => Command::Favorite(a, true),
            60..=67 => Command::Favorite(a, false),
            68..=79 => Command::Comment(a, format!("seen in the soak, {}", rng.next(1 << 40))),
            80..=84 if !comments.is_empty() => {
                let (a, c) =
                    comments.swap_remove(usize::try_from(rng.next(comments.len() as u64)).unwrap());
                Command::DeleteComment(a, c)
            }
            _ => {
                let mut next_paint = paint.lock().unwrap();
                if Instant::now() >= *next_paint {
                    *next_paint = Instant::now() + PAINT_EVERY;
                    Command::Paint(u32::try_from(rng.next(u64::from(PHOTOS))).unwrap())
                } else {
                    Command::View(a)
                }
            }
        };
        if let Outcome::Acked(acked) = client.execute(&command, &photos).await {
            if let (Command::Comment(a, _), Some(id)) = (&command, &acked.id) {
                comments.push((a.clone(), id.clone()));
            }
            client.ledger.lock().unwrap().acked.push(acked);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Samplers: counts seen while the run goes on.

const STATS: &str = "likes favorites comments views";

/// One query for every artwork's counts.
fn every_count_query() -> String {
    let fields: String = (0..ARTWORKS)
        .map(|n| {
            format!(
                "a{n}: artwork(id: \"{}\") {{ stats {{ {STATS} }} }} ",
                artwork(n)
            )
        })
        .collect();
    format!("{{ {fields}}}")
}

/// What a sampler saw.
#[derive(Debug, Default, Clone, Copy)]
struct Samples {
    answered: usize,
    failed: usize,
    negative: usize,
    smallest: i64,
}

/// Reads every artwork's counts through the GraphQL API at `url` every 100 ms until `stop`.
fn sample_graphql(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Samples> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let query = every_count_query();
        let mut s = Samples {
            smallest: i64::MAX,
            ..Samples::default()
        };
        while !stop.load(Ordering::Relaxed) {
            let answer = http.post(&url).json(&json!({"query": query})).send().await;
            let body: Option<Value> = match answer {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
            match body.as_ref().and_then(|b| b["data"].as_object()) {
                Some(data) if body.as_ref().is_some_and(|b| b["errors"].is_null()) => {
                    s.answered += 1;
                    for artwork in data.values() {
                        for n in artwork["stats"].as_object().unwrap().values() {
                            let n = n.as_i64().unwrap();
                            s.smallest = s.smallest.min(n);
                            if n < 0 {
                                s.negative += 1;
                            }
                        }
                    }
                }
                _ => s.failed += 1,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s
    })
}

// ---------------------------------------------------------------------------------------
// The ground truth, from the log.

/// What the log says, each event applied once (at its first copy).
#[derive(Debug, Default)]
struct Ground {
    truth: Truth,
    /// Comments on show, by artwork.
    comments: BTreeMap<String, BTreeSet<String>>,
    views: BTreeMap<String, i64>,
}

fn ground(interactions: &[Logged]) -> Ground {
    let mut seen = BTreeSet::new();
    let mut produced = Vec::new();
    let mut g = Ground::default();
    for m in interactions {
        let first = seen.insert(m.event.event_id());
        let fact =
            |kind, artwork: &gallery_schemas::ArtworkId, user: &gallery_schemas::UserId, on| {
                Produced {
                    fact: Fact {
                        kind,
                        artwork: artwork.to_string(),
                        user: user.to_string(),
                        on,
                    },
                    event_id: m.event.event_id(),
                    partition: m.partition,
                    offset: m.offset,
                }
            };
        match &m.event {
            Event::LikeSet(e) => {
                produced.push(fact(Kind::Like, &e.artwork_id, &e.user_id, e.liked))
            }
            Event::FavoriteSet(e) => {
                produced.push(fact(Kind::Favorite, &e.artwork_id, &e.user_id, e.favorited));
            }
            Event::CommentPosted(e) if first => {
                g.comments
                    .entry(e.artwork_id.to_string())
                    .or_default()
                    .insert(e.comment_id.to_string());
            }
            Event::CommentDeleted(e) if first => {
                g.comments
                    .entry(e.artwork_id.to_string())
                    .or_default()
                    .remove(&e.comment_id.to_string());
            }
            Event::ArtworkViewed(e) if first => {
                *g.views.entry(e.artwork_id.to_string()).or_default() += 1;
            }
            _ => {}
        }
    }
    g.truth = Truth::of(&produced);
    g
}

// ---------------------------------------------------------------------------------------
// Reading the read models back.

async fn graphql(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> Value {
    let mut request = http
        .post(url)
        .json(&json!({"query": query, "variables": variables}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let body: Value = request.send().await.unwrap().json().await.unwrap();
    assert!(body["errors"].is_null(), "{query}: {body}");
    body
}

/// Where the GraphQL API at `url` differs from `g`: every artwork's counts and comments, and
/// every user's likes and favorites.
async fn graphql_differences(env: &TestEnv, url: &str, g: &Ground) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut differences = Vec::new();
    let counts = graphql(&http, url, None, &every_count_query(), json!({})).await;
    for n in 0..ARTWORKS {
        let a = artwork(n);
        let stats = &counts["data"][format!("a{n}")]["stats"];
        let expected = json!({
            "likes": g.truth.count(Kind::Like, &a),
            "favorites": g.truth.count(Kind::Favorite, &a),
            "comments": g.comments.get(&a).map_or(0, BTreeSet::len),
            "views": g.views.get(&a).copied().unwrap_or(0),
        });
        if *stats != expected {
            differences.push(format!("counts of {a}: {stats}, expected {expected}"));
        }
        let mut shown = BTreeSet::new();
        let mut after = Value::Null;
        loop {
            let page = graphql(
                &http,
                url,
                None,
                "query($id: ID!, $after: String) { artwork(id: $id) { comments(first: 100, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } } }",
                json!({"id": a, "after": after}),
            )
            .await;
            let comments = &page["data"]["artwork"]["comments"];
            for node in comments["nodes"].as_array().unwrap() {
                shown.insert(node["id"].as_str().unwrap().to_owned());
            }
            if comments["pageInfo"]["hasNextPage"] != true {
                break;
            }
            after = comments["pageInfo"]["endCursor"].clone();
        }
        let on_show = g.comments.get(&a).cloned().unwrap_or_default();
        if shown != on_show {
            differences.push(format!(
                "comments of {a}: {} shown, {} on show, {} differ",
                shown.len(),
                on_show.len(),
                shown.symmetric_difference(&on_show).count()
            ));
        }
    }
    let (likes, favorites) = (g.truth.lists(Kind::Like), g.truth.lists(Kind::Favorite));
    for n in 0..USERS {
        let u = user(n);
        let token = env.token(&u);
        let lists = graphql(
            &http,
            url,
            Some(&token),
            "{ viewer { likes(first: 100) { nodes { artwork { id } } } favorites(first: 100) { nodes { artwork { id } } } } }",
            json!({}),
        )
        .await;
        for (list, truth) in [("likes", &likes), ("favorites", &favorites)] {
            let shown: BTreeSet<String> = lists["data"]["viewer"][list]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["artwork"]["id"].as_str().unwrap().to_owned())
                .collect();
            let expected = truth.get(&u).cloned().unwrap_or_default();
            if shown != expected {
                differences.push(format!("{list} of {u}: {shown:?}, expected {expected:?}"));
            }
        }
    }
    differences
}

/// Waits until the query API at `url` shows `g`'s counts (its caches follow the projector's
/// announcements); the differences left after `SETTLE` are returned.
async fn settled_differences(env: &TestEnv, url: &str, g: &Ground) -> Vec<String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let differences = graphql_differences(env, url, g).await;
        if differences.is_empty() || Instant::now() > deadline {
            return differences;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Generation requests of the log without exactly one terminal event; waits up to `SETTLE`
/// for the painter to end every request.
async fn generations_settled(env: &TestEnv) -> (Vec<Logged>, BTreeMap<uuid::Uuid, usize>) {
    let topic = env.config.topics().generation();
    let deadline = Instant::now() + SETTLE;
    loop {
        let log = common::log::read(env, &topic).await;
        let mut terminals: BTreeMap<uuid::Uuid, usize> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for m in &log {
            if !seen.insert(m.event.event_id()) {
                continue;
            }
            match &m.event {
                Event::GenerationRequested(r) => {
                    terminals.entry(r.request_id).or_default();
                }
                Event::GenerationCompleted(e) => *terminals.entry(e.request_id).or_default() += 1,
                Event::GenerationFailed(e) => *terminals.entry(e.request_id).or_default() += 1,
                Event::GenerationCancelConfirmed(e) => {
                    *terminals.entry(e.request_id).or_default() += 1;
                }
                _ => {}
            }
        }
        if terminals.values().all(|n| *n >= 1) || Instant::now() > deadline {
            return (log, terminals);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

// ---------------------------------------------------------------------------------------

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_commands_survive_a_whole_system_chaos_soak() {
    let length = Duration::from_secs(setting("GALLERY_SOAK_SECONDS", 150));
    let every = Duration::from_millis(setting("GALLERY_SOAK_KILL_EVERY_MS", 4_000));
    let load_before = load_average();
    let cluster = tokio::task::spawn_blocking(PrivateCluster::start)
        .await
        .unwrap();
    let mut env = common::scylla::with_scylla(TestEnv::new().await);
    common::generation::require_style_weights(&env.config.painter.models_dir);
    env.config.kafka.brokers = cluster.brokers();
    env.config.kafka.replication_factor = 3;
    env.config.kafka.partitions = 4;
    gallery::topics::ensure_topics(&env.config).await.unwrap();
    let env = Arc::new(env);
    let logs = std::env::temp_dir().join(format!("gallery-soak-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs).unwrap();
    eprintln!(
        "soak: {length:?}, a kill every {every:?} on average; logs in {}",
        logs.display()
    );

    let commands = [common::free_port(), common::free_port()];
    let queries = [common::free_port(), common::free_port()];
    let mut roles = roles(&env, commands, queries);
    for role in &mut roles {
        role.spawn(&env, &logs);
    }
    let bases = commands.map(|p| format!("http://127.0.0.1:{p}"));
    let graphql_urls = queries.map(|p| format!("http://127.0.0.1:{p}/graphql"));
    // Both command services and both query APIs answer before the clock starts.
    let http = reqwest::Client::new();
    let ready_by = Instant::now() + Duration::from_secs(120);
    for url in bases.iter().map(|b| format!("{b}/healthz")).chain(
        graphql_urls
            .iter()
            .map(|g| g.replace("/graphql", "/healthz")),
    ) {
        while !http.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
            assert!(
                Instant::now() < ready_by,
                "{url} did not answer within 120 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let started = Instant::now();
    let stop_clients = Arc::new(AtomicBool::new(false));
    let stop_samplers = Arc::new(AtomicBool::new(false));
    let stop_driver = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let photos: Arc<Vec<Vec<u8>>> =
        Arc::new((0..PHOTOS).map(|i| common::png(64 + 8 * i, 64)).collect());
    let paint = Arc::new(Mutex::new(Instant::now()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let c = Client {
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap(),
                bases: bases.clone(),
                token: env.token(&user(i as u64 % USERS)),
                ledger: ledger.clone(),
                turn: i,
            };
            tokio::spawn(client(
                i,
                c,
                photos.clone(),
                paint.clone(),
                stop_clients.clone(),
            ))
        })
        .collect();
    let samplers: Vec<_> = graphql_urls
        .iter()
        .map(|url| sample_graphql(url.clone(), stop_samplers.clone()))
        .collect();
    let table_sampler = common::sample_smallest_count(env.clone(), stop_samplers.clone());
    let driver = tokio::spawn(drive(
        env.clone(),
        logs.clone(),
        roles,
        cluster,
        every,
        stop_driver.clone(),
    ));

    tokio::time::sleep(length).await;
    stop_driver.store(true, Ordering::Relaxed);
    let (mut roles, cluster, kills) = driver.await.unwrap();
    stop_clients.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let ran = started.elapsed();
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    eprintln!("soak: clients done after {ran:?}; settling");

    // The log, once the painter has ended every request.
    let (generation_log, terminals) = generations_settled(&env).await;
    let interactions_log = common::log::read(&env, &env.config.topics().interactions()).await;
    let mut copies: HashMap<uuid::Uuid, Vec<(String, i32, i64)>> = HashMap::new();
    for (topic, log) in [
        (env.config.topics().interactions(), &interactions_log),
        (env.config.topics().generation(), &generation_log),
    ] {
        for m in log {
            copies.entry(m.event.event_id()).or_default().push((
                topic.clone(),
                m.partition,
                m.offset,
            ));
        }
    }
    let mut missing = Vec::new();
    let mut more_than_once = Vec::new();
    let mut elsewhere = Vec::new();
    for a in &ledger.acked {
        let found = copies.get(&a.event_id).map_or(&[][..], Vec::as_slice);
        let answered = (a.topic.clone(), a.position.0, a.position.1);
        match found.len() {
            0 => missing.push(a),
            1 if found[0] != answered => elsewhere.push(a),
            1 => {}
            _ => more_than_once.push((a, found.to_vec())),
        }
    }

    // The read models, once every projector has passed the last event of the log (the
    // painter's transactions and the takeovers' marks end in markers, which no projector
    // stores a position past).
    let mut last_interaction = HashMap::new();
    for (topic, log) in [
        (env.config.topics().interactions(), &interactions_log),
        (env.config.topics().generation(), &generation_log),
    ] {
        let mut last: HashMap<i32, i64> = HashMap::new();
        for m in log {
            last.insert(m.partition, m.offset);
        }
        env.wait_all_projected(&topic, &last).await;
        if topic == env.config.topics().interactions() {
            last_interaction = last;
        }
    }
    let session = common::scylla::session(&env).await;
    common::scylla::wait_projected_to(&env, &session, &last_interaction).await;
    let g = ground(&interactions_log);
    let postgres = common::facts::table_differences(&env.db().await, "public", &g.truth).await;
    let over_postgres = settled_differences(&env, &graphql_urls[0], &g).await;
    let over_cassandra = settled_differences(&env, &graphql_urls[1], &g).await;
    stop_samplers.store(true, Ordering::Relaxed);
    let mut sampled = Vec::new();
    for s in samplers {
        sampled.push(s.await.unwrap());
    }
    let (table_samples, table_smallest) = table_sampler.await.unwrap();

    // Generations: exactly one terminal each; images stored once, each a photo or a result.
    let acked_requests: BTreeSet<uuid::Uuid> = ledger
        .acked
        .iter()
        .filter(|a| a.command == "paint")
        .map(|a| a.id.as_ref().unwrap().parse().unwrap())
        .collect();
    let not_one_terminal: Vec<_> = terminals.iter().filter(|(_, n)| **n != 1).collect();
    let unknown_requests: Vec<_> = acked_requests
        .iter()
        .filter(|r| !terminals.contains_key(r))
        .collect();
    let mut completed = 0;
    let mut referenced: BTreeSet<String> = BTreeSet::new();
    for m in &generation_log {
        if let Event::GenerationCompleted(done) = &m.event {
            completed += 1;
            for image in [&done.image, &done.webp, &done.thumbnail] {
                referenced.insert(image.key.clone());
            }
        }
    }
    let dir = PathBuf::from(&env.config.media.store_url);
    let photo_digests: BTreeSet<String> = photos
        .iter()
        .map(|p| hex::encode(Sha256::digest(p)))
        .collect();
    let mut by_digest: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in common::generation::objects(&dir) {
        if let Some(stem) = key
            .strip_prefix("images/")
            .and_then(|k| k.rsplit('/').next())
        {
            let digest = stem.split('.').next().unwrap().to_owned();
            by_digest.entry(digest).or_default().push(key.clone());
        }
    }
    let stored_twice: Vec<_> = by_digest
        .iter()
        .filter(|(_, keys)| keys.len() > 1)
        .collect();
    let orphans: Vec<_> = by_digest
        .iter()
        .filter(|(digest, keys)| {
            !photo_digests.contains(*digest) && !keys.iter().any(|k| referenced.contains(k))
        })
        .collect();

    for role in &mut roles {
        role.kill().await;
    }
    drop(cluster);

    // The report.
    let mut by_command: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &ledger.acked {
        *by_command.entry(a.command).or_default() += 1;
    }
    let kills_list: Vec<String> = kills
        .by_role
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .chain([format!("broker {}", kills.brokers)])
        .collect();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("\n## Chaos soak\n");
    println!(
        "{ran:.0?} of traffic, {cores} cores, load average {load_before} before, {} after",
        load_average()
    );
    println!("\n| figure | value |\n|---|---|");
    println!(
        "| commands acknowledged | {} ({:.1}/s) |",
        ledger.acked.len(),
        ledger.acked.len() as f64 / ran.as_secs_f64()
    );
    println!("| by command | {by_command:?} |");
    println!(
        "| attempts sent again with their key | {} |",
        ledger.retries
    );
    println!(
        "| transport failures / retry answers | {} / {:?} |",
        ledger.transport_errors, ledger.retry_answers
    );
    println!("| kills (SIGKILL) | {} |", kills_list.join(", "));
    println!(
        "| events in the log (interactions, generation) | {}, {} |",
        interactions_log.len(),
        generation_log.len()
    );
    println!(
        "| generation requests, completed | {}, {completed} |",
        terminals.len()
    );
    println!(
        "| GraphQL samples (Postgres, Cassandra): answered / failed | {} / {}, {} / {} |",
        sampled[0].answered, sampled[0].failed, sampled[1].answered, sampled[1].failed
    );
    println!("| table samples, smallest count | {table_samples}, {table_smallest} |");
    let checks: Vec<(&str, usize)> = vec![
        ("acknowledged commands missing from the log", missing.len()),
        (
            "acknowledged commands in the log more than once",
            more_than_once.len(),
        ),
        (
            "acknowledged commands elsewhere than answered",
            elsewhere.len(),
        ),
        ("commands refused", ledger.refused.len()),
        (
            "commands given up after 120 s of retries",
            ledger.gave_up.len(),
        ),
        ("differences: log vs Postgres tables", postgres.len()),
        (
            "differences: log vs GraphQL over Postgres",
            over_postgres.len(),
        ),
        (
            "differences: log vs GraphQL over Cassandra",
            over_cassandra.len(),
        ),
        (
            "negative counts sampled",
            sampled.iter().map(|s| s.negative).sum::<usize>() + usize::from(table_smallest < 0),
        ),
        (
            "generation requests without exactly one terminal",
            not_one_terminal.len() + unknown_requests.len(),
        ),
        ("images stored twice", stored_twice.len()),
        ("images stored that nothing refers to", orphans.len()),
    ];
    println!("\n| check | count |\n|---|---|");
    for (check, n) in &checks {
        println!("| {check} | {n} |");
    }
    let details: Vec<String> = missing
        .iter()
        .map(|a| format!("missing: {a:?}"))
        .chain(
            more_than_once
                .iter()
                .map(|(a, found)| format!("more than once: {a:?} at {found:?}")),
        )
        .chain(
            elsewhere
                .iter()
                .map(|a| format!("elsewhere: {a:?} at {:?}", copies.get(&a.event_id))),
        )
        .chain(ledger.refused.iter().map(|r| format!("refused: {r:?}")))
        .chain(ledger.gave_up.iter().map(|r| format!("given up: {r}")))
        .chain(postgres.iter().map(|d| format!("Postgres: {d}")))
        .chain(
            over_postgres
                .iter()
                .map(|d| format!("GraphQL over Postgres: {d}")),
        )
        .chain(
            over_cassandra
                .iter()
                .map(|d| format!("GraphQL over Cassandra: {d}")),
        )
        .chain(
            not_one_terminal
                .iter()
                .map(|(r, n)| format!("request {r}: {n} terminal events")),
        )
        .chain(
            unknown_requests
                .iter()
                .map(|r| format!("request {r} acknowledged, not in the log")),
        )
        .chain(
            stored_twice
                .iter()
                .map(|(d, k)| format!("stored twice: {d} as {k:?}")),
        )
        .chain(orphans.iter().map(|(d, k)| format!("orphan: {d} as {k:?}")))
        .take(40)
        .collect();
    let failed: Vec<&(&str, usize)> = checks.iter().filter(|(_, n)| *n > 0).collect();
    assert!(
        failed.is_empty(),
        "{failed:?}\n{}\n(the roles' logs are in {})",
        details.join("\n"),
        logs.display()
    );
    assert!(
        kills.by_role.values().all(|n| *n >= 1) && kills.brokers >= 1,
        "every role and a broker were killed at least once: {kills:?}"
    );
    let _ = std::fs::remove_dir_all(&logs);
    let _ = std::fs::remove_dir_all(&dir);
}
