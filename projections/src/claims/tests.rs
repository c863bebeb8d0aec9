use careflow_aggregates::claim::{
    ClaimCreated, ClaimLine, ClaimOutcome, ClaimResponseRecorded, ClaimResubmitted, ClaimSubmitted,
    ClaimVoided, RemittanceAdjustment,
};
use careflow_aggregates::{Cents, Currency};
use serde_json::{Value, json};

use super::*;

/// As a claim stream stores it.
fn ev(event: impl Into<ClaimEvent>) -> ClaimEvent {
    event.into()
}
use crate::testing::{EventLog, assert_tables, replay};

fn created(payer: &str, total: i64) -> ClaimCreated {
    ClaimCreated {
        account_id: "MRN1".into(),
        encounter_id: "V1".into(),
        payer_id: payer.into(),
        lines: vec![ClaimLine {
            charge_id: "C1".into(),
            code: "99213".into(),
            quantity: 1,
            unit_price: Cents(total),
        }],
        currency: Currency::USD,
        total: Cents(total),
    }
}

fn response(outcome: ClaimOutcome, paid: i64, adjusted: i64, left: i64) -> ClaimResponseRecorded {
    ClaimResponseRecorded {
        outcome,
        paid_amount: Cents(paid),
        adjustments: if adjusted > 0 {
            vec![RemittanceAdjustment {
                reason_code: "CO-45".into(),
                amount: Cents(adjusted),
            }]
        } else {
            vec![]
        },
        adjusted: Cents(adjusted),
        patient_balance: Cents(left),
        denial_reason: (outcome == ClaimOutcome::Denied).then(|| "no authorisation".into()),
        reference: "CR".into(),
    }
}

/// Four claims: paid in part (ACME), denied (ACME), denied then resubmitted (BETA), void.
fn log() -> EventLog {
    EventLog::new()
        .push(
            "A-ACME",
            "2026-01-01T09:00:00Z",
            ev(created("ACME", 20_000)),
        )
        .push("A-ACME", "2026-01-01T09:00:00Z", ev(ClaimSubmitted {}))
        .push(
            "A-ACME",
            "2026-01-20T09:00:00Z",
            ev(response(ClaimOutcome::PartiallyPaid, 15_000, 3_000, 2_000)),
        )
        .push("B-ACME", "2026-02-01T09:00:00Z", ev(created("ACME", 5_000)))
        .push("B-ACME", "2026-02-01T10:00:00Z", ev(ClaimSubmitted {}))
        .push(
            "B-ACME",
            "2026-02-05T09:00:00Z",
            ev(response(ClaimOutcome::Denied, 0, 0, 5_000)),
        )
        .push("C-BETA", "2026-01-10T09:00:00Z", ev(created("BETA", 7_000)))
        .push("C-BETA", "2026-01-10T09:00:00Z", ev(ClaimSubmitted {}))
        .push(
            "C-BETA",
            "2026-01-15T09:00:00Z",
            ev(response(ClaimOutcome::Denied, 0, 0, 7_000)),
        )
        .push(
            "C-BETA",
            "2026-03-01T09:00:00Z",
            ev(ClaimResubmitted {
                lines: vec![],
                total: Cents(6_000),
                note: "corrected".into(),
            }),
        )
        .push("D-ACME", "2026-03-01T09:00:00Z", ev(created("ACME", 1_000)))
        .push(
            "D-ACME",
            "2026-03-02T09:00:00Z",
            ev(ClaimVoided {
                reason: "duplicate".into(),
            }),
        )
}

#[test]
fn each_claim_has_one_row_with_its_status_and_money() {
    let store = replay(&Claims, log().events());
    assert_tables(
        &store,
        &json!({"billing_claims": {
            "A-ACME": {"status": "partially_paid", "payer_id": "ACME", "total": "200.00",
                "paid": "150.00", "adjusted": "30.00", "patient_balance": "20.00",
                "submissions": 1, "version": 3},
            "B-ACME": {"status": "denied", "denial_reason": "no authorisation",
                "adjudicated_at": "2026-02-05T09:00:00Z"},
            "C-BETA": {"status": "submitted", "total": "60.00", "submissions": 2,
                "denial_reason": null, "first_submitted_at": "2026-01-10T09:00:00Z",
                "submitted_at": "2026-03-01T09:00:00Z"},
            "D-ACME": {"status": "void", "void_reason": "duplicate", "submissions": 0},
        }}),
    );
    assert_eq!(
        replay(&Claims, log().events()),
        store,
        "second replay differs"
    );
}

fn ids(rows: &[ClaimRow]) -> Vec<&str> {
    rows.iter().map(|r| r.claim_id.as_str()).collect()
}

#[test]
fn lists_filter_by_status_and_payer_and_the_queue_holds_open_denials() {
    let store = replay(&Claims, log().events());
    assert_eq!(
        ids(&claims(&store, None, None).unwrap()),
        ["A-ACME", "B-ACME", "C-BETA", "D-ACME"]
    );
    assert_eq!(
        ids(&claims(&store, None, Some("ACME")).unwrap()),
        ["A-ACME", "B-ACME", "D-ACME"]
    );
    assert_eq!(
        ids(&claims(&store, Some("submitted"), None).unwrap()),
        ["C-BETA"]
    );
    assert!(
        claims(&store, Some("paid"), Some("BETA"))
            .unwrap()
            .is_empty()
    );
    // C-BETA's denial was answered by a resubmission: only B-ACME waits.
    assert_eq!(ids(&denials(&store).unwrap()), ["B-ACME"]);
}

#[test]
fn outstanding_claims_age_per_payer_from_their_first_submission() {
    let store = replay(&Claims, log().events());
    let report = claim_aging(&store, "2026-03-12".parse().unwrap()).unwrap();
    let buckets = |b: &AgingBuckets| -> Value { serde_json::to_value(b).unwrap() };
    assert_eq!(report.payers.len(), 2);
    // B-ACME: submitted 2026-02-01, 39 days; A-ACME is settled, D-ACME void.
    assert_eq!(
        (report.payers[0].payer_id.as_str(), report.payers[0].claims),
        ("ACME", 1)
    );
    assert_eq!(
        buckets(&report.payers[0].buckets),
        json!({"days_0_30": "0.00", "days_31_60": "50.00", "days_61_90": "0.00",
            "days_91_120": "0.00", "days_over_120": "0.00", "total": "50.00"})
    );
    // C-BETA: first submitted 2026-01-10, 61 days, at its resubmitted total.
    assert_eq!(
        buckets(&report.payers[1].buckets),
        json!({"days_0_30": "0.00", "days_31_60": "0.00", "days_61_90": "60.00",
            "days_91_120": "0.00", "days_over_120": "0.00", "total": "60.00"})
    );
    assert_eq!(
        buckets(&report.totals[&Currency::USD])["total"],
        json!("110.00")
    );
}
