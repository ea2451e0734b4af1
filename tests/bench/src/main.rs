//! `gallery-bench`, Gallery's benchmark harness. `scripts/bench <scenario>` builds it with the
//! `benchmark` profile (release with line tables) and runs a scenario: it starts what it
//! measures as separate processes (the `gallery` roles against the local stack, the baseline
//! servers, the load generators, all of them this binary's internal subcommands but `gallery`),
//! measures each figure beside its baselines in the same run, and prints the table. Traffic goes
//! only to 127.0.0.1; every run has its own topics and databases and removes them at the end.

mod deployment;
mod freshness;
mod graphql;
mod latency;
mod like;
mod load;
mod machine;
mod painter;
mod plot;
mod process;
mod produce;
mod profile;
mod project;
mod reads;
mod report;
mod scale;
mod serve;
mod serve_reads;
mod subscriptions;
mod watch;
mod ws;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The allocator `gallery` uses, so that the baselines run on the same.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gallery's benchmark harness (run it through `scripts/bench`).
#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Like commands over HTTP, durable in Kafka, beside a no-op HTTP handler, a CRUD service
    /// on Postgres and the Kafka producer alone.
    Like(like::LikeArgs),
    /// The projectors' apply rates from a pre-filled log (Postgres, Scylla) and the rebuild,
    /// beside `COPY` into Postgres and unlogged batches into Cassandra.
    Project(project::ProjectArgs),
    /// A like's 202 until GraphQL (a query and a subscription) shows it, under a steady load.
    Freshness(freshness::FreshnessArgs),
    /// Image-to-image requests with the real style network: accepted to `COMPLETED` visible,
    /// minus the painting.
    Painter(painter::PainterArgs),
    /// The like command's throughput by partitions and command service instances.
    Scale(scale::ScaleArgs),
    /// Open `artworkStats` subscriptions held by query API instances: memory per idle
    /// subscription, and a like's fan-out to its watchers, up to 100,000 subscriptions.
    Subscriptions(subscriptions::SubscriptionsArgs),
    /// The WebSocket watchers (started by a scenario).
    #[command(hide = true)]
    Watch(watch::WatchArgs),
    /// GraphQL reads with a warm cache, beside a handler reading the same cache and a REST
    /// handler querying Postgres per request.
    Graphql(graphql::GraphqlArgs),
    /// A baseline HTTP server (started by a scenario).
    #[command(hide = true)]
    Serve(serve::ServeArgs),
    /// The HTTP load generator: prints its report as one JSON line (started by a scenario).
    #[command(hide = true)]
    Load(load::LoadArgs),
    /// The Kafka baseline: the same events produced without HTTP (started by a scenario).
    #[command(hide = true)]
    Produce(produce::ProduceArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GALLERY_LOG")
                .unwrap_or_else(|_| "info,rdkafka=warn,tokio_postgres=warn,scylla=warn".into()),
        )
        .init();
    let result = match Cli::parse().command {
        Command::Like(args) => like::run(&args),
        Command::Project(args) => project::run(&args),
        Command::Freshness(args) => freshness::run(&args),
        Command::Painter(args) => painter::run(&args),
        Command::Scale(args) => scale::run(&args),
        Command::Subscriptions(args) => subscriptions::run(&args),
        Command::Watch(args) => watch::run(&args),
        Command::Graphql(args) => graphql::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Load(args) => load::run(&args),
        Command::Produce(args) => produce::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
