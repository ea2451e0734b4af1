//! The tables: every measured point, then each goal of the scenario with its measured value,
//! from the peaks of the same run. Pure, so the arithmetic is tested without a server.

use std::fmt::Write as _;

use crate::load::LoadReport;

/// What was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Gallery's command service.
    Gallery,
    /// (a) the no-op handler behind the same middleware: the HTTP ceiling.
    Noop,
    /// (b) the CRUD service: one Postgres transaction per like.
    Crud,
    /// (c) the producer alone, the same Avro bytes, no HTTP: the Kafka ceiling.
    Kafka,
}

impl Target {
    pub fn label(self) -> &'static str {
        match self {
            Target::Gallery => "Gallery `PUT like` to 202 (acks=all, idempotent)",
            Target::Noop => "(a) no-op axum handler, same middleware",
            Target::Crud => "(b) CRUD: one Postgres transaction per like",
            Target::Kafka => "(c) rdkafka, the same Avro bytes, no HTTP",
        }
    }

    /// Its name in a plot's legend.
    pub fn short_label(self) -> &'static str {
        match self {
            Target::Gallery => "Gallery",
            Target::Noop => "(a) no-op HTTP",
            Target::Crud => "(b) CRUD on Postgres",
            Target::Kafka => "(c) Kafka producer",
        }
    }

    /// What its concurrency counts.
    fn unit(self) -> &'static str {
        match self {
            Target::Kafka => "in flight",
            _ => "connections",
        }
    }
}

/// One measurement.
#[derive(Debug, Clone)]
pub struct Point {
    pub target: Target,
    pub concurrency: usize,
    pub report: LoadReport,
}

/// The best rate of `target` among its points with every answer right.
pub fn peak(points: &[Point], target: Target) -> Option<&Point> {
    points
        .iter()
        .filter(|p| p.target == target && p.report.failed() == 0 && p.report.ok > 0)
        .max_by(|x, y| x.report.rps.total_cmp(&y.report.rps))
}

/// What HTTP and Kafka allow together when their work shares the same cores: each request
/// costs the time of one no-op request plus the time of one produced event.
pub fn combined_ceiling(http: f64, kafka: f64) -> f64 {
    1.0 / (1.0 / http + 1.0 / kafka)
}

/// The open-loop run at half the peak rate.
#[derive(Debug, Clone)]
pub struct HalfRate {
    pub rate: f64,
    pub connections: usize,
    pub report: LoadReport,
}

/// Whether a goal is met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Met,
    NotMet,
    /// Not measured, or measured with wrong answers.
    Unknown(&'static str),
}

#[derive(Debug, Clone)]
pub struct Goal {
    pub what: String,
    pub measured: String,
    pub goal: &'static str,
    pub verdict: Verdict,
}

/// The goals of the like scenario (issue 11's table).
pub fn like_goals(points: &[Point], half: Option<&HalfRate>) -> Vec<Goal> {
    let rps = |t| peak(points, t).map(|p| p.report.rps);
    let (g, a, b, c) = (
        rps(Target::Gallery),
        rps(Target::Noop),
        rps(Target::Crud),
        rps(Target::Kafka),
    );
    let ceiling = a.zip(c).map(|(a, c)| combined_ceiling(a, c));
    let mut goals = vec![
        ratio_goal(
            "Gallery / combined ceiling 1/(1/a + 1/c)",
            (g, ceiling),
            0.8,
            ("", "≥ 0.8"),
        ),
        ratio_goal("Gallery / (b) CRUD", (g, b), 2.0, ("x", "≥ 2x")),
    ];
    goals.push(match half {
        Some(h) if h.report.failed() == 0 && h.report.ok > 0 => {
            let p99_ms = h.report.latency.p99_us as f64 / 1000.0;
            // A server that cannot keep up with the rate has not met it, whatever its p99.
            let kept_up = h.report.rps >= 0.95 * h.rate;
            Goal {
                what: format!(
                    "p99 at 50% of the peak ({} rps offered, open loop)",
                    thousands(h.rate)
                ),
                measured: format!("{p99_ms:.2} ms ({} rps served)", thousands(h.report.rps)),
                goal: "< 10 ms",
                verdict: verdict(kept_up && p99_ms < 10.0),
            }
        }
        _ => unknown("p99 at 50% of the peak", "< 10 ms"),
    });
    goals
}

/// `measured / base` against `at_least`; `(unit, goal)` as the table shows them.
pub fn ratio_goal(
    what: &str,
    rates: (Option<f64>, Option<f64>),
    at_least: f64,
    (unit, goal): (&str, &'static str),
) -> Goal {
    ratio_of_rates(what, rates, at_least, (unit, goal), "rps")
}

/// `measured / base`, two rates in `per` (such as `events/s`), against `at_least`.
pub fn rate_goal(
    what: &str,
    rates: (Option<f64>, Option<f64>),
    at_least: f64,
    goal: &'static str,
    per: &str,
) -> Goal {
    ratio_of_rates(what, rates, at_least, ("", goal), per)
}

fn ratio_of_rates(
    what: &str,
    (measured, base): (Option<f64>, Option<f64>),
    at_least: f64,
    (unit, goal): (&str, &'static str),
    per: &str,
) -> Goal {
    match (measured, base) {
        (Some(m), Some(b)) => {
            let ratio = m / b;
            Goal {
                what: what.into(),
                measured: format!(
                    "{ratio:.2}{unit} ({} / {} {per})",
                    thousands(m),
                    thousands(b)
                ),
                goal,
                verdict: verdict(ratio >= at_least),
            }
        }
        _ => unknown(what, goal),
    }
}

pub fn verdict(met: bool) -> Verdict {
    if met { Verdict::Met } else { Verdict::NotMet }
}

pub fn unknown(what: &str, goal: &'static str) -> Goal {
    Goal {
        what: what.into(),
        measured: "—".into(),
        goal,
        verdict: Verdict::Unknown("not measured without wrong answers"),
    }
}

/// `12345.6` as `12,346`.
pub fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// The points as a Markdown table, grouped by target, with the peak of each marked.
pub fn points_table(points: &[Point], half: Option<&HalfRate>) -> String {
    let mut out = String::from(HEADER);
    let mut notes = Vec::new();
    for target in [Target::Gallery, Target::Noop, Target::Crud, Target::Kafka] {
        let best = peak(points, target).map(|p| p.concurrency);
        for p in points.iter().filter(|p| p.target == target) {
            let mark = if best == Some(p.concurrency) {
                " **peak**"
            } else {
                ""
            };
            row(
                &mut out,
                &mut notes,
                target.label(),
                &format!("{} {}{mark}", p.concurrency, target.unit()),
                &p.report,
            );
        }
    }
    if let Some(h) = half {
        let what = format!(
            "Gallery at 50% of its peak: {} rps offered, open loop",
            thousands(h.rate)
        );
        row(
            &mut out,
            &mut notes,
            &what,
            &format!("{} connections", h.connections),
            &h.report,
        );
    }
    for (i, note) in notes.iter().enumerate() {
        let _ = writeln!(out, "\n[{}] {note}", i + 1);
    }
    out
}

/// A table of measured points in the same columns as [`points_table`]: each row is what was
/// measured, its concurrency, and the report; wrong answers footnoted.
pub fn rows_table(rows: &[(String, String, &LoadReport)]) -> String {
    let mut out = String::from(HEADER);
    let mut notes = Vec::new();
    for (what, concurrency, report) in rows {
        row(&mut out, &mut notes, what, concurrency, report);
    }
    for (i, note) in notes.iter().enumerate() {
        let _ = writeln!(out, "\n[{}] {note}", i + 1);
    }
    out
}

const HEADER: &str = "| measured | concurrency | rps | p50 ms | p99 ms | p99.9 ms | answers checked | wrong |\n\
     | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";

fn row(out: &mut String, notes: &mut Vec<String>, what: &str, concurrency: &str, r: &LoadReport) {
    let wrong = if r.failed() == 0 {
        "0".to_owned()
    } else {
        let kinds: Vec<String> = r.failures.iter().map(|(k, n)| format!("{n} {k}")).collect();
        notes.push(format!(
            "{what}, {concurrency}: {}; first: {}",
            kinds.join(", "),
            r.first_failure.as_deref().unwrap_or("?")
        ));
        format!("{} [{}]", r.failed(), notes.len())
    };
    let answers = r.ok + r.failed();
    let _ = writeln!(
        out,
        "| {what} | {concurrency} | {} | {} | {} | {} | {} | {wrong} |",
        thousands(r.rps),
        ms(r.latency.p50_us),
        ms(r.latency.p99_us),
        ms(r.latency.p999_us),
        thousands(answers as f64),
    );
}

/// The goals as a Markdown table.
pub fn goals_table(goals: &[Goal]) -> String {
    let mut out = String::from("| goal | measured | target | met |\n| --- | --- | --- | --- |\n");
    for g in goals {
        let met = match &g.verdict {
            Verdict::Met => "yes".to_owned(),
            Verdict::NotMet => "**no**".to_owned(),
            Verdict::Unknown(why) => format!("unknown: {why}"),
        };
        let _ = writeln!(out, "| {} | {} | {} | {met} |", g.what, g.measured, g.goal);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Latencies;

    fn point(target: Target, concurrency: usize, rps: f64, failed: u64) -> Point {
        Point {
            target,
            concurrency,
            report: LoadReport {
                ok: (rps * 10.0) as u64,
                failures: if failed > 0 {
                    [("status 503".to_owned(), failed)].into()
                } else {
                    Default::default()
                },
                window_secs: 10.0,
                rps,
                latency: Latencies {
                    count: 1,
                    p50_us: 1000,
                    p99_us: 4000,
                    p999_us: 9000,
                    max_us: 9000,
                },
                ..Default::default()
            },
        }
    }

    #[test]
    fn the_combined_ceiling_adds_the_costs_per_request() {
        assert!((combined_ceiling(100.0, 100.0) - 50.0).abs() < 1e-9);
        assert!((combined_ceiling(130_000.0, 194_000.0) - 77_839.5).abs() < 1.0);
    }

    #[test]
    fn a_peak_counts_only_points_with_every_answer_right() {
        let points = [
            point(Target::Gallery, 64, 10_000.0, 0),
            point(Target::Gallery, 256, 30_000.0, 5),
            point(Target::Gallery, 1024, 20_000.0, 0),
        ];
        assert_eq!(
            peak(&points, Target::Gallery).map(|p| p.concurrency),
            Some(1024)
        );
        assert!(peak(&points, Target::Noop).is_none());
    }

    #[test]
    fn goals_compare_the_peaks_of_the_same_run() {
        let points = [
            point(Target::Gallery, 256, 40_000.0, 0),
            point(Target::Noop, 256, 100_000.0, 0),
            point(Target::Crud, 256, 10_000.0, 0),
            point(Target::Kafka, 1024, 100_000.0, 0),
        ];
        let half = HalfRate {
            rate: 20_000.0,
            connections: 256,
            report: point(Target::Gallery, 256, 19_990.0, 0).report,
        };
        let goals = like_goals(&points, Some(&half));
        // 40k of a 50k ceiling is 0.8: met; 4x CRUD: met; p99 4 ms: met.
        assert_eq!(
            goals.iter().map(|g| g.verdict.clone()).collect::<Vec<_>>(),
            [Verdict::Met, Verdict::Met, Verdict::Met]
        );
        assert!(goals[0].measured.starts_with("0.80 (40,000 / 50,000 rps)"));

        let slow = HalfRate {
            rate: 20_000.0,
            connections: 256,
            report: point(Target::Gallery, 256, 15_000.0, 0).report,
        };
        assert_eq!(like_goals(&points, Some(&slow))[2].verdict, Verdict::NotMet);
        let wrong = HalfRate {
            report: point(Target::Gallery, 256, 20_000.0, 3).report,
            ..slow
        };
        assert!(matches!(
            like_goals(&points, Some(&wrong))[2].verdict,
            Verdict::Unknown(_)
        ));
        let weak = [
            point(Target::Gallery, 64, 15_000.0, 0),
            points[1].clone(),
            points[2].clone(),
            points[3].clone(),
        ];
        let goals = like_goals(&weak, None);
        assert_eq!(goals[0].verdict, Verdict::NotMet);
        assert_eq!(goals[1].verdict, Verdict::NotMet);
        assert!(matches!(goals[2].verdict, Verdict::Unknown(_)));
    }

    #[test]
    fn tables_show_every_point_and_footnote_wrong_answers() {
        let points = [
            point(Target::Gallery, 64, 12_345.0, 0),
            point(Target::Gallery, 256, 20_000.0, 7),
        ];
        let table = points_table(&points, None);
        assert!(
            table.contains("| 64 connections **peak** | 12,345 | 1.00 | 4.00 | 9.00 |"),
            "{table}"
        );
        assert!(table.contains("| 7 [1] |"), "{table}");
        assert!(table.contains("[1] Gallery `PUT like` to 202 (acks=all, idempotent), 256 connections: 7 status 503"), "{table}");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }
}
