//! InventoryItem events. Each variant's number in [`Event`] is its current schema version.

use serde::{Deserialize, Serialize};

use super::InventoryItem;
use crate::codec::event_enum;
use crate::money::{Cents, Currency};

event_enum! {
    aggregate = InventoryItem;
    /// An event of an `inventory_item-{item}` stream.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Event {
        ItemDefined = 1,
        StockConsumed = 1,
        ReorderPointReached = 1,
        StockReceived = 1,
        StockCounted = 1,
        ReplenishmentClosed = 1,
    }
}

/// The item was defined; on hand starts at 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemDefined {
    pub name: String,
    pub unit: String,
    pub facility: String,
    pub reorder_point: u32,
    pub reorder_quantity: u32,
    pub vendor_id: String,
    pub unit_cost: Cents,
    pub currency: Currency,
}

/// Stock was used; on hand drops by `quantity` (it may go negative: a shortfall is recorded,
/// not refused, because the supply was already used at the bedside).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockConsumed {
    pub quantity: u32,
    pub reference: String,
}

/// On hand fell to or below the reorder point and a replenishment was opened under
/// `requisition_id`. Carries what a `RequestPurchase` needs, so the policy reads no state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReorderPointReached {
    pub requisition_id: String,
    pub on_hand: i64,
    pub reorder_point: u32,
    pub reorder_quantity: u32,
    pub vendor_id: String,
    pub unit_cost: Cents,
    pub currency: Currency,
    pub facility: String,
}

/// Stock arrived; on hand rises by `quantity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReceived {
    pub quantity: u32,
    pub reference: String,
}

/// A count set on hand to `quantity`; `difference` is counted minus expected (for shrinkage
/// reports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockCounted {
    pub quantity: u32,
    pub difference: i64,
}

/// The open replenishment finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplenishmentClosed {
    pub requisition_id: String,
}
