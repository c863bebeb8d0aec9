//! `careflow bench http`: commands per second through a running server, as upstream systems
//! send them.
//!
//! It mints a `system` token from the same data dir and config as `serve` (so run it with the
//! server's `CAREFLOW_DATA_DIR`), registers `--accounts` patients untimed, then for
//! `--duration` (or `--requests` commands) keeps `--connections` requests in flight, each
//! connection sending one command at a time: `RegisterPatient` on a fresh MRN with probability
//! `--register-share`, otherwise `PostCharge` on a random registered account. Only 2xx answers
//! count as commands; every other status is reported by code. The load generator runs on the
//! same machine as the server, so its CPU is part of the figure (see docs/performance.md).
//!
//! The server's per-token rate limit applies to the bench like to any caller: raise it
//! (`CAREFLOW_RATE_LIMIT_PER_SECOND`) on the server under test.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::{latency_histogram, ms, quantile};
use crate::config::Config;
use crate::inbound::http::auth::{self, Role, TokenKeys};

/// What `bench http` runs.
#[derive(Debug, Clone)]
pub struct HttpBench {
    /// Base URL of the server, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    pub connections: usize,
    /// Measured phase length; ignored when `requests` is set.
    pub duration: Duration,
    /// Stop after this many commands instead of after `duration`.
    pub requests: Option<u64>,
    /// Accounts registered before the measured phase, for `PostCharge` to hit.
    pub accounts: usize,
    /// Share of `RegisterPatient` among the measured commands (0.0 to 1.0).
    pub register_share: f64,
}

/// What `bench http` measured.
#[derive(Debug, Clone)]
pub struct HttpReport {
    pub connections: usize,
    pub commands: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Non-2xx answers and transport failures, by status (`0` for transport errors).
    pub failures: BTreeMap<u16, u64>,
}

impl fmt::Display for HttpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "connections: {} commands: {} seconds: {:.1}",
            self.connections,
            self.commands,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "commands/s: {:.0}",
            self.commands as f64 / self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "p50_ms: {:.3}", ms(self.p50))?;
        writeln!(f, "p99_ms: {:.3}", ms(self.p99))?;
        writeln!(f, "max_ms: {:.3}", ms(self.max))?;
        write!(f, "failures: {}", super::failures_line(&self.failures))
    }
}

/// One connection's share of the run.
struct Worker {
    client: reqwest::Client,
    base: String,
    token: String,
    run: String,
}

impl Worker {
    async fn send(&self, path: &str, body: serde_json::Value) -> Result<u16, reqwest::Error> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = response.status().as_u16();
        // Read the body so the connection goes back to the pool.
        response.bytes().await?;
        Ok(status)
    }

    async fn register(&self, mrn: &str) -> Result<u16, reqwest::Error> {
        self.send(
            &format!("/v1/patient-accounts/{mrn}/commands"),
            json!({
                "type": "RegisterPatient",
                "name": {"family": "Load", "given": ["Bench"]},
                "birth_date": "1980-01-01",
                "gender": "unknown",
                "facility": "MAIN"
            }),
        )
        .await
    }

    async fn charge(&self, mrn: &str, charge_id: &str) -> Result<u16, reqwest::Error> {
        self.send(
            &format!("/v1/patient-accounts/{mrn}/commands"),
            json!({
                "type": "PostCharge",
                "charge_id": charge_id,
                "encounter_id": format!("V-{}", self.run),
                "code": "99213",
                "description": "Office visit",
                "quantity": 1,
                "unit_price": "125.50"
            }),
        )
        .await
    }
}

/// Runs the HTTP benchmark against `spec.url`.
///
/// # Errors
/// When no token can be minted or the setup registrations fail.
pub async fn http(config: &Config, spec: &HttpBench) -> anyhow::Result<HttpReport> {
    let secret = auth::load_or_create_secret(config).context("loading the JWT secret")?;
    let token = TokenKeys::new(&secret)
        .issue("careflow-bench", Role::System, Duration::from_secs(3600))
        .context("issuing the bench token")?;
    let connections = spec.connections.max(1);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .context("building the HTTP client")?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let worker = Arc::new(Worker {
        client,
        base: spec.url.trim_end_matches('/').to_string(),
        token,
        run: run.clone(),
    });

    // Untimed setup: the accounts PostCharge will hit.
    let accounts = spec.accounts.max(1);
    let mut setup = Vec::new();
    for c in 0..connections {
        let worker = Arc::clone(&worker);
        let run = run.clone();
        setup.push(tokio::spawn(async move {
            for a in (c..accounts).step_by(connections) {
                let status = worker.register(&format!("B{run}-{a}")).await?;
                anyhow::ensure!(
                    status == 200,
                    "registering a bench account answered {status}"
                );
            }
            anyhow::Ok(())
        }));
    }
    for task in setup {
        task.await.context("setup task")??;
    }

    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + spec.duration;
    let mut tasks = Vec::with_capacity(connections);
    for c in 0..connections {
        let worker = Arc::clone(&worker);
        let sent = Arc::clone(&sent);
        let run = run.clone();
        let requests = spec.requests;
        let register_share = spec.register_share.clamp(0.0, 1.0);
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(c as u64);
            let mut latencies = latency_histogram()?;
            let mut failures: BTreeMap<u16, u64> = BTreeMap::new();
            let mut ok = 0u64;
            for i in 0u64.. {
                let more = match requests {
                    Some(limit) => sent.fetch_add(1, Ordering::Relaxed) < limit,
                    None => Instant::now() < deadline,
                };
                if !more {
                    break;
                }
                let t = Instant::now();
                let result = if rng.random_bool(register_share) {
                    worker.register(&format!("N{run}-{c}-{i}")).await
                } else {
                    let account = rng.random_range(0..accounts);
                    worker
                        .charge(&format!("B{run}-{account}"), &format!("C{c}-{i}"))
                        .await
                };
                match result {
                    Ok(200..=299) => {
                        ok += 1;
                        latencies.saturating_record(t.elapsed().as_micros() as u64);
                    }
                    Ok(status) => *failures.entry(status).or_default() += 1,
                    Err(_) => *failures.entry(0).or_default() += 1,
                }
            }
            anyhow::Ok((ok, latencies, failures))
        }));
    }
    let mut commands = 0;
    let mut all = latency_histogram()?;
    let mut failures: BTreeMap<u16, u64> = BTreeMap::new();
    for task in tasks {
        let (ok, latencies, fails) = task.await.context("load task")??;
        commands += ok;
        all.add(&latencies)
            .map_err(|e| anyhow::anyhow!("histogram: {e}"))?;
        for (status, n) in fails {
            *failures.entry(status).or_default() += n;
        }
    }
    let elapsed = started.elapsed();
    Ok(HttpReport {
        connections,
        commands,
        elapsed,
        p50: quantile(&all, 0.5),
        p99: quantile(&all, 0.99),
        max: Duration::from_micros(all.max()),
        failures,
    })
}
