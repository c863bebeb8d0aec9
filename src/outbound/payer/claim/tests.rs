use chrono::TimeZone;
use uuid::Uuid;

use super::*;

fn line(charge_id: &str, code: &str, quantity: u32, cents: i64) -> ClaimLine {
    ClaimLine {
        charge_id: charge_id.into(),
        code: code.into(),
        quantity,
        unit_price: Cents(cents),
    }
}

fn lines() -> Vec<ClaimLine> {
    vec![
        line("C1", "99213", 1, 10_000),
        line("C2", "85025", 2, 2_500),
    ]
}

fn submission() -> ClaimSubmission {
    ClaimSubmission {
        claim_id: "V1-ACME".into(),
        account_id: "MRN-1".into(),
        encounter_id: "V1".into(),
        payer_id: "ACME".into(),
        lines: lines(),
        currency: Currency::USD,
        total: Cents(15_000),
        submission: 1,
        record_command_id: Uuid::from_u128(7),
        give_up_at: Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap(),
    }
}

#[test]
fn the_claim_names_claim_patient_member_and_items_where_the_contract_says() {
    let created = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
    let body = claim_request(&submission(), Some("M-1"), created);
    assert_eq!(body["resourceType"], "Claim");
    assert_eq!(body.pointer("/identifier/0/value").unwrap(), "V1-ACME");
    assert_eq!(body.pointer("/patient/identifier/value").unwrap(), "MRN-1");
    assert_eq!(
        body.pointer("/insurance/0/coverage/identifier/value")
            .unwrap(),
        "M-1"
    );
    assert_eq!(body.pointer("/insurer/identifier/value").unwrap(), "ACME");
    let item = &body["item"][1];
    assert_eq!(item["sequence"], 2);
    assert_eq!(
        item.pointer("/productOrService/coding/0/code").unwrap(),
        "85025"
    );
    assert_eq!(item.pointer("/quantity/value").unwrap(), 2);
    assert_eq!(item.pointer("/unitPrice/value").unwrap(), 25.0);
    assert_eq!(item.pointer("/net/value").unwrap(), 50.0);
    assert_eq!(body.pointer("/total/value").unwrap(), 150.0);
    assert_eq!(body["created"], "2026-03-01T09:00:00Z");
    let erased = claim_request(&submission(), None, created);
    assert_eq!(erased.pointer("/insurance/0/coverage").unwrap(), &json!({}));
}

fn adjudication(sequence: u32, submitted: f64, eligible: f64, benefit: f64) -> Value {
    let category = |code: &str, value: f64| json!({"category": {"coding": [{"code": code}]}, "amount": {"value": value, "currency": "USD"}});
    json!({
        "itemSequence": sequence,
        "adjudication": [
            category("submitted", submitted),
            category("eligible", eligible),
            category("benefit", benefit),
        ]
    })
}

#[track_caller]
fn check(response: Value, expected: Result<ClaimAnswer, ClaimResponseError>) {
    assert_eq!(
        read_claim_response(&response, &lines(), Some("fallback")),
        expected
    );
}

#[test]
fn a_complete_answer_pays_and_adjusts_submitted_minus_eligible_per_item() {
    // 100.00 allowed at 80.00, 50.00 at 40.00; 90 % of what is allowed paid.
    check(
        json!({
            "resourceType": "ClaimResponse", "id": "cr-1", "outcome": "complete",
            "request": {"identifier": {"value": "V1-ACME"}},
            "item": [adjudication(1, 100.0, 80.0, 72.0), adjudication(2, 50.0, 40.0, 36.0)],
            "payment": {"amount": {"value": 108.0, "currency": "USD"}},
        }),
        Ok(ClaimAnswer::Adjudicated(RecordClaimResponse {
            outcome: ClaimOutcome::PartiallyPaid,
            paid_amount: Cents(10_800),
            adjustments: vec![
                RemittanceAdjustment {
                    reason_code: CONTRACTUAL_REASON.into(),
                    amount: Cents(2_000),
                },
                RemittanceAdjustment {
                    reason_code: CONTRACTUAL_REASON.into(),
                    amount: Cents(1_000),
                },
            ],
            denial_reason: None,
            reference: "ClaimResponse/cr-1".into(),
        })),
    );
    // Paid in full; an item without `submitted` is taken at the line's net.
    let mut item = adjudication(2, 0.0, 50.0, 50.0);
    item["adjudication"].as_array_mut().unwrap().remove(0);
    check(
        json!({
            "resourceType": "ClaimResponse", "outcome": "complete",
            "identifier": [{"value": "RA-9"}],
            "item": [adjudication(1, 100.0, 100.0, 100.0), item],
            "payment": {"amount": {"value": "150.00"}},
        }),
        Ok(ClaimAnswer::Adjudicated(RecordClaimResponse {
            outcome: ClaimOutcome::Paid,
            paid_amount: Cents(15_000),
            adjustments: vec![],
            denial_reason: None,
            reference: "RA-9".into(),
        })),
    );
}

#[test]
fn errors_or_nothing_paid_are_a_denial_and_queued_records_nothing() {
    check(
        json!({
            "resourceType": "ClaimResponse", "outcome": "error",
            "disposition": "claim denied",
            "error": [{"code": {"coding": [{"code": "a001", "display": "no prior authorisation"}]}}],
        }),
        Ok(ClaimAnswer::Adjudicated(RecordClaimResponse {
            outcome: ClaimOutcome::Denied,
            paid_amount: Cents::ZERO,
            adjustments: vec![],
            denial_reason: Some("a001: no prior authorisation; claim denied".into()),
            reference: "fallback".into(),
        })),
    );
    check(
        json!({"resourceType": "ClaimResponse", "id": "q", "outcome": "queued"}),
        Ok(ClaimAnswer::Queued {
            response_id: Some("q".into()),
        }),
    );
    check(
        json!({"resourceType": "ClaimResponse", "outcome": "complete", "payment": {"amount": {"value": 0}}}),
        Ok(ClaimAnswer::Adjudicated(RecordClaimResponse {
            outcome: ClaimOutcome::Denied,
            paid_amount: Cents::ZERO,
            adjustments: vec![],
            denial_reason: Some("the payer paid nothing".into()),
            reference: "fallback".into(),
        })),
    );
}

#[test]
fn answers_careflow_cannot_read_name_the_element() {
    check(
        json!({"resourceType": "OperationOutcome"}),
        Err(ClaimResponseError::NotClaimResponse),
    );
    check(
        json!({"resourceType": "ClaimResponse"}),
        Err(ClaimResponseError::Missing {
            element: "ClaimResponse.outcome",
            detail: "queued, complete, partial or error is required",
        }),
    );
    check(
        json!({"resourceType": "ClaimResponse", "outcome": "done"}),
        Err(ClaimResponseError::Invalid {
            element: "ClaimResponse.outcome",
            detail: "use queued, complete, partial or error",
        }),
    );
    check(
        json!({"resourceType": "ClaimResponse", "outcome": "complete", "payment": {"amount": {"value": 1.005}}}),
        Err(ClaimResponseError::Invalid {
            element: "ClaimResponse.payment.amount.value",
            detail: "use a decimal with at most two fraction digits",
        }),
    );
    assert_eq!(
        read_claim_response(
            &json!({"resourceType": "ClaimResponse", "outcome": "complete"}),
            &lines(),
            None
        ),
        Err(ClaimResponseError::Missing {
            element: "ClaimResponse.identifier",
            detail: "the payer's reference (an identifier or an id) is required",
        })
    );
}

#[test]
fn the_claim_answered_is_named_by_request() {
    assert_eq!(
        claim_id_of(&json!({"request": {"identifier": {"value": "V1-ACME"}}})).as_deref(),
        Some("V1-ACME")
    );
    assert_eq!(
        claim_id_of(&json!({"request": {"reference": "Claim/V2-ACME"}})).as_deref(),
        Some("V2-ACME")
    );
    assert_eq!(claim_id_of(&json!({"request": {}})), None);
}
