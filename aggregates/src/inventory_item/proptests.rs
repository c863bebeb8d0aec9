//! Property: on hand always equals the model (receipts − consumption, reset by counts), a
//! reorder fires exactly on a crossing with no replenishment open, and replay agrees.

use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::aggregate::Aggregate;
use crate::context::Ctx;
use crate::money::{Cents, Currency};
use crate::testing::{assert_codec_round_trip, fixed_now};

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        1 => (0..20u32, 0..3u32).prop_map(|(point, qty)| Command::from(DefineItem {
            name: "gauze".into(),
            unit: "box".into(),
            facility: "MAIN".into(),
            reorder_point: point,
            reorder_quantity: qty,
            vendor_id: "MEDSUP".into(),
            unit_cost: Cents(100),
            currency: Currency::USD,
        })),
        5 => (0..15u32).prop_map(|q| Command::from(ConsumeStock { quantity: q, reference: "V".into() })),
        4 => (0..30u32).prop_map(|q| Command::from(ReceiveStock { quantity: q, reference: "R".into() })),
        1 => (0..30u32).prop_map(|q| Command::from(CountStock { quantity: q })),
        2 => Just(()).prop_map(|()| Command::from(CloseReplenishment { requisition_id: String::new() })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn on_hand_matches_the_model(commands in prop::collection::vec(command(), 1..40)) {
        let mut state = initial_state();
        let mut history = Vec::new();
        let mut model_on_hand: i64 = 0;
        for (n, command) in commands.into_iter().enumerate() {
            let ctx = Ctx::new(fixed_now(), Uuid::from_u128(n as u128), "test");
            // Close the replenishment that is actually open, half the time a wrong one.
            let command = match command {
                Command::CloseReplenishment(_) => Command::from(CloseReplenishment {
                    requisition_id: match (&state.open_replenishment, n % 2) {
                        (Some(open), 0) => open.clone(),
                        _ => "RPL-none".into(),
                    },
                }),
                other => other,
            };
            let before = state.clone();
            let Ok(events) = decide(&state, &command, &ctx) else { continue };
            for event in &events {
                assert_codec_round_trip::<InventoryItem>(event);
                state = evolve(state, event);
            }
            history.extend(events.iter().cloned());
            match &command {
                Command::ConsumeStock(c) => model_on_hand -= i64::from(c.quantity),
                Command::ReceiveStock(c) => model_on_hand += i64::from(c.quantity),
                Command::CountStock(c) => model_on_hand = i64::from(c.quantity),
                Command::DefineItem(_) | Command::CloseReplenishment(_) => {}
            }
            prop_assert_eq!(state.on_hand, model_on_hand);

            let point = i64::from(before.reorder_point);
            let crossed = before.on_hand > point && state.on_hand <= point;
            let reordered = events.iter().any(|e| matches!(e, Event::ReorderPointReached(_)));
            let moves_stock = matches!(command, Command::ConsumeStock(_) | Command::CountStock(_));
            prop_assert_eq!(
                reordered,
                moves_stock && crossed && before.open_replenishment.is_none()
            );
            if reordered {
                prop_assert!(state.open_replenishment.is_some());
            }
        }
        prop_assert_eq!(InventoryItem::replay(&history), state);
    }
}
