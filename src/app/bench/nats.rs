//! `careflow bench nats`: does the NATS publisher keep up with a given rate of commits?
//!
//! Writers append commands of `--per-command` events to a throw-away SQLite store (a new file
//! beside the data dir's) at a paced total rate of events, while the real publisher
//! (`outbound::nats`, its own throw-away checkpoint file) follows the log and publishes to a
//! throw-away JetStream stream on `nats_url`. Two lags per event, p50/p99/max:
//!
//! - **publish lag**: from the commit (the moment the append returned, durable) to the moment
//!   JetStream had acknowledged the event's whole batch: the publisher's own delay;
//! - **end to end**: from the event's `recorded_at` (stamped before the group commit) to that
//!   acknowledgement: the store's queueing and fsync included, what `careflow_nats_lag_seconds`
//!   exports.
//!
//! It also reports the rate actually appended and how long the publisher needed after the last
//! append to catch up. The stream is deleted afterwards.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use careflow_aggregates::StreamId;
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

use super::{latency_histogram, ms, quantile, remove_sqlite_files};
use crate::config::Config;
use crate::outbound::nats::{self, NatsDeps, NatsSettings};
use crate::runtime::consumers::checkpoint::{CheckpointStore, SqliteCheckpoints};
use crate::store::sqlite::{SqliteConfig, SqliteStore};
use crate::store::{
    AppendRequest, CommandMeta, EventStore, Events, ExpectedVersion, ProposedEvent,
};

/// (position, recorded_at, acknowledged at) of every acknowledged event.
type Acked = Mutex<Vec<(u64, DateTime<Utc>, DateTime<Utc>)>>;
/// (position, append returned at) of every committed event.
type Committed = Mutex<Vec<(u64, DateTime<Utc>)>>;

/// What `bench nats` runs.
#[derive(Debug, Clone)]
pub struct NatsBench {
    /// Events to append.
    pub events: usize,
    /// Events per command (one append carries them all).
    pub per_command: usize,
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
    pub per_command: usize,
    pub appended_rate: f64,
    /// Commit (append returned) to acknowledgement.
    pub publish: [Duration; 3],
    /// `recorded_at` to acknowledgement.
    pub end_to_end: [Duration; 3],
    /// From the last append's acknowledgement to the publisher's checkpoint at the head.
    pub catch_up: Duration,
}

impl fmt::Display for NatsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "events: {} per command: {} target events/s: {} appended events/s: {:.0}",
            self.events, self.per_command, self.target_rate, self.appended_rate
        )?;
        let [p50, p99, max] = self.publish;
        writeln!(
            f,
            "publish lag (commit -> ack) p50_ms: {:.1} p99_ms: {:.1} max_ms: {:.1}",
            ms(p50),
            ms(p99),
            ms(max)
        )?;
        let [p50, p99, max] = self.end_to_end;
        writeln!(
            f,
            "end to end (recorded_at -> ack) p50_ms: {:.1} p99_ms: {:.1} max_ms: {:.1}",
            ms(p50),
            ms(p99),
            ms(max)
        )?;
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
    let acked: Arc<Acked> = Arc::default();
    let recorder: nats::AckRecorder = {
        let acked = Arc::clone(&acked);
        Arc::new(move |events: &Events, at: DateTime<Utc>| {
            if let Ok(mut acked) = acked.lock() {
                acked.extend(
                    events
                        .iter()
                        .map(|e| (e.position, e.metadata.recorded_at, at)),
                );
            }
        })
    };
    let (stop, stop_rx) = watch::channel(false);
    let feed = crate::store::LogFeed::start(Arc::clone(&store), Default::default()).await;
    let publisher = tokio::spawn(nats::run(NatsDeps {
        feed,
        checkpoints: Arc::clone(&checkpoints),
        settings: settings.clone(),
        stop: stop_rx,
        health: crate::runtime::consumers::Health::new().register(nats::CHECKPOINT, true),
        acks: Some(recorder),
        clock: crate::clock::Clock::system(),
    }));
    let report = measure(&store, checkpoints.as_ref(), spec, &run, &acked).await;
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
    acked: &Acked,
) -> anyhow::Result<NatsReport> {
    let writers = spec.writers.max(1);
    let per_command = spec.per_command.max(1);
    let commands = spec.events.div_ceil(per_command);
    // Commands per second that make the target rate of events.
    let rate = spec.rate.max(1) as f64 / per_command as f64;
    let committed: Arc<Committed> = Arc::default();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let count = commands / writers + usize::from(w < commands % writers);
        let store = Arc::clone(store);
        let run = run.to_string();
        let committed = Arc::clone(&committed);
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::new("patient_account", &format!("B{run}-{w}"))
                .map_err(|e| anyhow::anyhow!("stream id: {e}"))?;
            for i in 0..count {
                // The i-th append of writer w is due at (i * writers + w) / rate.
                let due = started + Duration::from_secs_f64((i * writers + w) as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let command_id = Uuid::new_v4();
                let appended = store
                    .append(AppendRequest {
                        stream_id: stream.clone(),
                        expected: ExpectedVersion::Exact((i * per_command) as u64),
                        meta: CommandMeta {
                            command_id,
                            correlation_id: command_id.to_string(),
                            causation_id: command_id.to_string(),
                            principal: "bench".into(),
                            source: "bench".into(),
                            occurred_at: Utc::now(),
                        },
                        events: (0..per_command)
                            .map(|k| ProposedEvent {
                                event_type: "ChargePosted".into(),
                                schema_version: 1,
                                data: json!({"charge_id": format!("C{i}-{k}"),
                                    "encounter_id": "V1", "code": "99213",
                                    "description": "visit", "quantity": 1,
                                    "unit_price": "125.50", "currency": "USD"}),
                            })
                            .collect(),
                    })
                    .await
                    .context("append")?;
                let at = Utc::now();
                if let Ok(mut committed) = committed.lock() {
                    committed.extend(appended.events.iter().map(|e| (e.position, at)));
                }
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
    let committed: HashMap<u64, DateTime<Utc>> = committed
        .lock()
        .map_err(|_| anyhow::anyhow!("commit times poisoned"))?
        .iter()
        .copied()
        .collect();
    let mut publish = latency_histogram()?;
    let mut end_to_end = latency_histogram()?;
    let micros = |from: DateTime<Utc>, to: DateTime<Utc>| {
        u64::try_from((to - from).num_microseconds().unwrap_or(0))
            .unwrap_or(0)
            .max(1)
    };
    for (position, recorded_at, acked_at) in acked
        .lock()
        .map_err(|_| anyhow::anyhow!("ack times poisoned"))?
        .iter()
    {
        if let Some(commit) = committed.get(position) {
            publish.saturating_record(micros(*commit, *acked_at));
        }
        end_to_end.saturating_record(micros(*recorded_at, *acked_at));
    }
    let three = |h: &hdrhistogram::Histogram<u64>| {
        [
            quantile(h, 0.5),
            quantile(h, 0.99),
            Duration::from_micros(h.max()),
        ]
    };
    Ok(NatsReport {
        events: commands * per_command,
        target_rate: spec.rate,
        per_command,
        appended_rate: (commands * per_command) as f64 / appended.as_secs_f64(),
        publish: three(&publish),
        end_to_end: three(&end_to_end),
        catch_up,
    })
}
