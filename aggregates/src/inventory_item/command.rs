//! InventoryItem commands, as DESIGN.md "The command contract" spells them, plus
//! `CloseReplenishment`, which only the purchase process manager sends.

use serde::{Deserialize, Serialize};

use crate::codec::command_enum;
use crate::money::{Cents, Currency};

command_enum! {
    /// A command to an inventory item (`POST /v1/inventory-items/{item}/commands`).
    pub enum Command {
        DefineItem,
        ConsumeStock,
        ReceiveStock,
        CountStock,
        CloseReplenishment,
    }
}

/// `DefineItem`: creates the item with nothing on hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefineItem {
    pub name: String,
    /// The unit stock is counted in (`box`, `each`, `ml`).
    pub unit: String,
    pub facility: String,
    /// Reorder when on hand falls to this or below.
    pub reorder_point: u32,
    /// How many to order when it does (at least 1).
    pub reorder_quantity: u32,
    pub vendor_id: String,
    pub unit_cost: Cents,
    #[serde(default)]
    pub currency: Currency,
}

/// `ConsumeStock`: stock was used (an encounter, a ward, waste).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumeStock {
    pub quantity: u32,
    /// What consumed it (a visit number, a ward).
    pub reference: String,
}

/// `ReceiveStock`: stock arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiveStock {
    pub quantity: u32,
    /// Where it came from (a receipt, a requisition).
    pub reference: String,
}

/// `CountStock`: a physical count; on hand becomes exactly `quantity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountStock {
    pub quantity: u32,
}

/// `CloseReplenishment`: the replenishment purchase finished (closed or cancelled), so the next
/// crossing of the reorder point may open another one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseReplenishment {
    pub requisition_id: String,
}
