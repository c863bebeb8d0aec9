//! [`OdooIntent`]: one record-level change Odoo must come to hold because of one event.
//!
//! An intent names its record by external id (module [`MODULE`], the names pinned in DESIGN.md
//! "Projections") and says what to do with it, in careflow's terms: amounts are [`Cents`],
//! quantities whole units, references to other records are external id *names* (e.g.
//! `partner_MRN1`), never Odoo database ids, which only the executor learns. Intents are a
//! contract between this crate and the executor (they are also kept in dead letters), hence
//! serde.

use careflow_aggregates::Cents;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The `ir.model.data` module of every record careflow creates in Odoo.
pub const MODULE: &str = "careflow";

/// `careflow.{name}`: the complete external id of a careflow record. Odoo splits a complete
/// xmlid at its first dot only, so `name` may itself hold dots.
pub fn complete_xmlid(name: &str) -> String {
    format!("{MODULE}.{name}")
}

/// One record-level change Odoo must come to hold because of one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OdooIntent {
    /// `{event_id}/{n}` (n = index among the event's intents): stable across replays, so the
    /// executor and its dead letters can recognise an intent they have seen.
    pub id: String,
    /// The event this intent comes from.
    pub event_id: Uuid,
    /// That event's global position (the executor's checkpoint unit).
    pub position: u64,
    /// The external id name (module `careflow`) of the record this intent creates or changes:
    /// the ordering key. Intents with the same key run in log order, and wait behind a
    /// dead-lettered one; different keys may run concurrently.
    pub key: String,
    /// Odoo model of `key` (e.g. `res.partner`).
    pub model: String,
    pub action: Action,
}

/// Which payment terms a customer gets: chosen by whether the payer confirmed coverage.
///
/// Terms are Odoo records, referred to by the external ids of the terms the `account` module
/// installs (present in every Odoo 17.0 database with invoicing), so careflow creates none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentTerms {
    /// The account was activated (coverage verified): the patient's share is due in 30 days,
    /// leaving time for the payer's remittance.
    Insured,
    /// The account was flagged self-pay: due on receipt.
    SelfPay,
}

impl PaymentTerms {
    /// The complete external id of the `account.payment.term` record.
    pub fn xmlid(self) -> &'static str {
        match self {
            PaymentTerms::Insured => "account.account_payment_term_30days",
            PaymentTerms::SelfPay => "account.account_payment_term_immediate",
        }
    }
}

/// One invoice line: one posted charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceLine {
    /// careflow's charge id (kept for reconciliation; not sent as a field of its own).
    pub charge_id: String,
    /// The line label: `{code} {description}` of the charge (no personal data: codes and
    /// procedure descriptions live outside `personal`).
    pub label: String,
    pub quantity: u32,
    pub price_unit: Cents,
}

/// One purchase order or vendor bill line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// External id name of the `product.product` (`product_{item_id}`).
    pub product: String,
    pub quantity: u32,
    pub unit_price: Cents,
}

/// One received quantity of one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedLine {
    /// External id name of the `product.product` (`product_{item_id}`).
    pub product: String,
    pub quantity: u32,
}

/// What to do with the intent's record. The `values` maps hold only plain fields (no Odoo
/// ids); fields that point at other records are named separately and resolved by the call
/// builders ([`crate::odoo::calls`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// `res.partner` customer, key `partner_{mrn}`: create or write `values` (`name` and `ref`
    /// are the MRN, see docs/odoo.md "Privacy"). `payment_terms`, when set, becomes the
    /// partner's `property_payment_term_id`; `None` leaves the terms as they are (Odoo's
    /// default on create).
    UpsertPartner {
        values: Map<String, Value>,
        payment_terms: Option<PaymentTerms>,
    },
    /// `res.partner` customer of a merged account, key `partner_{mrn}`: archived
    /// (`active: false`) under the survivor (`parent_id` = the survivor's partner), so its
    /// invoices and payments stay where they are and are reached from the survivor (Odoo's
    /// `commercial_partner_id` of a child contact is its parent's). Created archived when
    /// the partner never reached Odoo.
    ArchivePartner {
        /// The merged MRN (`ref`, and the name should the partner have to be created).
        mrn: String,
        /// External id name of the survivor's customer (`partner_{mrn}`).
        into: String,
    },
    /// `res.partner` supplier, key `vendor_{vendor_id}`.
    UpsertVendor { values: Map<String, Value> },
    /// `res.partner` company customer, key `payer_{payer_id}`: the insurer whose remittances
    /// are its payments (`ref` = payer id, `is_company`). The payer id is the payer's
    /// identifier, not personal data.
    UpsertPayer { values: Map<String, Value> },
    /// `product.product` (storable), key `product_{item_id}`; `default_code` = item id.
    UpsertProduct { values: Map<String, Value> },
    /// `stock.warehouse.orderpoint`, key `orderpoint_{item_id}`, on the default warehouse's
    /// stock location. Manual trigger: careflow raises replenishments itself.
    UpsertReorderRule {
        /// External id name of the product.
        product: String,
        min_qty: u32,
        max_qty: u32,
    },
    /// `account.move` `out_invoice`, key `invoice_{visit}`: create (draft), then `action_post`.
    /// Every line has `tax_ids: []` so Odoo's total equals what careflow billed.
    PostCustomerInvoice {
        /// External id name of the customer (`partner_{mrn}`).
        partner: String,
        /// `YYYY-MM-DD`: the business date of the event that completed the invoice.
        invoice_date: String,
        /// The visit number: the invoice's `ref` (its natural key in Odoo).
        reference: String,
        lines: Vec<InvoiceLine>,
    },
    /// `account.payment`, key `payment_{payment_id}`: the `account.payment.register` wizard
    /// against the partner's open posted customer invoices, or, when none is open, a posted
    /// unreconciled inbound payment (an outstanding credit Odoo offers on the next invoice).
    ///
    /// With `settles` (a payer's remittance): a posted inbound payment of `partner` (the payer)
    /// reconciled against that one invoice, whose customer is the patient: the wizard only
    /// pays invoices of the payment's own partner.
    RegisterPayment {
        /// External id name of the paying customer (`partner_{mrn}`, or `payer_{payer_id}`).
        partner: String,
        amount: Cents,
        /// `YYYY-MM-DD`.
        payment_date: String,
        /// The payment's `ref` (its natural key in Odoo): the payment id, followed for a
        /// remittance by the claim and the payer's reference.
        memo: String,
        /// External id name of the invoice this payment settles (`invoice_{visit}`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        settles: Option<String>,
    },
    /// `account.move` `out_refund`, key `adjustment_{adjustment_id}`: a contractual adjustment
    /// of a remittance as a customer credit note of one line (`tax_ids: []`), posted, then
    /// reconciled against the invoice of the claimed visit, so the invoice's residual is what
    /// the patient still owes.
    PostCreditNote {
        /// External id name of the customer (`partner_{mrn}`, the account the adjustment is on).
        partner: String,
        /// `YYYY-MM-DD`: the adjustment's business date.
        invoice_date: String,
        /// The adjustment id: the credit note's `ref` (its natural key in Odoo).
        reference: String,
        /// The line label: the adjustment's reason (its reason code and the claim).
        label: String,
        /// What is written off, positive.
        amount: Cents,
        /// External id name of the invoice it credits (`invoice_{visit}`).
        settles: String,
    },
    /// `purchase.order`, key `po_{requisition}`: create then `button_confirm`; afterwards the
    /// executor sends `RecordPurchaseOrder {odoo_order_ref}` to the purchase aggregate.
    ConfirmPurchaseOrder {
        /// External id name of the vendor (`vendor_{vendor_id}`).
        vendor: String,
        /// The requisition number: the order's `partner_ref` (its natural key in Odoo).
        partner_ref: String,
        /// `YYYY-MM-DD HH:MM:SS` (UTC): the approval's business time.
        date_planned: String,
        lines: Vec<OrderLine>,
    },
    /// The validated `stock.picking`, key `receipt_{receipt_id}`: set `quantity` on the
    /// order's open receipt moves, `button_validate`; a partial receipt keeps a backorder
    /// (context `skip_backorder`).
    ReceiveGoods {
        /// External id name of the order (`po_{requisition}`).
        order: String,
        lines: Vec<ReceivedLine>,
    },
    /// `account.move` `in_invoice`, key `bill_{bill_id}`: `action_create_invoice` on the order
    /// (Odoo bills what was received), write `invoice_date` and `ref`, `action_post`.
    PostVendorBill {
        /// External id name of the order (`po_{requisition}`).
        order: String,
        /// The bill id: the bill's `ref`.
        reference: String,
        /// `YYYY-MM-DD`.
        invoice_date: String,
        /// The matched lines, for checking what Odoo billed.
        lines: Vec<OrderLine>,
    },
    /// Key `po_{requisition}`: `button_cancel` (no `result` key in 17.0). When goods were
    /// already received Odoo refuses to cancel; then the open receipts are cancelled and the
    /// order locked (`button_done`) instead, and the received stock leaves through careflow's
    /// compensating consumption (a [`Action::ConsumeStock`]).
    CancelPurchaseOrder {
        /// External id name of the order (`po_{requisition}`).
        order: String,
        goods_received: bool,
    },
    /// Key `consumption_{event_id}`: an outgoing `stock.picking` (create with one move,
    /// `action_confirm`, `action_assign`, set `quantity`, `button_validate`).
    ConsumeStock {
        /// External id name of the product.
        product: String,
        quantity: u32,
        /// The picking's `origin`: `{reference} {key}` (the visit or requisition, then the
        /// key, which makes it the picking's natural key).
        origin: String,
    },
}

impl Action {
    /// The Odoo model of the record the intent's key names.
    pub fn model(&self) -> &'static str {
        match self {
            Action::UpsertPartner { .. }
            | Action::ArchivePartner { .. }
            | Action::UpsertVendor { .. }
            | Action::UpsertPayer { .. } => "res.partner",
            Action::UpsertProduct { .. } => "product.product",
            Action::UpsertReorderRule { .. } => "stock.warehouse.orderpoint",
            Action::PostCustomerInvoice { .. }
            | Action::PostCreditNote { .. }
            | Action::PostVendorBill { .. } => "account.move",
            Action::RegisterPayment { .. } => "account.payment",
            Action::ConfirmPurchaseOrder { .. } | Action::CancelPurchaseOrder { .. } => {
                "purchase.order"
            }
            Action::ReceiveGoods { .. } | Action::ConsumeStock { .. } => "stock.picking",
        }
    }

    /// The complete external ids this intent's calls need resolved to Odoo ids (careflow
    /// records it depends on, and Odoo's own data such as payment terms or stock locations).
    /// The executor resolves them (and may wait for careflow's to exist) before building
    /// calls; a builder given an unresolved one answers [`crate::odoo::MissingRef`].
    pub fn refs(&self) -> Vec<String> {
        let mut refs = self.all_refs();
        let mut seen = std::collections::BTreeSet::new();
        refs.retain(|xmlid| seen.insert(xmlid.clone()));
        refs
    }

    /// [`Action::refs`] with repeats (two lines of one product).
    fn all_refs(&self) -> Vec<String> {
        match self {
            Action::UpsertPartner { payment_terms, .. } => payment_terms
                .iter()
                .map(|terms| terms.xmlid().to_owned())
                .collect(),
            Action::ArchivePartner { into, .. } => vec![complete_xmlid(into)],
            Action::UpsertVendor { .. }
            | Action::UpsertPayer { .. }
            | Action::UpsertProduct { .. } => Vec::new(),
            Action::UpsertReorderRule { product, .. } => vec![complete_xmlid(product)],
            Action::PostCustomerInvoice { partner, .. } => vec![complete_xmlid(partner)],
            Action::RegisterPayment {
                partner, settles, ..
            } => std::iter::once(partner)
                .chain(settles)
                .map(|name| complete_xmlid(name))
                .collect(),
            Action::PostCreditNote {
                partner, settles, ..
            } => vec![complete_xmlid(partner), complete_xmlid(settles)],
            Action::ConfirmPurchaseOrder { vendor, lines, .. } => {
                let mut refs = vec![complete_xmlid(vendor)];
                refs.extend(lines.iter().map(|line| complete_xmlid(&line.product)));
                refs
            }
            Action::ReceiveGoods { order, lines } => {
                let mut refs = vec![complete_xmlid(order)];
                refs.extend(lines.iter().map(|line| complete_xmlid(&line.product)));
                refs
            }
            Action::PostVendorBill { order, .. } | Action::CancelPurchaseOrder { order, .. } => {
                vec![complete_xmlid(order)]
            }
            Action::ConsumeStock { product, .. } => vec![
                complete_xmlid(product),
                crate::odoo::calls::OUTGOING_TYPE.to_owned(),
                crate::odoo::calls::STOCK_LOCATION.to_owned(),
                crate::odoo::calls::CONSUMPTION_LOCATION.to_owned(),
                crate::odoo::calls::UNIT_UOM.to_owned(),
            ],
        }
    }
}
