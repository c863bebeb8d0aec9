//! `account.move` (customer invoices and credit notes, vendor bills), `account.payment` and the
//! `account.payment.register` wizard (API-NOTES §4.2, §4.3), and the reconciliation of a
//! receivable line with an invoice (`js_assign_outstanding_line`). Amounts come from the
//! product lines and their percent taxes. The only other journal items are the receivable
//! lines reconciliation works on: one per posted customer invoice or credit note
//! (`payment_term`, its residual the move's `amount_residual`) and one per customer payment
//! (on the journal entry 17.0 creates with the payment, `move_id`); no tax, income, payable
//! or liquidity lines. A payment lowers `amount_residual` of the invoices it pays, oldest
//! first.

use serde_json::{Value, json};

use super::fault::Fault;
use super::orm::{Args, Env, ids_of, money, truthy};
use super::schema::Kind;
use super::store::{Record, Store};

pub const SALE_JOURNAL: i64 = 1;
pub const PURCHASE_JOURNAL: i64 = 2;
pub const MISC_JOURNAL: i64 = 3;
pub const BANK_JOURNAL: i64 = 6;
/// The chart's receivable and payable accounts (`account.account`).
pub const RECEIVABLE: i64 = 1;
pub const PAYABLE: i64 = 2;

/// A new row of `model` as Odoo would store it: the field defaults, then `values` (not
/// through the ORM: for records Odoo itself makes, such as a wizard's payments).
fn row(env: &Env, model: &str, values: Value) -> Record {
    let mut rec = Record::new();
    if let Some(def) = env.store.schema.model(model) {
        for field in &def.fields {
            if !matches!(field.kind, Kind::One2many(..)) {
                rec.insert(field.name.into(), field.default.clone());
            }
        }
    }
    rec.insert("create_date".into(), json!(env.now));
    rec.insert("write_date".into(), json!(env.now));
    rec.insert("create_uid".into(), json!(super::UID));
    rec.insert("write_uid".into(), json!(super::UID));
    if let Value::Object(values) = values {
        rec.extend(values);
    }
    rec
}

/// A stored value (`Null` when the record or the field is absent).
fn stored(store: &Store, model: &str, id: i64, field: &str) -> Value {
    store
        .get(model, id)
        .and_then(|rec| rec.get(field))
        .cloned()
        .unwrap_or(Value::Null)
}

/// What is left to reconcile on a journal item, signed like its balance: a customer
/// document's receivable line follows its move's `amount_residual`; a payment's keeps its own.
pub fn residual(store: &Store, line: i64) -> f64 {
    let number =
        |model: &str, id: i64, field: &str| stored(store, model, id, field).as_f64().unwrap_or(0.0);
    if stored(store, "account.move.line", line, "display_type").as_str() != Some("payment_term") {
        return number("account.move.line", line, "amount_residual");
    }
    let Some(entry) = stored(store, "account.move.line", line, "move_id").as_i64() else {
        return 0.0;
    };
    let left = number("account.move", entry, "amount_residual");
    let refund = stored(store, "account.move", entry, "move_type")
        .as_str()
        .is_some_and(|t| t.ends_with("_refund"));
    if refund { -left } else { left }
}

/// Whether a line of a reconcilable account has nothing left (false for other lines).
pub fn reconciled(store: &Store, line: i64) -> bool {
    let reconcilable = stored(store, "account.move.line", line, "account_id")
        .as_i64()
        .is_some_and(|account| truthy(&stored(store, "account.account", account, "reconcile")));
    reconcilable && residual(store, line).abs() < 0.005
}

/// `account_type`, related to the line's account (17.0: not stored, searchable).
pub fn account_type(store: &Store, line: i64) -> Value {
    match stored(store, "account.move.line", line, "account_id").as_i64() {
        Some(account) => stored(store, "account.account", account, "account_type"),
        None => Value::Bool(false),
    }
}

/// `invoice_line_ids`: the move's lines shown on the document (17.0's domain on
/// `display_type`), not its receivable line.
pub fn invoice_lines(store: &Store, entry: i64) -> Value {
    let lines: Vec<i64> = store
        .children("account.move.line", "move_id", entry)
        .into_iter()
        .filter(|&l| {
            matches!(
                stored(store, "account.move.line", l, "display_type").as_str(),
                Some("product" | "line_section" | "line_note")
            )
        })
        .collect();
    json!(lines)
}

fn is_inbound(move_type: &str) -> bool {
    move_type.starts_with("out_")
}

pub fn prepare_create(
    env: &mut Env,
    model: &str,
    rec: &mut Record,
    vals: &Record,
) -> Result<(), Fault> {
    match model {
        "account.move" => {
            if !vals.contains_key("move_type")
                && let Some(default) = env.context.get("default_move_type").cloned()
            {
                rec.insert("move_type".into(), default);
            }
            let move_type = rec
                .get("move_type")
                .and_then(Value::as_str)
                .unwrap_or("entry")
                .to_owned();
            if !truthy(rec.get("journal_id").unwrap_or(&Value::Null)) {
                let journal = if move_type.starts_with("out_") {
                    SALE_JOURNAL
                } else if move_type.starts_with("in_") {
                    PURCHASE_JOURNAL
                } else {
                    MISC_JOURNAL
                };
                rec.insert("journal_id".into(), json!(journal));
            }
            if !truthy(rec.get("date").unwrap_or(&Value::Null)) {
                let date = match rec.get("invoice_date") {
                    Some(Value::String(d)) => d.clone(),
                    _ => env.today.clone(),
                };
                rec.insert("date".into(), json!(date));
            }
            rec.insert("name".into(), json!("/"));
        }
        "account.move.line" => {
            let move_id = rec.get("move_id").and_then(Value::as_i64).unwrap_or(0);
            let move_type = env.str("account.move", move_id, "move_type");
            let product = rec.get("product_id").and_then(Value::as_i64);
            if let Some(product) = product {
                if !vals.contains_key("name") {
                    let name = super::business::display_name(env.store, "product.product", product);
                    rec.insert("name".into(), name);
                }
                if !vals.contains_key("price_unit") {
                    let price = if is_inbound(&move_type) {
                        env.f64("product.product", product, "list_price")
                    } else {
                        env.f64("product.product", product, "standard_price")
                    };
                    rec.insert("price_unit".into(), json!(price));
                }
                if !vals.contains_key("product_uom_id") {
                    rec.insert(
                        "product_uom_id".into(),
                        env.val("product.product", product, "uom_id"),
                    );
                }
            }
            let is_product_line =
                rec.get("display_type").and_then(Value::as_str) == Some("product");
            if is_product_line && !vals.contains_key("tax_ids") {
                let taxes = match (product, is_inbound(&move_type)) {
                    (Some(p), true) => env.val("product.product", p, "taxes_id"),
                    (Some(p), false) => env.val("product.product", p, "supplier_taxes_id"),
                    (None, true) => json!([1]),
                    (None, false) => json!([2]),
                };
                rec.insert("tax_ids".into(), taxes);
            }
        }
        "account.payment" => {
            if !truthy(rec.get("date").unwrap_or(&Value::Null)) {
                rec.insert("date".into(), json!(env.today));
            }
            rec.insert("name".into(), json!("/"));
        }
        "account.payment.register" => prepare_wizard(env, rec, vals)?,
        _ => {}
    }
    Ok(())
}

/// The journal entry 17.0 creates with a payment (`move_id`): here only its counterpart line on
/// the receivable (customer) or payable (supplier) account, the line a reconciliation uses.
/// `residual` is what is left of it (a wizard's payment has paid invoices already).
pub fn payment_entry(env: &mut Env, payment: i64, residual: Option<f64>) {
    let amount = env.f64("account.payment", payment, "amount");
    let inbound = env.str("account.payment", payment, "payment_type") == "inbound";
    let customer = env.str("account.payment", payment, "partner_type") == "customer";
    let entry = row(
        env,
        "account.move",
        json!({
            "move_type": "entry",
            "name": env.val("account.payment", payment, "name"),
            "state": env.val("account.payment", payment, "state"),
            "journal_id": env.val("account.payment", payment, "journal_id"),
            "partner_id": env.val("account.payment", payment, "partner_id"),
            "ref": env.val("account.payment", payment, "ref"),
            "date": env.val("account.payment", payment, "date"),
            "amount_total": money(amount),
        }),
    );
    let entry = env.store.insert("account.move", entry, None);
    let balance = money(if inbound { -amount } else { amount });
    let line = row(
        env,
        "account.move.line",
        json!({
            "move_id": entry,
            "name": env.val("account.payment", payment, "ref"),
            "display_type": "product",
            "account_id": if customer { RECEIVABLE } else { PAYABLE },
            "balance": balance,
            "amount_residual": money(residual.unwrap_or(balance)),
            "payment_id": payment,
        }),
    );
    env.store.insert("account.move.line", line, None);
    env.store
        .set("account.payment", payment, "move_id", json!(entry));
}

/// The wizard's `default_get`: the moves come from the context (API-NOTES §4.3).
fn prepare_wizard(env: &mut Env, rec: &mut Record, vals: &Record) -> Result<(), Fault> {
    let active_model = env
        .context
        .get("active_model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let active_ids =
        ids_of(env.context.get("active_ids").unwrap_or(&json!([]))).unwrap_or_default();
    let mut moves: Vec<i64> = match active_model.as_str() {
        "account.move" => active_ids,
        "account.move.line" => {
            let mut moves: Vec<i64> = active_ids
                .iter()
                .filter_map(|&l| env.id("account.move.line", l, "move_id"))
                .collect();
            moves.dedup();
            moves
        }
        _ => {
            return Err(Fault::user(
                "The register payment wizard should only be called on account.move or account.move.line records.",
            ));
        }
    };
    moves.retain(|&m| env.store.exists("account.move", m));
    if moves
        .iter()
        .any(|&m| env.str("account.move", m, "state") != "posted")
    {
        return Err(Fault::user(
            "You can only register payment for posted journal entries.",
        ));
    }
    moves.retain(|&m| env.f64("account.move", m, "amount_residual") > 0.004);
    if moves.is_empty() {
        return Err(Fault::user(
            "You can't register a payment because there is nothing left to pay on the selected journal items.",
        ));
    }
    let partners: Vec<Value> = moves
        .iter()
        .map(|&m| env.val("account.move", m, "partner_id"))
        .collect();
    let one_batch = partners.windows(2).all(|w| w[0] == w[1]);
    let source_amount: f64 = moves
        .iter()
        .map(|&m| env.f64("account.move", m, "amount_residual"))
        .sum();
    let move_type = env.str("account.move", moves[0], "move_type");
    let lines: Vec<i64> = moves
        .iter()
        .flat_map(|&m| env.store.children("account.move.line", "move_id", m))
        .collect();
    rec.insert("line_ids".into(), json!(lines));
    rec.insert("partner_id".into(), partners[0].clone());
    rec.insert("currency_id".into(), json!(2));
    rec.insert(
        "payment_type".into(),
        json!(if is_inbound(&move_type) {
            "inbound"
        } else {
            "outbound"
        }),
    );
    rec.insert(
        "partner_type".into(),
        json!(if is_inbound(&move_type) {
            "customer"
        } else {
            "supplier"
        }),
    );
    rec.insert("can_edit_wizard".into(), json!(one_batch));
    rec.insert("source_amount".into(), json!(money(source_amount)));
    if !vals.contains_key("group_payment") {
        rec.insert("group_payment".into(), json!(one_batch && moves.len() == 1));
    }
    if !vals.contains_key("amount") {
        rec.insert("amount".into(), json!(money(source_amount)));
    }
    if !vals.contains_key("payment_date") {
        rec.insert("payment_date".into(), json!(env.today));
    }
    if !vals.contains_key("journal_id") {
        rec.insert("journal_id".into(), json!(BANK_JOURNAL));
    }
    if !vals.contains_key("communication") {
        let names: Vec<String> = moves
            .iter()
            .map(|&m| {
                let reference = env.str("account.move", m, "payment_reference");
                if reference.is_empty() {
                    let r = env.str("account.move", m, "ref");
                    if r.is_empty() {
                        env.str("account.move", m, "name")
                    } else {
                        r
                    }
                } else {
                    reference
                }
            })
            .collect();
        rec.insert("communication".into(), json!(names.join(" ")));
    }
    Ok(())
}

/// 17.0 `account.move.write`: fields a posted move refuses.
const POSTED_LOCKED: &[&str] = &[
    "invoice_line_ids",
    "line_ids",
    "invoice_date",
    "date",
    "partner_id",
    "invoice_payment_term_id",
    "currency_id",
];
/// Line fields that would change a posted move's amounts (the fake reuses the move's message;
/// 17.0's per-field line messages were not checked).
const LINE_LOCKED: &[&str] = &[
    "quantity",
    "price_unit",
    "discount",
    "tax_ids",
    "product_id",
    "move_id",
];

pub fn check_write(env: &Env, model: &str, id: i64, vals: &Record) -> Result<(), Fault> {
    let move_id = if model == "account.move" {
        id
    } else {
        env.id(model, id, "move_id").unwrap_or(0)
    };
    let state = match (model, vals.get("state").and_then(Value::as_str)) {
        ("account.move", Some(state)) => state.to_owned(),
        _ => env.str("account.move", move_id, "state"),
    };
    if state != "posted" {
        return Ok(());
    }
    let locked = if model == "account.move" {
        POSTED_LOCKED
    } else {
        LINE_LOCKED
    };
    let fields: Vec<&str> = vals
        .keys()
        .map(String::as_str)
        .filter(|k| locked.contains(k))
        .collect();
    if !fields.is_empty() {
        return Err(Fault::user(format!(
            "You cannot modify the following readonly fields on a posted move: {}",
            fields.join(", ")
        )));
    }
    Ok(())
}

/// Recomputes line and move amounts after a line or a move changed.
pub fn after_change(env: &mut Env, model: &str, id: i64) -> Result<(), Fault> {
    let move_id = if model == "account.move" {
        id
    } else {
        match env.id(model, id, "move_id") {
            Some(m) => m,
            None => return Ok(()),
        }
    };
    if !env.store.exists("account.move", move_id) {
        return Ok(());
    }
    let mut untaxed = 0.0;
    let mut tax = 0.0;
    for line in env.store.children("account.move.line", "move_id", move_id) {
        if env.str("account.move.line", line, "display_type") != "product" {
            continue;
        }
        let quantity = env.f64("account.move.line", line, "quantity");
        let price = env.f64("account.move.line", line, "price_unit");
        let discount = env.f64("account.move.line", line, "discount");
        let subtotal = money(quantity * price * (1.0 - discount / 100.0));
        let line_tax: f64 = tax_amount(
            env,
            &env.val("account.move.line", line, "tax_ids"),
            subtotal,
        );
        let mut values = Record::new();
        values.insert("price_subtotal".into(), json!(subtotal));
        values.insert("price_total".into(), json!(money(subtotal + line_tax)));
        env.store.update("account.move.line", line, values);
        untaxed += subtotal;
        tax += line_tax;
    }
    let total = money(untaxed + tax);
    let mut values = Record::new();
    values.insert("amount_untaxed".into(), json!(money(untaxed)));
    values.insert("amount_tax".into(), json!(money(tax)));
    values.insert("amount_total".into(), json!(total));
    if env.str("account.move", move_id, "state") == "draft" {
        values.insert("amount_residual".into(), json!(total));
    }
    if let Some(Value::String(date)) = env
        .get("account.move", move_id)
        .and_then(|r| r.get("invoice_date"))
        .cloned()
    {
        values.insert("date".into(), json!(date));
    }
    env.store.update("account.move", move_id, values);
    Ok(())
}

/// Percent taxes, rounded per line (the default `round_per_line`).
pub fn tax_amount(env: &Env, taxes: &Value, base: f64) -> f64 {
    ids_of(taxes)
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let amount = env.f64("account.tax", t, "amount");
            match env.str("account.tax", t, "amount_type").as_str() {
                "fixed" => amount,
                _ => money(base * amount / 100.0),
            }
        })
        .sum()
}

pub fn call(
    env: &mut Env,
    model: &str,
    method: &str,
    args: &Args,
) -> Option<Result<Option<Value>, Fault>> {
    let outcome = match (model, method) {
        ("account.move", "action_post") => args.ids().and_then(|ids| {
            post(env, &ids)?;
            Ok(Some(json!(false)))
        }),
        ("account.move", "button_draft") => args.ids().and_then(|ids| {
            for id in ids {
                exists(env, "account.move", id)?;
                if env.str("account.move", id, "payment_state") != "not_paid"
                    && env.str("account.move", id, "state") == "posted"
                    && env.f64("account.move", id, "amount_residual")
                        < env.f64("account.move", id, "amount_total")
                {
                    return Err(Fault::user(
                        "You cannot reset to draft an entry having a payment reconciled; unreconcile it first.",
                    ));
                }
                env.store.set("account.move", id, "state", json!("draft"));
                after_change(env, "account.move", id)?;
            }
            Ok(None)
        }),
        ("account.move", "button_cancel") => args.ids().and_then(|ids| {
            for &id in &ids {
                exists(env, "account.move", id)?;
                if env.str("account.move", id, "state") == "posted" {
                    env.store.set("account.move", id, "state", json!("draft"));
                }
            }
            if ids
                .iter()
                .any(|&id| env.str("account.move", id, "state") != "draft")
            {
                return Err(Fault::user("Only draft journal entries can be cancelled."));
            }
            for id in ids {
                env.store.set("account.move", id, "state", json!("cancel"));
            }
            Ok(None)
        }),
        ("account.payment", "action_post") => args.ids().and_then(|ids| {
            for id in ids {
                exists(env, "account.payment", id)?;
                if env.str("account.payment", id, "state") != "draft" {
                    return Err(Fault::user("Only a draft payment can be posted."));
                }
                let date = env.str("account.payment", id, "date");
                let name = payment_name(env, &date);
                env.store.set("account.payment", id, "name", json!(name));
                env.store.set("account.payment", id, "state", json!("posted"));
                if let Some(entry) = env.id("account.payment", id, "move_id") {
                    env.store.set("account.move", entry, "name", json!(name));
                    env.store
                        .set("account.move", entry, "state", json!("posted"));
                }
            }
            Ok(None)
        }),
        ("account.move", "js_assign_outstanding_line") => args
            .ids()
            .and_then(|ids| assign_outstanding_line(env, &ids, args.get(1, "line_id"))),
        ("account.payment.register", "action_create_payments") => {
            args.ids().and_then(|ids| create_payments(env, &ids))
        }
        _ => return None,
    };
    Some(outcome)
}

fn exists(env: &Env, model: &str, id: i64) -> Result<(), Fault> {
    if env.store.exists(model, id) {
        Ok(())
    } else {
        Err(Fault::missing(model, &[id]))
    }
}

/// `_post` (API-NOTES §4.2): checks, the name from the journal's sequence, state posted.
fn post(env: &mut Env, ids: &[i64]) -> Result<(), Fault> {
    for &id in ids {
        exists(env, "account.move", id)?;
        let move_type = env.str("account.move", id, "move_type");
        let state = env.str("account.move", id, "state");
        if state != "draft" {
            let name = env.str("account.move", id, "name");
            return Err(Fault::user(format!(
                "The entry {name} (id {id}) must be in draft."
            )));
        }
        let lines: Vec<i64> = env
            .store
            .children("account.move.line", "move_id", id)
            .into_iter()
            .filter(|&l| env.str("account.move.line", l, "display_type") == "product")
            .collect();
        if lines.is_empty() {
            return Err(Fault::user("You need to add a line before posting."));
        }
        let invoice = move_type != "entry";
        if invoice && env.id("account.move", id, "partner_id").is_none() {
            return Err(Fault::user(if is_inbound(&move_type) {
                "The field 'Customer' is required, please complete it to validate the Customer Invoice."
            } else {
                "The field 'Vendor' is required, please complete it to validate the Vendor Bill."
            }));
        }
        if invoice && env.f64("account.move", id, "amount_total") < 0.0 {
            return Err(Fault::user(
                "You cannot validate an invoice with a negative total amount. You should create a credit note instead. Use the action menu to transform it into a credit note or refund.",
            ));
        }
        if !truthy(&env.val("account.move", id, "invoice_date")) {
            if move_type.starts_with("in_") {
                return Err(Fault::user(
                    "The Bill/Refund date is required to validate this document.",
                ));
            }
            if invoice {
                let today = env.today.clone();
                env.store
                    .set("account.move", id, "invoice_date", json!(today));
            }
        }
        let date = match env.val("account.move", id, "invoice_date") {
            Value::String(d) => d,
            _ => env.str("account.move", id, "date"),
        };
        let name = sequence_name(env, id, &move_type, &date);
        let total = env.f64("account.move", id, "amount_total");
        let mut values = Record::new();
        values.insert("name".into(), json!(name));
        values.insert("state".into(), json!("posted"));
        values.insert("date".into(), json!(date));
        values.insert("invoice_date_due".into(), json!(date));
        values.insert("amount_residual".into(), json!(total));
        values.insert(
            "payment_state".into(),
            json!(if invoice && total.abs() < 0.005 {
                "paid"
            } else {
                "not_paid"
            }),
        );
        env.store.update("account.move", id, values);
        if matches!(move_type.as_str(), "out_invoice" | "out_refund") {
            receivable_line(env, id, &move_type, total);
        }
        if invoice && let Some(partner) = env.id("account.move", id, "partner_id") {
            let rank = if is_inbound(&move_type) {
                "customer_rank"
            } else {
                "supplier_rank"
            };
            let current = env.val("res.partner", partner, rank).as_i64().unwrap_or(0);
            env.store
                .set("res.partner", partner, rank, json!(current + 1));
        }
    }
    Ok(())
}

/// A posted customer document's receivable line (`payment_term`): the debit of an invoice,
/// the credit of a credit note. 17.0 keeps it from the draft on; the fake adds it when posting
/// (and keeps one, should the move be posted again after a reset to draft).
fn receivable_line(env: &mut Env, entry: i64, move_type: &str, total: f64) {
    let balance = money(if move_type == "out_refund" {
        -total
    } else {
        total
    });
    let existing = env
        .store
        .children("account.move.line", "move_id", entry)
        .into_iter()
        .find(|&l| env.str("account.move.line", l, "display_type") == "payment_term");
    if let Some(line) = existing {
        env.store
            .set("account.move.line", line, "balance", json!(balance));
        return;
    }
    let line = row(
        env,
        "account.move.line",
        json!({
            "move_id": entry,
            "name": env.val("account.move", entry, "payment_reference"),
            "display_type": "payment_term",
            "account_id": RECEIVABLE,
            "balance": balance,
            "quantity": 0.0,
        }),
    );
    env.store.insert("account.move.line", line, None);
}

/// `js_assign_outstanding_line(line_id)` on one invoice (17.0): the line plus the invoice's
/// unreconciled lines of the same account, reconciled together (`reconcile()` checks that the
/// entries are posted and the account reconcilable, not that the partners agree), debits
/// against credits in order; each side keeps what is left. Answers None (no `result` key).
fn assign_outstanding_line(
    env: &mut Env,
    ids: &[i64],
    line: Option<&Value>,
) -> Result<Option<Value>, Fault> {
    let &[invoice] = ids else {
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        return Err(Fault::value_error(format!(
            "Expected singleton: account.move({})",
            list.join(", ")
        )));
    };
    exists(env, "account.move", invoice)?;
    let line = line.and_then(Value::as_i64).ok_or_else(|| {
        Fault::type_error(
            "AccountMove.js_assign_outstanding_line() missing 1 required positional argument: 'line_id'",
        )
    })?;
    exists(env, "account.move.line", line)?;
    let account = env.id("account.move.line", line, "account_id");
    let mut lines = vec![line];
    for other in env.store.children("account.move.line", "move_id", invoice) {
        if other != line
            && env.id("account.move.line", other, "account_id") == account
            && !reconciled(env.store, other)
        {
            lines.push(other);
        }
    }
    let unposted = lines.iter().any(|&l| {
        let entry = env.id("account.move.line", l, "move_id").unwrap_or(0);
        env.str("account.move", entry, "state") != "posted"
    });
    if unposted {
        return Err(Fault::user("You can only reconcile posted entries."));
    }
    let reconcilable = account.is_some_and(|a| truthy(&env.val("account.account", a, "reconcile")));
    if !reconcilable {
        let code = account.map_or_else(String::new, |a| env.str("account.account", a, "code"));
        return Err(Fault::user(format!(
            "Account {code} does not allow reconciliation. First change the configuration of this account to allow it."
        )));
    }
    let debits: Vec<i64> = lines
        .iter()
        .copied()
        .filter(|&l| residual(env.store, l) > 0.004)
        .collect();
    let credits: Vec<i64> = lines
        .iter()
        .copied()
        .filter(|&l| residual(env.store, l) < -0.004)
        .collect();
    for &debit in &debits {
        for &credit in &credits {
            let amount = money(residual(env.store, debit).min(-residual(env.store, credit)));
            if amount < 0.005 {
                continue;
            }
            settle_line(env, debit, amount);
            settle_line(env, credit, amount);
            for (payment_side, invoice_side) in [(debit, credit), (credit, debit)] {
                let Some(payment) = env.id("account.move.line", payment_side, "payment_id") else {
                    continue;
                };
                let Some(paid) = env.id("account.move.line", invoice_side, "move_id") else {
                    continue;
                };
                let mut invoices =
                    ids_of(&env.val("account.payment", payment, "reconciled_invoice_ids"))
                        .unwrap_or_default();
                if env.str("account.move", paid, "move_type") == "out_invoice"
                    && !invoices.contains(&paid)
                {
                    invoices.push(paid);
                    env.store.set(
                        "account.payment",
                        payment,
                        "reconciled_invoice_ids",
                        json!(invoices),
                    );
                }
            }
        }
    }
    Ok(None)
}

/// Takes `amount` (positive) off what is left of `line`, on its move for a customer
/// document's receivable line (`amount_residual`, `payment_state`), on the line itself and
/// its payment's `is_reconciled` for a payment's.
fn settle_line(env: &mut Env, line: i64, amount: f64) {
    let before = residual(env.store, line);
    let left = money(before.abs() - amount).max(0.0);
    if env.str("account.move.line", line, "display_type") == "payment_term" {
        let Some(entry) = env.id("account.move.line", line, "move_id") else {
            return;
        };
        let mut values = Record::new();
        values.insert("amount_residual".into(), json!(left));
        values.insert(
            "payment_state".into(),
            json!(if left < 0.005 { "paid" } else { "partial" }),
        );
        env.store.update("account.move", entry, values);
        return;
    }
    let signed = if before < 0.0 { -left } else { left };
    env.store
        .set("account.move.line", line, "amount_residual", json!(signed));
    if let Some(payment) = env.id("account.move.line", line, "payment_id") {
        env.store.set(
            "account.payment",
            payment,
            "is_reconciled",
            json!(left < 0.005),
        );
    }
}

/// `_get_starting_sequence`: sale, bank and cash journals number per year
/// (`INV/2026/00001`), the others per month (`BILL/2026/05/0001`); credit notes have their own
/// sequence, the journal's code prefixed with `R` (`RINV/2026/00001`, the journal's
/// `refund_sequence`, on by default for sale and purchase journals).
fn sequence_name(env: &mut Env, move_id: i64, move_type: &str, date: &str) -> String {
    let journal = env
        .id("account.move", move_id, "journal_id")
        .unwrap_or(SALE_JOURNAL);
    let mut code = env.str("account.journal", journal, "code");
    if move_type.ends_with("_refund") {
        code = format!("R{code}");
    }
    let year = date.get(..4).unwrap_or("2026").to_owned();
    let month = date.get(5..7).unwrap_or("01").to_owned();
    if matches!(
        env.str("account.journal", journal, "type").as_str(),
        "sale" | "bank" | "cash"
    ) {
        let n = env.store.next(&format!("move/{code}/{year}"));
        format!("{code}/{year}/{n:05}")
    } else {
        let n = env.store.next(&format!("move/{code}/{year}/{month}"));
        format!("{code}/{year}/{month}/{n:04}")
    }
}

fn payment_name(env: &mut Env, date: &str) -> String {
    let code = env.str("account.journal", BANK_JOURNAL, "code");
    let year = date.get(..4).unwrap_or("2026").to_owned();
    let n = env.store.next(&format!("move/P{code}/{year}"));
    format!("P{code}/{year}/{n:05}")
}

/// `action_create_payments`: one payment with the wizard's amount in edit mode (one batch and
/// one invoice or `group_payment`), otherwise one payment per invoice for its full residual.
fn create_payments(env: &mut Env, ids: &[i64]) -> Result<Option<Value>, Fault> {
    let mut payments = Vec::new();
    for &wizard in ids {
        exists(env, "account.payment.register", wizard)?;
        let mut moves: Vec<i64> = ids_of(&env.val("account.payment.register", wizard, "line_ids"))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|l| env.id("account.move.line", l, "move_id"))
            .collect();
        moves.sort_by(|&a, &b| {
            env.str("account.move", a, "invoice_date")
                .cmp(&env.str("account.move", b, "invoice_date"))
                .then(a.cmp(&b))
        });
        moves.dedup();
        moves.retain(|&m| env.f64("account.move", m, "amount_residual") > 0.004);
        if moves.is_empty() {
            return Err(Fault::user(
                "You can't register a payment because there is nothing left to pay on the selected journal items.",
            ));
        }
        let can_edit = truthy(&env.val("account.payment.register", wizard, "can_edit_wizard"));
        let group = truthy(&env.val("account.payment.register", wizard, "group_payment"));
        let edit_mode = can_edit && (moves.len() == 1 || group);
        let date = env.str("account.payment.register", wizard, "payment_date");
        let memo = env.val("account.payment.register", wizard, "communication");
        let payment_type = env.str("account.payment.register", wizard, "payment_type");
        let partner_type = env.str("account.payment.register", wizard, "partner_type");
        let journal = env.val("account.payment.register", wizard, "journal_id");
        let write_off = env.str(
            "account.payment.register",
            wizard,
            "payment_difference_handling",
        ) == "reconcile";
        let batches: Vec<(f64, Vec<i64>)> = if edit_mode {
            vec![(
                env.f64("account.payment.register", wizard, "amount"),
                moves.clone(),
            )]
        } else if group {
            let mut by_partner: Vec<(Value, Vec<i64>)> = Vec::new();
            for &m in &moves {
                let partner = env.val("account.move", m, "partner_id");
                match by_partner.iter_mut().find(|(p, _)| *p == partner) {
                    Some((_, list)) => list.push(m),
                    None => by_partner.push((partner, vec![m])),
                }
            }
            by_partner
                .into_iter()
                .map(|(_, list)| {
                    let total = list
                        .iter()
                        .map(|&m| env.f64("account.move", m, "amount_residual"))
                        .sum();
                    (total, list)
                })
                .collect()
        } else {
            moves
                .iter()
                .map(|&m| (env.f64("account.move", m, "amount_residual"), vec![m]))
                .collect()
        };
        for (amount, batch) in batches {
            let amount = money(amount);
            let partner = env.val("account.move", batch[0], "partner_id");
            let mut remaining = amount;
            let mut paid = Vec::new();
            for &m in &batch {
                if remaining <= 0.004 && !write_off {
                    break;
                }
                let residual = env.f64("account.move", m, "amount_residual");
                let applied = if write_off && edit_mode {
                    residual
                } else {
                    residual.min(remaining)
                };
                remaining = money(remaining - applied.min(remaining));
                let left = money(residual - applied);
                let mut values = Record::new();
                values.insert("amount_residual".into(), json!(left));
                values.insert(
                    "payment_state".into(),
                    json!(if left.abs() < 0.005 {
                        "paid"
                    } else {
                        "partial"
                    }),
                );
                env.store.update("account.move", m, values);
                paid.push(m);
            }
            let name = payment_name(env, &date);
            let payment = row(
                env,
                "account.payment",
                json!({
                    "name": name,
                    "partner_id": partner,
                    "amount": amount,
                    "date": date,
                    "ref": memo,
                    "payment_type": payment_type,
                    "partner_type": partner_type,
                    "state": "posted",
                    "journal_id": journal,
                    "currency_id": 2,
                    "company_id": 1,
                    "reconciled_invoice_ids": paid,
                    "is_reconciled": remaining <= 0.004,
                }),
            );
            let payment = env.store.insert("account.payment", payment, None);
            let left = if payment_type == "inbound" {
                -remaining.max(0.0)
            } else {
                remaining.max(0.0)
            };
            payment_entry(env, payment, Some(left));
            payments.push(payment);
        }
    }
    if env.ctx_bool("dont_redirect_to_payments") {
        return Ok(Some(json!(true)));
    }
    if payments.len() == 1 {
        return Ok(Some(json!({
            "name": "Payments",
            "type": "ir.actions.act_window",
            "res_model": "account.payment",
            "context": {"create": false},
            "view_mode": "form",
            "res_id": payments[0],
        })));
    }
    Ok(Some(json!({
        "name": "Payments",
        "type": "ir.actions.act_window",
        "res_model": "account.payment",
        "context": {"create": false},
        "view_mode": "tree,form",
        "domain": [["id", "in", payments]],
    })))
}
