//! `careflow bench append`: durable appends measured in-process.
//!
//! It drives the real backend with N concurrent writers appending single-event
//! commands. With `--streams per-writer` (the default) each writer owns one stream and
//! appends to it with `ExpectedVersion::Exact`, as an aggregate's actor does; with
//! `--streams per-command` every append opens a fresh stream (`NoStream`, the shape of a
//! burst of RegisterPatient), so every append misses the head cache. Every append is awaited
//! until durable, so the figures are durable appends/s. It writes into a throw-away database
//! (a new file beside the data dir's, or a new PostgreSQL schema) and removes it afterwards;
//! on KurrentDB it writes streams named after the run, which stay on the server.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use careflow_aggregates::StreamId;
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use uuid::Uuid;

use super::{latency_histogram, ms, quantile, remove_sqlite_files};
use crate::config::{Config, StoreKind};
use crate::operations::metrics;
use crate::store::kurrentdb::KurrentStore;
use crate::store::postgres::{PostgresConfig, PostgresStore};
use crate::store::sqlite::{SqliteConfig, SqliteStore};
use crate::store::{AppendRequest, CommandMeta, EventStore, ExpectedVersion, ProposedEvent};

/// What `bench append` runs.
#[derive(Debug, Clone)]
pub struct AppendBench {
    pub store: StoreKind,
    pub writers: usize,
    pub events: usize,
    pub batch: Option<usize>,
    pub streams: StreamChoice,
}

/// Which streams the writers append to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StreamChoice {
    /// Each writer appends to a stream of its own.
    PerWriter,
    /// Each append opens a new stream.
    PerCommand,
}

/// What `bench append` measured.
#[derive(Debug, Clone)]
pub struct AppendReport {
    pub backend: &'static str,
    pub streams: StreamChoice,
    pub writers: usize,
    pub events: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Group commits the run took (commands per commit = events / commits).
    pub commits: u64,
}

impl fmt::Display for AppendReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let streams = match self.streams {
            StreamChoice::PerWriter => "per-writer",
            StreamChoice::PerCommand => "per-command",
        };
        writeln!(
            f,
            "store: {} streams: {streams} writers: {} events: {}",
            self.backend, self.writers, self.events
        )?;
        writeln!(
            f,
            "appends/s: {:.0}",
            self.events as f64 / self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "p50_ms: {:.3}", ms(self.p50))?;
        writeln!(f, "p99_ms: {:.3}", ms(self.p99))?;
        writeln!(f, "max_ms: {:.3}", ms(self.max))?;
        write!(
            f,
            "commits: {} (mean {:.1} commands each)",
            self.commits,
            self.events as f64 / self.commits.max(1) as f64
        )
    }
}

/// Runs the append benchmark against a fresh database of the chosen backend.
///
/// # Errors
/// When the backend cannot be opened or an append fails.
pub async fn append(config: &Config, spec: &AppendBench) -> anyhow::Result<AppendReport> {
    let run = Uuid::new_v4().simple().to_string()[..12].to_string();
    match spec.store {
        StoreKind::Sqlite => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
            let path = config.data_dir.join(format!("bench-{run}.db"));
            let mut sqlite = SqliteConfig::new(&path);
            if let Some(batch) = spec.batch {
                sqlite.max_batch = batch;
            }
            let store: Arc<dyn EventStore> =
                Arc::new(SqliteStore::open(sqlite).context("opening the bench database")?);
            let report = drive(Arc::clone(&store), spec, &run).await;
            store.close().await;
            remove_sqlite_files(&path);
            report
        }
        StoreKind::Postgres => {
            let url = config
                .database_url
                .as_ref()
                .map(|s| s.expose().to_string())
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
            let schema = format!("bench_{run}");
            let mut pg = PostgresConfig::new(&url, &schema);
            if let Some(batch) = spec.batch {
                pg.max_batch = batch;
            }
            let store: Arc<dyn EventStore> = Arc::new(
                PostgresStore::open(pg)
                    .await
                    .context("opening the bench schema")?,
            );
            let report = drive(Arc::clone(&store), spec, &run).await;
            store.close().await;
            drop_schema(&url, &schema).await;
            report
        }
        StoreKind::Kurrentdb => {
            // KurrentDB cannot drop what the run wrote: its streams (named after the run) stay
            // on the server, so point the bench at a scratch server.
            let url = config.kurrentdb_url.as_ref().context(
                "bench append --store kurrentdb needs kurrentdb_url (CAREFLOW_KURRENTDB_URL)",
            )?;
            let store: Arc<dyn EventStore> = Arc::new(
                KurrentStore::open(url.expose())
                    .await
                    .context("connecting to KurrentDB")?,
            );
            let report = drive(Arc::clone(&store), spec, &run).await;
            store.close().await;
            report
        }
    }
}

pub(super) async fn drop_schema(url: &str, schema: &str) {
    let Ok(connect) = crate::store::pg_connect::PgConnect::from_url(url) else {
        return;
    };
    if let Ok(client) = connect.connect("bench cleanup").await {
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await;
    }
}

async fn drive(
    store: Arc<dyn EventStore>,
    spec: &AppendBench,
    run: &str,
) -> anyhow::Result<AppendReport> {
    let writers = spec.writers.max(1);
    let progress = ProgressBar::new(spec.events as u64);
    progress.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} appends [{elapsed_precise}] {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (commits_before, _) = metrics::store_commit_totals(store.backend());
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let count = spec.events / writers + usize::from(w < spec.events % writers);
        let store = Arc::clone(&store);
        let progress = progress.clone();
        let run = run.to_string();
        let streams = spec.streams;
        tasks.push(tokio::spawn(async move {
            let mut latencies = latency_histogram()?;
            let mut version = 0;
            for i in 0..count {
                let request = request(&run, streams, w, i, version)?;
                let t = Instant::now();
                version = store.append(request).await.context("append")?.version;
                latencies.saturating_record(t.elapsed().as_micros() as u64);
                progress.inc(1);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = latency_histogram()?;
    for task in tasks {
        let latencies = task.await.context("writer task")??;
        all.add(&latencies)
            .map_err(|e| anyhow::anyhow!("histogram: {e}"))?;
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    Ok(AppendReport {
        backend: store.backend(),
        streams: spec.streams,
        writers,
        events: spec.events,
        elapsed,
        p50: quantile(&all, 0.5),
        p99: quantile(&all, 0.99),
        max: Duration::from_micros(all.max()),
        commits: metrics::store_commit_totals(store.backend()).0 - commits_before,
    })
}

fn request(
    run: &str,
    streams: StreamChoice,
    writer: usize,
    i: usize,
    version: u64,
) -> anyhow::Result<AppendRequest> {
    let (stream, expected) = match streams {
        StreamChoice::PerWriter => (
            StreamId::new("patient_account", &format!("bench-{run}-{writer}"))?,
            ExpectedVersion::Exact(version),
        ),
        StreamChoice::PerCommand => (
            StreamId::new("patient_account", &format!("bench-{run}-{writer}-{i}"))?,
            ExpectedVersion::NoStream,
        ),
    };
    Ok(AppendRequest {
        stream_id: stream,
        expected,
        meta: CommandMeta {
            command_id: Uuid::new_v4(),
            correlation_id: format!("bench-{run}"),
            causation_id: format!("bench-{run}"),
            principal: "bench".into(),
            source: "bench".into(),
            occurred_at: Utc::now(),
        },
        events: vec![ProposedEvent {
            event_type: "ChargePosted".into(),
            schema_version: 1,
            data: json!({
                "charge_id": format!("C-{writer}-{i}"),
                "encounter_id": "V-2026-000123",
                "code": "99213",
                "description": "Office visit, established patient",
                "quantity": 1,
                "unit_price": "125.50",
                "currency": "USD"
            }),
        }],
    })
}
