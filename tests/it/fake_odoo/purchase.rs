//! `purchase.order` and its lines (API-NOTES §4.4): confirmation creates one incoming picking
//! reserved in full, received and billed quantities come from done moves and bill lines, the
//! vendor bill is made of received-not-billed quantities, and cancelling refuses once something
//! was received.

use serde_json::{Value, json};

use super::fault::Fault;
use super::orm::{Args, Env, ids_of, money, truthy};
use super::stock;
use super::store::{Record, Store};

pub fn prepare_create(
    env: &mut Env,
    model: &str,
    rec: &mut Record,
    vals: &Record,
) -> Result<(), Fault> {
    match model {
        "purchase.order" => {
            if rec.get("name").and_then(Value::as_str).unwrap_or("New") == "New" {
                let n = env.store.next("purchase.order");
                rec.insert("name".into(), json!(format!("P{n:05}")));
            }
            if !truthy(rec.get("date_order").unwrap_or(&Value::Null)) {
                rec.insert("date_order".into(), json!(env.now));
            }
            if !vals.contains_key("user_id") {
                rec.insert("user_id".into(), json!(super::UID));
            }
        }
        "purchase.order.line" => {
            let order = rec.get("order_id").and_then(Value::as_i64).unwrap_or(0);
            if truthy(rec.get("display_type").unwrap_or(&Value::Null)) {
                return Ok(());
            }
            if let Some(product) = rec.get("product_id").and_then(Value::as_i64) {
                if !vals.contains_key("name") {
                    let mut name =
                        super::business::display_name(env.store, "product.product", product)
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                    let extra = env.str("product.product", product, "description_purchase");
                    if !extra.is_empty() {
                        name = format!("{name}\n{extra}");
                    }
                    rec.insert("name".into(), json!(name));
                }
                if !vals.contains_key("product_uom") {
                    rec.insert(
                        "product_uom".into(),
                        env.val("product.product", product, "uom_po_id"),
                    );
                }
                if !vals.contains_key("price_unit") {
                    rec.insert(
                        "price_unit".into(),
                        json!(env.f64("product.product", product, "standard_price")),
                    );
                }
                if !vals.contains_key("taxes_id") {
                    rec.insert(
                        "taxes_id".into(),
                        env.val("product.product", product, "supplier_taxes_id"),
                    );
                }
            }
            if !truthy(rec.get("date_planned").unwrap_or(&Value::Null)) {
                let planned = match env.val("purchase.order", order, "date_planned") {
                    Value::String(d) => d,
                    _ => env.now.clone(),
                };
                rec.insert("date_planned".into(), json!(planned));
            }
        }
        _ => {}
    }
    Ok(())
}

/// SQL check `accountable_required_fields`.
pub fn check_line(rec: &Record) -> Result<(), Fault> {
    if truthy(rec.get("display_type").unwrap_or(&Value::Null)) {
        return Ok(());
    }
    let set = |k: &str| truthy(rec.get(k).unwrap_or(&Value::Null));
    if !(set("product_id") && set("product_uom") && set("date_planned")) {
        return Err(Fault::integrity(
            "Missing required fields on accountable purchase order line.",
        ));
    }
    Ok(())
}

/// Recomputes line and order amounts.
pub fn after_change(env: &mut Env, model: &str, id: i64) -> Result<(), Fault> {
    let order = if model == "purchase.order" {
        id
    } else {
        match env.id(model, id, "order_id") {
            Some(o) => o,
            None => return Ok(()),
        }
    };
    let mut untaxed = 0.0;
    let mut tax = 0.0;
    for line in env.store.children("purchase.order.line", "order_id", order) {
        let subtotal = money(
            env.f64("purchase.order.line", line, "product_qty")
                * env.f64("purchase.order.line", line, "price_unit"),
        );
        let line_tax = super::account::tax_amount(
            env,
            &env.val("purchase.order.line", line, "taxes_id"),
            subtotal,
        );
        let mut values = Record::new();
        values.insert("price_subtotal".into(), json!(subtotal));
        values.insert("price_tax".into(), json!(money(line_tax)));
        values.insert("price_total".into(), json!(money(subtotal + line_tax)));
        env.store.update("purchase.order.line", line, values);
        untaxed += subtotal;
        tax += line_tax;
    }
    let mut values = Record::new();
    values.insert("amount_untaxed".into(), json!(money(untaxed)));
    values.insert("amount_tax".into(), json!(money(tax)));
    values.insert("amount_total".into(), json!(money(untaxed + tax)));
    env.store.update("purchase.order", order, values);
    Ok(())
}

fn line_value(store: &Store, line: i64, field: &str) -> Value {
    store
        .get("purchase.order.line", line)
        .and_then(|r| r.get(field))
        .cloned()
        .unwrap_or(Value::Bool(false))
}

fn f(store: &Store, model: &str, id: i64, field: &str) -> f64 {
    store
        .get(model, id)
        .and_then(|r| r.get(field))
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

fn s<'a>(store: &'a Store, model: &str, id: i64, field: &str) -> &'a str {
    store
        .get(model, id)
        .and_then(|r| r.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Done incoming quantity of a line, less what went back to the vendor.
pub fn qty_received(store: &Store, line: i64) -> f64 {
    store
        .children("stock.move", "purchase_line_id", line)
        .into_iter()
        .filter(|&m| s(store, "stock.move", m, "state") == "done")
        .map(|m| {
            let quantity = f(store, "stock.move", m, "quantity");
            let dest = store
                .get("stock.move", m)
                .and_then(|r| r.get("location_dest_id"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if s(store, "stock.location", dest, "usage") == "supplier" {
                -quantity
            } else {
                quantity
            }
        })
        .sum()
}

/// Billed quantity of a line: bill lines of bills that are not cancelled.
pub fn qty_invoiced(store: &Store, line: i64) -> f64 {
    store
        .children("account.move.line", "purchase_line_id", line)
        .into_iter()
        .filter_map(|l| {
            let mv = store
                .get("account.move.line", l)?
                .get("move_id")?
                .as_i64()?;
            if s(store, "account.move", mv, "state") == "cancel" {
                return None;
            }
            let quantity = f(store, "account.move.line", l, "quantity");
            Some(
                if s(store, "account.move", mv, "move_type") == "in_refund" {
                    -quantity
                } else {
                    quantity
                },
            )
        })
        .sum()
}

fn qty_to_invoice(store: &Store, line: i64) -> f64 {
    let order = line_value(store, line, "order_id").as_i64().unwrap_or(0);
    let state = s(store, "purchase.order", order, "state");
    if state != "purchase" && state != "done" {
        return 0.0;
    }
    let product = line_value(store, line, "product_id").as_i64().unwrap_or(0);
    let basis = if s(store, "product.product", product, "purchase_method") == "purchase" {
        f(store, "purchase.order.line", line, "product_qty")
    } else {
        qty_received(store, line)
    };
    basis - qty_invoiced(store, line)
}

pub fn line_computed(store: &Store, line: i64, field: &str) -> Option<Value> {
    let order = || line_value(store, line, "order_id").as_i64().unwrap_or(0);
    Some(match field {
        "qty_received" => json!(qty_received(store, line)),
        "qty_invoiced" => json!(qty_invoiced(store, line)),
        "qty_to_invoice" => json!(qty_to_invoice(store, line)),
        "product_uom_qty" => line_value(store, line, "product_qty"),
        "partner_id" => store
            .get("purchase.order", order())?
            .get("partner_id")
            .cloned()?,
        "state" => store
            .get("purchase.order", order())?
            .get("state")
            .cloned()?,
        _ => return None,
    })
}

/// The bills of an order: moves holding a line of one of its lines.
pub fn invoices(store: &Store, order: i64) -> Vec<i64> {
    let mut moves: Vec<i64> = store
        .children("purchase.order.line", "order_id", order)
        .into_iter()
        .flat_map(|line| store.children("account.move.line", "purchase_line_id", line))
        .filter_map(|l| store.get("account.move.line", l)?.get("move_id")?.as_i64())
        .collect();
    moves.sort_unstable();
    moves.dedup();
    moves
}

pub fn order_computed(store: &Store, order: i64, field: &str) -> Option<Value> {
    let lines = || store.children("purchase.order.line", "order_id", order);
    let pickings = || store.children("stock.picking", "purchase_id", order);
    Some(match field {
        "picking_ids" => json!(pickings()),
        "invoice_ids" => json!(invoices(store, order)),
        "incoming_picking_count" => json!(pickings().len()),
        "invoice_count" => json!(invoices(store, order).len()),
        "invoice_status" => {
            let state = s(store, "purchase.order", order, "state");
            if state != "purchase" && state != "done" {
                json!("no")
            } else if lines()
                .into_iter()
                .any(|l| qty_to_invoice(store, l).abs() > 1e-9)
            {
                json!("to invoice")
            } else if !invoices(store, order).is_empty()
                && lines().into_iter().all(|l| {
                    let product = line_value(store, l, "product_id").as_i64().unwrap_or(0);
                    let basis =
                        if s(store, "product.product", product, "purchase_method") == "purchase" {
                            f(store, "purchase.order.line", l, "product_qty")
                        } else {
                            qty_received(store, l)
                        };
                    qty_invoiced(store, l) >= basis - 1e-9
                })
            {
                json!("invoiced")
            } else {
                json!("no")
            }
        }
        "receipt_status" => {
            let states: Vec<&str> = pickings()
                .into_iter()
                .map(|p| s(store, "stock.picking", p, "state"))
                .filter(|s| *s != "cancel")
                .collect();
            if states.is_empty() {
                json!(false)
            } else if states.iter().all(|s| *s == "done") {
                json!("full")
            } else if states.contains(&"done") {
                json!("partial")
            } else {
                json!("pending")
            }
        }
        _ => return None,
    })
}

pub fn call(env: &mut Env, method: &str, args: &Args) -> Option<Result<Option<Value>, Fault>> {
    let outcome = match method {
        "button_confirm" => args.ids().and_then(|ids| {
            for id in ids {
                confirm(env, id)?;
            }
            Ok(Some(json!(true)))
        }),
        "button_cancel" => args.ids().and_then(|ids| {
            for id in ids {
                cancel(env, id)?;
            }
            Ok(None)
        }),
        "button_draft" => args.ids().and_then(|ids| {
            for id in ids {
                exists(env, id)?;
                env.store.set("purchase.order", id, "state", json!("draft"));
            }
            Ok(Some(json!({})))
        }),
        "button_done" => args.ids().and_then(|ids| {
            for id in ids {
                exists(env, id)?;
                let mut values = Record::new();
                values.insert("state".into(), json!("done"));
                values.insert("priority".into(), json!("0"));
                env.store.update("purchase.order", id, values);
            }
            Ok(None)
        }),
        "action_create_invoice" => args.ids().and_then(|ids| create_bills(env, &ids)),
        _ => return None,
    };
    Some(outcome)
}

fn exists(env: &Env, id: i64) -> Result<(), Fault> {
    if env.store.exists("purchase.order", id) {
        Ok(())
    } else {
        Err(Fault::missing("purchase.order", &[id]))
    }
}

/// `button_confirm` → `button_approve` → `_create_picking` (purchase_stock).
fn confirm(env: &mut Env, order: i64) -> Result<(), Fault> {
    exists(env, order)?;
    let state = env.str("purchase.order", order, "state");
    if state != "draft" && state != "sent" {
        return Ok(());
    }
    let mut values = Record::new();
    values.insert("state".into(), json!("purchase"));
    values.insert("date_approve".into(), json!(env.now));
    env.store.update("purchase.order", order, values);
    let name = env.str("purchase.order", order, "name");
    let partner = env.val("purchase.order", order, "partner_id");
    let mut moves = Vec::new();
    for line in env.store.children("purchase.order.line", "order_id", order) {
        let Some(product) = env.id("purchase.order.line", line, "product_id") else {
            continue;
        };
        if env.str("product.product", product, "type") == "service" {
            continue;
        }
        let quantity = env.f64("purchase.order.line", line, "product_qty");
        moves.push(json!([0, 0, {
            "name": env.str("purchase.order.line", line, "name"),
            "product_id": product,
            "product_uom_qty": quantity,
            "product_uom": env.val("purchase.order.line", line, "product_uom"),
            "location_id": stock::SUPPLIERS,
            "location_dest_id": stock::STOCK,
            "purchase_line_id": line,
            "partner_id": partner,
            "origin": name,
            "date": env.val("purchase.order.line", line, "date_planned"),
        }]));
    }
    if moves.is_empty() {
        return Ok(());
    }
    let picking = json!({
        "picking_type_id": stock::TYPE_IN,
        "partner_id": partner,
        "origin": name,
        "location_id": stock::SUPPLIERS,
        "location_dest_id": stock::STOCK,
        "scheduled_date": env.val("purchase.order", order, "date_planned"),
        "purchase_id": order,
        "move_ids": moves,
    });
    let Value::Object(picking) = picking else {
        unreachable!("a json object literal");
    };
    let picking = env.create("stock.picking", vec![picking])?[0];
    stock::confirm(env, &[picking])?;
    stock::assign(env, &[picking])?;
    Ok(())
}

fn cancel(env: &mut Env, order: i64) -> Result<(), Fault> {
    exists(env, order)?;
    let name = env.str("purchase.order", order, "name");
    let lines = env.store.children("purchase.order.line", "order_id", order);
    let received = lines
        .iter()
        .flat_map(|&l| env.store.children("stock.move", "purchase_line_id", l))
        .any(|m| env.str("stock.move", m, "state") == "done");
    if received {
        return Err(Fault::user(format!(
            "Unable to cancel purchase order {name} as some receptions have already been done."
        )));
    }
    for picking in env.store.children("stock.picking", "purchase_id", order) {
        if env.str("stock.picking", picking, "state") != "cancel" {
            stock::cancel(env, picking);
        }
    }
    if invoices(env.store, order).into_iter().any(|m| {
        !matches!(
            env.str("account.move", m, "state").as_str(),
            "cancel" | "draft"
        )
    }) {
        return Err(Fault::user(
            "Unable to cancel this purchase order. You must first cancel the related vendor bills.",
        ));
    }
    env.store
        .set("purchase.order", order, "state", json!("cancel"));
    Ok(())
}

/// `action_create_invoice`: one draft bill per vendor for received-not-billed quantities.
fn create_bills(env: &mut Env, ids: &[i64]) -> Result<Option<Value>, Fault> {
    let mut per_vendor: Vec<(Value, Record, Vec<Value>)> = Vec::new();
    for &order in ids {
        exists(env, order)?;
        if order_computed(env.store, order, "invoice_status") != Some(json!("to invoice")) {
            continue;
        }
        let name = env.str("purchase.order", order, "name");
        let partner = env.val("purchase.order", order, "partner_id");
        let mut lines = Vec::new();
        for line in env.store.children("purchase.order.line", "order_id", order) {
            let quantity = qty_to_invoice(env.store, line);
            if quantity.abs() < 1e-9 {
                continue;
            }
            lines.push(json!([0, 0, {
                "display_type": "product",
                "name": format!("{name}: {}", env.str("purchase.order.line", line, "name")),
                "product_id": env.val("purchase.order.line", line, "product_id"),
                "product_uom_id": env.val("purchase.order.line", line, "product_uom"),
                "quantity": quantity,
                "price_unit": env.f64("purchase.order.line", line, "price_unit"),
                "tax_ids": [[6, 0, ids_of(&env.val("purchase.order.line", line, "taxes_id")).unwrap_or_default()]],
                "purchase_line_id": line,
            }]));
        }
        let partner_ref = env.val("purchase.order", order, "partner_ref");
        match per_vendor.iter_mut().find(|(p, ..)| *p == partner) {
            Some((_, vals, all)) => {
                let origin = vals
                    .get("invoice_origin")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                vals.insert("invoice_origin".into(), json!(format!("{origin}, {name}")));
                all.extend(lines);
            }
            None => {
                let vals = json!({
                    "move_type": "in_invoice",
                    "partner_id": partner,
                    "ref": partner_ref,
                    "payment_reference": partner_ref,
                    "invoice_origin": name,
                    "narration": env.val("purchase.order", order, "notes"),
                    "invoice_payment_term_id": env.val("purchase.order", order, "payment_term_id"),
                    "currency_id": env.val("purchase.order", order, "currency_id"),
                    "company_id": 1,
                });
                let Value::Object(vals) = vals else {
                    unreachable!("a json object literal");
                };
                per_vendor.push((partner, vals, lines));
            }
        }
    }
    if per_vendor.is_empty() {
        return Err(Fault::user(
            "There is no invoiceable line. If a product has a control policy based on received quantity, please make sure that a quantity has been received.",
        ));
    }
    let mut bills = Vec::new();
    for (_, mut vals, lines) in per_vendor {
        vals.insert("invoice_line_ids".into(), json!(lines));
        bills.extend(env.create("account.move", vec![vals])?);
    }
    let mut action = json!({
        "id": 243,
        "name": "Bills",
        "type": "ir.actions.act_window",
        "res_model": "account.move",
        "view_mode": "tree,kanban,form,activity",
        "target": "current",
        "context": "{'default_move_type': 'in_invoice'}",
        "domain": "[('move_type', '=', 'in_invoice')]",
        "xml_id": "account.action_move_in_invoice_type",
    });
    if bills.len() == 1 {
        action["views"] = json!([
            [810, "form"],
            [809, "tree"],
            [false, "kanban"],
            [false, "activity"]
        ]);
        action["res_id"] = json!(bills[0]);
    } else {
        action["domain"] = json!([["id", "in", bills]]);
    }
    Ok(Some(action))
}
