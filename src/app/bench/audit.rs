//! `careflow bench verify` and `careflow bench replay`: the auditor's two long-running reads.
//!
//! Both build a throw-away SQLite database in the data dir (or, for `bench verify --store
//! postgres`, a throw-away PostgreSQL schema) through the real store (real
//! envelopes, real hash chains, PatientAccount events as the decider emits them), then time
//! the same code the CLI runs: `audit::verify::verify_log` over the whole log, and
//! `audit::replay::replay` of one long stream as of a time in its middle and as of now.
//! The database is freshly written, so its pages are in the OS cache, as on a server that
//! is running.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use careflow_aggregates::{Aggregate, Ctx, PatientAccount, StreamId};
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::remove_sqlite_files;
use crate::config::{Config, StoreKind};
use crate::operations::audit::raw::LogSource;
use crate::operations::audit::verify::{VerifyOptions, verify_log};
use crate::store::postgres::{PostgresConfig, PostgresStore};
use crate::store::sqlite::{SqliteConfig, SqliteStore};
use crate::store::{AppendRequest, CommandMeta, EventStore, ExpectedVersion, ProposedEvent};

/// What `bench verify` runs.
#[derive(Debug, Clone)]
pub struct VerifyBench {
    pub store: StoreKind,
    pub events: u64,
    pub streams: u64,
    pub threads: Option<usize>,
    pub runs: usize,
}

/// What `bench verify` measured (the best of the runs).
#[derive(Debug, Clone)]
pub struct VerifyBenchReport {
    pub store: StoreKind,
    pub events: u64,
    pub streams: u64,
    pub threads: usize,
    pub build: Duration,
    pub best: Duration,
}

impl fmt::Display for VerifyBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "store: {:?} events: {} streams: {} threads: {} (built in {:.1} s)",
            self.store,
            self.events,
            self.streams,
            self.threads,
            self.build.as_secs_f64()
        )?;
        writeln!(f, "verify_seconds: {:.3}", self.best.as_secs_f64())?;
        write!(
            f,
            "verify_events_per_second: {:.0}",
            self.events as f64 / self.best.as_secs_f64().max(1e-9)
        )
    }
}

/// Builds a log of `events` events over `streams` patient accounts, then verifies it.
///
/// # Errors
/// When the database cannot be built, or verification fails or finds anything.
pub async fn verify(config: &Config, spec: &VerifyBench) -> anyhow::Result<VerifyBenchReport> {
    match spec.store {
        StoreKind::Sqlite => {
            let db = throwaway(config, "verify")?;
            let result = async {
                let store: Arc<dyn EventStore> =
                    Arc::new(SqliteStore::open(SqliteConfig::new(&db))?);
                measure_verify(store, LogSource::Sqlite(db.clone()), spec).await
            }
            .await;
            remove_sqlite_files(&db);
            result
        }
        StoreKind::Postgres => {
            let url = config
                .database_url
                .as_ref()
                .map(|s| s.expose().to_string())
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
            let schema = format!(
                "bench_verify_{}",
                &Uuid::new_v4().simple().to_string()[..12]
            );
            let result = async {
                let store: Arc<dyn EventStore> = Arc::new(
                    PostgresStore::open(PostgresConfig::new(&url, &schema))
                        .await
                        .context("opening the bench schema")?,
                );
                let source = LogSource::Postgres {
                    url: url.clone(),
                    schema: schema.clone(),
                };
                measure_verify(store, source, spec).await
            }
            .await;
            super::append::drop_schema(&url, &schema).await;
            result
        }
        StoreKind::Kurrentdb => {
            anyhow::bail!(
                "this bench seeds a throw-away log; it has no kurrentdb mode (a KurrentDB log cannot be thrown away): run careflow audit verify against your server instead"
            )
        }
    }
}

async fn measure_verify(
    store: Arc<dyn EventStore>,
    source: LogSource,
    spec: &VerifyBench,
) -> anyhow::Result<VerifyBenchReport> {
    let started = Instant::now();
    let streams = spec.streams.max(1);
    let per_stream = spec.events.max(streams) / streams;
    build(store, streams, per_stream).await?;
    let build = started.elapsed();
    let options = VerifyOptions {
        threads: spec
            .threads
            .unwrap_or_else(|| VerifyOptions::default().threads),
        ..VerifyOptions::default()
    };
    let mut best = Duration::MAX;
    for _ in 0..spec.runs.max(1) {
        let report = verify_log(&source, &options).await?;
        anyhow::ensure!(
            report.findings.is_empty() && report.events == streams * per_stream,
            "verification of the bench log found {} breaks in {} events",
            report.findings.len(),
            report.events
        );
        best = best.min(report.elapsed);
    }
    Ok(VerifyBenchReport {
        store: spec.store,
        events: streams * per_stream,
        streams,
        threads: options.threads,
        build,
        best,
    })
}

/// What `bench replay` runs.
#[derive(Debug, Clone)]
pub struct ReplayBench {
    pub events: u64,
    pub runs: usize,
}

/// What `bench replay` measured.
#[derive(Debug, Clone)]
pub struct ReplayBenchReport {
    pub events: u64,
    pub best_full: Duration,
    pub best_half: Duration,
}

impl fmt::Display for ReplayBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "events: {}", self.events)?;
        writeln!(f, "replay_now_seconds: {:.3}", self.best_full.as_secs_f64())?;
        write!(
            f,
            "replay_as_of_middle_seconds: {:.3}",
            self.best_half.as_secs_f64()
        )
    }
}

/// Builds one account of `events` events and replays it on a read-only handle, as
/// `careflow replay` does: as of now, and as of the middle of its history.
///
/// # Errors
/// When the database cannot be built or a replay fails.
pub async fn replay(config: &Config, spec: &ReplayBench) -> anyhow::Result<ReplayBenchReport> {
    let db = throwaway(config, "replay")?;
    let result = async {
        let events = spec.events.max(2);
        let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(SqliteConfig::new(&db))?);
        let recorded = build(store, 1, events).await?;
        let middle = recorded
            .get(recorded.len() / 2)
            .copied()
            .context("no middle event")?;
        let store = SqliteStore::open_read_only(&db)?;
        let stream = StreamId::new(PatientAccount::KIND, "BENCH-0")?;
        let mut best_full = Duration::MAX;
        let mut best_half = Duration::MAX;
        for _ in 0..spec.runs.max(1) {
            let t = Instant::now();
            let full = crate::operations::audit::replay::replay(&store, &stream, None).await?;
            best_full = best_full.min(t.elapsed());
            anyhow::ensure!(full.version == events, "replayed {} events", full.version);
            let t = Instant::now();
            let half =
                crate::operations::audit::replay::replay(&store, &stream, Some(middle)).await?;
            best_half = best_half.min(t.elapsed());
            anyhow::ensure!(
                half.version < events,
                "as-of replay reached version {}",
                half.version
            );
        }
        Ok(ReplayBenchReport {
            events,
            best_full,
            best_half,
        })
    }
    .await;
    remove_sqlite_files(&db);
    result
}

fn throwaway(config: &Config, what: &str) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let run = Uuid::new_v4().simple().to_string()[..12].to_string();
    Ok(config.data_dir.join(format!("bench-{what}-{run}.db")))
}

/// Events per append while building (one command of many events: the chain and envelopes
/// are the same as one event per command, and the build takes seconds, not minutes).
const EVENTS_PER_APPEND: u64 = 500;

/// Appends `per_stream` events (RegisterPatient, then PostCharge) to each of `streams`
/// accounts `BENCH-{i}`, appends to different streams running concurrently. Returns the
/// `recorded_at` of every append of stream 0, in order, and closes the store.
async fn build(
    store: Arc<dyn EventStore>,
    streams: u64,
    per_stream: u64,
) -> anyhow::Result<Vec<chrono::DateTime<Utc>>> {
    let register = decide(json!({"type": "RegisterPatient",
        "name": {"family": "Bench", "given": ["A"]}, "birth_date": "1970-01-01",
        "gender": "unknown", "facility": "MAIN"}))?;
    let mut tasks = tokio::task::JoinSet::new();
    let concurrency = 64u64;
    for worker in 0..concurrency.min(streams) {
        let store = Arc::clone(&store);
        let register = register.clone();
        tasks.spawn(async move {
            let mut recorded = Vec::new();
            let mut s = worker;
            while s < streams {
                let stream = StreamId::new(PatientAccount::KIND, &format!("BENCH-{s}"))?;
                let mut version = 0u64;
                while version < per_stream {
                    let n = EVENTS_PER_APPEND.min(per_stream - version);
                    let events = (version..version + n)
                        .map(|v| {
                            if v == 0 {
                                Ok(register.clone())
                            } else {
                                decide(json!({"type": "PostCharge", "charge_id": format!("C{v}"),
                                    "encounter_id": "V1", "code": "99213",
                                    "description": "Office visit, established patient",
                                    "quantity": 1, "unit_price": "125.50"}))
                            }
                        })
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    let appended = store
                        .append(AppendRequest {
                            stream_id: stream.clone(),
                            expected: ExpectedVersion::Exact(version),
                            meta: CommandMeta {
                                command_id: Uuid::new_v4(),
                                correlation_id: "bench".into(),
                                causation_id: "bench".into(),
                                principal: "bench".into(),
                                source: "bench".into(),
                                occurred_at: Utc::now(),
                            },
                            events,
                        })
                        .await?;
                    if s == 0
                        && let Some(first) = appended.events.first()
                    {
                        recorded.push(first.metadata.recorded_at);
                    }
                    version += n;
                }
                s += concurrency;
            }
            anyhow::Ok(recorded)
        });
    }
    let mut recorded = Vec::new();
    while let Some(done) = tasks.join_next().await {
        recorded.extend(done??);
    }
    store.close().await;
    Ok(recorded)
}

/// The single event a command on a fresh account decides, encoded for the store.
fn decide(body: serde_json::Value) -> anyhow::Result<ProposedEvent> {
    let is_registration = body["type"] == "RegisterPatient";
    let command = PatientAccount::parse_command(body)
        .map_err(|r| anyhow::anyhow!("bench command refused: {r}"))?
        .command;
    let mut state = PatientAccount::initial_state();
    if !is_registration {
        // A charge needs a registered account; decide it against one.
        let registered = decide(json!({"type": "RegisterPatient",
            "name": {"family": "Bench", "given": ["A"]}, "birth_date": "1970-01-01",
            "gender": "unknown", "facility": "MAIN"}))?;
        let event = PatientAccount::decode(
            &registered.event_type,
            registered.schema_version,
            registered.data,
        )?;
        state = PatientAccount::evolve(state, &event);
    }
    let decided = PatientAccount::decide(
        &state,
        &command,
        &Ctx::new(Utc::now(), Uuid::nil(), "bench"),
    )
    .map_err(|r| anyhow::anyhow!("bench command refused: {r}"))?;
    let event = decided.first().context("the command decided no event")?;
    let encoded = PatientAccount::encode(event);
    Ok(ProposedEvent {
        event_type: encoded.event_type.to_string(),
        schema_version: encoded.schema_version,
        data: encoded.data,
    })
}
