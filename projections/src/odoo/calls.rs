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
            Action::UpsertPartner { .. }
            | Action::UpsertVendor { .. }
            | Action::UpsertProduct { .. } => {
                Call::new(self.model(), "create", json!([self.upsert_values(ids)?]))
            }
            Action::UpsertReorderRule { .. } => {
                Call::new(self.model(), "create", json!([self.upsert_values(ids)?]))
            }
            Action::PostCustomerInvoice {
                partner,
                invoice_date,
                reference,
                lines,
            } => {
                let lines: Vec<Value> = lines
                    .iter()
                    .map(|line| {
                        json!([0, 0, {
                            "name": line.label,
                            "quantity": line.quantity,
                            "price_unit": money(line.price_unit),
                            "tax_ids": [],
                        }])
                    })
                    .collect();
                Call::new(
                    "account.move",
                    "create",
                    json!([{
                        "move_type": "out_invoice",
                        "partner_id": resolve_careflow(ids, partner)?,
                        "invoice_date": invoice_date,
                        "ref": reference,
                        "invoice_line_ids": lines,
                    }]),
                )
            }
            Action::RegisterPayment {
                partner,
                amount,
                payment_date,
                memo,
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
        Ok(match self {
            Action::UpsertPartner { .. }
            | Action::UpsertVendor { .. }
            | Action::UpsertProduct { .. }
            | Action::UpsertReorderRule { .. } => Some(Call::new(
                self.model(),
                "write",
                json!([[res_id], self.upsert_values(ids)?]),
            )),
            Action::PostCustomerInvoice { .. }
            | Action::RegisterPayment { .. }
            | Action::ConfirmPurchaseOrder { .. }
            | Action::ReceiveGoods { .. }
            | Action::PostVendorBill { .. }
            | Action::CancelPurchaseOrder { .. }
            | Action::ConsumeStock { .. } => None,
        })
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

    /// The field values of an upsert, with references resolved.
    fn upsert_values(&self, ids: &dyn Fn(&str) -> Option<i64>) -> Result<Value, MissingRef> {
        Ok(match self {
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
            Action::UpsertVendor { values } | Action::UpsertProduct { values } => {
                Value::Object(values.clone())
            }
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
            | Action::RegisterPayment { .. }
            | Action::ConfirmPurchaseOrder { .. }
            | Action::ReceiveGoods { .. }
            | Action::PostVendorBill { .. }
            | Action::CancelPurchaseOrder { .. }
            | Action::ConsumeStock { .. } => Value::Null,
        })
    }
}
