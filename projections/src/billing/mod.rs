//! The billing view: what each account owes and why, claim lines per encounter, accounts
//! receivable by age, and one reconciliation row per invoice careflow expects Odoo to hold.
//!
//! It reads `patient_account` streams (money and status) and `encounter` streams (completion,
//! which makes an encounter invoiceable). It holds no personal data: names, birth dates,
//! member ids and payers are never copied into a row. It does not talk to Odoo: the Odoo
//! fields of [`InvoiceReconciliation`] come from the `OdooRecordAcknowledged` events the Odoo
//! executor appends to `odoo-invoice_{visit}` streams after posting an invoice
//! ([`crate::odoo::OdooRecordAcknowledged`]). Aging is a query ([`aging`]) over the stored open items, because its
//! "as of" date is the reader's, not the log's.

mod receivables;

use std::collections::BTreeMap;

use careflow_aggregates::encounter::Event as EncounterEvent;
use careflow_aggregates::patient_account::{
    AdjustmentApplied, ChargePosted, Event as AccountEvent, PatientAccountMergedIn, PaymentMethod,
    PaymentRecorded,
};
use careflow_aggregates::{Cents, Currency, RecordedEvent, Total};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use receivables::{AccountAging, AgingBuckets, AgingReport, OpenItem, Receivables, aging};

use crate::error::ProjectionError;
use crate::odoo::OdooRecordAcknowledged;
use crate::projection::{Decoded, Projection, decode};
use crate::store::{ViewStore, load, save, save_owned, take};

/// Key: the MRN. One [`AccountRow`] per registered account.
pub const ACCOUNTS: &str = "billing_accounts";
/// Key: `{mrn}/{charge_id}`. One [`ChargeRow`] per posted charge.
pub const CHARGES: &str = "billing_charges";
/// Key: `{mrn}/{payment_id}`. One [`PaymentRow`] per payment.
pub const PAYMENTS: &str = "billing_payments";
/// Key: `{mrn}/{adjustment_id}`. One [`AdjustmentRow`] per adjustment.
pub const ADJUSTMENTS: &str = "billing_adjustments";
/// Key: `{encounter_id}/{charge_id}`. One [`ClaimLine`] per charge, grouped by encounter.
pub const CLAIM_LINES: &str = "billing_claim_lines";
/// Key: the MRN. One [`Receivables`] row (open items for FIFO and aging) per account.
pub const RECEIVABLES: &str = "billing_receivables";
/// Key: the encounter id (visit). One [`InvoiceReconciliation`] per (future) invoice.
pub const RECONCILIATION: &str = "billing_reconciliation";

/// The billing projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Billing;

impl Projection for Billing {
    fn name(&self) -> &'static str {
        "billing"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            ACCOUNTS,
            CHARGES,
            PAYMENTS,
            ADJUSTMENTS,
            CLAIM_LINES,
            RECEIVABLES,
            RECONCILIATION,
        ]
    }

    fn apply(
        &self,
        store: &mut dyn ViewStore,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        match decode(event)? {
            Decoded::PatientAccount(account_event) => apply_account(store, event, &account_event),
            Decoded::Encounter(encounter_event) => apply_encounter(store, event, &encounter_event),
            Decoded::Internal => match OdooRecordAcknowledged::decode(event)? {
                Some(ack) => apply_acknowledgement(store, &ack),
                None => Ok(()),
            },
            // Stock and purchasing are payables and inventory, not what patients owe; claims
            // have their own view (`claims`), and their money reaches the account as payments
            // and adjustments.
            Decoded::InventoryItem(_)
            | Decoded::Purchase(_)
            | Decoded::Claim(_)
            | Decoded::Roster(_)
            | Decoded::Staffing(_) => Ok(()),
        }
    }
}

/// An account's money at a glance. `balance = charged - paid + adjusted`, as the aggregate
/// computes it. Sums are [`Total`]s: `charged` and `paid` only grow, whatever the balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRow {
    pub account_id: String,
    /// `registered | active | self_pay | closed | merged`.
    pub status: String,
    pub facility: String,
    /// Fixed by the first amount, as in the aggregate; `None` until then.
    pub currency: Option<Currency>,
    pub balance: Total,
    pub charged: Total,
    pub paid: Total,
    /// Signed sum of adjustments.
    pub adjusted: Total,
    pub charge_count: u64,
    pub payment_count: u64,
    pub adjustment_count: u64,
    /// Stream version of the last event applied (compare with the aggregate's `version`).
    pub version: u64,
    /// Global position of the last event applied.
    pub position: u64,
    /// The survivor's MRN once this account was merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    /// The MRNs merged into this account, whose money and rows it now holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
}

impl AccountRow {
    fn new(account_id: &str) -> Self {
        Self {
            account_id: account_id.to_owned(),
            status: "registered".to_owned(),
            facility: String::new(),
            currency: None,
            balance: Total::ZERO,
            charged: Total::ZERO,
            paid: Total::ZERO,
            adjusted: Total::ZERO,
            charge_count: 0,
            payment_count: 0,
            adjustment_count: 0,
            version: 0,
            position: 0,
            merged_into: None,
            merged_from: Vec::new(),
        }
    }
}

/// A posted charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRow {
    pub account_id: String,
    pub charge_id: String,
    pub encounter_id: String,
    pub code: String,
    pub description: String,
    pub quantity: u32,
    pub unit_price: Cents,
    pub amount: Cents,
    pub currency: Currency,
    /// Business time; A/R ages from here.
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub position: u64,
}

/// A payment. Who paid (`payer`) is personal data and is not kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRow {
    pub account_id: String,
    pub payment_id: String,
    pub amount: Cents,
    pub currency: Currency,
    pub method: PaymentMethod,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub position: u64,
}

/// A signed adjustment (positive raises the balance, negative writes off).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustmentRow {
    pub account_id: String,
    pub adjustment_id: String,
    pub amount: Cents,
    pub currency: Currency,
    pub reason: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub position: u64,
}

/// One line of an encounter's claim: a charge that names the encounter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimLine {
    pub encounter_id: String,
    pub charge_id: String,
    pub account_id: String,
    pub code: String,
    pub description: String,
    pub quantity: u32,
    pub unit_price: Cents,
    pub amount: Cents,
    pub currency: Currency,
    pub occurred_at: DateTime<Utc>,
}

/// What careflow billed for one encounter, beside what Odoo acknowledged for the invoice
/// `invoice_{visit}`.
///
/// careflow's side comes from this projection: the encounter's completion and every charge
/// naming it. The `odoo` side is empty (`null`) until the Odoo runner reports the invoice; this
/// projection preserves whatever is there when it rewrites the row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceReconciliation {
    /// The pinned Odoo external id, `invoice_{visit}` (module `careflow`).
    pub external_id: String,
    pub encounter_id: String,
    /// From `EncounterCompleted`, else from the first charge.
    pub account_id: Option<String>,
    pub facility: Option<String>,
    /// Business time of `EncounterCompleted`; `None` while the encounter is not complete (an
    /// invoice is posted only for completed encounters).
    pub completed_at: Option<DateTime<Utc>>,
    /// Sum of the procedures the encounter recorded, in its currency (what charges are
    /// expected to add up to once the process manager has posted them).
    pub procedures_total: Option<Total>,
    /// Sum of the charges naming this encounter, per currency (an account has one currency,
    /// but two accounts could name the same visit, and amounts in two currencies never add).
    pub billed: BTreeMap<Currency, Total>,
    pub billed_lines: u64,
    /// `open` (not completed, nothing acknowledged), `awaiting_odoo` (completed, nothing
    /// acknowledged), `acknowledged` (Odoo's `amount_total` equals what careflow billed) or
    /// `mismatch` (it does not, careflow billed in more than one currency, or Odoo's invoice
    /// is cancelled). See [`InvoiceReconciliation::settle_status`].
    pub status: String,
    pub odoo: OdooInvoice,
}

/// The invoice as Odoo acknowledged it (the latest acknowledgement); empty until then.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OdooInvoice {
    /// `account.move` id.
    pub id: Option<i64>,
    /// Odoo's invoice number (`name`, e.g. `INV/2025/00001`).
    pub name: Option<String>,
    pub amount_total: Option<Cents>,
    /// Odoo's `state` (`draft | posted | cancel`).
    pub state: Option<String>,
}

impl InvoiceReconciliation {
    fn new(encounter_id: &str) -> Self {
        Self {
            external_id: format!("invoice_{encounter_id}"),
            encounter_id: encounter_id.to_owned(),
            account_id: None,
            facility: None,
            completed_at: None,
            procedures_total: None,
            billed: BTreeMap::new(),
            billed_lines: 0,
            status: "open".to_owned(),
            odoo: OdooInvoice::default(),
        }
    }

    /// Sets `status` from the row's facts, so it is right whichever of completion, charges
    /// and acknowledgement came last: a charge posted after Odoo acknowledged the invoice
    /// turns an `acknowledged` row into a `mismatch`.
    fn settle_status(&mut self) {
        let status = match (self.odoo.amount_total, self.completed_at) {
            (Some(amount_total), _) => {
                let mut billed = self.billed.values();
                let amounts_agree = match (billed.next(), billed.next()) {
                    (Some(only), None) => *only == Total::from(amount_total),
                    (None, _) => amount_total.is_zero(),
                    // Odoo's one total cannot equal amounts in two currencies.
                    (Some(_), Some(_)) => false,
                };
                let cancelled = self.odoo.state.as_deref() == Some("cancel");
                if amounts_agree && !cancelled {
                    "acknowledged"
                } else {
                    "mismatch"
                }
            }
            (None, Some(_)) => "awaiting_odoo",
            (None, None) => "open",
        };
        status.clone_into(&mut self.status);
    }
}

fn apply_account(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    account_event: &AccountEvent,
) -> Result<(), ProjectionError> {
    let mrn = event.stream_id.id();
    // Taken, not copied: every path below ends in `save`.
    let mut account =
        take::<AccountRow>(store, ACCOUNTS, mrn)?.unwrap_or_else(|| AccountRow::new(mrn));
    let overflow = || ProjectionError::Overflow {
        table: ACCOUNTS,
        position: event.position,
    };
    match account_event {
        AccountEvent::PatientRegistered(registered) => {
            account.status = "registered".to_owned();
            account.facility.clone_from(&registered.facility);
        }
        AccountEvent::DemographicsUpdated(update) => {
            if let Some(facility) = &update.facility {
                account.facility.clone_from(facility);
            }
        }
        // Eligibility is recorded, but the status only changes with the next two events.
        AccountEvent::EligibilityVerified(_) | AccountEvent::EligibilityDenied(_) => {}
        AccountEvent::AccountActivated(_) => account.status = "active".to_owned(),
        AccountEvent::AccountFlaggedSelfPay(_) => account.status = "self_pay".to_owned(),
        AccountEvent::AccountClosed(_) => account.status = "closed".to_owned(),
        // The money stays on the merged row until the survivor's `PatientAccountMergedIn`
        // takes it over, so no reader ever sees it on both accounts or on neither.
        AccountEvent::PatientMerged(merged) => {
            account.status = "merged".to_owned();
            account.merged_into = Some(merged.into.clone());
        }
        AccountEvent::PatientAccountMergedIn(merged_in) => {
            take_over(store, event, &mut account, merged_in)?;
        }
        // Billing holds no personal data, so there is nothing to forget.
        AccountEvent::PersonalDataErased(_) => {}
        AccountEvent::ChargePosted(charge) => {
            account.currency = Some(charge.currency);
            account.charged = account
                .charged
                .checked_add(charge.amount)
                .ok_or_else(overflow)?;
            account.balance = account
                .balance
                .checked_add(charge.amount)
                .ok_or_else(overflow)?;
            account.charge_count += 1;
            record_charge(store, event, mrn, charge)?;
        }
        AccountEvent::PaymentRecorded(payment) => {
            account.currency = Some(payment.currency);
            account.paid = account
                .paid
                .checked_add(payment.amount)
                .ok_or_else(overflow)?;
            account.balance = account
                .balance
                .checked_sub(payment.amount)
                .ok_or_else(overflow)?;
            account.payment_count += 1;
            record_payment(store, event, mrn, payment)?;
        }
        AccountEvent::AdjustmentApplied(adjustment) => {
            account.currency = Some(adjustment.currency);
            account.adjusted = account
                .adjusted
                .checked_add(adjustment.amount)
                .ok_or_else(overflow)?;
            account.balance = account
                .balance
                .checked_add(adjustment.amount)
                .ok_or_else(overflow)?;
            account.adjustment_count += 1;
            record_adjustment(store, event, mrn, adjustment)?;
        }
    }
    account.version = event.version;
    account.position = event.position;
    save_owned(store, ACCOUNTS, mrn, account)
}

/// The survivor takes over the merged account's totals and rows: its charges, payments and
/// adjustments (re-keyed under the survivor), its claim lines and invoices (which now name the
/// survivor) and its open items. The merged row keeps its counts at zero, so a sum over
/// accounts counts every amount once.
fn take_over(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    survivor: &mut AccountRow,
    merged_in: &PatientAccountMergedIn,
) -> Result<(), ProjectionError> {
    let from = merged_in.from.as_str();
    let into = survivor.account_id.clone();
    let overflow = || ProjectionError::Overflow {
        table: ACCOUNTS,
        position: event.position,
    };
    if let Some(mut merged) = take::<AccountRow>(store, ACCOUNTS, from)? {
        survivor.balance = survivor
            .balance
            .checked_add(merged.balance)
            .ok_or_else(overflow)?;
        survivor.charged = survivor
            .charged
            .checked_add(merged.charged)
            .ok_or_else(overflow)?;
        survivor.paid = survivor
            .paid
            .checked_add(merged.paid)
            .ok_or_else(overflow)?;
        survivor.adjusted = survivor
            .adjusted
            .checked_add(merged.adjusted)
            .ok_or_else(overflow)?;
        survivor.charge_count += merged.charge_count;
        survivor.payment_count += merged.payment_count;
        survivor.adjustment_count += merged.adjustment_count;
        if survivor.currency.is_none() {
            survivor.currency = merged.currency;
        }
        merged.balance = Total::ZERO;
        merged.charged = Total::ZERO;
        merged.paid = Total::ZERO;
        merged.adjusted = Total::ZERO;
        merged.charge_count = 0;
        merged.payment_count = 0;
        merged.adjustment_count = 0;
        save_owned(store, ACCOUNTS, from, merged)?;
    }
    survivor.merged_from.push(from.to_owned());
    // The rows are found by the ids the event lists (the overlay a projection writes through
    // has no range scans while it applies an event).
    let moved = &merged_in.moved;
    for charge in &moved.charges {
        let Some(mut row) =
            take::<ChargeRow>(store, CHARGES, &format!("{from}/{}", charge.charge_id))?
        else {
            continue;
        };
        store.delete(CHARGES, &format!("{from}/{}", charge.charge_id))?;
        row.account_id.clone_from(&into);
        let line_key = format!("{}/{}", row.encounter_id, row.charge_id);
        if let Some(mut line) = take::<ClaimLine>(store, CLAIM_LINES, &line_key)? {
            line.account_id.clone_from(&into);
            save_owned(store, CLAIM_LINES, &line_key, line)?;
        }
        let visit = row.encounter_id.clone();
        if let Some(mut invoice) = take::<InvoiceReconciliation>(store, RECONCILIATION, &visit)? {
            if invoice.account_id.as_deref() == Some(from) {
                invoice.account_id = Some(into.clone());
            }
            save_owned(store, RECONCILIATION, &visit, invoice)?;
        }
        let key = format!("{into}/{}", row.charge_id);
        save_owned(store, CHARGES, &key, row)?;
    }
    for payment in &moved.payments {
        move_row::<PaymentRow>(store, PAYMENTS, from, &into, &payment.payment_id, |row| {
            &mut row.account_id
        })?;
    }
    for adjustment in &moved.adjustments {
        move_row::<AdjustmentRow>(
            store,
            ADJUSTMENTS,
            from,
            &into,
            &adjustment.adjustment_id,
            |row| &mut row.account_id,
        )?;
    }
    receivables::take_over(store, event, from, &into)
}

/// Re-keys the row `{from}/{id}` of `table` as `{into}/{id}`, naming `into` as its account.
fn move_row<T: DeserializeOwned + Serialize + Send + 'static>(
    store: &mut dyn ViewStore,
    table: &'static str,
    from: &str,
    into: &str,
    id: &str,
    account: impl Fn(&mut T) -> &mut String,
) -> Result<(), ProjectionError> {
    let old = format!("{from}/{id}");
    let Some(mut row) = take::<T>(store, table, &old)? else {
        return Ok(());
    };
    store.delete(table, &old)?;
    into.clone_into(account(&mut row));
    save_owned(store, table, &format!("{into}/{id}"), row)
}

fn record_charge(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    mrn: &str,
    charge: &ChargePosted,
) -> Result<(), ProjectionError> {
    let occurred_at = event.metadata.occurred_at;
    let row = ChargeRow {
        account_id: mrn.to_owned(),
        charge_id: charge.charge_id.clone(),
        encounter_id: charge.encounter_id.clone(),
        code: charge.code.clone(),
        description: charge.description.clone(),
        quantity: charge.quantity,
        unit_price: charge.unit_price,
        amount: charge.amount,
        currency: charge.currency,
        occurred_at,
        recorded_at: event.metadata.recorded_at,
        position: event.position,
    };
    save_owned(store, CHARGES, &format!("{mrn}/{}", charge.charge_id), row)?;

    let line = ClaimLine {
        encounter_id: charge.encounter_id.clone(),
        charge_id: charge.charge_id.clone(),
        account_id: mrn.to_owned(),
        code: charge.code.clone(),
        description: charge.description.clone(),
        quantity: charge.quantity,
        unit_price: charge.unit_price,
        amount: charge.amount,
        currency: charge.currency,
        occurred_at,
    };
    let line_key = format!("{}/{}", charge.encounter_id, charge.charge_id);
    save_owned(store, CLAIM_LINES, &line_key, line)?;

    let mut invoice = take::<InvoiceReconciliation>(store, RECONCILIATION, &charge.encounter_id)?
        .unwrap_or_else(|| InvoiceReconciliation::new(&charge.encounter_id));
    if invoice.account_id.is_none() {
        invoice.account_id = Some(mrn.to_owned());
    }
    let billed = invoice.billed.entry(charge.currency).or_insert(Total::ZERO);
    *billed = billed
        .checked_add(charge.amount)
        .ok_or(ProjectionError::Overflow {
            table: RECONCILIATION,
            position: event.position,
        })?;
    invoice.billed_lines += 1;
    invoice.settle_status();
    save_owned(store, RECONCILIATION, &charge.encounter_id, invoice)?;

    receivables::debit(
        store,
        event,
        mrn,
        OpenItem::new(
            "charge",
            &charge.charge_id,
            occurred_at,
            event.position,
            charge.amount,
        ),
        charge.currency,
    )
}

fn record_payment(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    mrn: &str,
    payment: &PaymentRecorded,
) -> Result<(), ProjectionError> {
    let row = PaymentRow {
        account_id: mrn.to_owned(),
        payment_id: payment.payment_id.clone(),
        amount: payment.amount,
        currency: payment.currency,
        method: payment.method,
        occurred_at: event.metadata.occurred_at,
        recorded_at: event.metadata.recorded_at,
        position: event.position,
    };
    save_owned(
        store,
        PAYMENTS,
        &format!("{mrn}/{}", payment.payment_id),
        row,
    )?;
    receivables::credit(store, event, mrn, payment.amount, payment.currency)
}

fn record_adjustment(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    mrn: &str,
    adjustment: &AdjustmentApplied,
) -> Result<(), ProjectionError> {
    let row = AdjustmentRow {
        account_id: mrn.to_owned(),
        adjustment_id: adjustment.adjustment_id.clone(),
        amount: adjustment.amount,
        currency: adjustment.currency,
        reason: adjustment.reason.clone(),
        occurred_at: event.metadata.occurred_at,
        recorded_at: event.metadata.recorded_at,
        position: event.position,
    };
    let key = format!("{mrn}/{}", adjustment.adjustment_id);
    save_owned(store, ADJUSTMENTS, &key, row)?;
    if adjustment.amount.is_negative() {
        // A write-off settles the oldest open items, exactly like a payment.
        let amount = Cents(0)
            .checked_sub(adjustment.amount)
            .ok_or(ProjectionError::Overflow {
                table: RECEIVABLES,
                position: event.position,
            })?;
        receivables::credit(store, event, mrn, amount, adjustment.currency)
    } else {
        // A positive adjustment is a new debit, aged from its own date.
        let item = OpenItem::new(
            "adjustment",
            &adjustment.adjustment_id,
            event.metadata.occurred_at,
            event.position,
            adjustment.amount,
        );
        receivables::debit(store, event, mrn, item, adjustment.currency)
    }
}

fn apply_encounter(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    encounter_event: &EncounterEvent,
) -> Result<(), ProjectionError> {
    match encounter_event {
        EncounterEvent::EncounterCompleted(completed) => {
            let visit = event.stream_id.id();
            let mut invoice = load::<InvoiceReconciliation>(store, RECONCILIATION, visit)?
                .unwrap_or_else(|| InvoiceReconciliation::new(visit));
            let procedures_total = completed
                .procedures
                .iter()
                .try_fold(Total::ZERO, |sum, procedure| {
                    sum.checked_add(procedure.amount)
                })
                .ok_or(ProjectionError::Overflow {
                    table: RECONCILIATION,
                    position: event.position,
                })?;
            invoice.account_id = Some(completed.account_id.clone());
            invoice.facility = Some(completed.facility.clone());
            invoice.completed_at = Some(event.metadata.occurred_at);
            invoice.procedures_total = Some(procedures_total);
            invoice.settle_status();
            save(store, RECONCILIATION, visit, &invoice)
        }
        // Only completion makes an encounter invoiceable; charges arrive on the account.
        EncounterEvent::EncounterScheduled(_)
        | EncounterEvent::PatientArrived(_)
        | EncounterEvent::ProcedureRecorded(_)
        | EncounterEvent::SuppliesConsumed(_)
        | EncounterEvent::PatientDischarged(_)
        | EncounterEvent::EncounterCancelled(_) => Ok(()),
    }
}

/// Folds what Odoo acknowledged for `invoice_{visit}` into that visit's row. Other records'
/// acknowledgements (none are written today) are not billing's.
fn apply_acknowledgement(
    store: &mut dyn ViewStore,
    ack: &OdooRecordAcknowledged,
) -> Result<(), ProjectionError> {
    let Some(visit) = ack.external_id.strip_prefix("invoice_") else {
        return Ok(());
    };
    let mut invoice = take::<InvoiceReconciliation>(store, RECONCILIATION, visit)?
        .unwrap_or_else(|| InvoiceReconciliation::new(visit));
    invoice.odoo = OdooInvoice {
        id: Some(ack.odoo_id),
        name: Some(ack.name.clone()),
        amount_total: Some(ack.amount_total),
        state: Some(ack.state.clone()),
    };
    invoice.settle_status();
    save_owned(store, RECONCILIATION, visit, invoice)
}

#[cfg(test)]
mod tests;
