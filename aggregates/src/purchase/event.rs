//! PurchaseWorkflow events. Each variant's number in [`Event`] is its current schema version.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::PurchaseWorkflow;
use super::command::{BillLine, ReceiptLine, RequestLine};
use crate::codec::event_enum;
use crate::money::{Cents, Currency};

event_enum! {
    aggregate = PurchaseWorkflow;
    /// An event of a `purchase-{requisition}` stream.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Event {
        PurchaseRequested = 1,
        PurchaseApproved = 1,
        PurchaseRejected = 1,
        ApprovalEscalated = 1,
        PurchaseOrderPlaced = 1,
        GoodsReceived = 1,
        VendorBillMatched = 1,
        VendorBillMismatched = 1,
        PurchaseClosed = 1,
        PurchaseCancelled = 1,
    }
}

/// A requisition was raised; `total` is the sum of its line totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseRequested {
    pub requester: String,
    pub facility: String,
    pub vendor_id: String,
    pub lines: Vec<RequestLine>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_deadline: Option<DateTime<Utc>>,
    pub currency: Currency,
    pub total: Cents,
}

/// The purchase was approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseApproved {
    pub approver: String,
}

/// The purchase was rejected. Final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseRejected {
    pub approver: String,
    pub reason: String,
}

/// The approval deadline passed without a decision; the purchase stays `requested`, flagged.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ApprovalEscalated {}

/// The purchase order exists in Odoo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseOrderPlaced {
    pub odoo_order_ref: String,
}

/// Goods arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoodsReceived {
    pub receipt_id: String,
    pub lines: Vec<ReceiptLine>,
}

/// The bill agrees with order and receipts on every line; `total` is what to pay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorBillMatched {
    pub bill_id: String,
    pub lines: Vec<BillLine>,
    pub currency: Currency,
    pub total: Cents,
}

/// One line on which ordered, received and billed disagree. A side that does not have the
/// item at all shows quantity 0 and no unit price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineDiscrepancy {
    pub item_id: String,
    pub ordered_quantity: u32,
    pub received_quantity: u32,
    pub billed_quantity: u32,
    pub ordered_unit_price: Option<Cents>,
    pub billed_unit_price: Option<Cents>,
}

/// The bill does not match; `lines` holds only the differing lines. The purchase keeps its
/// status, so a corrected bill can be matched later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorBillMismatched {
    pub bill_id: String,
    pub currency: Currency,
    pub lines: Vec<LineDiscrepancy>,
}

/// The purchase is done. Final.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PurchaseClosed {}

/// The purchase was cancelled. Final. Carries what compensation needs: the Odoo order to
/// cancel (if one was placed) and what was already received (to reverse).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseCancelled {
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odoo_order_ref: Option<String>,
    pub received: Vec<ReceiptLine>,
}
