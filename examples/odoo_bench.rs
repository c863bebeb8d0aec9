//! The Odoo executor's figures against the fake Odoo (docs/performance.md "Odoo").
//!
//! A dev-only binary, because the fake Odoo lives in the test tree (tests/it/fake_odoo) and the
//! release `careflow` binary is what is measured:
//!
//! ```text
//! cargo build --release --bin careflow --example odoo_bench
//! target/release/examples/odoo_bench [patients] [outage_seconds] [load_per_second]
//! ```
//!
//! 1. Throughput: `patients` registrations and a tenth as many items (vendor, product, reorder
//!    rule each) are appended with no Odoo configured; careflow restarts with the fake as
//!    `odoo_url`, and the time from the spawn to the executor's checkpoint reaching the head
//!    (start-up included) gives intents/s.
//! 2. Outage under steady load: registrations keep arriving at `load_per_second` while the fake
//!    refuses connections for `outage_seconds`; then it comes back and the load stops. The
//!    report gives the backlog, the drain rate from the moment the breaker closes, and checks
//!    that every registration became exactly one partner with one external id.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

#[allow(dead_code, unused_imports)]
#[path = "../tests/it/fake_odoo/mod.rs"]
mod fake_odoo;

use fake_odoo::{Down, FakeOdoo};

#[path = "shared/careflow.rs"]
mod shared;

use shared::{Server, careflow};

const API_KEY: &str = "bench-api-key";

fn command(dir: &Path, odoo: Option<&FakeOdoo>) -> Command {
    let mut cmd = careflow();
    cmd.current_dir(dir)
        .env("CAREFLOW_DATA_DIR", dir.join("data"))
        .env("CAREFLOW_LISTEN", "127.0.0.1:0")
        .env("CAREFLOW_LOG", "error")
        .env("CAREFLOW_PROCESS_MANAGERS", "false")
        .env("CAREFLOW_RATE_LIMIT_PER_SECOND", "0");
    if let Some(fake) = odoo {
        cmd.env("CAREFLOW_ODOO_URL", &fake.url)
            .env("CAREFLOW_ODOO_DB", &fake.db)
            .env("CAREFLOW_ODOO_USER", &fake.login)
            .env("CAREFLOW_ODOO_API_KEY", API_KEY);
    }
    cmd
}

async fn serve(dir: &Path, odoo: Option<&FakeOdoo>) -> Server {
    shared::serve(command(dir, odoo)).await
}

async fn terminate(server: Server) {
    server.terminate();
}

fn token(dir: &Path) -> String {
    let output = command(dir, None)
        .args(["token", "issue", "--role", "system", "--subject", "bench"])
        .output()
        .expect("token issue");
    String::from_utf8(output.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

async fn metric(client: &reqwest::Client, base: &str, prefix: &str) -> f64 {
    let text = match client.get(format!("{base}/metrics")).send().await {
        Ok(reply) => reply.text().await.unwrap_or_default(),
        Err(_) => return 0.0,
    };
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: serde_json::Value,
) {
    let reply = client
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("command");
    assert!(reply.status().is_success(), "{path}: {}", reply.status());
}

fn registration() -> serde_json::Value {
    json!({"type": "RegisterPatient", "name": {"family": "Doe", "given": ["Jane"]},
           "birth_date": "1980-04-12", "gender": "female", "facility": "MAIN"})
}

async fn register_many(client: &reqwest::Client, base: &str, token: &str, prefix: &str, n: usize) {
    use futures_util::StreamExt;
    futures_util::stream::iter(0..n)
        .map(|i| {
            let path = format!("/v1/patient-accounts/{prefix}-{i}/commands");
            async move { post(client, base, token, &path, registration()).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}

/// Waits until the executor's checkpoint passed `min` and nothing is left behind it (the lag
/// gauge is written after each batch).
async fn drained(client: &reqwest::Client, base: &str, min: f64) -> Instant {
    loop {
        let position = metric(client, base, "careflow_odoo_position ").await;
        let lag = metric(client, base, "careflow_odoo_lag_events ").await;
        if position >= min && lag == 0.0 {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn check_once(fake: &FakeOdoo, expected_partners: usize) -> (usize, usize) {
    let partners = fake.records("res.partner");
    let refs: HashSet<String> = partners
        .iter()
        .filter(|p| p["customer_rank"] == 1)
        .filter_map(|p| p["ref"].as_str().map(str::to_owned))
        .collect();
    let customers = partners.iter().filter(|p| p["customer_rank"] == 1).count();
    let lost = expected_partners.saturating_sub(refs.len());
    let duplicates = customers - refs.len();
    let names: Vec<String> = fake.xmlids().into_iter().map(|(_, n, _, _)| n).collect();
    let unique: HashSet<&String> = names.iter().collect();
    (lost, duplicates + (names.len() - unique.len()))
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let patients = args.first().copied().unwrap_or(5_000);
    let outage = Duration::from_secs(args.get(1).copied().unwrap_or(60) as u64);
    let rate = args.get(2).copied().unwrap_or(100);
    let items = patients / 10;
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let client = reqwest::Client::new();
    let fake = FakeOdoo::start(API_KEY);

    // 1. Throughput on a backlog.
    let server = serve(dir, None).await;
    let token = token(dir);
    register_many(&client, &server.base, &token, "MRN", patients).await;
    for i in 0..items {
        post(&client, &server.base, &token, &format!("/v1/inventory-items/ITEM-{i}/commands"), json!({
            "type": "DefineItem", "name": format!("Item {i}"), "unit": "box", "facility": "MAIN",
            "reorder_point": 5, "reorder_quantity": 20, "vendor_id": format!("V-{}", i % 50),
            "unit_cost": "2.50"
        }))
        .await;
    }
    terminate(server).await;
    // From the spawn, not from ready: the executor starts before `/readyz` answers 200, so
    // this counts careflow's start-up against the throughput.
    let started = Instant::now();
    let server = serve(dir, Some(&fake)).await;
    let done_at = drained(&client, &server.base, 1.0).await;
    let seconds = (done_at - started).as_secs_f64();
    let intents = metric(&client, &server.base, "careflow_odoo_intents_total{model=").await;
    let (lost, duplicates) = check_once(&fake, patients);
    println!(
        "throughput: {intents} intents ({patients} partners, {items} items) in {seconds:.2} s = {:.0} intents/s; lost {lost}, duplicates {duplicates}; Odoo calls {}",
        intents / seconds,
        fake.requests()
    );

    // 2. Outage under steady load.
    let sent = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let load = {
        let (client, base, token) = (client.clone(), server.base.clone(), token.clone());
        let (sent, running) = (Arc::clone(&sent), Arc::clone(&running));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1) as u32);
            let mut posts = Vec::new();
            while running.load(Ordering::Relaxed) {
                tick.tick().await;
                let i = sent.fetch_add(1, Ordering::Relaxed);
                let (client, base, token) = (client.clone(), base.clone(), token.clone());
                posts.push(tokio::spawn(async move {
                    post(
                        &client,
                        &base,
                        &token,
                        &format!("/v1/patient-accounts/LOAD-{i}/commands"),
                        registration(),
                    )
                    .await;
                }));
            }
            // Every registration answered before the backlog is measured; a refused one fails
            // the run here instead of leaving the drain to wait for it.
            for post in posts {
                post.await.expect("a registration was refused");
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    fake.go_down(Down::Refused);
    let sent_at_down = sent.load(Ordering::Relaxed);
    let down_at = Instant::now();
    tokio::time::sleep(outage).await;
    running.store(false, Ordering::Relaxed);
    load.await.expect("the load");
    let backlog = sent.load(Ordering::Relaxed) - sent_at_down;
    let position_before = metric(&client, &server.base, "careflow_odoo_position ").await;
    fake.come_back();
    let back_at = Instant::now();
    let before = metric(&client, &server.base, "careflow_odoo_intents_total{model=").await;
    let closed_at = loop {
        if metric(
            &client,
            &server.base,
            "careflow_circuit_breaker_state{service=\"odoo\"}",
        )
        .await
            == 0.0
        {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let at_close = metric(&client, &server.base, "careflow_odoo_intents_total{model=").await;
    // The load has stopped and every registration is committed, so the executor is drained
    // once its lag to the head is 0 past where the outage held it.
    let done_at = drained(&client, &server.base, position_before + 1.0).await;
    let after = metric(&client, &server.base, "careflow_odoo_intents_total{model=").await;
    let total = sent.load(Ordering::Relaxed);
    let (lost, duplicates) = check_once(&fake, patients + total);
    println!(
        "outage: {:.0} s down under {rate}/s ({total} registrations), backlog {backlog} registrations; breaker closed {:.2} s after Odoo came back; drained {} intents in {:.2} s from the close = {:.0} intents/s; lost {lost}, duplicates {duplicates}; retries {}",
        (back_at - down_at).as_secs_f64(),
        (closed_at - back_at).as_secs_f64(),
        after - before,
        (done_at - closed_at).as_secs_f64(),
        (after - at_close) / (done_at - closed_at).as_secs_f64().max(1e-9),
        metric(&client, &server.base, "careflow_odoo_retries_total").await,
    );
    terminate(server).await;
}
