//! Black-box: a whole patient journey over HTTP, time travel and idempotent retries.

use serde_json::{Value, json};

use crate::api::{Api, assert_log_is_sound};
use crate::server::{Server, token};
use crate::support::TempDir;

pub fn register_body(family: &str) -> Value {
    json!({
        "type": "RegisterPatient",
        "name": {"family": family, "given": ["Jane"]},
        "birth_date": "1980-04-12",
        "gender": "female",
        "facility": "MAIN",
        "coverage": {"payer_id": "ACME", "member_id": "M-123", "plan": "gold"}
    })
}

pub fn charge_body(charge_id: &str, unit_price: &str, quantity: u32) -> Value {
    json!({
        "type": "PostCharge", "charge_id": charge_id, "encounter_id": "V-J1",
        "code": "99213", "description": "office visit", "quantity": quantity,
        "unit_price": unit_price
    })
}

#[tokio::test]
async fn a_whole_patient_journey_ends_with_a_closed_account_at_zero() {
    let dir = TempDir::new();
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let ehr = token(&dir.path(), "system", "ehr");
    let auditor = token(&dir.path(), "auditor", "compliance");

    // Registration, with our correlation id stored and echoed.
    let reply = api
        .command_with(
            &ehr,
            "patient-accounts",
            "MRN-J1",
            register_body("Doe"),
            &[("X-Correlation-Id", "journey-1")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("x-correlation-id"), Some("journey-1"));
    assert_eq!(reply.body["stream"], "patient_account-MRN-J1");
    assert_eq!(reply.body["version"], 1);
    let event = &reply.body["events"][0];
    assert_eq!(event["event_type"], "PatientRegistered");
    assert_eq!(event["metadata"]["correlation_id"], "journey-1");
    assert_eq!(event["metadata"]["principal"], "ehr");
    assert_eq!(event["metadata"]["source"], "http");
    assert_eq!(reply.body["position"], event["position"]);

    // The encounter: schedule, check in, two procedures, complete.
    api.ok(
        &ehr,
        "encounters",
        "V-J1",
        json!({
            "type": "ScheduleEncounter", "account_id": "MRN-J1", "facility": "MAIN",
            "department": "CARDIO", "class": "outpatient", "scheduled_for": "2026-03-01T09:00:00Z"
        }),
    )
    .await;
    api.ok(&ehr, "encounters", "V-J1", json!({"type": "CheckIn"}))
        .await;
    api.ok(
        &ehr,
        "encounters",
        "V-J1",
        json!({
            "type": "RecordProcedure", "code": "99213", "description": "office visit",
            "quantity": 1, "unit_price": "125.50"
        }),
    )
    .await;
    api.ok(
        &ehr,
        "encounters",
        "V-J1",
        json!({
            "type": "RecordProcedure", "code": "93000", "description": "ECG",
            "quantity": 2, "unit_price": "40.25"
        }),
    )
    .await;
    let completed = api
        .ok(
            &ehr,
            "encounters",
            "V-J1",
            json!({"type": "CompleteEncounter"}),
        )
        .await;
    assert_eq!(completed["events"][0]["event_type"], "EncounterCompleted");
    let encounter = api.get("/v1/encounters/V-J1", Some(&ehr)).await;
    assert_eq!(encounter.status, 200, "{}", encounter.text);
    assert_eq!(encounter.body["status"], "completed");
    assert_eq!(encounter.body["procedures"][1]["amount"], "80.50");

    // Charges, a payment, an adjustment: exact balances along the way.
    api.ok(
        &ehr,
        "patient-accounts",
        "MRN-J1",
        charge_body("V-J1-1", "125.50", 1),
    )
    .await;
    api.ok(
        &ehr,
        "patient-accounts",
        "MRN-J1",
        charge_body("V-J1-2", "40.25", 2),
    )
    .await;
    let balance = |v: &Value| v["balance"].as_str().unwrap().to_string();
    let account = api.get("/v1/patient-accounts/MRN-J1", Some(&ehr)).await;
    assert_eq!(account.status, 200, "{}", account.text);
    assert_eq!(balance(&account.body), "206.00");
    assert_eq!(account.body["status"], "registered");

    api.ok(
        &ehr,
        "patient-accounts",
        "MRN-J1",
        json!({
            "type": "RecordPayment", "payment_id": "P1", "amount": "100.00", "method": "card"
        }),
    )
    .await;
    api.ok(
        &ehr,
        "patient-accounts",
        "MRN-J1",
        json!({
            "type": "ApplyAdjustment", "adjustment_id": "A1", "amount": "-6.00",
            "reason": "prompt-pay discount"
        }),
    )
    .await;
    let account = api.get("/v1/patient-accounts/MRN-J1", Some(&ehr)).await;
    assert_eq!(balance(&account.body), "100.00");

    // Closing with money outstanding is refused, and appends nothing.
    let refused = api
        .command(
            &ehr,
            "patient-accounts",
            "MRN-J1",
            json!({"type": "CloseAccount"}),
        )
        .await;
    assert_eq!(refused.assert_problem(409), "balance_not_zero");

    api.ok(
        &ehr,
        "patient-accounts",
        "MRN-J1",
        json!({
            "type": "RecordPayment", "payment_id": "P2", "amount": "100.00", "method": "insurance"
        }),
    )
    .await;
    let closed = api
        .ok(
            &ehr,
            "patient-accounts",
            "MRN-J1",
            json!({"type": "CloseAccount"}),
        )
        .await;
    assert_eq!(closed["events"][0]["event_type"], "AccountClosed");

    let account = api.get("/v1/patient-accounts/MRN-J1", Some(&ehr)).await;
    assert_eq!(account.body["status"], "closed");
    assert_eq!(balance(&account.body), "0.00");
    assert_eq!(account.body["charges"].as_array().unwrap().len(), 2);
    assert_eq!(account.body["charges"][1]["amount"], "80.50");
    assert_eq!(account.body["payments"].as_array().unwrap().len(), 2);
    assert_eq!(account.body["adjustments"][0]["amount"], "-6.00");
    assert_eq!(account.body["version"], 7);
    assert_eq!(account.body["personal"]["name"]["family"], "Doe");

    // The history (auditor) holds the seven events; the log verifies.
    let history = api
        .get("/v1/patient-accounts/MRN-J1/history", Some(&auditor))
        .await;
    assert_eq!(history.status, 200, "{}", history.text);
    assert_eq!(history.body["events"].as_array().unwrap().len(), 7);
    let log = api.all_events(&auditor).await;
    assert_log_is_sound(&log);

    // Every patient read above was recorded in the access log: who, what, when, correlation.
    let accesses: Vec<_> = log
        .iter()
        .filter(|e| e.event_type == "RecordAccessed")
        .collect();
    assert!(
        accesses
            .iter()
            .all(|e| e.stream_id.as_str().starts_with("access_log-"))
    );
    let reads_of = |principal: &str, action: &str, stream: &str| {
        accesses
            .iter()
            .filter(|e| {
                e.data["principal"] == principal
                    && e.data["action"] == action
                    && e.data["stream_id"] == stream
            })
            .count()
    };
    assert_eq!(reads_of("ehr", "read_state", "patient_account-MRN-J1"), 3);
    assert_eq!(reads_of("ehr", "read_state", "encounter-V-J1"), 1);
    assert_eq!(
        reads_of("compliance", "read_history", "patient_account-MRN-J1"),
        1
    );

    assert!(server.terminate().await.success());
}

#[tokio::test]
async fn as_of_rebuilds_the_state_from_the_events_recorded_until_then() {
    let dir = TempDir::new();
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let ehr = token(&dir.path(), "system", "ehr");

    let registered = api
        .ok(&ehr, "patient-accounts", "MRN-T1", register_body("Doe"))
        .await;
    let first = api
        .ok(
            &ehr,
            "patient-accounts",
            "MRN-T1",
            charge_body("C1", "10.00", 1),
        )
        .await;
    let t1 = first["events"][0]["metadata"]["recorded_at"]
        .as_str()
        .unwrap()
        .to_string();
    api.ok(
        &ehr,
        "patient-accounts",
        "MRN-T1",
        charge_body("C2", "5.00", 1),
    )
    .await;

    let at = |t: &str| {
        let t = t.replace('+', "%2B");
        format!("/v1/patient-accounts/MRN-T1?as_of={t}")
    };
    // Inclusive: the event recorded exactly at t1 is part of the state as of t1.
    let then = api.get(&at(&t1), Some(&ehr)).await;
    assert_eq!(then.status, 200, "{}", then.text);
    assert_eq!(then.body["balance"], "10.00");
    assert_eq!(then.body["version"], 2);

    let now = api.get("/v1/patient-accounts/MRN-T1", Some(&ehr)).await;
    assert_eq!(now.body["balance"], "15.00");
    assert_eq!(now.body["version"], 3);

    // Before the registration there is no account.
    let registered_at: chrono::DateTime<chrono::Utc> =
        registered["events"][0]["metadata"]["recorded_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    let before = (registered_at - chrono::Duration::seconds(1)).to_rfc3339();
    let none = api.get(&at(&before), Some(&ehr)).await;
    none.assert_problem(404);

    // A malformed as_of is a 400.
    let bad = api
        .get("/v1/patient-accounts/MRN-T1?as_of=yesterday", Some(&ehr))
        .await;
    assert_eq!(bad.assert_problem(400), "invalid_query");
    assert!(server.terminate().await.success());
}

#[tokio::test]
async fn a_retried_request_gets_its_first_answer_and_appends_nothing() {
    let dir = TempDir::new();
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let ehr = token(&dir.path(), "system", "ehr");
    let auditor = token(&dir.path(), "auditor", "compliance");
    api.ok(&ehr, "patient-accounts", "MRN-I1", register_body("Doe"))
        .await;

    let key = [("Idempotency-Key", "charge-C1-attempt")];
    let first = api
        .command_with(
            &ehr,
            "patient-accounts",
            "MRN-I1",
            charge_body("C1", "10.00", 1),
            &key,
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let count = api.all_events(&auditor).await.len();

    // Same key, same body (keys reordered): the first answer, nothing appended.
    let same_body_reordered = json!({
        "unit_price": "10.00", "quantity": 1, "description": "office visit",
        "code": "99213", "encounter_id": "V-J1", "charge_id": "C1", "type": "PostCharge"
    });
    let again = api
        .command_with(
            &ehr,
            "patient-accounts",
            "MRN-I1",
            same_body_reordered,
            &key,
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["events"], first.body["events"]);
    assert_eq!(again.body["version"], first.body["version"]);
    assert_eq!(api.all_events(&auditor).await.len(), count);

    // Same key, different body: 422, nothing appended.
    let other = api
        .command_with(
            &ehr,
            "patient-accounts",
            "MRN-I1",
            charge_body("C1", "99.00", 1),
            &key,
        )
        .await;
    assert_eq!(other.assert_problem(422), "idempotency_key_reused");
    assert_eq!(api.all_events(&auditor).await.len(), count);

    // Without a key, the same charge is a business-rule refusal instead.
    let unkeyed = api
        .command(
            &ehr,
            "patient-accounts",
            "MRN-I1",
            charge_body("C1", "10.00", 1),
        )
        .await;
    assert_eq!(unkeyed.assert_problem(409), "duplicate_charge");

    // A keyed rejection is answered the same way again.
    let key2 = [("Idempotency-Key", "pay-too-much")];
    let pay =
        json!({"type": "RecordPayment", "payment_id": "P9", "amount": "50.00", "method": "cash"});
    let refused = api
        .command_with(&ehr, "patient-accounts", "MRN-I1", pay.clone(), &key2)
        .await;
    assert_eq!(refused.assert_problem(409), "overpayment");
    let refused_again = api
        .command_with(&ehr, "patient-accounts", "MRN-I1", pay, &key2)
        .await;
    assert_eq!(refused_again.status, 409);
    assert_eq!(refused_again.body, refused.body);

    // Keys are per caller: another system's same key is another command.
    let lab = token(&dir.path(), "system", "lab");
    let theirs = api
        .command_with(
            &lab,
            "patient-accounts",
            "MRN-I1",
            charge_body("C2", "1.00", 1),
            &key,
        )
        .await;
    assert_eq!(theirs.status, 200, "{}", theirs.text);
    assert_ne!(
        theirs.body["events"][0]["metadata"]["command_id"],
        first.body["events"][0]["metadata"]["command_id"]
    );

    // The answer survives a restart.
    assert!(server.terminate().await.success());
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let after = api
        .command_with(
            &ehr,
            "patient-accounts",
            "MRN-I1",
            charge_body("C1", "10.00", 1),
            &key,
        )
        .await;
    assert_eq!(after.status, 200, "{}", after.text);
    assert_eq!(after.body["events"], first.body["events"]);
    assert!(server.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_twins_with_one_key_append_once_and_get_one_answer() {
    let dir = TempDir::new();
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let ehr = token(&dir.path(), "system", "ehr");
    let auditor = token(&dir.path(), "auditor", "compliance");
    api.ok(&ehr, "patient-accounts", "MRN-I2", register_body("Doe"))
        .await;

    let twins: Vec<_> = (0..8)
        .map(|_| {
            let api = api.clone();
            let ehr = ehr.clone();
            tokio::spawn(async move {
                api.command_with(
                    &ehr,
                    "patient-accounts",
                    "MRN-I2",
                    charge_body("C1", "10.00", 1),
                    &[("Idempotency-Key", "twin")],
                )
                .await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for twin in twins {
        let reply = twin.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text);
        answers.push(reply.body["events"].clone());
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    let charges = api
        .all_events(&auditor)
        .await
        .into_iter()
        .filter(|e| e.event_type == "ChargePosted")
        .count();
    assert_eq!(charges, 1);
    assert!(server.terminate().await.success());
}
