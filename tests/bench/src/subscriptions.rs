//! The scenario `subscriptions`: open `artworkStats` subscriptions over WebSocket, held by
//! query API instances (as many as the open-file limit asks: at most `--per-server`
//! connections each) in a real deployment (command service, projector, query APIs), watched by
//! the harness's own watchers ([`crate::watch`], at most `--per-process` connections each).
//!
//! Up: the watchers are added step by step; at each step, once every subscription got its
//! first value and nothing moves, the query APIs' resident memory is read (idle). Down: at
//! each step, from the highest, likes flow through the command service (each artwork liked
//! one at a time, each like by a new user, so the k-th like of an artwork makes its count k)
//! and every watcher's delay from a like's 202 to the first count that includes it is
//! measured; then the watchers of that step are stopped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use gallery_commands::{Principal, TokenKeys};
use gallery_schemas::{Role, UserId};
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::deployment::Deployment;
use crate::latency::{self, Latencies, monotonic_ns};
use crate::load::{Checker, Expect, artwork_name, user_name};
use crate::machine::LoadAverage;
use crate::plot::{self, Series};
use crate::process::{Server, free_addr};
use crate::report::{Goal, Verdict, goals_table, thousands, unknown, verdict};
use crate::watch::{Layout, Like, Ready, WatchReport};

#[derive(Debug, clap::Args)]
pub struct SubscriptionsArgs {
    /// Subscriptions held at each step (ascending).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "2000,10000,25000,50000,100000"
    )]
    steps: Vec<u64>,
    /// Most connections one query API instance holds (its open files are capped at 20,000).
    #[arg(long, default_value_t = 17_000)]
    per_server: u64,
    /// Most connections one watcher process holds.
    #[arg(long, default_value_t = 17_000)]
    per_process: u64,
    /// Every n-th subscription watches the hot artwork.
    #[arg(long, default_value_t = 5)]
    hot_every: u64,
    /// The other subscriptions are spread over this many artworks.
    #[arg(long, default_value_t = 1_000)]
    artworks: u64,
    /// Artworks liked besides the hot one (of the spread ones).
    #[arg(long, default_value_t = 49)]
    liked: u64,
    /// Seconds between two likes of one artwork.
    #[arg(long, default_value_t = 1.0)]
    like_every: f64,
    /// Seconds of likes at each step.
    #[arg(long, default_value_t = 10.0)]
    like_seconds: f64,
    /// Seconds after the last like before the watchers report (a like not seen by then is
    /// missed).
    #[arg(long, default_value_t = 5.0)]
    settle: f64,
    /// Connections each watcher opens per second.
    #[arg(long, default_value_t = 1_500.0)]
    open_rate: f64,
    /// Partitions of the run's topics.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Where the plots go.
    #[arg(long, default_value = "docs/plots")]
    plots: PathBuf,
    /// Profile the first query API with `perf` while likes flow at the highest step.
    #[arg(long)]
    perf: bool,
    /// A `GALLERY_*` setting for the query APIs (`KEY=VALUE`, repeatable).
    #[arg(long = "query-env", value_parser = key_value)]
    query_env: Vec<(String, String)>,
    /// The `gallery` binary (default: the one beside this one, built by `scripts/bench`).
    #[arg(long)]
    gallery_bin: Option<PathBuf>,
}

fn key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((k, v)) if k.starts_with("GALLERY_") => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!(
            "expected GALLERY_<SECTION>__<KEY>=VALUE, got `{raw}`"
        )),
    }
}

/// The query APIs' memory with `subscriptions` idle subscriptions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Idle {
    pub subscriptions: u64,
    /// Resident memory of all query API instances together.
    pub rss_bytes: u64,
}

/// The likes' fan-out with `subscriptions` subscriptions.
#[derive(Debug, Clone, Default)]
pub struct Fanout {
    pub subscriptions: u64,
    pub hot_watchers: u64,
    pub likes: u64,
    pub hot: Latencies,
    pub spread: Latencies,
    pub all: Latencies,
    pub missed: u64,
    pub messages: u64,
    pub wrong: u64,
    pub first_wrong: Option<String>,
    pub load: LoadAverage,
}

impl Fanout {
    fn clean(&self) -> bool {
        self.wrong == 0 && self.missed == 0 && self.all.count > 0
    }
}

/// Resident bytes per subscription between `base` (none) and each step, and between steps.
pub fn per_subscription(base: u64, idle: &[Idle]) -> Vec<(u64, f64, f64)> {
    let mut out = Vec::new();
    let mut previous = Idle {
        subscriptions: 0,
        rss_bytes: base,
    };
    for step in idle {
        let whole = (step.rss_bytes as f64 - base as f64) / step.subscriptions.max(1) as f64;
        let added = step
            .subscriptions
            .saturating_sub(previous.subscriptions)
            .max(1);
        let marginal = (step.rss_bytes as f64 - previous.rss_bytes as f64) / added as f64;
        out.push((step.subscriptions, whole, marginal));
        previous = *step;
    }
    out
}

/// The goals: memory per idle subscription, where fan-out's p99 passes 100 ms, and 100,000
/// live subscriptions with a like reaching its watchers at p99 < 1 s.
pub fn subscription_goals(base: u64, idle: &[Idle], fanout: &[Fanout]) -> Vec<Goal> {
    let mut goals = Vec::new();
    goals.push(match per_subscription(base, idle).last() {
        Some((n, whole, _)) => Goal {
            what: format!(
                "query API RSS per idle subscription (RSS with {} minus with none, divided)",
                thousands(*n as f64)
            ),
            measured: format!("{:.1} KB", whole / 1000.0),
            goal: "≤ 16 KB",
            verdict: verdict(*whole <= 16_000.0),
        },
        None => unknown("query API RSS per idle subscription", "≤ 16 KB"),
    });
    let mut clean: Vec<&Fanout> = fanout.iter().filter(|f| f.clean()).collect();
    clean.sort_by_key(|f| f.subscriptions);
    goals.push(if clean.is_empty() {
        unknown(
            "subscriptions at which fan-out p99 passes 100 ms",
            "reported",
        )
    } else {
        let past = clean.iter().find(|f| f.all.p99_us > 100_000);
        Goal {
            what: "subscriptions at which fan-out p99 passes 100 ms".into(),
            measured: match past {
                Some(f) => format!(
                    "{} (p99 {:.0} ms)",
                    thousands(f.subscriptions as f64),
                    f.all.p99_us as f64 / 1000.0
                ),
                None => format!(
                    "not up to {} (p99 ≤ 100 ms at every step)",
                    thousands(clean.last().map_or(0, |f| f.subscriptions) as f64)
                ),
            },
            goal: "reported",
            verdict: Verdict::Met,
        }
    });
    let big = fanout.iter().find(|f| f.subscriptions >= 100_000);
    goals.push(match big {
        Some(f) if f.clean() => {
            let p99 = f.all.p99_us as f64 / 1000.0;
            Goal {
                what: format!(
                    "{} live subscriptions: p99 from a like's 202 to its watchers",
                    thousands(f.subscriptions as f64)
                ),
                measured: format!("{p99:.0} ms"),
                goal: "< 1 s",
                verdict: verdict(p99 < 1000.0),
            }
        }
        _ => unknown(
            "100,000 live subscriptions: p99 from a like's 202 to its watchers",
            "< 1 s",
        ),
    });
    goals
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

/// The idle memory table.
pub fn idle_table(base: u64, idle: &[Idle], servers: usize) -> String {
    let mut out = format!(
        "| idle subscriptions | query APIs' RSS (MB, {servers} instances) | per subscription (KB, since none) | per subscription (KB, since the previous step) |\n| ---: | ---: | ---: | ---: |\n| 0 | {:.1} | | |\n",
        base as f64 / 1e6
    );
    for ((n, whole, marginal), step) in per_subscription(base, idle).iter().zip(idle) {
        out.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1} |\n",
            thousands(*n as f64),
            step.rss_bytes as f64 / 1e6,
            whole / 1000.0,
            marginal / 1000.0
        ));
    }
    out
}

/// The fan-out table.
pub fn fanout_table(fanout: &[Fanout]) -> String {
    let mut out = String::from(
        "| subscriptions | on the hot artwork | likes | deliveries | p50 ms | p99 ms | p99.9 ms | max ms | hot p99 ms | others p99 ms | missed | wrong | load average |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    let mut notes = Vec::new();
    for f in fanout {
        let wrong = if f.wrong == 0 {
            "0".to_owned()
        } else {
            notes.push(format!(
                "{} subscriptions: {}",
                thousands(f.subscriptions as f64),
                f.first_wrong.as_deref().unwrap_or("?")
            ));
            format!("{} [{}]", f.wrong, notes.len())
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {wrong} | {} |\n",
            thousands(f.subscriptions as f64),
            thousands(f.hot_watchers as f64),
            thousands(f.likes as f64),
            thousands(f.all.count as f64),
            ms(f.all.p50_us),
            ms(f.all.p99_us),
            ms(f.all.p999_us),
            ms(f.all.max_us),
            ms(f.hot.p99_us),
            ms(f.spread.p99_us),
            f.missed,
            f.load,
        ));
    }
    for (i, note) in notes.iter().enumerate() {
        out.push_str(&format!("\n[{}] {note}\n", i + 1));
    }
    out
}

/// Raises this process's open-file limit to its hard limit (the processes it starts inherit
/// it) and returns it.
fn raise_open_files() -> anyhow::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(hard)
}

/// Resident memory of process `pid`, in bytes.
fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")?;
    Ok(kb * 1024)
}

/// A running watcher process.
struct Watcher {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    connections: u64,
}

impl Watcher {
    async fn line<T: serde::de::DeserializeOwned>(&mut self) -> anyhow::Result<T> {
        let line = self
            .stdout
            .next_line()
            .await?
            .context("a watcher ended (see its log)")?;
        serde_json::from_str(&line).with_context(|| format!("a watcher said: {line}"))
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        self.stdin.write_all(b"quit\n").await?;
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}

struct Run<'a> {
    args: &'a SubscriptionsArgs,
    deployment: &'a Deployment,
    exe: PathBuf,
    layout: Layout,
    servers: Vec<SocketAddr>,
    pids: Vec<u32>,
    commands: SocketAddr,
    /// Likes sent so far per artwork.
    counts: HashMap<u64, i64>,
    likes: Vec<Like>,
    users: u64,
}

impl Run<'_> {
    fn rss(&self) -> anyhow::Result<u64> {
        self.pids.iter().map(|p| rss_bytes(*p)).sum()
    }

    async fn add_watcher(&self, first: u64, connections: u64) -> anyhow::Result<Watcher> {
        let log = self.deployment.dir.join(format!("watch-{first}.log"));
        let servers: Vec<String> = self.servers.iter().map(ToString::to_string).collect();
        let mut child = Command::new(&self.exe)
            .arg("watch")
            .args(["--servers", &servers.join(",")])
            .args(["--first", &first.to_string()])
            .args(["--connections", &connections.to_string()])
            .args(["--hot-every", &self.layout.hot_every.to_string()])
            .args(["--artworks", &self.layout.artworks.to_string()])
            .args(["--per-source", &self.layout.per_source.to_string()])
            .args(["--open-rate", &self.args.open_rate.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .context("could not start a watcher")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        Ok(Watcher {
            child,
            stdin,
            stdout,
            connections,
        })
    }

    /// Sends likes for `--like-seconds`: every liked artwork one like per `--like-every`
    /// seconds, one at a time, each by a new user.
    async fn send_likes(&mut self) -> anyhow::Result<(u64, u64, Option<String>)> {
        let keys = Arc::new(TokenKeys::from_secret(
            self.deployment.jwt_secret.as_bytes(),
        )?);
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()?;
        let checker = Checker {
            expect: Expect::Accepted,
            topic: self.deployment.topics().interactions(),
            partitions: self.deployment.partitions,
        };
        let liked: Vec<u64> = (0..=self.args.liked.min(self.layout.artworks)).collect();
        let per_artwork = (self.args.like_seconds / self.args.like_every)
            .floor()
            .max(1.0) as u64;
        let every = Duration::from_secs_f64(self.args.like_every);
        let start = tokio::time::Instant::now();
        let sent = Arc::new(Mutex::new((Vec::new(), 0u64, None::<String>)));
        let mut tasks = Vec::new();
        for (n, &artwork) in liked.iter().enumerate() {
            let first_user = self.users + n as u64 * per_artwork;
            let count = self.counts.get(&artwork).copied().unwrap_or(0);
            let stagger = every.mul_f64(n as f64 / liked.len() as f64);
            let (client, keys, checker, sent) =
                (client.clone(), keys.clone(), checker.clone(), sent.clone());
            let url = format!(
                "http://{}/v1/artworks/{}/like",
                self.commands,
                artwork_name(artwork)
            );
            tasks.push(tokio::spawn(async move {
                let mut count = count;
                for k in 0..per_artwork {
                    tokio::time::sleep_until(start + stagger + every.mul_f64(k as f64)).await;
                    let who =
                        Principal::new(UserId::parse(&user_name(first_user + k))?, Role::Visitor);
                    let token = keys.issue(&who, Duration::from_secs(3600))?;
                    let answer = client.put(&url).bearer_auth(token).send().await;
                    let verdict = match answer {
                        Ok(r) => {
                            let status = r.status();
                            let body = r.bytes().await.unwrap_or_default();
                            checker
                                .check(status, &body, &artwork_name(artwork))
                                .map_err(|kind| {
                                    format!("{kind}: {}", String::from_utf8_lossy(&body))
                                })
                        }
                        Err(e) => Err(format!("{e:#}")),
                    };
                    let at_ns = monotonic_ns();
                    let mut sent = sent.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                    match verdict {
                        Ok(()) => {
                            count += 1;
                            sent.0.push(Like {
                                artwork,
                                count,
                                at_ns,
                            });
                        }
                        Err(e) => {
                            sent.1 += 1;
                            sent.2.get_or_insert(e);
                        }
                    }
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        self.users += liked.len() as u64 * per_artwork;
        let (likes, wrong, first) =
            std::mem::take(&mut *sent.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
        let n = likes.len() as u64;
        for like in likes {
            let c = self.counts.entry(like.artwork).or_default();
            *c = (*c).max(like.count);
            self.likes.push(like);
        }
        Ok((n, wrong, first))
    }

    /// Likes flow while `watchers` hold `subscriptions`; what they saw.
    async fn fanout(
        &mut self,
        watchers: &mut [Watcher],
        subscriptions: u64,
    ) -> anyhow::Result<Fanout> {
        let since = monotonic_ns();
        let (likes, mut wrong, mut first_wrong) = self.send_likes().await?;
        tokio::time::sleep(Duration::from_secs_f64(self.args.settle)).await;
        let log = self.deployment.dir.join("likes.log");
        let text: String = self.likes.iter().map(Like::line).collect();
        std::fs::write(&log, text)?;
        let command = format!("report {} {since}\n", log.display());
        let (mut hot, mut spread) = (latency::histogram()?, latency::histogram()?);
        let mut f = Fanout {
            subscriptions,
            hot_watchers: (0..subscriptions)
                .filter(|g| self.layout.artwork(*g) == 0)
                .count() as u64,
            likes,
            ..Fanout::default()
        };
        for w in watchers.iter_mut() {
            w.stdin.write_all(command.as_bytes()).await?;
            let r: WatchReport = w.line().await?;
            r.hot.add_to(&mut hot)?;
            r.spread.add_to(&mut spread)?;
            f.missed += r.missed;
            f.messages += r.messages;
            wrong += r.failures.values().sum::<u64>();
            if first_wrong.is_none() {
                first_wrong = r.first_failure.clone();
            }
        }
        let mut all: Histogram<u64> = hot.clone();
        all.add(&spread)?;
        f.hot = Latencies::of(&hot);
        f.spread = Latencies::of(&spread);
        f.all = Latencies::of(&all);
        f.wrong = wrong;
        f.first_wrong = first_wrong;
        f.load = LoadAverage::now();
        Ok(f)
    }
}

fn settle() -> Duration {
    Duration::from_secs(3)
}

async fn start(
    name: &'static str,
    command: Command,
    health: SocketAddr,
    dir: &Path,
) -> anyhow::Result<Server> {
    let mut server = Server::start(name, command, dir)?;
    server
        .wait_healthy(health, Duration::from_secs(120))
        .await?;
    Ok(server)
}

type Measured = (u64, Vec<Idle>, Vec<Fanout>, Option<String>, usize);

async fn measure(args: &SubscriptionsArgs, deployment: &Deployment) -> anyhow::Result<Measured> {
    let (exe, gallery_bin) = crate::process::binaries(args.gallery_bin.as_deref())?;
    let dir = &deployment.dir;
    let highest = args.steps.iter().copied().max().unwrap_or(0);
    let instances = highest.div_ceil(args.per_server.max(1)).max(1);

    let commands = free_addr()?;
    let command = deployment.gallery(&gallery_bin, "commands", commands, free_addr()?)?;
    let mut servers = vec![start("gallery-commands", command, commands, dir).await?];
    let metrics = free_addr()?;
    let command = deployment.gallery(&gallery_bin, "projections", free_addr()?, metrics)?;
    servers.push(start("gallery-projections", command, metrics, dir).await?);
    let mut addrs = Vec::new();
    let mut pids = Vec::new();
    let names = [
        "query-api-1",
        "query-api-2",
        "query-api-3",
        "query-api-4",
        "query-api-5",
        "query-api-6",
        "query-api-7",
        "query-api-8",
        "query-api-9",
        "query-api-10",
        "query-api-11",
        "query-api-12",
    ];
    anyhow::ensure!(
        instances as usize <= names.len(),
        "{instances} query API instances asked for; at most {}",
        names.len()
    );
    for name in &names[..instances as usize] {
        let addr = free_addr()?;
        let mut command = deployment.gallery(&gallery_bin, "query-api", addr, free_addr()?)?;
        command.envs(args.query_env.iter().map(|(k, v)| (k, v)));
        let server = start(name, command, addr, dir).await?;
        pids.push(server.pid().context("a query API without a pid")?);
        addrs.push(addr);
        servers.push(server);
    }
    let mut run = Run {
        args,
        deployment,
        exe,
        layout: Layout {
            hot_every: args.hot_every,
            artworks: args.artworks,
            per_source: 16_000,
        },
        servers: addrs,
        pids,
        commands,
        counts: HashMap::new(),
        likes: Vec::new(),
        users: 0,
    };
    tokio::time::sleep(settle()).await;
    let base = run.rss()?;
    eprintln!("{} query APIs up: {:.1} MB", instances, base as f64 / 1e6);

    // Up: add watchers step by step; memory when idle.
    let mut steps: Vec<(u64, Vec<Watcher>)> = Vec::new();
    let mut idle = Vec::new();
    let mut held = 0u64;
    for &step in &args.steps {
        let mut added = Vec::new();
        while held < step {
            let n = (step - held).min(args.per_process);
            added.push(run.add_watcher(held, n).await?);
            held += n;
        }
        let mut ready = 0;
        for w in &mut added {
            let r: Ready = w.line().await?;
            anyhow::ensure!(
                r.failed == 0,
                "{} of {} subscriptions did not start; first: {}",
                r.failed,
                w.connections,
                r.first_failure.unwrap_or_default()
            );
            ready += r.ready;
        }
        tokio::time::sleep(settle()).await;
        let rss = run.rss()?;
        eprintln!(
            "{step} subscriptions ({ready} new): {:.1} MB",
            rss as f64 / 1e6
        );
        idle.push(Idle {
            subscriptions: step,
            rss_bytes: rss,
        });
        steps.push((step, added));
    }

    // Down: likes at each step, from the highest.
    let mut fanout = Vec::new();
    let mut profile = None;
    let mut all: Vec<Watcher> = Vec::new();
    for (_, added) in &mut steps {
        all.append(added);
    }
    for (i, &(step, _)) in steps.iter().enumerate().rev() {
        let recording = match run.pids.first() {
            Some(pid) if args.perf && i + 1 == steps.len() => {
                Some(crate::profile::start(*pid, dir, "query-api-1", false)?)
            }
            _ => None,
        };
        let f = run.fanout(&mut all, step).await?;
        if let Some(recording) = recording {
            profile = Some(recording.finish().await?);
        }
        eprintln!(
            "{step} subscriptions: {} likes, {} deliveries, p50 {} ms, p99 {} ms, {} missed, {} wrong",
            f.likes,
            f.all.count,
            ms(f.all.p50_us),
            ms(f.all.p99_us),
            f.missed,
            f.wrong
        );
        fanout.push(f);
        let keep = if i == 0 { 0 } else { steps[i - 1].0 };
        while all.iter().map(|w| w.connections).sum::<u64>() > keep {
            if let Some(w) = all.pop() {
                w.stop().await?;
            }
        }
    }
    fanout.reverse();
    for server in servers {
        server.stop().await?;
    }
    Ok((base, idle, fanout, profile, instances as usize))
}

pub fn run(args: &SubscriptionsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.steps.is_empty() && args.steps.windows(2).all(|w| w[0] < w[1]) && args.steps[0] > 0,
        "--steps must be positive and ascending"
    );
    anyhow::ensure!(
        args.like_every > 0.0
            && args.like_seconds > 0.0
            && args.like_seconds <= 120.0
            && (0.0..=60.0).contains(&args.settle),
        "--like-every and --like-seconds must be positive (at most 120 s), --settle in [0, 60]"
    );
    let open_files = raise_open_files()?;
    anyhow::ensure!(
        args.per_server + 1_000 <= open_files && args.per_process + 100 <= open_files,
        "--per-server and --per-process must leave room under the open-file limit ({open_files})"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let run = crate::deployment::run(args.partitions, async |d| measure(args, d).await).await?;
        run.print_heading("subscriptions: open `artworkStats` subscriptions over WebSocket, and a like's fan-out");
        let (base, idle, fanout, profile, instances) = run.measured;
        println!(
            "- a real deployment: the command service, the projector, {instances} query API instances (at most {} connections each); watchers (the harness's own `graphql-transport-ws` client, at most {} connections per process) spread over the instances and over 127.0.0.x source addresses; every {}th subscription on one hot artwork, the others over {} artworks",
            args.per_server, args.per_process, args.hot_every, args.artworks
        );
        println!(
            "- idle: resident memory of all query APIs once every subscription of the step got its first value, {} s after; fan-out (from the highest step down): {} artworks (the hot one and {} others) each liked every {} s for {} s, one like at a time, each by a new user; a delivery is the time from a like's 202 until one watcher of its artwork first sees a count that includes it; every message checked (its subscription, a count never going down nor above the likes sent, no error); a like not seen {} s after the last is missed",
            settle().as_secs(), args.liked + 1, args.liked, args.like_every, args.like_seconds, args.settle
        );
        for (k, v) in &args.query_env {
            println!("- query API setting: `{k}={v}`");
        }
        println!("\n{}", idle_table(base, &idle, instances));
        println!("{}", fanout_table(&fanout));
        println!("{}", goals_table(&subscription_goals(base, &idle, &fanout)));
        draw(&args.plots, base, &idle, &fanout)?;
        if let Some(profile) = profile {
            println!("\nperf profile of one query API while likes flow at the highest step:\n```\n{profile}\n```");
        }
        anyhow::Ok(())
    })
}

/// `subscriptions-memory.svg` (the query APIs' RSS against idle subscriptions) and
/// `subscriptions-fanout.svg` (fan-out latencies against subscriptions).
fn draw(dir: &Path, base: u64, idle: &[Idle], fanout: &[Fanout]) -> anyhow::Result<()> {
    let mut rss = vec![(0.0, base as f64 / 1e6)];
    rss.extend(
        idle.iter()
            .map(|i| (i.subscriptions as f64, i.rss_bytes as f64 / 1e6)),
    );
    plot::lines(
        &dir.join("subscriptions-memory.svg"),
        "Query APIs' resident memory with idle artworkStats subscriptions",
        "subscriptions (all instances)",
        "RSS, MB (all instances)",
        &[Series::new("RSS", rss)],
    )?;
    let line = |name: &str, pick: fn(&Fanout) -> u64| {
        Series::new(
            name,
            fanout
                .iter()
                .filter(|f| f.all.count > 0)
                .map(|f| (f.subscriptions as f64, pick(f) as f64 / 1000.0))
                .collect(),
        )
    };
    if fanout.iter().any(|f| f.all.count > 0) {
        plot::lines(
            &dir.join("subscriptions-fanout.svg"),
            "A like's 202 until its artwork's watchers see it",
            "subscriptions (all instances)",
            "latency, ms",
            &[
                line("p50", |f| f.all.p50_us),
                line("p99", |f| f.all.p99_us),
                line("p99.9", |f| f.all.p999_us),
                line("p99, hot artwork", |f| f.hot.p99_us),
            ],
        )?;
    }
    eprintln!("plots in {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lat(p99_ms: u64) -> Latencies {
        Latencies {
            count: 100,
            p50_us: 1000,
            p99_us: p99_ms * 1000,
            p999_us: p99_ms * 1000,
            max_us: p99_ms * 1000,
        }
    }

    fn fan(n: u64, p99_ms: u64) -> Fanout {
        Fanout {
            subscriptions: n,
            likes: 10,
            all: lat(p99_ms),
            ..Fanout::default()
        }
    }

    #[test]
    fn memory_per_subscription_counts_from_none_and_between_steps() {
        let idle = [
            Idle {
                subscriptions: 1_000,
                rss_bytes: 120_000_000,
            },
            Idle {
                subscriptions: 3_000,
                rss_bytes: 140_000_000,
            },
        ];
        let per = per_subscription(100_000_000, &idle);
        assert_eq!(per[0], (1_000, 20_000.0, 20_000.0));
        assert!((per[1].1 - 13_333.3).abs() < 1.0);
        assert_eq!(per[1].2, 10_000.0);
        let goals = subscription_goals(100_000_000, &idle, &[]);
        assert_eq!(goals[0].verdict, Verdict::Met);
        assert_eq!(goals[0].measured, "13.3 KB");
        assert!(matches!(goals[2].verdict, Verdict::Unknown(_)));
    }

    #[test]
    fn fanout_goals_name_the_step_past_100_ms_and_judge_100_000() {
        let runs = [fan(2_000, 20), fan(50_000, 150), fan(100_000, 900)];
        let goals = subscription_goals(0, &[], &runs);
        assert_eq!(goals[1].measured, "50,000 (p99 150 ms)");
        assert_eq!(goals[2].verdict, Verdict::Met);
        let slow = [fan(100_000, 1_200)];
        assert_eq!(
            subscription_goals(0, &[], &slow)[2].verdict,
            Verdict::NotMet
        );
        let missed = [Fanout {
            missed: 1,
            ..fan(100_000, 10)
        }];
        assert!(matches!(
            subscription_goals(0, &[], &missed)[2].verdict,
            Verdict::Unknown(_)
        ));
        let table = fanout_table(&[Fanout {
            wrong: 2,
            first_wrong: Some("count went down".into()),
            ..fan(2_000, 20)
        }]);
        assert!(table.contains("| 2 [1] |"), "{table}");
        assert!(
            table.contains("[1] 2,000 subscriptions: count went down"),
            "{table}"
        );
    }
}
