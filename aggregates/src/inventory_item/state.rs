//! InventoryItem state and `evolve`: rendered by `GET /v1/inventory-items/{item}` (`on_hand`,
//! `reorder_point`, `open_replenishment`) and snapshotted.

use serde::{Deserialize, Serialize};

use super::event::Event;
use crate::money::{Cents, Currency};

/// An inventory item. `defined` is false until `ItemDefined`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct State {
    pub defined: bool,
    pub name: String,
    pub unit: String,
    pub facility: String,
    /// Signed: consumption beyond the recorded stock shows as a negative number until a
    /// receipt or a count corrects it.
    pub on_hand: i64,
    pub reorder_point: u32,
    pub reorder_quantity: u32,
    pub vendor_id: String,
    pub unit_cost: Cents,
    pub currency: Currency,
    /// The requisition id of the replenishment in progress, if any.
    pub open_replenishment: Option<String>,
}

/// The state of an item with no history.
pub fn initial_state() -> State {
    State::default()
}

/// Applies one event. Stock arithmetic saturates: `decide` refuses what would overflow.
pub fn evolve(mut state: State, event: &Event) -> State {
    match event {
        Event::ItemDefined(e) => {
            state.defined = true;
            state.name.clone_from(&e.name);
            state.unit.clone_from(&e.unit);
            state.facility.clone_from(&e.facility);
            state.on_hand = 0;
            state.reorder_point = e.reorder_point;
            state.reorder_quantity = e.reorder_quantity;
            state.vendor_id.clone_from(&e.vendor_id);
            state.unit_cost = e.unit_cost;
            state.currency = e.currency;
        }
        Event::StockConsumed(e) => {
            state.on_hand = state.on_hand.saturating_sub(i64::from(e.quantity));
        }
        Event::ReorderPointReached(e) => {
            state.open_replenishment = Some(e.requisition_id.clone());
        }
        Event::StockReceived(e) => {
            state.on_hand = state.on_hand.saturating_add(i64::from(e.quantity));
        }
        Event::StockCounted(e) => state.on_hand = i64::from(e.quantity),
        Event::ReplenishmentClosed(_) => state.open_replenishment = None,
    }
    state
}
