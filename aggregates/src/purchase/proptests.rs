//! Property: any command sequence keeps received ≤ ordered on every line, never lets the
//! requester approve, keeps the status consistent with the receipts, and replays to the same
//! state.

use proptest::prelude::*;

use super::*;
use crate::aggregate::Aggregate;
use crate::money::{Cents, Currency};
use crate::testing::{assert_codec_round_trip, fixed_ctx};

fn person() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["alice", "Alice", "bob", "carol"]).prop_map(String::from)
}

fn item() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["A", "B", "C"]).prop_map(String::from)
}

/// A generated step: a fixed command, or one built from the state when it runs (so sequences
/// reach full receipt and an exact bill often enough to exercise matching and closing).
#[derive(Debug, Clone)]
enum Step {
    Fixed(Command),
    ReceiveOutstanding(u8),
    BillWhatWasOrdered,
}

impl Step {
    fn command(&self, state: &State) -> Command {
        match self {
            Step::Fixed(command) => command.clone(),
            Step::ReceiveOutstanding(n) => Command::from(ReceiveGoods {
                receipt_id: format!("R{n}"),
                lines: state
                    .lines
                    .iter()
                    .filter(|l| l.received < l.quantity)
                    .map(|l| ReceiptLine {
                        item_id: l.item_id.clone(),
                        quantity: l.quantity - l.received,
                    })
                    .collect(),
            }),
            Step::BillWhatWasOrdered => Command::from(MatchVendorBill {
                bill_id: "B2".into(),
                lines: state
                    .lines
                    .iter()
                    .map(|l| BillLine {
                        item_id: l.item_id.clone(),
                        quantity: l.quantity,
                        unit_price: l.unit_price,
                    })
                    .collect(),
                currency: Currency::USD,
            }),
        }
    }
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => command().prop_map(Step::Fixed),
        2 => (0..4u8).prop_map(Step::ReceiveOutstanding),
        2 => Just(Step::BillWhatWasOrdered),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        1 => (person(), 1..6u32, 0..4u32).prop_map(|(requester, qa, qb)| {
            let mut lines = vec![RequestLine { item_id: "A".into(), quantity: qa, unit_price: Cents(100) }];
            if qb > 0 {
                lines.push(RequestLine { item_id: "B".into(), quantity: qb, unit_price: Cents(250) });
            }
            Command::from(RequestPurchase {
                requester, facility: "MAIN".into(), vendor_id: "V".into(), lines,
                reason: "restock".into(), approval_deadline: None, currency: Currency::USD,
            })
        }),
        3 => person().prop_map(|approver| Command::from(ApprovePurchase { approver })),
        1 => person().prop_map(|approver| Command::from(RejectPurchase { approver, reason: "no".into() })),
        1 => Just(Command::from(EscalateApproval {})),
        3 => Just(Command::from(RecordPurchaseOrder { odoo_order_ref: "P1".into() })),
        5 => ((0..4u8), prop::collection::vec((item(), 0..5u32), 1..3)).prop_map(|(n, lines)| {
            Command::from(ReceiveGoods {
                receipt_id: format!("R{n}"),
                lines: lines.into_iter().map(|(item_id, quantity)| ReceiptLine { item_id, quantity }).collect(),
            })
        }),
        3 => prop::collection::vec((item(), 1..6u32, prop::sample::select(vec![100i64, 250, 300])), 1..3)
            .prop_map(|lines| Command::from(MatchVendorBill {
                bill_id: "B1".into(),
                lines: lines.into_iter().map(|(item_id, quantity, p)| BillLine { item_id, quantity, unit_price: Cents(p) }).collect(),
                currency: Currency::USD,
            })),
        1 => Just(Command::from(ClosePurchase {})),
        1 => Just(Command::from(CancelPurchase { reason: "stop".into() })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn receipts_approvals_and_status_stay_consistent(steps in prop::collection::vec(step(), 1..40)) {
        let ctx = fixed_ctx();
        let mut state = initial_state();
        let mut history = Vec::new();
        let mut model_received: std::collections::BTreeMap<String, u32> = Default::default();
        for step in &steps {
            let command = &step.command(&state);
            let Ok(events) = decide(&state, command, &ctx) else { continue };
            for event in &events {
                assert_codec_round_trip::<PurchaseWorkflow>(event);
                state = evolve(state, event);
            }
            history.extend(events);
            if let Command::ReceiveGoods(c) = command {
                for line in &c.lines {
                    *model_received.entry(line.item_id.clone()).or_default() += line.quantity;
                }
            }

            for line in &state.lines {
                prop_assert!(line.received <= line.quantity, "{:?}", line);
                prop_assert_eq!(line.received, model_received.get(&line.item_id).copied().unwrap_or(0));
            }
            prop_assert!(model_received.keys().all(|item| state.line(item).is_some()));
            if let Some(approver) = &state.approver {
                prop_assert!(!same_person(approver, &state.requester));
            }
            match state.status {
                Some(PurchaseStatus::Received | PurchaseStatus::Matched) => prop_assert!(state.fully_received()),
                Some(PurchaseStatus::PartiallyReceived) => prop_assert!(!state.fully_received()),
                _ => {}
            }
            if state.status == Some(PurchaseStatus::Matched) {
                prop_assert!(state.bills.iter().any(|b| b.matched));
            }
        }
        prop_assert_eq!(PurchaseWorkflow::replay(&history), state);
    }
}
