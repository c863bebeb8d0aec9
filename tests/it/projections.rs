//! Black-box: the projection views over HTTP (exact figures), `min_position`, rebuilds that
//! swap while a client keeps reading, `kill -9` during projection batches, and the views on
//! PostgreSQL with two nodes sharing them.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{Api, Reply};
use crate::journey::{charge_body, register_body};
use crate::server::{Server, token_with_env};
use crate::support::{TempDir, drop_schema, eventually, postgres_url, unique_schema};

/// Tokens of the four roles for servers started on `dir` with `env`.
struct Tokens {
    system: String,
    finance: String,
    auditor: String,
    admin: String,
}

impl Tokens {
    fn new(dir: &Path, env: &[(&str, &str)]) -> Self {
        Self {
            system: token_with_env(dir, env, "system", "ehr"),
            finance: token_with_env(dir, env, "finance", "finance-1"),
            auditor: token_with_env(dir, env, "auditor", "compliance"),
            admin: token_with_env(dir, env, "admin", "operator"),
        }
    }
}

fn position(reply: &Reply) -> u64 {
    reply
        .header("x-careflow-position")
        .unwrap_or_else(|| panic!("no X-Careflow-Position: {}", reply.text))
        .parse()
        .unwrap()
}

/// Waits until every projection's live view has caught up with the newest event.
async fn caught_up(api: &Api, admin: &str, head: u64) -> Value {
    eventually(
        Duration::from_secs(30),
        "projections to catch up",
        || async {
            let reply = api.get("/v1/projections", Some(admin)).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            let all = reply.body["projections"].as_array().unwrap().clone();
            all.iter()
                .all(|p| p["position"].as_u64().unwrap() >= head && p["state"] == "live")
                .then_some(reply.body)
        },
    )
    .await
}

/// A patient journey, then every view read with its exact figures. Returns the last position.
async fn journey_and_exact_views(api: &Api, t: &Tokens) -> u64 {
    api.ok(
        &t.system,
        "patient-accounts",
        "MRN-V1",
        register_body("Doe"),
    )
    .await;
    for body in [
        json!({"type": "ScheduleEncounter", "account_id": "MRN-V1", "facility": "MAIN",
               "department": "CARDIO", "class": "outpatient",
               "scheduled_for": "2026-03-01T09:00:00Z"}),
        json!({"type": "CheckIn"}),
        json!({"type": "RecordProcedure", "code": "99213", "description": "office visit",
               "quantity": 1, "unit_price": "125.50"}),
        json!({"type": "CompleteEncounter"}),
    ] {
        api.ok(&t.system, "encounters", "V-V1", body).await;
    }
    let mut charge = charge_body("V-V1-1", "125.50", 1);
    charge["encounter_id"] = json!("V-V1");
    api.ok(&t.system, "patient-accounts", "MRN-V1", charge)
        .await;
    let mut charge = charge_body("V-V1-2", "40.25", 2);
    charge["encounter_id"] = json!("V-V1");
    api.ok(&t.system, "patient-accounts", "MRN-V1", charge)
        .await;
    api.ok(
        &t.system,
        "patient-accounts",
        "MRN-V1",
        json!({"type": "RecordPayment", "payment_id": "P1", "amount": "100.00", "method": "card"}),
    )
    .await;
    let last = api
        .ok(
            &t.system,
            "patient-accounts",
            "MRN-V1",
            json!({"type": "ApplyAdjustment", "adjustment_id": "A1", "amount": "-6.00",
                   "reason": "courtesy"}),
        )
        .await;
    let written = last["position"].as_u64().unwrap();

    // Billing, waiting for our own write.
    let account = api
        .get(
            &format!("/v1/billing/accounts/MRN-V1?min_position={written}"),
            Some(&t.finance),
        )
        .await;
    assert_eq!(account.status, 200, "{}", account.text);
    assert!(position(&account) >= written);
    let row = &account.body["account"];
    assert_eq!(row["balance"], "100.00", "{}", account.text);
    assert_eq!(row["charged"], "206.00");
    assert_eq!(row["paid"], "100.00");
    assert_eq!(row["adjusted"], "-6.00");
    assert_eq!(
        (row["charge_count"].as_u64(), row["payment_count"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(account.body["charges"][1]["amount"], "80.50");
    assert_eq!(account.body["payments"][0]["amount"], "100.00");
    assert_eq!(account.body["adjustments"][0]["amount"], "-6.00");

    let claim = api
        .get(
            &format!("/v1/billing/encounters/V-V1/claim?min_position={written}"),
            Some(&t.finance),
        )
        .await;
    assert_eq!(claim.status, 200, "{}", claim.text);
    let lines = claim.body["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "{}", claim.text);
    assert_eq!(claim.body["reconciliation"]["billed"]["USD"], "206.00");

    // Every charge is today's, so all that is open is 0-30 days old.
    let aging = api
        .get(
            &format!("/v1/billing/aging?min_position={written}"),
            Some(&t.finance),
        )
        .await;
    assert_eq!(aging.status, 200, "{}", aging.text);
    let totals = &aging.body["totals"]["USD"];
    assert_eq!(totals["days_0_30"], "100.00", "{}", aging.text);
    assert_eq!(totals["days_over_120"], "0.00");
    assert_eq!(totals["total"], "100.00");
    // 200 days on, the same items are over 120 days old.
    let later = (chrono::Utc::now() + chrono::Duration::days(200)).date_naive();
    let aged = api
        .get(
            &format!("/v1/billing/aging?as_of={later}"),
            Some(&t.finance),
        )
        .await;
    assert_eq!(aged.body["totals"]["USD"]["days_over_120"], "100.00");

    // Analytics: today's row of facility MAIN.
    let today = chrono::Utc::now().date_naive();
    let daily = api
        .get(
            &format!(
                "/v1/analytics/daily?facility=MAIN&from={today}&to={today}&min_position={written}"
            ),
            Some(&t.finance),
        )
        .await;
    assert_eq!(daily.status, 200, "{}", daily.text);
    let day = &daily.body["days"][0];
    assert_eq!(day["registrations"], 1, "{}", daily.text);
    assert_eq!(day["charges"]["count"], 2);
    assert_eq!(day["charges"]["amounts"]["USD"], "206.00");
    assert_eq!(day["payments"]["amounts"]["USD"], "100.00");
    assert_eq!(day["encounters"]["outpatient"]["completed"], 1);
    let cycle = api
        .get("/v1/analytics/purchase-cycle", Some(&t.finance))
        .await;
    assert_eq!(cycle.status, 200, "{}", cycle.text);
    assert_eq!(cycle.body["stages"].as_array().unwrap().len(), 5);

    // Audit: the stream index, and the access log with the finance read above in it.
    let streams = api
        .get(
            &format!("/v1/audit/streams?kind=patient_account&min_position={written}"),
            Some(&t.auditor),
        )
        .await;
    assert_eq!(streams.status, 200, "{}", streams.text);
    let index = &streams.body["streams"][0];
    assert_eq!(index["stream_id"], "patient_account-MRN-V1");
    assert_eq!(index["event_count"], 5);
    assert_eq!(index["last_position"], written);
    let state = api
        .get("/v1/patient-accounts/MRN-V1", Some(&t.auditor))
        .await;
    assert_eq!(state.status, 200);
    let log = eventually(Duration::from_secs(10), "two access records", || async {
        let reply = api
            .get("/v1/audit/access-log?patient=MRN-V1", Some(&t.auditor))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        (reply.body["entries"].as_array().unwrap().len() >= 2).then_some(reply.body)
    })
    .await;
    let entries = log["entries"].as_array().unwrap();
    assert_eq!(entries[0]["principal"], "finance-1");
    assert_eq!(entries[0]["role"], "finance");
    assert_eq!(entries[0]["access"], "read_billing");
    assert_eq!(entries[1]["principal"], "compliance");
    assert_eq!(entries[1]["access"], "read_state");
    let by_subject = api
        .get(
            "/v1/audit/access-log?patient=MRN-V1&subject=finance-1",
            Some(&t.auditor),
        )
        .await;
    assert_eq!(by_subject.body["entries"].as_array().unwrap().len(), 1);

    // Rights: a system token reads no billing, finance no audit, nobody but admin rebuilds.
    api.get("/v1/billing/aging", Some(&t.system))
        .await
        .assert_problem(403);
    api.get("/v1/audit/streams", Some(&t.finance))
        .await
        .assert_problem(403);
    api.post_raw(
        "/v1/projections/billing/rebuild",
        Some(&t.finance),
        &[],
        String::new(),
    )
    .await
    .assert_problem(403);
    // Unknown things are 404 and bad queries 400.
    api.get("/v1/billing/accounts/MRN-NONE", Some(&t.finance))
        .await
        .assert_problem(404);
    api.post_raw(
        "/v1/projections/nope/rebuild",
        Some(&t.admin),
        &[],
        String::new(),
    )
    .await
    .assert_problem(404);
    api.get("/v1/billing/aging?as_of=yesterday", Some(&t.finance))
        .await
        .assert_problem(400);
    // A position nobody wrote yet: the read waits, then gives up with 503.
    let ahead = api
        .get(
            &format!("/v1/billing/aging?min_position={}", written + 1_000_000),
            Some(&t.finance),
        )
        .await;
    assert_eq!(ahead.assert_problem(503), "view_behind");
    assert!(ahead.header("retry-after").is_some());
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_answers_over_http_with_exact_figures() {
    let dir = TempDir::new();
    let tokens = Tokens::new(&dir.path(), &[]);
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let written = journey_and_exact_views(&api, &tokens).await;
    let status = caught_up(&api, &tokens.admin, written).await;
    let names: Vec<&str> = status["projections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["billing", "analytics", "audit", "claims", "workforce"]
    );
    assert_eq!(server.terminate().await.code(), Some(0));
}

/// Accounts with a known balance each: `n` accounts, `charges` charges of 1.00..charges.
async fn load_accounts(api: &Api, system: &str, n: usize, charges: usize) -> u64 {
    let mut tasks = Vec::new();
    for a in 0..n {
        let api = api.clone();
        let system = system.to_owned();
        tasks.push(tokio::spawn(async move {
            let mrn = format!("MRN-R{a}");
            api.ok(&system, "patient-accounts", &mrn, register_body("Roe"))
                .await;
            let mut last = 0;
            for c in 1..=charges {
                let body = charge_body(&format!("C{c}"), &format!("{c}.00"), 1);
                let answer = api.ok(&system, "patient-accounts", &mrn, body).await;
                last = answer["position"].as_u64().unwrap();
            }
            last
        }));
    }
    let mut head = 0;
    for task in tasks {
        head = head.max(task.await.unwrap());
    }
    head
}

fn expected_balance(charges: usize) -> String {
    format!("{}.00", charges * (charges + 1) / 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_swaps_in_while_a_client_reads_and_never_shows_a_partial_view() {
    let dir = TempDir::new();
    let env = [("CAREFLOW_RATE_LIMIT_PER_SECOND", "0")];
    let t = Tokens::new(&dir.path(), &env);
    let server = Server::start_with_env(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    const ACCOUNTS: usize = 20;
    const CHARGES: usize = 40;
    let head = load_accounts(&api, &t.system, ACCOUNTS, CHARGES).await;
    caught_up(&api, &t.admin, head).await;

    // A reader that checks every answer against the complete figures.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (api, finance, stop, reads) = (
            api.clone(),
            t.finance.clone(),
            Arc::clone(&stop),
            Arc::clone(&reads),
        );
        tokio::spawn(async move {
            let total = format!("{}.00", ACCOUNTS * CHARGES * (CHARGES + 1) / 2);
            let mut a = 0;
            while !stop.load(Ordering::Acquire) {
                let account = api
                    .get(&format!("/v1/billing/accounts/MRN-R{a}"), Some(&finance))
                    .await;
                assert_eq!(account.status, 200, "{}", account.text);
                assert_eq!(
                    account.body["account"]["balance"],
                    expected_balance(CHARGES)
                );
                assert_eq!(
                    account.body["charges"].as_array().unwrap().len(),
                    CHARGES,
                    "a partial view"
                );
                let aging = api.get("/v1/billing/aging", Some(&finance)).await;
                assert_eq!(aging.status, 200, "{}", aging.text);
                assert_eq!(aging.body["totals"]["USD"]["total"], total.as_str());
                reads.fetch_add(1, Ordering::Relaxed);
                a = (a + 1) % ACCOUNTS;
            }
        })
    };
    eventually(Duration::from_secs(10), "the first reads", || async {
        (reads.load(Ordering::Relaxed) > 2).then_some(())
    })
    .await;
    let before = reads.load(Ordering::Relaxed);

    let accepted = api
        .post_raw(
            "/v1/projections/billing/rebuild",
            Some(&t.admin),
            &[],
            String::new(),
        )
        .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    let done = eventually(Duration::from_secs(60), "the swap", || async {
        let reply = api.get("/v1/projections", Some(&t.admin)).await;
        let billing = reply.body["projections"][0].clone();
        (billing["generation"] == 2 && billing["state"] == "live").then_some(billing)
    })
    .await;
    assert!(done["position"].as_u64().unwrap() >= head);
    // Reads go on against the new generation.
    let after_swap = reads.load(Ordering::Relaxed);
    eventually(Duration::from_secs(10), "reads after the swap", || async {
        (reads.load(Ordering::Relaxed) > after_swap + 2).then_some(())
    })
    .await;
    stop.store(true, Ordering::Release);
    reader.await.unwrap();
    assert!(reads.load(Ordering::Relaxed) > before);
    // The other projections were left alone.
    let status = api.get("/v1/projections", Some(&t.admin)).await;
    assert_eq!(status.body["projections"][1]["generation"], 1);
    assert_eq!(server.terminate().await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_projection_batches_neither_repeats_nor_skips_an_event() {
    let dir = TempDir::new();
    let env = [("CAREFLOW_RATE_LIMIT_PER_SECOND", "0")];
    let t = Tokens::new(&dir.path(), &env);
    let server = Server::start_with_env(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    const ACCOUNTS: usize = 8;
    const CHARGES: usize = 60;
    let head = load_accounts(&api, &t.system, ACCOUNTS, CHARGES).await;
    // Killed while the runners are (most likely) still applying: whatever batch is in flight
    // is lost with its checkpoint, never half of it.
    server.kill9();

    let server = Server::start_with_env(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    caught_up(&api, &t.admin, head).await;
    for a in 0..ACCOUNTS {
        let mrn = format!("MRN-R{a}");
        let view = api
            .get(&format!("/v1/billing/accounts/{mrn}"), Some(&t.finance))
            .await;
        assert_eq!(view.status, 200, "{}", view.text);
        let state = api
            .get(&format!("/v1/patient-accounts/{mrn}"), Some(&t.system))
            .await;
        assert_eq!(view.body["account"]["balance"], state.body["balance"]);
        assert_eq!(view.body["account"]["balance"], expected_balance(CHARGES));
        assert_eq!(view.body["account"]["charge_count"], CHARGES);
        assert_eq!(view.body["account"]["version"], state.body["version"]);
    }
    // Counters would show a repeated or skipped event at once.
    let today = chrono::Utc::now().date_naive();
    let daily = api
        .get(
            &format!("/v1/analytics/daily?from={today}&to={today}"),
            Some(&t.finance),
        )
        .await;
    let day = &daily.body["days"][0];
    assert_eq!(day["registrations"], ACCOUNTS, "{}", daily.text);
    assert_eq!(day["charges"]["count"], ACCOUNTS * CHARGES);
    let streams = api
        .get("/v1/audit/streams?kind=patient_account", Some(&t.auditor))
        .await;
    for stream in streams.body["streams"].as_array().unwrap() {
        assert_eq!(stream["event_count"], CHARGES + 1, "{stream}");
        assert_eq!(stream["last_version"], CHARGES + 1);
    }
    assert_eq!(server.terminate().await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn views_on_postgres_are_exact_rebuild_and_are_run_once_by_two_nodes() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let schema = unique_schema("views");
    let dir = TempDir::new();
    let env = [
        ("CAREFLOW_STORE", "postgres"),
        ("CAREFLOW_DATABASE_URL", url.as_str()),
        ("CAREFLOW_DATABASE_SCHEMA", schema.as_str()),
        ("CAREFLOW_RATE_LIMIT_PER_SECOND", "0"),
    ];
    let t = Tokens::new(&dir.path(), &env);
    let first = Server::start_with_env(&dir.path(), &env);
    first.wait_ready().await;
    let second = Server::start_with_env(&dir.path(), &env);
    second.wait_ready().await;
    let one = Api::new(&first.base);
    let two = Api::new(&second.base);

    let written = journey_and_exact_views(&one, &t).await;
    // Both nodes write commands; one of them runs each projection, both serve reads.
    let head_one = load_accounts(&one, &t.system, 3, 10).await;
    let mut more = charge_body("C-extra", "5.00", 1);
    more["encounter_id"] = json!("V-X");
    let extra = two.ok(&t.system, "patient-accounts", "MRN-R0", more).await;
    let head = head_one
        .max(extra["position"].as_u64().unwrap())
        .max(written);
    for api in [&one, &two] {
        let view = api
            .get(
                &format!("/v1/billing/accounts/MRN-R0?min_position={head}"),
                Some(&t.finance),
            )
            .await;
        assert_eq!(view.status, 200, "{}", view.text);
        assert_eq!(view.body["account"]["balance"], "60.00");
        assert_eq!(view.body["account"]["charge_count"], 11);
    }
    let today = chrono::Utc::now().date_naive();
    let daily = two
        .get(
            &format!("/v1/analytics/daily?from={today}&to={today}&min_position={head}"),
            Some(&t.finance),
        )
        .await;
    let charges: u64 = daily.body["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["charges"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(charges, 2 + 3 * 10 + 1, "{}", daily.text);

    // A rebuild asked of the node that may not own the projection is carried out anyway.
    let accepted = two
        .post_raw(
            "/v1/projections/analytics/rebuild",
            Some(&t.admin),
            &[],
            String::new(),
        )
        .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    eventually(Duration::from_secs(60), "the swap", || async {
        let reply = one.get("/v1/projections", Some(&t.admin)).await;
        let analytics = reply.body["projections"][1].clone();
        (analytics["generation"] == 2 && analytics["state"] == "live").then_some(())
    })
    .await;
    let rebuilt = one
        .get(
            &format!("/v1/analytics/daily?from={today}&to={today}"),
            Some(&t.finance),
        )
        .await;
    assert_eq!(rebuilt.body, daily.body);

    assert_eq!(first.terminate().await.code(), Some(0));
    assert_eq!(second.terminate().await.code(), Some(0));
    drop_schema(&url, &schema).await;
}

/// `careflow projections rebuild <name>`, run as a separate process.
fn cli_rebuild(dir: &Path, name: &str) -> (Option<i32>, String, String) {
    let output = crate::server::careflow(dir)
        .args(["projections", "rebuild", name])
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_rebuilds_through_a_running_server_or_by_itself() {
    let dir = TempDir::new();
    let t = Tokens::new(&dir.path(), &[]);
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let head = load_accounts(&api, &t.system, 2, 5).await;
    caught_up(&api, &t.admin, head).await;

    // With the server running, the server does it and the CLI follows.
    let (code, out, err) = cli_rebuild(&dir.path(), "billing");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("generation 2") && out.contains("by the running server"),
        "{out}"
    );
    let status = api.get("/v1/projections", Some(&t.admin)).await;
    assert_eq!(status.body["projections"][0]["generation"], 2);
    assert_eq!(server.terminate().await.code(), Some(0));

    // With none running, the CLI runs the rebuild itself; the server then serves it.
    let (code, out, err) = cli_rebuild(&dir.path(), "billing");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("generation 3") && out.contains("this command did"),
        "{out}"
    );
    let (code, _, err) = cli_rebuild(&dir.path(), "nope");
    assert_eq!(code, Some(2));
    assert!(err.contains("no projection named nope"), "{err}");

    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let view = api
        .get("/v1/billing/accounts/MRN-R1", Some(&t.finance))
        .await;
    assert_eq!(view.status, 200, "{}", view.text);
    assert_eq!(view.body["account"]["balance"], expected_balance(5));
    let status = api.get("/v1/projections", Some(&t.admin)).await;
    assert_eq!(status.body["projections"][0]["generation"], 3);
    assert_eq!(server.terminate().await.code(), Some(0));
}
