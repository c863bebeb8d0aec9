//! Given/when/then tests of stock movements, the reorder rule, the codec and the contract.

use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::aggregate::Aggregate;
use crate::codec::DomainEvent;
use crate::money::{Cents, Currency};
use crate::rejection::Rejection;
use crate::stream_id::{StreamIdError, validate_id};
use crate::testing::{
    assert_codec_round_trip, assert_contract_body, fixed_ctx, given, given_no_history,
};

// ---- fixtures: reorder point 10, reorder quantity 50 ----

fn define() -> DefineItem {
    DefineItem {
        name: "sterile gauze 4x4".into(),
        unit: "box".into(),
        facility: "MAIN".into(),
        reorder_point: 10,
        reorder_quantity: 50,
        vendor_id: "MEDSUP".into(),
        unit_cost: Cents(1_275),
        currency: Currency::USD,
    }
}

fn defined() -> Event {
    ItemDefined {
        name: "sterile gauze 4x4".into(),
        unit: "box".into(),
        facility: "MAIN".into(),
        reorder_point: 10,
        reorder_quantity: 50,
        vendor_id: "MEDSUP".into(),
        unit_cost: Cents(1_275),
        currency: Currency::USD,
    }
    .into()
}

fn received(quantity: u32) -> Event {
    StockReceived {
        quantity,
        reference: "R-1".into(),
    }
    .into()
}

fn consume(quantity: u32) -> ConsumeStock {
    ConsumeStock {
        quantity,
        reference: "V-1".into(),
    }
}

fn consumed(quantity: u32) -> Event {
    StockConsumed {
        quantity,
        reference: "V-1".into(),
    }
    .into()
}

fn requisition() -> String {
    requisition_id_for(fixed_ctx().command_id)
}

fn reorder(on_hand: i64) -> Event {
    ReorderPointReached {
        requisition_id: requisition(),
        on_hand,
        reorder_point: 10,
        reorder_quantity: 50,
        vendor_id: "MEDSUP".into(),
        unit_cost: Cents(1_275),
        currency: Currency::USD,
        facility: "MAIN".into(),
    }
    .into()
}

// ---- definition ----

#[test]
fn defining_starts_with_nothing_on_hand() {
    given_no_history::<InventoryItem>()
        .when(define())
        .then_expect([defined()])
        .then_state_matches(|s| {
            assert!(s.defined);
            assert_eq!(s.on_hand, 0);
            assert_eq!(s.reorder_point, 10);
            assert_eq!(s.open_replenishment, None);
        });
    given([defined()])
        .when(define())
        .then_rejects(Rejection::AlreadyDefined);
}

#[test]
fn definitions_are_validated() {
    let cases = [
        (
            DefineItem {
                reorder_quantity: 0,
                ..define()
            },
            Rejection::InvalidQuantity {
                field: "reorder_quantity",
            },
        ),
        (
            DefineItem {
                vendor_id: "MED SUP".into(),
                ..define()
            },
            Rejection::InvalidId {
                field: "vendor_id",
                reason: StreamIdError::IdCharacter(' '),
            },
        ),
        (
            DefineItem {
                unit_cost: Cents(-1),
                ..define()
            },
            Rejection::NegativeAmount { field: "unit_cost" },
        ),
        (
            DefineItem {
                name: "".into(),
                ..define()
            },
            Rejection::EmptyField { field: "name" },
        ),
    ];
    for (command, rejection) in cases {
        given_no_history::<InventoryItem>()
            .when(command)
            .then_rejects(rejection);
    }
}

#[test]
fn stock_needs_a_defined_item() {
    let commands: Vec<Command> = vec![
        consume(1).into(),
        ReceiveStock {
            quantity: 1,
            reference: "R".into(),
        }
        .into(),
        CountStock { quantity: 1 }.into(),
        CloseReplenishment {
            requisition_id: "RPL-1".into(),
        }
        .into(),
    ];
    for command in commands {
        given_no_history::<InventoryItem>()
            .when(command)
            .then_rejects(Rejection::ItemNotDefined);
    }
}

// ---- movements ----

#[test]
fn receiving_and_consuming_move_on_hand() {
    given([defined()])
        .when(ReceiveStock {
            quantity: 40,
            reference: "R-1".into(),
        })
        .then_expect([received(40)])
        .then_state_matches(|s| assert_eq!(s.on_hand, 40));
    given([defined(), received(40)])
        .when(consume(5))
        .then_expect([consumed(5)])
        .then_state_matches(|s| assert_eq!(s.on_hand, 35));
}

#[test]
fn the_whole_state_after_a_reorder() {
    given([defined(), received(12)])
        .when(consume(3))
        .then_state(State {
            defined: true,
            name: "sterile gauze 4x4".into(),
            unit: "box".into(),
            facility: "MAIN".into(),
            on_hand: 9,
            reorder_point: 10,
            reorder_quantity: 50,
            vendor_id: "MEDSUP".into(),
            unit_cost: Cents(1_275),
            currency: Currency::USD,
            open_replenishment: Some(requisition()),
        });
}

#[test]
fn quantities_must_be_at_least_one() {
    given([defined(), received(40)])
        .when(consume(0))
        .then_rejects(Rejection::InvalidQuantity { field: "quantity" });
    given([defined()])
        .when(ReceiveStock {
            quantity: 0,
            reference: "R".into(),
        })
        .then_rejects(Rejection::InvalidQuantity { field: "quantity" });
    given([defined()])
        .when(ConsumeStock {
            quantity: 1,
            reference: " ".into(),
        })
        .then_rejects(Rejection::EmptyField { field: "reference" });
}

#[test]
fn consumption_beyond_stock_is_recorded_as_a_shortfall() {
    given([defined(), received(3)])
        .when(consume(5))
        .then_expect([consumed(5)])
        .then_state_matches(|s| assert_eq!(s.on_hand, -2));
}

#[test]
fn a_count_sets_on_hand_and_reports_the_difference() {
    given([defined(), received(40)])
        .when(CountStock { quantity: 37 })
        .then_expect([StockCounted {
            quantity: 37,
            difference: -3,
        }
        .into()])
        .then_state_matches(|s| assert_eq!(s.on_hand, 37));
}

// ---- the reorder rule ----

#[test]
fn crossing_the_reorder_point_opens_a_replenishment() {
    given([defined(), received(12)])
        .when(consume(2))
        .then_expect([consumed(2), reorder(10)])
        .then_state_matches(|s| {
            assert_eq!(s.on_hand, 10);
            assert_eq!(s.open_replenishment, Some(requisition()));
        });
    given([defined(), received(12)])
        .when(consume(12))
        .then_expect([consumed(12), reorder(0)]);
}

#[test]
fn staying_above_or_already_below_does_not_reorder() {
    given([defined(), received(12)])
        .when(consume(1))
        .then_expect([consumed(1)]);
    given([defined(), received(8)])
        .when(consume(1))
        .then_expect([consumed(1)]);
    given([defined(), received(10)])
        .when(consume(1))
        .then_expect([consumed(1)]);
}

#[test]
fn one_replenishment_at_a_time() {
    let open = [
        defined(),
        received(12),
        consumed(2),
        reorder(10),
        received(20),
    ];
    given(open.clone())
        .when(consume(25))
        .then_expect([consumed(25)]);
    let mut closed = open.to_vec();
    closed.push(
        ReplenishmentClosed {
            requisition_id: requisition(),
        }
        .into(),
    );
    given(closed)
        .when(consume(25))
        .then_expect([consumed(25), reorder(5)]);
}

#[test]
fn a_count_below_the_point_also_reorders() {
    given([defined(), received(40)])
        .when(CountStock { quantity: 4 })
        .then_expect([
            StockCounted {
                quantity: 4,
                difference: -36,
            }
            .into(),
            reorder(4),
        ]);
}

#[test]
fn the_requisition_id_follows_the_command_id_and_the_id_rule() {
    let id = requisition_id_for(Uuid::from_u128(0xabc));
    assert_eq!(id, "RPL-00000000000000000000000000000abc");
    assert_eq!(validate_id(&id), Ok(()));
    let other_ctx = crate::context::Ctx {
        command_id: Uuid::from_u128(7),
        ..fixed_ctx()
    };
    let outcome = given([defined(), received(11)])
        .with_ctx(other_ctx)
        .when(consume(1));
    let Event::ReorderPointReached(e) = &outcome.events()[1] else {
        panic!("no reorder")
    };
    assert_eq!(e.requisition_id, requisition_id_for(Uuid::from_u128(7)));
}

#[test]
fn closing_a_replenishment_must_name_the_open_one() {
    let open = [defined(), received(12), consumed(2), reorder(10)];
    given(open.clone())
        .when(CloseReplenishment {
            requisition_id: requisition(),
        })
        .then_expect([ReplenishmentClosed {
            requisition_id: requisition(),
        }
        .into()])
        .then_state_matches(|s| assert_eq!(s.open_replenishment, None));
    given(open)
        .when(CloseReplenishment {
            requisition_id: "RPL-other".into(),
        })
        .then_rejects(Rejection::ReplenishmentMismatch {
            open: requisition(),
            requisition_id: "RPL-other".into(),
        });
    given([defined()])
        .when(CloseReplenishment {
            requisition_id: requisition(),
        })
        .then_rejects(Rejection::NoOpenReplenishment);
}

// ---- codec and contract ----

#[test]
fn every_event_type_round_trips_through_the_codec() {
    let events = vec![
        defined(),
        consumed(1),
        reorder(3),
        received(2),
        StockCounted {
            quantity: 1,
            difference: 0,
        }
        .into(),
        ReplenishmentClosed {
            requisition_id: "RPL-1".into(),
        }
        .into(),
    ];
    let mut types: Vec<&str> = events.iter().map(DomainEvent::event_type).collect();
    types.sort_unstable();
    let mut all = Event::EVENT_TYPES.to_vec();
    all.sort_unstable();
    assert_eq!(types, all);
    for event in &events {
        assert_codec_round_trip::<InventoryItem>(event);
    }
}

#[track_caller]
fn parse(body: serde_json::Value) -> Result<Command, Rejection> {
    InventoryItem::parse_command(body).map(|b| b.command)
}

#[test]
fn every_command_parses_from_its_contract_shape() {
    let cases = [
        (
            json!({"type": "DefineItem", "name": "sterile gauze 4x4", "unit": "box",
                   "facility": "MAIN", "reorder_point": 10, "reorder_quantity": 50,
                   "vendor_id": "MEDSUP", "unit_cost": "12.75"}),
            define().into(),
        ),
        (
            json!({"type": "ConsumeStock", "quantity": 5, "reference": "V-1"}),
            consume(5).into(),
        ),
        (
            json!({"type": "ReceiveStock", "quantity": 40, "reference": "R-1"}),
            ReceiveStock {
                quantity: 40,
                reference: "R-1".into(),
            }
            .into(),
        ),
        (
            json!({"type": "CountStock", "quantity": 0}),
            CountStock { quantity: 0 }.into(),
        ),
        (
            json!({"type": "CloseReplenishment", "requisition_id": "RPL-1"}),
            CloseReplenishment {
                requisition_id: "RPL-1".into(),
            }
            .into(),
        ),
    ];
    for (body, expected) in cases {
        assert_contract_body::<InventoryItem>(body, expected);
    }
}

#[test]
fn bodies_outside_the_contract_are_refused() {
    let refused = [
        json!({"type": "CountStock", "quantity": 3, "counted_by": "n1"}),
        json!({"type": "CountStock", "quantity": -3}),
        json!({"type": "ConsumeStock", "quantity": 1}),
        json!({"type": "DefineItem", "name": "g", "unit": "box", "facility": "MAIN",
               "reorder_point": 10, "reorder_quantity": 50, "vendor_id": "V",
               "unit_cost": 12.75}),
    ];
    for body in refused {
        let result = parse(body.clone());
        assert!(
            matches!(result, Err(Rejection::InvalidCommand { .. })),
            "{body} gave {result:?}"
        );
    }
}

#[test]
fn state_renders_the_pinned_fields() {
    let state = InventoryItem::replay(&[defined(), received(12), consumed(2), reorder(10)]);
    let json = serde_json::to_value(&state).unwrap();
    assert_eq!(json["on_hand"], json!(10));
    assert_eq!(json["reorder_point"], json!(10));
    assert_eq!(json["open_replenishment"], json!(requisition()));
    assert_eq!(json["unit_cost"], json!("12.75"));
    let snapshot: State = serde_json::from_value(json).unwrap();
    assert_eq!(snapshot, state);
    let fresh = serde_json::to_value(InventoryItem::replay(&[defined()])).unwrap();
    assert_eq!(fresh["open_replenishment"], json!(null));
}
