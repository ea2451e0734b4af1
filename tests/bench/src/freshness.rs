//! The scenario `freshness`: how long after a like's `202` the read side shows it, while the
//! command service takes a steady load. The roles run as separate processes (commands, the
//! projector, the query API). First the command service's peak is measured (closed loop; its
//! likes pile up while no projector runs), then the projector is started and the time it
//! takes to apply that backlog gives its rate. Then likes are sent open loop at half the peak
//! (or `--rate`), and beside them a sampler likes artworks of its own, one new user per like,
//! and for each like measures the time from its `202` until
//! (a) a GraphQL query of the artwork, polled on a kept-alive connection, shows the new count and
//! (b) an `artworkStats` subscription of the artwork delivers it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use gallery_commands::TokenKeys;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::deployment::{self, Deployment};
use crate::latency::{self, Latencies};
use crate::load::{Checker, Expect, LoadReport, Run, Workload, token};
use crate::plot::Series;
use crate::process::{free_addr, report, start_healthy};
use crate::report::{Goal, Verdict, goals_table, thousands};
use crate::ws::{Arrival, Subscriptions};

#[derive(Debug, clap::Args)]
pub struct FreshnessArgs {
    /// The steady rate of likes (per second); default: half the peak measured first.
    #[arg(long)]
    rate: Option<f64>,
    /// Connections of the peak measurement (and of the steady load).
    #[arg(long, default_value_t = 256)]
    connections: usize,
    /// Seconds of the peak measurement.
    #[arg(long, default_value_t = 5.0)]
    peak_seconds: f64,
    /// Measured seconds of the steady load.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Seconds of steady load before the sampler starts.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// The sampler likes one of its artworks every this many milliseconds.
    #[arg(long, default_value_t = 25)]
    sample_every_ms: u64,
    /// Artworks the sampler likes in turn (each watched by its own subscription).
    #[arg(long, default_value_t = 16)]
    sample_artworks: usize,
    /// Pause between two polls of the GraphQL query.
    #[arg(long, default_value_t = 1)]
    poll_ms: u64,
    /// A like not seen within this many milliseconds counts as not seen.
    #[arg(long, default_value_t = 5000)]
    patience_ms: u64,
    /// Distinct users and artworks of the steady load.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    #[arg(long, default_value_t = 10_000)]
    artworks: u64,
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// A `GALLERY_*` setting for every role (`KEY=VALUE`, repeatable).
    #[arg(long = "gallery-env", value_parser = crate::like::key_value)]
    gallery_env: Vec<(String, String)>,
    /// Where the plot goes (`freshness-latency.svg`).
    #[arg(long, default_value = "docs/plots")]
    plots: PathBuf,
    /// The `gallery` binary (default: the one beside this one, built by `scripts/bench`).
    #[arg(long)]
    gallery_bin: Option<PathBuf>,
}

/// How one path (query or subscription) did over the samples.
#[derive(Debug, Clone, Default)]
pub struct PathResult {
    pub latencies: Latencies,
    /// Likes not seen within the patience.
    pub unseen: u64,
    /// Wrong answers (errors, counts beyond the expected).
    pub wrong: u64,
    pub first_wrong: Option<String>,
}

/// What one sampled like showed.
#[derive(Debug)]
enum Seen {
    After(Duration),
    Never,
    Wrong(String),
}

/// The sampler's tallies.
struct Tally {
    histogram: Histogram<u64>,
    result: PathResult,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            histogram: latency::histogram()?,
            result: PathResult::default(),
        })
    }

    fn add(&mut self, seen: Seen) {
        match seen {
            Seen::After(d) => latency::record(&mut self.histogram, d),
            Seen::Never => self.result.unseen += 1,
            Seen::Wrong(why) => {
                self.result.wrong += 1;
                self.result.first_wrong.get_or_insert(why);
            }
        }
    }

    fn finish(mut self) -> PathResult {
        self.result.latencies = Latencies::of(&self.histogram);
        self.result
    }
}

/// What the run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    pub peak: Option<LoadReport>,
    /// Messages the projector applied from the peak's backlog, and how long it took.
    pub catch_up: Option<(u64, Duration)>,
    pub rate: f64,
    pub steady: LoadReport,
    /// Likes the sampler sent, and those refused.
    pub sampled: u64,
    pub refused: u64,
    pub query: PathResult,
    pub subscription: PathResult,
    /// The projector's batches over the sampler's window.
    pub batches: Option<Batches>,
}

/// The projector's committed batches (Postgres), from its metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Batches {
    pub count: f64,
    pub messages: f64,
    /// Time applying and committing them, in all.
    pub seconds: f64,
}

impl Batches {
    /// From Prometheus' text format.
    pub fn parse(text: &str) -> Self {
        let sum = |name: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(name) && l.contains("store=\"postgres\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        Self {
            count: sum("gallery_projection_batch_seconds_count{"),
            messages: sum("gallery_projection_messages_total{"),
            seconds: sum("gallery_projection_batch_seconds_sum{"),
        }
    }

    /// What happened between `self` and the later `then`.
    pub fn until(&self, then: &Self) -> Self {
        Self {
            count: then.count - self.count,
            messages: then.messages - self.messages,
            seconds: then.seconds - self.seconds,
        }
    }
}

pub fn run(args: &FreshnessArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.sample_artworks > 0 && args.sample_every_ms > 0 && args.connections > 0,
        "--sample-artworks, --sample-every-ms and --connections must be positive"
    );
    anyhow::ensure!(
        args.seconds > 0.0 && args.seconds <= 600.0 && (0.0..=60.0).contains(&args.warmup),
        "--seconds must be in (0, 600] and --warmup in [0, 60]"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let run = deployment::run(args.partitions, async |d| measure(args, d).await).await?;
        run.print_heading("freshness: a like's `202` until GraphQL and a subscription show it");
        let measured = run.measured;
        println!(
            "- roles as separate processes: `gallery commands`, `gallery projections`, `gallery query-api` (Postgres read model, cache on); {} partitions",
            args.partitions
        );
        println!(
            "- steady load: likes of {} users on {} artworks, open loop over {} connections, {} s before the sampler starts, then {} s measured; every answer checked",
            args.users, args.artworks, args.connections, args.warmup, args.seconds
        );
        println!(
            "- sampler: a like every {} ms, in turn on {} artworks of its own (one new user per like, so each like adds one), each watched by an `artworkStats` subscription; the query `artwork(id) {{ likeCount }}` polled every {} ms on one kept-alive connection; latency from the `202` until the new count is seen; not seen within {} ms counts as not seen",
            args.sample_every_ms, args.sample_artworks, args.poll_ms, args.patience_ms
        );
        for (k, v) in &args.gallery_env {
            println!("- setting of every role: `{k}={v}`");
        }
        println!("\n{}", table(&measured));
        println!("{}", goals_table(&goals(&measured)));
        let plot = args.plots.join("freshness-latency.svg");
        crate::plot::lines(
            &plot,
            "freshness: a like's 202 until it is seen",
            "percentile",
            "ms",
            &[
                Series::new("GraphQL query", measured.query.latencies.percentile_points()),
                Series::new(
                    "artworkStats subscription",
                    measured.subscription.latencies.percentile_points(),
                ),
            ],
        )?;
        println!("\nplot: {}", plot.display());
        anyhow::Ok(())
    })
}

/// The measured points as a Markdown table.
pub fn table(m: &Measured) -> String {
    let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
    let mut out = String::new();
    out.push_str(
        "| measured | count | rate | p50 ms | p99 ms | p99.9 ms | max ms | not seen | wrong |\n",
    );
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    let mut load_row = |what: &str, r: &LoadReport| {
        out.push_str(&format!(
            "| {what} | {} | {} rps | {} | {} | {} | {} | — | {} |\n",
            thousands((r.ok + r.failed()) as f64),
            thousands(r.rps),
            ms(r.latency.p50_us),
            ms(r.latency.p99_us),
            ms(r.latency.p999_us),
            ms(r.latency.max_us),
            r.failed()
        ));
    };
    if let Some(peak) = &m.peak {
        load_row(
            "command service peak (closed loop), `PUT like` to 202",
            peak,
        );
    }
    load_row(
        &format!(
            "steady load, {} rps offered (open loop), `PUT like` to 202",
            thousands(m.rate)
        ),
        &m.steady,
    );
    if let Some((messages, took)) = m.catch_up {
        out.push_str(&format!(
            "| projector applying the peak's backlog | {} messages | {} msg/s | | | | {:.2} s | — | — |\n",
            thousands(messages as f64),
            thousands(messages as f64 / took.as_secs_f64().max(1e-9)),
            took.as_secs_f64()
        ));
    }
    for (what, p) in [
        ("202 until the GraphQL query shows it", &m.query),
        (
            "202 until the `artworkStats` subscription delivers it",
            &m.subscription,
        ),
    ] {
        out.push_str(&format!(
            "| {what} | {} of {} likes | | {} | {} | {} | {} | {} | {} |\n",
            p.latencies.count,
            m.sampled,
            ms(p.latencies.p50_us),
            ms(p.latencies.p99_us),
            ms(p.latencies.p999_us),
            ms(p.latencies.max_us),
            p.unseen,
            p.wrong
        ));
    }
    if let Some(b) = m.batches.filter(|b| b.count > 0.0) {
        out.push_str(&format!(
            "| projector batches while sampling (apply and commit) | {} batches | {:.1} msg/batch | | | | {:.2} ms mean | — | — |\n",
            thousands(b.count),
            b.messages / b.count,
            b.seconds * 1000.0 / b.count
        ));
    }
    for (what, p) in [("query", &m.query), ("subscription", &m.subscription)] {
        if let Some(first) = &p.first_wrong {
            out.push_str(&format!("\nfirst wrong answer of the {what}: {first}\n"));
        }
    }
    if m.refused > 0 {
        out.push_str(&format!(
            "\n{} of the sampler's likes were refused\n",
            m.refused
        ));
    }
    out
}

/// The goals: p99 under 50 ms on both paths, with every sampled like seen and right, while
/// the steady load is served.
pub fn goals(m: &Measured) -> Vec<Goal> {
    let kept_up = m.steady.failed() == 0 && m.steady.rps >= 0.95 * m.rate;
    [
        ("GraphQL query", &m.query),
        ("subscription", &m.subscription),
    ]
    .into_iter()
    .map(|(what, p)| {
        let p99_ms = p.latencies.p99_us as f64 / 1000.0;
        let clean = p.unseen == 0 && p.wrong == 0 && m.refused == 0 && p.latencies.count > 0;
        Goal {
            what: format!(
                "p99 of a like's 202 until the {what} shows it, at {} rps",
                thousands(m.rate)
            ),
            measured: format!(
                "{p99_ms:.2} ms ({} rps served, {} not seen, {} wrong)",
                thousands(m.steady.rps),
                p.unseen,
                p.wrong
            ),
            goal: "< 50 ms",
            verdict: if !clean || !kept_up {
                Verdict::Unknown("likes not seen, wrong answers, or the load not served")
            } else if p99_ms < 50.0 {
                Verdict::Met
            } else {
                Verdict::NotMet
            },
        }
    })
    .collect()
}

async fn measure(args: &FreshnessArgs, deployment: &Deployment) -> anyhow::Result<Measured> {
    let (exe, gallery_bin) = crate::process::binaries(args.gallery_bin.as_deref())?;
    let dir = &deployment.dir;
    let topic = deployment.topics().interactions();
    let role = |name: &str, listen: SocketAddr, metrics: SocketAddr| {
        let mut command = deployment.gallery(&gallery_bin, name, listen, metrics)?;
        command.envs(args.gallery_env.iter().map(|(k, v)| (k, v)));
        anyhow::Ok(command)
    };
    let commands_addr = free_addr()?;
    let commands = start_healthy(
        "gallery-commands",
        role("commands", commands_addr, free_addr()?)?,
        commands_addr,
        dir,
    )
    .await?;
    let query_addr = free_addr()?;
    let query_api = start_healthy(
        "gallery-query-api",
        role("query-api", query_addr, free_addr()?)?,
        query_addr,
        dir,
    )
    .await?;

    let workload = Workload {
        users: args.users,
        artworks: args.artworks,
    };
    let commands_addrs = [commands_addr];
    let load = |rate: Option<f64>, seconds: f64, warmup: f64, offset: u64| Run {
        addrs: &commands_addrs,
        connections: args.connections,
        seconds,
        warmup,
        rate,
        workload,
        offset,
        threads: 1,
        expect: Expect::Accepted,
        topic: &topic,
        partitions: deployment.partitions,
    };
    let mut offset = 0;
    let (peak, rate) = match args.rate {
        Some(rate) => (None, rate),
        None => {
            let command =
                load(None, args.peak_seconds, 1.0, 0).command(&exe, &deployment.jwt_secret);
            let peak: LoadReport = report("load-peak", command, dir).await?;
            eprintln!(
                "peak: {:.0} rps, p99 {:.2} ms, {} wrong",
                peak.rps,
                peak.latency.p99_us as f64 / 1000.0,
                peak.failed()
            );
            anyhow::ensure!(peak.ok > 0, "the command service accepted no like");
            offset = peak.sent;
            let rate = peak.rps / 2.0;
            (Some(peak), rate)
        }
    };

    // The projector starts now: the peak's likes are its backlog.
    let backlog = deployment.end_offsets(&topic).await?;
    let metrics_addr = free_addr()?;
    let projector_start = Instant::now();
    let projector = start_healthy(
        "gallery-projections",
        role("projections", free_addr()?, metrics_addr)?,
        metrics_addr,
        dir,
    )
    .await?;
    let catch_up = caught_up(metrics_addr, backlog, projector_start).await?;
    if let Some((n, took)) = catch_up {
        eprintln!(
            "projector: {n} messages in {:.2} s ({:.0}/s)",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64().max(1e-9)
        );
    }

    let keys = Arc::new(TokenKeys::from_secret(deployment.jwt_secret.as_bytes())?);
    let sampler = Sampler {
        commands: commands_addr,
        query: query_addr,
        keys,
        checker: Checker {
            expect: Expect::Accepted,
            topic: topic.clone(),
            partitions: deployment.partitions,
        },
        http: reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(30))
            .build()?,
        poll: Duration::from_millis(args.poll_ms),
        patience: Duration::from_millis(args.patience_ms),
    };
    let slots = sampler.slots(args.sample_artworks).await?;

    let steady_command =
        load(Some(rate), args.seconds, args.warmup, offset).command(&exe, &deployment.jwt_secret);
    let log_dir = dir.clone();
    let steady =
        tokio::spawn(
            async move { report::<LoadReport>("load-steady", steady_command, &log_dir).await },
        );
    // The sampler runs inside the measured window of the steady load.
    tokio::time::sleep(Duration::from_secs_f64(args.warmup + 0.1)).await;
    let window = Duration::from_secs_f64(args.seconds);
    let metrics = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;
    let batches_before = scrape(&metrics, metrics_addr)
        .await
        .map(|t| Batches::parse(&t));
    let sampled = sampler
        .run(slots, Duration::from_millis(args.sample_every_ms), window)
        .await?;
    let batches_after = scrape(&metrics, metrics_addr)
        .await
        .map(|t| Batches::parse(&t));
    let batches = match (batches_before, batches_after) {
        (Ok(b), Ok(a)) => Some(b.until(&a)),
        _ => None,
    };
    let steady = steady.await??;
    eprintln!(
        "steady: {:.0} rps of {rate:.0} offered, p99 {:.2} ms, {} wrong",
        steady.rps,
        steady.latency.p99_us as f64 / 1000.0,
        steady.failed()
    );
    for server in [commands, query_api, projector] {
        server.stop().await?;
    }
    Ok(Measured {
        peak,
        catch_up,
        rate,
        steady,
        sampled: sampled.sent,
        refused: sampled.refused,
        query: sampled.query,
        subscription: sampled.subscription,
        batches,
    })
}

/// Waits until the projector has applied `backlog` messages (read from its metrics), and
/// returns how many and how long from its first applied batch; `None` when there was none.
async fn caught_up(
    metrics: SocketAddr,
    backlog: i64,
    started: Instant,
) -> anyhow::Result<Option<(u64, Duration)>> {
    let backlog = u64::try_from(backlog)?;
    if backlog == 0 {
        return Ok(None);
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let text = scrape(&client, metrics).await?;
        let applied = projected_messages(&text);
        let now = Instant::now();
        if applied > 0 && first.is_none() {
            first = Some((applied, now));
        }
        if applied >= backlog {
            // From the first batch seen: the projector's start-up (group join) is not its rate.
            let (at_first, first_at) = first.unwrap_or((0, started));
            let took = now.duration_since(first_at);
            if took.is_zero() {
                return Ok(None);
            }
            return Ok(Some((applied - at_first, took)));
        }
        anyhow::ensure!(
            now < deadline,
            "the projector applied {applied} of {backlog} messages in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `gallery_projection_messages_total` of the Postgres store, from Prometheus' text format.
pub fn projected_messages(text: &str) -> u64 {
    Batches::parse(text).messages as u64
}

async fn scrape(client: &reqwest::Client, metrics: SocketAddr) -> anyhow::Result<String> {
    Ok(client
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await?
        .text()
        .await?)
}

/// The sampler's connections and settings.
struct Sampler {
    commands: SocketAddr,
    query: SocketAddr,
    keys: Arc<TokenKeys>,
    checker: Checker,
    http: reqwest::Client,
    poll: Duration,
    patience: Duration,
}

/// One artwork of the sampler: its count so far and its subscription.
struct Slot {
    artwork: String,
    count: i64,
    updates: mpsc::UnboundedReceiver<Arrival>,
    /// Keeps the WebSocket open.
    _socket: Subscriptions,
}

struct Sampled {
    sent: u64,
    refused: u64,
    query: PathResult,
    subscription: PathResult,
}

const STATS: &str = "subscription($id: ID!) { artworkStats(id: $id) { likes } }";
const QUERY: &str = "query($id: ID!) { artwork(id: $id) { likeCount } }";

impl Sampler {
    /// Subscribes to each of `n` artworks of the sampler's own and takes the first answer
    /// (the current count, 0).
    async fn slots(&self, n: usize) -> anyhow::Result<Vec<Slot>> {
        let mut slots = Vec::with_capacity(n);
        for i in 0..n {
            let artwork = format!("fresh-{i}");
            let mut socket = Subscriptions::connect(self.query, None).await?;
            let mut updates = socket
                .subscribe("stats", STATS, json!({"id": artwork}))
                .await?;
            let (first, _) = tokio::time::timeout(Duration::from_secs(30), updates.recv())
                .await
                .context("no first answer of a subscription within 30 s")?
                .context("a subscription ended at once")?;
            let likes = first
                .as_ref()
                .and_then(|p| p["data"]["artworkStats"]["likes"].as_i64())
                .with_context(|| format!("a subscription's first answer: {first:?}"))?;
            slots.push(Slot {
                artwork,
                count: likes,
                updates,
                _socket: socket,
            });
        }
        Ok(slots)
    }

    /// Likes the slots' artworks in turn, one every `every`, for `window`.
    async fn run(
        self,
        slots: Vec<Slot>,
        every: Duration,
        window: Duration,
    ) -> anyhow::Result<Sampled> {
        let sampler = Arc::new(self);
        let n = u32::try_from(slots.len())?;
        let start = Instant::now();
        let end = start + window;
        let tasks: Vec<_> = slots
            .into_iter()
            .enumerate()
            .map(|(i, slot)| {
                let sampler = sampler.clone();
                let first = start + every * u32::try_from(i).unwrap_or(0);
                tokio::spawn(sampler.slot(slot, first, every * n, end))
            })
            .collect();
        let mut query = Tally::new()?;
        let mut subscription = Tally::new()?;
        let (mut sent, mut refused) = (0, 0);
        for task in tasks {
            for (q, s) in task.await?? {
                sent += 1;
                match (q, s) {
                    (Some(q), Some(s)) => {
                        query.add(q);
                        subscription.add(s);
                    }
                    _ => refused += 1,
                }
            }
        }
        Ok(Sampled {
            sent,
            refused,
            query: query.finish(),
            subscription: subscription.finish(),
        })
    }

    /// One artwork's samples: a like at `first`, then every `period` until `end`.
    async fn slot(
        self: Arc<Self>,
        mut slot: Slot,
        first: Instant,
        period: Duration,
        end: Instant,
    ) -> anyhow::Result<Vec<(Option<Seen>, Option<Seen>)>> {
        let mut samples = Vec::new();
        let mut at = first;
        let mut n = 0u64;
        while at < end {
            tokio::time::sleep_until(at).await;
            let user = format!("fresh-user-{}-{n}", slot.artwork);
            n += 1;
            samples.push(self.sample(&mut slot, &user).await?);
            at += period;
        }
        Ok(samples)
    }

    /// One like of `user` on the slot's artwork, and when each path shows it.
    async fn sample(
        &self,
        slot: &mut Slot,
        user: &str,
    ) -> anyhow::Result<(Option<Seen>, Option<Seen>)> {
        let token = token(&self.keys, user)?;
        let response = self
            .http
            .put(format!(
                "http://{}/v1/artworks/{}/like",
                self.commands, slot.artwork
            ))
            .bearer_auth(&token)
            .send()
            .await;
        let accepted = Instant::now();
        let verdict = match response {
            Ok(r) => {
                let status = r.status();
                let body = r.bytes().await.unwrap_or_default();
                self.checker
                    .check(status, &body, &slot.artwork)
                    .map_err(|kind| format!("{kind}: {}", String::from_utf8_lossy(&body)))
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(why) = verdict {
            tracing::warn!(%why, "a sampled like was refused");
            return Ok((None, None));
        }
        slot.count += 1;
        let expected = slot.count;
        let deadline = accepted + self.patience;
        let (query, subscription) = tokio::join!(
            self.poll(&slot.artwork, expected, accepted, deadline),
            delivered(&mut slot.updates, expected, accepted, deadline),
        );
        Ok((Some(query), Some(subscription)))
    }

    /// Polls the GraphQL query until it shows `expected` likes.
    async fn poll(
        &self,
        artwork: &str,
        expected: i64,
        accepted: Instant,
        deadline: Instant,
    ) -> Seen {
        let url = format!("http://{}/graphql", self.query);
        let body = json!({"query": QUERY, "variables": {"id": artwork}});
        loop {
            let answer = async {
                let r = self.http.post(&url).json(&body).send().await?;
                anyhow::ensure!(r.status().is_success(), "status {}", r.status());
                Ok(r.json::<Value>().await?)
            }
            .await;
            let now = Instant::now();
            match answer.map(|v| v["data"]["artwork"]["likeCount"].as_i64().ok_or(v)) {
                Ok(Ok(count)) if count == expected => return Seen::After(now - accepted),
                Ok(Ok(count)) if count > expected => {
                    return Seen::Wrong(format!("likeCount {count}, expected {expected}"));
                }
                Ok(Ok(_)) => {}
                Ok(Err(v)) => return Seen::Wrong(format!("query answered {v}")),
                Err(e) => return Seen::Wrong(format!("query failed: {e:#}")),
            }
            if now >= deadline {
                return Seen::Never;
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

/// Waits for the subscription to deliver `expected` likes.
async fn delivered(
    updates: &mut mpsc::UnboundedReceiver<Arrival>,
    expected: i64,
    accepted: Instant,
    deadline: Instant,
) -> Seen {
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, updates.recv()).await else {
            return Seen::Never;
        };
        let Some((payload, at)) = next else {
            return Seen::Wrong("the subscription ended".into());
        };
        let Some(payload) = payload else {
            return Seen::Wrong("the subscription completed".into());
        };
        match payload["data"]["artworkStats"]["likes"].as_i64() {
            Some(likes) if likes == expected => {
                return Seen::After(at.saturating_duration_since(accepted));
            }
            Some(likes) if likes > expected => {
                return Seen::Wrong(format!("likes {likes}, expected {expected}"));
            }
            Some(_) => {}
            None => return Seen::Wrong(format!("the subscription sent {payload}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_projected_messages_are_summed_over_the_postgres_store() {
        let text = "# TYPE gallery_projection_messages_total counter\n\
            gallery_projection_messages_total{projection=\"read-model\",store=\"postgres\"} 1200\n\
            gallery_projection_messages_total{projection=\"read-model\",store=\"scylla\"} 99\n\
            gallery_projection_batch_seconds_count{projection=\"read-model\",store=\"postgres\"} 7\n";
        assert_eq!(projected_messages(text), 1200);
        assert_eq!(projected_messages(""), 0);
    }

    fn path(p99_ms: u64, unseen: u64) -> PathResult {
        PathResult {
            latencies: Latencies {
                count: 100,
                p50_us: 1000,
                p99_us: p99_ms * 1000,
                p999_us: p99_ms * 1000,
                max_us: p99_ms * 1000,
            },
            unseen,
            ..PathResult::default()
        }
    }

    fn measured(query: PathResult, subscription: PathResult, served: f64) -> Measured {
        Measured {
            peak: None,
            catch_up: None,
            rate: 1000.0,
            steady: LoadReport {
                ok: 10_000,
                rps: served,
                ..LoadReport::default()
            },
            sampled: 100,
            refused: 0,
            query,
            subscription,
            batches: None,
        }
    }

    #[test]
    fn a_goal_is_met_only_with_every_like_seen_and_the_load_served() {
        let verdicts = |m: &Measured| goals(m).into_iter().map(|g| g.verdict).collect::<Vec<_>>();
        let m = measured(path(12, 0), path(60, 0), 1000.0);
        assert_eq!(verdicts(&m), [Verdict::Met, Verdict::NotMet]);
        let unseen = measured(path(12, 1), path(12, 0), 1000.0);
        assert!(matches!(verdicts(&unseen)[0], Verdict::Unknown(_)));
        assert_eq!(verdicts(&unseen)[1], Verdict::Met);
        let behind = measured(path(12, 0), path(12, 0), 900.0);
        assert!(
            verdicts(&behind)
                .iter()
                .all(|v| matches!(v, Verdict::Unknown(_)))
        );
        let table = table(&m);
        assert!(
            table.contains(
                "| 202 until the GraphQL query shows it | 100 of 100 likes | | 1.00 | 12.00 |"
            ),
            "{table}"
        );
    }
}
