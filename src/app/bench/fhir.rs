//! `careflow bench fhir`: FHIR resources per second through transaction Bundles, as an EHR
//! would send them to a running server.
//!
//! Each Bundle holds `--patients` new patients, each as four entries: the Patient, its
//! Coverage, an Encounter that arrives (scheduled and checked in) and a ChargeItem on it, so
//! the default of 5 patients is a Bundle of 20 entries appending 25 events over 15 streams,
//! all or nothing. `--connections` connections each keep one Bundle in flight for `--seconds`.
//! Only 200 answers count; every other status is reported by code. A `system` token is minted
//! from the same data dir and config as `serve`; the server's rate limit applies (raise it).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use super::{latency_histogram, ms, quantile};
use crate::config::Config;
use crate::inbound::http::auth::{self, Role, TokenKeys};

/// What `bench fhir` runs.
#[derive(Debug, Clone)]
pub struct FhirBench {
    /// Base URL of the server, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    pub connections: usize,
    pub duration: Duration,
    /// Patients per Bundle (four entries each).
    pub patients: usize,
}

/// What `bench fhir` measured.
#[derive(Debug, Clone)]
pub struct FhirReport {
    pub connections: usize,
    pub bundles: u64,
    pub entries_per_bundle: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub failures: BTreeMap<u16, u64>,
}

impl fmt::Display for FhirReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.elapsed.as_secs_f64();
        let resources = self.bundles * self.entries_per_bundle as u64;
        writeln!(
            f,
            "connections: {} bundles: {} entries_per_bundle: {} seconds: {seconds:.1}",
            self.connections, self.bundles, self.entries_per_bundle
        )?;
        writeln!(f, "bundles/s: {:.0}", self.bundles as f64 / seconds)?;
        writeln!(f, "resources/s: {:.0}", resources as f64 / seconds)?;
        writeln!(f, "bundle_p50_ms: {:.3}", ms(self.p50))?;
        writeln!(f, "bundle_p99_ms: {:.3}", ms(self.p99))?;
        writeln!(f, "bundle_max_ms: {:.3}", ms(self.max))?;
        write!(f, "failures: {}", super::failures_line(&self.failures))
    }
}

/// The four entries of one patient: Patient, Coverage, Encounter (arrived), ChargeItem.
fn patient_entries(mrn: &str) -> [Value; 4] {
    let patient_url = format!("urn:uuid:{mrn}");
    let visit = format!("V-{mrn}");
    [
        json!({
            "fullUrl": patient_url,
            "resource": {
                "resourceType": "Patient",
                "identifier": [{
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                    "value": mrn
                }],
                "name": [{"use": "official", "family": "Load", "given": ["Bench"]}],
                "gender": "unknown",
                "birthDate": "1980-01-01",
                "managingOrganization": {"reference": "Organization/MAIN"}
            },
            "request": {"method": "POST", "url": "Patient"}
        }),
        json!({
            "resource": {
                "resourceType": "Coverage",
                "status": "active",
                "subscriberId": format!("M-{mrn}"),
                "beneficiary": {"reference": patient_url},
                "payor": [{"reference": "Organization/ACME"}],
                "class": [{"type": {"coding": [{"code": "plan"}]}, "value": "gold"}]
            },
            "request": {"method": "POST", "url": "Coverage"}
        }),
        json!({
            "resource": {
                "resourceType": "Encounter",
                "identifier": [{"type": {"coding": [{"code": "VN"}]}, "value": visit}],
                "status": "arrived",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": patient_url},
                "serviceType": {"text": "general"},
                "serviceProvider": {"reference": "Organization/MAIN"}
            },
            "request": {"method": "POST", "url": "Encounter"}
        }),
        json!({
            "resource": {
                "resourceType": "ChargeItem",
                "identifier": [{"value": format!("C-{mrn}")}],
                "status": "billable",
                "code": {"coding": [{"code": "99213", "display": "Office visit"}]},
                "subject": {"reference": patient_url},
                "context": {"reference": format!("Encounter/{visit}")},
                "quantity": {"value": 1},
                "priceOverride": {"value": 125.5, "currency": "USD"}
            },
            "request": {"method": "POST", "url": "ChargeItem"}
        }),
    ]
}

/// Runs the FHIR benchmark against `spec.url`.
///
/// # Errors
/// When no token can be minted or the client cannot be built.
pub async fn fhir(config: &Config, spec: &FhirBench) -> anyhow::Result<FhirReport> {
    let secret = auth::load_or_create_secret(config).context("loading the JWT secret")?;
    let token = TokenKeys::new(&secret)
        .issue("careflow-bench", Role::System, Duration::from_secs(3600))
        .context("issuing the bench token")?;
    let connections = spec.connections.max(1);
    let patients = spec.patients.max(1);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .context("building the HTTP client")?;
    let url = format!("{}/fhir/r4", spec.url.trim_end_matches('/'));
    let run = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let shared = Arc::new((client, url, token, run));

    let started = Instant::now();
    let deadline = started + spec.duration;
    let mut tasks = Vec::with_capacity(connections);
    for c in 0..connections {
        let shared = Arc::clone(&shared);
        tasks.push(tokio::spawn(async move {
            let (client, url, token, run) = &*shared;
            let mut latencies = latency_histogram()?;
            let mut failures: BTreeMap<u16, u64> = BTreeMap::new();
            let mut ok = 0u64;
            for i in 0u64.. {
                if Instant::now() >= deadline {
                    break;
                }
                let entries: Vec<Value> = (0..patients)
                    .flat_map(|p| patient_entries(&format!("F{run}-{c}-{i}-{p}")))
                    .collect();
                let body =
                    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
                let t = Instant::now();
                let result = client
                    .post(url.as_str())
                    .bearer_auth(token)
                    .header("content-type", "application/fhir+json")
                    .body(body.to_string())
                    .send()
                    .await;
                match result {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        if status == 200 {
                            ok += 1;
                            latencies.saturating_record(t.elapsed().as_micros() as u64);
                        } else {
                            *failures.entry(status).or_default() += 1;
                        }
                    }
                    Err(_) => *failures.entry(0).or_default() += 1,
                }
            }
            anyhow::Ok((ok, latencies, failures))
        }));
    }
    let mut bundles = 0;
    let mut all = latency_histogram()?;
    let mut failures: BTreeMap<u16, u64> = BTreeMap::new();
    for task in tasks {
        let (ok, latencies, fails) = task.await.context("load task")??;
        bundles += ok;
        all.add(&latencies)
            .map_err(|e| anyhow::anyhow!("histogram: {e}"))?;
        for (status, n) in fails {
            *failures.entry(status).or_default() += n;
        }
    }
    Ok(FhirReport {
        connections,
        bundles,
        entries_per_bundle: patients * 4,
        elapsed: started.elapsed(),
        p50: quantile(&all, 0.5),
        p99: quantile(&all, 0.99),
        max: Duration::from_micros(all.max()),
        failures,
    })
}
