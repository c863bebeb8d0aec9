//! InventoryItem: the stock of one supply item (`inventory_item-{item}`).
//!
//! It owns the item's definition (unit, facility, vendor, unit cost, reorder point and
//! quantity), its quantity on hand, and whether a replenishment purchase is open. When
//! consumption or a count takes the stock from above the reorder point to at or below it (and
//! no replenishment is open), it emits `ReorderPointReached` with a requisition id derived from
//! the command id; the process manager turns that into a `RequestPurchase` and, when the
//! purchase is closed or cancelled, sends `CloseReplenishment`. It never talks to Odoo.

mod command;
mod decide;
mod event;
mod state;

pub use command::{
    CloseReplenishment, Command, ConsumeStock, CountStock, DefineItem, ReceiveStock,
};
pub use decide::{decide, requisition_id_for};
pub use event::{
    Event, ItemDefined, ReorderPointReached, ReplenishmentClosed, StockConsumed, StockCounted,
    StockReceived,
};
pub use state::{State, evolve, initial_state};

use crate::aggregate::Aggregate;
use crate::context::Ctx;
use crate::rejection::Rejection;

/// The InventoryItem aggregate (a marker type for [`Aggregate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InventoryItem;

impl Aggregate for InventoryItem {
    const KIND: &'static str = "inventory_item";
    const SNAPSHOT_VERSION: u32 = 1;

    type State = State;
    type Command = Command;
    type Event = Event;

    fn initial_state() -> State {
        initial_state()
    }

    fn decide(state: &State, command: &Command, ctx: &Ctx) -> Result<Vec<Event>, Rejection> {
        decide(state, command, ctx)
    }

    fn evolve(state: State, event: &Event) -> State {
        evolve(state, event)
    }

    fn command_name(command: &Command) -> &'static str {
        command.name()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
