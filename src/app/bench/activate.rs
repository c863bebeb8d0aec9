//! `careflow bench activate`: cold activation of an aggregate with a long history.
//!
//! It builds one patient account of `--events` events through the real decider and store
//! (RegisterPatient, then PostCharge), writes the snapshot the registry would have taken at
//! the last multiple of `snapshot_every` below the head (so the tail is as long as it gets:
//! 100 events by default), and then times `--runs` activations exactly as the registry does
//! them: load the snapshot, check its anchor event, read and fold the tail. Nothing is cached
//! between runs but SQLite's page cache, as on a running server.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use careflow_aggregates::{Aggregate, Ctx, PatientAccount, StreamId};
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::{latency_histogram, ms, quantile, remove_sqlite_files};
use crate::config::Config;
use crate::runtime::actors::{ActorConfig, Services, replay};
use crate::store::snapshot::{Snapshot, SnapshotStore, SqliteSnapshots};
use crate::store::sqlite::{SqliteConfig, SqliteStore};
use crate::store::{AppendRequest, CommandMeta, EventStore, ExpectedVersion, ProposedEvent};

/// What `bench activate` runs.
#[derive(Debug, Clone)]
pub struct ActivateBench {
    pub events: u64,
    pub runs: usize,
}

/// What `bench activate` measured.
#[derive(Debug, Clone)]
pub struct ActivateReport {
    pub events: u64,
    pub tail: u64,
    pub runs: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl fmt::Display for ActivateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "events: {} snapshot_tail: {} runs: {}",
            self.events, self.tail, self.runs
        )?;
        writeln!(f, "activation_p50_ms: {:.3}", ms(self.p50))?;
        writeln!(f, "activation_p99_ms: {:.3}", ms(self.p99))?;
        write!(f, "activation_max_ms: {:.3}", ms(self.max))
    }
}

/// Runs the activation benchmark in a throw-away SQLite database in the data dir.
///
/// # Errors
/// When the database cannot be built or an activation fails.
pub async fn activate(config: &Config, spec: &ActivateBench) -> anyhow::Result<ActivateReport> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let run = Uuid::new_v4().simple().to_string()[..12].to_string();
    let db = config.data_dir.join(format!("bench-{run}.db"));
    let snapshots_db = config.data_dir.join(format!("bench-{run}-snapshots.db"));
    let result = measure(&db, &snapshots_db, spec).await;
    remove_sqlite_files(&db);
    remove_sqlite_files(&snapshots_db);
    result
}

async fn measure(
    db: &std::path::Path,
    snapshots_db: &std::path::Path,
    spec: &ActivateBench,
) -> anyhow::Result<ActivateReport> {
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(SqliteConfig::new(db))?);
    let snapshots: Arc<dyn SnapshotStore> = Arc::new(SqliteSnapshots::open(snapshots_db)?);
    let actor_config = ActorConfig::default();
    let services = Services {
        store: Arc::clone(&store),
        snapshots: Arc::clone(&snapshots),
        config: actor_config.clone(),
    };
    let stream = StreamId::new(PatientAccount::KIND, "BENCH-ACTIVATE")?;
    let events = spec.events.max(1);
    let every = actor_config.snapshot_every.max(1);
    let snapshot_at = ((events - 1) / every) * every;

    let mut state = PatientAccount::initial_state();
    let mut snapshot: Option<Snapshot> = None;
    for version in 0..events {
        let body = if version == 0 {
            json!({"type": "RegisterPatient", "name": {"family": "Bench", "given": ["A"]},
                   "birth_date": "1970-01-01", "gender": "unknown", "facility": "MAIN"})
        } else {
            json!({"type": "PostCharge", "charge_id": format!("C{version}"),
                   "encounter_id": "V1", "code": "99213", "description": "Visit",
                   "quantity": 1, "unit_price": "10.00"})
        };
        let command = PatientAccount::parse_command(body)
            .map_err(|r| anyhow::anyhow!("bench command refused: {r}"))?
            .command;
        let command_id = Uuid::new_v4();
        let decided =
            PatientAccount::decide(&state, &command, &Ctx::new(Utc::now(), command_id, "bench"))
                .map_err(|r| anyhow::anyhow!("bench command refused: {r}"))?;
        let proposed = decided
            .iter()
            .map(|e| {
                let encoded = PatientAccount::encode(e);
                ProposedEvent {
                    event_type: encoded.event_type.to_string(),
                    schema_version: encoded.schema_version,
                    data: encoded.data,
                }
            })
            .collect();
        let appended = store
            .append(AppendRequest {
                stream_id: stream.clone(),
                expected: ExpectedVersion::Exact(version),
                meta: CommandMeta {
                    command_id,
                    correlation_id: "bench".into(),
                    causation_id: "bench".into(),
                    principal: "bench".into(),
                    source: "bench".into(),
                    occurred_at: Utc::now(),
                },
                events: proposed,
            })
            .await?;
        state = decided.iter().fold(state, PatientAccount::evolve);
        if let Some(last) = appended.events.last()
            && last.version == snapshot_at
        {
            snapshot = Some(Snapshot {
                stream_id: stream.clone(),
                version: last.version,
                position: last.position,
                head_hash: last.hash.to_hex(),
                snapshot_version: PatientAccount::SNAPSHOT_VERSION,
                state: serde_json::to_string(&state)?,
            });
        }
    }
    if let Some(snapshot) = snapshot {
        snapshots.save(snapshot).await?;
    }

    let mut latencies = latency_histogram()?;
    for _ in 0..spec.runs.max(1) {
        let t = Instant::now();
        let loaded = replay::load::<PatientAccount>(&services, &stream)
            .await
            .map_err(|e| anyhow::anyhow!("activation failed: {e}"))?;
        latencies.saturating_record(t.elapsed().as_micros() as u64);
        anyhow::ensure!(
            loaded.version == events,
            "activation saw version {}",
            loaded.version
        );
        anyhow::ensure!(
            loaded.state == state,
            "activation rebuilt a different state"
        );
    }
    store.close().await;
    Ok(ActivateReport {
        events,
        tail: events - snapshot_at,
        runs: spec.runs.max(1),
        p50: quantile(&latencies, 0.5),
        p99: quantile(&latencies, 0.99),
        max: Duration::from_micros(latencies.max()),
    })
}
