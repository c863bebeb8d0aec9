//! Claims submitted and adjudicated per second against the fake payer (docs/performance.md
//! "Claims"), through the release `careflow serve` as it runs with the process managers on.
//!
//! A dev-only binary, because the fake payer lives in the test tree (tests/it/fake_payer.rs):
//!
//! ```text
//! cargo build --release --bin careflow --example claims_bench
//! target/release/examples/claims_bench [visits] [connections]
//! ```
//!
//! Untimed, `visits` patients are registered (the eligibility process manager asks the payer and
//! activates each account), and each gets a visit checked in with two procedures. Timed, every
//! visit is completed at once over `connections` connections: the charges process manager posts
//! the charges, the claims process manager creates and submits each claim
//! (`{visit}-{payer}`), the payer answers `complete` (paid in full) and the answer is recorded
//! and posted to the account. The report gives the completions' own rate (the baseline: HTTP
//! commands of this server) and the rate at which claims reach `paid` in the billing view,
//! from the first completion sent.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[allow(dead_code, unused_imports)]
#[path = "../tests/it/fake_payer.rs"]
mod fake_payer;

use fake_payer::{Adjudication, FakePayer};

#[path = "shared/careflow.rs"]
mod shared;

use shared::careflow;

fn command(dir: &Path, payer: &FakePayer) -> Command {
    let mut cmd = careflow();
    cmd.env("CAREFLOW_DATA_DIR", dir)
        .env("CAREFLOW_LISTEN", "127.0.0.1:0")
        .env("CAREFLOW_MLLP_LISTEN", "127.0.0.1:0")
        .env("CAREFLOW_LOG", "warn")
        .env("CAREFLOW_PROCESS_MANAGERS", "true")
        .env("CAREFLOW_RATE_LIMIT_PER_SECOND", "0")
        .env("CAREFLOW_PAYER_URL", &payer.url);
    cmd
}

fn token(dir: &Path, payer: &FakePayer, role: &str) -> String {
    let output = command(dir, payer)
        .args(["token", "issue", "--role", role, "--subject", "bench"])
        .output()
        .expect("careflow token issue");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn command(&self, kind: &str, id: &str, body: Value) {
        let reply = self
            .http
            .post(format!("{}/v1/{kind}/{id}/commands", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = reply.status();
        assert!(
            status.is_success(),
            "{kind}/{id}: {status} {}",
            reply.text().await.unwrap()
        );
    }

    async fn get(&self, path: &str, token: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Runs `work(i)` for every i in 0..n over `connections` concurrent tasks.
async fn each<F, Fut>(n: usize, connections: usize, work: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let work = Arc::new(work);
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (next, work) = (Arc::clone(&next), Arc::clone(&work));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    work(i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// Claims `paid` in the billing view, page by page.
async fn paid_claims(client: &Client, finance: &str) -> usize {
    let mut count = 0;
    let mut after = String::new();
    loop {
        let page = client
            .get(
                &format!("/v1/billing/claims?status=paid&after={after}"),
                finance,
            )
            .await;
        count += page["claims"].as_array().map_or(0, Vec::len);
        match page["next_after"].as_str() {
            Some(next) => after = next.to_owned(),
            None => return count,
        }
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let visits: usize = args.next().map_or(2_000, |a| a.parse().expect("visits"));
    let connections: usize = args.next().map_or(32, |a| a.parse().expect("connections"));
    let payer = FakePayer::start();
    payer.adjudicate_others(Adjudication::PaidInFull);
    let dir = std::env::temp_dir().join(format!("careflow-claims-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let system = token(&dir, &payer, "system");
    let finance = token(&dir, &payer, "finance");
    let server = shared::serve(command(&dir, &payer)).await;
    let client = Arc::new(Client {
        http: reqwest::Client::new(),
        base: server.base.clone(),
        token: system.clone(),
    });

    eprintln!("preparing {visits} visits (registered, eligible, checked in, two procedures)");
    let prepare = Arc::clone(&client);
    each(visits, connections, move |i| {
        let client = Arc::clone(&prepare);
        async move {
            let mrn = format!("MRN-CB{i}");
            client
                .command("patient-accounts", &mrn, json!({
                    "type": "RegisterPatient", "name": {"family": "Doe", "given": ["Jane"]},
                    "birth_date": "1980-04-12", "gender": "female", "facility": "MAIN",
                    "coverage": {"payer_id": "ACME", "member_id": format!("eligible-{i}"), "plan": "gold"}
                }))
                .await;
            let visit = format!("V-CB{i}");
            client
                .command("encounters", &visit, json!({
                    "type": "ScheduleEncounter", "account_id": mrn, "facility": "MAIN",
                    "department": "CARDIO", "class": "outpatient", "scheduled_for": "2026-03-01T09:00:00Z"
                }))
                .await;
            client.command("encounters", &visit, json!({"type": "CheckIn"})).await;
            for (code, quantity, price) in [("99213", 1, "100.00"), ("85025", 2, "25.00")] {
                client
                    .command("encounters", &visit, json!({
                        "type": "RecordProcedure", "code": code, "description": "procedure",
                        "quantity": quantity, "unit_price": price
                    }))
                    .await;
            }
        }
    })
    .await;
    // Every account active before the clock starts (a claim needs an eligible account).
    loop {
        let managers = client
            .get("/v1/process-managers", &token(&dir, &payer, "admin"))
            .await;
        let idle = managers["process_managers"]
            .as_array()
            .is_some_and(|all| all.iter().all(|m| m["lag"] == 0));
        if idle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    eprintln!("completing {visits} visits over {connections} connections");
    let started = Instant::now();
    let complete = Arc::clone(&client);
    each(visits, connections, move |i| {
        let client = Arc::clone(&complete);
        async move {
            client
                .command(
                    "encounters",
                    &format!("V-CB{i}"),
                    json!({"type": "CompleteEncounter"}),
                )
                .await;
        }
    })
    .await;
    let commands = started.elapsed();
    let admin = token(&dir, &payer, "admin");
    let mut said = Instant::now();
    let paid = loop {
        let count = paid_claims(&client, &finance).await;
        if count >= visits {
            break started.elapsed();
        }
        if said.elapsed() >= Duration::from_secs(2) {
            said = Instant::now();
            let managers = client.get("/v1/process-managers", &admin).await;
            let lags: Vec<String> = managers["process_managers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    format!(
                        "{} lag {} in flight {}",
                        m["name"], m["lag"], m["checks_in_flight"]
                    )
                })
                .collect();
            eprintln!(
                "{:.1} s: {count} paid; {}",
                started.elapsed().as_secs_f64(),
                lags.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let submitted = payer.claims().len();
    assert_eq!(submitted, visits, "each claim submitted once");
    let rate = |d: Duration| visits as f64 / d.as_secs_f64();
    println!("visits: {visits}, connections: {connections}");
    println!(
        "completions (baseline, HTTP commands): {:.0}/s ({:.2} s)",
        rate(commands),
        commands.as_secs_f64()
    );
    println!(
        "claims submitted and adjudicated, paid in the billing view: {:.0}/s ({:.2} s from the first completion)",
        rate(paid),
        paid.as_secs_f64()
    );
    println!(
        "ratio claims/completions: {:.2}",
        commands.as_secs_f64() / paid.as_secs_f64()
    );
    server.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}
