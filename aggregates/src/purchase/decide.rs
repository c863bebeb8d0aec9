//! PurchaseWorkflow `decide`: lifecycle order, segregation of duties, receipts and the 3-way
//! match.
//!
//! | command               | allowed while                            | becomes                       |
//! |-----------------------|------------------------------------------|-------------------------------|
//! | `RequestPurchase`     | not yet requested                        | requested                     |
//! | `ApprovePurchase`     | requested                                | approved                      |
//! | `RejectPurchase`      | requested                                | rejected                      |
//! | `EscalateApproval`    | requested                                | requested, escalated          |
//! | `RecordPurchaseOrder` | approved                                 | ordered                       |
//! | `ReceiveGoods`        | ordered, partially_received              | partially_received / received |
//! | `MatchVendorBill`     | ordered, partially_received, received    | matched / unchanged           |
//! | `ClosePurchase`       | matched                                  | closed                        |
//! | `CancelPurchase`      | anything but rejected, closed, cancelled | cancelled                     |

use super::command::{
    ApprovePurchase, BillLine, CancelPurchase, Command, MatchVendorBill, ReceiptLine, ReceiveGoods,
    RecordPurchaseOrder, RejectPurchase, RequestPurchase,
};
use super::event::{
    ApprovalEscalated, Event, GoodsReceived, LineDiscrepancy, PurchaseApproved, PurchaseCancelled,
    PurchaseClosed, PurchaseOrderPlaced, PurchaseRejected, PurchaseRequested, VendorBillMatched,
    VendorBillMismatched,
};
use super::state::{PurchaseStatus, State};
use crate::context::Ctx;
use crate::field::{self, LONG_TEXT, SHORT_TEXT};
use crate::money::Cents;
use crate::rejection::Rejection;

use PurchaseStatus::{Approved, Matched, Ordered, PartiallyReceived, Received, Requested};

/// Whether two staff identifiers name the same person: compared trimmed and ASCII
/// case-insensitively, so `Alice` cannot approve what `alice ` requested.
pub fn same_person(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Decides a command against a purchase.
///
/// # Errors
/// A [`Rejection`] (409 or 422); nothing is appended.
pub fn decide(state: &State, command: &Command, _ctx: &Ctx) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::RequestPurchase(c) => request(state, c),
        Command::ApprovePurchase(c) => approve(state, command, c),
        Command::RejectPurchase(c) => reject(state, command, c),
        Command::EscalateApproval(_) => {
            require(state, command, &[Requested])?;
            // The timer may fire again (another node, a restart): escalating twice changes
            // nothing, so it is a no-op rather than a conflict.
            if state.escalated {
                return Ok(vec![]);
            }
            Ok(vec![ApprovalEscalated {}.into()])
        }
        Command::RecordPurchaseOrder(c) => record_order(state, command, c),
        Command::ReceiveGoods(c) => receive(state, command, c),
        Command::MatchVendorBill(c) => match_bill(state, command, c),
        Command::ClosePurchase(_) => {
            require(state, command, &[Matched])?;
            Ok(vec![PurchaseClosed {}.into()])
        }
        Command::CancelPurchase(c) => cancel(state, command, c),
    }
}

fn require(
    state: &State,
    command: &Command,
    allowed: &[PurchaseStatus],
) -> Result<PurchaseStatus, Rejection> {
    match state.status {
        None => Err(Rejection::NotRequested),
        Some(status) if allowed.contains(&status) => Ok(status),
        Some(status) => Err(Rejection::InvalidTransition {
            aggregate: "purchase",
            status: status.as_str(),
            command: command.name(),
        }),
    }
}

fn request(state: &State, c: &RequestPurchase) -> Result<Vec<Event>, Rejection> {
    field::text("requester", &c.requester, SHORT_TEXT)?;
    field::text("facility", &c.facility, SHORT_TEXT)?;
    field::id("vendor_id", &c.vendor_id)?;
    field::text("reason", &c.reason, LONG_TEXT)?;
    if c.lines.is_empty() {
        return Err(Rejection::EmptyField { field: "lines" });
    }
    let mut total = Cents::ZERO;
    for line in &c.lines {
        field::id("lines.item_id", &line.item_id)?;
        field::quantity("lines.quantity", line.quantity)?;
        field::non_negative("lines.unit_price", line.unit_price)?;
        let line_total = field::line_total("lines.unit_price", line.unit_price, line.quantity)?;
        total = total
            .checked_add(line_total)
            .ok_or(Rejection::AmountOutOfRange { field: "lines" })?;
    }
    field::distinct_items(c.lines.iter().map(|l| l.item_id.as_str()))?;
    if state.status.is_some() {
        return Err(Rejection::AlreadyRequested);
    }
    Ok(vec![
        PurchaseRequested {
            requester: c.requester.clone(),
            facility: c.facility.clone(),
            vendor_id: c.vendor_id.clone(),
            lines: c.lines.clone(),
            reason: c.reason.clone(),
            approval_deadline: c.approval_deadline,
            currency: c.currency,
            total,
        }
        .into(),
    ])
}

fn approve(state: &State, command: &Command, c: &ApprovePurchase) -> Result<Vec<Event>, Rejection> {
    field::text("approver", &c.approver, SHORT_TEXT)?;
    require(state, command, &[Requested])?;
    if same_person(&c.approver, &state.requester) {
        return Err(Rejection::SelfApproval);
    }
    Ok(vec![
        PurchaseApproved {
            approver: c.approver.clone(),
        }
        .into(),
    ])
}

fn reject(state: &State, command: &Command, c: &RejectPurchase) -> Result<Vec<Event>, Rejection> {
    field::text("approver", &c.approver, SHORT_TEXT)?;
    field::text("reason", &c.reason, LONG_TEXT)?;
    require(state, command, &[Requested])?;
    if same_person(&c.approver, &state.requester) {
        return Err(Rejection::SelfApproval);
    }
    Ok(vec![
        PurchaseRejected {
            approver: c.approver.clone(),
            reason: c.reason.clone(),
        }
        .into(),
    ])
}

fn record_order(
    state: &State,
    command: &Command,
    c: &RecordPurchaseOrder,
) -> Result<Vec<Event>, Rejection> {
    field::text("odoo_order_ref", &c.odoo_order_ref, SHORT_TEXT)?;
    require(state, command, &[Approved])?;
    Ok(vec![
        PurchaseOrderPlaced {
            odoo_order_ref: c.odoo_order_ref.clone(),
        }
        .into(),
    ])
}

fn receive(state: &State, command: &Command, c: &ReceiveGoods) -> Result<Vec<Event>, Rejection> {
    field::id("receipt_id", &c.receipt_id)?;
    if c.lines.is_empty() {
        return Err(Rejection::EmptyField { field: "lines" });
    }
    for line in &c.lines {
        field::id("lines.item_id", &line.item_id)?;
        field::quantity("lines.quantity", line.quantity)?;
    }
    field::distinct_items(c.lines.iter().map(|l| l.item_id.as_str()))?;
    require(state, command, &[Ordered, PartiallyReceived])?;
    if state.receipts.contains(&c.receipt_id) {
        return Err(Rejection::DuplicateReceipt {
            receipt_id: c.receipt_id.clone(),
        });
    }
    for line in &c.lines {
        let Some(ordered) = state.line(&line.item_id) else {
            return Err(Rejection::ItemNotOrdered {
                item_id: line.item_id.clone(),
            });
        };
        let outstanding = ordered.quantity.saturating_sub(ordered.received);
        if line.quantity > outstanding {
            return Err(Rejection::OverReceipt {
                item_id: line.item_id.clone(),
                ordered: ordered.quantity,
                already_received: ordered.received,
                receiving: line.quantity,
            });
        }
    }
    Ok(vec![
        GoodsReceived {
            receipt_id: c.receipt_id.clone(),
            lines: c.lines.clone(),
        }
        .into(),
    ])
}

fn match_bill(
    state: &State,
    command: &Command,
    c: &MatchVendorBill,
) -> Result<Vec<Event>, Rejection> {
    field::id("bill_id", &c.bill_id)?;
    if c.lines.is_empty() {
        return Err(Rejection::EmptyField { field: "lines" });
    }
    let mut total = Cents::ZERO;
    for line in &c.lines {
        field::id("lines.item_id", &line.item_id)?;
        field::quantity("lines.quantity", line.quantity)?;
        field::non_negative("lines.unit_price", line.unit_price)?;
        let line_total = field::line_total("lines.unit_price", line.unit_price, line.quantity)?;
        total = total
            .checked_add(line_total)
            .ok_or(Rejection::AmountOutOfRange { field: "lines" })?;
    }
    field::distinct_items(c.lines.iter().map(|l| l.item_id.as_str()))?;
    require(state, command, &[Ordered, PartiallyReceived, Received])?;
    if c.currency != state.currency {
        return Err(Rejection::CurrencyMismatch {
            expected: state.currency,
            found: c.currency,
        });
    }
    let discrepancies = three_way_match(state, &c.lines);
    if discrepancies.is_empty() {
        return Ok(vec![
            VendorBillMatched {
                bill_id: c.bill_id.clone(),
                lines: c.lines.clone(),
                currency: c.currency,
                total,
            }
            .into(),
        ]);
    }
    Ok(vec![
        VendorBillMismatched {
            bill_id: c.bill_id.clone(),
            currency: c.currency,
            lines: discrepancies,
        }
        .into(),
    ])
}

/// Per item: ordered quantity = received quantity = billed quantity, and billed unit price =
/// ordered unit price. Returns the lines that break it: order lines in order, then bill lines
/// for items never ordered.
fn three_way_match(state: &State, bill: &[BillLine]) -> Vec<LineDiscrepancy> {
    let mut discrepancies = Vec::new();
    for ordered in &state.lines {
        let billed = bill.iter().find(|b| b.item_id == ordered.item_id);
        let billed_quantity = billed.map_or(0, |b| b.quantity);
        let billed_unit_price = billed.map(|b| b.unit_price);
        let agrees = ordered.quantity == ordered.received
            && ordered.received == billed_quantity
            && billed_unit_price == Some(ordered.unit_price);
        if !agrees {
            discrepancies.push(LineDiscrepancy {
                item_id: ordered.item_id.clone(),
                ordered_quantity: ordered.quantity,
                received_quantity: ordered.received,
                billed_quantity,
                ordered_unit_price: Some(ordered.unit_price),
                billed_unit_price,
            });
        }
    }
    for billed in bill {
        if state.line(&billed.item_id).is_none() {
            discrepancies.push(LineDiscrepancy {
                item_id: billed.item_id.clone(),
                ordered_quantity: 0,
                received_quantity: 0,
                billed_quantity: billed.quantity,
                ordered_unit_price: None,
                billed_unit_price: Some(billed.unit_price),
            });
        }
    }
    discrepancies
}

fn cancel(state: &State, command: &Command, c: &CancelPurchase) -> Result<Vec<Event>, Rejection> {
    field::text("reason", &c.reason, LONG_TEXT)?;
    // Rejected, closed and cancelled purchases are final.
    require(
        state,
        command,
        &[
            Requested,
            Approved,
            Ordered,
            PartiallyReceived,
            Received,
            Matched,
        ],
    )?;
    Ok(vec![
        PurchaseCancelled {
            reason: c.reason.clone(),
            odoo_order_ref: state.odoo_order_ref.clone(),
            received: state
                .lines
                .iter()
                .filter(|l| l.received > 0)
                .map(|l| ReceiptLine {
                    item_id: l.item_id.clone(),
                    quantity: l.received,
                })
                .collect(),
        }
        .into(),
    ])
}
