//! Property: for any sequence of PatientAccount commands (keeping the accepted ones), the
//! billing view agrees with the aggregate's own state, and its open items add up to the
//! balance.

use careflow_aggregates::patient_account::{
    ActivateAccount, ApplyAdjustment, CloseAccount, Command, ErasePersonalData, FlagSelfPay,
    Gender, HumanName, PaymentMethod, PostCharge, RecordPayment, RegisterPatient,
};
use careflow_aggregates::{Aggregate, Cents, Ctx, Currency, PatientAccount};
use chrono::{Duration, NaiveDate, SecondsFormat};
use proptest::prelude::*;
use uuid::Uuid;

use super::super::*;
use crate::testing::{EventLog, at, replay};

fn ids(prefix: &'static str) -> impl Strategy<Value = String> {
    (0..4u8).prop_map(move |n| format!("{prefix}{n}"))
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
        6 => (ids("C"), ids("V"), 0..4u32, 0..20_000i64).prop_map(|(id, visit, q, p)| {
            Command::from(PostCharge {
                charge_id: id, encounter_id: visit, code: "99213".into(),
                description: "visit".into(), quantity: q, unit_price: Cents(p),
                currency: Currency::USD,
            })
        }),
        5 => (ids("P"), 1..30_000i64).prop_map(|(id, a)| {
            Command::from(RecordPayment {
                payment_id: id, amount: Cents(a), method: PaymentMethod::Cash, payer: None,
                currency: Currency::USD,
            })
        }),
        3 => (ids("A"), -15_000..5_000i64).prop_map(|(id, a)| Command::from(ApplyAdjustment {
            adjustment_id: id, amount: Cents(a), reason: "adjust".into(), currency: Currency::USD,
        })),
        1 => Just(Command::from(CloseAccount {})),
        1 => Just(Command::from(ErasePersonalData { reason: "patient request".into() })),
    ]
}

fn charged_total(state: &careflow_aggregates::patient_account::State) -> i64 {
    state.charges.iter().map(|c| c.amount.0).sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn billing_agrees_with_the_account(
        steps in prop::collection::vec((command(), 0..200i64), 1..40),
    ) {
        let start = at("2025-01-01T08:00:00Z");
        let mut state = PatientAccount::initial_state();
        let mut log = EventLog::new();
        for (index, (command, day)) in steps.iter().enumerate() {
            // Business time jumps around, so FIFO order and log order differ.
            let occurred_at = start + Duration::days(*day);
            let ctx = Ctx::new(start + Duration::days(365), Uuid::from_u128(index as u128), "t")
                .occurred_at(occurred_at);
            let Ok(events) = PatientAccount::decide(&state, command, &ctx) else { continue };
            for event in events {
                state = PatientAccount::evolve(state, &event);
                let when = occurred_at.to_rfc3339_opts(SecondsFormat::Secs, true);
                log = log.push("MRN1", &when, event);
            }
        }

        let store = replay(&Billing, log.events());
        let account: Option<AccountRow> = load(&store, ACCOUNTS, "MRN1").unwrap();
        match account {
            None => prop_assert!(log.events().is_empty()),
            Some(account) => {
                prop_assert_eq!(account.balance, state.balance.into());
                prop_assert_eq!(account.charge_count, state.charges.len() as u64);
                prop_assert_eq!(account.payment_count, state.payments.len() as u64);
                prop_assert_eq!(account.adjustment_count, state.adjustments.len() as u64);
                prop_assert_eq!(account.version, log.events().len() as u64);
                prop_assert_eq!(account.currency, state.currency);
                let charged: i64 = state.charges.iter().map(|c| c.amount.0).sum();
                prop_assert_eq!(account.charged, Cents(charged).into());
            }
        }

        // Open items minus unapplied credit is the balance; every open item is positive and
        // no larger than its amount; items are oldest first.
        let receivables: Option<Receivables> = load(&store, RECEIVABLES, "MRN1").unwrap();
        let (open, credit) = receivables.as_ref().map_or((0, 0), |r| {
            (r.items.iter().map(|i| i.open.0).sum::<i64>(), r.unapplied_credit.0)
        });
        prop_assert_eq!(Cents(open - credit), state.balance);
        if let Some(receivables) = &receivables {
            prop_assert!(credit == 0 || receivables.items.is_empty());
            for item in &receivables.items {
                prop_assert!(item.open.is_positive() && item.open <= item.amount);
            }
            for pair in receivables.items.windows(2) {
                prop_assert!(
                    (pair[0].occurred_at, pair[0].position) < (pair[1].occurred_at, pair[1].position)
                );
            }
        }

        // Claim lines hold every charge once.
        let lines = store.table(CLAIM_LINES);
        prop_assert_eq!(lines.len(), state.charges.len());

        // Determinism: a second replay into a fresh store gives the same view.
        prop_assert_eq!(replay(&Billing, log.events()), store);

        // Analytics counts the same money, spread over days; audit counts every event.
        let analytics = replay(&crate::Analytics, log.events());
        let (mut charges, mut payments) = ((0u64, 0i64), (0u64, 0i64));
        for (_, day) in crate::load_prefix::<crate::analytics::DailyCounters>(
            &analytics, crate::analytics::DAILY, "",
        ).unwrap() {
            charges.0 += day.charges.count;
            charges.1 += i64::try_from(day.charges.amounts.values().map(|c| c.0).sum::<i128>()).unwrap();
            payments.0 += day.payments.count;
            payments.1 += i64::try_from(day.payments.amounts.values().map(|c| c.0).sum::<i128>()).unwrap();
        }
        let paid: i64 = state.payments.iter().map(|p| p.amount.0).sum();
        prop_assert_eq!(charges, (state.charges.len() as u64, charged_total(&state)));
        prop_assert_eq!(payments, (state.payments.len() as u64, paid));
        prop_assert_eq!(replay(&crate::Analytics, log.events()), analytics);
        let audit = replay(&crate::Audit, log.events());
        let indexed = audit.table(crate::audit::STREAMS);
        let count = indexed.get("patient_account-MRN1").map_or(0, |row| row["event_count"].as_u64().unwrap());
        prop_assert_eq!(count, log.events().len() as u64);
    }
}
