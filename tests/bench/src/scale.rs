//! The scenario `scale`: how the like command's throughput changes with the topics' partitions
//! and the command service's instances. Each cell of the matrix is a `like` run of Gallery
//! alone (its own deployment, closed loop at the given connections), so that the figures of
//! the deployment arithmetic in docs/PERFORMANCE.md come from one run on one machine.

use std::path::PathBuf;

use clap::Parser as _;

use crate::deployment::Deployment;
use crate::like::{self, LikeArgs};
use crate::machine::LoadAverage;
use crate::plot::{self, Series};
use crate::report::{Target, peak, thousands};

#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// Partitions of the run's topics, one deployment each.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    partitions: Vec<i32>,
    /// Instances of the command service, measured at every partition count.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    instances: Vec<usize>,
    /// Connections of each point (the peak of the cell is reported).
    #[arg(long, value_delimiter = ',', default_value = "256")]
    connections: Vec<usize>,
    /// Where the plot goes (`scale-like.svg`).
    #[arg(long, default_value = "docs/plots")]
    plots: PathBuf,
    /// Options of the `like` scenario for every cell (after `--`), for example
    /// `-- --seconds 5 --users 20000`.
    #[arg(last = true)]
    like: Vec<String>,
}

/// `LikeArgs` parsed from the pass-through options, as `scripts/bench like` would.
#[derive(Debug, clap::Parser)]
struct LikeOptions {
    #[command(flatten)]
    like: LikeArgs,
}

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    pub partitions: i32,
    pub instances: usize,
    /// The best rate with every answer right, and its p99 in milliseconds.
    pub rps: Option<f64>,
    pub p99_ms: Option<f64>,
}

pub fn run(args: &ScaleArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.partitions.is_empty() && args.partitions.iter().all(|p| (1..=64).contains(p)),
        "--partitions must list counts between 1 and 64"
    );
    anyhow::ensure!(
        !args.instances.is_empty() && args.instances.iter().all(|i| (1..=16).contains(i)),
        "--instances must list counts between 1 and 16"
    );
    let connections: Vec<String> = args.connections.iter().map(ToString::to_string).collect();
    let mut base = LikeOptions::try_parse_from(
        [
            "like",
            "--only",
            "gallery",
            "--connections",
            &connections.join(","),
        ]
        .into_iter()
        .map(String::from)
        .chain(args.like.iter().cloned()),
    )?
    .like;
    base.only = vec![like::Only::Gallery];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let before = LoadAverage::now();
        let mut cells = Vec::new();
        for &instances in &args.instances {
            for &partitions in &args.partitions {
                let mut cell_args = base.clone();
                cell_args.partitions = partitions;
                cell_args.instances = instances;
                let deployment = Deployment::create(partitions).await?;
                let measured = like::measure(&cell_args, &deployment).await;
                let removed = deployment.remove().await;
                let (points, _, _) = measured?;
                removed?;
                let best = peak(&points, Target::Gallery);
                let cell = Cell {
                    partitions,
                    instances,
                    rps: best.map(|p| p.report.rps),
                    p99_ms: best.map(|p| p.report.latency.p99_us as f64 / 1000.0),
                };
                eprintln!("scale: {cell:?}");
                cells.push(cell);
            }
        }
        let after = LoadAverage::now();
        crate::machine::print_heading(
            "scale: likes/s by partitions and command service instances",
            before,
            after,
        );
        println!(
            "- each cell: its own deployment, Gallery alone, the peak over {} connections, every answer checked\n",
            connections.join(", ")
        );
        println!("{}", table(&cells));
        let series: Vec<Series> = args
            .instances
            .iter()
            .map(|&i| {
                Series::new(
                    format!("{i} instance{}", if i == 1 { "" } else { "s" }),
                    cells
                        .iter()
                        .filter(|c| c.instances == i)
                        .filter_map(|c| c.rps.map(|r| (f64::from(c.partitions), r)))
                        .collect(),
                )
            })
            .collect();
        if series.iter().any(|s| !s.points.is_empty()) {
            let path = args.plots.join("scale-like.svg");
            plot::lines(
                &path,
                "like: likes/s against partitions, per command service instances",
                "partitions",
                "likes/s",
                &series,
            )?;
            println!("plot: {}", path.display());
        }
        anyhow::Ok(())
    })
}

/// The matrix as a table: a row per cell, with its rate relative to the first cell.
pub fn table(cells: &[Cell]) -> String {
    let first = cells.first().and_then(|c| c.rps);
    let mut out = String::from(
        "| partitions | command service instances | likes/s | p99 | relative to the first row |\n| ---: | ---: | ---: | ---: | ---: |\n",
    );
    for c in cells {
        let rps = c.rps.map_or("no clean point".to_owned(), thousands);
        let p99 = c.p99_ms.map_or("-".to_owned(), |ms| format!("{ms:.1} ms"));
        let relative = match (c.rps, first) {
            (Some(r), Some(f)) if f > 0.0 => format!("{:.2}", r / f),
            _ => "-".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {} | {rps} | {p99} | {relative} |\n",
            c.partitions, c.instances
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_relates_every_cell_to_the_first() {
        let cells = [
            Cell {
                partitions: 1,
                instances: 1,
                rps: Some(20_000.0),
                p99_ms: Some(12.0),
            },
            Cell {
                partitions: 4,
                instances: 2,
                rps: Some(30_000.0),
                p99_ms: Some(9.5),
            },
            Cell {
                partitions: 2,
                instances: 1,
                rps: None,
                p99_ms: None,
            },
        ];
        let t = table(&cells);
        assert!(t.contains("| 1 | 1 | 20,000 | 12.0 ms | 1.00 |"), "{t}");
        assert!(t.contains("| 4 | 2 | 30,000 | 9.5 ms | 1.50 |"), "{t}");
        assert!(t.contains("| 2 | 1 | no clean point | - | - |"), "{t}");
    }

    #[test]
    fn like_options_pass_through() {
        let o = LikeOptions::try_parse_from(["like", "--seconds", "3", "--users", "500"]).unwrap();
        let d = LikeOptions::try_parse_from(["like"]).unwrap();
        assert_ne!(format!("{:?}", o.like), format!("{:?}", d.like));
        assert!(LikeOptions::try_parse_from(["like", "--no-such-option"]).is_err());
    }
}
