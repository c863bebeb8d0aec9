//! PurchaseWorkflow: one requisition (`purchase-{requisition}`) from request to close.
//!
//! It owns the purchase's lifecycle (`requested → approved → ordered → partially_received →
//! received → matched → closed`, or `rejected`, or `cancelled`), the segregation-of-duties rule
//! (the approver is never the requester), what was received per line (never more than ordered,
//! counted over every receipt), and the 3-way match of a vendor bill against what was ordered
//! and received. It does not create the Odoo purchase order or undo anything on cancellation:
//! the Odoo executor answers with `RecordPurchaseOrder`, and `PurchaseCancelled` carries what
//! the process manager needs to compensate (the Odoo order ref, what was received).

mod command;
mod decide;
mod event;
mod state;

pub use command::{
    ApprovePurchase, BillLine, CancelPurchase, ClosePurchase, Command, EscalateApproval,
    MatchVendorBill, ReceiptLine, ReceiveGoods, RecordPurchaseOrder, RejectPurchase, RequestLine,
    RequestPurchase,
};
pub use decide::{decide, same_person};
pub use event::{
    ApprovalEscalated, Event, GoodsReceived, LineDiscrepancy, PurchaseApproved, PurchaseCancelled,
    PurchaseClosed, PurchaseOrderPlaced, PurchaseRejected, PurchaseRequested, VendorBillMatched,
    VendorBillMismatched,
};
pub use state::{OrderLine, PurchaseStatus, State, VendorBill, evolve, initial_state};

use crate::aggregate::Aggregate;
use crate::context::Ctx;
use crate::rejection::Rejection;

/// The PurchaseWorkflow aggregate (a marker type for [`Aggregate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurchaseWorkflow;

impl Aggregate for PurchaseWorkflow {
    const KIND: &'static str = "purchase";
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
