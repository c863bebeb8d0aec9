//! `careflow bench nats`: does the NATS publisher keep up with a given rate of commits?
//!
//! Writers append single-event commands to a throw-away SQLite store (a new file beside the
//! data dir's) at a paced total rate, while the real publisher (`outbound::nats`, its own
//! throw-away checkpoint file) follows the log and publishes to a throw-away JetStream stream
//! on `nats_url`. Every event's lag is measured from its `recorded_at` (the commit) to
//! JetStream's acknowledgement of its publication; the report gives p50/p99/max of that lag,
//! the rate actually appended, and how long the publisher needed after the last append to
//! catch up. The stream is deleted afterwards.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use careflow_aggregates::StreamId;
use chrono::Utc;
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

use super::{latency_histogram, ms, quantile, remove_sqlite_files};
use crate::config::Config;
use crate::outbound::nats::{self, NatsDeps, NatsSettings};
use crate::process_managers::checkpoint::{CheckpointStore, SqliteCheckpoints};
use crate::store::sqlite::{SqliteConfig, SqliteStore};
use crate::store::{AppendRequest, CommandMeta, EventStore, ExpectedVersion, ProposedEvent};

/// What `bench nats` runs.
#[derive(Debug, Clone)]
pub struct NatsBench {
    /// Events to append (one per command).
    pub events: usize,
    /// Target events per second, all writers together.
    pub rate: u64,
    /// Concurrent writers.
    pub writers: usize,
}

/// What `bench nats` measured.
#[derive(Debug, Clone)]
pub struct NatsReport {
    pub events: usize,
    pub target_rate: u64,
    pub appended_rate: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// From the last append's acknowledgement to the publisher's checkpoint at the head.
    pub catch_up: Duration,
}

impl fmt::Display for NatsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "events: {} target/s: {} appended/s: {:.0}",
            self.events, self.target_rate, self.appended_rate
        )?;
        writeln!(f, "publish_lag_p50_ms: {:.1}", ms(self.p50))?;
        writeln!(f, "publish_lag_p99_ms: {:.1}", ms(self.p99))?;
        writeln!(f, "publish_lag_max_ms: {:.1}", ms(self.max))?;
        write!(f, "catch_up_after_last_append_ms: {:.1}", ms(self.catch_up))
    }
}

/// Runs the benchmark.
///
/// # Errors
/// Without `nats_url`, when NATS or the throw-away store cannot be used, or when the publisher
/// does not catch up within a minute of the last append.
pub async fn nats(config: &Config, spec: &NatsBench) -> anyhow::Result<NatsReport> {
    let url = config
        .nats_url
        .clone()
        .context("bench nats needs nats_url (CAREFLOW_NATS_URL), e.g. nats://127.0.0.1:4222")?;
    let run = Uuid::new_v4().simple().to_string()[..12].to_string();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let db = config.data_dir.join(format!("bench-{run}.db"));
    let checkpoints_db = config.data_dir.join(format!("bench-{run}-checkpoints.db"));
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(SqliteConfig::new(&db)).context("opening the bench database")?);
    let checkpoints: Arc<dyn CheckpointStore> =
        Arc::new(SqliteCheckpoints::open(&checkpoints_db).context("opening bench checkpoints")?);
    let settings = NatsSettings::new(
        url.clone(),
        format!("CAREFLOW_BENCH_{run}"),
        format!("careflow.bench.{run}"),
    );
    let delays = Arc::new(Mutex::new(latency_histogram()?));
    let (stop, stop_rx) = watch::channel(false);
    let publisher = tokio::spawn(nats::run(NatsDeps {
        store: Arc::clone(&store),
        checkpoints: Arc::clone(&checkpoints),
        settings: settings.clone(),
        stop: stop_rx,
        delays: Some(Arc::clone(&delays)),
    }));
    let report = measure(&store, checkpoints.as_ref(), spec, &run, &delays).await;
    let _ = stop.send(true);
    let _ = publisher.await;
    if let Ok(client) = async_nats::connect(url.as_str()).await {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(&settings.stream)
            .await;
    }
    store.close().await;
    remove_sqlite_files(&db);
    remove_sqlite_files(&checkpoints_db);
    report
}

async fn measure(
    store: &Arc<dyn EventStore>,
    checkpoints: &dyn CheckpointStore,
    spec: &NatsBench,
    run: &str,
    delays: &nats::DelayRecorder,
) -> anyhow::Result<NatsReport> {
    let writers = spec.writers.max(1);
    let rate = spec.rate.max(1) as f64;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let count = spec.events / writers + usize::from(w < spec.events % writers);
        let store = Arc::clone(store);
        let run = run.to_string();
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::new("patient_account", &format!("B{run}-{w}"))
                .map_err(|e| anyhow::anyhow!("stream id: {e}"))?;
            for i in 0..count {
                // The i-th append of writer w is due at (i * writers + w) / rate.
                let due = started + Duration::from_secs_f64((i * writers + w) as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let command_id = Uuid::new_v4();
                store
                    .append(AppendRequest {
                        stream_id: stream.clone(),
                        expected: ExpectedVersion::Exact(i as u64),
                        meta: CommandMeta {
                            command_id,
                            correlation_id: command_id.to_string(),
                            causation_id: command_id.to_string(),
                            principal: "bench".into(),
                            source: "bench".into(),
                            occurred_at: Utc::now(),
                        },
                        events: vec![ProposedEvent {
                            event_type: "ChargePosted".into(),
                            schema_version: 1,
                            data: json!({"charge_id": format!("C{i}"), "encounter_id": "V1",
                                "code": "99213", "description": "visit", "quantity": 1,
                                "unit_price": "125.50", "currency": "USD"}),
                        }],
                    })
                    .await
                    .context("append")?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("writer task")??;
    }
    let appended = started.elapsed();
    let head = store.head_position().await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let position = checkpoints
            .load(nats::CHECKPOINT)
            .await?
            .map_or(0, |c| c.position);
        if position >= head {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the publisher is at {position} of {head} a minute after the last append"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let catch_up = started.elapsed().saturating_sub(appended);
    let histogram = delays
        .lock()
        .map_err(|_| anyhow::anyhow!("delay histogram poisoned"))?
        .clone();
    Ok(NatsReport {
        events: spec.events,
        target_rate: spec.rate,
        appended_rate: spec.events as f64 / appended.as_secs_f64(),
        p50: quantile(&histogram, 0.5),
        p99: quantile(&histogram, 0.99),
        max: Duration::from_micros(histogram.max()),
        catch_up,
    })
}
