//! PurchaseWorkflow commands, exactly as DESIGN.md "The command contract" spells them.
//!
//! Unknown fields are refused on every struct, lines included; money is a string decimal.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codec::command_enum;
use crate::money::{Cents, Currency};

command_enum! {
    /// A command to a purchase (`POST /v1/purchases/{requisition}/commands`).
    pub enum Command {
        RequestPurchase,
        ApprovePurchase,
        RejectPurchase,
        RecordPurchaseOrder,
        ReceiveGoods,
        MatchVendorBill,
        ClosePurchase,
        CancelPurchase,
        EscalateApproval,
    }
}

/// A requisition line: what to order and at what price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLine {
    pub item_id: String,
    pub quantity: u32,
    pub unit_price: Cents,
}

/// A receipt line: how many of an item arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptLine {
    pub item_id: String,
    pub quantity: u32,
}

/// A vendor bill line: how many of an item the vendor bills, at what price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillLine {
    pub item_id: String,
    pub quantity: u32,
    pub unit_price: Cents,
}

/// `RequestPurchase`: opens the requisition, awaiting approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestPurchase {
    pub requester: String,
    pub facility: String,
    pub vendor_id: String,
    pub lines: Vec<RequestLine>,
    pub reason: String,
    /// When the approval escalates if nobody decided (the deadline timer sends
    /// `EscalateApproval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_deadline: Option<DateTime<Utc>>,
    #[serde(default)]
    pub currency: Currency,
}

/// `ApprovePurchase`: by someone other than the requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovePurchase {
    pub approver: String,
}

/// `RejectPurchase`: by someone other than the requester (a requester withdraws by cancelling).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectPurchase {
    pub approver: String,
    pub reason: String,
}

/// `RecordPurchaseOrder`: the Odoo executor created and confirmed the purchase order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordPurchaseOrder {
    pub odoo_order_ref: String,
}

/// `ReceiveGoods`: a delivery (partial deliveries allowed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiveGoods {
    pub receipt_id: String,
    pub lines: Vec<ReceiptLine>,
}

/// `MatchVendorBill`: a vendor bill to match against order and receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchVendorBill {
    pub bill_id: String,
    pub lines: Vec<BillLine>,
    #[serde(default)]
    pub currency: Currency,
}

/// `ClosePurchase`: the matched purchase is done.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClosePurchase {}

/// `CancelPurchase`: stop, at any point before closing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelPurchase {
    pub reason: String,
}

/// `EscalateApproval`: the approval deadline passed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalateApproval {}
