//! InventoryItem `decide`: stock movements and the reorder rule.
//!
//! The reorder rule: a consumption or a count that takes on hand from *above* the reorder point
//! to *at or below* it emits `ReorderPointReached`, unless a replenishment is already open (one
//! purchase at a time per item; the next crossing after `CloseReplenishment` opens another).

use uuid::Uuid;

use super::command::{
    CloseReplenishment, Command, ConsumeStock, CountStock, DefineItem, ReceiveStock,
};
use super::event::{
    Event, ItemDefined, ReorderPointReached, ReplenishmentClosed, StockConsumed, StockCounted,
    StockReceived,
};
use super::state::State;
use crate::context::Ctx;
use crate::field::{self, SHORT_TEXT};
use crate::rejection::Rejection;

/// The requisition id of the replenishment opened by command `command_id`: deterministic, so a
/// redelivered command opens the same purchase, and within the id rule (`RPL-` + 32 hex).
pub fn requisition_id_for(command_id: Uuid) -> String {
    format!("RPL-{}", command_id.simple())
}

/// Decides a command against an inventory item.
///
/// # Errors
/// A [`Rejection`] (409 or 422); nothing is appended.
pub fn decide(state: &State, command: &Command, ctx: &Ctx) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::DefineItem(c) => define(state, c),
        Command::ConsumeStock(c) => consume(state, c, ctx),
        Command::ReceiveStock(c) => receive(state, c),
        Command::CountStock(c) => count(state, c, ctx),
        Command::CloseReplenishment(c) => close_replenishment(state, c),
    }
}

fn require_defined(state: &State) -> Result<(), Rejection> {
    if !state.defined {
        return Err(Rejection::ItemNotDefined);
    }
    Ok(())
}

fn define(state: &State, c: &DefineItem) -> Result<Vec<Event>, Rejection> {
    field::text("name", &c.name, SHORT_TEXT)?;
    field::text("unit", &c.unit, SHORT_TEXT)?;
    field::text("facility", &c.facility, SHORT_TEXT)?;
    field::quantity("reorder_quantity", c.reorder_quantity)?;
    field::id("vendor_id", &c.vendor_id)?;
    field::non_negative("unit_cost", c.unit_cost)?;
    if state.defined {
        return Err(Rejection::AlreadyDefined);
    }
    Ok(vec![
        ItemDefined {
            name: c.name.clone(),
            unit: c.unit.clone(),
            facility: c.facility.clone(),
            reorder_point: c.reorder_point,
            reorder_quantity: c.reorder_quantity,
            vendor_id: c.vendor_id.clone(),
            unit_cost: c.unit_cost,
            currency: c.currency,
        }
        .into(),
    ])
}

/// `ReorderPointReached` when on hand moves from above the reorder point to at or below it and
/// no replenishment is open.
fn reorder_if_crossed(state: &State, on_hand_after: i64, ctx: &Ctx) -> Option<Event> {
    let point = i64::from(state.reorder_point);
    let crossed = state.on_hand > point && on_hand_after <= point;
    if !crossed || state.open_replenishment.is_some() {
        return None;
    }
    Some(
        ReorderPointReached {
            requisition_id: requisition_id_for(ctx.command_id),
            on_hand: on_hand_after,
            reorder_point: state.reorder_point,
            reorder_quantity: state.reorder_quantity,
            vendor_id: state.vendor_id.clone(),
            unit_cost: state.unit_cost,
            currency: state.currency,
            facility: state.facility.clone(),
        }
        .into(),
    )
}

fn consume(state: &State, c: &ConsumeStock, ctx: &Ctx) -> Result<Vec<Event>, Rejection> {
    field::quantity("quantity", c.quantity)?;
    field::text("reference", &c.reference, SHORT_TEXT)?;
    require_defined(state)?;
    let after = state
        .on_hand
        .checked_sub(i64::from(c.quantity))
        .ok_or(Rejection::QuantityOutOfRange { field: "quantity" })?;
    let mut events: Vec<Event> = vec![
        StockConsumed {
            quantity: c.quantity,
            reference: c.reference.clone(),
        }
        .into(),
    ];
    events.extend(reorder_if_crossed(state, after, ctx));
    Ok(events)
}

fn receive(state: &State, c: &ReceiveStock) -> Result<Vec<Event>, Rejection> {
    field::quantity("quantity", c.quantity)?;
    field::text("reference", &c.reference, SHORT_TEXT)?;
    require_defined(state)?;
    state
        .on_hand
        .checked_add(i64::from(c.quantity))
        .ok_or(Rejection::QuantityOutOfRange { field: "quantity" })?;
    Ok(vec![
        StockReceived {
            quantity: c.quantity,
            reference: c.reference.clone(),
        }
        .into(),
    ])
}

fn count(state: &State, c: &CountStock, ctx: &Ctx) -> Result<Vec<Event>, Rejection> {
    require_defined(state)?;
    let counted = i64::from(c.quantity);
    let mut events: Vec<Event> = vec![
        StockCounted {
            quantity: c.quantity,
            // Both sides are within i64 (on_hand by construction, counted from a u32), but a
            // count against a hugely negative on_hand could still overflow: saturate.
            difference: counted.saturating_sub(state.on_hand),
        }
        .into(),
    ];
    events.extend(reorder_if_crossed(state, counted, ctx));
    Ok(events)
}

fn close_replenishment(state: &State, c: &CloseReplenishment) -> Result<Vec<Event>, Rejection> {
    field::id("requisition_id", &c.requisition_id)?;
    require_defined(state)?;
    match &state.open_replenishment {
        None => Err(Rejection::NoOpenReplenishment),
        Some(open) if open != &c.requisition_id => Err(Rejection::ReplenishmentMismatch {
            open: open.clone(),
            requisition_id: c.requisition_id.clone(),
        }),
        Some(_) => Ok(vec![
            ReplenishmentClosed {
                requisition_id: c.requisition_id.clone(),
            }
            .into(),
        ]),
    }
}
