//! `careflow bench timers` and `careflow bench charges`: the two figures issue 6 sets for the
//! process managers.
//!
//! - `timers`: the memory of N pending timers in the runner's fold (`Timers`), read as the
//!   process's resident set before and after scheduling them (Linux `/proc/self/statm`; the
//!   allocator may keep freed pages, so this is an upper bound), and how long listing and
//!   firing them all takes in memory (the store appends are not included: see
//!   docs/performance.md).
//! - `charges`: against a running server with the process managers on, the time from the
//!   `CompleteEncounter` answer to the moment `GET /v1/billing/accounts/{mrn}` shows every
//!   charge, per encounter, from `--encounters` encounters run by `--connections` workers. Run
//!   `bench http` beside it for the load.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use careflow_aggregates::policies::{TimerEvent, TimerPayload, Timers, timer::TimerScheduled};
use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::{latency_histogram, ms, quantile};
use crate::config::Config;
use crate::inbound::http::auth::{self, Role, TokenKeys};

/// What `bench timers` runs.
#[derive(Debug, Clone)]
pub struct TimersBench {
    pub timers: usize,
}

/// What `bench timers` measured.
#[derive(Debug, Clone)]
pub struct TimersReport {
    pub timers: usize,
    pub resident_bytes: u64,
    pub schedule: Duration,
    pub fire_all: Duration,
}

impl fmt::Display for TimersReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "timers: {}", self.timers)?;
        writeln!(
            f,
            "resident_mib: {:.1}",
            self.resident_bytes as f64 / (1024.0 * 1024.0)
        )?;
        writeln!(
            f,
            "bytes_per_timer: {}",
            self.resident_bytes / self.timers.max(1) as u64
        )?;
        writeln!(f, "schedule_ms: {:.1}", ms(self.schedule))?;
        write!(f, "list_and_fire_all_ms: {:.1}", ms(self.fire_all))
    }
}

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Folds `spec.timers` scheduled timers (approval deadlines one millisecond apart, each with a
/// requisition id as long as a real one), then fires them all.
pub fn timers(spec: &TimersBench) -> TimersReport {
    let now = Utc::now();
    let before = resident_bytes();
    let started = Instant::now();
    let mut fold = Timers::new();
    for i in 0..spec.timers {
        fold.apply(&TimerEvent::TimerScheduled(TimerScheduled {
            timer_id: Uuid::new_v4(),
            due_at: now + TimeDelta::milliseconds(i64::try_from(i).unwrap_or(i64::MAX)),
            payload: TimerPayload::ApprovalDeadline {
                requisition_id: format!("RPL-{:032x}", i),
            },
        }));
    }
    let schedule = started.elapsed();
    let resident = resident_bytes().saturating_sub(before);
    let started = Instant::now();
    let later = now + TimeDelta::days(1);
    let due: Vec<_> = fold.due(later).collect();
    for timer in &due {
        if let Some(fired) = fold.fire(timer.timer_id, later) {
            fold.apply(&fired);
        }
    }
    let fire_all = started.elapsed();
    TimersReport {
        timers: fold.pending_count() + due.len(),
        resident_bytes: resident,
        schedule,
        fire_all,
    }
}

/// What `bench charges` runs.
#[derive(Debug, Clone)]
pub struct ChargesBench {
    pub url: String,
    pub encounters: usize,
    pub connections: usize,
}

/// What `bench charges` measured.
#[derive(Debug, Clone)]
pub struct ChargesReport {
    pub encounters: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl fmt::Display for ChargesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "encounters: {}", self.encounters)?;
        writeln!(f, "completed_to_billing_p50_ms: {:.1}", ms(self.p50))?;
        writeln!(f, "completed_to_billing_p99_ms: {:.1}", ms(self.p99))?;
        write!(f, "completed_to_billing_max_ms: {:.1}", ms(self.max))
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    system: String,
    finance: String,
}

impl Client {
    async fn command(&self, path: &str, body: Value) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.system)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "{path} answered {status}: {text}");
        Ok(())
    }

    async fn billed_charges(&self, mrn: &str) -> anyhow::Result<usize> {
        let response = self
            .http
            .get(format!("{}/v1/billing/accounts/{mrn}", self.base))
            .bearer_auth(&self.finance)
            .send()
            .await?;
        if !response.status().is_success() {
            return Ok(0);
        }
        let body: Value = response.json().await?;
        Ok(body["charges"].as_array().map_or(0, Vec::len))
    }
}

/// Runs one encounter per iteration: register, schedule, check in, two procedures, complete,
/// then polls the billing view every 2 ms until both charges are there.
///
/// # Errors
/// When a token cannot be minted, a command is refused, or a charge never shows (30 s).
pub async fn charges(config: &Config, spec: &ChargesBench) -> anyhow::Result<ChargesReport> {
    let secret = auth::load_or_create_secret(config).context("loading the JWT secret")?;
    let keys = TokenKeys::new(&secret);
    let hour = Duration::from_secs(3600);
    let client = Arc::new(Client {
        http: reqwest::Client::new(),
        base: spec.url.trim_end_matches('/').to_string(),
        system: keys.issue("careflow-bench", Role::System, hour)?,
        finance: keys.issue("careflow-bench", Role::Finance, hour)?,
    });
    let run = Uuid::new_v4().simple().to_string()[..8].to_string();
    let histogram = Arc::new(Mutex::new(latency_histogram()?));
    let connections = spec.connections.max(1);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let client = Arc::clone(&client);
        let histogram = Arc::clone(&histogram);
        let run = run.clone();
        let encounters = spec.encounters;
        tasks.push(tokio::spawn(async move {
            for n in (c..encounters).step_by(connections) {
                let mrn = format!("PM{run}-{n}");
                let visit = format!("VPM{run}-{n}");
                let account = format!("/v1/patient-accounts/{mrn}/commands");
                let encounter = format!("/v1/encounters/{visit}/commands");
                client
                    .command(
                        &account,
                        json!({"type": "RegisterPatient", "name": {"family": "Load", "given": ["Bench"]},
                               "birth_date": "1980-01-01", "gender": "unknown", "facility": "MAIN"}),
                    )
                    .await?;
                client
                    .command(
                        &encounter,
                        json!({"type": "ScheduleEncounter", "account_id": mrn, "facility": "MAIN",
                               "department": "CARDIO", "class": "outpatient",
                               "scheduled_for": "2026-03-01T09:00:00Z"}),
                    )
                    .await?;
                client.command(&encounter, json!({"type": "CheckIn"})).await?;
                for code in ["99213", "93000"] {
                    client
                        .command(
                            &encounter,
                            json!({"type": "RecordProcedure", "code": code, "description": "bench",
                                   "quantity": 1, "unit_price": "10.00"}),
                        )
                        .await?;
                }
                client
                    .command(&encounter, json!({"type": "CompleteEncounter"}))
                    .await?;
                let completed = Instant::now();
                loop {
                    if client.billed_charges(&mrn).await? >= 2 {
                        break;
                    }
                    anyhow::ensure!(
                        completed.elapsed() < Duration::from_secs(30),
                        "the charges of {visit} did not reach the billing view within 30 s"
                    );
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                let took = completed.elapsed();
                histogram
                    .lock()
                    .await
                    .saturating_record(took.as_micros() as u64);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("bench task")??;
    }
    let histogram = histogram.lock().await;
    Ok(ChargesReport {
        encounters: histogram.len() as usize,
        p50: quantile(&histogram, 0.5),
        p99: quantile(&histogram, 0.99),
        max: Duration::from_micros(histogram.max()),
    })
}
