//! Property: any command sequence leaves the encounter in a status reachable by the lifecycle,
//! never changes a cancelled or discharged encounter, and replays to the same state.

use proptest::prelude::*;

use super::*;
use crate::aggregate::Aggregate;
use crate::money::{Cents, Currency};
use crate::testing::{assert_codec_round_trip, fixed_ctx, fixed_now};

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::from(ScheduleEncounter {
            account_id: "MRN001".into(),
            facility: "MAIN".into(),
            department: "er".into(),
            encounter_class: EncounterClass::Emergency,
            scheduled_for: fixed_now(),
        })),
        Just(Command::from(CheckIn {})),
        (0..3u32, 0..10_000i64).prop_map(|(q, p)| Command::from(RecordProcedure {
            code: "99283".into(),
            description: "ed visit".into(),
            quantity: q,
            unit_price: Cents(p),
            currency: Currency::USD,
        })),
        (0..3u32).prop_map(|q| Command::from(RecordSupplyUsage {
            item_id: "GAUZE".into(),
            quantity: q,
        })),
        Just(Command::from(CompleteEncounter {})),
        Just(Command::from(Discharge {
            disposition: "home".into()
        })),
        Just(Command::from(CancelEncounter {
            reason: "left".into()
        })),
    ]
}

/// The statuses that may follow `from` (including itself, for procedures and supplies).
fn may_follow(from: Option<EncounterStatus>, to: Option<EncounterStatus>) -> bool {
    use EncounterStatus::*;
    matches!(
        (from, to),
        (None, None | Some(Scheduled))
            | (Some(Scheduled), Some(Scheduled | Arrived | Cancelled))
            | (Some(Arrived), Some(Arrived | Completed | Cancelled))
            | (Some(Completed), Some(Completed | Discharged))
            | (Some(Discharged), Some(Discharged))
            | (Some(Cancelled), Some(Cancelled))
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_lifecycle_only_moves_forward(commands in prop::collection::vec(command(), 1..30)) {
        let ctx = fixed_ctx();
        let mut state = initial_state();
        let mut history = Vec::new();
        for command in &commands {
            let before = state.clone();
            let Ok(events) = decide(&state, command, &ctx) else { continue };
            for event in &events {
                assert_codec_round_trip::<Encounter>(event);
                state = evolve(state, event);
            }
            history.extend(events);
            prop_assert!(may_follow(before.status, state.status), "{:?} -> {:?}", before.status, state.status);
            if matches!(before.status, Some(EncounterStatus::Cancelled | EncounterStatus::Discharged)) {
                prop_assert_eq!(&before, &state, "a closed encounter changed");
            }
            for (i, p) in state.procedures.iter().enumerate() {
                prop_assert_eq!(p.line as usize, i + 1);
                prop_assert!(p.quantity >= 1);
                prop_assert_eq!(p.amount.0, p.unit_price.0 * i64::from(p.quantity));
            }
            prop_assert!(state.supplies.iter().all(|s| s.quantity >= 1));
        }
        prop_assert_eq!(Encounter::replay(&history), state);
    }
}
