//! The exact `execute_kw` calls careflow makes, as pure values.
//!
//! Every builder returns a [`Call`]: `(model, method, args, kwargs)` as Odoo 17.0 takes them
//! (../shared/odoo/API-NOTES.md §3, §4, §8). Calls that point at other records take a resolver
//! from *complete* external id (`careflow.partner_MRN1`, `account.account_payment_term_30days`)
//! to Odoo id, which the executor fills from its look-ups ([`xmlid_lookup`]); an unresolved one
//! is a [`MissingRef`]. The executor sends these values unchanged, so the unit tests of this
//! module are the tests of the wire format.
//!
//! How the executor strings them together per action is in docs/odoo.md; the builders that
//! need an earlier call's answer (the moves of a receipt, the bill an order produced) take that
//! answer as an argument.

use careflow_aggregates::Cents;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::intent::{Action, MODULE, PaymentTerms, complete_xmlid};

/// Odoo's outgoing (delivery) operation type, used for consumption pickings.
pub const OUTGOING_TYPE: &str = "stock.picking_type_out";
/// The default warehouse's stock location (WH/Stock), where consumption is taken from.
pub const STOCK_LOCATION: &str = "stock.stock_location_stock";
/// Where consumed supplies go: the virtual "Customers" location (stock that left the
/// warehouse for good), the destination of the outgoing type.
pub const CONSUMPTION_LOCATION: &str = "stock.stock_location_customers";
/// The unit of measure of every careflow product ("Units").
pub const UNIT_UOM: &str = "uom.product_uom_unit";

/// One `execute_kw`: `model`, `method`, positional `args`, optional `kwargs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub model: String,
    pub method: String,
    /// Always a JSON array.
    pub args: Value,
    /// A JSON object, or `None` to omit the 7th element of `execute_kw`.
    pub kwargs: Option<Value>,
}

impl Call {
    fn new(model: &str, method: &str, args: Value) -> Self {
        Self {
            model: model.to_owned(),
            method: method.to_owned(),
            args,
            kwargs: None,
        }
    }

    fn with_kwargs(mut self, kwargs: Value) -> Self {
        self.kwargs = Some(kwargs);
        self
    }

    /// `[model, method, args]` or `[model, method, args, kwargs]`: the tail of `execute_kw`'s
    /// argument list, in the form API-NOTES.md §4 writes calls.
    pub fn to_json(&self) -> Value {
        let mut call = vec![
            Value::from(self.model.clone()),
            Value::from(self.method.clone()),
            self.args.clone(),
        ];
        if let Some(kwargs) = &self.kwargs {
            call.push(kwargs.clone());
        }
        Value::Array(call)
    }

    /// The whole `params` object of the JSON-RPC request (API-NOTES.md §1.1): service
    /// `object`, method `execute_kw`, args `[db, uid, secret, model, method, args, kwargs?]`.
    pub fn params(&self, db: &str, uid: i64, secret: &str) -> Value {
        let mut args = vec![json!(db), json!(uid), json!(secret)];
        if let Value::Array(tail) = self.to_json() {
            args.extend(tail);
        }
        json!({"service": "object", "method": "execute_kw", "args": args})
    }
}

/// A builder was given a resolver that does not know an external id the call needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("external id {xmlid} is not resolved")]
pub struct MissingRef {
    /// The complete external id (`module.name`).
    pub xmlid: String,
}

/// How the executor handles an Odoo error, decided by its `data.name` (and, for the unique
/// index race, its message). See API-NOTES.md §1.4 and §5.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// `AccessDenied` / `AccessError`: the key or the user's rights are wrong. Stop the
    /// executor and alert; retrying only triggers Odoo's login cooldown.
    Auth,
    /// `UserError`, `ValidationError`, `MissingError`, `ValueError` and anything not known to
    /// be transient: the intent cannot succeed as it is; dead-letter it.
    Poison,
    /// PostgreSQL concurrency failures Odoo gave up retrying: retry with backoff.
    Retry,
    /// A `ValidationError` from the `ir_model_data_module_name_uniq_index`: another worker
    /// created the external id first; look it up again and use its record.
    DuplicateXmlid,
}

/// The unique index on `ir.model.data (module, name)`.
const XMLID_UNIQUE_INDEX: &str = "ir_model_data_module_name_uniq_index";

/// Classifies an Odoo JSON-RPC error by `error.data.name` and `error.data.message`.
pub fn classify_error(name: &str, message: &str) -> ErrorClass {
    match name {
        "odoo.exceptions.AccessDenied" | "odoo.exceptions.AccessError" => ErrorClass::Auth,
        "odoo.exceptions.ValidationError" if message.contains(XMLID_UNIQUE_INDEX) => {
            ErrorClass::DuplicateXmlid
        }
        // 18.0 names the exhausted concurrency retry itself.
        "odoo.exceptions.ConcurrencyError" | "psycopg2.OperationalError" => ErrorClass::Retry,
        _ if name.starts_with("psycopg2.")
            && [
                "SerializationFailure",
                "DeadlockDetected",
                "LockNotAvailable",
                "TransactionRollbackError",
            ]
            .iter()
            .any(|kind| name.ends_with(kind)) =>
        {
            ErrorClass::Retry
        }
        _ => ErrorClass::Poison,
    }
}

/// Looks a careflow external id up: `ir.model.data search_read` by module and name, fields
/// `model` and `res_id`, limit 1 (API-NOTES.md §3.2). Answers `[]` or one row.
pub fn xmlid_lookup(name: &str) -> Call {
    xmlid_lookup_in(MODULE, name)
}

/// Looks up an external id of any module, e.g. Odoo's own data (`stock`,
/// `stock_location_stock`).
pub fn xmlid_lookup_in(module: &str, name: &str) -> Call {
    Call::new(
        "ir.model.data",
        "search_read",
        json!([[["module", "=", module], ["name", "=", name]]]),
    )
    .with_kwargs(json!({"fields": ["model", "res_id"], "limit": 1}))
}

/// Looks up a complete external id (`module.name`, split at the first dot, as Odoo does).
/// `None` when it has no dot.
pub fn xmlid_lookup_complete(xmlid: &str) -> Option<Call> {
    let (module, name) = xmlid.split_once('.')?;
    Some(xmlid_lookup_in(module, name))
}

/// Creates the careflow external id of a record careflow just created, `noupdate` so no
/// module update ever touches it (API-NOTES.md §3.3). A `DuplicateXmlid` error means another
/// worker won: look it up again.
pub fn xmlid_create(name: &str, model: &str, res_id: i64) -> Call {
    Call::new(
        "ir.model.data",
        "create",
        json!([{"module": MODULE, "name": name, "model": model, "res_id": res_id, "noupdate": true}]),
    )
}

/// Money as Odoo takes it: a JSON number of currency units (2 decimals). Exact for any amount
/// below 2^53 cents: the division is correctly rounded and printed shortest.
#[allow(clippy::cast_precision_loss)]
pub fn money(amount: Cents) -> Value {
    json!(amount.0 as f64 / 100.0)
}

fn resolve(ids: &dyn Fn(&str) -> Option<i64>, xmlid: &str) -> Result<i64, MissingRef> {
    ids(xmlid).ok_or_else(|| MissingRef {
        xmlid: xmlid.to_owned(),
    })
}

fn resolve_careflow(ids: &dyn Fn(&str) -> Option<i64>, name: &str) -> Result<i64, MissingRef> {
    resolve(ids, &complete_xmlid(name))
}

/// The `search_read` of a natural key stored on the record itself: finds a record a previous
/// attempt created but died before writing its external id (API-NOTES.md §3.3 step 2).
fn search_one(model: &str, domain: Value) -> Call {
    Call::new(model, "search_read", json!([domain]))
        .with_kwargs(json!({"fields": ["id"], "limit": 1}))
}

/// The `create` of a draft customer document (`out_invoice` or `out_refund`) of `partner_id`
/// dated `invoice_date`, `ref` = `reference`, one line per `(label, quantity, price_unit)`.
/// Every line has `tax_ids: []`: a database with a chart of accounts would otherwise add its
/// default sales tax, and Odoo's total must equal careflow's (API-NOTES.md §8).
fn customer_move<'a>(
    move_type: &str,
    partner_id: i64,
    invoice_date: &str,
    reference: &str,
    lines: impl Iterator<Item = (&'a str, u32, Cents)>,
) -> Call {
    let lines: Vec<Value> = lines
        .map(|(label, quantity, price_unit)| {
            json!([0, 0, {
                "name": label,
                "quantity": quantity,
                "price_unit": money(price_unit),
                "tax_ids": [],
            }])
        })
        .collect();
    Call::new(
        "account.move",
        "create",
        json!([{
            "move_type": move_type,
            "partner_id": partner_id,
            "invoice_date": invoice_date,
            "ref": reference,
            "invoice_line_ids": lines,
        }]),
    )
}

impl Action {
    /// The call that creates the intent's record (its answer is the new id, then write the
    /// external id with [`xmlid_create`]). `Ok(None)` for actions that create no record of
    /// their own but act on an existing one (receive goods, vendor bill, cancel): see
    /// docs/odoo.md for their steps.
    ///
    /// # Errors
    /// [`MissingRef`] when `ids` cannot resolve an external id of [`Action::refs`].
    pub fn create_call(
        &self,
        ids: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<Option<Call>, MissingRef> {
        Ok(Some(match self {
            Action::ArchivePartner { mrn, into } => Call::new(
                "res.partner",
                "create",
                json!([{
                    "name": mrn,
                    "ref": mrn,
                    "is_company": false,
                    "customer_rank": 1,
                    "active": false,
                    "parent_id": resolve_careflow(ids, into)?,
                }]),
            ),
            Action::UpsertPartner { .. }
            | Action::UpsertVendor { .. }
            | Action::UpsertPayer { .. }
            | Action::UpsertProduct { .. }
            | Action::UpsertReorderRule { .. } => {
                return Ok(self
                    .upsert_values(ids)?
                    .map(|values| Call::new(self.model(), "create", json!([values]))));
            }
            Action::PostCustomerInvoice {
                partner,
                invoice_date,
                reference,
                lines,
            } => customer_move(
                "out_invoice",
                resolve_careflow(ids, partner)?,
                invoice_date,
                reference,
                lines
                    .iter()
                    .map(|line| (line.label.as_str(), line.quantity, line.price_unit)),
            ),
            Action::PostCreditNote {
                partner,
                invoice_date,
                reference,
                label,
                amount,
                ..
            } => customer_move(
                "out_refund",
                resolve_careflow(ids, partner)?,
                invoice_date,
                reference,
                std::iter::once((label.as_str(), 1, *amount)),
            ),
            Action::RegisterPayment {
                partner,
                amount,
                payment_date,
                memo,
                ..
            } => Call::new(
                "account.payment",
                "create",
                json!([{
                    "payment_type": "inbound",
                    "partner_type": "customer",
                    "partner_id": resolve_careflow(ids, partner)?,
                    "amount": money(*amount),
                    "date": payment_date,
                    "ref": memo,
                }]),
            ),
            Action::ConfirmPurchaseOrder {
                vendor,
                partner_ref,
                date_planned,
                lines,
            } => {
                let lines = lines
                    .iter()
                    .map(|line| {
                        Ok(json!([0, 0, {
                            "product_id": resolve_careflow(ids, &line.product)?,
                            "product_qty": line.quantity,
                            "price_unit": money(line.unit_price),
                            "date_planned": date_planned,
                            "taxes_id": [],
                        }]))
                    })
                    .collect::<Result<Vec<Value>, MissingRef>>()?;
                Call::new(
                    "purchase.order",
                    "create",
                    json!([{
                        "partner_id": resolve_careflow(ids, vendor)?,
                        "partner_ref": partner_ref,
                        "origin": partner_ref,
                        "date_planned": date_planned,
                        "order_line": lines,
                    }]),
                )
            }
            Action::ConsumeStock {
                product,
                quantity,
                origin,
            } => {
                let stock = resolve(ids, STOCK_LOCATION)?;
                let consumed = resolve(ids, CONSUMPTION_LOCATION)?;
                Call::new(
                    "stock.picking",
                    "create",
                    json!([{
                        "picking_type_id": resolve(ids, OUTGOING_TYPE)?,
                        "location_id": stock,
                        "location_dest_id": consumed,
                        "origin": origin,
                        "move_ids": [[0, 0, {
                            "name": origin,
                            "product_id": resolve_careflow(ids, product)?,
                            "product_uom_qty": quantity,
                            "product_uom": resolve(ids, UNIT_UOM)?,
                            "location_id": stock,
                            "location_dest_id": consumed,
                        }]],
                    }]),
                )
            }
            Action::ReceiveGoods { .. }
            | Action::PostVendorBill { .. }
            | Action::CancelPurchaseOrder { .. } => return Ok(None),
        }))
    }

    /// The call that brings an existing record (found by external id or natural key) up to
    /// date: `write [[id], values]` for the upserts. `Ok(None)` for documents careflow never
    /// rewrites once created (invoices, payments, orders, pickings): finding one means an
    /// earlier attempt got that far, and the executor goes on with the next step.
    ///
    /// # Errors
    /// [`MissingRef`] as for [`Action::create_call`].
    pub fn write_call(
        &self,
        res_id: i64,
        ids: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<Option<Call>, MissingRef> {
        Ok(self
            .upsert_values(ids)?
            .map(|values| Call::new(self.model(), "write", json!([[res_id], values]))))
    }

    /// The `search_read` of the record's natural key (API-NOTES.md §3.3 step 2), run when the
    /// external id is absent, before creating: it recovers a record whose creator died before
    /// writing the external id. `None` when the action creates nothing.
    ///
    /// # Errors
    /// [`MissingRef`] for the reorder rule, whose natural key is its product.
    pub fn natural_key_search(
        &self,
        ids: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<Option<Call>, MissingRef> {
        let text = |values: &Map<String, Value>, field: &str| {
            values.get(field).cloned().unwrap_or(Value::Null)
        };
        Ok(match self {
            Action::UpsertPartner { values, .. } | Action::UpsertVendor { values } => Some(
                search_one("res.partner", json!([["ref", "=", text(values, "ref")]])),
            ),
            // A company: a patient's partner whose MRN happens to equal a payer id is not it.
            Action::UpsertPayer { values } => Some(search_one(
                "res.partner",
                json!([["ref", "=", text(values, "ref")], ["is_company", "=", true]]),
            )),
            // Naming `active` makes the search see an archived partner too (API-NOTES §2).
            Action::ArchivePartner { mrn, .. } => Some(search_one(
                "res.partner",
                json!([["ref", "=", mrn], ["active", "in", [true, false]]]),
            )),
            Action::UpsertProduct { values } => Some(search_one(
                "product.product",
                json!([["default_code", "=", text(values, "default_code")]]),
            )),
            Action::UpsertReorderRule { product, .. } => Some(search_one(
                "stock.warehouse.orderpoint",
                json!([["product_id", "=", resolve_careflow(ids, product)?]]),
            )),
            Action::PostCustomerInvoice { reference, .. } => Some(search_one(
                "account.move",
                json!([["move_type", "=", "out_invoice"], ["ref", "=", reference]]),
            )),
            Action::PostCreditNote { reference, .. } => Some(search_one(
                "account.move",
                json!([["move_type", "=", "out_refund"], ["ref", "=", reference]]),
            )),
            Action::RegisterPayment { memo, .. } => Some(search_one(
                "account.payment",
                json!([["payment_type", "=", "inbound"], ["ref", "=", memo]]),
            )),
            Action::ConfirmPurchaseOrder { partner_ref, .. } => Some(search_one(
                "purchase.order",
                json!([["partner_ref", "=", partner_ref]]),
            )),
            Action::ConsumeStock { origin, .. } => Some(search_one(
                "stock.picking",
                json!([["origin", "=", origin]]),
            )),
            Action::ReceiveGoods { .. }
            | Action::PostVendorBill { .. }
            | Action::CancelPurchaseOrder { .. } => None,
        })
    }

    /// The field values of an upsert, with references resolved; `None` for the documents.
    fn upsert_values(
        &self,
        ids: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<Option<Value>, MissingRef> {
        Ok(Some(match self {
            Action::UpsertPartner {
                values,
                payment_terms,
            } => {
                let mut values = values.clone();
                if let Some(terms) = payment_terms {
                    values.insert(
                        "property_payment_term_id".to_owned(),
                        json!(resolve(ids, PaymentTerms::xmlid(*terms))?),
                    );
                }
                Value::Object(values)
            }
            Action::UpsertVendor { values }
            | Action::UpsertPayer { values }
            | Action::UpsertProduct { values } => Value::Object(values.clone()),
            Action::ArchivePartner { into, .. } => json!({
                "active": false,
                "parent_id": resolve_careflow(ids, into)?,
            }),
            Action::UpsertReorderRule {
                product,
                min_qty,
                max_qty,
            } => json!({
                "product_id": resolve_careflow(ids, product)?,
                "product_min_qty": min_qty,
                "product_max_qty": max_qty,
                "trigger": "manual",
            }),
            Action::PostCustomerInvoice { .. }
            | Action::PostCreditNote { .. }
            | Action::RegisterPayment { .. }
            | Action::ConfirmPurchaseOrder { .. }
            | Action::ReceiveGoods { .. }
            | Action::PostVendorBill { .. }
            | Action::CancelPurchaseOrder { .. }
            | Action::ConsumeStock { .. } => return Ok(None),
        }))
    }
}

/// `action_post [[id]]` on an `account.move` (invoice or bill): answers `false`.
pub fn post_move(move_id: i64) -> Call {
    Call::new("account.move", "action_post", json!([[move_id]]))
}

/// Reads what the acknowledgement needs from a posted invoice (see
/// [`crate::odoo::OdooRecordAcknowledged::from_read`]).
pub fn read_invoice(move_id: i64) -> Call {
    Call::new("account.move", "read", json!([[move_id]]))
        .with_kwargs(json!({"fields": ["name", "amount_total", "state"]}))
}

/// Reads moves by id (`state`, `ref`, `move_type`): which bill of an order is still a draft.
pub fn read_moves(move_ids: &[i64]) -> Call {
    Call::new("account.move", "read", json!([move_ids]))
        .with_kwargs(json!({"fields": ["state", "ref", "move_type"]}))
}

/// A customer's posted invoices with something left to pay, oldest first: what a payment is
/// registered against.
pub fn open_invoices(partner_id: i64) -> Call {
    Call::new(
        "account.move",
        "search_read",
        json!([[
            ["move_type", "=", "out_invoice"],
            ["partner_id", "=", partner_id],
            ["state", "=", "posted"],
            ["payment_state", "in", ["not_paid", "partial"]],
        ]]),
    )
    .with_kwargs(json!({"fields": ["amount_residual"], "order": "invoice_date asc, id asc"}))
}

/// `action_post [[id]]` on an `account.payment` (the no-open-invoice path): answers with no
/// `result` key in 17.0.
pub fn post_payment(payment_id: i64) -> Call {
    Call::new("account.payment", "action_post", json!([[payment_id]]))
}

/// Reads a payment's `state` and `move_id` (the journal entry holding its receivable line,
/// created with the payment in 17.0).
pub fn read_payment(payment_id: i64) -> Call {
    Call::new("account.payment", "read", json!([[payment_id]]))
        .with_kwargs(json!({"fields": ["state", "move_id"]}))
}

/// The receivable journal item of a journal entry (a payment's, a credit note's): what
/// [`assign_outstanding_line`] reconciles. `account_type` is 17.0's related field of the
/// line's account (searchable, not stored).
pub fn receivable_lines(move_id: i64) -> Call {
    Call::new(
        "account.move.line",
        "search_read",
        json!([[
            ["move_id", "=", move_id],
            ["account_type", "=", "asset_receivable"]
        ]]),
    )
    .with_kwargs(json!({"fields": ["balance", "amount_residual", "reconciled"]}))
}

/// `js_assign_outstanding_line [[invoice], line]`: what the invoice's "Outstanding credits"
/// widget does. Odoo 17.0 adds the invoice's unreconciled lines of the line's account and
/// reconciles them together (`reconcile()`, which checks the account and company, not the
/// partner), so a payer's payment can settle a patient's invoice; answers with no `result`
/// key (`reconcile()` returns None).
pub fn assign_outstanding_line(invoice_id: i64, line_id: i64) -> Call {
    Call::new(
        "account.move",
        "js_assign_outstanding_line",
        json!([[invoice_id], line_id]),
    )
}

/// `action_create_payments [[wizard]]`: creates, posts and reconciles; answers an action
/// whose `res_id` is the payment.
pub fn create_payments(wizard_id: i64) -> Call {
    Call::new(
        "account.payment.register",
        "action_create_payments",
        json!([[wizard_id]]),
    )
}

/// `button_confirm [[po]]`: the order becomes `purchase` and its receipt is created.
pub fn confirm_order(order_id: i64) -> Call {
    Call::new("purchase.order", "button_confirm", json!([[order_id]]))
}

/// Reads an order's `name` (Odoo's reference, sent back as `RecordPurchaseOrder`), `state`,
/// receipts and bills.
pub fn read_order(order_id: i64) -> Call {
    Call::new("purchase.order", "read", json!([[order_id]]))
        .with_kwargs(json!({"fields": ["name", "state", "picking_ids", "invoice_ids"]}))
}

/// Reads pickings' `state` (a retry reads it before validating again: validating a done
/// picking is a UserError, API-NOTES.md §8).
pub fn read_pickings(picking_ids: &[i64]) -> Call {
    Call::new("stock.picking", "read", json!([picking_ids]))
        .with_kwargs(json!({"fields": ["state", "origin"]}))
}

/// The moves of `picking_ids` not yet done or cancelled, in id order.
pub fn open_moves(picking_ids: &[i64]) -> Call {
    Call::new(
        "stock.move",
        "search_read",
        json!([[
            ["picking_id", "in", picking_ids],
            ["state", "not in", ["done", "cancel"]],
        ]]),
    )
    .with_kwargs(json!({
        "fields": ["picking_id", "product_id", "product_uom_qty", "quantity"],
        "order": "id asc",
    }))
}

/// `write [[move], {"quantity": q}]`: the quantity done on a move (17.0's field; 16.0 called
/// it `quantity_done`).
pub fn set_move_quantity(move_id: i64, quantity: f64) -> Call {
    Call::new(
        "stock.move",
        "write",
        json!([[move_id], {"quantity": quantity}]),
    )
}

/// `button_validate` with context `skip_backorder`: a picking whose moves are short is done
/// at once and a backorder keeps the rest (API-NOTES.md §4.4), instead of answering the
/// backorder wizard. Answers `true`.
pub fn validate_pickings(picking_ids: &[i64]) -> Call {
    Call::new("stock.picking", "button_validate", json!([picking_ids]))
        .with_kwargs(json!({"context": {"skip_backorder": true}}))
}

/// `action_confirm [[picking]]` (a draft consumption picking becomes waiting/confirmed).
pub fn confirm_picking(picking_id: i64) -> Call {
    Call::new("stock.picking", "action_confirm", json!([[picking_id]]))
}

/// `action_assign [[picking]]`: reserves what is on hand.
pub fn assign_picking(picking_id: i64) -> Call {
    Call::new("stock.picking", "action_assign", json!([[picking_id]]))
}

/// `action_cancel` on pickings (the open receipts of an order cancelled after a receipt).
pub fn cancel_pickings(picking_ids: &[i64]) -> Call {
    Call::new("stock.picking", "action_cancel", json!([picking_ids]))
}

/// `action_create_invoice [[po]]`: Odoo drafts the vendor bill for what was received and not
/// yet billed; read the order's `invoice_ids` afterwards rather than parsing the action.
pub fn create_bill(order_id: i64) -> Call {
    Call::new(
        "purchase.order",
        "action_create_invoice",
        json!([[order_id]]),
    )
}

/// `button_cancel [[po]]`: no `result` key in 17.0.
pub fn cancel_order(order_id: i64) -> Call {
    Call::new("purchase.order", "button_cancel", json!([[order_id]]))
}

/// `button_done [[po]]`: locks an order that cannot be cancelled because goods were received
/// (answers with no `result` key in 17.0).
pub fn lock_order(order_id: i64) -> Call {
    Call::new("purchase.order", "button_done", json!([[order_id]]))
}

/// A stock move as [`open_moves`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenMove {
    pub id: i64,
    pub picking_id: i64,
    pub product_id: i64,
    /// The demand.
    pub product_uom_qty: f64,
}

/// Why a receipt or consumption cannot be planned from the moves Odoo answered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// Occurs when a row of [`open_moves`] lacks a field (not a 17.0 answer).
    #[error("stock.move row field {0} is missing or mistyped")]
    Row(&'static str),
    /// Occurs when a received product has no open move on the order's receipts: the receipt
    /// was already validated (a retry: check the picking's state) or the order does not hold
    /// the product (poison).
    #[error("no open receipt move for {product}")]
    NoOpenMove { product: String },
    /// Occurs when a careflow external id is not resolved.
    #[error(transparent)]
    Missing(#[from] MissingRef),
}

impl OpenMove {
    /// Parses the rows of [`open_moves`] (many2one fields arrive as `[id, "name"]`).
    ///
    /// # Errors
    /// [`PlanError::Row`] naming the first missing or mistyped field.
    pub fn from_rows(rows: &Value) -> Result<Vec<OpenMove>, PlanError> {
        let many2one = |row: &Value, field: &'static str| {
            row.get(field)
                .and_then(|value| value.get(0))
                .and_then(Value::as_i64)
                .ok_or(PlanError::Row(field))
        };
        rows.as_array()
            .ok_or(PlanError::Row("result"))?
            .iter()
            .map(|row| {
                Ok(OpenMove {
                    id: row
                        .get("id")
                        .and_then(Value::as_i64)
                        .ok_or(PlanError::Row("id"))?,
                    picking_id: many2one(row, "picking_id")?,
                    product_id: many2one(row, "product_id")?,
                    product_uom_qty: row
                        .get("product_uom_qty")
                        .and_then(Value::as_f64)
                        .ok_or(PlanError::Row("product_uom_qty"))?,
                })
            })
            .collect()
    }
}

/// The writes and the validation that do one receipt or consumption.
#[derive(Debug, Clone, PartialEq)]
pub struct PickingPlan {
    /// One [`set_move_quantity`] per open move, in move order.
    pub writes: Vec<Call>,
    /// [`validate_pickings`] of every picking with something done.
    pub validate: Call,
    /// The pickings validated (the first is the one the external id names).
    pub picking_ids: Vec<i64>,
}

impl Action {
    /// Plans a receipt or a consumption from the open moves of its pickings:
    /// - `ReceiveGoods`: each received quantity goes on the open moves of its product in order
    ///   (a move takes at most its demand; the last takes any excess), every other open move
    ///   is set to 0 (a confirmed receipt is reserved in full, API-NOTES.md §8), and the
    ///   pickings with something received are validated keeping a backorder for the rest;
    /// - `ConsumeStock`: each move is set to its demand (consumption is recorded even when
    ///   Odoo's on-hand is short, as careflow records it).
    ///
    /// Other actions have no picking: `Ok(None)`.
    ///
    /// # Errors
    /// [`PlanError::NoOpenMove`] when a received product has no open move;
    /// [`PlanError::Missing`] when a product is not resolved.
    pub fn picking_plan(
        &self,
        moves: &[OpenMove],
        ids: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<Option<PickingPlan>, PlanError> {
        let mut done: Vec<(i64, f64)> = moves.iter().map(|m| (m.id, 0.0)).collect();
        match self {
            Action::ReceiveGoods { lines, .. } => {
                for line in lines {
                    let product_id = resolve_careflow(ids, &line.product)?;
                    let indexes: Vec<usize> = moves
                        .iter()
                        .enumerate()
                        .filter(|(_, m)| m.product_id == product_id)
                        .map(|(i, _)| i)
                        .collect();
                    let Some(&last) = indexes.last() else {
                        return Err(PlanError::NoOpenMove {
                            product: line.product.clone(),
                        });
                    };
                    let mut left = f64::from(line.quantity);
                    for &i in &indexes {
                        let room = (moves[i].product_uom_qty - done[i].1).max(0.0);
                        let take = if i == last { left } else { left.min(room) };
                        done[i].1 += take;
                        left -= take;
                    }
                }
            }
            Action::ConsumeStock { .. } => {
                for (slot, m) in done.iter_mut().zip(moves) {
                    slot.1 = m.product_uom_qty;
                }
            }
            Action::UpsertPartner { .. }
            | Action::ArchivePartner { .. }
            | Action::UpsertVendor { .. }
            | Action::UpsertPayer { .. }
            | Action::UpsertProduct { .. }
            | Action::UpsertReorderRule { .. }
            | Action::PostCustomerInvoice { .. }
            | Action::PostCreditNote { .. }
            | Action::RegisterPayment { .. }
            | Action::ConfirmPurchaseOrder { .. }
            | Action::PostVendorBill { .. }
            | Action::CancelPurchaseOrder { .. } => return Ok(None),
        }
        let mut picking_ids: Vec<i64> = Vec::new();
        for (m, (_, quantity)) in moves.iter().zip(&done) {
            if *quantity > 0.0 && !picking_ids.contains(&m.picking_id) {
                picking_ids.push(m.picking_id);
            }
        }
        Ok(Some(PickingPlan {
            writes: done
                .iter()
                .map(|&(id, quantity)| set_move_quantity(id, quantity))
                .collect(),
            validate: validate_pickings(&picking_ids),
            picking_ids,
        }))
    }

    /// The payment wizard for `RegisterPayment` against `invoice_ids` (from
    /// [`open_invoices`]): `account.payment.register create` with the invoices in the context,
    /// one grouped payment, and any difference left open (an overpayment stays as the
    /// customer's credit). `None` for other actions.
    pub fn payment_wizard(&self, invoice_ids: &[i64]) -> Option<Call> {
        let Action::RegisterPayment {
            amount,
            payment_date,
            memo,
            ..
        } = self
        else {
            return None;
        };
        Some(
            Call::new(
                "account.payment.register",
                "create",
                json!([{
                    "amount": money(*amount),
                    "payment_date": payment_date,
                    "communication": memo,
                    "group_payment": true,
                    "payment_difference_handling": "open",
                }]),
            )
            .with_kwargs(json!({
                "context": {"active_model": "account.move", "active_ids": invoice_ids},
            })),
        )
    }

    /// For `PostVendorBill`: the write that dates and references the bill Odoo drafted.
    /// `None` for other actions.
    pub fn bill_write(&self, bill_id: i64) -> Option<Call> {
        let Action::PostVendorBill {
            reference,
            invoice_date,
            ..
        } = self
        else {
            return None;
        };
        Some(Call::new(
            "account.move",
            "write",
            json!([[bill_id], {"invoice_date": invoice_date, "ref": reference}]),
        ))
    }
}

/// Why an Odoo answer does not have the shape a 17.0 server gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("odoo answer to {call} has an unexpected shape: expected {expected}")]
pub struct AnswerError {
    pub call: &'static str,
    pub expected: &'static str,
}

/// The `res_id` of an [`xmlid_lookup`] answer: `None` for `[]` (no such external id).
///
/// # Errors
/// [`AnswerError`] when the answer is not `[]` or `[{"res_id": int, ..}]`.
pub fn xmlid_res_id(answer: &Value) -> Result<Option<i64>, AnswerError> {
    first_row_int(answer, "res_id", "xmlid lookup")
}

/// The id of a natural-key search answer ([`Action::natural_key_search`]): `None` for `[]`.
///
/// # Errors
/// [`AnswerError`] when the answer is not `[]` or `[{"id": int, ..}]`.
pub fn found_id(answer: &Value) -> Result<Option<i64>, AnswerError> {
    first_row_int(answer, "id", "search_read")
}

fn first_row_int(
    answer: &Value,
    field: &str,
    call: &'static str,
) -> Result<Option<i64>, AnswerError> {
    let error = AnswerError {
        call,
        expected: "a list of rows with an integer id",
    };
    let rows = answer.as_array().ok_or_else(|| error.clone())?;
    match rows.first() {
        None => Ok(None),
        // `res_id` is `false` when the row points at nothing (API-NOTES.md §3.2).
        Some(row) if row.get(field) == Some(&Value::Bool(false)) => Ok(None),
        Some(row) => row
            .get(field)
            .and_then(Value::as_i64)
            .map(Some)
            .ok_or(error),
    }
}

/// The id a single-dict `create` answers.
///
/// # Errors
/// [`AnswerError`] when the answer is not an integer (a list means a list was sent).
pub fn created_id(answer: &Value) -> Result<i64, AnswerError> {
    answer.as_i64().ok_or(AnswerError {
        call: "create",
        expected: "an integer id",
    })
}

/// The `res_id` of a window action (`action_create_payments` for one payment,
/// `action_create_invoice` for one bill): `None` when the action lists several records or is
/// `true`.
pub fn action_res_id(answer: &Value) -> Option<i64> {
    answer.get("res_id").and_then(Value::as_i64)
}

/// A purchase order as [`read_order`] answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub id: i64,
    /// Odoo's reference (e.g. `P00001`): careflow's `odoo_order_ref`.
    pub name: String,
    /// `draft | sent | to approve | purchase | done | cancel`. Receipts and bills exist only
    /// from `purchase` on: a `ReceiveGoods` or `PostVendorBill` that finds the order still in
    /// `draft` ran between its create and its `button_confirm` and must wait (retry).
    pub state: String,
    pub picking_ids: Vec<i64>,
    pub invoice_ids: Vec<i64>,
}

impl OrderRow {
    /// Parses the answer of [`read_order`] (a list of one row).
    ///
    /// # Errors
    /// [`AnswerError`] when the answer is not one row with those fields.
    pub fn from_read(answer: &Value) -> Result<Self, AnswerError> {
        let error = AnswerError {
            call: "purchase.order read",
            expected: "one row with id, name, state, picking_ids and invoice_ids",
        };
        let row = answer
            .as_array()
            .and_then(|rows| rows.first())
            .ok_or_else(|| error.clone())?;
        let ids = |field: &str| -> Option<Vec<i64>> {
            row.get(field)?
                .as_array()?
                .iter()
                .map(Value::as_i64)
                .collect()
        };
        Ok(OrderRow {
            id: row
                .get("id")
                .and_then(Value::as_i64)
                .ok_or_else(|| error.clone())?,
            name: row
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| error.clone())?
                .to_owned(),
            state: row
                .get("state")
                .and_then(Value::as_str)
                .ok_or_else(|| error.clone())?
                .to_owned(),
            picking_ids: ids("picking_ids").ok_or_else(|| error.clone())?,
            invoice_ids: ids("invoice_ids").ok_or(error)?,
        })
    }

    /// Whether the order is confirmed (its receipt and bills can exist).
    pub fn is_confirmed(&self) -> bool {
        matches!(self.state.as_str(), "purchase" | "done")
    }
}

/// A receivable journal item as [`receivable_lines`] answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivableLine {
    pub id: i64,
    /// Signed: negative for a credit (a payment received, a credit note).
    pub balance: f64,
    /// What is left to reconcile, signed like `balance`.
    pub amount_residual: f64,
    pub reconciled: bool,
}

impl ReceivableLine {
    /// The first row of an answer of [`receivable_lines`]; `None` for `[]`.
    ///
    /// # Errors
    /// [`AnswerError`] when a row lacks `id`, `balance`, `amount_residual` or `reconciled`.
    pub fn from_rows(answer: &Value) -> Result<Option<Self>, AnswerError> {
        let error = AnswerError {
            call: "account.move.line search_read",
            expected: "rows with id, balance, amount_residual and reconciled",
        };
        let rows = answer.as_array().ok_or_else(|| error.clone())?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let number = |field: &str| row.get(field).and_then(Value::as_f64);
        Ok(Some(ReceivableLine {
            id: row
                .get("id")
                .and_then(Value::as_i64)
                .ok_or_else(|| error.clone())?,
            balance: number("balance").ok_or_else(|| error.clone())?,
            amount_residual: number("amount_residual").ok_or_else(|| error.clone())?,
            reconciled: row
                .get("reconciled")
                .and_then(Value::as_bool)
                .ok_or(error)?,
        }))
    }

    /// Whether nothing of the line has been reconciled yet: its residual is still its whole
    /// balance. A repeat of a reconciliation (after a crash) finds it touched and leaves it,
    /// also when an earlier attempt settled only part of it (the invoice was smaller).
    pub fn untouched(&self) -> bool {
        !self.reconciled
            && self.balance.abs() > 0.004
            && (self.amount_residual - self.balance).abs() < 0.005
    }
}
