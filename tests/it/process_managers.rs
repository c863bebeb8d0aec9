//! Black-box: the process managers end to end through HTTP, against the fake payer. The real
//! binary runs with `CAREFLOW_PROCESS_MANAGERS=true`; every wait polls with a deadline.

use std::path::Path;
use std::time::Duration;

use careflow_aggregates::RecordedEvent;
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::api::{Api, assert_log_is_sound};
use crate::fake_payer::FakePayer;
use crate::server::{Server, careflow, token_with_env};
use crate::support::{TempDir, drop_schema, eventually, postgres_url, unique_schema};

const WITHIN: Duration = Duration::from_secs(30);

/// `careflow serve` with the process managers on, plus `env`.
fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
    let mut cmd = careflow(dir);
    cmd.env("CAREFLOW_PROCESS_MANAGERS", "true");
    for (key, value) in env {
        cmd.env(key, value);
    }
    Server::spawn(cmd)
}

struct Tokens {
    ehr: String,
    auditor: String,
    admin: String,
    finance: String,
}

fn tokens(dir: &Path, env: &[(&str, &str)]) -> Tokens {
    Tokens {
        ehr: token_with_env(dir, env, "system", "ehr"),
        auditor: token_with_env(dir, env, "auditor", "compliance"),
        admin: token_with_env(dir, env, "admin", "ops"),
        finance: token_with_env(dir, env, "finance", "billing"),
    }
}

fn register_body(member_id: Option<&str>) -> Value {
    let mut body = json!({
        "type": "RegisterPatient",
        "name": {"family": "Doe", "given": ["Jane"]},
        "birth_date": "1980-04-12",
        "gender": "female",
        "facility": "MAIN",
    });
    if let Some(member_id) = member_id {
        body["coverage"] = json!({"payer_id": "ACME", "member_id": member_id, "plan": "gold"});
    }
    body
}

fn purchase_body(deadline: Option<&str>) -> Value {
    let mut body = json!({
        "type": "RequestPurchase", "requester": "nurse-1", "facility": "MAIN",
        "vendor_id": "V-1", "lines": [{"item_id": "GAUZE", "quantity": 10, "unit_price": "2.50"}],
        "reason": "restock"
    });
    if let Some(deadline) = deadline {
        body["approval_deadline"] = json!(deadline);
    }
    body
}

pub async fn wait_account_status(api: &Api, token: &str, mrn: &str, status: &str) -> Value {
    let path = format!("/v1/patient-accounts/{mrn}");
    eventually(WITHIN, &format!("{mrn} to become {status}"), || async {
        let reply = api.get(&path, Some(token)).await;
        (reply.status == 200 && reply.body["status"] == status).then_some(reply.body)
    })
    .await
}

fn count(events: &[RecordedEvent], stream: &str, event_type: &str) -> usize {
    events
        .iter()
        .filter(|e| e.stream_id.to_string() == stream && e.event_type == event_type)
        .count()
}

/// The entry of `name` in `GET /v1/process-managers`.
async fn manager(api: &Api, admin: &str, name: &str) -> Value {
    let reply = api.get("/v1/process-managers", Some(admin)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["process_managers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no process manager {name}: {}", reply.text))
}

fn in_seconds(seconds: i64) -> String {
    (Utc::now() + chrono::TimeDelta::seconds(seconds)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn encounter_with_procedures(api: &Api, ehr: &str, visit: &str, mrn: &str, lines: usize) {
    api.ok(
        ehr,
        "encounters",
        visit,
        json!({
            "type": "ScheduleEncounter", "account_id": mrn, "facility": "MAIN",
            "department": "CARDIO", "class": "outpatient", "scheduled_for": "2026-03-01T09:00:00Z"
        }),
    )
    .await;
    api.ok(ehr, "encounters", visit, json!({"type": "CheckIn"}))
        .await;
    for line in 0..lines {
        api.ok(
            ehr,
            "encounters",
            visit,
            json!({
                "type": "RecordProcedure", "code": format!("C{line}"), "description": "procedure",
                "quantity": 1, "unit_price": "10.00"
            }),
        )
        .await;
    }
}

#[tokio::test]
async fn registrations_end_active_when_eligible_and_self_pay_when_denied_or_uncovered() {
    let payer = FakePayer::start();
    let dir = TempDir::new();
    let env = [("CAREFLOW_PAYER_URL", payer.url.as_str())];
    let t = tokens(&dir.path(), &env);
    let server = start(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);

    let cases = [
        ("MRN-E1", Some("eligible-1"), "active"),
        ("MRN-E2", Some("denied-1"), "self_pay"),
        ("MRN-E3", Some("not-covered-1"), "self_pay"),
        ("MRN-E4", None, "self_pay"),
    ];
    for (mrn, member, _) in cases {
        api.ok(&t.ehr, "patient-accounts", mrn, register_body(member))
            .await;
    }
    for (mrn, _, status) in cases {
        wait_account_status(&api, &t.ehr, mrn, status).await;
    }

    // Every deadline timer is cancelled by the answer; none is left to fire.
    let events = eventually(WITHIN, "the deadlines to be cancelled", || async {
        let events = api.all_events(&t.auditor).await;
        (count(&events, "timers-eligibility", "TimerCancelled") == 3).then_some(events)
    })
    .await;
    assert_log_is_sound(&events);
    assert_eq!(count(&events, "timers-eligibility", "TimerScheduled"), 3);
    let account = "patient_account-MRN-E1";
    assert_eq!(count(&events, account, "EligibilityVerified"), 1);
    assert_eq!(count(&events, account, "AccountActivated"), 1);
    let activated = events
        .iter()
        .find(|e| e.stream_id.to_string() == account && e.event_type == "AccountActivated")
        .unwrap();
    assert_eq!(activated.metadata.principal, "process_manager:eligibility");
    assert_eq!(
        count(&events, "patient_account-MRN-E2", "EligibilityDenied"),
        1
    );
    assert_eq!(
        count(&events, "patient_account-MRN-E4", "AccountFlaggedSelfPay"),
        1
    );
    assert_eq!(payer.requests_for("eligible-1"), 1);
    assert_eq!(payer.requests_for("denied-1"), 1);

    let eligibility = manager(&api, &t.admin, "eligibility").await;
    assert_eq!(eligibility["status"], "running", "{eligibility}");
    assert_eq!(eligibility["breaker"], "closed");
    assert!(
        eligibility["commands_sent"].as_u64().unwrap() >= 7,
        "{eligibility}"
    );
    let listing = api.get("/v1/process-managers", Some(&t.admin)).await;
    let names: Vec<&str> = listing.body["process_managers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "eligibility",
            "charges",
            "replenishment",
            "purchase_approval",
            "purchase_stock",
            "claims",
            "merges",
            "staffing"
        ]
    );
    let forbidden = api.get("/v1/process-managers", Some(&t.ehr)).await;
    assert_eq!(forbidden.status, 403);
    let metrics = api.get("/metrics", None).await.text;
    assert!(
        metrics.contains(
            "careflow_process_manager_commands_total{outcome=\"appended\",process_manager=\"eligibility\"}"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_payer_outage_opens_the_breaker_and_the_account_is_activated_once_it_is_back() {
    let payer = FakePayer::start();
    payer.set_down(true);
    let dir = TempDir::new();
    let env = [
        ("CAREFLOW_PAYER_URL", payer.url.as_str()),
        ("CAREFLOW_PAYER_ATTEMPTS", "1"),
        ("CAREFLOW_PAYER_BREAKER_FAILURES", "2"),
        ("CAREFLOW_PAYER_BREAKER_COOL_DOWN_MS", "300"),
    ];
    let t = tokens(&dir.path(), &env);
    let server = start(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    api.ok(
        &t.ehr,
        "patient-accounts",
        "MRN-D1",
        register_body(Some("eligible-down")),
    )
    .await;
    eventually(WITHIN, "the payer breaker to open", || async {
        let eligibility = manager(&api, &t.admin, "eligibility").await;
        (eligibility["breaker"] == "open").then_some(())
    })
    .await;
    let account = api.get("/v1/patient-accounts/MRN-D1", Some(&t.ehr)).await;
    assert_eq!(account.body["status"], "registered", "{}", account.text);

    payer.set_down(false);
    wait_account_status(&api, &t.ehr, "MRN-D1", "active").await;
    let eligibility = manager(&api, &t.admin, "eligibility").await;
    assert_eq!(eligibility["breaker"], "closed", "{eligibility}");
    assert!(
        eligibility["failures"].as_u64().unwrap() >= 2,
        "{eligibility}"
    );
    let events = api.all_events(&t.auditor).await;
    assert_eq!(
        count(&events, "patient_account-MRN-D1", "EligibilityVerified"),
        1
    );
}

#[tokio::test]
async fn a_completed_encounter_posts_each_charge_once_and_low_stock_opens_one_replenishment() {
    let dir = TempDir::new();
    let t = tokens(&dir.path(), &[]);
    let server = start(&dir.path(), &[]);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    api.ok(&t.ehr, "patient-accounts", "MRN-C1", register_body(None))
        .await;
    api.ok(
        &t.ehr,
        "inventory-items",
        "GAUZE",
        json!({
            "type": "DefineItem", "name": "gauze", "unit": "box", "facility": "MAIN",
            "reorder_point": 5, "reorder_quantity": 20, "vendor_id": "V-1", "unit_cost": "2.50"
        }),
    )
    .await;
    api.ok(
        &t.ehr,
        "inventory-items",
        "GAUZE",
        json!({"type": "ReceiveStock", "quantity": 8, "reference": "initial"}),
    )
    .await;
    encounter_with_procedures(&api, &t.ehr, "V-C1", "MRN-C1", 3).await;
    for quantity in [4, 1] {
        api.ok(
            &t.ehr,
            "encounters",
            "V-C1",
            json!({"type": "RecordSupplyUsage", "item_id": "GAUZE", "quantity": quantity}),
        )
        .await;
    }
    let completed = api
        .ok(
            &t.ehr,
            "encounters",
            "V-C1",
            json!({"type": "CompleteEncounter"}),
        )
        .await;
    let completed_at = completed["position"].as_u64().unwrap();

    let account = eventually(WITHIN, "three charges on the account", || async {
        let reply = api.get("/v1/patient-accounts/MRN-C1", Some(&t.ehr)).await;
        (reply.body["charges"].as_array().map(Vec::len) == Some(3)).then_some(reply.body)
    })
    .await;
    assert_eq!(account["balance"], "30.00", "{account}");
    let billing = eventually(WITHIN, "the billing view to show the charges", || async {
        let reply = api
            .get(
                &format!("/v1/billing/accounts/MRN-C1?min_position={completed_at}"),
                Some(&t.finance),
            )
            .await;
        (reply.status == 200 && reply.body["charges"].as_array().map(Vec::len) == Some(3))
            .then_some(reply.body)
    })
    .await;
    assert_eq!(billing["account"]["balance"], "30.00", "{billing}");
    assert_eq!(billing["account"]["charge_count"], 3, "{billing}");

    let item = eventually(
        WITHIN,
        "stock consumed and a replenishment open",
        || async {
            let reply = api.get("/v1/inventory-items/GAUZE", Some(&t.ehr)).await;
            (reply.body["on_hand"] == 3 && reply.body["open_replenishment"].is_string())
                .then_some(reply.body)
        },
    )
    .await;
    let requisition = item["open_replenishment"].as_str().unwrap().to_string();
    let purchase = eventually(WITHIN, "the replenishment purchase", || async {
        let reply = api
            .get(&format!("/v1/purchases/{requisition}"), Some(&t.ehr))
            .await;
        (reply.status == 200 && reply.body["status"] == "requested").then_some(reply.body)
    })
    .await;
    assert_eq!(
        purchase["requester"], "careflow-replenishment",
        "{purchase}"
    );

    let events = api.all_events(&t.auditor).await;
    assert_log_is_sound(&events);
    assert_eq!(count(&events, "patient_account-MRN-C1", "ChargePosted"), 3);
    assert_eq!(count(&events, "inventory_item-GAUZE", "StockConsumed"), 2);
    let requested: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "PurchaseRequested")
        .collect();
    assert_eq!(requested.len(), 1, "exactly one replenishment purchase");
    assert_eq!(
        requested[0].stream_id.to_string(),
        format!("purchase-{requisition}")
    );

    // Goods received raise the stock; cancelling the purchase afterwards takes them back.
    for body in [
        json!({"type": "ApprovePurchase", "approver": "head-nurse"}),
        json!({"type": "RecordPurchaseOrder", "odoo_order_ref": "PO-1"}),
        json!({"type": "ReceiveGoods", "receipt_id": "GR1", "lines": [{"item_id": "GAUZE", "quantity": 12}]}),
    ] {
        api.ok(&t.ehr, "purchases", &requisition, body).await;
    }
    eventually(WITHIN, "the receipt in stock", || async {
        let reply = api.get("/v1/inventory-items/GAUZE", Some(&t.ehr)).await;
        (reply.body["on_hand"] == 15).then_some(())
    })
    .await;
    api.ok(
        &t.ehr,
        "purchases",
        &requisition,
        json!({"type": "CancelPurchase", "reason": "vendor recalled the lot"}),
    )
    .await;
    eventually(WITHIN, "the receipt returned", || async {
        let reply = api.get("/v1/inventory-items/GAUZE", Some(&t.ehr)).await;
        (reply.body["on_hand"] == 3).then_some(())
    })
    .await;
    let events = api.all_events(&t.auditor).await;
    let returned = events
        .iter()
        .filter(|e| {
            e.stream_id.to_string() == "inventory_item-GAUZE"
                && e.event_type == "StockConsumed"
                && e.data["reference"] == "return:GR1"
        })
        .count();
    assert_eq!(returned, 1);
    assert_eq!(count(&events, "inventory_item-GAUZE", "StockReceived"), 2);
}

#[tokio::test]
async fn an_approval_deadline_escalates_the_undecided_purchase_once() {
    let dir = TempDir::new();
    let t = tokens(&dir.path(), &[]);
    let server = start(&dir.path(), &[]);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    api.ok(
        &t.ehr,
        "purchases",
        "REQ-A1",
        purchase_body(Some(&in_seconds(1))),
    )
    .await;
    // Decided before its deadline: never escalated.
    api.ok(
        &t.ehr,
        "purchases",
        "REQ-A2",
        purchase_body(Some(&in_seconds(3))),
    )
    .await;
    api.ok(
        &t.ehr,
        "purchases",
        "REQ-A2",
        json!({"type": "ApprovePurchase", "approver": "head-nurse"}),
    )
    .await;
    let purchase = eventually(WITHIN, "the escalation", || async {
        let reply = api.get("/v1/purchases/REQ-A1", Some(&t.ehr)).await;
        (reply.body["escalated"] == true).then_some(reply.body)
    })
    .await;
    assert_eq!(purchase["status"], "requested");
    let events = eventually(WITHIN, "the second timer to be cancelled", || async {
        let events = api.all_events(&t.auditor).await;
        (count(&events, "timers-purchase_approval", "TimerCancelled") == 1).then_some(events)
    })
    .await;
    assert_eq!(count(&events, "purchase-REQ-A1", "ApprovalEscalated"), 1);
    assert_eq!(count(&events, "purchase-REQ-A2", "ApprovalEscalated"), 0);
    assert_eq!(count(&events, "timers-purchase_approval", "TimerFired"), 1);
}

#[tokio::test]
async fn after_a_kill_9_each_command_applies_once_and_a_timer_due_meanwhile_fires_once() {
    let dir = TempDir::new();
    let t = tokens(&dir.path(), &[]);
    let server = start(&dir.path(), &[]);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    api.ok(&t.ehr, "patient-accounts", "MRN-K1", register_body(None))
        .await;
    let lines = 40;
    encounter_with_procedures(&api, &t.ehr, "V-K1", "MRN-K1", lines).await;
    let deadline = Utc::now() + chrono::TimeDelta::seconds(2);
    api.ok(
        &t.ehr,
        "purchases",
        "REQ-K1",
        purchase_body(Some(&deadline.to_rfc3339_opts(SecondsFormat::Millis, true))),
    )
    .await;
    eventually(WITHIN, "the approval timer to be scheduled", || async {
        let events = api.all_events(&t.auditor).await;
        (count(&events, "timers-purchase_approval", "TimerScheduled") == 1).then_some(())
    })
    .await;
    // Kill mid-flow: the charges manager is posting the 40 charges when the process dies.
    api.ok(
        &t.ehr,
        "encounters",
        "V-K1",
        json!({"type": "CompleteEncounter"}),
    )
    .await;
    server.kill9();
    // The approval deadline passes while careflow is down: a wall-clock precondition of the
    // scenario, not a wait for work.
    eventually(WITHIN, "the approval deadline to pass", || async {
        (Utc::now() > deadline + chrono::TimeDelta::milliseconds(200)).then_some(())
    })
    .await;

    let server = start(&dir.path(), &[]);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    eventually(WITHIN, "every charge after the restart", || async {
        let reply = api.get("/v1/patient-accounts/MRN-K1", Some(&t.ehr)).await;
        (reply.body["charges"].as_array().map(Vec::len) == Some(lines)).then_some(())
    })
    .await;
    eventually(WITHIN, "the escalation after the restart", || async {
        let reply = api.get("/v1/purchases/REQ-K1", Some(&t.ehr)).await;
        (reply.body["escalated"] == true).then_some(())
    })
    .await;
    // Let every runner reach the head, then count.
    eventually(WITHIN, "the runners to catch up", || async {
        let reply = api.get("/v1/process-managers", Some(&t.admin)).await;
        reply.body["process_managers"]
            .as_array()?
            .iter()
            .all(|m| m["lag"] == 0 && m["status"] == "running")
            .then_some(())
    })
    .await;
    let events = api.all_events(&t.auditor).await;
    assert_log_is_sound(&events);
    assert_eq!(
        count(&events, "patient_account-MRN-K1", "ChargePosted"),
        lines
    );
    assert_eq!(count(&events, "purchase-REQ-K1", "ApprovalEscalated"), 1);
    assert_eq!(count(&events, "timers-purchase_approval", "TimerFired"), 1);
    let account = api.get("/v1/patient-accounts/MRN-K1", Some(&t.ehr)).await;
    assert_eq!(account.body["balance"], "400.00");

    // The harshest redelivery: the checkpoints are lost, so every runner replays the whole
    // log. Every command id repeats and every timer is known: not one event is appended.
    assert!(server.terminate().await.success());
    for file in [
        "process_managers.db",
        "process_managers.db-wal",
        "process_managers.db-shm",
    ] {
        let _ = std::fs::remove_file(dir.path().join("data").join(file));
    }
    let server = start(&dir.path(), &[]);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    eventually(WITHIN, "the runners to replay the log", || async {
        let reply = api.get("/v1/process-managers", Some(&t.admin)).await;
        reply.body["process_managers"]
            .as_array()?
            .iter()
            .all(|m| m["lag"] == 0 && m["status"] == "running" && m["position"] != 0)
            .then_some(())
    })
    .await;
    // Reads of personal data append to the access log; everything else must be unchanged.
    let business = |events: &[RecordedEvent]| {
        events
            .iter()
            .filter(|e| e.stream_id.kind() != "access_log")
            .map(|e| e.event_id)
            .collect::<Vec<_>>()
    };
    let replayed = api.all_events(&t.auditor).await;
    assert_eq!(
        business(&replayed),
        business(&events),
        "a replay appended events"
    );
    let charges = manager(&api, &t.admin, "charges").await;
    assert_eq!(charges["commands_sent"], lines as u64, "{charges}");
}

#[tokio::test]
async fn two_nodes_on_one_postgres_act_once_for_each_flow() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let payer = FakePayer::start();
    let schema = unique_schema("pm");
    let dir = TempDir::new();
    let other = TempDir::new();
    let secret = "a-test-secret-shared-by-both-nodes-0123456789";
    // Nodes sharing a database share its master key too (a node with another refuses to
    // start), as they share the JWT secret.
    let master_key = "ab".repeat(32);
    let env = [
        ("CAREFLOW_STORE", "postgres"),
        ("CAREFLOW_DATABASE_URL", url.as_str()),
        ("CAREFLOW_DATABASE_SCHEMA", schema.as_str()),
        ("CAREFLOW_PAYER_URL", payer.url.as_str()),
        ("CAREFLOW_JWT_SECRET", secret),
        ("CAREFLOW_MASTER_KEY", master_key.as_str()),
    ];
    let t = tokens(&dir.path(), &env);
    let a = start(&dir.path(), &env);
    a.wait_ready().await;
    let b = start(&other.path(), &env);
    b.wait_ready().await;
    let (api_a, api_b) = (Api::new(&a.base), Api::new(&b.base));

    api_a
        .ok(
            &t.ehr,
            "patient-accounts",
            "MRN-T1",
            register_body(Some("eligible-t")),
        )
        .await;
    api_b
        .ok(&t.ehr, "patient-accounts", "MRN-T2", register_body(None))
        .await;
    encounter_with_procedures(&api_b, &t.ehr, "V-T1", "MRN-T2", 3).await;
    api_a
        .ok(
            &t.ehr,
            "encounters",
            "V-T1",
            json!({"type": "CompleteEncounter"}),
        )
        .await;
    wait_account_status(&api_b, &t.ehr, "MRN-T1", "active").await;
    wait_account_status(&api_a, &t.ehr, "MRN-T2", "self_pay").await;
    eventually(WITHIN, "three charges", || async {
        let reply = api_a.get("/v1/patient-accounts/MRN-T2", Some(&t.ehr)).await;
        (reply.body["charges"].as_array().map(Vec::len) == Some(3)).then_some(())
    })
    .await;

    // Each manager runs on exactly one node; the other stands by.
    for name in [
        "eligibility",
        "charges",
        "replenishment",
        "purchase_approval",
        "purchase_stock",
        "claims",
        "merges",
    ] {
        eventually(WITHIN, "one owner per manager", || async {
            let on_a = manager(&api_a, &t.admin, name).await;
            let on_b = manager(&api_b, &t.admin, name).await;
            let mut pair = [
                on_a["status"].as_str()?.to_string(),
                on_b["status"].as_str()?.to_string(),
            ];
            pair.sort();
            (pair == ["running", "standby"]).then_some(())
        })
        .await;
    }
    let events = api_a.all_events(&t.auditor).await;
    assert_log_is_sound(&events);
    assert_eq!(
        count(&events, "patient_account-MRN-T1", "EligibilityVerified"),
        1
    );
    assert_eq!(
        count(&events, "patient_account-MRN-T1", "AccountActivated"),
        1
    );
    assert_eq!(
        count(&events, "patient_account-MRN-T2", "AccountFlaggedSelfPay"),
        1
    );
    assert_eq!(count(&events, "patient_account-MRN-T2", "ChargePosted"), 3);
    assert_eq!(payer.requests_for("eligible-t"), 1);
    drop(a);
    drop(b);
    drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn checkpoints_keep_position_and_state_together_and_a_postgres_lease_has_one_holder() {
    use careflow::runtime::consumers::checkpoint::{
        Checkpoint, CheckpointStore, PostgresCheckpoints, SqliteCheckpoints,
    };

    let dir = TempDir::new();
    let sqlite = SqliteCheckpoints::open(dir.path().join("pm.db")).unwrap();
    assert_eq!(sqlite.load("charges").await.unwrap(), None);
    let first = Checkpoint {
        position: 7,
        state: "null".into(),
    };
    let second = Checkpoint {
        position: 9,
        state: r#"{"open":{}}"#.into(),
    };
    sqlite.save("charges", &first).await.unwrap();
    sqlite.save("charges", &second).await.unwrap();
    assert_eq!(sqlite.load("charges").await.unwrap(), Some(second.clone()));
    assert_eq!(sqlite.load("eligibility").await.unwrap(), None);

    let Some(url) = postgres_url().await else {
        return;
    };
    let schema = unique_schema("pmck");
    let node_a = PostgresCheckpoints::open(&url, &schema).await.unwrap();
    let node_b = PostgresCheckpoints::open(&url, &schema).await.unwrap();
    node_a.save("charges", &second).await.unwrap();
    assert_eq!(node_b.load("charges").await.unwrap(), Some(second));
    let lease = node_a
        .acquire("charges")
        .await
        .unwrap()
        .expect("free lease");
    assert!(lease.is_held());
    assert!(node_b.acquire("charges").await.unwrap().is_none());
    assert!(node_b.acquire("eligibility").await.unwrap().is_some());
    drop(lease);
    // The lock goes with its session; the connection closes shortly after the drop.
    eventually(WITHIN, "the lease to be released", || async {
        node_b.acquire("charges").await.unwrap().map(|_| ())
    })
    .await;
    drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn without_a_payer_url_a_covered_registration_is_flagged_self_pay_at_its_deadline() {
    let dir = TempDir::new();
    let env = [("CAREFLOW_ELIGIBILITY_DEADLINE_SECONDS", "1")];
    let t = tokens(&dir.path(), &env);
    let server = start(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    api.ok(
        &t.ehr,
        "patient-accounts",
        "MRN-N1",
        register_body(Some("eligible-unasked")),
    )
    .await;
    let account = wait_account_status(&api, &t.ehr, "MRN-N1", "self_pay").await;
    assert!(
        account["self_pay_reason"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{account}"
    );
    let eligibility = manager(&api, &t.admin, "eligibility").await;
    assert_eq!(eligibility["breaker"], "not_configured", "{eligibility}");
    let events = api.all_events(&t.auditor).await;
    assert_eq!(count(&events, "timers-eligibility", "TimerFired"), 1);
    assert_eq!(
        count(&events, "patient_account-MRN-N1", "AccountFlaggedSelfPay"),
        1
    );
}

#[tokio::test]
async fn a_completed_visit_of_an_eligible_account_is_claimed_and_the_remittance_lands_on_the_account()
 {
    let payer = FakePayer::start();
    let dir = TempDir::new();
    let env = [("CAREFLOW_PAYER_URL", payer.url.as_str())];
    let t = tokens(&dir.path(), &env);
    let server = start(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);

    api.ok(
        &t.ehr,
        "patient-accounts",
        "MRN-CL1",
        register_body(Some("eligible-1")),
    )
    .await;
    api.ok(&t.ehr, "patient-accounts", "MRN-CL2", register_body(None))
        .await;
    wait_account_status(&api, &t.ehr, "MRN-CL1", "active").await;
    wait_account_status(&api, &t.ehr, "MRN-CL2", "self_pay").await;
    for (visit, mrn) in [("V-CL1", "MRN-CL1"), ("V-CL2", "MRN-CL2")] {
        encounter_with_procedures(&api, &t.ehr, visit, mrn, 2).await;
        api.ok(
            &t.ehr,
            "encounters",
            visit,
            json!({"type": "CompleteEncounter"}),
        )
        .await;
    }

    let claim = eventually(WITHIN, "the claim submitted", || async {
        let reply = api.get("/v1/claims/V-CL1-ACME", Some(&t.ehr)).await;
        (reply.body["status"] == "submitted").then_some(reply.body)
    })
    .await;
    assert_eq!(claim["account_id"], "MRN-CL1");
    assert_eq!(claim["total"], "20.00", "{claim}");
    assert_eq!(claim["lines"].as_array().unwrap().len(), 2);

    // The payer's answer: 15.00 paid, 3.00 contractual; 2.00 is left for the patient.
    api.ok(
        &t.ehr,
        "claims",
        "V-CL1-ACME",
        json!({
            "type": "RecordClaimResponse", "outcome": "partially_paid", "paid_amount": "15.00",
            "adjustments": [{"reason_code": "CO-45", "amount": "3.00"}], "reference": "CR-1"
        }),
    )
    .await;
    let account = eventually(WITHIN, "the remittance on the account", || async {
        let reply = api.get("/v1/patient-accounts/MRN-CL1", Some(&t.ehr)).await;
        (reply.body["balance"] == "2.00").then_some(reply.body)
    })
    .await;
    assert_eq!(
        account["payments"].as_array().unwrap().len(),
        1,
        "{account}"
    );
    assert_eq!(
        account["adjustments"].as_array().unwrap().len(),
        1,
        "{account}"
    );

    // The self-pay visit got no claim; its charges are all posted by now.
    eventually(WITHIN, "the self-pay charges", || async {
        let reply = api.get("/v1/patient-accounts/MRN-CL2", Some(&t.ehr)).await;
        (reply.body["charges"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    let events = api.all_events(&t.auditor).await;
    assert_eq!(count(&events, "claim-V-CL2-ACME", "ClaimCreated"), 0);
    assert_eq!(count(&events, "claim-V-CL1-ACME", "ClaimCreated"), 1);
    assert_eq!(
        count(&events, "patient_account-MRN-CL1", "PaymentRecorded"),
        1
    );
}
