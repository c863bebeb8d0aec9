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
use indicatif::{ProgressBar, ProgressStyle};

use crate::actors::{ActorConfig, Registry};
use crate::bench::{
    self, ActivateBench, AppendBench, ChargesBench, HttpBench, RebuildBench, StreamChoice,
    TimersBench,
};
use crate::config::{Config, StoreKind};
use crate::http::auth::{self, Role, TokenKeys};
use crate::http::rate_limit::RateLimiter;
use crate::http::{self, AppState, Runtime};
use crate::payer::{PayerClient, PayerSettings};
use crate::process_managers::{self, ManagerConfig, ProcessManagers};
use crate::store::{self, StoreError};
use crate::views::{self, ProjectionSet, RunnerConfig};
use crate::{idempotency, snapshot};

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
    /// Operate the projections (billing, analytics, audit).
    Projections {
        #[command(subcommand)]
        what: ProjectionsCommand,
    },
    /// Bearer tokens for the HTTP API.
    Token {
        #[command(subcommand)]
        what: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a signed token (HS256) on stdout, with the secret `serve` uses (config
    /// `jwt_secret`, else `<data_dir>/jwt_secret`, created when absent).
    Issue {
        /// system (commands, state), finance (billing, analytics), auditor (histories,
        /// audit, exports), admin (rebuilds, dead letters).
        #[arg(long, value_enum)]
        role: Role,
        /// Who the token stands for; becomes the events' `principal`.
        #[arg(long)]
        subject: String,
        /// Lifetime: 3600, 90s, 15m, 12h, 30d.
        #[arg(long, default_value = "24h", value_parser = auth::parse_ttl)]
        ttl: Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Replay the whole log into a shadow copy of the view, then swap it in atomically
    /// (readers keep the old view until then). A running server does the work; with none
    /// running, this command does it.
    Rebuild {
        /// billing, analytics or audit.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Rebuild of the billing and analytics views from a filled throw-away store.
    Rebuild {
        /// Backend to measure (overrides the configured store).
        #[arg(long, value_enum)]
        store: Option<StoreKind>,
        /// Events to store first (100 per account).
        #[arg(long, default_value_t = 5_000_000)]
        events: usize,
    },
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
    /// Cold activation (snapshot + tail) of an account with a long history.
    Activate {
        /// Events in the account's history.
        #[arg(long, default_value_t = 1000)]
        events: u64,
        /// Activations to time.
        #[arg(long, default_value_t = 2000)]
        runs: usize,
    },
    /// Memory of pending timers in a process manager's fold, and firing them all in memory.
    Timers {
        /// Pending timers.
        #[arg(long, default_value_t = 100_000)]
        timers: usize,
    },
    /// Encounter completed -> charges visible in the billing view, through a running server
    /// with the process managers on.
    Charges {
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Encounters to complete and time.
        #[arg(long, default_value_t = 200)]
        encounters: usize,
        /// Concurrent workers, one encounter in flight each.
        #[arg(long, default_value_t = 4)]
        connections: usize,
    },
    /// Commands per second through a running server (mixed RegisterPatient and PostCharge).
    Http {
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Concurrent connections, one command in flight each.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Seconds of measured load.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Stop after this many commands instead (e.g. 1000000 fresh registrations).
        #[arg(long)]
        requests: Option<u64>,
        /// Accounts registered before the measured phase.
        #[arg(long, default_value_t = 1000)]
        accounts: usize,
        /// Share of RegisterPatient among the measured commands.
        #[arg(long, default_value_t = 0.5)]
        register_share: f64,
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
                BenchCommand::Rebuild { store, events } => {
                    let spec = RebuildBench {
                        store: store.unwrap_or(config.store),
                        events,
                    };
                    let report = runtime.block_on(bench::rebuild(&config, &spec))?;
                    println!("{report}");
                }
                BenchCommand::Activate { events, runs } => {
                    let spec = ActivateBench { events, runs };
                    let report = runtime.block_on(bench::activate(&config, &spec))?;
                    println!("{report}");
                }
                BenchCommand::Timers { timers } => {
                    println!("{}", bench::timers(&TimersBench { timers }));
                }
                BenchCommand::Charges {
                    url,
                    encounters,
                    connections,
                } => {
                    let spec = ChargesBench {
                        url,
                        encounters,
                        connections,
                    };
                    let report = runtime.block_on(bench::charges(&config, &spec))?;
                    println!("{report}");
                }
                BenchCommand::Http {
                    url,
                    connections,
                    seconds,
                    requests,
                    accounts,
                    register_share,
                } => {
                    let spec = HttpBench {
                        url,
                        connections,
                        duration: Duration::from_secs(seconds),
                        requests,
                        accounts,
                        register_share,
                    };
                    let report = runtime.block_on(bench::http(&config, &spec))?;
                    println!("{report}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Projections {
            what: ProjectionsCommand::Rebuild { name },
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(rebuild_projection(&config, &name))
        }
        Command::Token {
            what: TokenCommand::Issue { role, subject, ttl },
        } => {
            let secret = auth::load_or_create_secret(&config).context("loading the JWT secret")?;
            let token = TokenKeys::new(&secret)
                .issue(&subject, role, ttl)
                .context("issuing the token")?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `careflow projections rebuild <name>` with a progress bar on stderr.
async fn rebuild_projection(config: &Config, name: &str) -> anyhow::Result<ExitCode> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("rebuilding {msg} [{bar:40}] {pos}/{len} events ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(name.to_owned());
    let done = views::rebuild::rebuild(config, name, |progress| {
        bar.set_length(progress.head);
        bar.set_position(progress.position);
    })
    .await;
    bar.finish_and_clear();
    let done = done.with_context(|| format!("rebuilding projection {name}"))?;
    println!(
        "projection {} rebuilt: generation {} live at position {}{}",
        done.name,
        done.generation,
        done.position,
        if done.ran_here {
            " (no server was running it, so this command did)"
        } else {
            " (by the running server)"
        }
    );
    Ok(ExitCode::SUCCESS)
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
    let secret = auth::load_or_create_secret(&config).context("loading the JWT secret")?;
    let state = AppState::new(
        TokenKeys::new(&secret),
        RateLimiter::new(config.rate_limit_per_second, config.rate_limit_burst),
    );
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
                match open_runtime(&config).await {
                    Ok(runtime) => {
                        tracing::info!(backend = runtime.store.backend(), "event store open");
                        state.set_runtime(runtime);
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
    if let Some(runtime) = state.runtime() {
        // The process managers send commands too: stop them before the actors, so none is
        // mid-command when the registry shuts down (an interrupted one is redelivered after
        // the restart). The server has drained its requests already.
        runtime
            .process_managers
            .shutdown(Duration::from_secs(5))
            .await;
        runtime.registry.shutdown();
        runtime.projections.shutdown().await;
        runtime.store.close().await;
        tracing::info!("event store flushed and closed");
    }
    let open_error = open_error.lock().ok().and_then(|mut slot| slot.take());
    match open_error {
        Some(error) => Err(anyhow::Error::new(error).context("opening the event store")),
        None => Ok(()),
    }
}

/// Opens the event store and what lives beside it (snapshots, idempotency records), then
/// starts the actor registry.
async fn open_runtime(config: &Config) -> Result<Runtime, StoreError> {
    let store = store::open(config).await?;
    let opened = async {
        let snapshots = snapshot::open(config)
            .await
            .map_err(StoreError::unavailable)?;
        let idempotency = idempotency::open(config)
            .await
            .map_err(StoreError::unavailable)?;
        let views = views::open(config).await.map_err(StoreError::unavailable)?;
        let checkpoints = process_managers::checkpoint::open(config)
            .await
            .map_err(StoreError::unavailable)?;
        Ok::<_, StoreError>((snapshots, idempotency, views, checkpoints))
    }
    .await;
    let (snapshots, idempotency, views, checkpoints) = match opened {
        Ok(side) => side,
        Err(error) => {
            // Release the store (and its lock file) before the caller retries or gives up.
            store.close().await;
            return Err(error);
        }
    };
    let registry = Registry::start(
        Arc::clone(&store),
        snapshots,
        ActorConfig::from_config(config),
    );
    let projections = ProjectionSet::start(
        Arc::clone(&store),
        views,
        views::runner::all_projections(),
        RunnerConfig::default(),
    );
    let process_managers = ProcessManagers::start(
        Arc::clone(&store),
        Arc::clone(&registry),
        checkpoints,
        payer_client(config),
        ManagerConfig::from_config(config),
        config.process_managers,
    );
    Ok(Runtime {
        store,
        registry,
        idempotency,
        projections,
        process_managers,
    })
}

/// The payer client of the eligibility runner. Without `payer_url` there is none: the
/// eligibility deadline then flags registrations self-pay unless an upstream system records
/// their eligibility first (docs/process-managers.md).
fn payer_client(config: &Config) -> Option<PayerClient> {
    let Some(settings) = PayerSettings::from_config(config) else {
        if config.process_managers {
            tracing::warn!(
                "payer_url is not set: eligibility is not checked; registrations with coverage are flagged self-pay at their deadline unless eligibility is recorded by another system"
            );
        }
        return None;
    };
    match PayerClient::new(settings) {
        Ok(client) => Some(client),
        Err(error) => {
            tracing::error!(%error, "payer_url cannot be used: eligibility is not checked");
            None
        }
    }
}
