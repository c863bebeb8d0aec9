//! Property: folding any sequence of commands (keeping the accepted ones) keeps the account's
//! invariants, agrees with a trivial model, and replays to the same state.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use proptest::prelude::*;

use super::*;
use crate::aggregate::Aggregate;
use crate::money::{Cents, Currency};
use crate::testing::{assert_codec_round_trip, fixed_ctx};

fn ids(prefix: &'static str) -> impl Strategy<Value = String> {
    (0..4u8).prop_map(move |n| format!("{prefix}{n}"))
}

fn currency() -> impl Strategy<Value = Currency> {
    prop_oneof![9 => Just(Currency::USD), 1 => Just(Currency::parse("EUR").unwrap())]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        2 => Just(Command::from(RegisterPatient {
            name: HumanName { family: "Doe".into(), given: vec!["Jane".into()] },
            birth_date: NaiveDate::from_ymd_opt(1980, 4, 12).unwrap(),
            gender: Gender::Female,
            facility: "MAIN".into(),
            coverage: None,
            address: None,
        })),
        1 => Just(Command::from(ActivateAccount {})),
        1 => Just(Command::from(FlagSelfPay { reason: "no coverage".into() })),
        1 => any::<bool>().prop_map(|eligible| Command::from(RecordEligibility {
            payer_id: "ACME".into(), eligible, reference: None,
        })),
        1 => Just(Command::from(UpdateDemographics {
            facility: Some("EAST".into()), ..Default::default()
        })),
        6 => (ids("C"), 0..4u32, -100..20_000i64, currency()).prop_map(|(id, q, p, c)| {
            Command::from(PostCharge {
                charge_id: id, encounter_id: "V-1".into(), code: "99213".into(),
                description: "visit".into(), quantity: q, unit_price: Cents(p), currency: c,
            })
        }),
        5 => (ids("P"), -100..30_000i64, currency()).prop_map(|(id, a, c)| {
            Command::from(RecordPayment {
                payment_id: id, amount: Cents(a), method: PaymentMethod::Cash, payer: None,
                currency: c,
            })
        }),
        3 => (ids("A"), -5_000..5_000i64).prop_map(|(id, a)| Command::from(ApplyAdjustment {
            adjustment_id: id, amount: Cents(a), reason: "adjust".into(), currency: Currency::USD,
        })),
        2 => Just(Command::from(CloseAccount {})),
        1 => Just(Command::from(ErasePersonalData { reason: "patient request".into() })),
    ]
}

/// The trivial model: amounts by id, plus the lifecycle flags.
#[derive(Debug, Default)]
struct Model {
    registered: bool,
    closed: bool,
    currency: Option<Currency>,
    charges: BTreeMap<String, i64>,
    payments: BTreeMap<String, i64>,
    adjustments: BTreeMap<String, i64>,
}

impl Model {
    fn balance(&self) -> i64 {
        self.charges.values().sum::<i64>() - self.payments.values().sum::<i64>()
            + self.adjustments.values().sum::<i64>()
    }

    fn open(&self) -> bool {
        self.registered && !self.closed
    }

    fn currency_ok(&self, currency: Currency) -> bool {
        self.currency.is_none_or(|c| c == currency)
    }

    /// Whether the model expects a money command to be accepted, and applies it if so.
    fn expect(&mut self, command: &Command) -> Option<bool> {
        match command {
            Command::PostCharge(c) => {
                let ok = self.open()
                    && c.quantity >= 1
                    && c.unit_price.0 >= 0
                    && self.currency_ok(c.currency)
                    && !self.charges.contains_key(&c.charge_id);
                if ok {
                    self.currency = Some(c.currency);
                    self.charges
                        .insert(c.charge_id.clone(), c.unit_price.0 * i64::from(c.quantity));
                }
                Some(ok)
            }
            Command::RecordPayment(c) => {
                let ok = self.open()
                    && c.amount.0 > 0
                    && self.currency_ok(c.currency)
                    && !self.payments.contains_key(&c.payment_id)
                    && c.amount.0 <= self.balance();
                if ok {
                    self.currency = Some(c.currency);
                    self.payments.insert(c.payment_id.clone(), c.amount.0);
                }
                Some(ok)
            }
            Command::ApplyAdjustment(c) => {
                let ok = self.open()
                    && c.amount.0 != 0
                    && self.currency_ok(c.currency)
                    && !self.adjustments.contains_key(&c.adjustment_id);
                if ok {
                    self.currency = Some(c.currency);
                    self.adjustments.insert(c.adjustment_id.clone(), c.amount.0);
                }
                Some(ok)
            }
            Command::CloseAccount(_) => {
                let ok = self.open() && self.balance() == 0;
                self.closed |= ok;
                Some(ok)
            }
            Command::RegisterPatient(_) => {
                let ok = !self.registered;
                self.registered = true;
                Some(ok)
            }
            _ => None,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn accepted_commands_keep_the_account_consistent(commands in prop::collection::vec(command(), 1..40)) {
        let ctx = fixed_ctx();
        let mut state = initial_state();
        let mut history: Vec<Event> = Vec::new();
        let mut model = Model::default();
        for command in &commands {
            let result = decide(&state, command, &ctx);
            if let Some(expected) = model.expect(command) {
                prop_assert_eq!(result.is_ok(), expected, "{:?} gave {:?}", command, result);
            }
            let Ok(events) = result else { continue };
            for event in &events {
                assert_codec_round_trip::<PatientAccount>(event);
                state = evolve(state, event);
            }
            history.extend(events);

            prop_assert_eq!(state.balance, Cents(model.balance()));
            prop_assert_eq!(state.charges.len(), model.charges.len());
            prop_assert_eq!(state.payments.len(), model.payments.len());
            prop_assert_eq!(state.adjustments.len(), model.adjustments.len());
            if state.status == Some(AccountStatus::Closed) {
                prop_assert_eq!(state.balance, Cents::ZERO);
            }
        }
        prop_assert_eq!(PatientAccount::replay(&history), state.clone());
        let snapshot: State = serde_json::from_value(serde_json::to_value(&state).unwrap()).unwrap();
        prop_assert_eq!(snapshot, state);
    }
}

/// Folds `command` into `state` when accepted.
fn apply(state: State, command: &Command) -> State {
    match decide(&state, command, &fixed_ctx()) {
        Ok(events) => events.iter().fold(state, evolve),
        Err(_) => state,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any two accounts, any history each, then `A` merged into `B` as the shell and the
    /// `merges` process manager do it: the merge is refused as a whole, or the sum of the two
    /// balances is what it was, `A` holds nothing and refuses every later command.
    #[test]
    fn a_merge_never_changes_the_sum_of_balances(
        first in prop::collection::vec(command(), 0..25),
        second in prop::collection::vec(command(), 0..25),
        later in command(),
    ) {
        let ctx = fixed_ctx();
        let merged = first.iter().fold(initial_state(), apply);
        let survivor = second.iter().fold(initial_state(), apply);
        let before = merged.balance.0 + survivor.balance.0;
        let merge = Command::from(MergePatient { into: "MRN-B".into(), reason: "duplicate".into() });
        let checked = check_merge("MRN-A", &merged, "MRN-B", &survivor);
        let decided = checked.clone().and_then(|()| decide(&merged, &merge, &ctx));
        let Ok(events) = decided else {
            return Ok(());
        };
        let [Event::PatientMerged(patient_merged)] = events.as_slice() else {
            panic!("a merge records one PatientMerged: {events:?}");
        };
        let absorb = Command::from(AbsorbMergedAccount {
            from: "MRN-A".into(),
            reason: patient_merged.reason.clone(),
            moved: patient_merged.moved.clone(),
        });
        let merged_after = events.iter().fold(merged.clone(), evolve);
        let absorbed = decide(&survivor, &absorb, &ctx);
        // What the shell checked before the merge is what the survivor checks on arrival.
        prop_assert!(absorbed.is_ok(), "checked {:?} but the survivor refused: {:?}", checked, absorbed);
        let survivor_after = absorbed.unwrap().iter().fold(survivor.clone(), evolve);
        prop_assert_eq!(merged_after.balance.0 + survivor_after.balance.0, before);
        prop_assert_eq!(merged_after.balance, Cents::ZERO);
        prop_assert_eq!(merged_after.status, Some(AccountStatus::Merged));
        prop_assert_eq!(
            survivor_after.charges.len(),
            survivor.charges.len() + merged.charges.len()
        );
        // A redelivered absorb changes nothing.
        prop_assert_eq!(decide(&survivor_after, &absorb, &ctx), Ok(vec![]));
        let refused = decide(&merged_after, &later, &ctx);
        if !matches!(later, Command::ErasePersonalData(_)) {
            prop_assert!(refused.is_err(), "{:?} was accepted after the merge", later);
        }
    }
}
