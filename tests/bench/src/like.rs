//! The scenario `like`: like commands over HTTP, durable in Kafka, from many users, beside
//! (a) a no-op handler behind the same middleware (the HTTP ceiling), (b) a CRUD service doing
//! the same like as one Postgres transaction and (c) the producer alone sending the same Avro
//! bytes (the Kafka ceiling), each swept over the same concurrencies in the same run; then
//! Gallery at half its peak rate, open loop, for its p99.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::deployment::Deployment;
use crate::load::{Expect, LoadReport, Run, Workload};
use crate::plot::{self, Series};
use crate::process::{Server, free_addr, report};
use crate::report::{
    HalfRate, Point, Target, combined_ceiling, goals_table, like_goals, peak, points_table,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    Gallery,
    Noop,
    Crud,
    Kafka,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LikeArgs {
    /// Connections (users sending at once) of each closed-loop point.
    #[arg(long, value_delimiter = ',', default_value = "64,256,1024")]
    pub connections: Vec<usize>,
    /// Events in flight of each point of the Kafka baseline.
    #[arg(long, value_delimiter = ',', default_value = "64,256,1024,8192")]
    in_flight: Vec<usize>,
    /// Measured seconds of each point.
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Seconds of load before each measured window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Distinct users (each with a token).
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    #[arg(long, default_value_t = 10_000)]
    artworks: u64,
    /// Partitions of the run's topics.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Instances of the command service (each its own process; the load generator's
    /// connections go to them in turn).
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    /// Threads of each load generator.
    #[arg(long, default_value_t = 1)]
    load_threads: usize,
    /// Connections of the CRUD service to Postgres.
    #[arg(long, default_value_t = 32)]
    crud_pool: usize,
    /// Measure only these (the goals need all four).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub only: Vec<Only>,
    /// Profile the command service with `perf` during its point of highest concurrency.
    #[arg(long)]
    perf: bool,
    /// With `--perf`: record call stacks too (the data is kept for `perf report`).
    #[arg(long, requires = "perf")]
    perf_calls: bool,
    /// A `GALLERY_*` setting for the command service (`KEY=VALUE`, repeatable): a variant of
    /// its configuration, measured against the same baselines.
    #[arg(long = "gallery-env", value_parser = key_value)]
    gallery_env: Vec<(String, String)>,
    /// The `gallery` binary (default: the one beside this one, built by `scripts/bench`).
    #[arg(long)]
    gallery_bin: Option<PathBuf>,
    /// Where the plots go (`like-throughput.svg`, `like-latency.svg`).
    #[arg(long, default_value = "docs/plots")]
    pub plots: PathBuf,
}

pub fn key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((k, v)) if k.starts_with("GALLERY_") => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!(
            "expected GALLERY_<SECTION>__<KEY>=VALUE, got `{raw}`"
        )),
    }
}

impl LikeArgs {
    fn measures(&self, what: Only) -> bool {
        self.only.is_empty() || self.only.contains(&what)
    }
}

pub fn run(args: &LikeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.connections.is_empty() && args.connections.iter().all(|c| *c > 0),
        "--connections needs at least one positive count"
    );
    anyhow::ensure!(
        args.seconds > 0.0 && args.seconds <= 600.0 && (0.0..=60.0).contains(&args.warmup),
        "--seconds must be in (0, 600] and --warmup in [0, 60]"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let run = crate::deployment::run(args.partitions, async |d: &Deployment| {
            measure(args, d).await
        })
        .await?;
        run.print_heading("like: `PUT /v1/artworks/{id}/like` to 202, durable in Kafka");
        let (points, half, profile) = run.measured;
        println!(
            "- each point: {} s of load, then {} s measured; {} users liking {} artworks (every like a new one), tokens signed per user; {} partitions; {} command service instance(s); every answer's status and body checked",
            args.warmup, args.seconds, args.users, args.artworks, args.partitions, args.instances
        );
        for (k, v) in &args.gallery_env {
            println!("- command service setting: `{k}={v}`");
        }
        println!("\n{}", points_table(&points, half.as_ref()));
        println!("{}", goals_table(&like_goals(&points, half.as_ref())));
        let plots = draw(&args.plots, &points)?;
        println!("\nplots: {}", plots.join(", "));
        if let Some(profile) = profile {
            println!("\nperf profile of the command service at its highest concurrency:\n```\n{profile}\n```");
        }
        anyhow::Ok(())
    })
}

pub type Measured = (Vec<Point>, Option<HalfRate>, Option<String>);

/// Everything a load generator needs besides its concurrency.
struct Loader<'a> {
    exe: PathBuf,
    args: &'a LikeArgs,
    deployment: &'a Deployment,
    offset: u64,
}

impl Loader<'_> {
    async fn http(
        &mut self,
        target: Target,
        addrs: &[SocketAddr],
        connections: usize,
        rate: Option<f64>,
    ) -> anyhow::Result<LoadReport> {
        let topic = self.deployment.topics().interactions();
        let run = Run {
            addrs,
            connections,
            seconds: self.args.seconds,
            warmup: self.args.warmup,
            rate,
            workload: Workload {
                users: self.args.users,
                artworks: self.args.artworks,
            },
            offset: self.offset,
            threads: self.args.load_threads,
            expect: if target == Target::Crud {
                Expect::Crud
            } else {
                Expect::Accepted
            },
            topic: &topic,
            partitions: self.deployment.partitions,
        };
        let command = run.command(&self.exe, &self.deployment.jwt_secret);
        let name = format!("load-{target:?}-{connections}").to_lowercase();
        let report: LoadReport = report(&name, command, &self.deployment.dir).await?;
        // The next run likes what no run liked before.
        self.offset += report.sent;
        Ok(report)
    }

    async fn kafka(&self, in_flight: usize) -> anyhow::Result<LoadReport> {
        let base = &self.deployment.base;
        let mut command = Command::new(&self.exe);
        command
            .arg("produce")
            .args(["--brokers", &base.kafka.brokers])
            .args(["--registry-url", &base.registry.url])
            .args(["--topic-prefix", &self.deployment.prefix])
            .args(["--in-flight", &in_flight.to_string()])
            .args(["--seconds", &self.args.seconds.to_string()])
            .args(["--warmup", &self.args.warmup.to_string()])
            .args(["--users", &self.args.users.to_string()])
            .args(["--artworks", &self.args.artworks.to_string()]);
        // The command service's batching, when a variant sets it.
        if let Some((_, linger)) = self
            .args
            .gallery_env
            .iter()
            .find(|(k, _)| k == "GALLERY_KAFKA__PRODUCER_LINGER_MS")
        {
            command.args(["--linger-ms", linger]);
        }
        report(
            &format!("produce-{in_flight}"),
            command,
            &self.deployment.dir,
        )
        .await
    }
}

/// Throughput of every target against its concurrency, and Gallery's latency percentiles.
fn draw(dir: &Path, points: &[Point]) -> anyhow::Result<Vec<String>> {
    let of = |target: Target, y: &dyn Fn(&LoadReport) -> f64| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter(|p| p.target == target && p.report.ok > 0)
            .map(|p| (p.concurrency as f64, y(&p.report)))
            .collect()
    };
    let throughput: Vec<Series> = [Target::Gallery, Target::Noop, Target::Crud, Target::Kafka]
        .into_iter()
        .map(|t| Series::new(t.short_label(), of(t, &|r| r.rps)))
        .filter(|s| !s.points.is_empty())
        .collect();
    let ms = |us: u64| us as f64 / 1000.0;
    let latency = vec![
        Series::new("p50", of(Target::Gallery, &|r| ms(r.latency.p50_us))),
        Series::new("p99", of(Target::Gallery, &|r| ms(r.latency.p99_us))),
        Series::new("p99.9", of(Target::Gallery, &|r| ms(r.latency.p999_us))),
    ];
    let mut peaks: Vec<(String, f64)> =
        [Target::Gallery, Target::Noop, Target::Crud, Target::Kafka]
            .into_iter()
            .filter_map(|t| peak(points, t).map(|p| (t.short_label().to_owned(), p.report.rps)))
            .collect();
    if let (Some(a), Some(c)) = (peak(points, Target::Noop), peak(points, Target::Kafka)) {
        peaks.push((
            "1/(1/a + 1/c)".to_owned(),
            combined_ceiling(a.report.rps, c.report.rps),
        ));
    }
    let mut written = Vec::new();
    if !peaks.is_empty() {
        let path = dir.join("like-peaks.svg");
        plot::bars(
            &path,
            "like: the peak of each target, answers/s",
            "answers/s",
            &peaks,
        )?;
        written.push(path.display().to_string());
    }
    let path = dir.join("like-throughput.svg");
    plot::lines_log_x(
        &path,
        "like: answers/s against concurrency (Kafka: events in flight)",
        "connections (Kafka baseline: events in flight)",
        "answers/s",
        &throughput,
    )?;
    written.push(path.display().to_string());
    if latency.iter().any(|s| !s.points.is_empty()) {
        let path = dir.join("like-latency.svg");
        plot::lines_log_x(
            &path,
            "like: Gallery's latency against connections (closed loop)",
            "connections",
            "ms",
            &latency,
        )?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

fn progress(target: Target, concurrency: usize, r: &LoadReport) {
    eprintln!(
        "{:?} {concurrency}: {:.0} rps, p50 {:.2} ms, p99 {:.2} ms, {} wrong",
        target,
        r.rps,
        r.latency.p50_us as f64 / 1000.0,
        r.latency.p99_us as f64 / 1000.0,
        r.failed()
    );
}

pub async fn measure(args: &LikeArgs, deployment: &Deployment) -> anyhow::Result<Measured> {
    let (exe, gallery_bin) = crate::process::binaries(args.gallery_bin.as_deref())?;
    let dir = &deployment.dir;
    let topic = deployment.topics().interactions();

    // Gallery first: it creates the topics and registers the schemas the Kafka baseline uses.
    anyhow::ensure!(
        (1..=16).contains(&args.instances),
        "--instances must be between 1 and 16"
    );
    let mut gallery = Vec::new();
    let mut gallery_addrs = Vec::new();
    for _ in 0..args.instances {
        let addr = free_addr()?;
        let mut command = deployment.gallery(&gallery_bin, "commands", addr, free_addr()?)?;
        command.envs(args.gallery_env.iter().map(|(k, v)| (k, v)));
        gallery.push(Server::start_healthy("gallery-commands", command, addr, dir).await?);
        gallery_addrs.push(addr);
    }

    let noop_addr = free_addr()?;
    let mut noop = None;
    if args.measures(Only::Noop) {
        let mut command = Command::new(&exe);
        command
            .args(["serve", "noop", "--listen", &noop_addr.to_string()])
            .args(["--topic", &topic])
            .env("GALLERY_BENCH_JWT_SECRET", &deployment.jwt_secret);
        noop = Some(Server::start_healthy("noop", command, noop_addr, dir).await?);
    }
    let crud_addr = free_addr()?;
    let mut crud = None;
    if args.measures(Only::Crud) {
        let mut command = Command::new(&exe);
        command
            .args(["serve", "crud", "--listen", &crud_addr.to_string()])
            .args(["--pool-size", &args.crud_pool.to_string()])
            .env("GALLERY_BENCH_CRUD_URL", deployment.crud_url()?)
            .env("GALLERY_BENCH_JWT_SECRET", &deployment.jwt_secret);
        crud = Some(Server::start_healthy("crud", command, crud_addr, dir).await?);
    }

    let mut loader = Loader {
        exe,
        args,
        deployment,
        offset: 0,
    };
    let mut points = Vec::new();
    let mut profile = None;
    let highest = args.connections.iter().copied().max().unwrap_or(1);
    // Interleaved per concurrency, so that a change of the machine's load over the run
    // touches every target alike.
    for &connections in &args.connections {
        for (target, addrs, wanted) in [
            (
                Target::Noop,
                std::slice::from_ref(&noop_addr),
                noop.is_some(),
            ),
            (
                Target::Crud,
                std::slice::from_ref(&crud_addr),
                crud.is_some(),
            ),
            (
                Target::Gallery,
                &gallery_addrs[..],
                args.measures(Only::Gallery),
            ),
        ] {
            if !wanted {
                continue;
            }
            let recording = match (target, gallery.first().and_then(Server::pid)) {
                (Target::Gallery, Some(pid)) if args.perf && connections == highest => Some(
                    crate::profile::start(pid, dir, "gallery-commands", args.perf_calls)?,
                ),
                _ => None,
            };
            let report = loader.http(target, addrs, connections, None).await?;
            if let Some(recording) = recording {
                profile = Some(recording.finish().await?);
            }
            progress(target, connections, &report);
            points.push(Point {
                target,
                concurrency: connections,
                report,
            });
        }
    }
    if args.measures(Only::Kafka) {
        for &in_flight in &args.in_flight {
            let report = loader.kafka(in_flight).await?;
            progress(Target::Kafka, in_flight, &report);
            points.push(Point {
                target: Target::Kafka,
                concurrency: in_flight,
                report,
            });
        }
    }
    let mut half = None;
    if let Some(best) = peak(&points, Target::Gallery) {
        let rate = best.report.rps / 2.0;
        let connections = best.concurrency;
        let report = loader
            .http(Target::Gallery, &gallery_addrs, connections, Some(rate))
            .await?;
        progress(Target::Gallery, connections, &report);
        half = Some(HalfRate {
            rate,
            connections,
            report,
        });
    }
    for server in gallery.into_iter().chain(noop).chain(crud) {
        server.stop().await?;
    }
    Ok((points, half, profile))
}
