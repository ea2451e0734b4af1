//! The HTTP edge of both servers, with a raw TCP client against the real roles: one body
//! limit and one `413` everywhere (announced or sent, chunked or not), an announced body
//! over the limit refused from its headers without waiting for it, and slow clients cut off
//! by the header and body read timeouts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{App, TestEnv};
use gallery::Roles;
use gallery::edge::HttpSettings;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// The body limit of these tests (small, so that bodies over it are quick to send).
const LIMIT: u64 = 64 * 1024;
const HEADER_TIMEOUT: Duration = Duration::from_millis(1_500);
const BODY_TIMEOUT: Duration = Duration::from_millis(1_500);
/// Longest any answer may take here: far beyond the timeouts, far below "never".
const PATIENCE: Duration = Duration::from_secs(12);

/// The command service and the GraphQL API with the test's limits.
async fn start() -> (TestEnv, App) {
    let mut env = TestEnv::new().await;
    env.config.media.limits.max_bytes = LIMIT / 2;
    env.config.http = HttpSettings {
        max_body_bytes: LIMIT,
        header_read_timeout_ms: u64::try_from(HEADER_TIMEOUT.as_millis()).unwrap(),
        body_read_timeout_ms: u64::try_from(BODY_TIMEOUT.as_millis()).unwrap(),
    };
    env.config.limits.auth_per_minute = 0;
    let roles = Roles {
        commands: true,
        query_api: true,
        ..Roles::NONE
    };
    let app = env.start(roles).await;
    (env, app)
}

fn addr_of(url: &str) -> SocketAddr {
    let rest = url.strip_prefix("http://").unwrap();
    rest[..rest.find('/').unwrap()].parse().unwrap()
}

/// A route under test: where, and how its server shapes an error.
#[derive(Debug, Clone)]
struct Route {
    addr: SocketAddr,
    path: &'static str,
    token: Option<String>,
    graphql: bool,
}

impl Route {
    fn all(env: &TestEnv, app: &App) -> Vec<Route> {
        let commands = addr_of(&app.commands_url("/"));
        let query = addr_of(&app.graphql_url());
        vec![
            Route {
                addr: commands,
                path: "/v1/artworks/sunflowers/comments",
                token: Some(env.token("ada")),
                graphql: false,
            },
            Route {
                addr: commands,
                path: "/v1/auth/register",
                token: None,
                graphql: false,
            },
            Route {
                addr: query,
                path: "/graphql",
                token: None,
                graphql: true,
            },
        ]
    }

    /// The request head, announcing `length` bytes (or chunks, for `None`).
    fn head(&self, length: Option<u64>) -> String {
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nConnection: close\r\n",
            self.path, self.addr
        );
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        match length {
            Some(n) => head.push_str(&format!("Content-Length: {n}\r\n\r\n")),
            None => head.push_str("Transfer-Encoding: chunked\r\n\r\n"),
        }
        head
    }

    /// A valid JSON body of this route, padded with spaces to exactly `size` bytes.
    fn body_of_size(&self, size: u64) -> Vec<u8> {
        let json = match (self.graphql, self.path) {
            (true, _) => json!({"query": "{ __typename }"}),
            (false, "/v1/auth/register") => {
                json!({"username": "edge-user", "password": "correct horse battery", "displayName": "Edge"})
            }
            _ => json!({"body": "a comment"}),
        };
        let mut body = serde_json::to_vec(&json).unwrap();
        body.resize(usize::try_from(size).unwrap(), b' ');
        body
    }

    /// The error code of an answer in this route's server's shape.
    fn code<'a>(&self, body: &'a Value) -> &'a str {
        let code = if self.graphql {
            &body["errors"][0]["extensions"]["code"]
        } else {
            &body["error"]["code"]
        };
        code.as_str().unwrap_or("")
    }
}

/// An answer: status and JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    closes: bool,
}

/// Reads one response (the request said `Connection: close`: up to the end of the stream),
/// or `None` when none arrives within [`PATIENCE`].
async fn read_answer(stream: &mut TcpStream) -> Option<Answer> {
    let mut raw = Vec::new();
    // A reset after the answer (the rest of the body unread) still leaves the answer read.
    let _reset_or_end = timeout(PATIENCE, stream.read_to_end(&mut raw)).await.ok()?;
    parse_answer(&raw)
}

/// The status, `Connection: close` and JSON body of a response read in full.
fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let closes = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("connection: close"));
    Some(Answer {
        status,
        body: serde_json::from_str(body).unwrap_or(Value::Null),
        closes,
    })
}

/// Sends `head` and `body` (in the background, as a client that goes on sending would) and
/// reads the answer.
async fn exchange(route: &Route, head: String, body: Vec<u8>) -> Option<Answer> {
    let stream = TcpStream::connect(route.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        // The server may close before it read everything: a failed write is no failure.
        let _ = writer.write_all(head.as_bytes()).await;
        let _ = writer.write_all(&body).await;
        writer
    });
    let mut raw = Vec::new();
    let read = timeout(PATIENCE, reader.read_to_end(&mut raw)).await;
    sender.abort();
    // A reset after the answer (the rest of the body unread) still leaves the answer read.
    let _reset_or_end = read.ok()?;
    parse_answer(&raw)
}

/// `body` in the chunked encoding, in chunks of at most 16 KiB.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(16 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn assert_too_large(route: &Route, answer: Option<Answer>, what: &str) {
    let answer = answer.unwrap_or_else(|| panic!("{what} on {}: no answer", route.path));
    assert_eq!(answer.status, 413, "{what} on {}: {answer:?}", route.path);
    assert_eq!(
        route.code(&answer.body),
        "PAYLOAD_TOO_LARGE",
        "{what} on {}: {answer:?}",
        route.path
    );
    assert!(answer.closes, "{what} on {}: {answer:?}", route.path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_announced_body_over_the_limit_is_refused_from_its_headers() {
    let (env, app) = start().await;
    for route in Route::all(&env, &app) {
        for announced in [LIMIT + 1, 3_000_000, 60_000_000_000] {
            // Nothing of the body is sent: the answer can only come from the headers.
            let started = Instant::now();
            let mut stream = TcpStream::connect(route.addr).await.unwrap();
            stream
                .write_all(route.head(Some(announced)).as_bytes())
                .await
                .unwrap();
            let answer = read_answer(&mut stream).await;
            // 413, not the body deadline's 408: the answer came from the headers. And at once
            // (the bound is loose for a loaded machine; without the check there is no answer).
            assert_too_large(&route, answer, &format!("{announced} bytes announced"));
            assert!(
                started.elapsed() < PATIENCE / 2,
                "answered from the headers at once: {:?}",
                started.elapsed()
            );
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_body_limit_and_one_answer_on_every_route_chunked_or_not() {
    let (env, app) = start().await;
    for route in Route::all(&env, &app) {
        // Over the limit by one byte, announced, and chunked (the length unknown up front).
        let over = route.body_of_size(LIMIT + 1);
        let answer = exchange(&route, route.head(Some(LIMIT + 1)), over.clone()).await;
        assert_too_large(&route, answer, "one byte over, announced");
        let answer = exchange(&route, route.head(None), chunked(&over)).await;
        assert_too_large(&route, answer, "one byte over, chunked");
        // A chunked body far over the limit (50 MB were refused as bad JSON before).
        let huge = route.body_of_size(LIMIT * 8);
        let answer = exchange(&route, route.head(None), chunked(&huge)).await;
        assert_too_large(&route, answer, "eight times the limit, chunked");

        // Exactly at the limit, both ways: read whole, and answered by the route itself.
        let at = route.body_of_size(LIMIT);
        for (head, body) in [
            (route.head(Some(LIMIT)), at.clone()),
            (route.head(None), chunked(&at)),
        ] {
            let answer = exchange(&route, head, body)
                .await
                .unwrap_or_else(|| panic!("no answer at the limit on {}", route.path));
            assert_ne!(answer.status, 413, "{}: {answer:?}", route.path);
            assert_ne!(answer.status, 408, "{}: {answer:?}", route.path);
            if route.graphql {
                assert_eq!(answer.body["data"]["__typename"], "QueryRoot", "{answer:?}");
            } else {
                assert!(
                    [201, 202, 409].contains(&answer.status),
                    "{}: {answer:?}",
                    route.path
                );
            }
        }
    }
    app.stop().await;
}

/// Sends `first`, then one byte of `rest` every quarter second; returns when the server
/// answered or closed the connection, with what it answered and how long it took (or
/// `None` for the time when it did neither within [`PATIENCE`]).
async fn trickle(
    addr: SocketAddr,
    first: String,
    rest: Vec<u8>,
) -> (Option<Answer>, Option<Duration>) {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        if writer.write_all(first.as_bytes()).await.is_err() {
            return;
        }
        for byte in rest {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
        }
        // Then nothing more, with the connection left open.
        tokio::time::sleep(PATIENCE * 2).await;
    });
    let mut raw = Vec::new();
    let read = timeout(PATIENCE, reader.read_to_end(&mut raw)).await;
    sender.abort();
    let elapsed = read.is_ok().then(|| started.elapsed());
    (parse_answer(&raw), elapsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_clients_are_cut_off_by_the_header_and_body_timeouts() {
    let (env, app) = start().await;
    let routes = Route::all(&env, &app);
    let mut clients = tokio::task::JoinSet::new();
    // Sixteen at once, as a slow-client attack would: headers a byte at a time, a
    // connection that never sends anything, bodies a byte at a time, and a body announced
    // and never sent.
    for i in 0..16 {
        let route = routes[i % routes.len()].clone();
        clients.spawn(async move {
            let (kind, first, rest) = match i % 4 {
                0 => (
                    "headers",
                    format!("POST {} HTTP/1.1\r\n", route.path),
                    b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec(),
                ),
                1 => ("silence", String::new(), Vec::new()),
                2 => ("body", route.head(Some(100)), route.body_of_size(100)),
                _ => ("no body", route.head(Some(100)), Vec::new()),
            };
            let (answer, elapsed) = trickle(route.addr, first, rest).await;
            (route, kind, answer, elapsed)
        });
    }
    while let Some(done) = clients.join_next().await {
        let (route, kind, answer, elapsed) = done.unwrap();
        let elapsed = elapsed
            .unwrap_or_else(|| panic!("{kind} on {}: still open after {PATIENCE:?}", route.path));
        let deadline = if kind.contains("body") {
            BODY_TIMEOUT
        } else {
            HEADER_TIMEOUT
        };
        assert!(
            elapsed >= deadline - Duration::from_millis(100),
            "{kind} on {}: cut after {elapsed:?}, before its deadline",
            route.path
        );
        if kind.contains("body") {
            // A request was under way: it is answered, 408 in the server's shape.
            let answer =
                answer.unwrap_or_else(|| panic!("{kind} on {}: closed, no answer", route.path));
            assert_eq!(answer.status, 408, "{kind} on {}: {answer:?}", route.path);
            assert_eq!(route.code(&answer.body), "REQUEST_TIMEOUT", "{answer:?}");
            assert!(answer.closes, "{answer:?}");
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_defaults_a_50_mb_comment_is_413_not_bad_json() {
    // The defaults: 12 MiB for every body (JSON routes stopped at 2 MiB with 400 INVALID_JSON).
    let env = TestEnv::new().await;
    assert_eq!(env.config.http, HttpSettings::default());
    let app = env
        .start(Roles {
            commands: true,
            ..Roles::NONE
        })
        .await;
    let route = Route {
        addr: addr_of(&app.commands_url("/")),
        path: "/v1/artworks/sunflowers/comments",
        token: Some(env.token("ada")),
        graphql: false,
    };
    let fifty_mb = 50_000_000;
    let answer = exchange(&route, route.head(Some(fifty_mb)), Vec::new()).await;
    assert_too_large(&route, answer, "50 MB announced");
    let over = route.body_of_size(HttpSettings::default().max_body_bytes + 1);
    let answer = exchange(&route, route.head(None), chunked(&over)).await;
    assert_too_large(&route, answer, "one byte over 12 MiB, chunked");
    // A comment of three megabytes is within the body limit: read, and refused by the
    // comment's own rule (at most 2000 characters).
    let three_mb = serde_json::to_vec(&json!({"body": "a".repeat(3_000_000)})).unwrap();
    let length = u64::try_from(three_mb.len()).unwrap();
    let answer = exchange(&route, route.head(Some(length)), three_mb)
        .await
        .unwrap();
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(route.code(&answer.body), "INVALID_INPUT", "{answer:?}");
    app.stop().await;
}
