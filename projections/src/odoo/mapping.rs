//! [`map_event`]: the pure fold of the global log into [`OdooIntent`]s.
//!
//! Most events map on their own; two need earlier ones, which [`MappingState`] keeps:
//! - a customer invoice is one line per charge of its encounter, and the charges are posted
//!   by the charges process manager *after* `EncounterCompleted` (which lists the procedures
//!   they come from). The invoice intent is therefore emitted by whichever event completes the
//!   set: the completion itself when every charge its procedures produce (ids from
//!   `charge_id_for`) is already posted, else the last of those `ChargePosted`s. Charges that
//!   name the encounter without coming from a procedure (an HL7 DFT) join the invoice when
//!   posted before that point; a later one is not invoiced, and the billing reconciliation
//!   shows the difference as a mismatch.
//! - a purchase order needs its requisition's vendor and lines, and a cancellation needs to
//!   know whether an order was placed and goods received.
//! - a remittance reaches Odoo through the account's own `PaymentRecorded` and
//!   `AdjustmentApplied` (what the claims process manager posts for a `ClaimResponseRecorded`),
//!   and those need the claim they come from: its payer (the payment's partner), its visit
//!   (the invoice they settle) and its id (the payment's memo). `ClaimCreated` keeps the
//!   claim; `ClaimResponseRecorded` derives the remittance's ids as the process manager does
//!   (`remittance_id_for`) and keeps them until the account's events arrive.
//!
//! Why the account's events carry the remittance, not `ClaimResponseRecorded`: Odoo then holds
//! exactly what careflow's books hold. An account that refuses the posting (closed, or an
//! overpayment because the patient paid first) leaves Odoo untouched too, a merged account's
//! remittance lands where the process manager posted it, and the billing view's balance and
//! the Odoo invoice's residual stay equal. Each payment and adjustment maps once, under its own
//! id (`payment_{payment_id}`, `adjustment_{adjustment_id}`), so nothing needs skipping and a
//! replay finds every record by external id.
//!
//! The state stays bounded: an encounter's entry goes once invoiced or cancelled, a
//! requisition's once closed, rejected or cancelled, a claim's once paid (in part) or voided,
//! a remittance's once its payment and adjustments reached the account (one the account
//! refused stays, bounded by such refusals); products, vendors and payers seen are remembered
//! (one name each, bounded by the catalogue and the payers) so that each is upserted once.

use std::collections::{BTreeMap, BTreeSet};

use careflow_aggregates::claim::Event as ClaimEvent;
use careflow_aggregates::encounter::Event as EncounterEvent;
use careflow_aggregates::inventory_item::{Event as ItemEvent, ItemDefined};
use careflow_aggregates::patient_account::{
    AdjustmentApplied, ChargePosted, Event as AccountEvent, PaymentRecorded,
};
use careflow_aggregates::policies::charges::charge_id_for;
use careflow_aggregates::policies::claims::{remittance_adjustment_id, remittance_id_for};
use careflow_aggregates::purchase::{Event as PurchaseEvent, RequestLine};
use careflow_aggregates::{Cents, RecordedEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::calls::money;
use super::intent::{Action, InvoiceLine, OdooIntent, OrderLine, PaymentTerms, ReceivedLine};
use crate::error::ProjectionError;
use crate::projection::{Decoded, decode};

/// What the mapping remembers between events. Serialisable so the executor can store it with
/// its checkpoint; a fresh state is only right when mapping from position 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MappingState {
    /// Encounters not invoiced yet, by visit.
    invoices: BTreeMap<String, PendingInvoice>,
    /// Requisitions not finished yet, by requisition id.
    requisitions: BTreeMap<String, OpenRequisition>,
    /// Item ids already upserted as products.
    products: BTreeSet<String>,
    /// Vendor ids already upserted as suppliers.
    vendors: BTreeSet<String>,
    /// Payer ids already upserted as company partners. (Absent from a state stored before
    /// remittances reached Odoo, hence the defaults.)
    #[serde(default)]
    payers: BTreeSet<String>,
    /// Claims whose answer may still move money (as the claims process manager keeps them),
    /// by claim id.
    #[serde(default)]
    claims: BTreeMap<String, OpenClaim>,
    /// Remittances whose payment or adjustments have not reached the account yet, by
    /// remittance id (`INS-{event}`).
    #[serde(default)]
    remittances: BTreeMap<String, Remittance>,
}

impl MappingState {
    /// How many encounters, requisitions, claims and remittances are held open (for a gauge,
    /// and for tests of boundedness).
    pub fn open_records(&self) -> usize {
        self.invoices.len() + self.requisitions.len() + self.claims.len() + self.remittances.len()
    }

    /// A state that knows only these products and vendors (what a finished log leaves).
    #[cfg(test)]
    pub(crate) fn with_catalogue(mut self, products: &[&str], vendors: &[&str]) -> Self {
        self.products
            .extend(products.iter().map(|&item| item.to_owned()));
        self.vendors
            .extend(vendors.iter().map(|&vendor| vendor.to_owned()));
        self
    }
}

/// An encounter's invoice being assembled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct PendingInvoice {
    /// Set by `EncounterCompleted`.
    completion: Option<Completion>,
    /// Posted charges naming the encounter, in log order.
    lines: Vec<InvoiceLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Completion {
    /// The MRN: the invoice's customer.
    account_id: String,
    /// `YYYY-MM-DD` of the completion's business time.
    invoice_date: String,
    /// Charge ids the completion's procedures produce.
    expected: BTreeSet<String>,
}

/// What a remittance's postings need of their claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OpenClaim {
    payer_id: String,
    /// The claimed visit: its invoice is what the remittance settles.
    encounter_id: String,
}

/// A remittance on its way to the account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Remittance {
    claim_id: String,
    payer_id: String,
    encounter_id: String,
    /// The payer's reference of its answer (a ClaimResponse id, a remittance number).
    reference: String,
    /// The payment and adjustment ids still to come from the account.
    awaiting: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OpenRequisition {
    vendor_id: String,
    lines: Vec<RequestLine>,
    approved: bool,
    goods_received: bool,
}

/// Maps one event to the intents it causes, in the order they should run, updating `state`.
/// Events of other streams (process managers, timers, acknowledgements) map to nothing.
///
/// # Errors
/// [`ProjectionError::Decode`] when an aggregate event does not decode;
/// [`ProjectionError::MissingContext`] when a purchase is approved without its request in
/// `state` (the state was not built from position 0).
pub fn map_event(
    state: &mut MappingState,
    event: &RecordedEvent,
) -> Result<Vec<OdooIntent>, ProjectionError> {
    let actions = match decode(event)? {
        Decoded::PatientAccount(account_event) => map_account(state, event, account_event),
        Decoded::Encounter(encounter_event) => map_encounter(state, event, encounter_event),
        Decoded::InventoryItem(item_event) => map_item(state, event, item_event),
        Decoded::Purchase(purchase_event) => map_purchase(state, event, purchase_event)?,
        Decoded::Claim(claim_event) => map_claim(state, event, claim_event),
        Decoded::Roster(_) | Decoded::Staffing(_) | Decoded::Internal => Vec::new(),
    };
    Ok(actions
        .into_iter()
        .enumerate()
        .map(|(n, (key, action))| OdooIntent {
            id: format!("{}/{n}", event.event_id),
            event_id: event.event_id,
            position: event.position,
            key,
            model: action.model().to_owned(),
            action,
        })
        .collect())
}

/// `(key, action)` pairs of one event.
type Actions = Vec<(String, Action)>;

fn date_of(event: &RecordedEvent) -> String {
    event.metadata.occurred_at.format("%Y-%m-%d").to_string()
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn partner_key(mrn: &str) -> String {
    format!("partner_{mrn}")
}

fn vendor_key(vendor_id: &str) -> String {
    format!("vendor_{vendor_id}")
}

fn payer_key(payer_id: &str) -> String {
    format!("payer_{payer_id}")
}

fn invoice_key(visit: &str) -> String {
    format!("invoice_{visit}")
}

fn product_key(item_id: &str) -> String {
    format!("product_{item_id}")
}

fn order_key(requisition: &str) -> String {
    format!("po_{requisition}")
}

/// The customer, named by MRN only: Odoo must not hold what careflow may have to erase.
fn upsert_partner(mrn: &str, payment_terms: Option<PaymentTerms>) -> (String, Action) {
    let values = object(json!({
        "name": mrn,
        "ref": mrn,
        "is_company": false,
        "customer_rank": 1,
    }));
    (
        partner_key(mrn),
        Action::UpsertPartner {
            values,
            payment_terms,
        },
    )
}

/// The partner as an erasure leaves it: the MRN, and every address field cleared.
fn erased_partner(mrn: &str) -> (String, Action) {
    let (key, action) = upsert_partner(mrn, None);
    let Action::UpsertPartner { mut values, .. } = action else {
        return (key, action);
    };
    for field in ["street", "street2", "city", "zip", "country_id"] {
        values.insert(field.to_owned(), Value::Bool(false));
    }
    (
        key,
        Action::UpsertPartner {
            values,
            payment_terms: None,
        },
    )
}

fn map_account(
    state: &mut MappingState,
    event: &RecordedEvent,
    account_event: AccountEvent,
) -> Actions {
    let mrn = event.stream_id.id();
    match account_event {
        AccountEvent::PatientRegistered(_) | AccountEvent::DemographicsUpdated(_) => {
            vec![upsert_partner(mrn, None)]
        }
        AccountEvent::AccountActivated(_) => vec![upsert_partner(mrn, Some(PaymentTerms::Insured))],
        AccountEvent::AccountFlaggedSelfPay(_) => {
            vec![upsert_partner(mrn, Some(PaymentTerms::SelfPay))]
        }
        AccountEvent::ChargePosted(charge) => add_charge(state, &charge),
        AccountEvent::PaymentRecorded(payment) => {
            if let Some(remitted) = remitted_payment(state, event, &payment) {
                return vec![remitted];
            }
            vec![(
                format!("payment_{}", payment.payment_id),
                Action::RegisterPayment {
                    partner: partner_key(mrn),
                    amount: payment.amount,
                    payment_date: date_of(event),
                    memo: payment.payment_id,
                    settles: None,
                },
            )]
        }
        AccountEvent::AdjustmentApplied(adjustment) => {
            remitted_adjustment(state, event, &adjustment)
                .into_iter()
                .collect()
        }
        // Erasure reaches Odoo: the partner goes back to the MRN and loses any address (a
        // no-op where the partner only ever carried the MRN; with `odoo_partner_details =
        // billing` it removes the name and address, docs/odoo.md "Privacy").
        AccountEvent::PersonalDataErased(_) => vec![erased_partner(mrn)],
        // The merged partner is archived under the survivor's, which holds what comes next.
        AccountEvent::PatientMerged(merged) => vec![(
            partner_key(mrn),
            Action::ArchivePartner {
                mrn: mrn.to_owned(),
                into: partner_key(&merged.into),
            },
        )],
        // Eligibility shows in the terms once the account is activated or flagged; closing
        // changes nothing Odoo holds.
        AccountEvent::EligibilityVerified(_)
        | AccountEvent::EligibilityDenied(_)
        | AccountEvent::PatientAccountMergedIn(_)
        | AccountEvent::AccountClosed(_) => Vec::new(),
    }
}

/// Marks `id` of `remittance` as arrived; forgets the remittance once nothing else is due.
/// `None` when `id` is not one the remittance awaits.
fn arrive(state: &mut MappingState, remittance: &str, id: &str) -> Option<Remittance> {
    let open = state.remittances.get_mut(remittance)?;
    if !open.awaiting.remove(id) {
        return None;
    }
    let context = open.clone();
    if open.awaiting.is_empty() {
        state.remittances.remove(remittance);
    }
    Some(context)
}

/// A remittance's insurance payment: a payment of the payer's partner that settles the
/// claimed visit's invoice. `None` for any other payment (the patient's, or one whose claim
/// the state never saw), which maps as before.
fn remitted_payment(
    state: &mut MappingState,
    event: &RecordedEvent,
    payment: &PaymentRecorded,
) -> Option<(String, Action)> {
    let remittance = arrive(state, &payment.payment_id, &payment.payment_id)?;
    Some((
        format!("payment_{}", payment.payment_id),
        Action::RegisterPayment {
            partner: payer_key(&remittance.payer_id),
            amount: payment.amount,
            payment_date: date_of(event),
            memo: format!(
                "{} claim {} remittance {}",
                payment.payment_id, remittance.claim_id, remittance.reference
            ),
            settles: Some(invoice_key(&remittance.encounter_id)),
        },
    ))
}

/// A remittance's contractual adjustment (a write-off, negative on the account): a credit
/// note of the account's partner against the claimed visit's invoice. `None` for any other
/// adjustment: those are careflow's own corrections and stay out of Odoo.
fn remitted_adjustment(
    state: &mut MappingState,
    event: &RecordedEvent,
    adjustment: &AdjustmentApplied,
) -> Option<(String, Action)> {
    if !adjustment.amount.is_negative() {
        return None;
    }
    let (remittance, _) = adjustment.adjustment_id.rsplit_once('-')?;
    let context = arrive(state, remittance, &adjustment.adjustment_id)?;
    Some((
        format!("adjustment_{}", adjustment.adjustment_id),
        Action::PostCreditNote {
            partner: partner_key(event.stream_id.id()),
            invoice_date: date_of(event),
            reference: adjustment.adjustment_id.clone(),
            label: adjustment.reason.clone(),
            amount: Cents(-adjustment.amount.0),
            settles: invoice_key(&context.encounter_id),
        },
    ))
}

/// The payer on `ClaimCreated` (once per payer), and the claim's remittances: what the claims
/// process manager will post to the account for a `ClaimResponseRecorded` of a claim it
/// holds open, under the ids it gives them.
fn map_claim(state: &mut MappingState, event: &RecordedEvent, claim_event: ClaimEvent) -> Actions {
    let claim_id = event.stream_id.id();
    match claim_event {
        ClaimEvent::ClaimCreated(created) => {
            state.claims.insert(
                claim_id.to_owned(),
                OpenClaim {
                    payer_id: created.payer_id.clone(),
                    encounter_id: created.encounter_id,
                },
            );
            if !state.payers.insert(created.payer_id.clone()) {
                return Vec::new();
            }
            let values = object(json!({
                "name": created.payer_id,
                "ref": created.payer_id,
                "is_company": true,
                "customer_rank": 1,
            }));
            vec![(payer_key(&created.payer_id), Action::UpsertPayer { values })]
        }
        ClaimEvent::ClaimResponseRecorded(response) => {
            let Some(claim) = state.claims.get(claim_id).cloned() else {
                return Vec::new();
            };
            // Paid, or paid in part: the claim's last answer (the process manager forgets it
            // too).
            if response.paid_amount.is_positive() {
                state.claims.remove(claim_id);
            }
            let remittance = remittance_id_for(event.event_id);
            let mut awaiting: BTreeSet<String> = (0..response.adjustments.len())
                .map(|n| remittance_adjustment_id(&remittance, n))
                .collect();
            if response.paid_amount.is_positive() {
                awaiting.insert(remittance.clone());
            }
            if !awaiting.is_empty() {
                state.remittances.insert(
                    remittance,
                    Remittance {
                        claim_id: claim_id.to_owned(),
                        payer_id: claim.payer_id,
                        encounter_id: claim.encounter_id,
                        reference: response.reference,
                        awaiting,
                    },
                );
            }
            Vec::new()
        }
        ClaimEvent::ClaimVoided(_) => {
            state.claims.remove(claim_id);
            Vec::new()
        }
        // A submission changes nothing Odoo holds: the claim is between careflow and the payer
        // until its money moves.
        ClaimEvent::ClaimSubmitted(_) | ClaimEvent::ClaimResubmitted(_) => Vec::new(),
    }
}

fn add_charge(state: &mut MappingState, charge: &ChargePosted) -> Actions {
    let pending = state
        .invoices
        .entry(charge.encounter_id.clone())
        .or_default();
    pending.lines.push(InvoiceLine {
        charge_id: charge.charge_id.clone(),
        label: format!("{} {}", charge.code, charge.description),
        quantity: charge.quantity,
        price_unit: charge.unit_price,
    });
    invoice_if_complete(state, &charge.encounter_id)
}

/// Emits the invoice and forgets the encounter once it is completed and every charge of its
/// procedures is posted. A completed encounter with nothing to bill is forgotten silently
/// (Odoo refuses to post an invoice without lines).
fn invoice_if_complete(state: &mut MappingState, visit: &str) -> Actions {
    let Some(pending) = state.invoices.get(visit) else {
        return Vec::new();
    };
    let Some(completion) = &pending.completion else {
        return Vec::new();
    };
    let posted: BTreeSet<&str> = pending.lines.iter().map(|l| l.charge_id.as_str()).collect();
    if !completion
        .expected
        .iter()
        .all(|id| posted.contains(id.as_str()))
    {
        return Vec::new();
    }
    let Some(pending) = state.invoices.remove(visit) else {
        return Vec::new();
    };
    let Some(completion) = pending.completion else {
        return Vec::new();
    };
    if pending.lines.is_empty() {
        return Vec::new();
    }
    vec![(
        format!("invoice_{visit}"),
        Action::PostCustomerInvoice {
            partner: partner_key(&completion.account_id),
            invoice_date: completion.invoice_date,
            reference: visit.to_owned(),
            lines: pending.lines,
        },
    )]
}

fn map_encounter(
    state: &mut MappingState,
    event: &RecordedEvent,
    encounter_event: EncounterEvent,
) -> Actions {
    let visit = event.stream_id.id();
    match encounter_event {
        EncounterEvent::EncounterCompleted(completed) => {
            let pending = state.invoices.entry(visit.to_owned()).or_default();
            pending.completion = Some(Completion {
                account_id: completed.account_id,
                invoice_date: date_of(event),
                expected: completed
                    .procedures
                    .iter()
                    .map(|procedure| charge_id_for(visit, procedure.line))
                    .collect(),
            });
            invoice_if_complete(state, visit)
        }
        // A cancelled visit is never invoiced.
        EncounterEvent::EncounterCancelled(_) => {
            state.invoices.remove(visit);
            Vec::new()
        }
        // Supplies reach Odoo through the item's `StockConsumed` (the charges process manager
        // turns each `SuppliesConsumed` into one), not from the encounter.
        EncounterEvent::EncounterScheduled(_)
        | EncounterEvent::PatientArrived(_)
        | EncounterEvent::ProcedureRecorded(_)
        | EncounterEvent::SuppliesConsumed(_)
        | EncounterEvent::PatientDischarged(_) => Vec::new(),
    }
}

fn upsert_vendor(state: &mut MappingState, vendor_id: &str) -> Option<(String, Action)> {
    if !state.vendors.insert(vendor_id.to_owned()) {
        return None;
    }
    let values = object(json!({
        "name": vendor_id,
        "ref": vendor_id,
        "is_company": true,
        "supplier_rank": 1,
    }));
    Some((vendor_key(vendor_id), Action::UpsertVendor { values }))
}

fn map_item(state: &mut MappingState, event: &RecordedEvent, item_event: ItemEvent) -> Actions {
    let item_id = event.stream_id.id();
    match item_event {
        ItemEvent::ItemDefined(defined) => define_item(state, item_id, &defined),
        ItemEvent::StockConsumed(consumed) => {
            let key = format!("consumption_{}", event.event_id);
            let origin = format!("{} {key}", consumed.reference);
            vec![(
                key,
                Action::ConsumeStock {
                    product: product_key(item_id),
                    quantity: consumed.quantity,
                    origin,
                },
            )]
        }
        // Receipts reach Odoo through the purchase order's picking (`GoodsReceived`), so the
        // `StockReceived` the purchase-stock process manager derives from them is not sent
        // again; the reorder point and replenishment are careflow's own (the Odoo rule has a
        // manual trigger); a count is careflow's correction of its own figure.
        ItemEvent::ReorderPointReached(_)
        | ItemEvent::StockReceived(_)
        | ItemEvent::StockCounted(_)
        | ItemEvent::ReplenishmentClosed(_) => Vec::new(),
    }
}

fn define_item(state: &mut MappingState, item_id: &str, defined: &ItemDefined) -> Actions {
    let mut actions: Actions = upsert_vendor(state, &defined.vendor_id)
        .into_iter()
        .collect();
    state.products.insert(item_id.to_owned());
    let values = object(json!({
        "name": defined.name,
        "default_code": item_id,
        "detailed_type": "product",
        "standard_price": money(defined.unit_cost),
        "purchase_ok": true,
        "sale_ok": false,
    }));
    actions.push((product_key(item_id), Action::UpsertProduct { values }));
    actions.push((
        format!("orderpoint_{item_id}"),
        Action::UpsertReorderRule {
            product: product_key(item_id),
            min_qty: defined.reorder_point,
            max_qty: defined
                .reorder_point
                .saturating_add(defined.reorder_quantity),
        },
    ));
    actions
}

fn order_lines(lines: &[RequestLine]) -> Vec<OrderLine> {
    lines
        .iter()
        .map(|line| OrderLine {
            product: product_key(&line.item_id),
            quantity: line.quantity,
            unit_price: line.unit_price,
        })
        .collect()
}

fn map_purchase(
    state: &mut MappingState,
    event: &RecordedEvent,
    purchase_event: PurchaseEvent,
) -> Result<Actions, ProjectionError> {
    let requisition = event.stream_id.id();
    Ok(match purchase_event {
        PurchaseEvent::PurchaseRequested(requested) => {
            let mut actions: Actions = upsert_vendor(state, &requested.vendor_id)
                .into_iter()
                .collect();
            for line in &requested.lines {
                if state.products.insert(line.item_id.clone()) {
                    // Known only by id until its `ItemDefined` (if any) names it.
                    let values = object(json!({
                        "name": line.item_id,
                        "default_code": line.item_id,
                        "detailed_type": "product",
                        "purchase_ok": true,
                        "sale_ok": false,
                    }));
                    actions.push((product_key(&line.item_id), Action::UpsertProduct { values }));
                }
            }
            state.requisitions.insert(
                requisition.to_owned(),
                OpenRequisition {
                    vendor_id: requested.vendor_id,
                    lines: requested.lines,
                    approved: false,
                    goods_received: false,
                },
            );
            actions
        }
        PurchaseEvent::PurchaseApproved(_) => {
            let open = state.requisitions.get_mut(requisition).ok_or_else(|| {
                ProjectionError::MissingContext {
                    stream_id: event.stream_id.to_string(),
                    position: event.position,
                    what: "PurchaseRequested",
                }
            })?;
            open.approved = true;
            vec![(
                order_key(requisition),
                Action::ConfirmPurchaseOrder {
                    vendor: vendor_key(&open.vendor_id),
                    partner_ref: requisition.to_owned(),
                    date_planned: event
                        .metadata
                        .occurred_at
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string(),
                    lines: order_lines(&open.lines),
                },
            )]
        }
        PurchaseEvent::GoodsReceived(received) => {
            if let Some(open) = state.requisitions.get_mut(requisition) {
                open.goods_received = true;
            }
            vec![(
                format!("receipt_{}", received.receipt_id),
                Action::ReceiveGoods {
                    order: order_key(requisition),
                    lines: received
                        .lines
                        .iter()
                        .map(|line| ReceivedLine {
                            product: product_key(&line.item_id),
                            quantity: line.quantity,
                        })
                        .collect(),
                },
            )]
        }
        PurchaseEvent::VendorBillMatched(matched) => vec![(
            format!("bill_{}", matched.bill_id),
            Action::PostVendorBill {
                order: order_key(requisition),
                reference: matched.bill_id,
                invoice_date: date_of(event),
                lines: matched
                    .lines
                    .iter()
                    .map(|line| OrderLine {
                        product: product_key(&line.item_id),
                        quantity: line.quantity,
                        unit_price: line.unit_price,
                    })
                    .collect(),
            },
        )],
        PurchaseEvent::PurchaseCancelled(cancelled) => {
            let open = state.requisitions.remove(requisition);
            let ordered = open.as_ref().is_some_and(|open| open.approved)
                || cancelled.odoo_order_ref.is_some();
            let goods_received = open.as_ref().is_some_and(|open| open.goods_received)
                || !cancelled.received.is_empty();
            if ordered {
                vec![(
                    order_key(requisition),
                    Action::CancelPurchaseOrder {
                        order: order_key(requisition),
                        goods_received,
                    },
                )]
            } else {
                Vec::new()
            }
        }
        PurchaseEvent::PurchaseRejected(_) | PurchaseEvent::PurchaseClosed(_) => {
            state.requisitions.remove(requisition);
            Vec::new()
        }
        // The order ref is the executor's own answer; an escalation and a mismatched bill
        // change nothing in Odoo (a mismatched bill is not posted).
        PurchaseEvent::ApprovalEscalated(_)
        | PurchaseEvent::PurchaseOrderPlaced(_)
        | PurchaseEvent::VendorBillMismatched(_) => Vec::new(),
    })
}
