//! The scenario `graphql`: GraphQL reads with a warm cache, beside (a) a plain axum handler
//! reading the same cache and (b) a REST handler querying Postgres per request.
//!
//! A fresh deployment is seeded through the real write path: a curator's exhibition with
//! `--artworks` artworks (each added with an image, then published), and likes by `--users`
//! users (a share of 5 to 64 % of them per artwork, see [`crate::reads::Seed`]) sent to the
//! command service and folded by the projector. Then the query API runs alone with the
//! baselines, each a separate process, and the load generator (another process, keep-alive
//! connections, every user with their own token) asks, per concurrency and target in turn:
//! `artwork(id) { likeCount viewerHasLiked }` over every artwork, and the catalog page by page
//! (20 artworks with their stats). Every answer is checked against the seeding.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use gallery_commands::{Principal, TokenKeys};
use gallery_schemas::{Role, UserId};
use tokio::process::Command;

use crate::deployment::Deployment;
use crate::load::{Kind, LoadReport, user_name};
use crate::plot::{self, Series};
use crate::process::{Server, free_addr, report};
use crate::reads::Seed;
use crate::report::{Goal, goals_table, ratio_goal, rows_table, thousands};

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Gallery's query API.
    Gallery,
    /// (a) a plain handler reading the same cache.
    Cache,
    /// (b) a REST handler querying Postgres per request.
    Rest,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Gallery => "Gallery GraphQL",
            Target::Cache => "(a) axum JSON handler on the same cache",
            Target::Rest => "(b) REST handler, Postgres per request",
        }
    }
}

fn query_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Artwork => "`artwork(id) { likeCount viewerHasLiked }`",
        Kind::Page | Kind::Like => "page of 20 artworks with stats",
    }
}

#[derive(Debug, clap::Args)]
pub struct GraphqlArgs {
    /// Connections (users asking at once) of each point.
    #[arg(long, value_delimiter = ',', default_value = "16,64,256")]
    connections: Vec<usize>,
    /// Measured seconds of each point.
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Seconds of load before each measured window (it also warms the caches).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Users (each with a token, each liking a share of the artworks).
    #[arg(long, default_value_t = 1_000)]
    users: u64,
    /// Artworks of the catalog (one exhibition).
    #[arg(long, default_value_t = 200)]
    artworks: u64,
    /// Partitions of the run's topics.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Threads of each load generator.
    #[arg(long, default_value_t = 1)]
    load_threads: usize,
    /// Connections of each baseline to Postgres (Gallery's `postgres.pool_size` default).
    #[arg(long, default_value_t = 16)]
    pool: usize,
    /// Measure only these targets (the goals need all three).
    #[arg(long, value_delimiter = ',', value_enum)]
    only: Vec<Target>,
    /// The queries measured.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "artwork,page"
    )]
    queries: Vec<Kind>,
    /// Profile the query API with `perf` during each query's point of highest concurrency.
    #[arg(long)]
    perf: bool,
    /// With `--perf`: record call stacks too (the data is kept for `perf report`).
    #[arg(long, requires = "perf")]
    perf_calls: bool,
    /// A `GALLERY_*` setting for the query API (`KEY=VALUE`, repeatable).
    #[arg(long = "gallery-env", value_parser = crate::like::key_value)]
    gallery_env: Vec<(String, String)>,
    /// Where the plots go.
    #[arg(long, default_value = "docs/plots")]
    plots: PathBuf,
    /// The `gallery` binary (default: the one beside this one, built by `scripts/bench`).
    #[arg(long)]
    gallery_bin: Option<PathBuf>,
}

impl GraphqlArgs {
    fn measures(&self, what: Target) -> bool {
        self.only.is_empty() || self.only.contains(&what)
    }
}

/// One measurement.
#[derive(Debug, Clone)]
pub struct ReadPoint {
    pub kind: Kind,
    pub target: Target,
    pub concurrency: usize,
    pub report: LoadReport,
}

/// The best rate of `target` on `kind` among its points with every answer right.
fn peak(points: &[ReadPoint], kind: Kind, target: Target) -> Option<f64> {
    points
        .iter()
        .filter(|p| p.kind == kind && p.target == target)
        .filter(|p| p.report.failed() == 0 && p.report.ok > 0)
        .map(|p| p.report.rps)
        .max_by(f64::total_cmp)
}

/// The goals of issue 11 for each query: at least half of (a), at least 3x (b).
pub fn read_goals(points: &[ReadPoint], kinds: &[Kind]) -> Vec<Goal> {
    let mut goals = Vec::new();
    for &kind in kinds {
        let g = peak(points, kind, Target::Gallery);
        let what = query_label(kind);
        goals.push(ratio_goal(
            &format!("{what}: Gallery / (a) cache handler"),
            (g, peak(points, kind, Target::Cache)),
            0.5,
            ("", "≥ 0.5"),
        ));
        goals.push(ratio_goal(
            &format!("{what}: Gallery / (b) REST on Postgres"),
            (g, peak(points, kind, Target::Rest)),
            3.0,
            ("x", "≥ 3x"),
        ));
    }
    goals
}

pub fn run(args: &GraphqlArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.connections.is_empty() && args.connections.iter().all(|c| *c > 0),
        "--connections needs at least one positive count"
    );
    anyhow::ensure!(
        args.seconds > 0.0 && args.seconds <= 600.0 && (0.0..=60.0).contains(&args.warmup),
        "--seconds must be in (0, 600] and --warmup in [0, 60]"
    );
    anyhow::ensure!(
        (1..=100_000).contains(&args.users) && (1..=10_000).contains(&args.artworks),
        "--users must be 1 to 100,000 and --artworks 1 to 10,000"
    );
    anyhow::ensure!(
        args.queries.iter().all(|k| *k != Kind::Like),
        "--queries takes artwork and page"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let run = crate::deployment::run(args.partitions, async |d: &Deployment| {
            measure(args, d).await
        })
        .await?;
        run.print_heading("graphql: reads with a warm cache");
        let (points, seeded, profiles) = run.measured;
        println!(
            "- seeded through the command service and the projector: one published exhibition of {} artworks, {} likes by {} users (5 to 64 % of the users per artwork); {} partitions",
            args.artworks,
            thousands(seeded as f64),
            args.users,
            args.partitions
        );
        println!(
            "- each point: {} s of load (warming the caches), then {} s measured, closed loop; request `i` is user `i mod {}` (own token) reading an artwork far from the previous one, or the next page of that connection's walk through the catalog; every answer's status and data checked against the seeding (counts, `viewerHasLiked` of that user, page order and `pageInfo`; an answer with `errors` is wrong)",
            args.warmup, args.seconds, args.users
        );
        println!("- (a) and (b) answer `GET /artworks/{{id}}` and `GET /artworks?after=` with the same JSON, behind the same middleware (edge limits, metrics), after checking the same token; (a) reads counts and the viewer's flags through the API's own `HotCache` (filled on a miss through its `ReadModel`, emptied by its change feed), the catalog's order from memory; a warm pass asks every (artwork, user) pair once of each target before the points, and both caches hold every pair for the whole run (`query_api.cache_capacity` = 2 × users × artworks, `cache_ttl_ms` = 1 h; changes still invalidate at once); (b) one prepared statement per answer");
        for (k, v) in &args.gallery_env {
            println!("- query API setting: `{k}={v}`");
        }
        let rows: Vec<(String, String, &LoadReport)> = points
            .iter()
            .map(|p| {
                (
                    format!("{}: {}", p.target.label(), query_label(p.kind)),
                    format!("{} connections", p.concurrency),
                    &p.report,
                )
            })
            .collect();
        println!("\n{}", rows_table(&rows));
        println!("{}", goals_table(&read_goals(&points, &args.queries)));
        for path in plots(&points, &args.queries, &args.plots)? {
            println!("\nplot: {path}");
        }
        for (kind, profile) in profiles {
            println!(
                "\nperf profile of the query API, {} at its highest concurrency:\n```\n{profile}\n```",
                query_label(kind)
            );
        }
        anyhow::Ok(())
    })
}

type Measured = (Vec<ReadPoint>, usize, Vec<(Kind, String)>);

/// `graphql-<query>.svg` per query: answers/s against connections, one line per target.
/// Returns the files written.
fn plots(points: &[ReadPoint], kinds: &[Kind], dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for &kind in kinds {
        let series: Vec<Series> = [Target::Gallery, Target::Cache, Target::Rest]
            .into_iter()
            .map(|target| {
                let line = points
                    .iter()
                    .filter(|p| p.kind == kind && p.target == target)
                    .map(|p| (p.concurrency as f64, p.report.rps))
                    .collect();
                Series::new(target.label(), line)
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let name = if kind == Kind::Page {
            "graphql-page.svg"
        } else {
            "graphql-artwork.svg"
        };
        let path = dir.join(name);
        plot::lines_log_x(
            &path,
            &format!("graphql: {}, answers/s", query_label(kind)),
            "connections",
            "answers/s",
            &series,
        )?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

/// A token for `user` with `role`.
fn token(keys: &TokenKeys, user: &str, role: Role) -> anyhow::Result<String> {
    let who = Principal::new(UserId::parse(user)?, role);
    Ok(format!(
        "Bearer {}",
        keys.issue(&who, Duration::from_secs(3600))?
    ))
}

/// A PNG for the artworks (a gradient).
fn png() -> anyhow::Result<Vec<u8>> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([
            u8::try_from(x * 4).unwrap_or(0),
            u8::try_from(y * 5).unwrap_or(0),
            128,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// A multipart form of an artwork: its fields, then its image.
fn artwork_form(title: &str, image: &[u8]) -> (String, Vec<u8>) {
    let boundary = "gallery-bench-boundary";
    let mut body = Vec::new();
    for (name, value) in [
        ("title", title),
        ("artist", "Berthe Morisot"),
        ("year", "1872"),
        ("style", "impressionism"),
        ("description", "A study in light"),
    ] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(image);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The `id` of a 202 answer.
async fn accepted_id(response: reqwest::Response, what: &str) -> anyhow::Result<String> {
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    anyhow::ensure!(status.as_u16() == 202, "{what}: {status} {body}");
    body["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{what}: no id in {body}"))
}

/// Creates the catalog and the likes through the command service; the artworks' ids in the
/// order they were added, and the number of likes sent.
async fn seed(
    commands: SocketAddr,
    keys: &TokenKeys,
    seed: Seed,
) -> anyhow::Result<(Vec<String>, usize)> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = format!("http://{commands}");
    let curator = token(keys, "bench-curator", Role::Curator)?;
    let exhibition = accepted_id(
        http.post(format!("{base}/v1/exhibitions"))
            .header("authorization", &curator)
            .json(&serde_json::json!({
                "title": "Launch day",
                "description": "Every painting of the opening",
                "opensAt": "2020-01-01T00:00:00Z",
                "closesAt": "2099-12-31T00:00:00Z",
            }))
            .send()
            .await?,
        "exhibition",
    )
    .await?;
    let image = png()?;
    let mut ids = Vec::new();
    for a in 0..seed.artworks {
        let (content_type, body) = artwork_form(&format!("Study {a}"), &image);
        let id = accepted_id(
            http.post(format!("{base}/v1/exhibitions/{exhibition}/artworks"))
                .header("authorization", &curator)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await?,
            "artwork",
        )
        .await?;
        ids.push(id);
        // Each artwork added in a later millisecond: the catalog's order is the seeding's.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let published = http
        .post(format!("{base}/v1/exhibitions/{exhibition}/publish"))
        .header("authorization", &curator)
        .send()
        .await?;
    anyhow::ensure!(
        published.status().as_u16() == 202,
        "publish: {}",
        published.status()
    );

    let likes = Arc::new(seed.likes_to_send());
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..seed.users)
            .map(|u| token(keys, &user_name(u), Role::Visitor))
            .collect::<anyhow::Result<_>>()?,
    );
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (http, base, likes, tokens, ids, next) = (
            http.clone(),
            base.clone(),
            likes.clone(),
            tokens.clone(),
            ids.clone(),
            next.clone(),
        );
        senders.spawn(async move {
            loop {
                let Some(&(user, artwork)) = likes.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return anyhow::Ok(());
                };
                let id = &ids[usize::try_from(artwork)?];
                let response = http
                    .put(format!("{base}/v1/artworks/{id}/like"))
                    .header("authorization", &tokens[usize::try_from(user)?])
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status().as_u16() == 202,
                    "like: {}",
                    response.status()
                );
            }
        });
    }
    while let Some(sent) = senders.join_next().await {
        sent??;
    }
    let ids = Arc::try_unwrap(ids).unwrap_or_else(|ids| ids.as_ref().clone());
    Ok((ids, likes.len()))
}

/// Waits until the read model holds the whole seeding.
async fn wait_projected(url: &str, artworks: usize, likes: usize) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        // The views exist once the projector has migrated the read model.
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM artworks WHERE NOT removed) AS artworks,
                        (SELECT COALESCE(sum(like_count), 0)::bigint FROM artwork_stats) AS likes",
                &[],
            )
            .await;
        let (a, l) = match row {
            Ok(row) => (
                row.try_get::<_, i64>("artworks")?,
                row.try_get::<_, i64>("likes")?,
            ),
            Err(_) => (0, 0),
        };
        if usize::try_from(a)? == artworks && usize::try_from(l)? == likes {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the read model holds {a} of {artworks} artworks and {l} of {likes} likes after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The caches' entry lifetime in this scenario: longer than any run.
const CACHE_TTL_MS: u64 = 3_600_000;

/// Connections of the warm pass.
const WARM_CONNECTIONS: usize = 64;

/// Longest a warm pass may take.
const WARM_SECONDS: f64 = 600.0;

/// One run of the load generator against a target.
struct Load {
    target: Target,
    addr: SocketAddr,
    kind: Kind,
    connections: usize,
    seconds: f64,
    warmup: f64,
    offset: u64,
    requests: Option<u64>,
}

async fn measure(args: &GraphqlArgs, deployment: &Deployment) -> anyhow::Result<Measured> {
    let (exe, gallery_bin) = crate::process::binaries(args.gallery_bin.as_deref())?;
    let dir = &deployment.dir;
    let keys = TokenKeys::from_secret(deployment.jwt_secret.as_bytes())?;
    let seed_model = Seed {
        users: args.users,
        artworks: args.artworks,
    };

    // The seeding: the write path, unlimited (one client sends every like).
    let commands_addr = free_addr()?;
    let mut command = deployment.gallery(&gallery_bin, "commands", commands_addr, free_addr()?)?;
    command
        .env("GALLERY_LIMITS__INTERACTIONS_PER_MINUTE", "0")
        .env("GALLERY_LIMITS__CATALOG_PER_MINUTE", "0");
    let commands = Server::start_healthy("gallery-commands", command, commands_addr, dir).await?;
    let projections = Server::start(
        "gallery-projections",
        deployment.gallery(&gallery_bin, "projections", free_addr()?, free_addr()?)?,
        dir,
    )?;
    let started = std::time::Instant::now();
    let (ids, likes) = seed(commands_addr, &keys, seed_model).await?;
    eprintln!(
        "seeded {} artworks and {likes} likes in {:.1} s",
        ids.len(),
        started.elapsed().as_secs_f64()
    );
    wait_projected(&deployment.gallery_url()?, ids.len(), likes).await?;
    eprintln!("projected after {:.1} s", started.elapsed().as_secs_f64());
    commands.stop().await?;
    projections.stop().await?;
    let ids_file = dir.join("artworks.json");
    std::fs::write(&ids_file, serde_json::to_vec(&ids)?)?;

    let gallery_addr = free_addr()?;
    // Room in the caches for every (artwork, user) pair, in the API and in (a) alike.
    // Twice the pairs, since a full cache may refuse new entries; alive for the whole run
    // (changes still invalidate at once), so that no point meets an entry expired since the
    // warm pass.
    let capacity = (2 * args.users * args.artworks).max(10_000).to_string();
    let ttl_ms = CACHE_TTL_MS.to_string();
    let mut command = deployment.gallery(&gallery_bin, "query-api", gallery_addr, free_addr()?)?;
    command
        .env("GALLERY_QUERY_API__CACHE_CAPACITY", &capacity)
        .env("GALLERY_QUERY_API__CACHE_TTL_MS", &ttl_ms);
    command.envs(args.gallery_env.iter().map(|(k, v)| (k, v)));
    let gallery = Server::start_healthy("gallery-query-api", command, gallery_addr, dir).await?;
    let mut baselines = Vec::new();
    for (target, baseline) in [(Target::Cache, "cache"), (Target::Rest, "rest")] {
        if !args.measures(target) {
            continue;
        }
        let addr = free_addr()?;
        let mut command = Command::new(&exe);
        command
            .args(["serve", baseline, "--listen", &addr.to_string()])
            .args(["--pool-size", &args.pool.to_string()])
            .args(["--cache-capacity", &capacity])
            .args(["--cache-ttl-ms", &ttl_ms])
            .env("GALLERY_BENCH_READ_URL", deployment.gallery_url()?)
            .env("GALLERY_BENCH_JWT_SECRET", &deployment.jwt_secret);
        let name = if target == Target::Cache {
            "cache"
        } else {
            "rest"
        };
        baselines.push((
            target,
            addr,
            Server::start_healthy(name, command, addr, dir).await?,
        ));
    }

    let load = |l: &Load| {
        let mut command = Command::new(&exe);
        command
            .arg("load")
            .args(["--addr", &l.addr.to_string()])
            .args(["--connections", &l.connections.to_string()])
            .args(["--seconds", &l.seconds.to_string()])
            .args(["--warmup", &l.warmup.to_string()])
            .args(["--users", &args.users.to_string()])
            .args(["--artworks", &args.artworks.to_string()])
            .args(["--offset", &l.offset.to_string()])
            .args(["--threads", &args.load_threads.to_string()])
            .args([
                "--kind",
                if l.kind == Kind::Page {
                    "page"
                } else {
                    "artwork"
                },
            ])
            .args([
                "--dialect",
                if l.target == Target::Gallery {
                    "graphql"
                } else {
                    "rest"
                },
            ])
            .arg("--artwork-ids")
            .arg(&ids_file)
            .env("GALLERY_BENCH_JWT_SECRET", &deployment.jwt_secret);
        if let Some(n) = l.requests {
            command.args(["--requests", &n.to_string()]);
        }
        command
    };
    let targets: Vec<(Target, SocketAddr)> = std::iter::once((Target::Gallery, gallery_addr))
        .filter(|_| args.measures(Target::Gallery))
        .chain(baselines.iter().map(|(t, a, _)| (*t, *a)))
        .collect();

    // The warm pass: every (artwork, user) pair asked once of each target, so that the points
    // measure warm caches (a point asks each pair about once; without it most viewer flags
    // would be first reads, in the API and in (a) alike). Every answer is checked here too.
    let pairs = args.users * args.artworks;
    for &(target, addr) in &targets {
        let started = std::time::Instant::now();
        let command = load(&Load {
            target,
            addr,
            kind: Kind::Artwork,
            connections: WARM_CONNECTIONS,
            seconds: WARM_SECONDS,
            warmup: 0.0,
            offset: 0,
            requests: Some(pairs),
        });
        let name = format!("warm-{target:?}").to_lowercase();
        let warmed: LoadReport = report(&name, command, dir).await?;
        anyhow::ensure!(
            warmed.sent == pairs && warmed.failed() == 0,
            "the warm pass of {target:?} sent {} of {pairs} requests, {} wrong",
            warmed.sent,
            warmed.failed()
        );
        eprintln!(
            "warmed {target:?}: {pairs} pairs in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }

    let mut points = Vec::new();
    let mut profiles = Vec::new();
    let highest = args.connections.iter().copied().max().unwrap_or(1);
    let mut offset = 0;
    for &kind in &args.queries {
        // Interleaved per concurrency, so that a change of the machine's load over the run
        // touches every target alike.
        for &connections in &args.connections {
            for &(target, addr) in &targets {
                let recording = match (target, gallery.pid()) {
                    (Target::Gallery, Some(pid)) if args.perf && connections == highest => {
                        let name = format!("gallery-query-api-{kind:?}").to_lowercase();
                        Some(crate::profile::start(pid, dir, &name, args.perf_calls)?)
                    }
                    _ => None,
                };
                let command = load(&Load {
                    target,
                    addr,
                    kind,
                    connections,
                    seconds: args.seconds,
                    warmup: args.warmup,
                    offset,
                    requests: None,
                });
                let name = format!("load-{kind:?}-{target:?}-{connections}").to_lowercase();
                let report: LoadReport = report(&name, command, dir).await?;
                offset += report.sent;
                if let Some(recording) = recording {
                    profiles.push((kind, recording.finish().await?));
                }
                eprintln!(
                    "{kind:?} {target:?} {connections}: {:.0} rps, p50 {:.2} ms, p99 {:.2} ms, {} wrong",
                    report.rps,
                    report.latency.p50_us as f64 / 1000.0,
                    report.latency.p99_us as f64 / 1000.0,
                    report.failed()
                );
                points.push(ReadPoint {
                    kind,
                    target,
                    concurrency: connections,
                    report,
                });
            }
        }
    }
    gallery.stop().await?;
    for (_, _, server) in baselines {
        server.stop().await?;
    }
    Ok((points, likes, profiles))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Verdict;

    fn point(kind: Kind, target: Target, rps: f64, failed: u64) -> ReadPoint {
        ReadPoint {
            kind,
            target,
            concurrency: 64,
            report: LoadReport {
                ok: 1000,
                failures: if failed > 0 {
                    [("body: wrong likeCount".to_owned(), failed)].into()
                } else {
                    Default::default()
                },
                rps,
                ..Default::default()
            },
        }
    }

    #[test]
    fn each_query_gets_its_plot_with_a_line_per_target() {
        let dir = std::env::temp_dir().join(format!("gallery-plots-{}", uuid::Uuid::new_v4()));
        let points = [
            point(Kind::Artwork, Target::Gallery, 30_000.0, 0),
            point(Kind::Artwork, Target::Cache, 50_000.0, 0),
            point(Kind::Page, Target::Rest, 2_000.0, 0),
        ];
        let written = plots(&points, &[Kind::Artwork, Kind::Page], &dir).unwrap();
        assert_eq!(written.len(), 2);
        let artwork = std::fs::read_to_string(dir.join("graphql-artwork.svg")).unwrap();
        assert!(artwork.contains("<svg") && artwork.contains("Gallery GraphQL"));
        assert!(artwork.contains("(a) axum JSON handler"));
        assert!(!artwork.contains("(b) REST"), "no points, no line");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn each_query_is_held_to_half_of_the_cache_and_three_times_postgres() {
        let points = [
            point(Kind::Artwork, Target::Gallery, 30_000.0, 0),
            point(Kind::Artwork, Target::Cache, 50_000.0, 0),
            point(Kind::Artwork, Target::Rest, 12_000.0, 0),
            point(Kind::Page, Target::Gallery, 3_000.0, 0),
            // A faster point with wrong answers does not count.
            point(Kind::Page, Target::Gallery, 9_000.0, 4),
            point(Kind::Page, Target::Cache, 10_000.0, 0),
            point(Kind::Page, Target::Rest, 2_000.0, 0),
        ];
        let goals = read_goals(&points, &[Kind::Artwork, Kind::Page]);
        let verdicts: Vec<Verdict> = goals.iter().map(|g| g.verdict.clone()).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Met,
                Verdict::NotMet,
                Verdict::NotMet,
                Verdict::NotMet
            ]
        );
        assert!(
            goals[0].measured.starts_with("0.60 (30,000 / 50,000 rps)"),
            "{goals:?}"
        );
        assert!(goals[1].measured.starts_with("2.50x"), "{goals:?}");
        let missing = read_goals(&points[..1], &[Kind::Artwork]);
        assert!(matches!(missing[0].verdict, Verdict::Unknown(_)));
    }
}
