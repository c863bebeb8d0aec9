//! The command line: argument parsing (clap) and dispatch to the runners in [`crate::app`].
//!
//! Parsing never opens a database: clap turns arguments into [`Cli`], [`run`] loads the
//! validated [`Config`] and only then hands the work to `app`. Runners return `anyhow::Result<ExitCode>`;
//! exit codes follow DESIGN.md: 0 success, 1 a finding, 2 a usage or runtime error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::app::bench::{
    self, ActivateBench, AppendBench, ChargesBench, HttpBench, RebuildBench, StreamChoice,
    TimersBench,
};
use crate::app::commands;
use crate::config::{Config, StoreKind};
use crate::inbound::http::auth::{self, Role, TokenKeys};

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
    /// A stream's state as of a time, with the events that made it (read-only; works on a
    /// stopped server's data dir and beside a running one).
    Replay {
        /// The stream, e.g. patient_account-CF-1001.
        stream: String,
        /// RFC 3339 time; events recorded after it are left out (default: now).
        #[arg(long, value_parser = parse_time)]
        as_of: Option<DateTime<Utc>>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Erase a patient's personal data (right to erasure): destroys the patient's data key and
    /// appends PersonalDataErased. On SQLite the server must be stopped (a running one erases
    /// through POST /v1/patient-accounts/{mrn}/erase); on PostgreSQL it runs beside the nodes.
    Erase {
        /// The patient's MRN.
        mrn: String,
        /// Why (stored in clear in the event: a request reference, never personal data).
        #[arg(long)]
        reason: String,
        /// The admin who erases, the event's principal (default: the OS user).
        #[arg(long)]
        subject: Option<String>,
    },
    /// Tamper evidence and exports for auditors.
    Audit {
        #[command(subcommand)]
        what: AuditCommand,
    },
    /// A consistent copy of this node's data dir (log, keys, checkpoints, views, idempotency
    /// records, dead letters, signing keys) taken while it serves, with a manifest of
    /// SHA-256 sums. On PostgreSQL the database is backed up with pg_dump (docs/operations.md).
    Backup {
        /// A new, empty directory for the backup.
        dir: PathBuf,
        /// Also copy the generated `master_key` file. Leave it out for backups that leave the
        /// machine: the master key is kept apart from the data (docs/operations.md).
        #[arg(long)]
        with_master_key: bool,
    },
    /// Bring a backup back into the configured data dir, which must not hold a node's files.
    /// Every file is checked against the manifest before anything is written.
    Restore {
        /// The backup directory.
        dir: PathBuf,
    },
    /// Move the event store to another backend.
    Store {
        #[command(subcommand)]
        what: StoreCommand,
    },
}

/// Backends `store copy` can write to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CopyTarget {
    Kurrentdb,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy the configured store's log (SQLite or PostgreSQL), with ids, hashes and order,
    /// into an empty KurrentDB database, check the copy event by event, and write a data dir
    /// for the KurrentDB node (keys, dead letters, snapshots, idempotency records, consumer
    /// checkpoints translated to the new positions). Stop the server first. Run again to
    /// resume an interrupted copy.
    Copy {
        /// The backend to copy to.
        #[arg(long, value_enum)]
        to: CopyTarget,
        /// The target's connection string (default: the configured kurrentdb_url).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// The KurrentDB node's new data dir (must not be the source's).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// From PostgreSQL: copy the log, the secret files and the checkpoints, and leave the
        /// side tables (patient keys, dead letters, snapshots, idempotency records) behind.
        #[arg(long)]
        leave_side_tables: bool,
    },
}

/// Output format of the audit commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every stream's hash chain, the global log and the signed checkpoints. Exit 0
    /// intact, 1 tampered, 2 could not check.
    Verify {
        /// Check only this stream's chain.
        #[arg(long)]
        stream: Option<String>,
        /// Start at this position (streams are anchored on their first event there).
        #[arg(long, default_value_t = 1)]
        from_position: u64,
        /// Trusted checkpoint key (64 hex digits; repeatable). Default: this data dir's key.
        #[arg(long = "public-key")]
        public_keys: Vec<String>,
        /// Hashing threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Export events as NDJSON with a signed manifest (FILE.manifest.json); recorded in the
    /// access log.
    Export {
        /// One stream.
        #[arg(long, conflicts_with_all = ["patient", "from", "to"])]
        stream: Option<String>,
        /// A patient's account and encounters, by MRN.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        patient: Option<String>,
        /// Events recorded at or after this time (RFC 3339); needs --to.
        #[arg(long, value_parser = parse_time, requires = "to")]
        from: Option<DateTime<Utc>>,
        /// Events recorded before this time (RFC 3339); needs --from.
        #[arg(long, value_parser = parse_time, requires = "from")]
        to: Option<DateTime<Utc>>,
        /// The NDJSON file to write.
        #[arg(long)]
        out: PathBuf,
        /// Who exports, for the access log (default: the OS user).
        #[arg(long)]
        subject: Option<String>,
    },
    /// Check an export offline. Exit 0 intact, 1 altered, 2 could not check.
    CheckExport {
        /// The NDJSON file (its manifest is FILE.manifest.json).
        file: PathBuf,
        /// The signer's public key (64 hex digits), as recorded beforehand.
        #[arg(long)]
        public_key: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Print this server's public key (hex), creating the key pair if absent.
    Key,
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
        /// billing, analytics, audit or claims.
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
    /// FHIR resources per second through transaction Bundles (a running server).
    Fhir {
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Concurrent connections, one Bundle in flight each.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Seconds of measured load.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Patients per Bundle; four entries each (Patient, Coverage, Encounter, ChargeItem).
        #[arg(long, default_value_t = 5)]
        patients: usize,
    },
    /// HL7 messages (ADT^A04 then DFT^P03) acknowledged per second over MLLP by a running
    /// server.
    Mllp {
        /// The server's MLLP address.
        #[arg(long, default_value = "127.0.0.1:2575")]
        addr: String,
        /// Concurrent connections.
        #[arg(long, default_value_t = 10)]
        connections: usize,
        /// Messages in all.
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        /// Messages a connection may have unacknowledged (1: send and wait).
        #[arg(long, default_value_t = 32)]
        window: usize,
        /// Patients per connection (each gets one A04, then DFTs).
        #[arg(long, default_value_t = 200)]
        patients: usize,
    },
    /// `audit verify` over a freshly built log.
    Verify {
        /// Backend to measure (overrides the configured store).
        #[arg(long, value_enum)]
        store: Option<StoreKind>,
        /// Events in the log.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Streams they are spread over.
        #[arg(long, default_value_t = 10_000)]
        streams: u64,
        /// Hashing threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Verifications to time (the best is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The NATS publisher following paced appends to a throw-away store (needs nats_url):
    /// commit-to-acknowledgement lag p50/p99.
    Nats {
        /// Events to append.
        #[arg(long, default_value_t = 500_000)]
        events: usize,
        /// Events per command (one append carries them all).
        #[arg(long, default_value_t = 1)]
        per_command: usize,
        /// Target events per second.
        #[arg(long, default_value_t = 25_000)]
        rate: u64,
        /// Concurrent writers.
        #[arg(long, default_value_t = 64)]
        writers: usize,
    },
    /// `replay` of one long stream, as of now and as of its middle.
    Replay {
        /// Events in the stream.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Replays to time (the best is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time such as 2026-01-31T12:00:00Z: {e}"))
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
            actix_web::rt::System::new().block_on(crate::app::serve::serve(config))?;
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
                BenchCommand::Fhir {
                    url,
                    connections,
                    seconds,
                    patients,
                } => {
                    let spec = bench::FhirBench {
                        url,
                        connections,
                        duration: Duration::from_secs(seconds),
                        patients,
                    };
                    let report = runtime.block_on(bench::fhir(&config, &spec))?;
                    println!("{report}");
                }
                BenchCommand::Mllp {
                    addr,
                    connections,
                    messages,
                    window,
                    patients,
                } => {
                    let spec = bench::MllpBench {
                        addr,
                        connections,
                        messages,
                        window,
                        patients,
                    };
                    let report = runtime.block_on(bench::mllp(&spec))?;
                    println!("{report}");
                }
                BenchCommand::Verify {
                    store,
                    events,
                    streams,
                    threads,
                    runs,
                } => {
                    let spec = bench::VerifyBench {
                        store: store.unwrap_or(config.store),
                        events,
                        streams,
                        threads,
                        runs,
                    };
                    let report = runtime.block_on(bench::verify(&config, &spec))?;
                    println!("{report}");
                }
                BenchCommand::Nats {
                    events,
                    per_command,
                    rate,
                    writers,
                } => {
                    let spec = bench::NatsBench {
                        events,
                        per_command,
                        rate,
                        writers,
                    };
                    let report = runtime.block_on(bench::nats(&config, &spec))?;
                    println!("{report}");
                }
                BenchCommand::Replay { events, runs } => {
                    let spec = bench::ReplayBench { events, runs };
                    let report = runtime.block_on(bench::replay(&config, &spec))?;
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
            runtime.block_on(commands::rebuild_projection(&config, &name))
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
        Command::Replay {
            stream,
            as_of,
            format,
        } => commands::audit_runtime()?.block_on(commands::replay(&config, &stream, as_of, format)),
        Command::Audit { what } => {
            commands::audit_runtime()?.block_on(commands::audit(&config, what))
        }
        Command::Erase {
            mrn,
            reason,
            subject,
        } => {
            actix_web::rt::System::new().block_on(commands::erase(&config, &mrn, &reason, subject))
        }
        Command::Backup {
            dir,
            with_master_key,
        } => commands::backup(&config, &dir, with_master_key),
        Command::Restore { dir } => commands::restore(&config, &dir),
        Command::Store {
            what:
                StoreCommand::Copy {
                    to: CopyTarget::Kurrentdb,
                    url,
                    data_dir,
                    leave_side_tables,
                },
        } => commands::audit_runtime()?.block_on(commands::store_copy(
            &config,
            url,
            &data_dir,
            leave_side_tables,
        )),
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
