//! PurchaseWorkflow state and `evolve`: rendered by `GET /v1/purchases/{requisition}` (the
//! pinned `status` plus `escalated`) and snapshotted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::event::Event;
use crate::money::{Cents, Currency};

/// The pinned status values of a purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseStatus {
    Requested,
    Approved,
    Rejected,
    Ordered,
    PartiallyReceived,
    Received,
    Matched,
    Closed,
    Cancelled,
}

impl PurchaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PurchaseStatus::Requested => "requested",
            PurchaseStatus::Approved => "approved",
            PurchaseStatus::Rejected => "rejected",
            PurchaseStatus::Ordered => "ordered",
            PurchaseStatus::PartiallyReceived => "partially_received",
            PurchaseStatus::Received => "received",
            PurchaseStatus::Matched => "matched",
            PurchaseStatus::Closed => "closed",
            PurchaseStatus::Cancelled => "cancelled",
        }
    }
}

/// An order line with what has been received of it so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub item_id: String,
    pub quantity: u32,
    pub unit_price: Cents,
    /// Sum over every receipt; never above `quantity`.
    pub received: u32,
}

/// A vendor bill seen by the purchase and whether it matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorBill {
    pub bill_id: String,
    pub matched: bool,
}

/// A purchase. `status` is `None` until it is requested.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct State {
    pub status: Option<PurchaseStatus>,
    /// The approval deadline passed while the purchase awaited approval.
    pub escalated: bool,
    pub requester: String,
    pub facility: String,
    pub vendor_id: String,
    pub reason: String,
    pub approval_deadline: Option<DateTime<Utc>>,
    pub currency: Currency,
    pub lines: Vec<OrderLine>,
    pub total: Cents,
    /// Who approved or rejected.
    pub approver: Option<String>,
    pub rejection_reason: Option<String>,
    pub odoo_order_ref: Option<String>,
    pub receipts: Vec<String>,
    pub bills: Vec<VendorBill>,
    pub cancel_reason: Option<String>,
}

impl State {
    pub fn line(&self, item_id: &str) -> Option<&OrderLine> {
        self.lines.iter().find(|l| l.item_id == item_id)
    }

    /// Every line received in full.
    pub fn fully_received(&self) -> bool {
        self.lines.iter().all(|l| l.received >= l.quantity)
    }
}

/// The state of a purchase with no history.
pub fn initial_state() -> State {
    State::default()
}

/// Applies one event.
pub fn evolve(mut state: State, event: &Event) -> State {
    match event {
        Event::PurchaseRequested(e) => {
            state.status = Some(PurchaseStatus::Requested);
            state.requester.clone_from(&e.requester);
            state.facility.clone_from(&e.facility);
            state.vendor_id.clone_from(&e.vendor_id);
            state.reason.clone_from(&e.reason);
            state.approval_deadline = e.approval_deadline;
            state.currency = e.currency;
            state.total = e.total;
            state.lines = e
                .lines
                .iter()
                .map(|l| OrderLine {
                    item_id: l.item_id.clone(),
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                    received: 0,
                })
                .collect();
        }
        Event::PurchaseApproved(e) => {
            state.status = Some(PurchaseStatus::Approved);
            state.approver = Some(e.approver.clone());
        }
        Event::PurchaseRejected(e) => {
            state.status = Some(PurchaseStatus::Rejected);
            state.approver = Some(e.approver.clone());
            state.rejection_reason = Some(e.reason.clone());
        }
        Event::ApprovalEscalated(_) => state.escalated = true,
        Event::PurchaseOrderPlaced(e) => {
            state.status = Some(PurchaseStatus::Ordered);
            state.odoo_order_ref = Some(e.odoo_order_ref.clone());
        }
        Event::GoodsReceived(e) => {
            for received in &e.lines {
                if let Some(line) = state
                    .lines
                    .iter_mut()
                    .find(|l| l.item_id == received.item_id)
                {
                    line.received = line.received.saturating_add(received.quantity);
                }
            }
            state.receipts.push(e.receipt_id.clone());
            state.status = Some(if state.fully_received() {
                PurchaseStatus::Received
            } else {
                PurchaseStatus::PartiallyReceived
            });
        }
        Event::VendorBillMatched(e) => {
            state.status = Some(PurchaseStatus::Matched);
            state.bills.push(VendorBill {
                bill_id: e.bill_id.clone(),
                matched: true,
            });
        }
        Event::VendorBillMismatched(e) => state.bills.push(VendorBill {
            bill_id: e.bill_id.clone(),
            matched: false,
        }),
        Event::PurchaseClosed(_) => state.status = Some(PurchaseStatus::Closed),
        Event::PurchaseCancelled(e) => {
            state.status = Some(PurchaseStatus::Cancelled);
            state.cancel_reason = Some(e.reason.clone());
        }
    }
    state
}
