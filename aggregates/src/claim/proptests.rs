//! Property: whatever the payer answers and in whatever order commands come, an adjudicated
//! claim's paid + adjusted + patient balance equals its total, none of them negative, and the
//! history replays to the same state.

use proptest::prelude::*;

use super::*;
use crate::aggregate::Aggregate;
use crate::money::{Cents, Currency};
use crate::testing::fixed_ctx;

fn line(n: u8) -> impl Strategy<Value = ClaimLine> {
    (1u32..5, 0i64..50_000).prop_map(move |(quantity, price)| ClaimLine {
        charge_id: format!("C{n}"),
        code: "99213".into(),
        quantity,
        unit_price: Cents(price),
    })
}

fn lines() -> impl Strategy<Value = Vec<ClaimLine>> {
    (line(1), prop::option::of(line(2)))
        .prop_map(|(first, second)| std::iter::once(first).chain(second).collect())
}

fn outcome() -> impl Strategy<Value = ClaimOutcome> {
    prop::sample::select(vec![
        ClaimOutcome::Paid,
        ClaimOutcome::PartiallyPaid,
        ClaimOutcome::Denied,
    ])
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        lines().prop_map(|lines| Command::from(CreateClaim {
            account_id: "MRN-1".into(),
            encounter_id: "V1".into(),
            payer_id: "ACME".into(),
            lines,
            currency: Currency::USD,
        })),
        Just(Command::from(SubmitClaim {})),
        (
            outcome(),
            0i64..250_000,
            prop::collection::vec(1i64..100_000, 0..3),
            0u8..3
        )
            .prop_map(|(outcome, paid, adjustments, reference)| Command::from(
                RecordClaimResponse {
                    outcome,
                    paid_amount: Cents(paid),
                    adjustments: adjustments
                        .into_iter()
                        .map(|amount| RemittanceAdjustment {
                            reason_code: "CO-45".into(),
                            amount: Cents(amount),
                        })
                        .collect(),
                    denial_reason: Some("not covered".into()),
                    reference: format!("CR-{reference}"),
                }
            )),
        prop::option::of(lines()).prop_map(|lines| Command::from(ResubmitClaim {
            lines,
            note: "corrected".into(),
        })),
        Just(Command::from(VoidClaim {
            reason: "withdrawn".into(),
        })),
    ]
}

proptest! {
    #[test]
    fn an_adjudicated_claim_always_adds_up(commands in prop::collection::vec(command(), 1..12)) {
        let ctx = fixed_ctx();
        let mut state = Claim::initial_state();
        let mut history = Vec::new();
        for command in &commands {
            if let Ok(events) = Claim::decide(&state, command, &ctx) {
                for event in events {
                    state = Claim::evolve(state, &event);
                    history.push(event);
                }
            }
            if state.status.is_some_and(ClaimStatus::is_adjudicated) {
                prop_assert!(!state.paid.is_negative());
                prop_assert!(!state.adjusted.is_negative());
                prop_assert!(!state.patient_balance.is_negative());
                let settled = state.paid.0 + state.adjusted.0 + state.patient_balance.0;
                prop_assert_eq!(settled, state.total.0);
            }
        }
        let replayed = history.iter().fold(Claim::initial_state(), Claim::evolve);
        prop_assert_eq!(replayed, state);
    }
}
