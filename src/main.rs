use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gallery::config::{KafkaOverrides, ListenConfig, Overrides, UrlOverride};
use gallery::{Config, Roles};

/// A server's allocator: per-thread heaps, no arena locks between the runtime's workers and
/// librdkafka's threads (see docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gallery: an event-sourced virtual art exhibition backend.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// TOML configuration file (layered over the defaults, under GALLERY_* variables).
    #[arg(long, global = true, env = "GALLERY_CONFIG")]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers.
    #[arg(long, global = true)]
    kafka_brokers: Option<String>,
    /// Schema registry URL (Confluent API).
    #[arg(long, global = true)]
    registry_url: Option<String>,
    /// Postgres connection URL.
    #[arg(long, global = true)]
    postgres_url: Option<String>,
    /// Address of the command service.
    #[arg(long, global = true)]
    commands_listen: Option<std::net::SocketAddr>,
    /// Address of the GraphQL API.
    #[arg(long, global = true)]
    query_listen: Option<std::net::SocketAddr>,
    #[command(subcommand)]
    role: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every role in one process.
    Up,
    /// Run the command service (HTTP writes).
    Commands,
    /// Run the projectors (events into read models), or manage the read model's generations.
    Projections {
        #[command(subcommand)]
        command: Option<ProjectionsCommand>,
    },
    /// Run the GraphQL API.
    QueryApi,
    /// Run the AI painter: the generation worker.
    Painter,
    /// Print a signed bearer token for a user (development and testing).
    Token {
        /// The user id the token names.
        #[arg(long)]
        user: String,
        /// Lifetime in hours.
        #[arg(long, default_value_t = 24)]
        hours: u64,
        /// The role the token grants.
        #[arg(long, value_enum, default_value_t = RoleArg::Visitor)]
        role: RoleArg,
    },
    /// Manage accounts directly in the database.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Print the effective configuration (secrets redacted).
    Config,
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Replay the log into a new generation of the read model while the live one keeps
    /// serving, then switch to it atomically (the old one is kept for a rollback).
    Rebuild {
        /// Switch once the new generation is at most this many messages behind the live one.
        #[arg(long, default_value_t = 1000)]
        max_lag: i64,
        /// Give up when following the live generation and switching to the new one take
        /// longer than this (seconds); the live one stays.
        #[arg(long, default_value_t = 300)]
        follow_timeout_secs: u64,
        /// Drop the old generation after the switch.
        #[arg(long)]
        drop_old: bool,
    },
    /// Drop every generation of the read model that is no longer live, including those a
    /// stopped rebuild abandoned; report those being built.
    Gc,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Set a registered user's role (how the first admin is made).
    SetRole {
        /// The user id (username).
        #[arg(long)]
        user: String,
        /// The new role.
        #[arg(long, value_enum)]
        role: RoleArg,
    },
}

/// A role, as given on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    Visitor,
    Curator,
    Admin,
}

impl From<RoleArg> for gallery_schemas::Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Visitor => Self::Visitor,
            RoleArg::Curator => Self::Curator,
            RoleArg::Admin => Self::Admin,
        }
    }
}

impl Cli {
    fn overrides(&self) -> Overrides {
        Overrides {
            kafka: self
                .kafka_brokers
                .clone()
                .map(|brokers| KafkaOverrides { brokers }),
            registry: self.registry_url.clone().map(|url| UrlOverride { url }),
            postgres: self.postgres_url.clone().map(|url| UrlOverride { url }),
            commands: self.commands_listen.map(|listen| ListenConfig { listen }),
            query_api: self.query_listen.map(|listen| ListenConfig { listen }),
        }
    }
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the chain of causes on one line, without a backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GALLERY_LOG")
                .unwrap_or_else(|_| "info,rdkafka=warn,tokio_postgres=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref(), &cli.overrides())?;
    let roles = match cli.role {
        Command::Up => Roles::ALL,
        Command::Commands => Roles::COMMANDS,
        Command::Projections { command: None } => Roles::PROJECTIONS,
        Command::Projections {
            command:
                Some(ProjectionsCommand::Rebuild {
                    max_lag,
                    follow_timeout_secs,
                    drop_old,
                }),
        } => {
            let options = gallery_projections::RebuildOptions {
                max_lag,
                follow_timeout: Duration::from_secs(follow_timeout_secs),
                drop_old,
            };
            let report = gallery::app::rebuild_read_model(&config, &options)
                .await
                .context("the rebuild failed; the live read model is unchanged")?;
            println!(
                "switched the read model from {} to {} at {} messages (the pointer was locked for {} ms){}",
                report.from,
                report.to,
                report.offsets,
                report.locked_for.as_millis(),
                if report.dropped_old {
                    format!("; dropped {}", report.from)
                } else {
                    format!("; {} kept (`gallery projections gc` drops it)", report.from)
                }
            );
            return Ok(());
        }
        Command::Projections {
            command: Some(ProjectionsCommand::Gc),
        } => {
            let report = gallery::app::collect_read_model_garbage(&config)
                .await
                .context("could not drop old generations")?;
            if report.dropped.is_empty() {
                println!("no generation to drop");
            }
            for generation in &report.dropped {
                if report.abandoned.contains(generation) {
                    println!(
                        "dropped {generation} (abandoned: still building, but no rebuild holds it)"
                    );
                } else {
                    println!("dropped {generation}");
                }
            }
            for generation in &report.building {
                println!("kept {generation}: a rebuild is building it");
            }
            return Ok(());
        }
        Command::QueryApi => Roles::QUERY_API,
        Command::Painter => Roles::PAINTER,
        Command::Token { user, hours, role } => {
            return gallery::app::print_token(
                &config,
                &user,
                role.into(),
                Duration::from_secs(hours.saturating_mul(3600)),
            );
        }
        Command::Users {
            command: UsersCommand::SetRole { user, role },
        } => {
            let account = gallery::app::set_user_role(&config, &user, role.into())
                .await
                .context("could not set the role")?;
            println!(
                "{} is now {}",
                account.id,
                gallery_commands::accounts::rules::role_name(account.role)
            );
            return Ok(());
        }
        Command::Config => {
            println!("{config:#?}");
            return Ok(());
        }
    };
    let running = gallery::start(&config, roles)
        .await
        .context("could not start")?;
    gallery::app::run_until_stopped(running, gallery::app::shutdown_signal()).await?;
    Ok(())
}
