//! The command line: argument parsing (clap) and the runners behind each subcommand.
//!
//! Parsing never opens a database: clap turns arguments into [`Cli`], [`run`] loads the
//! validated [`Config`] and only then does the work. Runners return `anyhow::Result<ExitCode>`;
//! exit codes follow DESIGN.md: 0 success, 1 a finding, 2 a usage or runtime error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::bench::{self, AppendBench, StreamChoice};
use crate::config::{Config, StoreKind};
use crate::http::{self, AppState};
use crate::store::{self, StoreError};

/// careflow: the event-sourced control layer between a hospital's systems.
#[derive(Debug, Parser)]
#[command(name = "careflow", version, about)]
pub struct Cli {
    /// Configuration file (default: ./careflow.toml when present, or $CAREFLOW_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: HTTP API, event store, runners.
    Serve,
    /// Measure the event store or the HTTP path.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Durable single-event appends from concurrent writers, each to a fresh stream.
    Append {
        /// Backend to measure (overrides the configured store).
        #[arg(long, value_enum)]
        store: Option<StoreKind>,
        /// Concurrent writers.
        #[arg(long, default_value_t = 256)]
        writers: usize,
        /// Total appends (commands of one event each).
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Most commands per group commit (the writer's batch cap).
        #[arg(long)]
        batch: Option<usize>,
        /// Which streams the writers append to.
        #[arg(long, value_enum, default_value = "per-writer")]
        streams: StreamChoice,
    },
}

/// Runs the parsed command line.
///
/// # Errors
/// Anything that stops the command; `main` prints the chain and exits 2.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(cli.config.as_deref()).context("loading configuration")?;
    init_tracing(&config.log);
    match cli.command {
        Command::Serve => {
            actix_web::rt::System::new().block_on(serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { what } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            match what {
                BenchCommand::Append {
                    store,
                    writers,
                    events,
                    batch,
                    streams,
                } => {
                    let spec = AppendBench {
                        store: store.unwrap_or(config.store),
                        writers,
                        events,
                        batch,
                        streams,
                    };
                    let report = runtime.block_on(bench::append(&config, &spec))?;
                    println!("{report}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second initialisation (tests calling `run` twice) is harmless: keep the first.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// `careflow serve`: listen first, then open the store, then serve until SIGTERM/Ctrl-C, then
/// flush the store's writer before exiting.
async fn serve(config: Config) -> anyhow::Result<()> {
    let state = AppState::new();
    let (server, addr) = http::bind(config.listen, Arc::clone(&state))
        .with_context(|| format!("binding {}", config.listen))?;
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("careflow listening on http://{addr}");
    tracing::info!(%addr, store = ?config.store, data_dir = %config.data_dir.display(), "listening");

    let handle = server.handle();
    // Set before the server is stopped, so it is there whichever task finishes first.
    let open_error: Arc<Mutex<Option<StoreError>>> = Arc::default();
    let opener = {
        let state = Arc::clone(&state);
        let config = config.clone();
        let open_error = Arc::clone(&open_error);
        actix_web::rt::spawn(async move {
            let mut delay = Duration::from_millis(200);
            loop {
                match store::open(&config).await {
                    Ok(store) => {
                        tracing::info!(backend = store.backend(), "event store open");
                        state.set_store(store);
                        return;
                    }
                    // A shared server may come up after us: keep trying. An embedded file
                    // that cannot be opened will not fix itself.
                    Err(error) if config.store == StoreKind::Postgres => {
                        tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "event store not reachable");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                    Err(error) => {
                        if let Ok(mut slot) = open_error.lock() {
                            *slot = Some(error);
                        }
                        handle.stop(false).await;
                        return;
                    }
                }
            }
        })
    };

    server.await.context("running the HTTP server")?;
    opener.abort();
    if let Some(store) = state.store() {
        store.close().await;
        tracing::info!("event store flushed and closed");
    }
    let open_error = open_error.lock().ok().and_then(|mut slot| slot.take());
    match open_error {
        Some(error) => Err(anyhow::Error::new(error).context("opening the event store")),
        None => Ok(()),
    }
}
