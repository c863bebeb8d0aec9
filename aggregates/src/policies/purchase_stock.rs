//! Goods received → stock received; a cancellation after receipt → the stock goes back.
//!
//! Each `GoodsReceived` line becomes `ReceiveStock` on its item (reference `receipt:<id>`).
//! A `PurchaseCancelled` compensates what those receipts did: one `ConsumeStock` per receipt
//! line, with reference `return:<receipt>`, so the stock ledger shows which delivery went
//! back. The policy remembers each open purchase's receipts in its [`State`] for that. If it
//! knows none (a runner started mid-log) but the event says goods were received, it falls back
//! to the cancelled event's own totals with reference `return:<requisition>`. Cancelling the
//! Odoo purchase order belongs to the Odoo executor (`PurchaseCancelled.odoo_order_ref`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{
    AddressedCommand, PolicyError, ProcessManager, Reaction, Trigger, TriggerEvent, address,
    command_id_for,
};
use crate::inventory_item::{ConsumeStock, ReceiveStock};
use crate::purchase::{self, GoodsReceived, PurchaseCancelled, ReceiptLine};
use crate::{Aggregate, AnyCommand};

/// The purchase-stock process manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurchaseStock;

/// The receipts of each purchase (requisition → receipt id → lines) and which purchases have
/// ended.
///
/// Once a purchase has ended its entry is frozen: a closed purchase's receipts are dropped (it
/// can no longer be cancelled), a cancelled one's are kept, and nothing received after the end
/// is added. A redelivered cancellation therefore compensates exactly as the first delivery
/// did, whatever arrived in between.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub receipts: BTreeMap<String, BTreeMap<String, Vec<ReceiptLine>>>,
    pub ended: BTreeSet<String>,
}

impl ProcessManager for PurchaseStock {
    const NAME: &'static str = "purchase_stock";
    const STREAM_KINDS: &'static [&'static str] = &[crate::PurchaseWorkflow::KIND];
    type State = State;
    type Settings = ();

    fn react(state: &State, trigger: &Trigger, _settings: &()) -> Result<Reaction, PolicyError> {
        let TriggerEvent::Purchase(event) = &trigger.event else {
            return Ok(Reaction::default());
        };
        let commands = match event {
            purchase::Event::GoodsReceived(GoodsReceived { receipt_id, lines }) => lines
                .iter()
                .map(|line| {
                    address(
                        &line.item_id,
                        command_id_for(
                            trigger.event_id,
                            &format!("receive-stock:{}", line.item_id),
                        ),
                        AnyCommand::InventoryItem(
                            ReceiveStock {
                                quantity: line.quantity,
                                reference: format!("receipt:{receipt_id}"),
                            }
                            .into(),
                        ),
                    )
                })
                .collect::<Result<Vec<_>, PolicyError>>()?,
            purchase::Event::PurchaseCancelled(cancelled) => compensate(state, trigger, cancelled)?,
            _ => Vec::new(),
        };
        Ok(Reaction {
            commands,
            ..Reaction::default()
        })
    }

    fn evolve(mut state: State, trigger: &Trigger) -> State {
        let requisition = trigger.stream_id.id();
        if state.ended.contains(requisition) {
            return state;
        }
        match &trigger.event {
            TriggerEvent::Purchase(purchase::Event::GoodsReceived(received)) => {
                state
                    .receipts
                    .entry(requisition.to_owned())
                    .or_default()
                    .entry(received.receipt_id.clone())
                    .or_insert_with(|| received.lines.clone());
            }
            TriggerEvent::Purchase(purchase::Event::PurchaseClosed(_)) => {
                state.receipts.remove(requisition);
                state.ended.insert(requisition.to_owned());
            }
            TriggerEvent::Purchase(purchase::Event::PurchaseCancelled(_)) => {
                state.ended.insert(requisition.to_owned());
            }
            _ => {}
        }
        state
    }
}

fn compensate(
    state: &State,
    trigger: &Trigger,
    cancelled: &PurchaseCancelled,
) -> Result<Vec<AddressedCommand>, PolicyError> {
    let requisition = trigger.stream_id.id();
    let returns: Vec<(String, &ReceiptLine)> = match state.receipts.get(requisition) {
        Some(receipts) if !receipts.is_empty() => receipts
            .iter()
            .flat_map(|(receipt, lines)| lines.iter().map(move |line| (receipt.clone(), line)))
            .collect(),
        _ => cancelled
            .received
            .iter()
            .map(|line| (requisition.to_owned(), line))
            .collect(),
    };
    returns
        .into_iter()
        .filter(|(_, line)| line.quantity > 0)
        .map(|(source, line)| {
            address(
                &line.item_id,
                command_id_for(
                    trigger.event_id,
                    &format!("return:{source}:{}", line.item_id),
                ),
                AnyCommand::InventoryItem(
                    ConsumeStock {
                        quantity: line.quantity,
                        reference: format!("return:{source}"),
                    }
                    .into(),
                ),
            )
        })
        .collect()
}
