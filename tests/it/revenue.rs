//! Black-box: claims and rosters over HTTP, through the real binary. The claims and staffing
//! process managers are not built yet; these are the aggregates' contract as an upstream
//! billing or HR system sends it.

use serde_json::{Value, json};

use crate::api::Api;
use crate::serve::{Server, token};
use crate::support::TempDir;

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
