//! The HTTP load generator: many users over keep-alive connections, each with their own token,
//! liking artworks (`--kind like`) or reading them (`artwork`, `page`: GraphQL, or the read
//! baselines' REST paths with `--dialect rest`), each response checked (status and body: a
//! read against what the seeding put in the read model), latencies in a histogram. Closed loop (each connection
//! sends its next request when the answer came: the peak rate at that concurrency) or open loop
//! at a fixed rate (latency measured from each request's planned start, so a server that falls
//! behind is charged for the queue it builds: no coordinated omission).
//!
//! Request `i` (counted over all connections, from `--offset`) is user `i mod users` liking
//! artwork `(i / users + 37 * user) mod artworks`: the first `users * artworks` requests are
//! all distinct likes, and consecutive requests go to artworks far apart (different
//! partitions). Reads pick their user and artwork the same way; a page reader walks the
//! catalog from its first page to its last, each page after the previous answer's cursor,
//! then starts again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use gallery_commands::{Principal, TokenKeys};
use gallery_schemas::{Role, UserId};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::latency::{self, Latencies};
use crate::reads::{self, Seed, Truth};

/// What a load generator (or the Kafka baseline) measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Requests sent in all, warm-up included (the next run starts its requests after them).
    pub sent: u64,
    /// Requests of the measured window answered as expected.
    pub ok: u64,
    /// Requests of the measured window answered otherwise, by what was wrong.
    pub failures: BTreeMap<String, u64>,
    /// The first wrong answer, for the table's footnote.
    pub first_failure: Option<String>,
    pub window_secs: f64,
    /// Expected answers per second of the measured window.
    pub rps: f64,
    pub latency: Latencies,
}

impl LoadReport {
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// What a correct answer looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Expect {
    /// `202` with `{"eventId", "position": {"topic", "partition", "offset"}}` on the given
    /// topic and a partition of it (Gallery, and the no-op baseline's same-shaped answer).
    Accepted,
    /// `202` with `{"artworkId", "likes"}`: the liked artwork and a count of at least 1.
    Crud,
}

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The server (a loopback address), or several instances of it (comma-separated):
    /// connection `i` goes to the `i mod n`-th.
    #[arg(long, value_delimiter = ',', required = true)]
    addr: Vec<SocketAddr>,
    #[arg(long)]
    connections: usize,
    /// Length of the measured window.
    #[arg(long)]
    seconds: f64,
    /// Load before the measured window (not counted).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Open loop: this many requests per second over all connections.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long)]
    users: u64,
    #[arg(long)]
    artworks: u64,
    /// Index of the first request (see the module's documentation).
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Send at most this many requests over all connections (indexes `offset` to
    /// `offset + requests - 1`), then end, even before `--seconds` have passed.
    #[arg(long)]
    requests: Option<u64>,
    /// The secret the server checks tokens with.
    #[arg(long, env = "GALLERY_BENCH_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// What a correct like's answer looks like.
    #[arg(long, value_enum, default_value = "accepted")]
    expect: Expect,
    /// The topic an accepted answer must name.
    #[arg(long, default_value = "")]
    topic: String,
    /// The topic's partitions.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Threads of the generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// What each request does.
    #[arg(long, value_enum, default_value = "like")]
    kind: Kind,
    /// How reads are asked: GraphQL (`POST /graphql`) or the baselines' REST paths.
    #[arg(long, value_enum, default_value = "graphql")]
    dialect: Dialect,
    /// Reads: the seeded artworks' ids, in the order they were added (a JSON list).
    #[arg(long)]
    artwork_ids: Option<std::path::PathBuf>,
}

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// `PUT /v1/artworks/{id}/like`.
    Like,
    /// One artwork's like count and the viewer's flag.
    Artwork,
    /// A page of 20 artworks with their stats.
    Page,
}

/// How reads are asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    /// `POST /graphql` with the query and its variables.
    Graphql,
    /// `GET /artworks/{id}` and `GET /artworks?after=<cursor>`, answered with the same JSON.
    Rest,
}

/// One run of the load generator, as a scenario starts it (a process of its own).
#[derive(Debug, Clone)]
pub struct Run<'a> {
    /// The server, or its instances (connections go to them in turn).
    pub addrs: &'a [SocketAddr],
    pub connections: usize,
    pub seconds: f64,
    pub warmup: f64,
    /// Open loop at this rate; closed loop without.
    pub rate: Option<f64>,
    pub workload: Workload,
    pub offset: u64,
    pub threads: usize,
    pub expect: Expect,
    /// The topic (and its partitions) an accepted answer must name.
    pub topic: &'a str,
    pub partitions: i32,
}

impl Run<'_> {
    /// `gallery-bench load ...` (`exe` is the harness) with the tokens' secret.
    pub fn command(&self, exe: &std::path::Path, jwt_secret: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(exe);
        command
            .arg("load")
            .args([
                "--addr",
                &self
                    .addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ])
            .args(["--connections", &self.connections.to_string()])
            .args(["--seconds", &self.seconds.to_string()])
            .args(["--warmup", &self.warmup.to_string()])
            .args(["--users", &self.workload.users.to_string()])
            .args(["--artworks", &self.workload.artworks.to_string()])
            .args(["--offset", &self.offset.to_string()])
            .args(["--threads", &self.threads.to_string()])
            .args(["--topic", self.topic])
            .args(["--partitions", &self.partitions.to_string()])
            .args([
                "--expect",
                match self.expect {
                    Expect::Accepted => "accepted",
                    Expect::Crud => "crud",
                },
            ])
            .env("GALLERY_BENCH_JWT_SECRET", jwt_secret);
        if let Some(rate) = self.rate {
            command.args(["--rate", &rate.to_string()]);
        }
        command
    }
}

/// Who likes what, request by request.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub users: u64,
    pub artworks: u64,
}

impl Workload {
    /// The user and the artwork of request `i`.
    pub fn pair(&self, i: u64) -> (u64, u64) {
        let users = self.users.max(1);
        let artworks = self.artworks.max(1);
        let user = i % users;
        let round = i / users;
        let artwork = (round % artworks + (user % artworks) * 37 % artworks) % artworks;
        (user, artwork)
    }
}

pub fn user_name(user: u64) -> String {
    format!("bench-{user}")
}

pub fn artwork_name(artwork: u64) -> String {
    format!("art-{artwork}")
}

/// Everything the connections share: the requests' parts, prepared once.
struct Plan {
    /// The instances, in turn per connection.
    addrs: Vec<SocketAddr>,
    host: HeaderValue,
    workload: Workload,
    tokens: Vec<HeaderValue>,
    /// Per artwork: its like URI (or its read URI) and its id.
    artworks: Vec<(Uri, String)>,
    /// Per artwork, the GraphQL request for `artwork(id)`.
    bodies: Vec<Bytes>,
    checker: Checker,
    kind: Kind,
    dialect: Dialect,
    /// What the seeding put in the read model (reads only).
    truth: Option<Truth>,
    connections: u64,
    offset: u64,
    /// The first index not to send (`--requests`).
    end: Option<u64>,
}

/// What a request asked, for its check.
#[derive(Debug, Clone)]
enum Asked {
    Like { artwork: usize },
    Artwork { user: u64, artwork: usize },
    Page { user: u64, page: usize },
}

/// Where a page reader is in its walk: the next page and its cursor.
#[derive(Debug, Clone, Default)]
struct Walk {
    page: usize,
    cursor: Option<String>,
}

impl Plan {
    /// The instance connection `index` talks to.
    fn addr(&self, index: u64) -> SocketAddr {
        let n = self.addrs.len() as u64;
        self.addrs[usize::try_from(index % n.max(1)).unwrap_or(0)]
    }

    fn request(&self, i: u64, walk: &Walk) -> anyhow::Result<(Request<Full<Bytes>>, Asked)> {
        let (user, artwork) = self.workload.pair(i);
        let artwork = usize::try_from(artwork)?;
        let token = self
            .tokens
            .get(usize::try_from(user)?)
            .context("user out of range")?;
        let (method, uri, body, asked) = match (self.kind, self.dialect) {
            (Kind::Like, _) => {
                let (uri, _) = self.artworks.get(artwork).context("artwork out of range")?;
                (
                    Method::PUT,
                    uri.clone(),
                    Bytes::new(),
                    Asked::Like { artwork },
                )
            }
            (Kind::Artwork, Dialect::Graphql) => {
                let body = self.bodies.get(artwork).context("artwork out of range")?;
                (
                    Method::POST,
                    Uri::from_static("/graphql"),
                    body.clone(),
                    Asked::Artwork { user, artwork },
                )
            }
            (Kind::Artwork, Dialect::Rest) => {
                let (uri, _) = self.artworks.get(artwork).context("artwork out of range")?;
                (
                    Method::GET,
                    uri.clone(),
                    Bytes::new(),
                    Asked::Artwork { user, artwork },
                )
            }
            (Kind::Page, Dialect::Graphql) => (
                Method::POST,
                Uri::from_static("/graphql"),
                Bytes::from(reads::page_request(walk.cursor.as_deref())),
                Asked::Page {
                    user,
                    page: walk.page,
                },
            ),
            (Kind::Page, Dialect::Rest) => {
                let uri = match &walk.cursor {
                    Some(c) => format!("/artworks?after={c}").parse()?,
                    None => Uri::from_static("/artworks"),
                };
                (
                    Method::GET,
                    uri,
                    Bytes::new(),
                    Asked::Page {
                        user,
                        page: walk.page,
                    },
                )
            }
        };
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, token.clone());
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        Ok((request.body(Full::new(body))?, asked))
    }

    /// `Ok` with the walk's next step for a correct answer, or what was wrong.
    fn check(&self, status: StatusCode, body: &[u8], asked: &Asked) -> Result<Walk, String> {
        let truth = || {
            self.truth
                .as_ref()
                .ok_or_else(|| "no seeding to check against".to_owned())
        };
        match asked {
            Asked::Like { artwork } => {
                let (_, id) = &self.artworks[*artwork];
                self.checker
                    .check(status, body, id)
                    .map(|()| Walk::default())
            }
            Asked::Artwork { user, artwork } => {
                ok_status(status)?;
                truth()?
                    .check_artwork(body, *user, *artwork)
                    .map(|()| Walk::default())
            }
            Asked::Page { user, page } => {
                ok_status(status)?;
                Ok(match truth()?.check_page(body, *user, *page)? {
                    Some(cursor) => Walk {
                        page: page + 1,
                        cursor: Some(cursor),
                    },
                    None => Walk::default(),
                })
            }
        }
    }
}

fn ok_status(status: StatusCode) -> Result<(), String> {
    if status == StatusCode::OK {
        Ok(())
    } else {
        Err(format!("status {}", status.as_u16()))
    }
}

/// Checks an answer.
#[derive(Debug, Clone)]
pub struct Checker {
    pub expect: Expect,
    pub topic: String,
    pub partitions: i32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AcceptedBody<'a> {
    event_id: uuid::Uuid,
    #[serde(borrow)]
    position: PositionBody<'a>,
}

#[derive(Deserialize)]
struct PositionBody<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CrudBody<'a> {
    artwork_id: &'a str,
    likes: i64,
}

impl Checker {
    /// `Ok` for a correct answer to a like of `artwork`, or what was wrong (a short, stable
    /// description: the failures are counted by it).
    pub fn check(&self, status: StatusCode, body: &[u8], artwork: &str) -> Result<(), String> {
        if status != StatusCode::ACCEPTED {
            return Err(format!("status {}", status.as_u16()));
        }
        match self.expect {
            Expect::Accepted => {
                let body: AcceptedBody<'_> = serde_json::from_slice(body)
                    .map_err(|_| "body: not an accepted command".to_owned())?;
                let _ = body.event_id;
                if body.position.topic != self.topic {
                    return Err("body: another topic".into());
                }
                if !(0..self.partitions).contains(&body.position.partition) {
                    return Err("body: no partition of the topic".into());
                }
                if body.position.offset < 0 {
                    return Err("body: negative offset".into());
                }
            }
            Expect::Crud => {
                let body: CrudBody<'_> = serde_json::from_slice(body)
                    .map_err(|_| "body: not a like count".to_owned())?;
                if body.artwork_id != artwork {
                    return Err("body: another artwork".into());
                }
                if body.likes < 1 {
                    return Err("body: no like counted".into());
                }
            }
        }
        Ok(())
    }
}

/// When a connection sends and what is measured.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    /// Open loop: time between two requests of one connection.
    interval: Option<Duration>,
}

/// What one connection saw.
struct Tally {
    sent: u64,
    ok: u64,
    histogram: Histogram<u64>,
    failures: BTreeMap<String, u64>,
    first_failure: Option<String>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            sent: 0,
            ok: 0,
            histogram: latency::histogram()?,
            failures: BTreeMap::new(),
            first_failure: None,
        })
    }

    fn fail(&mut self, kind: String, sample: impl FnOnce() -> String) {
        if self.first_failure.is_none() {
            self.first_failure = Some(sample());
        }
        *self.failures.entry(kind).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.sent += other.sent;
        self.ok += other.ok;
        self.histogram.add(&other.histogram)?;
        for (kind, n) in other.failures {
            *self.failures.entry(kind).or_default() += n;
        }
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        Ok(())
    }
}

type Connection = Pin<Box<http1::Connection<TokioIo<TcpStream>, Full<Bytes>>>>;

async fn connect(
    addr: SocketAddr,
) -> anyhow::Result<(http1::SendRequest<Full<Bytes>>, Connection)> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    Ok((sender, Box::pin(connection)))
}

/// Sends one request and reads its answer, driving the connection on this task (no hand-off
/// to another task per request).
async fn exchange(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    connection: &mut Connection,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let answer = async {
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    tokio::select! {
        biased;
        answer = answer => answer,
        ended = connection.as_mut() => {
            ended?;
            anyhow::bail!("the server closed the connection")
        }
    }
}

async fn run_connection(plan: Arc<Plan>, index: u64, schedule: Schedule) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    let mut link = None;
    let mut walk = Walk::default();
    // Spread the connections' first requests over one interval.
    let stagger = schedule
        .interval
        .map(|every| every.mul_f64(index as f64 / plan.connections as f64));
    for k in 0u64.. {
        let i = plan.offset + index + k * plan.connections;
        if plan.end.is_some_and(|end| i >= end) {
            break;
        }
        let planned = match (schedule.interval, stagger) {
            (Some(every), Some(stagger)) => {
                let at = schedule.start + stagger + every.saturating_mul(u32::try_from(k)?);
                if at >= schedule.end {
                    break;
                }
                tokio::time::sleep_until(at).await;
                at
            }
            _ => {
                let now = Instant::now();
                if now >= schedule.end {
                    break;
                }
                now.max(schedule.start)
            }
        };
        let measured = planned >= schedule.measure_from;
        let (mut sender, mut connection) = match link.take() {
            Some(link) => link,
            None => match connect(plan.addr(index)).await {
                Ok(link) => link,
                Err(e) => {
                    if measured {
                        tally.fail("connection refused".into(), || e.to_string());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let (request, asked) = plan.request(i, &walk)?;
        tally.sent += 1;
        match exchange(&mut sender, &mut connection, request).await {
            Ok((status, body)) => {
                link = Some((sender, connection));
                let verdict = plan.check(status, &body, &asked);
                // A wrong page starts the walk again.
                walk = verdict.clone().unwrap_or_default();
                if !measured {
                    continue;
                }
                match verdict {
                    Ok(_) => {
                        tally.ok += 1;
                        latency::record(&mut tally.histogram, planned.elapsed());
                    }
                    Err(kind) => tally.fail(kind, || {
                        format!(
                            "{} {}",
                            status.as_u16(),
                            String::from_utf8_lossy(&body[..body.len().min(300)])
                        )
                    }),
                }
            }
            Err(e) => {
                walk = Walk::default();
                if measured {
                    tally.fail("connection error".into(), || format!("{e:#}"));
                }
            }
        }
    }
    Ok(tally)
}

/// A visitor's bearer token (valid for an hour), signed with `keys`.
pub fn token(keys: &TokenKeys, user: &str) -> anyhow::Result<String> {
    let who = Principal::new(UserId::parse(user)?, Role::Visitor);
    Ok(keys.issue(&who, Duration::from_secs(3600))?)
}

fn tokens(secret: &str, users: u64) -> anyhow::Result<Vec<HeaderValue>> {
    let keys = TokenKeys::from_secret(secret.as_bytes())?;
    (0..users)
        .map(|u| {
            let token = token(&keys, &user_name(u))?;
            Ok(HeaderValue::try_from(format!("Bearer {token}"))?)
        })
        .collect()
}

pub fn run(args: &LoadArgs) -> anyhow::Result<()> {
    if let Some(addr) = args.addr.iter().find(|a| !a.ip().is_loopback()) {
        anyhow::bail!("the load generator sends only to loopback addresses, not {addr}");
    }
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(
        args.seconds > 0.0 && args.warmup >= 0.0,
        "--seconds must be positive"
    );
    let workload = Workload {
        users: args.users.max(1),
        artworks: args.artworks.max(1),
    };
    let ids: Vec<String> = match &args.artwork_ids {
        Some(path) => serde_json::from_slice(&std::fs::read(path)?)
            .with_context(|| format!("{} is not a JSON list of ids", path.display()))?,
        None => (0..workload.artworks).map(artwork_name).collect(),
    };
    let workload = Workload {
        artworks: u64::try_from(ids.len())?.max(1),
        ..workload
    };
    let truth = match args.kind {
        Kind::Like => None,
        Kind::Artwork | Kind::Page => Some(Truth::new(
            Seed {
                users: workload.users,
                artworks: workload.artworks,
            },
            ids.clone(),
        )?),
    };
    let plan = Arc::new(Plan {
        host: HeaderValue::try_from(args.addr[0].to_string())?,
        addrs: args.addr.clone(),
        workload,
        tokens: tokens(&args.jwt_secret, workload.users)?,
        artworks: ids
            .iter()
            .map(|id| {
                let path = match args.kind {
                    Kind::Like => format!("/v1/artworks/{id}/like"),
                    Kind::Artwork | Kind::Page => format!("/artworks/{id}"),
                };
                Ok((path.parse::<Uri>()?, id.clone()))
            })
            .collect::<anyhow::Result<_>>()?,
        bodies: ids
            .iter()
            .map(|id| Bytes::from(reads::artwork_request(id)))
            .collect(),
        checker: Checker {
            expect: args.expect,
            topic: args.topic.clone(),
            partitions: args.partitions,
        },
        kind: args.kind,
        dialect: args.dialect,
        truth,
        connections: u64::try_from(args.connections)?,
        offset: args.offset,
        end: args.requests.map(|n| args.offset.saturating_add(n)),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let start = Instant::now() + Duration::from_millis(100);
        let measure_from = start + Duration::from_secs_f64(args.warmup);
        let schedule = Schedule {
            start,
            measure_from,
            end: measure_from + Duration::from_secs_f64(args.seconds),
            interval: args
                .rate
                .filter(|r| *r > 0.0)
                .map(|rate| Duration::from_secs_f64(args.connections as f64 / rate)),
        };
        let tasks: Vec<_> = (0..plan.connections)
            .map(|c| tokio::spawn(run_connection(plan.clone(), c, schedule)))
            .collect();
        let mut total = Tally::new()?;
        for task in tasks {
            total.merge(task.await??)?;
        }
        anyhow::Ok(LoadReport {
            sent: total.sent,
            ok: total.ok,
            failures: total.failures,
            first_failure: total.first_failure,
            window_secs: args.seconds,
            rps: total.ok as f64 / args.seconds,
            latency: Latencies::of(&total.histogram),
        })
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn the_first_users_times_artworks_requests_are_distinct_likes() {
        let w = Workload {
            users: 50,
            artworks: 40,
        };
        let pairs: HashSet<_> = (0..50 * 40).map(|i| w.pair(i)).collect();
        assert_eq!(pairs.len(), 50 * 40);
        // Consecutive requests are different users on different artworks.
        let (u0, a0) = w.pair(0);
        let (u1, a1) = w.pair(1);
        assert_ne!((u0, a0), (u1, a1));
        assert_ne!(a0, a1);
    }

    fn checker(expect: Expect) -> Checker {
        Checker {
            expect,
            topic: "t.interactions".into(),
            partitions: 6,
        }
    }

    #[test]
    fn an_accepted_answer_is_checked_field_by_field() {
        let c = checker(Expect::Accepted);
        let ok = br#"{"eventId":"0193a3c4-0000-7000-8000-000000000000","position":{"topic":"t.interactions","partition":5,"offset":17}}"#;
        assert_eq!(c.check(StatusCode::ACCEPTED, ok, "art-1"), Ok(()));
        assert_eq!(
            c.check(StatusCode::OK, ok, "art-1"),
            Err("status 200".into())
        );
        let other = br#"{"eventId":"0193a3c4-0000-7000-8000-000000000000","position":{"topic":"x","partition":0,"offset":1}}"#;
        assert_eq!(
            c.check(StatusCode::ACCEPTED, other, "art-1"),
            Err("body: another topic".into())
        );
        let partition = br#"{"eventId":"0193a3c4-0000-7000-8000-000000000000","position":{"topic":"t.interactions","partition":6,"offset":1}}"#;
        assert!(c.check(StatusCode::ACCEPTED, partition, "art-1").is_err());
        let error = br#"{"error":{"code":"RATE_LIMITED","message":"slow down"}}"#;
        assert!(c.check(StatusCode::ACCEPTED, error, "art-1").is_err());
    }

    #[test]
    fn a_crud_answer_names_the_liked_artwork() {
        let c = checker(Expect::Crud);
        let ok = br#"{"artworkId":"art-1","likes":3}"#;
        assert_eq!(c.check(StatusCode::ACCEPTED, ok, "art-1"), Ok(()));
        assert_eq!(
            c.check(StatusCode::ACCEPTED, ok, "art-2"),
            Err("body: another artwork".into())
        );
        let none = br#"{"artworkId":"art-1","likes":0}"#;
        assert!(c.check(StatusCode::ACCEPTED, none, "art-1").is_err());
    }
}
