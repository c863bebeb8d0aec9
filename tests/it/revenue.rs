//! Black-box: claims and rosters over HTTP, through the real binary: the aggregates'
//! contract as an upstream billing or HR system sends it, the FHIR Claim and ClaimResponse
//! routes, and the whole revenue journey against the fake payer (paid, partially paid,
//! denied then resubmitted and paid, queued then answered by a posted ClaimResponse) with the
//! billing views' exact figures.

use std::path::Path;
use std::time::Duration;

use careflow_aggregates::RecordedEvent;
use chrono::{Days, Utc};
use serde_json::{Value, json};

use crate::api::{Api, Reply};
use crate::fake_payer::{Adjudication, FakePayer};
use crate::server::{Server, careflow, token, token_with_env};
use crate::support::{TempDir, eventually};

const WITHIN: Duration = Duration::from_secs(30);
const FHIR_JSON: &str = "application/fhir+json";

fn create_claim() -> Value {
    json!({
        "type": "CreateClaim", "account_id": "MRN-1", "encounter_id": "V1", "payer_id": "ACME",
        "lines": [
            {"charge_id": "V1-1", "code": "99213", "quantity": 1, "unit_price": "150.00"},
            {"charge_id": "V1-2", "code": "85025", "quantity": 2, "unit_price": "25.00"}
        ]
    })
}

#[tokio::test]
async fn a_claim_is_denied_resubmitted_and_paid_with_its_arithmetic_in_the_state() {
    let dir = TempDir::new();
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let billing = token(&dir.path(), "system", "billing");
    let auditor = token(&dir.path(), "auditor", "compliance");

    // A response for a claim that does not exist appends nothing.
    let response = json!({
        "type": "RecordClaimResponse", "outcome": "denied", "paid_amount": "0.00",
        "denial_reason": "not covered", "reference": "CR-1"
    });
    let reply = api
        .command(&billing, "claims", "V1-ACME", response.clone())
        .await;
    assert_eq!(reply.status, 409, "{}", reply.text);
    assert_eq!(reply.body["code"], "claim_not_created");
    assert!(api.all_events(&auditor).await.is_empty());

    api.ok(&billing, "claims", "V1-ACME", create_claim()).await;
    api.ok(
        &billing,
        "claims",
        "V1-ACME",
        json!({"type": "SubmitClaim"}),
    )
    .await;
    api.ok(&billing, "claims", "V1-ACME", response.clone())
        .await;
    // The payer posting the same answer again changes nothing.
    let again = api.ok(&billing, "claims", "V1-ACME", response).await;
    assert_eq!(again["events"], json!([]));
    api.ok(
        &billing,
        "claims",
        "V1-ACME",
        json!({"type": "ResubmitClaim", "note": "coverage corrected"}),
    )
    .await;

    // Paying more than was claimed is refused and appends nothing.
    let before = api.all_events(&auditor).await.len();
    let reply = api
        .command(
            &billing,
            "claims",
            "V1-ACME",
            json!({
                "type": "RecordClaimResponse", "outcome": "paid", "paid_amount": "180.00",
                "adjustments": [{"reason_code": "CO-45", "amount": "20.01"}], "reference": "CR-2"
            }),
        )
        .await;
    assert_eq!(reply.status, 409, "{}", reply.text);
    assert_eq!(reply.body["code"], "remittance_exceeds_claim");
    assert_eq!(api.all_events(&auditor).await.len(), before);

    api.ok(
        &billing,
        "claims",
        "V1-ACME",
        json!({
            "type": "RecordClaimResponse", "outcome": "partially_paid", "paid_amount": "150.00",
            "adjustments": [{"reason_code": "CO-45", "amount": "30.00"}], "reference": "CR-2"
        }),
    )
    .await;
    let claim = api.get("/v1/claims/V1-ACME", Some(&billing)).await.body;
    assert_eq!(claim["status"], "partially_paid", "{claim}");
    assert_eq!(claim["total"], "200.00");
    assert_eq!(
        (
            &claim["paid"],
            &claim["adjusted"],
            &claim["patient_balance"]
        ),
        (&json!("150.00"), &json!("30.00"), &json!("20.00"))
    );
    assert_eq!(claim["submissions"], 2);
    assert_eq!(claim["version"], 5);
}

#[tokio::test]
async fn a_roster_keeps_its_shifts_honest_and_reports_hours_and_cost() {
    let dir = TempDir::new();
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let hr = token(&dir.path(), "system", "hr");
    let roster = "MAIN.ED.2026-12-07";
    let shift = |id: &str, staff: &str, start: &str, end: &str, cost: &str| {
        json!({
            "type": "AssignShift", "shift_id": id, "staff_id": staff, "role": "nurse",
            "start": start, "end": end, "hourly_cost": cost
        })
    };

    api.ok(
        &hr,
        "rosters",
        roster,
        shift(
            "S1",
            "N-1",
            "2026-12-07T07:00:00Z",
            "2026-12-07T15:00:00Z",
            "45.00",
        ),
    )
    .await;
    api.ok(
        &hr,
        "rosters",
        roster,
        shift(
            "S2",
            "N-2",
            "2026-12-07T15:00:00Z",
            "2026-12-07T19:30:00Z",
            "50.00",
        ),
    )
    .await;

    let reply = api
        .command(
            &hr,
            "rosters",
            roster,
            shift(
                "S3",
                "N-3",
                "2026-12-07T15:00:00Z",
                "2026-12-07T07:00:00Z",
                "45.00",
            ),
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.body["code"], "shift_ends_before_start");
    let reply = api
        .command(
            &hr,
            "rosters",
            roster,
            shift(
                "S4",
                "N-1",
                "2026-12-07T14:00:00Z",
                "2026-12-07T20:00:00Z",
                "45.00",
            ),
        )
        .await;
    assert_eq!(reply.status, 409, "{}", reply.text);
    assert_eq!(reply.body["code"], "staff_double_booked");
    let reply = api
        .command(
            &hr,
            "rosters",
            "MAIN.ED.2026-02-30",
            shift(
                "S5",
                "N-5",
                "2026-12-07T07:00:00Z",
                "2026-12-07T08:00:00Z",
                "1.00",
            ),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.body["code"], "invalid_id");

    let state = api
        .get(&format!("/v1/rosters/{roster}"), Some(&hr))
        .await
        .body;
    assert_eq!(
        (&state["facility"], &state["department"], &state["date"]),
        (&json!("MAIN"), &json!("ED"), &json!("2026-12-07"))
    );
    assert_eq!(state["rostered_hours"], 12.5);
    // 8 h × 45.00 + 4.5 h × 50.00 = 360.00 + 225.00
    assert_eq!(state["labor_cost"], "585.00");
    assert_eq!(state["shifts"][1]["shift_id"], "S2");

    api.ok(
        &hr,
        "rosters",
        roster,
        json!({"type": "CancelShift", "shift_id": "S2", "reason": "census low"}),
    )
    .await;
    let state = api
        .get(&format!("/v1/rosters/{roster}"), Some(&hr))
        .await
        .body;
    assert_eq!(state["labor_cost"], "360.00");
    assert_eq!(state["cancelled"], json!(["S2"]));
}

async fn fhir_post(api: &Api, token: &str, path: &str, body: &Value) -> Reply {
    api.post_raw(
        &format!("/fhir/r4{path}"),
        Some(token),
        &[("content-type", FHIR_JSON)],
        body.to_string(),
    )
    .await
}

/// The domain events of the log (the access log, timers and other internal streams left out).
fn domain(events: &[RecordedEvent]) -> Vec<&RecordedEvent> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e.stream_id.kind(),
                "claim" | "patient_account" | "encounter"
            )
        })
        .collect()
}

fn claim_response(claim_id: &str, id: &str, paid: f64, items: Value) -> Value {
    json!({
        "resourceType": "ClaimResponse", "id": id, "status": "active", "use": "claim",
        "outcome": "complete", "request": {"identifier": {"value": claim_id}},
        "item": items, "payment": {"amount": {"value": paid, "currency": "USD"}},
    })
}

fn adjudicated(sequence: u32, submitted: f64, eligible: f64) -> Value {
    json!({"itemSequence": sequence, "adjudication": [
        {"category": {"coding": [{"code": "submitted"}]}, "amount": {"value": submitted}},
        {"category": {"coding": [{"code": "eligible"}]}, "amount": {"value": eligible}},
        {"category": {"coding": [{"code": "benefit"}]}, "amount": {"value": eligible}},
    ]})
}

#[tokio::test]
async fn an_upstream_fhir_claim_is_created_submitted_and_answered_and_bad_remittances_change_nothing()
 {
    let dir = TempDir::new();
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let billing = token(&dir.path(), "system", "billing");
    let auditor = token(&dir.path(), "auditor", "compliance");

    let claim = json!({
        "resourceType": "Claim", "status": "active", "use": "claim",
        "identifier": [{"value": "UP-1"}],
        "patient": {"identifier": {"type": {"coding": [{"code": "MR"}]}, "value": "MRN-U"}},
        "insurer": {"reference": "Organization/ACME"},
        "item": [
            {"sequence": 1, "productOrService": {"coding": [{"code": "99213"}]},
             "quantity": {"value": 1}, "unitPrice": {"value": 100.00, "currency": "USD"},
             "net": {"value": 100.00, "currency": "USD"},
             "encounter": [{"reference": "Encounter/V-U"}],
             "extension": [{"url": "https://careflow.example/fhir/StructureDefinition/claim-item-charge", "valueString": "CH-1"}]},
            {"sequence": 2, "productOrService": {"coding": [{"code": "85025"}]},
             "quantity": {"value": 2}, "unitPrice": {"value": 25.00}, "net": {"value": 50.00}}
        ]
    });
    let reply = fhir_post(&api, &billing, "/Claim", &claim).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let state = api.get("/v1/claims/UP-1", Some(&billing)).await.body;
    assert_eq!(state["status"], "submitted", "{state}");
    assert_eq!(
        (
            &state["account_id"],
            &state["encounter_id"],
            &state["payer_id"]
        ),
        (&json!("MRN-U"), &json!("V-U"), &json!("ACME"))
    );
    assert_eq!(state["total"], "150.00");
    assert_eq!(state["lines"][0]["charge_id"], "CH-1");
    assert_eq!(state["lines"][1]["charge_id"], "UP-1.2");

    // A Claim whose net is not quantity × unitPrice is refused and appends nothing.
    let before = domain(&api.all_events(&auditor).await).len();
    let mut wrong = claim.clone();
    wrong["identifier"][0]["value"] = json!("UP-2");
    wrong["item"][1]["net"]["value"] = json!(40.00);
    let reply = fhir_post(&api, &billing, "/Claim", &wrong).await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.body["resourceType"], "OperationOutcome");
    assert_eq!(reply.body["issue"][0]["expression"][0], "Claim.item.net");

    // A ClaimResponse for a claim careflow does not hold: 404, nothing appended.
    let unknown = claim_response("NOPE-ACME", "cr-x", 10.0, json!([]));
    let reply = fhir_post(&api, &billing, "/ClaimResponse", &unknown).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(reply.body["resourceType"], "OperationOutcome");
    assert_eq!(reply.body["issue"][0]["code"], "not-found");
    // A remittance paying more than was claimed: 409, nothing appended.
    let over = claim_response("UP-1", "cr-over", 150.01, json!([]));
    let reply = fhir_post(&api, &billing, "/ClaimResponse", &over).await;
    assert_eq!(reply.status, 409, "{}", reply.text);
    assert_eq!(reply.body["issue"][0]["code"], "business-rule");
    assert!(
        reply.text.contains("remittance_exceeds_claim"),
        "{}",
        reply.text
    );
    let events = api.all_events(&auditor).await;
    assert_eq!(domain(&events).len(), before, "bad input appended nothing");
    assert!(
        !events
            .iter()
            .any(|e| e.stream_id.to_string() == "claim-NOPE-ACME")
    );
    assert_eq!(
        api.get("/v1/claims/UP-1", Some(&billing)).await.body["version"],
        2
    );

    // The payer's answer: 100.00 allowed 80.00, 50.00 in full; 120.00 paid.
    let answer = claim_response(
        "UP-1",
        "cr-1",
        120.0,
        json!([adjudicated(1, 100.0, 80.0), adjudicated(2, 50.0, 50.0)]),
    );
    let reply = fhir_post(&api, &billing, "/ClaimResponse", &answer).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let state = api.get("/v1/claims/UP-1", Some(&billing)).await.body;
    assert_eq!(state["status"], "partially_paid", "{state}");
    assert_eq!(
        (
            &state["paid"],
            &state["adjusted"],
            &state["patient_balance"]
        ),
        (&json!("120.00"), &json!("20.00"), &json!("10.00"))
    );
    assert_eq!(state["reference"], "ClaimResponse/cr-1");
    assert_eq!(state["adjustments"][0]["reason_code"], "CO-45");
}

/// `careflow serve` with the process managers on and the fake payer.
fn start_with_payer(dir: &Path, payer: &FakePayer) -> Server {
    let mut cmd = careflow(dir);
    cmd.env("CAREFLOW_PROCESS_MANAGERS", "true")
        .env("CAREFLOW_PAYER_URL", &payer.url);
    Server::spawn(cmd)
}

async fn visit(api: &Api, ehr: &str, mrn: &str, visit: &str) {
    api.ok(
        ehr,
        "patient-accounts",
        mrn,
        json!({
            "type": "RegisterPatient", "name": {"family": "Doe", "given": ["Jane"]},
            "birth_date": "1980-04-12", "gender": "female", "facility": "MAIN",
            "coverage": {"payer_id": "ACME", "member_id": format!("eligible-{mrn}"), "plan": "gold"}
        }),
    )
    .await;
    let path = format!("/v1/patient-accounts/{mrn}");
    eventually(WITHIN, &format!("{mrn} active"), || async {
        let reply = api.get(&path, Some(ehr)).await;
        (reply.body["status"] == "active").then_some(())
    })
    .await;
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
    for (code, quantity, price) in [("99213", 1, "100.00"), ("85025", 2, "25.00")] {
        api.ok(
            ehr,
            "encounters",
            visit,
            json!({
                "type": "RecordProcedure", "code": code, "description": "procedure",
                "quantity": quantity, "unit_price": price
            }),
        )
        .await;
    }
    api.ok(
        ehr,
        "encounters",
        visit,
        json!({"type": "CompleteEncounter"}),
    )
    .await;
}

async fn claim_in(api: &Api, token: &str, claim_id: &str, status: &str) -> Value {
    let path = format!("/v1/claims/{claim_id}");
    eventually(WITHIN, &format!("{claim_id} {status}"), || async {
        let reply = api.get(&path, Some(token)).await;
        (reply.body["status"] == status).then_some(reply.body)
    })
    .await
}

async fn balance_is(api: &Api, token: &str, mrn: &str, balance: &str) -> Value {
    let path = format!("/v1/patient-accounts/{mrn}");
    eventually(WITHIN, &format!("{mrn} balance {balance}"), || async {
        let reply = api.get(&path, Some(token)).await;
        (reply.body["balance"] == balance).then_some(reply.body)
    })
    .await
}

/// The claims view's row of `claim_id` once it shows `status`.
async fn listed(api: &Api, finance: &str, claim_id: &str, status: &str) -> Value {
    eventually(WITHIN, &format!("{claim_id} listed {status}"), || async {
        let reply = api.get("/v1/billing/claims", Some(finance)).await;
        reply.body["claims"]
            .as_array()?
            .iter()
            .find(|c| c["claim_id"] == claim_id && c["status"] == status)
            .cloned()
    })
    .await
}

// See: issue 16.
#[tokio::test]
async fn the_revenue_journey_against_the_payer_lands_exact_figures_in_the_billing_views() {
    let payer = FakePayer::start();
    payer.adjudicate("V-PAID-ACME", vec![Adjudication::PaidInFull]);
    payer.adjudicate(
        "V-PART-ACME",
        vec![Adjudication::Partial {
            allowed_percent: 80,
            pays_percent: 90,
        }],
    );
    payer.adjudicate(
        "V-DEN-ACME",
        vec![
            Adjudication::Denied {
                code: "a001",
                display: "no prior authorisation",
            },
            Adjudication::PaidInFull,
        ],
    );
    // V-Q-ACME is not configured: the payer queues it.
    let dir = TempDir::new();
    let env = [("CAREFLOW_PAYER_URL", payer.url.as_str())];
    let ehr = token_with_env(&dir.path(), &env, "system", "ehr");
    let finance = token_with_env(&dir.path(), &env, "finance", "billing");
    let auditor = token_with_env(&dir.path(), &env, "auditor", "compliance");
    let server = start_with_payer(&dir.path(), &payer);
    server.wait_ready().await;
    let api = Api::new(&server.base);

    for (mrn, v) in [
        ("MRN-PAID", "V-PAID"),
        ("MRN-PART", "V-PART"),
        ("MRN-DEN", "V-DEN"),
        ("MRN-Q", "V-Q"),
    ] {
        visit(&api, &ehr, mrn, v).await;
    }

    // Paid in full: 150.00 paid, nothing left.
    let paid = claim_in(&api, &ehr, "V-PAID-ACME", "paid").await;
    assert_eq!(
        (&paid["total"], &paid["paid"]),
        (&json!("150.00"), &json!("150.00"))
    );
    balance_is(&api, &ehr, "MRN-PAID", "0.00").await;
    // Partially paid: allowed 80 % (120.00), 90 % of it paid (108.00), 30.00 contractual,
    // 12.00 the patient's.
    let part = claim_in(&api, &ehr, "V-PART-ACME", "partially_paid").await;
    assert_eq!(
        (&part["paid"], &part["adjusted"], &part["patient_balance"]),
        (&json!("108.00"), &json!("30.00"), &json!("12.00"))
    );
    let account = balance_is(&api, &ehr, "MRN-PART", "12.00").await;
    assert_eq!(account["payments"][0]["method"], "insurance", "{account}");
    assert_eq!(account["payments"][0]["amount"], "108.00");
    assert_eq!(account["adjustments"].as_array().unwrap().len(), 2);
    // Denied: in the work queue with the payer's reason, nothing posted to the account.
    let denied = claim_in(&api, &ehr, "V-DEN-ACME", "denied").await;
    assert_eq!(
        denied["denial_reason"],
        "a001: no prior authorisation; claim denied"
    );
    listed(&api, &finance, "V-DEN-ACME", "denied").await;
    let queue = api.get("/v1/billing/denials", Some(&finance)).await;
    assert_eq!(queue.status, 200, "{}", queue.text);
    let queue = queue.body["claims"].as_array().unwrap().clone();
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0]["claim_id"], "V-DEN-ACME");
    assert_eq!(queue[0]["total"], "150.00");
    assert_eq!(
        queue[0]["denial_reason"],
        "a001: no prior authorisation; claim denied"
    );
    // Queued: the claim waits submitted.
    claim_in(&api, &ehr, "V-Q-ACME", "submitted").await;
    eventually(WITHIN, "the queued claim at the payer", || async {
        payer
            .claims()
            .iter()
            .any(|c| c["identifier"][0]["value"] == "V-Q-ACME")
            .then_some(())
    })
    .await;
    let sent = payer
        .claims()
        .into_iter()
        .find(|c| c["identifier"][0]["value"] == "V-PART-ACME")
        .unwrap();
    assert_eq!(sent["patient"]["identifier"]["value"], "MRN-PART");
    assert_eq!(
        sent["insurance"][0]["coverage"]["identifier"]["value"],
        "eligible-MRN-PART"
    );
    assert_eq!(sent["item"][1]["quantity"]["value"], 2);
    assert_eq!(sent["item"][1]["unitPrice"]["value"], 25.0);
    assert_eq!(sent["item"][1]["net"]["value"], 50.0);

    // Aging 45 days on: the denied and the queued claim are outstanding with ACME.
    listed(&api, &finance, "V-Q-ACME", "submitted").await;
    let as_of = Utc::now()
        .date_naive()
        .checked_add_days(Days::new(45))
        .unwrap();
    let aging = eventually(WITHIN, "the aging of claims and accounts", || async {
        let reply = api
            .get(&format!("/v1/billing/aging?as_of={as_of}"), Some(&finance))
            .await;
        (reply.status == 200
            && reply.body["totals"]["USD"]["total"] == "312.00"
            && reply.body["claims"]["payers"][0]["claims"] == 2)
            .then_some(reply)
    })
    .await;
    let acme = &aging.body["claims"]["payers"][0];
    assert_eq!(acme["payer_id"], "ACME", "{}", aging.text);
    assert_eq!(acme["buckets"]["days_31_60"], "300.00");
    assert_eq!(acme["buckets"]["total"], "300.00");
    assert_eq!(acme["buckets"]["days_0_30"], "0.00");
    assert_eq!(aging.body["claims"]["totals"]["USD"]["total"], "300.00");
    // The accounts' own A/R is beside it: 150.00 + 150.00 open, 12.00 left of MRN-PART.
    assert_eq!(
        aging.body["totals"]["USD"]["days_31_60"], "312.00",
        "{}",
        aging.text
    );

    // The denial is worked: resubmitted, and paid in full this time.
    api.ok(
        &ehr,
        "claims",
        "V-DEN-ACME",
        json!({"type": "ResubmitClaim", "note": "authorisation obtained"}),
    )
    .await;
    let resubmitted = claim_in(&api, &ehr, "V-DEN-ACME", "paid").await;
    assert_eq!(resubmitted["submissions"], 2);
    balance_is(&api, &ehr, "MRN-DEN", "0.00").await;
    listed(&api, &finance, "V-DEN-ACME", "paid").await;
    let queue = api.get("/v1/billing/denials", Some(&finance)).await.body;
    assert_eq!(queue["claims"], json!([]), "{queue}");

    // The queued claim is answered later: the payer posts its ClaimResponse.
    let answer = claim_response(
        "V-Q-ACME",
        "cr-q",
        135.0,
        json!([adjudicated(1, 100.0, 85.0), adjudicated(2, 50.0, 50.0)]),
    );
    let reply = fhir_post(&api, &ehr, "/ClaimResponse", &answer).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let queued = claim_in(&api, &ehr, "V-Q-ACME", "paid").await;
    assert_eq!(
        (
            &queued["paid"],
            &queued["adjusted"],
            &queued["patient_balance"]
        ),
        (&json!("135.00"), &json!("15.00"), &json!("0.00"))
    );
    balance_is(&api, &ehr, "MRN-Q", "0.00").await;

    // The views' figures, exactly.
    listed(&api, &finance, "V-Q-ACME", "paid").await;
    let all = api
        .get("/v1/billing/claims?payer=ACME", Some(&finance))
        .await
        .body;
    let rows: Vec<(String, String, String, String, String)> = all["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap().to_owned();
            (
                s("claim_id"),
                s("status"),
                s("paid"),
                s("adjusted"),
                s("patient_balance"),
            )
        })
        .collect();
    let row = |id: &str, status: &str, paid: &str, adjusted: &str, left: &str| {
        (
            id.into(),
            status.into(),
            paid.into(),
            adjusted.into(),
            left.into(),
        )
    };
    assert_eq!(
        rows,
        vec![
            row("V-DEN-ACME", "paid", "150.00", "0.00", "0.00"),
            row("V-PAID-ACME", "paid", "150.00", "0.00", "0.00"),
            row("V-PART-ACME", "partially_paid", "108.00", "30.00", "12.00"),
            row("V-Q-ACME", "paid", "135.00", "15.00", "0.00"),
        ]
    );
    // Pages of two, by claim id: the second page starts after the first's last id.
    let page = |after: &str| {
        let api = &api;
        let finance = &finance;
        let path = format!("/v1/billing/claims?payer=ACME&limit=2&after={after}");
        async move { api.get(&path, Some(finance)).await.body }
    };
    let first = page("").await;
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["claims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["claim_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&first), ["V-DEN-ACME", "V-PAID-ACME"]);
    assert_eq!(first["next_after"], "V-PAID-ACME");
    assert_eq!(first["truncated"], true);
    let second = page("V-PAID-ACME").await;
    assert_eq!(ids(&second), ["V-PART-ACME", "V-Q-ACME"]);
    assert_eq!(second["next_after"], json!(null), "the last page");
    let zero = api.get("/v1/billing/claims?limit=0", Some(&finance)).await;
    assert_eq!(zero.status, 400, "{}", zero.text);
    let part_only = api
        .get("/v1/billing/claims?status=partially_paid", Some(&finance))
        .await
        .body;
    assert_eq!(part_only["claims"].as_array().unwrap().len(), 1);
    let none = api
        .get("/v1/billing/claims?payer=OTHER", Some(&finance))
        .await
        .body;
    assert_eq!(none["claims"], json!([]));
    let bad = api
        .get("/v1/billing/claims?status=lost", Some(&finance))
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    let forbidden = api.get("/v1/billing/denials", Some(&ehr)).await;
    assert_eq!(forbidden.status, 403, "{}", forbidden.text);
    let aging = api
        .get(&format!("/v1/billing/aging?as_of={as_of}"), Some(&finance))
        .await
        .body;
    assert_eq!(aging["claims"]["payers"], json!([]), "nothing outstanding");

    // Each answer moved money once: one insurance payment per paid claim.
    let events = api.all_events(&auditor).await;
    let payments = events
        .iter()
        .filter(|e| e.event_type == "PaymentRecorded")
        .count();
    assert_eq!(payments, 4);
    let responses = events
        .iter()
        .filter(|e| e.event_type == "ClaimResponseRecorded")
        .count();
    assert_eq!(
        responses, 5,
        "paid, partial, denied, paid on resubmission, queued answered"
    );
}
