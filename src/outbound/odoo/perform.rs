//! One intent as Odoo calls, safe to run again at any point.
//!
//! Every action starts by looking its external id up (module `careflow`). A record found is
//! reused (upserts write their values again); otherwise the record's natural key (`ref`,
//! `default_code`, `partner_ref`, `origin`) finds what an earlier attempt created before it
//! died; only then is it created, and its external id written right after. When that write
//! loses the unique-index race (`ir_model_data_module_name_uniq_index`), the winner's record is
//! used (API-NOTES §3.3).
//!
//! The multi-step actions read the record's state before each step, so a repeat skips what is
//! done: a posted invoice is not posted again, a done picking is not validated again, a
//! confirmed order is not confirmed again. A receipt's and a consumption's external id is
//! written *before* the picking is validated, naming the picking being validated, so a repeat
//! finds that picking (done, or still to validate) rather than validating the backorder.
//!
//! The wire calls come from `careflow_projections::odoo::calls` where it builds them (their
//! unit tests pin the exact `execute_kw`); the reads and state transitions the builders do
//! not cover are built here, in the same shape.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use careflow_aggregates::purchase::{Command as PurchaseCommand, RecordPurchaseOrder};
use careflow_aggregates::{Aggregate, PatientAccount, PurchaseWorkflow, StreamId};
use careflow_projections::odoo::ack::ACK_STREAM_KIND;
use careflow_projections::odoo::calls::{self, ReceivableLine, xmlid_lookup_complete};
use careflow_projections::odoo::{
    Action, Call, MissingRef, OdooIntent, OdooRecordAcknowledged, complete_xmlid, xmlid_create,
    xmlid_lookup,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::client::{ErrorClass, OdooClient, OdooError};
use crate::clock::Clock;
use crate::config::PartnerDetails;
use crate::runtime::actors::{CommandContext, CommandError, Registry};
use crate::store::internal::{self, Recorder};
use crate::store::{EventStore, ExpectedVersion};

/// The principal and source of what the executor writes to the log.
pub const PRINCIPAL: &str = "odoo_executor";

/// Why an intent did not complete.
#[derive(Debug, thiserror::Error)]
pub enum IntentError {
    #[error(transparent)]
    Odoo(#[from] OdooError),
    /// Occurs when a record the intent refers to is not in Odoo (its own intent was
    /// dead-lettered, or Odoo lacks its standard data). Poison.
    #[error("{0}; retry this intent once that record exists")]
    MissingRef(#[from] MissingRef),
    /// Occurs when Odoo answers in a shape careflow does not expect (no open receipt, an id
    /// that is not a number). Poison: the same call would answer the same.
    #[error("Odoo's answer to {what} was not what careflow expects: {detail}")]
    Unexpected { what: &'static str, detail: String },
    /// Occurs when careflow's own store or actors are unavailable. Retried.
    #[error("careflow could not record Odoo's answer: {0}")]
    Store(String),
}

impl IntentError {
    pub fn class(&self) -> ErrorClass {
        match self {
            IntentError::Odoo(error) => error.class(),
            IntentError::MissingRef(_) | IntentError::Unexpected { .. } => ErrorClass::Poison,
            IntentError::Store(_) => ErrorClass::Retry,
        }
    }
}

fn unexpected(what: &'static str, detail: impl std::fmt::Display) -> IntentError {
    IntentError::Unexpected {
        what,
        detail: detail.to_string(),
    }
}

/// What intents share: the client, the ids external ids resolved to, and the way back into
/// careflow (acknowledgements, `RecordPurchaseOrder`).
pub struct Session {
    client: OdooClient,
    store: Arc<dyn EventStore>,
    registry: Arc<Registry>,
    /// Dates acknowledgements and `RecordPurchaseOrder`.
    clock: Clock,
    /// What a patient's partner carries (config `odoo_partner_details`).
    partner_details: PartnerDetails,
    /// Complete external id → Odoo id. External ids careflow writes are never moved
    /// (`noupdate`), and Odoo's standard data does not move either, so they are cached for
    /// the life of the session.
    ids: Mutex<HashMap<String, i64>>,
}

impl Session {
    pub fn new(
        client: OdooClient,
        store: Arc<dyn EventStore>,
        registry: Arc<Registry>,
        clock: Clock,
    ) -> Self {
        Self {
            client,
            store,
            registry,
            clock,
            partner_details: PartnerDetails::Mrn,
            ids: Mutex::new(HashMap::new()),
        }
    }

    /// Sets what a patient's partner carries (default: the MRN only).
    #[must_use]
    pub fn with_partner_details(mut self, details: PartnerDetails) -> Self {
        self.partner_details = details;
        self
    }

    async fn call(&self, call: &Call) -> Result<Value, IntentError> {
        Ok(self
            .client
            .execute_kw(
                &call.model,
                &call.method,
                call.args.clone(),
                call.kwargs.clone(),
            )
            .await?)
    }

    async fn exec(
        &self,
        model: &str,
        method: &str,
        args: Value,
        kwargs: Option<Value>,
    ) -> Result<Value, IntentError> {
        Ok(self.client.execute_kw(model, method, args, kwargs).await?)
    }

    fn cached(&self, xmlid: &str) -> Option<i64> {
        self.ids.lock().ok()?.get(xmlid).copied()
    }

    fn remember(&self, xmlid: String, id: i64) {
        if let Ok(mut ids) = self.ids.lock() {
            ids.insert(xmlid, id);
        }
    }

    /// The id a complete external id names, asking Odoo when not cached.
    async fn resolve(&self, xmlid: &str) -> Result<Option<i64>, IntentError> {
        if let Some(id) = self.cached(xmlid) {
            return Ok(Some(id));
        }
        let Some(lookup) = xmlid_lookup_complete(xmlid) else {
            return Ok(None);
        };
        let id = first_row(&self.call(&lookup).await?).and_then(|row| row.get("res_id")?.as_i64());
        if let Some(id) = id {
            self.remember(xmlid.to_owned(), id);
        }
        Ok(id)
    }

    /// The id of careflow's external id `name`, if it exists.
    async fn own(&self, name: &str) -> Result<Option<i64>, IntentError> {
        let xmlid = complete_xmlid(name);
        if let Some(id) = self.cached(&xmlid) {
            return Ok(Some(id));
        }
        let id = first_row(&self.call(&xmlid_lookup(name)).await?)
            .and_then(|row| row.get("res_id")?.as_i64());
        if let Some(id) = id {
            self.remember(xmlid, id);
        }
        Ok(id)
    }

    /// Writes careflow's external id `name` for `res_id`; when another worker wrote it first,
    /// the winner's id.
    async fn link(&self, name: &str, model: &str, res_id: i64) -> Result<i64, IntentError> {
        match self.call(&xmlid_create(name, model, res_id)).await {
            Ok(_) => {
                self.remember(complete_xmlid(name), res_id);
                Ok(res_id)
            }
            Err(IntentError::Odoo(error)) if error.is_duplicate_xmlid() => {
                let winner = self.own(name).await?.ok_or_else(|| {
                    unexpected(
                        "ir.model.data create",
                        "duplicate external id, then none found",
                    )
                })?;
                if winner != res_id {
                    tracing::warn!(
                        key = name,
                        model,
                        ours = res_id,
                        winner,
                        "another worker created this record first; using its record"
                    );
                }
                Ok(winner)
            }
            Err(error) => Err(error),
        }
    }

    /// Resolves every external id `action` refers to (the missing ones stay missing: the
    /// builders then answer [`MissingRef`]).
    async fn resolver(&self, action: &Action) -> Result<HashMap<String, i64>, IntentError> {
        let mut ids = HashMap::new();
        for xmlid in action.refs() {
            if let Some(id) = self.resolve(&xmlid).await? {
                ids.insert(xmlid, id);
            }
        }
        Ok(ids)
    }

    /// The record of `intent`'s key: found by external id, else by natural key, else
    /// created, and its external id written. Upserts write their values onto a found record.
    async fn ensure(
        &self,
        intent: &OdooIntent,
        ids: &HashMap<String, i64>,
    ) -> Result<i64, IntentError> {
        let lookup = |xmlid: &str| ids.get(xmlid).copied();
        let action = &intent.action;
        if let Some(id) = self.own(&intent.key).await? {
            if let Some(write) = action.write_call(id, &lookup)? {
                self.call(&write).await?;
            }
            return Ok(id);
        }
        if let Some(search) = action.natural_key_search(&lookup)?
            && let Some(id) =
                first_row(&self.call(&search).await?).and_then(|row| row.get("id")?.as_i64())
        {
            if let Some(write) = action.write_call(id, &lookup)? {
                self.call(&write).await?;
            }
            return self.link(&intent.key, &intent.model, id).await;
        }
        let create = action
            .create_call(&lookup)?
            .ok_or_else(|| unexpected("create", "this action creates no record"))?;
        let created = self.call(&create).await?;
        let id = created
            .as_i64()
            .ok_or_else(|| unexpected("create", format!("not an id: {created}")))?;
        self.link(&intent.key, &intent.model, id).await
    }

    async fn read_one(&self, model: &str, id: i64, fields: &[&str]) -> Result<Value, IntentError> {
        let rows = self
            .exec(
                model,
                "read",
                json!([[id]]),
                Some(json!({ "fields": fields })),
            )
            .await?;
        first_row(&rows)
            .cloned()
            .ok_or_else(|| unexpected("read", format!("{model} {id} does not exist")))
    }

    async fn read_many(
        &self,
        model: &str,
        ids: &[i64],
        fields: &[&str],
    ) -> Result<Vec<Value>, IntentError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .exec(
                model,
                "read",
                json!([ids]),
                Some(json!({ "fields": fields })),
            )
            .await?;
        Ok(rows.as_array().cloned().unwrap_or_default())
    }
}

fn first_row(rows: &Value) -> Option<&Value> {
    rows.as_array()?.first()
}

fn text<'a>(row: &'a Value, field: &str) -> &'a str {
    row.get(field).and_then(Value::as_str).unwrap_or("")
}

/// The ids of an x2many field (`[1, 2]`).
fn id_list(row: &Value, field: &str) -> Vec<i64> {
    row.get(field)
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

/// The id of a many2one field (`[21, "Belgium"]`, or a bare id).
fn many2one(row: &Value, field: &str) -> Option<i64> {
    match row.get(field)? {
        Value::Array(pair) => pair.first()?.as_i64(),
        value => value.as_i64(),
    }
}

/// Runs one intent to its end in Odoo.
///
/// # Errors
/// [`IntentError`]; [`IntentError::class`] says what the caller does about it.
pub async fn perform(session: &Session, intent: &OdooIntent) -> Result<(), IntentError> {
    let detailed = partner_with_details(session, intent).await?;
    let intent = detailed.as_ref().unwrap_or(intent);
    let ids = session.resolver(&intent.action).await?;
    match &intent.action {
        Action::UpsertPartner { .. }
        | Action::ArchivePartner { .. }
        | Action::UpsertVendor { .. }
        | Action::UpsertPayer { .. }
        | Action::UpsertProduct { .. }
        | Action::UpsertReorderRule { .. } => {
            session.ensure(intent, &ids).await?;
            Ok(())
        }
        Action::PostCustomerInvoice { .. } => post_customer_invoice(session, intent, &ids).await,
        Action::PostCreditNote { settles, .. }
        | Action::RegisterPayment {
            settles: Some(settles),
            ..
        } => remittance(session, intent, &ids, settles).await,
        Action::RegisterPayment { partner, .. } => {
            register_payment(session, intent, &ids, partner).await
        }
        Action::ConfirmPurchaseOrder { .. } => confirm_purchase_order(session, intent, &ids).await,
        Action::ReceiveGoods { order, lines } => {
            receive_goods(session, intent, &ids, order, lines).await
        }
        Action::PostVendorBill {
            order, reference, ..
        } => post_vendor_bill(session, intent, order, reference).await,
        Action::CancelPurchaseOrder {
            order,
            goods_received,
        } => cancel_purchase_order(session, order, *goods_received).await,
        Action::ConsumeStock { quantity, .. } => {
            consume_stock(session, intent, &ids, *quantity).await
        }
    }
}

/// The fields of an address on a `res.partner`; cleared (`false`) when careflow has none.
const ADDRESS_FIELDS: [&str; 5] = ["street", "street2", "city", "zip", "country_id"];

/// With `odoo_partner_details = billing`, a patient partner's upsert with the patient's name
/// and billing address as the account holds them *now* (read through the registry, never
/// kept in an intent, a checkpoint or a dead letter): after an erasure the account holds
/// none, so every later upsert, the erasure's own included, writes the MRN back and clears
/// the address. `None` leaves the intent as mapped (the MRN only).
async fn partner_with_details(
    session: &Session,
    intent: &OdooIntent,
) -> Result<Option<OdooIntent>, IntentError> {
    if session.partner_details != PartnerDetails::Billing {
        return Ok(None);
    }
    let Action::UpsertPartner {
        values,
        payment_terms,
    } = &intent.action
    else {
        return Ok(None);
    };
    let Some(mrn) = intent.key.strip_prefix("partner_") else {
        return Ok(None);
    };
    let stream = StreamId::new(PatientAccount::KIND, mrn)
        .map_err(|error| unexpected("partner key", error))?;
    let state = session
        .registry
        .observe::<PatientAccount>(&stream)
        .await
        .map_err(|error| IntentError::Store(error.to_string()))?
        .state;
    let mut values = values.clone();
    for field in ADDRESS_FIELDS {
        values.insert(field.to_owned(), Value::Bool(false));
    }
    match &state.identity {
        Some(identity) => {
            let name = &identity.name;
            let full = name
                .given
                .iter()
                .chain(std::iter::once(&name.family))
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" ");
            values.insert("name".to_owned(), json!(full));
            if let Some(address) = &identity.address {
                let line = |n: usize| address.line.get(n).map_or(Value::Bool(false), |l| json!(l));
                values.insert("street".to_owned(), line(0));
                values.insert("street2".to_owned(), line(1));
                let text = |t: &Option<String>| t.as_ref().map_or(Value::Bool(false), |t| json!(t));
                values.insert("city".to_owned(), text(&address.city));
                values.insert("zip".to_owned(), text(&address.postal_code));
                if let Some(code) = &address.country {
                    let country = session
                        .exec(
                            "res.country",
                            "search_read",
                            json!([[["code", "=", code]]]),
                            Some(json!({"fields": ["id"], "limit": 1})),
                        )
                        .await?;
                    if let Some(id) = first_row(&country).and_then(|row| row.get("id")?.as_i64()) {
                        values.insert("country_id".to_owned(), json!(id));
                    }
                }
            }
        }
        // Erased (or never registered): the MRN, no address.
        None => {
            values.insert("name".to_owned(), json!(mrn));
        }
    }
    Ok(Some(OdooIntent {
        action: Action::UpsertPartner {
            values,
            payment_terms: *payment_terms,
        },
        ..intent.clone()
    }))
}

/// The intent's customer document (invoice or credit note): created (draft) unless an
/// earlier attempt did, posted unless posted. Answers its id and its row as `fields` read it
/// once posted.
async fn posted_move(
    session: &Session,
    intent: &OdooIntent,
    ids: &HashMap<String, i64>,
    fields: &[&str],
) -> Result<(i64, Value), IntentError> {
    let id = session.ensure(intent, ids).await?;
    let mut row = session.read_one("account.move", id, fields).await?;
    if text(&row, "state") == "draft" {
        session.call(&calls::post_move(id)).await?;
        row = session.read_one("account.move", id, fields).await?;
    }
    Ok((id, row))
}

/// Create (draft), post unless posted, then acknowledge what Odoo holds.
async fn post_customer_invoice(
    session: &Session,
    intent: &OdooIntent,
    ids: &HashMap<String, i64>,
) -> Result<(), IntentError> {
    let (_, row) = posted_move(session, intent, ids, &["name", "amount_total", "state"]).await?;
    let ack = OdooRecordAcknowledged::from_read(&intent.key, "account.move", &row)
        .map_err(|error| unexpected("account.move read", error))?;
    acknowledge(session, intent, &ack).await
}

/// A remittance's credit note or insurance payment, then its settlement of the invoice.
async fn remittance(
    session: &Session,
    intent: &OdooIntent,
    ids: &HashMap<String, i64>,
    invoice: &str,
) -> Result<(), IntentError> {
    let invoice = settled_invoice(ids, invoice)?;
    let entry = match intent.action {
        Action::PostCreditNote { .. } => posted_move(session, intent, ids, &["state"]).await?.0,
        _ => payment_entry(session, intent, ids).await?,
    };
    settle(session, invoice, entry).await
}

/// A remittance's insurance payment, posted: a payment of the payer (found by external id or
/// by its memo, else created). Not through the payment wizard: that pays invoices of the
/// payment's own partner only, and the invoice is the patient's. Answers the journal entry
/// holding its receivable line.
async fn payment_entry(
    session: &Session,
    intent: &OdooIntent,
    ids: &HashMap<String, i64>,
) -> Result<i64, IntentError> {
    let payment = session.ensure(intent, ids).await?;
    let mut row = session.call(&calls::read_payment(payment)).await?;
    if text(first_row(&row).unwrap_or(&Value::Null), "state") == "draft" {
        session.call(&calls::post_payment(payment)).await?;
        row = session.call(&calls::read_payment(payment)).await?;
    }
    first_row(&row)
        .and_then(|row| many2one(row, "move_id"))
        .ok_or_else(|| {
            unexpected(
                "account.payment read",
                format!("payment {payment} has no journal entry"),
            )
        })
}

/// The Odoo id of the invoice a remittance settles. Missing (its own intent was
/// dead-lettered, or the claim named a visit careflow never invoiced) is poison: retry this
/// intent once the invoice exists, or discard it.
fn settled_invoice(ids: &HashMap<String, i64>, invoice: &str) -> Result<i64, IntentError> {
    let xmlid = complete_xmlid(invoice);
    ids.get(&xmlid)
        .copied()
        .ok_or(IntentError::MissingRef(MissingRef { xmlid }))
}

/// Reconciles the receivable line of journal entry `entry` (a payment's, a credit note's)
/// against `invoice`, unless a part of it already is (a repeat after a crash), or the
/// invoice has nothing left to pay (it stays an outstanding credit of its partner, which
/// finance can apply in Odoo).
async fn settle(session: &Session, invoice: i64, entry: i64) -> Result<(), IntentError> {
    let answer = session.call(&calls::receivable_lines(entry)).await?;
    let line = ReceivableLine::from_rows(&answer)
        .map_err(|error| unexpected("account.move.line search_read", error))?
        .ok_or_else(|| {
            unexpected(
                "account.move.line search_read",
                format!("journal entry {entry} has no receivable line"),
            )
        })?;
    if !line.untouched() {
        return Ok(());
    }
    let row = session
        .read_one("account.move", invoice, &["state", "amount_residual"])
        .await?;
    let residual = row
        .get("amount_residual")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    if text(&row, "state") != "posted" || residual < 0.005 {
        tracing::warn!(
            invoice,
            entry,
            "the invoice a remittance settles has nothing left to pay; left as an outstanding credit"
        );
        return Ok(());
    }
    session
        .call(&calls::assign_outstanding_line(invoice, line.id))
        .await?;
    Ok(())
}

/// Appends `OdooRecordAcknowledged` under its deterministic command id: a repeat appends
/// nothing.
async fn acknowledge(
    session: &Session,
    intent: &OdooIntent,
    ack: &OdooRecordAcknowledged,
) -> Result<(), IntentError> {
    let stream = StreamId::new(ACK_STREAM_KIND, &ack.external_id)
        .map_err(|error| unexpected("acknowledgement", error))?;
    let by = Recorder {
        principal: PRINCIPAL.to_owned(),
        source: "odoo".to_owned(),
        correlation_id: intent.event_id.to_string(),
        causation_id: intent.event_id.to_string(),
        occurred_at: session.clock.now(),
    };
    internal::record(
        session.store.as_ref(),
        stream,
        ExpectedVersion::Any,
        ack.command_id(),
        &by,
        &[ack],
    )
    .await
    .map(|_| ())
    .map_err(|error| IntentError::Store(error.to_string()))
}

/// The payment wizard against the customer's open posted invoices (oldest first); with none
/// open, a posted inbound payment Odoo offers on the next invoice.
async fn register_payment(
    session: &Session,
    intent: &OdooIntent,
    ids: &HashMap<String, i64>,
    partner: &str,
) -> Result<(), IntentError> {
    let lookup = |xmlid: &str| ids.get(xmlid).copied();
    if session.own(&intent.key).await?.is_some() {
        return Ok(());
    }
    if let Some(search) = intent.action.natural_key_search(&lookup)?
        && let Some(id) =
            first_row(&session.call(&search).await?).and_then(|row| row.get("id")?.as_i64())
    {
        session.link(&intent.key, &intent.model, id).await?;
        return Ok(());
    }
    let partner_id = lookup(&complete_xmlid(partner)).ok_or_else(|| MissingRef {
        xmlid: complete_xmlid(partner),
    })?;
    let open = session.call(&calls::open_invoices(partner_id)).await?;
    let invoices: Vec<i64> = open
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|row| row.get("id")?.as_i64())
                .collect()
        })
        .unwrap_or_default();
    let payment = if invoices.is_empty() {
        let create = intent
            .action
            .create_call(&lookup)?
            .ok_or_else(|| unexpected("account.payment create", "no create call"))?;
        let created = session.call(&create).await?;
        let id = created
            .as_i64()
            .ok_or_else(|| unexpected("account.payment create", format!("not an id: {created}")))?;
        // The external id first: a repeat then finds this payment and does not pay twice.
        let id = session.link(&intent.key, &intent.model, id).await?;
        let row = session.read_one("account.payment", id, &["state"]).await?;
        if text(&row, "state") == "draft" {
            session.call(&calls::post_payment(id)).await?;
        }
        return Ok(());
    } else {
        let wizard = session
            .call(
                &intent
                    .action
                    .payment_wizard(&invoices)
                    .ok_or_else(|| unexpected("payment wizard", "not a payment"))?,
            )
            .await?;
        let wizard = wizard.as_i64().ok_or_else(|| {
            unexpected(
                "account.payment.register create",
                format!("not an id: {wizard}"),
            )
        })?;
        let action = session.call(&calls::create_payments(wizard)).await?;
        match action.get("res_id").and_then(Value::as_i64) {
            Some(id) => id,
            None => {
                let search = intent
                    .action
                    .natural_key_search(&lookup)?
                    .ok_or_else(|| unexpected("account.payment search", "no natural key"))?;
                first_row(&session.call(&search).await?)
                    .and_then(|row| row.get("id")?.as_i64())
                    .ok_or_else(|| {
                        unexpected("action_create_payments", format!("no payment in {action}"))
                    })?
            }
        }
    };
    session.link(&intent.key, &intent.model, payment).await?;
    Ok(())
}

/// Create, confirm unless confirmed, then tell the purchase which order Odoo made.
async fn confirm_purchase_order(
    session: &Session,
    intent: &OdooIntent,
    ids: &HashMap<String, i64>,
) -> Result<(), IntentError> {
    let id = session.ensure(intent, ids).await?;
    let mut row = session
        .read_one("purchase.order", id, &["name", "state"])
        .await?;
    if matches!(text(&row, "state"), "draft" | "sent") {
        session.call(&calls::confirm_order(id)).await?;
        row = session
            .read_one("purchase.order", id, &["name", "state"])
            .await?;
    }
    let name = text(&row, "name").to_owned();
    if name.is_empty() {
        return Err(unexpected("purchase.order read", "the order has no name"));
    }
    let Some(requisition) = intent.key.strip_prefix("po_") else {
        return Err(unexpected("purchase order key", &intent.key));
    };
    record_purchase_order(session, intent, requisition, name).await
}

/// `RecordPurchaseOrder {odoo_order_ref}` to `purchase-{requisition}`, under a command id
/// derived from the intent: a repeat gets the first answer.
async fn record_purchase_order(
    session: &Session,
    intent: &OdooIntent,
    requisition: &str,
    odoo_order_ref: String,
) -> Result<(), IntentError> {
    let target = StreamId::new("purchase", requisition)
        .map_err(|error| unexpected("purchase stream", error))?;
    let context = CommandContext {
        command_id: Uuid::new_v5(
            &intent.event_id,
            format!("odoo:{}:record_purchase_order", intent.id).as_bytes(),
        ),
        correlation_id: intent.event_id.to_string(),
        causation_id: intent.event_id.to_string(),
        principal: PRINCIPAL.to_owned(),
        source: "odoo".to_owned(),
        occurred_at: session.clock.now(),
        check_duplicate: true,
    };
    let command = PurchaseCommand::RecordPurchaseOrder(RecordPurchaseOrder { odoo_order_ref });
    match session
        .registry
        .execute::<PurchaseWorkflow>(&target, command, context)
        .await
    {
        Ok(_) => Ok(()),
        Err(CommandError::Rejected(rejection)) => {
            // The purchase moved on (cancelled meanwhile): Odoo's order stands; the
            // cancellation's own intent cancels it.
            tracing::warn!(stream_id = %target, code = rejection.code(), "RecordPurchaseOrder refused by the purchase; not retried");
            Ok(())
        }
        Err(error @ CommandError::Corrupt(_)) => Err(unexpected("RecordPurchaseOrder", error)),
        Err(error) => Err(IntentError::Store(error.to_string())),
    }
}

/// Sets received quantities on the order's open receipt and validates it, keeping a
/// backorder for what is still due.
async fn receive_goods(
    session: &Session,
    intent: &OdooIntent,
    ids: &HashMap<String, i64>,
    order: &str,
    lines: &[careflow_projections::odoo::ReceivedLine],
) -> Result<(), IntentError> {
    let picking = match session.own(&intent.key).await? {
        Some(picking) => picking,
        None => {
            let po = ids
                .get(&complete_xmlid(order))
                .copied()
                .ok_or_else(|| MissingRef {
                    xmlid: complete_xmlid(order),
                })?;
            let order_row = session
                .read_one("purchase.order", po, &["picking_ids"])
                .await?;
            let pickings = session
                .read_many(
                    "stock.picking",
                    &id_list(&order_row, "picking_ids"),
                    &["state"],
                )
                .await?;
            let open = pickings
                .iter()
                .filter(|row| !matches!(text(row, "state"), "done" | "cancel"))
                .filter_map(|row| row.get("id")?.as_i64())
                .min()
                .ok_or_else(|| {
                    unexpected(
                        "purchase.order picking_ids",
                        format!("order {po} has no open receipt"),
                    )
                })?;
            session.link(&intent.key, "stock.picking", open).await?
        }
    };
    let row = session
        .read_one("stock.picking", picking, &["state", "move_ids"])
        .await?;
    if text(&row, "state") == "done" {
        return Ok(());
    }
    let mut wanted: HashMap<i64, u32> = HashMap::new();
    for line in lines {
        let product = complete_xmlid(&line.product);
        let id = ids
            .get(&product)
            .copied()
            .ok_or(MissingRef { xmlid: product })?;
        *wanted.entry(id).or_default() += line.quantity;
    }
    let moves = session
        .read_many(
            "stock.move",
            &id_list(&row, "move_ids"),
            &["product_id", "product_uom_qty", "quantity"],
        )
        .await?;
    let mut partial = false;
    for movement in &moves {
        let Some(id) = movement.get("id").and_then(Value::as_i64) else {
            continue;
        };
        let product = many2one(movement, "product_id").unwrap_or_default();
        let quantity = wanted.remove(&product).unwrap_or(0);
        let demand = movement
            .get("product_uom_qty")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        if f64::from(quantity) < demand {
            partial = true;
        }
        session
            .call(&calls::set_move_quantity(id, f64::from(quantity)))
            .await?;
    }
    if let Some((product, _)) = wanted.into_iter().next() {
        return Err(unexpected(
            "stock.picking move_ids",
            format!("no move for product {product} on picking {picking}"),
        ));
    }
    validate(session, picking, partial).await
}

/// `button_validate`, answering the backorder question by keeping a backorder.
async fn validate(session: &Session, picking: i64, partial: bool) -> Result<(), IntentError> {
    let keep_backorder = json!({"context": {"skip_backorder": true}});
    let answer = session
        .exec(
            "stock.picking",
            "button_validate",
            json!([[picking]]),
            partial.then(|| keep_backorder.clone()),
        )
        .await?;
    if answer.get("res_model").and_then(Value::as_str) == Some("stock.backorder.confirmation") {
        session
            .exec(
                "stock.picking",
                "button_validate",
                json!([[picking]]),
                Some(keep_backorder),
            )
            .await?;
    }
    Ok(())
}

/// The order's bill: Odoo bills what was received; careflow writes its date and reference
/// and posts it.
async fn post_vendor_bill(
    session: &Session,
    intent: &OdooIntent,
    order: &str,
    reference: &str,
) -> Result<(), IntentError> {
    let bill = match session.own(&intent.key).await? {
        Some(bill) => bill,
        None => {
            let found = session
                .exec(
                    "account.move",
                    "search_read",
                    json!([[["move_type", "=", "in_invoice"], ["ref", "=", reference]]]),
                    Some(json!({"fields": ["id"], "limit": 1})),
                )
                .await?;
            match first_row(&found).and_then(|row| row.get("id")?.as_i64()) {
                Some(bill) => session.link(&intent.key, "account.move", bill).await?,
                None => {
                    let po = session
                        .resolve(&complete_xmlid(order))
                        .await?
                        .ok_or_else(|| MissingRef {
                            xmlid: complete_xmlid(order),
                        })?;
                    let bill = match draft_bill(session, po).await? {
                        Some(bill) => bill,
                        None => {
                            session.call(&calls::create_bill(po)).await?;
                            draft_bill(session, po).await?.ok_or_else(|| {
                                unexpected(
                                    "action_create_invoice",
                                    format!("order {po} has no draft bill"),
                                )
                            })?
                        }
                    };
                    session.link(&intent.key, "account.move", bill).await?
                }
            }
        }
    };
    let row = session.read_one("account.move", bill, &["state"]).await?;
    if text(&row, "state") == "draft" {
        session
            .call(
                &intent
                    .action
                    .bill_write(bill)
                    .ok_or_else(|| unexpected("bill write", "not a vendor bill"))?,
            )
            .await?;
        session.call(&calls::post_move(bill)).await?;
    }
    Ok(())
}

/// The order's newest draft bill: one an earlier attempt of this intent created and did not
/// post (bills of one order run one after another, and each posts its own, so a draft left
/// on the order is this intent's). Odoo fills its `ref` with the order's vendor reference,
/// so the reference cannot tell.
async fn draft_bill(session: &Session, po: i64) -> Result<Option<i64>, IntentError> {
    let order = session
        .read_one("purchase.order", po, &["invoice_ids"])
        .await?;
    let bills = session
        .read_many(
            "account.move",
            &id_list(&order, "invoice_ids"),
            &["state", "move_type"],
        )
        .await?;
    Ok(bills
        .iter()
        .filter(|row| text(row, "state") == "draft" && text(row, "move_type") == "in_invoice")
        .filter_map(|row| row.get("id")?.as_i64())
        .max())
}

/// `button_cancel`; once goods were received Odoo refuses that, so the open receipts are
/// cancelled and the order locked instead.
async fn cancel_purchase_order(
    session: &Session,
    order: &str,
    goods_received: bool,
) -> Result<(), IntentError> {
    let Some(po) = session.own(order).await? else {
        // The order was never created in Odoo (cancelled before approval): nothing to undo.
        return Ok(());
    };
    let row = session
        .read_one("purchase.order", po, &["state", "picking_ids"])
        .await?;
    if matches!(text(&row, "state"), "cancel" | "done") {
        return Ok(());
    }
    if !goods_received {
        session.call(&calls::cancel_order(po)).await?;
        return Ok(());
    }
    let pickings = session
        .read_many("stock.picking", &id_list(&row, "picking_ids"), &["state"])
        .await?;
    let open: Vec<i64> = pickings
        .iter()
        .filter(|row| !matches!(text(row, "state"), "done" | "cancel"))
        .filter_map(|row| row.get("id")?.as_i64())
        .collect();
    if !open.is_empty() {
        session.call(&calls::cancel_pickings(&open)).await?;
    }
    session.call(&calls::lock_order(po)).await?;
    Ok(())
}

/// An outgoing picking from stock to consumption, validated.
async fn consume_stock(
    session: &Session,
    intent: &OdooIntent,
    ids: &HashMap<String, i64>,
    quantity: u32,
) -> Result<(), IntentError> {
    let picking = session.ensure(intent, ids).await?;
    let row = session
        .read_one("stock.picking", picking, &["state", "move_ids"])
        .await?;
    let state = text(&row, "state").to_owned();
    if state == "done" {
        return Ok(());
    }
    if state == "draft" {
        session.call(&calls::confirm_picking(picking)).await?;
    }
    if state != "assigned" {
        session.call(&calls::assign_picking(picking)).await?;
    }
    for movement in id_list(&row, "move_ids") {
        session
            .call(&calls::set_move_quantity(movement, f64::from(quantity)))
            .await?;
    }
    validate(session, picking, false).await
}
