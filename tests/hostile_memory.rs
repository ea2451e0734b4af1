//! Under hostile load the real processes stay alive and their memory bounded: the command
//! service and the GraphQL API, each `gallery` in a process of its own (so that its resident
//! memory is its own, not the test's), take alias and fragment bombs, huge documents, small
//! and huge batches, oversized bodies, hundreds of slow connections and a subscription flood
//! over many connections, and a flood of WebSocket connections that never initialise, all
//! refused with their codes. Their VmRSS, sampled throughout, stays
//! under a bound derived from the limits below and their idle baseline; afterwards both serve
//! a query and a like, and nothing of the hostile load was written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::TestEnv;
use common::ws::{connect_url, error_code, receive, receive_within, subscribe};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: u64 = 1024 * 1024;
/// The body limit of both servers (`http.max_body_bytes`, the default).
const BODY_LIMIT: u64 = 12 * MIB;
/// Hostile clients at once per phase: requests of up to a body each in flight together.
const CLIENTS: usize = 4;
/// Requests each client sends per kind of hostile document.
const ROUNDS: usize = 3;
/// Slow connections (a header byte every quarter second) per server.
const SLOW_CONNECTIONS: usize = 150;
/// The servers' header and body timeouts here (short, so that slow clients are cut soon).
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// WebSocket connections of the subscription flood, and `subscribe` messages on each: the
/// connection's limit (`query_api.max_subscriptions_per_connection`) and then some.
const FLOOD_CONNECTIONS: usize = 40;
const SUBSCRIPTIONS_PER_CONNECTION: usize = 100;
const FLOOD_SUBSCRIBES: usize = SUBSCRIPTIONS_PER_CONNECTION + 20;
/// WebSocket connections the GraphQL API holds at once (`query_api.max_websocket_connections`)
/// and how many more the idle flood opens; how long one may wait before `connection_init`
/// (`query_api.ws_init_timeout_ms`), long enough for the whole flood to be opened before the
/// first is closed.
const MAX_CONNECTIONS: usize = 200;
const IDLE_EXTRA: usize = 100;
const INIT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest the whole hostile load may take.
const LOAD_DEADLINE: Duration = Duration::from_secs(240);

// What each phase may hold at once above the idle baseline. A server's memory is bounded by
// its idle baseline plus twice the most any phase so far may hold: freed memory is reused by
// the next phase, so phases do not add up, and twice leaves room for the allocator's pages
// kept after a free, its fragmentation, and the runtime's spare threads.

/// A batch is refused from its first byte: [`CLIENTS`] bodies in flight, each collected whole
/// (the chunks as they arrive, then one contiguous copy, read through buffers grown by
/// doubling: up to three times [`BODY_LIMIT`]). Were a batch parsed, each would take hundreds
/// of megabytes (measured: about 500 MiB above the baseline for the four).
const BATCHES_HOLD: u64 = CLIENTS as u64 * 3 * BODY_LIMIT;
/// A document is refused after its JSON is decoded: the body collected, and the document
/// decoded from it (a string grown by doubling), up to four times [`BODY_LIMIT`] each.
const DOCUMENTS_HOLD: u64 = CLIENTS as u64 * 4 * BODY_LIMIT;
/// A body over the limit is cut at the limit: at most that much read, grown by doubling.
const OVERSIZED_HOLD: u64 = CLIENTS as u64 * 2 * BODY_LIMIT;
/// A slow connection holds hyper's read buffer (up to 64 KiB before its headers are
/// complete).
const SLOW_HOLD: u64 = SLOW_CONNECTIONS as u64 * 64 * 1024;
/// Subscriptions running at once: at most 16 KiB each (measured at 14.6 KB with a connection
/// of its own each, in docs/PERFORMANCE.md), here with 100 on a connection.
const FLOOD_HOLD: u64 = (FLOOD_CONNECTIONS * SUBSCRIPTIONS_PER_CONNECTION) as u64 * 16 * 1024;

/// Idle WebSocket connections: what each holds (its buffers and its task) is bounded like an
/// idle subscription, and a refused one holds nothing past its answer.
const IDLE_HOLD: u64 = MAX_CONNECTIONS as u64 * 16 * 1024;

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

/// Samples the resident memory of `pids` every 20 ms on a thread of its own until `stop`;
/// returns the highest seen of each.
fn sample_peaks(pids: Vec<u32>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<u64>> {
    std::thread::spawn(move || {
        let mut peaks = vec![0; pids.len()];
        while !stop.load(Ordering::Relaxed) {
            for (peak, pid) in peaks.iter_mut().zip(&pids) {
                *peak = (*peak).max(rss(*pid));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        peaks
    })
}

/// The resident memory of the servers, phase by phase, against their bound.
struct Meter {
    names: Vec<&'static str>,
    pids: Vec<u32>,
    /// Each server's highest while idle.
    idle: Vec<u64>,
    /// The most any phase so far may hold.
    holds: u64,
}

impl Meter {
    /// Measures the servers idle for a second: their baseline.
    async fn idle(servers: &[&Server]) -> Self {
        let pids: Vec<u32> = servers.iter().map(|s| s.pid()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = sample_peaks(pids.clone(), stop.clone());
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, Ordering::Relaxed);
        let idle = sampler.join().unwrap();
        Self {
            names: servers.iter().map(|s| s.name).collect(),
            pids,
            idle,
            holds: 0,
        }
    }

    /// Runs `phase`, which may hold `holds` bytes at once, sampling throughout; each server's
    /// highest must stay under its idle baseline plus twice the most held by any phase so far.
    async fn phase<T>(
        &mut self,
        name: &str,
        holds: u64,
        phase: impl std::future::Future<Output = T>,
    ) -> T {
        self.holds = self.holds.max(holds);
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = sample_peaks(self.pids.clone(), stop.clone());
        let started = Instant::now();
        let out = phase.await;
        stop.store(true, Ordering::Relaxed);
        let peaks = sampler.join().unwrap();
        for ((server, idle), peak) in self.names.iter().zip(&self.idle).zip(peaks) {
            let bound = idle + 2 * self.holds;
            eprintln!(
                "{name} ({:?}): {server} {} MiB at most, {} MiB idle, bound {} MiB",
                started.elapsed(),
                peak / MIB,
                idle / MIB,
                bound / MIB
            );
            assert!(
                peak <= bound,
                "{name}: {server} took {} MiB, {} MiB idle, bound {} MiB",
                peak / MIB,
                idle / MIB,
                bound / MIB
            );
        }
        out
    }
}

/// A server under test: its process and where it listens.
struct Server {
    name: &'static str,
    child: tokio::process::Child,
    base: String,
    /// Where it serves `GET /metrics`.
    metrics: String,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id().expect("the process runs")
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// `gallery <role>` on a port of its own with the test's limits.
async fn spawn(env: &TestEnv, name: &'static str, listen_var: &str) -> Server {
    let port = common::free_port();
    let metrics = format!("127.0.0.1:{}", common::free_port());
    let child = common::gallery_command(env, &[name])
        .env(listen_var, format!("127.0.0.1:{port}"))
        .env("GALLERY_METRICS__LISTEN", &metrics)
        .env("GALLERY_MEDIA__STORE_URL", &env.config.media.store_url)
        .env("GALLERY_LIMITS__INTERACTIONS_PER_MINUTE", "0")
        .env("GALLERY_LIMITS__AUTH_PER_MINUTE", "0")
        .env("GALLERY_HTTP__MAX_BODY_BYTES", BODY_LIMIT.to_string())
        .env(
            "GALLERY_HTTP__HEADER_READ_TIMEOUT_MS",
            READ_TIMEOUT.as_millis().to_string(),
        )
        .env(
            "GALLERY_HTTP__BODY_READ_TIMEOUT_MS",
            READ_TIMEOUT.as_millis().to_string(),
        )
        .env(
            "GALLERY_QUERY_API__MAX_SUBSCRIPTIONS_PER_CONNECTION",
            SUBSCRIPTIONS_PER_CONNECTION.to_string(),
        )
        .env(
            "GALLERY_QUERY_API__MAX_WEBSOCKET_CONNECTIONS",
            MAX_CONNECTIONS.to_string(),
        )
        .env(
            "GALLERY_QUERY_API__WS_INIT_TIMEOUT_MS",
            INIT_TIMEOUT.as_millis().to_string(),
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    common::wait_until_up(&reqwest::Client::new(), &format!("{base}/healthz")).await;
    let metrics = format!("http://{metrics}");
    Server {
        name,
        child,
        base,
        metrics,
    }
}

/// Posts `body` (JSON) to `url`; the status and the JSON answer.
async fn post(http: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, Value) {
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn graphql_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

/// A hostile body, the status and the code it must be answered with.
type Hostile = (&'static str, Vec<u8>, u16, &'static str);

/// Hostile GraphQL documents.
fn hostile_documents() -> Vec<Hostile> {
    let document = |query: String| serde_json::to_vec(&json!({ "query": query })).unwrap();
    // 90,000 aliases: 1.5 MB; a fragment bomb of 2^24 fields expanded; 8 MB of one document.
    let aliases: String = (0..90_000).map(|i| format!("a{i}:__typename ")).collect();
    let long = format!("{{ __typename {} }}", "# a comment\n".repeat(700_000));
    vec![
        (
            "aliases",
            document(format!("{{ {aliases}}}")),
            200,
            "QUERY_TOO_LARGE",
        ),
        (
            "fragment bomb",
            document(common::fragment_bomb(24)),
            200,
            "QUERY_TOO_COMPLEX",
        ),
        ("long document", document(long), 200, "QUERY_TOO_LARGE"),
    ]
}

/// Batches of likes: two, and a body's worth (11 MiB).
fn hostile_batches() -> Vec<Hostile> {
    let like = json!({"query": "mutation { likeArtwork(artworkId: \"a1\") { eventId } }"});
    let one = like.to_string();
    let mut batch = b"[".to_vec();
    while batch.len() + one.len() + 2 < (BODY_LIMIT - MIB) as usize {
        batch.extend_from_slice(one.as_bytes());
        batch.push(b',');
    }
    batch.extend_from_slice(one.as_bytes());
    batch.push(b']');
    vec![
        (
            "small batch",
            serde_json::to_vec(&json!([like, like])).unwrap(),
            400,
            "BATCH_NOT_SUPPORTED",
        ),
        ("huge batch", batch, 400, "BATCH_NOT_SUPPORTED"),
    ]
}

/// [`CLIENTS`] clients sending each of `bodies` [`ROUNDS`] times; every answer not as
/// expected, described.
async fn graphql_bombs(graphql: &str, bodies: Vec<Hostile>, deadline: Instant) -> Vec<String> {
    let bodies = Arc::new(bodies);
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let (bodies, graphql) = (bodies.clone(), graphql.to_owned());
        clients.spawn(async move {
            let http = reqwest::Client::new();
            let mut wrong = Vec::new();
            for round in 0..ROUNDS * bodies.len() {
                if Instant::now() > deadline {
                    break;
                }
                let (what, body, status, code) = &bodies[(round + client) % bodies.len()];
                let (got, answer) = post(&http, &graphql, body.clone()).await;
                if (got, graphql_code(&answer)) != (*status, *code) {
                    wrong.push(format!("{what}: {got} {answer}"));
                }
            }
            wrong
        });
    }
    gather(clients).await
}

/// Every client's list of wrong answers, in one.
async fn gather(mut clients: tokio::task::JoinSet<Vec<String>>) -> Vec<String> {
    let mut wrong = Vec::new();
    while let Some(done) = clients.join_next().await {
        wrong.extend(done.unwrap());
    }
    wrong
}

/// A POST of `path` at `addr` over a socket of its own, announcing `length` bytes and sending
/// none, or (`None`) sending 16 MiB in chunks until the server stops reading; the answer's
/// status, if one came within 30 s.
async fn oversized(addr: &str, path: &str, token: &str, length: Option<u64>) -> Option<u16> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut reader, mut writer) = stream.into_split();
    let framing = length.map_or("Transfer-Encoding: chunked".to_owned(), |n| {
        format!("Content-Length: {n}")
    });
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nConnection: close\r\n{framing}\r\n\r\n"
    );
    let chunked = length.is_none();
    let sender = tokio::spawn(async move {
        // The server may close before it read everything: a failed write is no failure.
        writer.write_all(head.as_bytes()).await.ok()?;
        if chunked {
            let chunk = [
                format!("{:x}\r\n", 64 * 1024).into_bytes(),
                vec![b' '; 64 * 1024],
                b"\r\n".to_vec(),
            ]
            .concat();
            for _ in 0..256 {
                writer.write_all(&chunk).await.ok()?;
            }
            writer.write_all(b"0\r\n\r\n").await.ok()?;
        }
        Some(writer)
    });
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut raw)).await;
    sender.abort();
    // A reset after the answer (the rest of the body unread) still leaves the answer read.
    let _reset_or_end = read.ok()?;
    String::from_utf8_lossy(&raw)
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

/// Bodies over the limit at `base` `path`: announced (never sent) and chunked (sent until
/// cut), from [`CLIENTS`] clients at once; every answer that is not `413`, described.
async fn oversized_bodies(base: &str, path: &'static str, token: &str) -> Vec<String> {
    let addr = base.strip_prefix("http://").unwrap().to_owned();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let (addr, token) = (addr.clone(), token.to_owned());
        clients.spawn(async move {
            let mut wrong = Vec::new();
            for round in 0..ROUNDS {
                let length = ((round + client) % 2 == 0).then_some(60 * 1024 * MIB);
                let status = oversized(&addr, path, &token, length).await;
                if status != Some(413) {
                    wrong.push(format!("{path} ({length:?} announced): {status:?}"));
                }
            }
            wrong
        });
    }
    gather(clients).await
}

/// [`SLOW_CONNECTIONS`] connections to `base`, each sending its headers a byte every quarter
/// second; how many the server closed within three times its header timeout (all, it
/// should: at its timeout).
async fn slow_connections(base: &str) -> usize {
    let addr = base.strip_prefix("http://").unwrap().to_owned();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..SLOW_CONNECTIONS {
        let addr = addr.clone();
        clients.spawn(async move {
            let Ok(mut stream) = TcpStream::connect(&addr).await else {
                return false;
            };
            let started = Instant::now();
            let head = b"POST /graphql HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            let mut byte = [0_u8; 1];
            for b in head.iter().cycle() {
                if started.elapsed() > READ_TIMEOUT * 3 {
                    return false;
                }
                if stream.write_all(&[*b]).await.is_err() {
                    return true;
                }
                // Closed by the server: the read ends (or fails) at once.
                let read =
                    tokio::time::timeout(Duration::from_millis(250), stream.read(&mut byte)).await;
                if let Ok(Ok(0) | Err(_)) = read {
                    return true;
                }
            }
            false
        });
    }
    let mut closed = 0;
    while let Some(done) = clients.join_next().await {
        closed += usize::from(done.unwrap());
    }
    closed
}

/// [`FLOOD_CONNECTIONS`] WebSocket connections, each sending [`FLOOD_SUBSCRIBES`]
/// `subscribe`s: returns the sockets (their subscriptions running) and how many were
/// answered with data and with `TOO_MANY_SUBSCRIPTIONS`.
async fn subscription_flood(graphql: &str) -> (Vec<common::ws::Socket>, usize, usize) {
    let query = "subscription($id: ID!) { artworkStats(id: $id) { likes } }";
    let mut sockets = Vec::new();
    let (mut data, mut refused) = (0, 0);
    for c in 0..FLOOD_CONNECTIONS {
        let mut socket = connect_url(graphql, None).await;
        for s in 0..FLOOD_SUBSCRIBES {
            let id = format!("{c}-{s}");
            subscribe(
                &mut socket,
                &id,
                query,
                json!({"id": format!("flood-{}", s % 10)}),
            )
            .await;
        }
        // Each answers once: data, or a refusal then its `complete`.
        let mut answered = 0;
        while answered < FLOOD_SUBSCRIBES {
            let message = receive(&mut socket).await;
            match message["type"].as_str() {
                Some("next") if error_code(&message) == "TOO_MANY_SUBSCRIPTIONS" => {
                    refused += 1;
                    answered += 1;
                }
                Some("next") if message["payload"]["data"]["artworkStats"].is_object() => {
                    data += 1;
                    answered += 1;
                }
                Some("complete") => {}
                _ => panic!("unexpected answer to a flood subscription: {message}"),
            }
        }
        sockets.push(socket);
    }
    (sockets, data, refused)
}

/// Waits (at most 10 s) until the GraphQL API at `metrics` holds no WebSocket connection.
async fn no_connections_left(metrics: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = common::scrape(metrics).await;
        let open = common::sample(&text, "gallery_graphql_websocket_connections");
        if open == Some(0.0) {
            return;
        }
        assert!(Instant::now() < deadline, "{open:?} connections still open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`MAX_CONNECTIONS`] and [`IDLE_EXTRA`] more WebSocket connections that never send
/// `connection_init`, all opened before the first may time out: returns how many were
/// refused with 503 and `TOO_MANY_CONNECTIONS`, and the close code of each one opened (4408,
/// after [`INIT_TIMEOUT`]).
async fn idle_connections(graphql: &str) -> (usize, Vec<Result<Option<u16>, String>>) {
    let started = Instant::now();
    let mut sockets = Vec::new();
    let mut refused = 0;
    for _ in 0..MAX_CONNECTIONS + IDLE_EXTRA {
        match common::ws::try_open_url(graphql).await {
            Ok(socket) => sockets.push(socket),
            Err(error) => {
                let refusal = common::ws::refusal(&error);
                assert_eq!(
                    refusal.as_ref().map(|r| (r.0, r.2.as_str())),
                    Some((503, "TOO_MANY_CONNECTIONS")),
                    "{error:?}"
                );
                refused += 1;
            }
        }
    }
    assert!(
        started.elapsed() < INIT_TIMEOUT,
        "the idle flood took {:?} to open",
        started.elapsed()
    );
    let mut waiting = tokio::task::JoinSet::new();
    for mut socket in sockets {
        waiting.spawn(async move {
            common::ws::close_code(&mut socket, INIT_TIMEOUT + Duration::from_secs(10)).await
        });
    }
    let mut closes = Vec::new();
    while let Some(code) = waiting.join_next().await {
        closes.push(code.unwrap());
    }
    (refused, closes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_load_leaves_both_servers_alive_with_bounded_memory_and_writes_nothing() {
    let env = TestEnv::new().await;
    let mut commands = spawn(&env, "commands", "GALLERY_COMMANDS__LISTEN").await;
    let mut query = spawn(&env, "query-api", "GALLERY_QUERY_API__LISTEN").await;
    let http = reqwest::Client::new();
    let graphql = format!("{}/graphql", query.base);
    let ada = env.token("ada");

    // Warm up what the normal traffic touches (a query, a like, a subscription), then the
    // idle baseline: the highest of a second's samples.
    let (status, body) = post(
        &http,
        &graphql,
        serde_json::to_vec(&json!({"query": "{ artwork(id: \"a1\") { likeCount } }"})).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let commands_base = commands.base.clone();
    let like = |artwork: &str| {
        http.put(format!("{commands_base}/v1/artworks/{artwork}/like"))
            .bearer_auth(&ada)
            .send()
    };
    assert_eq!(like("warm").await.unwrap().status(), 202);
    drop(warm_subscription(&graphql).await);
    let mut meter = Meter::idle(&[&commands, &query]).await;
    let before = common::offsets(&env);
    let started = Instant::now();
    let deadline = started + LOAD_DEADLINE;

    // Batches first: what they may hold is the smallest bound.
    for (phase, holds, bodies) in [
        ("batches", BATCHES_HOLD, hostile_batches()),
        ("documents", DOCUMENTS_HOLD, hostile_documents()),
    ] {
        let wrong = meter
            .phase(phase, holds, graphql_bombs(&graphql, bodies, deadline))
            .await;
        assert!(
            wrong.is_empty(),
            "{phase} not refused as expected: {wrong:?}"
        );
    }
    for (base, path) in [
        (&commands.base, "/v1/artworks/a1/comments"),
        (&query.base, "/graphql"),
    ] {
        let wrong = meter
            .phase(
                "oversized bodies",
                OVERSIZED_HOLD,
                oversized_bodies(base, path, &ada),
            )
            .await;
        assert!(wrong.is_empty(), "oversized bodies not refused: {wrong:?}");
    }
    let slow = async {
        tokio::join!(
            slow_connections(&commands.base),
            slow_connections(&query.base)
        )
    };
    let cut = meter.phase("slow connections", SLOW_HOLD, slow).await;
    assert_eq!(
        cut,
        (SLOW_CONNECTIONS, SLOW_CONNECTIONS),
        "slow connections cut by each server"
    );
    let flood = async {
        let flood = subscription_flood(&graphql).await;
        // Held a moment, running, then gone with their connections.
        tokio::time::sleep(Duration::from_secs(1)).await;
        flood
    };
    let (sockets, data, refused) = meter.phase("subscription flood", FLOOD_HOLD, flood).await;
    drop(sockets);
    assert_eq!(data, FLOOD_CONNECTIONS * SUBSCRIPTIONS_PER_CONNECTION);
    assert_eq!(
        refused,
        FLOOD_CONNECTIONS * (FLOOD_SUBSCRIBES - SUBSCRIPTIONS_PER_CONNECTION)
    );
    // Idle connections: the process holds at most its limit, the rest are refused, and each
    // held one is closed at the init timeout, its place freed.
    no_connections_left(&query.metrics).await;
    let (refused, closes) = meter
        .phase("idle connections", IDLE_HOLD, idle_connections(&graphql))
        .await;
    assert_eq!(refused, IDLE_EXTRA, "refused with 503 beyond the limit");
    assert_eq!(closes.len(), MAX_CONNECTIONS);
    let wrong: Vec<_> = closes.iter().filter(|c| **c != Ok(Some(4408))).collect();
    assert!(wrong.is_empty(), "not closed with 4408: {wrong:?}");
    no_connections_left(&query.metrics).await;
    let text = common::scrape(&query.metrics).await;
    for (series, expected) in [
        (
            "gallery_graphql_errors_total{code=\"TOO_MANY_CONNECTIONS\"}",
            IDLE_EXTRA,
        ),
        (
            "gallery_graphql_websocket_init_timeouts_total",
            MAX_CONNECTIONS,
        ),
    ] {
        assert_eq!(
            common::sample(&text, series),
            Some(expected as f64),
            "{series}"
        );
    }
    assert!(
        Instant::now() < deadline,
        "the hostile load took {:?}",
        started.elapsed()
    );

    // Both alive, nothing of the load written, and normal traffic served.
    assert!(
        commands.alive() && query.alive(),
        "a server died under hostile load"
    );
    assert_eq!(
        common::offsets(&env),
        before,
        "the hostile load wrote nothing"
    );
    let (status, body) = post(
        &http,
        &graphql,
        serde_json::to_vec(&json!({"query": "{ artwork(id: \"a1\") { id likeCount } }"})).unwrap(),
    )
    .await;
    assert_eq!(
        (status, &body["data"]["artwork"]["id"]),
        (200, &json!("a1")),
        "{body}"
    );
    assert_eq!(like("after").await.unwrap().status(), 202);
    let mut socket = connect_url(&graphql, None).await;
    subscribe(
        &mut socket,
        "1",
        "subscription { artworkStats(id: \"a1\") { likes } }",
        json!({}),
    )
    .await;
    let first = receive_within(&mut socket, Duration::from_secs(10)).await;
    assert!(first.is_some_and(|m| m["payload"]["data"]["artworkStats"].is_object()));
}

/// One subscription, answered, on a connection of its own (to warm up the WebSocket path).
async fn warm_subscription(graphql: &str) -> common::ws::Socket {
    let mut socket = connect_url(graphql, None).await;
    subscribe(
        &mut socket,
        "warm",
        "subscription { artworkStats(id: \"a1\") { likes } }",
        json!({}),
    )
    .await;
    let first = receive(&mut socket).await;
    assert!(
        first["payload"]["data"]["artworkStats"].is_object(),
        "{first}"
    );
    socket
}
