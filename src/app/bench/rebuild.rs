//! `careflow bench rebuild`: how fast the billing and analytics views are rebuilt from the log.
//!
//! It fills a throw-away store (a new SQLite file, or a new PostgreSQL schema) with a
//! hospital-shaped history: per account a registration, an encounter (scheduled, arrived, two
//! procedures, completed), 80 charges and 14 payments, so 100 events an account, with
//! business dates spread over 90 days and three facilities. Every event comes out of the
//! aggregates' own `decide`, so the projections see exactly what the HTTP path would store.
//! Then it runs the real runners twice: the first build of generation 1, and a rebuild
//! (generation 2 built beside the live one, then swapped in), timing each until the view's
//! checkpoint reaches the head. Peak RSS is read from `/proc/self/status` (`VmHWM`), reset
//! before the rebuild through `/proc/self/clear_refs`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use careflow_aggregates::{Aggregate, Ctx, Encounter, PatientAccount, StreamId};
use chrono::{DateTime, TimeZone, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use uuid::Uuid;

use super::remove_sqlite_files;
use crate::config::{Config, StoreKind};
use crate::runtime::views::postgres::PostgresViews;
use crate::runtime::views::runner::SharedProjection;
use crate::runtime::views::sqlite::SqliteViewFiles;
use crate::runtime::views::{ProjectionSet, RunnerConfig, ViewBackend};
use crate::store::postgres::{PostgresConfig, PostgresStore};
use crate::store::sqlite::{SqliteConfig, SqliteStore};
use crate::store::{AppendRequest, CommandMeta, EventStore, ExpectedVersion, ProposedEvent};

/// What `bench rebuild` runs.
#[derive(Debug, Clone)]
pub struct RebuildBench {
    pub store: StoreKind,
    /// Events to store (rounded down to whole accounts of 100 events).
    pub events: usize,
}

/// What `bench rebuild` measured.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub backend: &'static str,
    pub events: u64,
    pub fill: Duration,
    pub first_build: Duration,
    pub rebuild: Duration,
    pub peak_rss_mib: Option<u64>,
}

impl fmt::Display for RebuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = |d: Duration| self.events as f64 / d.as_secs_f64();
        writeln!(
            f,
            "store: {} events: {} projections: billing+analytics",
            self.backend, self.events
        )?;
        writeln!(
            f,
            "fill_s: {:.1} ({:.0} events/s)",
            self.fill.as_secs_f64(),
            rate(self.fill)
        )?;
        writeln!(
            f,
            "first_build_s: {:.1} ({:.0} events/s)",
            self.first_build.as_secs_f64(),
            rate(self.first_build)
        )?;
        writeln!(
            f,
            "rebuild_s: {:.1} ({:.0} events/s)",
            self.rebuild.as_secs_f64(),
            rate(self.rebuild)
        )?;
        match self.peak_rss_mib {
            Some(mib) => write!(f, "peak_rss_mib_during_rebuild: {mib}"),
            None => write!(f, "peak_rss_mib_during_rebuild: unknown"),
        }
    }
}

const EVENTS_PER_ACCOUNT: usize = 100;
const CHARGES: usize = 80;
const PAYMENTS: usize = 14;

/// Runs the benchmark against a fresh database of the chosen backend.
///
/// # Errors
/// When the backend cannot be opened, an append fails or a runner stops.
pub async fn rebuild(config: &Config, spec: &RebuildBench) -> anyhow::Result<RebuildReport> {
    let run = Uuid::new_v4().simple().to_string()[..12].to_string();
    match spec.store {
        StoreKind::Sqlite => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
            let path = config.data_dir.join(format!("bench-{run}.db"));
            // A file per projection, as `serve` keeps them.
            let views_dir = config.data_dir.join(format!("bench-{run}-views"));
            std::fs::create_dir_all(&views_dir)
                .with_context(|| format!("creating {}", views_dir.display()))?;
            let store: Arc<dyn EventStore> = Arc::new(
                SqliteStore::open(SqliteConfig::new(&path)).context("opening the bench store")?,
            );
            let views: Arc<dyn ViewBackend> = Arc::new(SqliteViewFiles::open(&views_dir));
            let report = drive(Arc::clone(&store), views, spec).await;
            store.close().await;
            remove_sqlite_files(&path);
            let _ = std::fs::remove_dir_all(&views_dir);
            report
        }
        StoreKind::Postgres => {
            let url = config
                .database_url
                .as_ref()
                .map(|s| s.expose().to_string())
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
            let schema = format!("bench_{run}");
            let store: Arc<dyn EventStore> = Arc::new(
                PostgresStore::open(PostgresConfig::new(&url, &schema))
                    .await
                    .context("opening the bench schema")?,
            );
            let views: Arc<dyn ViewBackend> = Arc::new(PostgresViews::open(&url, &schema).await?);
            let report = drive(Arc::clone(&store), views, spec).await;
            store.close().await;
            super::append::drop_schema(&url, &schema).await;
            report
        }
        StoreKind::Kurrentdb => {
            anyhow::bail!(
                "bench rebuild measures SQLite and PostgreSQL views over a throw-away log; it has no kurrentdb mode (a KurrentDB log cannot be thrown away): use bench append --store kurrentdb"
            )
        }
    }
}

async fn drive(
    store: Arc<dyn EventStore>,
    views: Arc<dyn ViewBackend>,
    spec: &RebuildBench,
) -> anyhow::Result<RebuildReport> {
    let accounts = (spec.events / EVENTS_PER_ACCOUNT).max(1);
    let started = Instant::now();
    fill(&store, accounts).await?;
    let fill = started.elapsed();
    let head = store.head_position().await?;

    let projections: Vec<SharedProjection> = vec![
        Arc::new(careflow_projections::Billing),
        Arc::new(careflow_projections::Analytics),
    ];
    let started = Instant::now();
    let set = ProjectionSet::start(
        crate::store::LogFeed::start(Arc::clone(&store), crate::store::FeedConfig::default()).await,
        Arc::clone(&views),
        projections.clone(),
        RunnerConfig::default(),
        &crate::runtime::consumers::Health::new(),
    );
    follow(&set, &views, head, 1, "first build").await?;
    let first_build = started.elapsed();

    reset_peak_rss();
    let started = Instant::now();
    for projection in &projections {
        set.request_rebuild(projection.name()).await?;
    }
    follow(&set, &views, head, 2, "rebuild").await?;
    let rebuild = started.elapsed();
    let peak_rss_mib = peak_rss_mib();
    set.shutdown().await;
    Ok(RebuildReport {
        backend: store.backend(),
        events: head,
        fill,
        first_build,
        rebuild,
        peak_rss_mib,
    })
}

/// Waits until every projection's live generation is `generation` at `head`, with a bar.
async fn follow(
    set: &ProjectionSet,
    views: &Arc<dyn ViewBackend>,
    head: u64,
    generation: u32,
    what: &str,
) -> anyhow::Result<()> {
    let bar = ProgressBar::new(head * set.names().len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_owned());
    loop {
        let mut done = 0;
        let mut finished = true;
        for name in set.names() {
            let views = Arc::clone(views);
            let catalog = tokio::task::spawn_blocking(move || views.catalog(name)).await??;
            let live = catalog.live.as_ref();
            if let Some(error) = live.and_then(|g| g.last_error.clone()) {
                anyhow::bail!("projection {name} stopped: {error}");
            }
            let at_generation = live.is_some_and(|g| g.generation == generation);
            done += match (&catalog.building, at_generation) {
                (Some(building), _) => building.position,
                (None, true) => live.map_or(0, |g| g.position),
                (None, false) => 0,
            };
            finished &= at_generation && live.is_some_and(|g| g.position >= head);
        }
        bar.set_position(done);
        if finished {
            bar.finish_and_clear();
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Appends `accounts` accounts' histories, eight accounts at a time.
async fn fill(store: &Arc<dyn EventStore>, accounts: usize) -> anyhow::Result<()> {
    let bar = ProgressBar::new((accounts * EVENTS_PER_ACCOUNT) as u64);
    bar.set_style(
        ProgressStyle::with_template("fill [{bar:40}] {pos}/{len} events ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = Arc::clone(store);
        let next = Arc::clone(&next);
        let bar = bar.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let account = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if account >= accounts {
                    return Ok::<_, anyhow::Error>(());
                }
                for request in history(account)? {
                    store.append(request).await?;
                }
                bar.inc(EVENTS_PER_ACCOUNT as u64);
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    bar.finish_and_clear();
    Ok(())
}

/// One account's two appends: the account stream and its encounter.
fn history(account: usize) -> anyhow::Result<Vec<AppendRequest>> {
    let mrn = format!("MRN{account:08}");
    let visit = format!("V{account:08}");
    let facility = ["MAIN", "NORTH", "SOUTH"][account % 3];
    let day = Utc
        .with_ymd_and_hms(2026, 1, 1, 8, 0, 0)
        .single()
        .context("start date")?
        + chrono::Duration::days((account % 90) as i64);
    let mut account_commands = vec![json!({
        "type": "RegisterPatient",
        "name": {"family": "Bench", "given": ["Pat"]},
        "birth_date": "1970-01-01", "gender": "unknown", "facility": facility,
    })];
    for c in 0..CHARGES {
        account_commands.push(json!({
            "type": "PostCharge", "charge_id": format!("C{c}"), "encounter_id": visit,
            "code": "99213", "description": "visit", "quantity": 1 + c % 3,
            "unit_price": format!("{}.{:02}", 10 + c, c % 100),
        }));
    }
    for p in 0..PAYMENTS {
        account_commands.push(json!({
            "type": "RecordPayment", "payment_id": format!("P{p}"), "amount": "25.00",
            "method": "card",
        }));
    }
    let encounter_commands = vec![
        json!({"type": "ScheduleEncounter", "account_id": mrn, "facility": facility,
               "department": "GEN", "class": "outpatient",
               "scheduled_for": day.to_rfc3339()}),
        json!({"type": "CheckIn"}),
        json!({"type": "RecordProcedure", "code": "99213", "description": "visit",
               "quantity": 1, "unit_price": "120.00"}),
        json!({"type": "RecordProcedure", "code": "93000", "description": "ECG",
               "quantity": 1, "unit_price": "40.00"}),
        json!({"type": "CompleteEncounter"}),
    ];
    Ok(vec![
        decided::<PatientAccount>(&mrn, account_commands, day)?,
        decided::<Encounter>(&visit, encounter_commands, day)?,
    ])
}

/// The events `commands` produce on a fresh stream, as one append.
fn decided<A: Aggregate>(
    id: &str,
    commands: Vec<Value>,
    day: DateTime<Utc>,
) -> anyhow::Result<AppendRequest> {
    let stream_id = StreamId::new(A::KIND, id)?;
    let command_id = Uuid::new_v4();
    let mut state = A::initial_state();
    let mut events = Vec::new();
    for (i, body) in commands.into_iter().enumerate() {
        let command = A::parse_command(body).map_err(|r| anyhow::anyhow!("{r}"))?;
        let at = day + chrono::Duration::minutes(i as i64);
        let ctx = Ctx::new(at, Uuid::new_v4(), "bench").occurred_at(at);
        for event in
            A::decide(&state, &command.command, &ctx).map_err(|r| anyhow::anyhow!("{r}"))?
        {
            let encoded = A::encode(&event);
            events.push(ProposedEvent {
                event_type: encoded.event_type.to_owned(),
                schema_version: encoded.schema_version,
                data: encoded.data,
            });
            state = A::evolve(state, &event);
        }
    }
    Ok(AppendRequest {
        stream_id,
        expected: ExpectedVersion::NoStream,
        meta: CommandMeta {
            command_id,
            correlation_id: command_id.to_string(),
            causation_id: command_id.to_string(),
            principal: "bench".into(),
            source: "bench".into(),
            occurred_at: day,
        },
        events,
    })
}

fn reset_peak_rss() {
    // "5" resets VmHWM to the current RSS (Linux 4.0+); elsewhere the peak covers the run.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
