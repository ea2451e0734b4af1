//! The scenario `project`: the projectors' apply rates from a pre-filled log, and the rebuild.
//!
//! The run's interactions topic is pre-filled with a generated log (likes, unlikes, favorites,
//! unfavorites, views, comments and their deletions over many users and artworks, encoded
//! with Gallery's codec), whose final state the generator folds as it goes. Then, each as its
//! own process and each from offset 0: the Postgres projector (`gallery projections`) until
//! its stored offsets reach the end of the log; `gallery projections rebuild` replaying the
//! whole log into a new generation; the Scylla projector (`gallery projections` with
//! `read.store = scylla`, against Cassandra; the Postgres projector beside it has nothing left
//! to do). Beside them, in the same run: the same final rows loaded into Postgres with `COPY`
//! and one merge per table, and written to Cassandra with prepared statements in unlogged
//! batches, both without Kafka. Every read model's counts are compared with the generator's,
//! the baselines' too.

mod cql;
mod fill;
mod postgres;
mod workload;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gallery_schemas::EventCodec;

use crate::deployment::Deployment;
use crate::machine::LoadAverage;
use crate::process::{Server, free_addr};
use crate::report::{Goal, Verdict, goals_table, rate_goal, thousands};
use fill::Placed;
use workload::{Counts, Generator, Model, artwork_id, user_id};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    Postgres,
    Rebuild,
    Scylla,
}

#[derive(Debug, clap::Args)]
pub struct ProjectArgs {
    /// Interaction events in the pre-filled log.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Distinct users acting.
    #[arg(long, default_value_t = 100_000)]
    users: u32,
    /// Distinct artworks (the first ones drawn more often).
    #[arg(long, default_value_t = 10_000)]
    artworks: u32,
    /// Partitions of the run's topics.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Seed of the generated log.
    #[arg(long, default_value_t = 11)]
    seed: u64,
    /// Longest wait for one projector, or the rebuild, to apply the log (seconds).
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Measure only these (with their baselines; the rebuild is compared with the Postgres
    /// projector, which it then needs).
    #[arg(long, value_delimiter = ',', value_enum)]
    only: Vec<Only>,
    /// Profile each projector with `perf` while it applies.
    #[arg(long)]
    perf: bool,
    /// With `--perf`: record call stacks too (the data is kept for `perf report`).
    #[arg(long, requires = "perf")]
    perf_calls: bool,
    /// A `GALLERY_*` setting for the projectors (`KEY=VALUE`, repeatable).
    #[arg(long = "gallery-env", value_parser = crate::like::key_value)]
    gallery_env: Vec<(String, String)>,
    /// The `gallery` binary (default: the one beside this one, built by `scripts/bench`).
    #[arg(long)]
    gallery_bin: Option<PathBuf>,
    /// Where the plot goes (`project-rates.svg`).
    #[arg(long, default_value = "docs/plots")]
    plots: PathBuf,
}

impl ProjectArgs {
    fn measures(&self, what: Only) -> bool {
        self.only.is_empty()
            || self.only.contains(&what)
            || (what == Only::Postgres && self.only.contains(&Only::Rebuild))
    }
}

/// The names of the generated users and artworks, made once.
pub struct Names {
    users: Vec<String>,
    artworks: Vec<String>,
}

impl Names {
    fn new(users: u32, artworks: u32) -> Self {
        Self {
            users: (0..users.max(1)).map(user_id).collect(),
            artworks: (0..artworks.max(1)).map(artwork_id).collect(),
        }
    }

    fn user(&self, n: u32) -> &str {
        &self.users[n as usize]
    }

    fn artwork(&self, n: u32) -> &str {
        &self.artworks[n as usize]
    }
}

/// Fails at the first artwork whose stored counts (from `stored`, by artwork id) are not the
/// model's.
fn compare(model: &Model, mut stored: impl FnMut(&str) -> Counts) -> anyhow::Result<()> {
    for (n, expected) in model.counts.iter().enumerate() {
        let artwork = artwork_id(u32::try_from(n)?);
        let found = stored(&artwork);
        anyhow::ensure!(
            found == *expected,
            "{artwork}: the read model counts {found:?}, the log holds {expected:?}"
        );
    }
    Ok(())
}

/// The next offset of each partition of `topic` once every event in `placed` is read.
fn next_offsets(topic: &str, placed: &Placed) -> BTreeMap<(String, i32), i64> {
    let mut out = BTreeMap::new();
    for (partition, offset) in placed {
        let next = out.entry((topic.to_owned(), *partition)).or_insert(0);
        *next = (*next).max(offset + 1);
    }
    out
}

/// How one projector (or the rebuild) went through the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Applied {
    pub events: i64,
    /// From the start of the process to the last event applied.
    pub wall: Duration,
    /// Events applied at the first poll that saw any, and when (since the start).
    pub first: Option<(i64, Duration)>,
}

impl Applied {
    /// Events per second from the first committed batch seen to the end, so that the
    /// process's start (connecting, migrating, joining the group) is not counted; over the
    /// whole wall time when the first poll saw everything.
    pub fn rate(&self) -> f64 {
        match self.first {
            Some((seen, at)) if seen < self.events && self.wall > at => {
                (self.events - seen) as f64 / (self.wall - at).as_secs_f64()
            }
            _ => self.events as f64 / self.wall.as_secs_f64().max(1e-9),
        }
    }
}

/// Polls `applied` every 100 ms until it reaches `total`, while `server` keeps running.
async fn follow<F, Fut>(
    server: &mut Server,
    total: i64,
    timeout: Duration,
    mut applied: F,
) -> anyhow::Result<Applied>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = i64>,
{
    let started = Instant::now();
    let mut first = None;
    let mut last_report = started;
    loop {
        let now_applied = applied().await;
        let at = started.elapsed();
        if now_applied > 0 && first.is_none() {
            first = Some((now_applied, at));
        }
        if now_applied >= total {
            return Ok(Applied {
                events: total,
                wall: at,
                first,
            });
        }
        server.ensure_running()?;
        anyhow::ensure!(
            at < timeout,
            "applied {now_applied} of {total} events within {} s",
            timeout.as_secs()
        );
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "  {now_applied} of {total} applied after {:.0} s",
                at.as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the run measured.
#[derive(Debug, Default)]
struct Measured {
    fill: Option<Duration>,
    postgres: Option<Applied>,
    copy: Option<(Duration, u64)>,
    rebuild: Option<Duration>,
    scylla: Option<Applied>,
    batches: Option<(Duration, usize)>,
    artworks_checked: usize,
    profiles: Vec<(String, String)>,
    mix: String,
}

pub fn run(args: &ProjectArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.events > 0, "--events must be positive");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let before = LoadAverage::now();
        let mut deployment = Deployment::create(args.partitions).await?;
        eprintln!(
            "run: topics {}*, logs in {}",
            deployment.prefix,
            deployment.dir.display()
        );
        let keyspaces = [
            format!("test_{}", deployment.id),
            format!("test_{}_b", deployment.id),
        ];
        let measured = measure(args, &mut deployment, &keyspaces).await;
        let removed = cleanup(&deployment, &keyspaces).await;
        let after = LoadAverage::now();
        let measured = measured?;
        removed.context("could not remove the run's topics, databases and keyspaces")?;
        crate::machine::print_heading(
            "project: the projectors' apply rates from a pre-filled log, and the rebuild",
            before,
            after,
        );
        print(args, &measured);
        let plot = args.plots.join("project-rates.svg");
        crate::plot::bars(
            &plot,
            &format!(
                "Applying {} events: projectors and baselines",
                thousands(args.events as f64)
            ),
            "events/s",
            &bars(args.events, &measured),
        )?;
        println!("\nplot: {}", plot.display());
        anyhow::Ok(())
    })
}

async fn cleanup(deployment: &Deployment, keyspaces: &[String]) -> anyhow::Result<()> {
    let removed = deployment.remove().await;
    if let Ok(session) = cql::connect(&deployment.base.scylla.contact_points()).await {
        for keyspace in keyspaces {
            cql::drop_keyspace(&session, keyspace).await?;
        }
    }
    removed
}

fn print(args: &ProjectArgs, m: &Measured) {
    println!(
        "- the log: {} interaction events on {} partitions ({}), {} users, {} artworks (the first \
         ones drawn more often), pre-filled with Gallery's codec and producer{}",
        thousands(args.events as f64),
        args.partitions,
        m.mix,
        thousands(f64::from(args.users)),
        thousands(f64::from(args.artworks)),
        m.fill
            .map(|d| format!(" in {:.1} s", d.as_secs_f64()))
            .unwrap_or_default()
    );
    println!(
        "- each projector is its own process, from offset 0; its rate counts from the first \
         committed batch seen (stored offsets polled every 100 ms) to the last event applied; \
         the rebuild's counts its whole command"
    );
    println!(
        "- checked: the four counts of each of the {} artworks, in every read model (the \
         baselines' too), equal what the generator folded",
        thousands(m.artworks_checked as f64)
    );
    for (k, v) in &args.gallery_env {
        println!("- projector setting: `{k}={v}`");
    }
    println!("\n{}", points_table(args.events, m));
    println!("{}", goals_table(&goals(args.events, m)));
    for (name, profile) in &m.profiles {
        println!("\nperf profile of {name}:\n```\n{profile}\n```");
    }
}

/// Events per second of `events` in `took`.
fn per_second(events: u64, took: Duration) -> f64 {
    events as f64 / took.as_secs_f64().max(1e-9)
}

/// The time 10 million events take at `rate` events per second, for the table.
fn ten_million(rate: f64) -> String {
    let secs = 1e7 / rate.max(1e-9);
    format!("{:.0} min {:02.0} s", (secs / 60.0).floor(), secs % 60.0)
}

fn points_table(events: u64, m: &Measured) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "| measured | events | seconds | events/s | notes |\n| --- | ---: | ---: | ---: | --- |\n",
    );
    let n = thousands(events as f64);
    let mut row = |what: &str, secs: f64, rate: f64, notes: String| {
        let _ = writeln!(
            out,
            "| {what} | {n} | {secs:.1} | {} | {notes} |",
            thousands(rate)
        );
    };
    if let Some(a) = m.postgres {
        row(
            "Postgres projector (`gallery projections`)",
            a.wall.as_secs_f64(),
            a.rate(),
            format!(
                "{:.1} s of it after the first batch",
                a.wall.as_secs_f64() - a.first.map_or(0.0, |f| f.1.as_secs_f64())
            ),
        );
    }
    if let Some((took, rows)) = m.copy {
        row(
            "baseline: `COPY` into staging tables + one merge per table, no Kafka",
            took.as_secs_f64(),
            per_second(events, took),
            format!("{} rows", thousands(rows as f64)),
        );
    }
    if let Some(took) = m.rebuild {
        let rate = per_second(events, took);
        row(
            "rebuild (`gallery projections rebuild --drop-old`), whole command",
            took.as_secs_f64(),
            rate,
            format!("10M events: {}", ten_million(rate)),
        );
    }
    if let Some(a) = m.scylla {
        row(
            "Scylla projector (`read.store = scylla`, Cassandra 5)",
            a.wall.as_secs_f64(),
            a.rate(),
            format!(
                "{:.1} s of it after the first batch",
                a.wall.as_secs_f64() - a.first.map_or(0.0, |f| f.1.as_secs_f64())
            ),
        );
    }
    if let Some((took, statements)) = m.batches {
        row(
            "baseline: prepared statements in unlogged batches (one partition each), no Kafka",
            took.as_secs_f64(),
            per_second(events, took),
            format!("{} statements", thousands(statements as f64)),
        );
    }
    out
}

/// The rate of each target measured, for the plot.
fn bars(events: u64, m: &Measured) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if let Some(a) = m.postgres {
        out.push(("Postgres projector".to_owned(), a.rate()));
    }
    if let Some((took, _)) = m.copy {
        out.push(("COPY + merge".to_owned(), per_second(events, took)));
    }
    if let Some(took) = m.rebuild {
        out.push(("rebuild".to_owned(), per_second(events, took)));
    }
    if let Some(a) = m.scylla {
        out.push(("Scylla projector".to_owned(), a.rate()));
    }
    if let Some((took, _)) = m.batches {
        out.push(("unlogged batches".to_owned(), per_second(events, took)));
    }
    out
}

fn goals(events: u64, m: &Measured) -> Vec<Goal> {
    let pg = m.postgres.map(|a| a.rate());
    let rebuild = m.rebuild.map(|t| per_second(events, t));
    vec![
        rate_goal(
            "Postgres projector / `COPY` baseline",
            (pg, m.copy.map(|(t, _)| per_second(events, t))),
            0.5,
            "≥ 0.5",
            "events/s",
        ),
        rate_goal(
            "Scylla projector / batch baseline",
            (
                m.scylla.map(|a| a.rate()),
                m.batches.map(|(t, _)| per_second(events, t)),
            ),
            0.5,
            "≥ 0.5",
            "events/s",
        ),
        rate_goal(
            "rebuild / live Postgres projector",
            (rebuild, pg),
            0.5,
            "≥ 0.5",
            "events/s",
        ),
        Goal {
            what: "rebuild: time for 10M events (extrapolated)".into(),
            measured: rebuild.map_or("—".into(), ten_million),
            goal: "reported",
            verdict: if rebuild.is_some() {
                Verdict::Met
            } else {
                Verdict::Unknown("not measured")
            },
        },
    ]
}

async fn measure(
    args: &ProjectArgs,
    deployment: &mut Deployment,
    keyspaces: &[String; 2],
) -> anyhow::Result<Measured> {
    let (_, gallery_bin) = crate::process::binaries(args.gallery_bin.as_deref())?;
    let copy_url = deployment.add_database("copy").await?;
    let mut config = deployment.base.clone();
    config.kafka.topic_prefix.clone_from(&deployment.prefix);
    config.kafka.partitions = deployment.partitions;
    gallery::topics::ensure_topics(&config).await?;
    let topics = deployment.topics();
    let codec = EventCodec::new(&config.registry())?;
    codec.register_all(&topics).await?;

    let mut m = Measured::default();
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    const SPAN_MS: i64 = 48 * 3_600_000;
    let mut generator = Generator::new(
        args.seed,
        args.users,
        args.artworks,
        now_ms - SPAN_MS,
        SPAN_MS,
        args.events,
    );
    let started = Instant::now();
    let placed = fill::fill(
        &config.kafka.brokers,
        &codec,
        &topics.interactions(),
        &mut generator,
        args.events,
    )
    .await?;
    m.fill = Some(started.elapsed());
    let model = generator.model;
    m.mix = mix(&model);
    m.artworks_checked = model.counts.len();
    let names = Names::new(args.users, args.artworks);
    let total = deployment.end_offsets(&topics.interactions()).await?;
    anyhow::ensure!(
        total == i64::try_from(args.events)?,
        "the topic holds {total} events, {} were produced",
        args.events
    );
    let timeout = Duration::from_secs(args.timeout_secs);
    let client = postgres::connect(&deployment.gallery_url()?).await?;

    if args.measures(Only::Postgres) {
        eprintln!("Postgres projector: applying {total} events");
        let mut projector =
            start_projector(args, deployment, &gallery_bin, "projector-postgres", &[])?;
        let recording = profile(args, &projector, deployment, "projector-postgres")?;
        let applied = follow(&mut projector, total, timeout, || {
            postgres::applied(&client)
        })
        .await?;
        if let Some(r) = recording {
            m.profiles
                .push(("the Postgres projector".into(), r.finish().await?));
        }
        projector.stop().await?;
        eprintln!("  {:.0} events/s", applied.rate());
        postgres::check(&client, &model)
            .await
            .context("the Postgres projector's read model")?;
        m.postgres = Some(applied);

        eprintln!("baseline: COPY and merge");
        m.copy = Some(postgres::copy_baseline(&copy_url, &topics, &model, &placed, &names).await?);
    }
    if args.measures(Only::Rebuild) {
        eprintln!("rebuild: replaying {total} events into a new generation");
        let mut command =
            deployment.gallery(&gallery_bin, "projections", free_addr()?, free_addr()?)?;
        command.args(["rebuild", "--drop-old"]);
        command.envs(args.gallery_env.iter().map(|(k, v)| (k, v)));
        let started = Instant::now();
        let log = deployment.dir.join("rebuild.log");
        let status = command
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(
                deployment.dir.join("rebuild.err.log"),
            )?)
            .kill_on_drop(true)
            .status()
            .await?;
        let took = started.elapsed();
        anyhow::ensure!(
            status.success(),
            "the rebuild failed ({status}); see {}",
            log.display()
        );
        postgres::check(&client, &model)
            .await
            .context("the rebuilt read model")?;
        m.rebuild = Some(took);
    }
    if args.measures(Only::Scylla) {
        let settings = deployment.base.scylla.clone();
        let session = cql::connect(&settings.contact_points()).await?;
        let keyspace = &keyspaces[0];
        eprintln!("Scylla projector: applying {total} events into {keyspace}");
        let env = [
            ("GALLERY_READ__STORE", "scylla"),
            ("GALLERY_SCYLLA__KEYSPACE", keyspace.as_str()),
        ];
        let mut projector =
            start_projector(args, deployment, &gallery_bin, "projector-scylla", &env)?;
        let recording = profile(args, &projector, deployment, "projector-scylla")?;
        let applied = follow(&mut projector, total, timeout, || {
            cql::applied(&session, keyspace)
        })
        .await?;
        if let Some(r) = recording {
            m.profiles
                .push(("the Scylla projector".into(), r.finish().await?));
        }
        projector.stop().await?;
        eprintln!("  {:.0} events/s", applied.rate());
        cql::check(&session, keyspace, &model)
            .await
            .context("the Scylla read model")?;
        m.scylla = Some(applied);

        eprintln!("baseline: unlogged batches");
        let baseline = gallery_projections::scylla::ScyllaSettings {
            keyspace: keyspaces[1].clone(),
            ..settings
        };
        m.batches =
            Some(cql::batch_baseline(&session, &baseline, &topics, &model, &placed, &names).await?);
    }
    Ok(m)
}

fn start_projector(
    args: &ProjectArgs,
    deployment: &Deployment,
    gallery_bin: &std::path::Path,
    name: &'static str,
    env: &[(&str, &str)],
) -> anyhow::Result<Server> {
    let mut command = deployment.gallery(gallery_bin, "projections", free_addr()?, free_addr()?)?;
    command.envs(env.iter().copied());
    command.envs(args.gallery_env.iter().map(|(k, v)| (k, v)));
    Server::start(name, command, &deployment.dir)
}

fn profile(
    args: &ProjectArgs,
    server: &Server,
    deployment: &Deployment,
    name: &str,
) -> anyhow::Result<Option<crate::profile::Recording>> {
    match server.pid() {
        Some(pid) if args.perf => Ok(Some(crate::profile::start(
            pid,
            &deployment.dir,
            name,
            args.perf_calls,
        )?)),
        _ => Ok(None),
    }
}

/// The log's mix, for the table's heading.
fn mix(model: &Model) -> String {
    let sets = |rows: &std::collections::HashMap<(u32, u32), workload::SetRow>| {
        rows.values().filter(|r| r.on).count()
    };
    let deleted = model
        .comments
        .iter()
        .filter(|c| c.deleted.is_some())
        .count();
    format!(
        "{} like and favorite facts ending in {} likes and {} favorites, {} views, {} comments of which {} deleted",
        thousands(model.set_events.len() as f64),
        thousands(sets(&model.likes) as f64),
        thousands(sets(&model.favorites) as f64),
        thousands(model.views.len() as f64),
        thousands(model.comments.len() as f64),
        thousands(deleted as f64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_leaves_out_the_start_of_the_process() {
        let applied = Applied {
            events: 1_000,
            wall: Duration::from_secs(12),
            first: Some((100, Duration::from_secs(3))),
        };
        assert!((applied.rate() - 100.0).abs() < 1e-9);
        let at_once = Applied {
            first: Some((1_000, Duration::from_secs(12))),
            ..applied
        };
        assert!((at_once.rate() - 1_000.0 / 12.0).abs() < 1e-9);
    }

    #[test]
    fn ten_million_events_in_minutes_and_seconds() {
        assert_eq!(ten_million(10_000.0), "16 min 40 s");
        assert_eq!(ten_million(1e7), "0 min 01 s");
    }

    #[test]
    fn offsets_end_one_past_the_last_event_of_each_partition() {
        let placed = vec![(0, 0), (1, 0), (0, 1), (0, 2)];
        let next = next_offsets("t", &placed);
        assert_eq!(next.get(&("t".to_owned(), 0)), Some(&3));
        assert_eq!(next.get(&("t".to_owned(), 1)), Some(&1));
    }

    #[test]
    fn the_goals_compare_rates_of_the_same_run() {
        let m = Measured {
            postgres: Some(Applied {
                events: 1_000,
                wall: Duration::from_secs(10),
                first: None,
            }),
            copy: Some((Duration::from_secs(20), 9)),
            rebuild: Some(Duration::from_secs(25)),
            ..Measured::default()
        };
        let goals = goals(1_000, &m);
        assert_eq!(goals[0].verdict, Verdict::Met, "{:?}", goals[0]);
        assert_eq!(goals[0].measured, "2.00 (100 / 50 events/s)");
        assert!(matches!(goals[1].verdict, Verdict::Unknown(_)));
        assert_eq!(goals[2].verdict, Verdict::NotMet, "rebuild 40 / live 100");
    }
}
