//! The scenario `painter`: the time the system adds around the AI painter's work. The roles
//! run as separate processes (commands, the projector, the query API, the painter with the
//! real style network). Image-to-image requests of a small photo go one after another (the
//! next once the previous is visible, at most one every `--every-ms`); each is followed by a
//! `generation` subscription opened before it is sent. For each: the time from the `202` until
//! the subscription delivers `COMPLETED`, minus the painting time the worker reports in the
//! result (`durationMs`), and where the rest went by the job's own timestamps (`startedAt`,
//! `finishedAt`, written by the worker) against the harness's clock.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use gallery_commands::TokenKeys;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::deployment::Deployment;
use crate::latency::{self, Latencies};
use crate::load::token;
use crate::plot::Series;
use crate::process::{free_addr, start_healthy};
use crate::report::{Goal, Verdict, goals_table};
use crate::ws::Subscriptions;

#[derive(Debug, clap::Args)]
pub struct PainterArgs {
    /// Requests sent.
    #[arg(long, default_value_t = 40)]
    requests: u32,
    /// At most one request every this many milliseconds (the next waits for the previous).
    #[arg(long, default_value_t = 500)]
    every_ms: u64,
    /// The photo's size (the result is painted at this size).
    #[arg(long, default_value_t = 256)]
    width: u32,
    #[arg(long, default_value_t = 192)]
    height: u32,
    /// A request not completed within this many seconds counts as lost.
    #[arg(long, default_value_t = 60)]
    patience_secs: u64,
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// A `GALLERY_*` setting for every role (`KEY=VALUE`, repeatable).
    #[arg(long = "gallery-env", value_parser = crate::like::key_value)]
    gallery_env: Vec<(String, String)>,
    /// Where the plot goes (`painter-latency.svg`).
    #[arg(long, default_value = "docs/plots")]
    plots: PathBuf,
    /// The `gallery` binary (default: the one beside this one, built by `scripts/bench`).
    #[arg(long)]
    gallery_bin: Option<PathBuf>,
}

/// One request's timings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// From the `202` until `COMPLETED` was delivered.
    pub total: Duration,
    /// The painting time the worker reports.
    pub painting: Duration,
    /// From the `202` until the worker's `startedAt` (clock of the same machine, ms).
    pub to_start: Duration,
    /// From the worker's `finishedAt` until `COMPLETED` was delivered.
    pub end_to_visible: Duration,
}

impl Timing {
    /// What the system added: the total minus the painting.
    pub fn overhead(&self) -> Duration {
        self.total.saturating_sub(self.painting)
    }
}

/// The percentiles of each measure, and the requests that went wrong.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub overhead: Latencies,
    pub total: Latencies,
    pub painting: Latencies,
    pub to_start: Latencies,
    pub end_to_visible: Latencies,
    pub lost: u64,
    pub wrong: u64,
    pub first_wrong: Option<String>,
}

pub fn summarize(timings: &[Timing], lost: u64, wrong: Vec<String>) -> anyhow::Result<Summary> {
    let of = |f: &dyn Fn(&Timing) -> Duration| -> anyhow::Result<Latencies> {
        let mut h: Histogram<u64> = latency::histogram()?;
        for t in timings {
            latency::record(&mut h, f(t));
        }
        Ok(Latencies::of(&h))
    };
    Ok(Summary {
        overhead: of(&Timing::overhead)?,
        total: of(&|t| t.total)?,
        painting: of(&|t| t.painting)?,
        to_start: of(&|t| t.to_start)?,
        end_to_visible: of(&|t| t.end_to_visible)?,
        lost,
        wrong: u64::try_from(wrong.len())?,
        first_wrong: wrong.into_iter().next(),
    })
}

pub fn table(s: &Summary) -> String {
    let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
    let mut out = String::from(
        "| measured | requests | p50 ms | p99 ms | p99.9 ms | max ms |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (what, l) in [
        (
            "**overhead**: 202 until `COMPLETED` delivered, minus the painting",
            &s.overhead,
        ),
        ("202 until `COMPLETED` delivered", &s.total),
        (
            "painting, as the worker reports it (`durationMs`)",
            &s.painting,
        ),
        ("202 until the worker's `startedAt`", &s.to_start),
        (
            "the worker's `finishedAt` until `COMPLETED` delivered",
            &s.end_to_visible,
        ),
    ] {
        out.push_str(&format!(
            "| {what} | {} | {} | {} | {} | {} |\n",
            l.count,
            ms(l.p50_us),
            ms(l.p99_us),
            ms(l.p999_us),
            ms(l.max_us)
        ));
    }
    if s.lost > 0 || s.wrong > 0 {
        out.push_str(&format!(
            "\n{} requests not completed in time, {} wrong{}\n",
            s.lost,
            s.wrong,
            s.first_wrong
                .as_ref()
                .map(|w| format!(" (first: {w})"))
                .unwrap_or_default()
        ));
    }
    out
}

pub fn goals(s: &Summary) -> Vec<Goal> {
    let p99_ms = s.overhead.p99_us as f64 / 1000.0;
    vec![Goal {
        what: "p99 of request accepted to `COMPLETED` visible, minus the painting".into(),
        measured: format!(
            "{p99_ms:.2} ms ({} requests, {} lost, {} wrong)",
            s.overhead.count, s.lost, s.wrong
        ),
        goal: "< 50 ms",
        verdict: if s.lost > 0 || s.wrong > 0 || s.overhead.count == 0 {
            Verdict::Unknown("requests lost or wrong")
        } else if p99_ms < 50.0 {
            Verdict::Met
        } else {
            Verdict::NotMet
        },
    }]
}

pub fn run(args: &PainterArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.requests > 0, "--requests must be positive");
    anyhow::ensure!(
        (64..=1024).contains(&args.width) && (64..=1024).contains(&args.height),
        "--width and --height must be in 64..=1024"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let run = crate::deployment::run(args.partitions, async |d| measure(args, d).await).await?;
        run.print_heading("painter: request accepted to `COMPLETED` visible, minus the painting");
        let summary = run.measured;
        println!(
            "- roles as separate processes: `gallery commands`, `gallery projections`, `gallery query-api`, `gallery painter` (the style network on the CPU); {} partitions",
            args.partitions
        );
        println!(
            "- {} image-to-image requests of a {}x{} PNG (`style-00`, a new seed each, so none comes from the result cache), one after another, at most one every {} ms; each followed by a `generation` subscription opened before it was sent",
            args.requests, args.width, args.height, args.every_ms
        );
        for (k, v) in &args.gallery_env {
            println!("- setting of every role: `{k}={v}`");
        }
        println!("\n{}", table(&summary));
        println!("{}", goals_table(&goals(&summary)));
        let plot = args.plots.join("painter-latency.svg");
        crate::plot::lines(
            &plot,
            "painter: accepted to COMPLETED visible",
            "percentile",
            "ms",
            &[
                Series::new("overhead (total minus painting)", summary.overhead.percentile_points()),
                Series::new("finishedAt to visible", summary.end_to_visible.percentile_points()),
                Series::new("painting", summary.painting.percentile_points()),
            ],
        )?;
        println!("\nplot: {}", plot.display());
        anyhow::Ok(())
    })
}

async fn measure(args: &PainterArgs, deployment: &Deployment) -> anyhow::Result<Summary> {
    let (_, gallery_bin) = crate::process::binaries(args.gallery_bin.as_deref())?;
    let dir = &deployment.dir;
    let role = |name: &str, listen: SocketAddr, metrics: SocketAddr| {
        let mut command = deployment.gallery(&gallery_bin, name, listen, metrics)?;
        command.envs(args.gallery_env.iter().map(|(k, v)| (k, v)));
        anyhow::Ok(command)
    };
    let mut servers = Vec::new();
    let commands_addr = free_addr()?;
    let query_addr = free_addr()?;
    for (name, role_name, listen, health) in [
        ("gallery-commands", "commands", commands_addr, None),
        ("gallery-query-api", "query-api", query_addr, None),
        (
            "gallery-projections",
            "projections",
            free_addr()?,
            Some(free_addr()?),
        ),
        (
            "gallery-painter",
            "painter",
            free_addr()?,
            Some(free_addr()?),
        ),
    ] {
        let metrics = health.unwrap_or(free_addr()?);
        let answers = health.unwrap_or(listen);
        servers.push(start_healthy(name, role(role_name, listen, metrics)?, answers, dir).await?);
    }
    let result = requests(args, deployment, commands_addr, query_addr).await;
    for server in servers {
        server.stop().await?;
    }
    result
}

async fn requests(
    args: &PainterArgs,
    deployment: &Deployment,
    commands: SocketAddr,
    query: SocketAddr,
) -> anyhow::Result<Summary> {
    let keys = TokenKeys::from_secret(deployment.jwt_secret.as_bytes())?;
    let photo = photo(args.width, args.height)?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let patience = Duration::from_secs(args.patience_secs);
    let mut timings = Vec::new();
    let (mut lost, mut wrong) = (0, Vec::new());
    // One warm-up request first (the painter loads its network on first use): not counted.
    for i in 0..=args.requests {
        let next = Instant::now() + Duration::from_millis(args.every_ms);
        // A user per request, so that no quota is in the way.
        let user = format!("painter-{i}");
        let token = token(&keys, &user)?;
        let request = Request {
            http: &http,
            commands,
            query,
            token: &token,
            photo: &photo,
            seed: i,
            patience,
        };
        let outcome = request.send().await;
        if i > 0 {
            match outcome {
                Ok(Some(t)) => timings.push(t),
                Ok(None) => lost += 1,
                Err(e) => wrong.push(format!("{e:#}")),
            }
        } else {
            outcome.context("the warm-up request failed")?;
        }
        tokio::time::sleep_until(next).await;
    }
    summarize(&timings, lost, wrong)
}

struct Request<'a> {
    http: &'a reqwest::Client,
    commands: SocketAddr,
    query: SocketAddr,
    token: &'a str,
    photo: &'a [u8],
    seed: u32,
    patience: Duration,
}

const JOB: &str = "subscription($id: ID!) { generation(id: $id) { status startedAt finishedAt failure { code reason } result { durationMs } } }";

impl Request<'_> {
    /// Sends the request and follows its job; `None` when it did not complete in time.
    async fn send(&self) -> anyhow::Result<Option<Timing>> {
        let id = uuid::Uuid::new_v4();
        let mut socket = Subscriptions::connect(self.query, Some(self.token)).await?;
        let mut updates = socket
            .subscribe("job", JOB, json!({"id": id.to_string()}))
            .await?;
        let boundary = "gallery-bench-boundary";
        let body = multipart(
            boundary,
            &[
                ("style", "style-00"),
                ("seed", &self.seed.to_string()),
                ("requestId", &id.to_string()),
            ],
            self.photo,
        );
        let response = self
            .http
            .post(format!(
                "http://{}/v1/generations/image-to-image",
                self.commands
            ))
            .bearer_auth(self.token)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await?;
        let accepted = Instant::now();
        let accepted_wall = SystemTime::now();
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or_default();
        anyhow::ensure!(
            status == reqwest::StatusCode::ACCEPTED && answer["id"] == id.to_string(),
            "the request was answered {status}: {answer}"
        );
        let deadline = accepted + self.patience;
        loop {
            let Ok(next) = tokio::time::timeout_at(deadline, updates.recv()).await else {
                return Ok(None);
            };
            let (payload, at) = next.context("the subscription's connection closed")?;
            let payload = payload.context("the subscription completed before COMPLETED")?;
            let job = &payload["data"]["generation"];
            match job["status"].as_str() {
                Some("COMPLETED") => {
                    let visible_wall = SystemTime::now() - at.elapsed();
                    return Ok(Some(timing(
                        job,
                        accepted,
                        at,
                        accepted_wall,
                        visible_wall,
                    )?));
                }
                Some("REQUESTED" | "RUNNING") => {}
                _ => anyhow::bail!("the job went {payload}"),
            }
        }
    }
}

/// The timings of a completed job.
fn timing(
    job: &Value,
    accepted: Instant,
    visible: Instant,
    accepted_wall: SystemTime,
    visible_wall: SystemTime,
) -> anyhow::Result<Timing> {
    let painting = job["result"]["durationMs"]
        .as_u64()
        .context("no result.durationMs")?;
    let at = |field: &str| -> anyhow::Result<SystemTime> {
        let text = job[field].as_str().with_context(|| format!("no {field}"))?;
        let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .with_context(|| format!("{field} {text}"))?;
        let nanos = u64::try_from(t.unix_timestamp_nanos())?;
        Ok(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos))
    };
    let since = |later: SystemTime, earlier: SystemTime| {
        later.duration_since(earlier).unwrap_or(Duration::ZERO)
    };
    Ok(Timing {
        total: visible.duration_since(accepted),
        painting: Duration::from_millis(painting),
        to_start: since(at("startedAt")?, accepted_wall),
        end_to_visible: since(visible_wall, at("finishedAt")?),
    })
}

/// A `multipart/form-data` body: the text fields, then the photo as `photo`.
fn multipart(boundary: &str, fields: &[(&str, &str)], photo: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\ncontent-disposition: form-data; name=\"photo\"; filename=\"photo.png\"\r\ncontent-type: image/png\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(photo);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// A PNG of a colour gradient.
fn photo(width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        let r = u8::try_from(x * 255 / width.max(1)).unwrap_or(u8::MAX);
        let g = u8::try_from(y * 255 / height.max(1)).unwrap_or(u8::MAX);
        image::Rgb([r, g, 128])
    });
    let mut png = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overhead_is_the_total_minus_the_painting() {
        let t = |total, painting| Timing {
            total: Duration::from_millis(total),
            painting: Duration::from_millis(painting),
            to_start: Duration::from_millis(5),
            end_to_visible: Duration::from_millis(total - painting - 5),
        };
        let s = summarize(&[t(300, 100), t(140, 100), t(120, 100)], 0, Vec::new()).unwrap();
        assert_eq!(s.overhead.count, 3);
        let near = |us: u64, ms: u64| us.abs_diff(ms * 1000) <= ms;
        assert!(near(s.overhead.p50_us, 40), "{s:?}");
        assert!(near(s.overhead.max_us, 200), "{s:?}");
        assert_eq!(goals(&s)[0].verdict, Verdict::NotMet);
        let fast = summarize(&[t(130, 100)], 0, Vec::new()).unwrap();
        assert_eq!(goals(&fast)[0].verdict, Verdict::Met);
        let lost = summarize(&[t(130, 100)], 1, Vec::new()).unwrap();
        assert!(matches!(goals(&lost)[0].verdict, Verdict::Unknown(_)));
        assert!(
            table(&s).contains(
                "| **overhead**: 202 until `COMPLETED` delivered, minus the painting | 3 | 40.0"
            ),
            "{}",
            table(&s)
        );
    }

    #[test]
    fn a_multipart_body_carries_the_fields_and_the_photo() {
        let body = multipart("b", &[("style", "style-00")], b"PNG");
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(
            "--b\r\ncontent-disposition: form-data; name=\"style\"\r\n\r\nstyle-00\r\n"
        ));
        assert!(text.contains("name=\"photo\"; filename=\"photo.png\"\r\ncontent-type: image/png\r\n\r\nPNG\r\n--b--\r\n"));
        assert!(!photo(64, 64).unwrap().is_empty());
    }
}
