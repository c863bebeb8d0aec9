//! Given/when/then tests of the Claim rules, its codec and its contract.

use serde_json::json;

use super::*;
use crate::aggregate::Aggregate;
use crate::codec::DomainEvent;
use crate::money::{Cents, Currency};
use crate::rejection::Rejection;
use crate::testing::{assert_codec_round_trip, assert_contract_body, given, given_no_history};

// ---- fixtures: two lines, 150.00 + 2 × 25.00 = 200.00, to payer ACME ----

fn lines() -> Vec<ClaimLine> {
    vec![
        ClaimLine {
            charge_id: "V1-1".into(),
            code: "99213".into(),
            quantity: 1,
            unit_price: Cents(15_000),
        },
        ClaimLine {
            charge_id: "V1-2".into(),
            code: "85025".into(),
            quantity: 2,
            unit_price: Cents(2_500),
        },
    ]
}

fn create() -> CreateClaim {
    CreateClaim {
        account_id: "MRN-1".into(),
        encounter_id: "V1".into(),
        payer_id: "ACME".into(),
        lines: lines(),
        currency: Currency::USD,
    }
}

fn created() -> Event {
    ClaimCreated {
        account_id: "MRN-1".into(),
        encounter_id: "V1".into(),
        payer_id: "ACME".into(),
        lines: lines(),
        currency: Currency::USD,
        total: Cents(20_000),
    }
    .into()
}

fn submitted() -> Event {
    ClaimSubmitted {}.into()
}

fn adjustment(code: &str, cents: i64) -> RemittanceAdjustment {
    RemittanceAdjustment {
        reason_code: code.into(),
        amount: Cents(cents),
    }
}

fn response(
    outcome: ClaimOutcome,
    paid: i64,
    adjustments: Vec<RemittanceAdjustment>,
) -> RecordClaimResponse {
    RecordClaimResponse {
        outcome,
        paid_amount: Cents(paid),
        adjustments,
        denial_reason: (outcome == ClaimOutcome::Denied).then(|| "not covered".to_owned()),
        reference: "CR-1".into(),
    }
}

fn denied() -> Event {
    ClaimResponseRecorded {
        outcome: ClaimOutcome::Denied,
        paid_amount: Cents::ZERO,
        adjustments: vec![],
        adjusted: Cents::ZERO,
        patient_balance: Cents(20_000),
        denial_reason: Some("not covered".into()),
        reference: "CR-1".into(),
    }
    .into()
}

// ---- lifecycle ----

#[test]
fn a_claim_is_drafted_with_its_total_then_submitted() {
    given_no_history::<Claim>()
        .when(create())
        .then_expect([created()])
        .then_state_matches(|s| {
            assert_eq!(s.status, Some(ClaimStatus::Draft));
            assert_eq!(s.total, Cents(20_000));
        });
    given([created()])
        .when(create())
        .then_rejects(Rejection::ClaimAlreadyCreated);
    given([created()])
        .when(SubmitClaim {})
        .then_expect([submitted()])
        .then_state_matches(|s| {
            assert_eq!(s.status, Some(ClaimStatus::Submitted));
            assert_eq!(s.submissions, 1);
        });
}

#[test]
fn a_full_payment_with_a_contractual_adjustment_leaves_the_patient_the_rest() {
    given([created(), submitted()])
        .when(response(
            ClaimOutcome::Paid,
            15_000,
            vec![adjustment("CO-45", 3_000)],
        ))
        .then_expect([ClaimResponseRecorded {
            outcome: ClaimOutcome::Paid,
            paid_amount: Cents(15_000),
            adjustments: vec![adjustment("CO-45", 3_000)],
            adjusted: Cents(3_000),
            patient_balance: Cents(2_000),
            denial_reason: None,
            reference: "CR-1".into(),
        }
        .into()])
        .then_state_matches(|s| {
            assert_eq!(s.status, Some(ClaimStatus::Paid));
            assert_eq!(
                (s.paid, s.adjusted, s.patient_balance),
                (Cents(15_000), Cents(3_000), Cents(2_000))
            );
        });
}

#[test]
fn a_remittance_that_pays_more_than_was_claimed_is_refused() {
    given([created(), submitted()])
        .when(response(
            ClaimOutcome::Paid,
            19_000,
            vec![adjustment("CO-45", 1_001)],
        ))
        .then_rejects(Rejection::RemittanceExceedsClaim {
            claimed: Cents(20_000),
        });
    given([created(), submitted()])
        .when(response(ClaimOutcome::Paid, 20_001, vec![]))
        .then_rejects_with_status(409);
}

#[test]
fn a_response_for_an_unknown_claim_is_refused() {
    given_no_history::<Claim>()
        .when(response(ClaimOutcome::Paid, 100, vec![]))
        .then_rejects(Rejection::ClaimNotCreated);
}

#[test]
fn a_response_must_agree_with_itself() {
    let mut paying_denial = response(ClaimOutcome::Denied, 100, vec![]);
    paying_denial.reference = "CR-9".into();
    given([created(), submitted()])
        .when(paying_denial)
        .then_rejects_with_status(422);
    given([created(), submitted()])
        .when(response(ClaimOutcome::PartiallyPaid, 0, vec![]))
        .then_rejects_with_status(422);
    let mut reasonless = response(ClaimOutcome::Denied, 0, vec![]);
    reasonless.denial_reason = None;
    given([created(), submitted()])
        .when(reasonless)
        .then_rejects(Rejection::EmptyField {
            field: "denial_reason",
        });
    given([created(), submitted()])
        .when(response(
            ClaimOutcome::Paid,
            100,
            vec![adjustment("CO-45", 0)],
        ))
        .then_rejects(Rejection::NonPositiveAmount {
            field: "adjustments.amount",
        });
}

#[test]
fn the_same_response_twice_is_a_no_op_and_a_different_one_is_refused() {
    given([created(), submitted(), denied()])
        .when(response(ClaimOutcome::Denied, 0, vec![]))
        .then_no_events();
    given([created(), submitted(), denied()])
        .when(response(ClaimOutcome::Paid, 100, vec![]))
        .then_rejects(Rejection::InvalidTransition {
            aggregate: "claim",
            status: "denied",
            command: "RecordClaimResponse",
        });
}

#[test]
fn a_denied_claim_is_resubmitted_with_corrected_lines_and_then_paid() {
    let corrected = vec![ClaimLine {
        charge_id: "V1-1".into(),
        code: "99214".into(),
        quantity: 1,
        unit_price: Cents(18_000),
    }];
    let scenario = given([created(), submitted(), denied()])
        .when(ResubmitClaim {
            lines: Some(corrected.clone()),
            note: "corrected the visit code".into(),
        })
        .then_expect([ClaimResubmitted {
            lines: corrected.clone(),
            total: Cents(18_000),
            note: "corrected the visit code".into(),
        }
        .into()])
        .then_state_matches(|s| {
            assert_eq!(s.status, Some(ClaimStatus::Submitted));
            assert_eq!(s.submissions, 2);
            assert_eq!(s.denial_reason, None);
        });
    let mut history = vec![created(), submitted(), denied()];
    history.extend(scenario.events().iter().cloned());
    let mut paid = response(ClaimOutcome::Paid, 18_000, vec![]);
    paid.reference = "CR-2".into();
    given(history).when(paid).then_state_matches(|s| {
        assert_eq!(s.status, Some(ClaimStatus::Paid));
        assert_eq!(s.patient_balance, Cents::ZERO);
    });
}

#[test]
fn only_a_claim_no_money_moved_for_can_be_voided() {
    let void = || VoidClaim {
        reason: "duplicate of C-2".into(),
    };
    for history in [
        vec![created()],
        vec![created(), submitted()],
        vec![created(), submitted(), denied()],
    ] {
        given(history)
            .when(void())
            .then_state_matches(|s| assert_eq!(s.status, Some(ClaimStatus::Void)));
    }
    let paid: Event = ClaimResponseRecorded {
        outcome: ClaimOutcome::Paid,
        paid_amount: Cents(20_000),
        adjustments: vec![],
        adjusted: Cents::ZERO,
        patient_balance: Cents::ZERO,
        denial_reason: None,
        reference: "CR-1".into(),
    }
    .into();
    given([created(), submitted(), paid])
        .when(void())
        .then_rejects(Rejection::InvalidTransition {
            aggregate: "claim",
            status: "paid",
            command: "VoidClaim",
        });
}

#[test]
fn claim_lines_are_validated() {
    let mut empty = create();
    empty.lines.clear();
    given_no_history::<Claim>()
        .when(empty)
        .then_rejects(Rejection::EmptyField { field: "lines" });
    let mut twice = create();
    twice.lines[1].charge_id = "V1-1".into();
    given_no_history::<Claim>()
        .when(twice)
        .then_rejects(Rejection::DuplicateLine {
            item_id: "V1-1".into(),
        });
    let mut negative = create();
    negative.lines[0].unit_price = Cents(-1);
    given_no_history::<Claim>()
        .when(negative)
        .then_rejects(Rejection::NegativeAmount {
            field: "lines.unit_price",
        });
}

// ---- codec and contract ----

#[test]
fn every_event_round_trips() {
    for event in [created(), submitted(), denied()] {
        assert_codec_round_trip::<Claim>(&event);
    }
    assert_eq!(Event::EVENT_TYPES.len(), 5);
}

#[test]
fn the_pinned_body_parses() {
    assert_contract_body::<Claim>(
        json!({
            "type": "RecordClaimResponse", "outcome": "partially_paid", "paid_amount": "120.00",
            "adjustments": [{"reason_code": "CO-45", "amount": "30.00"}], "reference": "CR-7"
        }),
        Command::RecordClaimResponse(RecordClaimResponse {
            outcome: ClaimOutcome::PartiallyPaid,
            paid_amount: Cents(12_000),
            adjustments: vec![adjustment("CO-45", 3_000)],
            denial_reason: None,
            reference: "CR-7".into(),
        }),
    );
    assert_eq!(Claim::KIND, "claim");
}
