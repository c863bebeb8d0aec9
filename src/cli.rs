//! The command line: argument parsing (clap) and the runners behind each subcommand.
//!
//! Parsing never opens a database: clap turns arguments into [`Cli`], [`run`] loads the
//! validated [`Config`] and only then does the work. Runners return `anyhow::Result<ExitCode>`;
//! exit codes follow DESIGN.md: 0 success, 1 a finding, 2 a usage or runtime error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use careflow_aggregates::StreamId;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::actors::{ActorConfig, Registry};
use crate::audit::checkpoint::Checkpointer;
use crate::audit::export::Selection;
use crate::audit::raw::LogSource;
use crate::audit::verify::VerifyOptions;
use crate::bench::{
    self, ActivateBench, AppendBench, ChargesBench, HttpBench, RebuildBench, StreamChoice,
    TimersBench,
};
use crate::config::{Config, StoreKind};
use crate::consumers::{Consumers, Health};
use crate::dead_letters::DeadLetters;
use crate::http::auth::{self, Role, TokenKeys};
use crate::http::rate_limit::RateLimiter;
use crate::http::{self, AppState, Runtime};
use crate::outbound::{Outbound, OutboundDeps};
use crate::payer::{PayerClient, PayerSettings};
use crate::personal_data::{EncryptingSnapshots, EncryptingStore, PersonalDataError, PersonalKeys};
use crate::process_managers::{ManagerConfig, ProcessManagers};
use crate::store::sqlite::SqliteStore;
use crate::store::{self, EventStore, FeedConfig, LogFeed, StoreError};
use crate::views::{self, ProjectionSet, RunnerConfig};
use crate::{audit, idempotency, snapshot};

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
        Command::Replay {
            stream,
            as_of,
            format,
        } => audit_runtime()?.block_on(replay(&config, &stream, as_of, format)),
        Command::Audit { what } => audit_runtime()?.block_on(audit(&config, what)),
        Command::Erase {
            mrn,
            reason,
            subject,
        } => actix_web::rt::System::new().block_on(erase(&config, &mrn, &reason, subject)),
    }
}

fn audit_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Opens the configured store for reading with personal data decrypted (or `null` once
/// erased), as the server shows it: what `replay` prints.
async fn open_decrypting(config: &Config) -> anyhow::Result<Arc<dyn EventStore>> {
    let stored = open_for_reading(config).await?;
    match PersonalKeys::open(config).await {
        Ok(keys) => Ok(Arc::new(EncryptingStore::new(stored, keys))),
        Err(error) => {
            stored.close().await;
            Err(anyhow::Error::new(error).context("opening the patient key store"))
        }
    }
}

/// Opens the configured store for reading: a read-only handle on SQLite (no lock, so it
/// works beside a running server), the shared database on PostgreSQL. The stored bytes:
/// personal data stays ciphertext, which is what the hash checks need.
async fn open_for_reading(config: &Config) -> anyhow::Result<Arc<dyn EventStore>> {
    match config.store {
        StoreKind::Sqlite => {
            let path = config.sqlite_path();
            anyhow::ensure!(
                path.exists(),
                "no event store at {} (check data_dir)",
                path.display()
            );
            Ok(Arc::new(SqliteStore::open_read_only(&path)?))
        }
        _ => Ok(store::open(config).await?),
    }
}

fn parse_stream(text: &str) -> anyhow::Result<StreamId> {
    StreamId::parse(text).with_context(|| format!("stream {text:?}"))
}

/// `careflow replay`.
async fn replay(
    config: &Config,
    stream: &str,
    as_of: Option<DateTime<Utc>>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let stream = parse_stream(stream)?;
    let store = open_decrypting(config).await?;
    let replayed = audit::replay::replay(store.as_ref(), &stream, as_of).await;
    store.close().await;
    let replayed = replayed?;
    match format {
        Format::Table => print!("{}", replayed.render_table()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&replayed)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// `careflow audit ...`.
async fn audit(config: &Config, what: AuditCommand) -> anyhow::Result<ExitCode> {
    let finding = |intact: bool| {
        if intact {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    };
    match what {
        AuditCommand::Verify {
            stream: Some(stream),
            format,
            ..
        } => {
            let stream = parse_stream(&stream)?;
            let store = open_for_reading(config).await?;
            let report = audit::verify::verify_stream(store.as_ref(), &stream).await;
            store.close().await;
            let report = report?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Table => {
                    for b in &report.breaks {
                        println!(
                            "BROKEN stream {} version {} position {}: {}",
                            report.stream, b.version, b.position, b.problem
                        );
                    }
                    println!(
                        "checked {} events of {}: {}",
                        report.events,
                        report.stream,
                        if report.intact { "intact" } else { "TAMPERED" }
                    );
                }
            }
            Ok(finding(report.intact))
        }
        AuditCommand::Verify {
            stream: None,
            from_position,
            public_keys,
            threads,
            format,
        } => {
            let mut trusted = public_keys
                .iter()
                .map(|k| audit::key::parse_public(k))
                .collect::<Result<Vec<_>, _>>()?;
            if trusted.is_empty()
                && let Some(own) = audit::key::load(&audit::key::key_path(config))?
            {
                trusted.push(own.verifying_key());
            }
            let defaults = VerifyOptions::default();
            let options = VerifyOptions {
                from_position: from_position.max(1),
                trusted_keys: trusted,
                threads: threads.unwrap_or(defaults.threads),
                progress: format == Format::Table,
                ..defaults
            };
            let source = LogSource::from_config(config)?;
            let report = audit::verify::verify_log(&source, &options).await?;
            match format {
                Format::Table => print!("{}", report.render()),
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            Ok(finding(report.intact))
        }
        AuditCommand::Export {
            stream,
            patient,
            from,
            to,
            out,
            subject,
        } => {
            let selection = match (stream, patient, from, to) {
                (Some(stream), _, _, _) => Selection::Stream(parse_stream(&stream)?),
                (_, Some(mrn), _, _) => {
                    careflow_aggregates::stream_id::validate_id(&mrn)
                        .with_context(|| format!("MRN {mrn:?}"))?;
                    Selection::Patient(mrn)
                }
                (_, _, Some(from), Some(to)) => Selection::Between { from, to },
                _ => Selection::All,
            };
            let subject = subject
                .or_else(|| std::env::var("USER").ok())
                .or_else(|| std::env::var("LOGNAME").ok())
                .unwrap_or_else(|| "unknown".into());
            let key = audit::key::load_or_create(config)?;
            // Writing the access record needs the store's writer: on SQLite, the server's
            // lock must be free.
            let store = store::open(config).await.map_err(|e| {
                anyhow::Error::new(e).context(
                    "opening the event store for the access record (on SQLite, stop the server first)",
                )
            })?;
            // The stored bytes, not decrypted: each line's hash must check offline, and an
            // export then never carries personal data in clear (docs/audit-guide.md).
            let manifest =
                audit::export::export(store.as_ref(), &key, &selection, &out, &subject, true).await;
            store.close().await;
            let manifest = manifest?;
            println!(
                "exported {} events ({}) to {}\nmanifest: {}\npublic key: {}",
                manifest.body.count,
                manifest.body.selection,
                out.display(),
                audit::export::manifest_path(&out).display(),
                manifest.body.public_key
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::CheckExport {
            file,
            public_key,
            format,
        } => {
            let key = public_key
                .as_deref()
                .map(audit::key::parse_public)
                .transpose()?;
            let report = audit::export::check_export(&file, key.as_ref())?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Table => {
                    for p in &report.problems {
                        println!("ALTERED {p}");
                    }
                    println!(
                        "{} events, positions {}..{}, exported {} by {}, signed by {}: {}",
                        report.events,
                        report.manifest.first_position.unwrap_or(0),
                        report.manifest.last_position.unwrap_or(0),
                        report.manifest.exported_at,
                        report.manifest.exported_by,
                        report.manifest.public_key,
                        if report.intact() { "intact" } else { "ALTERED" }
                    );
                }
            }
            Ok(finding(report.intact()))
        }
        AuditCommand::Key => {
            let key = audit::key::load_or_create(config)?;
            println!("{}", hex::encode(key.verifying_key().to_bytes()));
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

/// `careflow erase <mrn> --reason R`: the same work as `POST /v1/patient-accounts/{mrn}/erase`,
/// through an actor registry of this process. On SQLite the event store's lock must be free
/// (a running server holds it): the error says to use the HTTP route instead (exit 2).
async fn erase(
    config: &Config,
    mrn: &str,
    reason: &str,
    subject: Option<String>,
) -> anyhow::Result<ExitCode> {
    careflow_aggregates::stream_id::validate_id(mrn).with_context(|| format!("MRN {mrn:?}"))?;
    let subject = subject
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .unwrap_or_else(|| "unknown".into());
    let stored = store::open(config).await.map_err(|e| {
        let hint = match config.store {
            StoreKind::Sqlite => {
                "opening the event store (a running server holds it on SQLite: stop it, or erase through POST /v1/patient-accounts/{mrn}/erase with an admin token)"
            }
            _ => "opening the event store",
        };
        anyhow::Error::new(e).context(hint)
    })?;
    let side = async {
        let personal = PersonalKeys::open(config)
            .await
            .context("opening the patient key store")?;
        let snapshots = snapshot::open(config)
            .await
            .context("opening the snapshot store")?;
        Ok::<_, anyhow::Error>((personal, snapshots))
    }
    .await;
    let (personal, snapshots) = match side {
        Ok(side) => side,
        Err(error) => {
            stored.close().await;
            return Err(error);
        }
    };
    let store: Arc<dyn EventStore> = Arc::new(EncryptingStore::new(
        Arc::clone(&stored),
        Arc::clone(&personal),
    ));
    let registry = Registry::start(
        Arc::clone(&store),
        Arc::new(EncryptingSnapshots::new(snapshots, Arc::clone(&personal))),
        ActorConfig::from_config(config),
    );
    let context = crate::actors::CommandContext {
        command_id: uuid::Uuid::new_v4(),
        correlation_id: uuid::Uuid::new_v4().to_string(),
        causation_id: uuid::Uuid::new_v4().to_string(),
        principal: subject,
        source: "cli".into(),
        occurred_at: Utc::now(),
        check_duplicate: false,
    };
    let outcome =
        crate::personal_data::erase(&registry, &personal, stored.as_ref(), mrn, reason, context)
            .await;
    registry.shutdown();
    store.close().await;
    let outcome = outcome.with_context(|| format!("erasing patient {mrn}"))?;
    match outcome.events.last() {
        Some(event) => println!(
            "erased personal data of patient {mrn}: {} at version {}, position {}; data key destroyed",
            event.event_type, event.version, event.position
        ),
        None => println!(
            "patient {mrn} was already erased (version {}); data key destroyed",
            outcome.version
        ),
    }
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
    let mllp = {
        let state = Arc::clone(&state);
        let registry: crate::mllp::RegistrySource =
            Arc::new(move || state.runtime().map(|r| Arc::clone(&r.registry)));
        crate::mllp::MllpServer::start(
            config.mllp_listen,
            crate::mllp::MllpSettings::from_config(&config),
            registry,
        )
        .with_context(|| format!("binding the MLLP listener {}", config.mllp_listen))?
    };
    {
        use std::io::Write;
        // The second line, for tests and scripts that listen on port 0 (written, not
        // println!ed: a reader that stopped after the first line must not panic serve).
        let mut out = std::io::stdout();
        let _ = writeln!(out, "careflow mllp listening on {}", mllp.local_addr());
        let _ = out.flush();
    }
    tracing::info!(addr = %mllp.local_addr(), "mllp listening");

    let handle = server.handle();
    // Set before the server is stopped, so it is there whichever task finishes first.
    let open_error: Arc<Mutex<Option<StoreError>>> = Arc::default();
    // The audit checkpointer, once the store is open (docs/audit-guide.md).
    let checkpoints: Arc<OnceLock<Checkpoints>> = Arc::default();
    let opener = {
        let state = Arc::clone(&state);
        let config = config.clone();
        let open_error = Arc::clone(&open_error);
        let checkpoints = Arc::clone(&checkpoints);
        actix_web::rt::spawn(async move {
            let mut delay = Duration::from_millis(200);
            loop {
                match open_runtime(&config).await {
                    Err(OpenFailure::Fatal(error)) => {
                        if let Ok(mut slot) = open_error.lock() {
                            *slot = Some(error);
                        }
                        handle.stop(false).await;
                        return;
                    }
                    Ok(runtime) => {
                        tracing::info!(backend = runtime.store.backend(), "event store open");
                        // Checkpoints pin the stored hashes: the undecrypted store.
                        let store = Arc::clone(&runtime.stored);
                        state.set_runtime(runtime);
                        start_checkpoints(&config, store, &checkpoints).await;
                        return;
                    }
                    // A shared server may come up after us: keep trying. An embedded file
                    // that cannot be opened will not fix itself.
                    Err(OpenFailure::Retry(error)) if config.store == StoreKind::Postgres => {
                        tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "event store not reachable");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                    Err(OpenFailure::Retry(error)) => {
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
    // No new HL7 messages once HTTP has stopped; unanswered ones are resent by their senders.
    mllp.stop();
    if let Some(runtime) = state.runtime() {
        // The process managers send commands too: stop them before the actors, so none is
        // mid-command when the registry shuts down (an interrupted one is redelivered after
        // the restart). The server has drained its requests already. The Odoo executor sends
        // RecordPurchaseOrder too.
        if let Some(odoo) = &runtime.odoo {
            odoo.shutdown(Duration::from_secs(5)).await;
        }
        runtime
            .process_managers
            .shutdown(Duration::from_secs(5))
            .await;
        runtime.registry.shutdown();
        runtime.outbound.shutdown(Duration::from_secs(5)).await;
        runtime.projections.shutdown().await;
        // Sign the log as it is left, so removing its newest events is evident. Before the
        // store closes: a closed PostgreSQL store cannot be read any more.
        if let Some((checkpointer, periodic)) = checkpoints.get() {
            periodic.abort();
            if let Err(error) = checkpointer.write().await {
                tracing::warn!(%error, "final audit checkpoint failed");
            }
        }
        runtime.store.close().await;
        tracing::info!("event store flushed and closed");
    }
    let open_error = open_error.lock().ok().and_then(|mut slot| slot.take());
    match open_error {
        Some(error) => Err(anyhow::Error::new(error).context("opening the event store")),
        None => Ok(()),
    }
}

type Checkpoints = (Arc<Checkpointer>, tokio::task::JoinHandle<()>);

/// Opens the audit checkpointer and starts its periodic task. A failure is logged, not fatal:
/// the service runs on, and `audit verify` notes the missing checkpoints.
async fn start_checkpoints(
    config: &Config,
    store: Arc<dyn EventStore>,
    slot: &OnceLock<Checkpoints>,
) {
    match Checkpointer::open(config, store).await {
        Ok(checkpointer) => {
            let checkpointer = Arc::new(checkpointer);
            let periodic = checkpointer.spawn_periodic();
            if slot.set((checkpointer, periodic)).is_err() {
                tracing::warn!("audit checkpointer started twice; keeping the first");
            }
        }
        Err(error) => tracing::error!(%error, "audit checkpoints are not being written"),
    }
}

/// Opens the event store and what lives beside it (snapshots, idempotency records), then
/// starts the actor registry.
/// Why the runtime did not open: worth retrying (a PostgreSQL server not up yet), or not.
enum OpenFailure {
    Retry(StoreError),
    /// A master key that does not match the store's keys will not fix itself: stop at once
    /// (exit 2) rather than retry forever.
    Fatal(StoreError),
}

impl From<StoreError> for OpenFailure {
    fn from(error: StoreError) -> Self {
        OpenFailure::Retry(error)
    }
}

async fn open_runtime(config: &Config) -> Result<Runtime, OpenFailure> {
    let stored = store::open(config).await?;
    let opened = async {
        let personal = PersonalKeys::open(config).await.map_err(|error| {
            let fatal = matches!(
                error,
                PersonalDataError::MasterKeyMismatch { .. }
                    | PersonalDataError::InvalidMasterKey(_)
                    | PersonalDataError::MasterKeyFile { .. }
            );
            let error = StoreError::unavailable(error);
            if fatal {
                OpenFailure::Fatal(error)
            } else {
                OpenFailure::Retry(error)
            }
        })?;
        let snapshots: Arc<dyn snapshot::SnapshotStore> = Arc::new(EncryptingSnapshots::new(
            snapshot::open(config)
                .await
                .map_err(StoreError::unavailable)?,
            Arc::clone(&personal),
        ));
        let idempotency = idempotency::open(config)
            .await
            .map_err(StoreError::unavailable)?;
        let views = views::open(config).await.map_err(StoreError::unavailable)?;
        let checkpoints = crate::consumers::checkpoint::open(config)
            .await
            .map_err(StoreError::unavailable)?;
        let dead_letters = DeadLetters::open(config)
            .await
            .map_err(StoreError::unavailable)?;
        Ok::<_, OpenFailure>((
            personal,
            snapshots,
            idempotency,
            views,
            checkpoints,
            dead_letters,
        ))
    }
    .await;
    let (personal, snapshots, idempotency, views, checkpoints, dead_letters) = match opened {
        Ok(side) => side,
        Err(error) => {
            // Release the store (and its lock file) before the caller retries or gives up.
            stored.close().await;
            return Err(error);
        }
    };
    // Everything that reads events for their meaning (HTTP, actors, replays) goes through
    // this one wrapper: personal data is encrypted on the way in and decrypted, or `null`
    // once erased, on the way out (docs/audit-guide.md "Erasure").
    let encrypting = Arc::new(EncryptingStore::new(
        Arc::clone(&stored),
        Arc::clone(&personal),
    ));
    let store: Arc<dyn EventStore> = encrypting.clone();
    let registry = Registry::start(
        Arc::clone(&store),
        snapshots,
        ActorConfig::from_config(config),
    );
    // One reader of the log for every consumer of this process (store::feed). It reads the
    // stored bytes: projections blank every `personal` object, the publishers send it as
    // `null`, and the one policy that needs it (eligibility) decrypts its own events.
    let feed = LogFeed::start(Arc::clone(&stored), FeedConfig::default()).await;
    // Every consumer's state, for /readyz and the metrics (src/consumers).
    let health = Health::new();
    let projections = ProjectionSet::start(
        Arc::clone(&feed),
        views,
        views::runner::all_projections(),
        RunnerConfig::default(),
        &health,
    );
    // The outbound publishers keep their checkpoints in the same table (`nats`, `webhooks`).
    let outbound = Outbound::start(
        config,
        OutboundDeps {
            feed: Arc::clone(&feed),
            checkpoints: Arc::clone(&checkpoints),
            personal: Arc::clone(&personal),
            dead_letters: dead_letters.clone(),
        },
        &health,
    );
    let odoo = odoo_executor(
        config,
        &feed,
        &health,
        &registry,
        &checkpoints,
        dead_letters.clone(),
    );
    let process_managers = ProcessManagers::start(
        encrypting,
        Arc::clone(&registry),
        &Consumers {
            feed: Arc::clone(&feed),
            checkpoints,
            health: Arc::clone(&health),
            dead_letters: dead_letters.clone(),
        },
        payer_client(config),
        ManagerConfig::from_config(config),
        config.process_managers,
    );
    Ok(Runtime {
        store,
        stored,
        personal,
        registry,
        idempotency,
        projections,
        process_managers,
        outbound,
        dead_letters,
        fhir: crate::fhir::FhirSettings::from_config(config),
        odoo,
        feed,
        health,
    })
}

/// The Odoo executor, when `odoo_url` is set (docs/odoo.md "Operating"). It reads the stored
/// events (the mapping never uses personal data) and shares the process managers'
/// checkpoint table and leases: on PostgreSQL only the lease holder executes.
fn odoo_executor(
    config: &Config,
    feed: &Arc<LogFeed>,
    health: &Arc<Health>,
    registry: &Arc<Registry>,
    checkpoints: &Arc<dyn crate::consumers::checkpoint::CheckpointStore>,
    dead_letters: crate::dead_letters::DeadLetters,
) -> Option<Arc<crate::odoo::OdooExecutor>> {
    let settings = crate::odoo::OdooSettings::from_config(config)?;
    match crate::odoo::OdooClient::new(settings) {
        Ok(client) => Some(crate::odoo::OdooExecutor::start(
            Arc::clone(feed),
            Arc::clone(registry),
            Arc::clone(checkpoints),
            dead_letters,
            client,
            crate::odoo::ExecutorConfig::default(),
            health,
        )),
        Err(error) => {
            tracing::error!(%error, "odoo_url cannot be used: nothing is sent to Odoo");
            None
        }
    }
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
