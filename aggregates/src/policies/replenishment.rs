//! Stock under its reorder point → one replenishment purchase, and only one at a time.
//!
//! `ReorderPointReached` already carries everything a `RequestPurchase` needs (vendor, reorder
//! quantity, unit cost, facility) and the requisition id the item opened, so the purchase
//! lands on `purchase-{requisition}`. The InventoryItem aggregate refuses to open a second
//! replenishment while one is open; this policy keeps its own small [`State`] as a second
//! guard, because it is the one that *sends* the purchase: whatever order, duplicates or
//! replays the log delivers, it never requests a second purchase for an item whose
//! replenishment is still open. When the purchase ends (closed, cancelled or rejected) it sends
//! `CloseReplenishment`, after which the next crossing may open another.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{
    AddressedCommand, PolicyError, ProcessManager, REPLENISHMENT_REQUESTER, Reaction, Trigger,
    TriggerEvent, address, command_id_for,
};
use crate::inventory_item::{self, CloseReplenishment, ReorderPointReached, ReplenishmentClosed};
use crate::purchase::{self, RequestLine, RequestPurchase};
use crate::{Aggregate, AnyCommand, InventoryItem, PurchaseWorkflow};

/// The replenishment process manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replenishment;

/// Which replenishment is open per item, and which requisitions are settled.
///
/// `settled` keeps every requisition the policy is done with (closed, refused because another
/// was open, or whose purchase ended before it was opened), so a redelivered
/// `ReorderPointReached` for it never reopens it. It grows by one short string per
/// replenishment, which a hospital's volume keeps small.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// item id → the open requisition.
    pub open: BTreeMap<String, String>,
    /// requisition → its item, for the open ones (the purchase's end names only the
    /// requisition).
    pub item_of: BTreeMap<String, String>,
    pub settled: BTreeSet<String>,
}

impl State {
    /// The requisition open for `item_id`, if any.
    pub fn open_for(&self, item_id: &str) -> Option<&str> {
        self.open.get(item_id).map(String::as_str)
    }
}

impl ProcessManager for Replenishment {
    const NAME: &'static str = "replenishment";
    const STREAM_KINDS: &'static [&'static str] = &[InventoryItem::KIND, PurchaseWorkflow::KIND];
    type State = State;
    type Settings = ();

    fn react(state: &State, trigger: &Trigger, _settings: &()) -> Result<Reaction, PolicyError> {
        let mut reaction = Reaction::default();
        match &trigger.event {
            TriggerEvent::InventoryItem(inventory_item::Event::ReorderPointReached(reached)) => {
                let item_id = trigger.stream_id.id();
                let requisition = reached.requisition_id.as_str();
                let free = match state.open_for(item_id) {
                    None => !state.settled.contains(requisition),
                    // A redelivery of the event that opened it: send the same command again
                    // (same id), in case the crash came before it was durable.
                    Some(open) => open == requisition,
                };
                if free {
                    reaction
                        .commands
                        .push(request_purchase(trigger, item_id, reached)?);
                }
            }
            TriggerEvent::Purchase(
                purchase::Event::PurchaseClosed(_)
                | purchase::Event::PurchaseCancelled(_)
                | purchase::Event::PurchaseRejected(_),
            ) => {
                let requisition = trigger.stream_id.id();
                if let Some(item_id) = state.item_of.get(requisition) {
                    reaction.commands.push(address(
                        item_id,
                        command_id_for(trigger.event_id, "close-replenishment"),
                        AnyCommand::InventoryItem(
                            CloseReplenishment {
                                requisition_id: requisition.to_owned(),
                            }
                            .into(),
                        ),
                    )?);
                }
            }
            _ => {}
        }
        Ok(reaction)
    }

    fn evolve(mut state: State, trigger: &Trigger) -> State {
        match &trigger.event {
            TriggerEvent::InventoryItem(inventory_item::Event::ReorderPointReached(reached)) => {
                let item_id = trigger.stream_id.id();
                let requisition = &reached.requisition_id;
                match state.open.get(item_id) {
                    Some(open) if open == requisition => {}
                    Some(_) => {
                        state.settled.insert(requisition.clone());
                    }
                    None if state.settled.contains(requisition) => {}
                    None => {
                        state.open.insert(item_id.to_owned(), requisition.clone());
                        state
                            .item_of
                            .insert(requisition.clone(), item_id.to_owned());
                    }
                }
            }
            TriggerEvent::InventoryItem(inventory_item::Event::ReplenishmentClosed(
                ReplenishmentClosed { requisition_id },
            )) => {
                let item_id = trigger.stream_id.id();
                if state.open.get(item_id) == Some(requisition_id) {
                    state.open.remove(item_id);
                }
                state.item_of.remove(requisition_id);
                state.settled.insert(requisition_id.clone());
            }
            TriggerEvent::Purchase(
                purchase::Event::PurchaseClosed(_)
                | purchase::Event::PurchaseCancelled(_)
                | purchase::Event::PurchaseRejected(_),
            ) => {
                // An open one stays open until the item confirms `ReplenishmentClosed`; one
                // never opened can no longer open.
                let requisition = trigger.stream_id.id();
                if !state.item_of.contains_key(requisition) {
                    state.settled.insert(requisition.to_owned());
                }
            }
            _ => {}
        }
        state
    }
}

fn request_purchase(
    trigger: &Trigger,
    item_id: &str,
    reached: &ReorderPointReached,
) -> Result<AddressedCommand, PolicyError> {
    address(
        &reached.requisition_id,
        command_id_for(trigger.event_id, "request-purchase"),
        AnyCommand::Purchase(
            RequestPurchase {
                requester: REPLENISHMENT_REQUESTER.to_owned(),
                facility: reached.facility.clone(),
                vendor_id: reached.vendor_id.clone(),
                lines: vec![RequestLine {
                    item_id: item_id.to_owned(),
                    quantity: reached.reorder_quantity,
                    unit_price: reached.unit_cost,
                }],
                reason: format!(
                    "replenishment of {item_id}: {} on hand, reorder point {}",
                    reached.on_hand, reached.reorder_point
                ),
                // The approval-deadline policy applies the configured default.
                approval_deadline: None,
                currency: reached.currency,
            }
            .into(),
        ),
    )
}
