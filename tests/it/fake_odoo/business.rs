//! Model-specific behaviour hooked into the generic ORM: defaults that depend on other values,
//! constraints (the `ir.model.data` unique index, the orderpoint unique key, contacts need a
//! name), display names, computed fields, and the public methods of each model (the business
//! ones live in `account`, `purchase` and `stock`).

use serde_json::{Value, json};

use super::account;
use super::fault::Fault;
use super::orm::{Args, Env, truthy};
use super::purchase;
use super::stock;
use super::store::{Record, Store};

/// Fills what Odoo computes at create time from the other values.
pub fn prepare_create(
    env: &mut Env,
    model: &str,
    rec: &mut Record,
    vals: &Record,
) -> Result<(), Fault> {
    match model {
        "res.partner" => {
            rec.insert("company_type".into(), json!(company_type(rec)));
        }
        "product.product" | "product.template" => {
            let detailed = rec.get("detailed_type").cloned().unwrap_or(json!("consu"));
            rec.insert("type".into(), detailed);
            if !vals.contains_key("taxes_id") {
                rec.insert("taxes_id".into(), json!([1]));
            }
            if !vals.contains_key("supplier_taxes_id") {
                rec.insert("supplier_taxes_id".into(), json!([2]));
            }
            if vals.contains_key("uom_id") && !vals.contains_key("uom_po_id") {
                let uom = rec.get("uom_id").cloned().unwrap_or(json!(1));
                rec.insert("uom_po_id".into(), uom);
            }
        }
        "stock.warehouse.orderpoint" => {
            if !truthy(rec.get("warehouse_id").unwrap_or(&Value::Null)) {
                rec.insert("warehouse_id".into(), json!(1));
            }
            if !truthy(rec.get("location_id").unwrap_or(&Value::Null)) {
                rec.insert("location_id".into(), json!(stock::STOCK));
            }
            if !truthy(rec.get("name").unwrap_or(&Value::Null)) {
                let n = env.store.next("stock.orderpoint");
                rec.insert("name".into(), json!(format!("OP/{n:05}")));
            }
        }
        "account.move" | "account.move.line" | "account.payment" | "account.payment.register" => {
            account::prepare_create(env, model, rec, vals)?;
        }
        "purchase.order" | "purchase.order.line" => {
            purchase::prepare_create(env, model, rec, vals)?
        }
        "stock.picking" | "stock.move" | "stock.quant" | "stock.backorder.confirmation" => {
            stock::prepare_create(env, model, rec, vals)?;
        }
        _ => {}
    }
    Ok(())
}

fn company_type(rec: &Record) -> &'static str {
    if rec.get("is_company") == Some(&Value::Bool(true)) {
        "company"
    } else {
        "person"
    }
}

/// Constraints checked before a new row is stored.
pub fn check_create(env: &Env, model: &str, rec: &Record) -> Result<(), Fault> {
    match model {
        "ir.model.data" => check_xmlid(env, rec, None),
        "res.partner" => check_partner(rec),
        "stock.warehouse.orderpoint" => check_orderpoint(env, rec, None),
        "purchase.order.line" => purchase::check_line(rec),
        "stock.quant" => stock::check_quant(env, rec),
        _ => Ok(()),
    }
}

fn check_partner(rec: &Record) -> Result<(), Fault> {
    let contact = rec.get("type").and_then(Value::as_str) == Some("contact");
    if contact && !truthy(rec.get("name").unwrap_or(&Value::Null)) {
        return Err(Fault::integrity("Contacts require a name"));
    }
    Ok(())
}

/// `ir_model_data_module_name_uniq_index` and the `name_nospaces` check (API-NOTES §3.1, §6.7).
fn check_xmlid(env: &Env, rec: &Record, own: Option<i64>) -> Result<(), Fault> {
    let name = rec.get("name").and_then(Value::as_str).unwrap_or_default();
    let module = rec
        .get("module")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.contains(' ') {
        return Err(Fault::integrity("External IDs cannot contain spaces"));
    }
    let clash = env
        .store
        .lookup("ir.model.data", "name", &json!(name))
        .unwrap_or_default()
        .into_iter()
        .any(|id| Some(id) != own && env.str("ir.model.data", id, "module") == module);
    if clash {
        return Err(Fault::integrity(format!(
            "duplicate key value violates unique constraint \"ir_model_data_module_name_uniq_index\"\nDETAIL:  Key (module, name)=({module}, {name}) already exists.\n"
        )));
    }
    Ok(())
}

fn check_orderpoint(env: &Env, rec: &Record, own: Option<i64>) -> Result<(), Fault> {
    let product = rec.get("product_id").cloned().unwrap_or(Value::Null);
    let location = rec.get("location_id").cloned().unwrap_or(Value::Null);
    let company = rec.get("company_id").cloned().unwrap_or(Value::Null);
    let clash = env
        .store
        .lookup("stock.warehouse.orderpoint", "product_id", &product)
        .unwrap_or_default()
        .into_iter()
        .any(|id| {
            Some(id) != own
                && env.val("stock.warehouse.orderpoint", id, "location_id") == location
                && env.val("stock.warehouse.orderpoint", id, "company_id") == company
        });
    if clash {
        return Err(Fault::integrity(
            "A replenishment rule already exists for this product on this location.",
        ));
    }
    Ok(())
}

/// After a row and its one2many children are stored.
pub fn after_create(env: &mut Env, model: &str, id: i64, vals: &Record) -> Result<(), Fault> {
    match model {
        "product.product" => {
            let mut template = env.store.get(model, id).cloned().unwrap_or_default();
            template.retain(|k, _| {
                !matches!(
                    k.as_str(),
                    "id" | "product_tmpl_id" | "qty_available" | "virtual_available"
                )
            });
            let tmpl = env.store.insert("product.template", template, None);
            env.store
                .set("product.template", tmpl, "product_variant_id", json!(id));
            env.store.set(model, id, "product_tmpl_id", json!(tmpl));
        }
        "product.template" => {
            let mut variant = env.store.get(model, id).cloned().unwrap_or_default();
            variant.retain(|k, _| !matches!(k.as_str(), "id" | "product_variant_id"));
            variant.insert("product_tmpl_id".into(), json!(id));
            let product = env.store.insert("product.product", variant, None);
            env.store
                .set(model, id, "product_variant_id", json!(product));
        }
        "account.move" | "account.move.line" => account::after_change(env, model, id)?,
        "account.payment" => account::payment_entry(env, id, None),
        "purchase.order" | "purchase.order.line" => purchase::after_change(env, model, id)?,
        "stock.move" | "stock.picking" => stock::after_change(env, model, id, vals)?,
        _ => {}
    }
    Ok(())
}

/// Checks before `write` changes a row.
pub fn check_write(env: &Env, model: &str, id: i64, vals: &Record) -> Result<(), Fault> {
    match model {
        "ir.model.data" if vals.contains_key("name") || vals.contains_key("module") => {
            let mut merged = env.store.get(model, id).cloned().unwrap_or_default();
            merged.extend(vals.clone());
            check_xmlid(env, &merged, Some(id))
        }
        "stock.warehouse.orderpoint"
            if vals.contains_key("product_id") || vals.contains_key("location_id") =>
        {
            let mut merged = env.store.get(model, id).cloned().unwrap_or_default();
            merged.extend(vals.clone());
            check_orderpoint(env, &merged, Some(id))
        }
        "account.move" | "account.move.line" => account::check_write(env, model, id, vals),
        _ => Ok(()),
    }
}

/// Recomputations after `write`.
pub fn after_write(env: &mut Env, model: &str, id: i64, vals: &Record) -> Result<(), Fault> {
    match model {
        "res.partner" if vals.contains_key("is_company") => {
            let rec = env.store.get(model, id).cloned().unwrap_or_default();
            env.store
                .set(model, id, "company_type", json!(company_type(&rec)));
        }
        "product.product" => {
            let mut template_vals = vals.clone();
            template_vals.retain(|k, _| {
                super::schema::schema()
                    .model("product.template")
                    .and_then(|m| m.field(k))
                    .is_some_and(|f| {
                        !f.computed && !matches!(f.kind, super::schema::Kind::One2many(..))
                    })
            });
            if let Some(detailed) = vals.get("detailed_type") {
                env.store.set(model, id, "type", detailed.clone());
                template_vals.insert("type".into(), detailed.clone());
            }
            if let Some(tmpl) = env.id(model, id, "product_tmpl_id")
                && !template_vals.is_empty()
            {
                env.store.update("product.template", tmpl, template_vals);
            }
        }
        "product.template" => {
            if let Some(detailed) = vals.get("detailed_type") {
                env.store.set(model, id, "type", detailed.clone());
            }
        }
        "account.move" | "account.move.line" => account::after_change(env, model, id)?,
        "purchase.order" | "purchase.order.line" => purchase::after_change(env, model, id)?,
        "stock.move" | "stock.picking" => stock::after_change(env, model, id, vals)?,
        _ => {}
    }
    Ok(())
}

pub fn check_unlink(env: &Env, model: &str, id: i64) -> Result<(), Fault> {
    match model {
        "account.move" if env.str(model, id, "state") == "posted" => Err(Fault::user(
            "You cannot delete an entry which has been posted once.",
        )),
        "purchase.order" if env.str(model, id, "state") != "cancel" => Err(Fault::user(
            "In order to delete a purchase order, you must cancel it first.",
        )),
        "stock.picking" if env.str(model, id, "state") == "done" => {
            Err(Fault::user("You cannot delete a done transfer."))
        }
        _ => Ok(()),
    }
}

/// `display_name` of a record, or false when it does not exist.
pub fn display_name(store: &Store, model: &str, id: i64) -> Value {
    let Some(rec) = store.get(model, id) else {
        return Value::Bool(false);
    };
    let text = |field: &str| {
        rec.get(field)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let name = match model {
        "ir.model.data" => format!("{}.{}", text("module"), text("name")),
        "product.product" | "product.template" => {
            let code = text("default_code");
            if code.is_empty() {
                text("name")
            } else {
                format!("[{code}] {}", text("name"))
            }
        }
        "stock.location" => location_name(store, id),
        "stock.picking.type" => format!("YourCompany: {}", text("name")),
        "account.move" => {
            let name = text("name");
            if name.is_empty() || name == "/" {
                match text("move_type").as_str() {
                    "out_invoice" => format!("Draft Invoice (* {id})"),
                    "out_refund" => format!("Draft Credit Note (* {id})"),
                    "in_invoice" => format!("Draft Bill (* {id})"),
                    _ => format!("Draft Entry (* {id})"),
                }
            } else {
                name
            }
        }
        "account.move.line" | "stock.move" | "purchase.order.line" => text("name"),
        "stock.backorder.confirmation" | "account.payment.register" => format!("{model},{id}"),
        "res.partner" => {
            let name = text("name");
            match rec.get("parent_id").and_then(Value::as_i64) {
                Some(parent) if store.exists(model, parent) => {
                    let parent_name = display_name(store, model, parent);
                    format!("{}, {name}", parent_name.as_str().unwrap_or_default())
                }
                _ => name,
            }
        }
        _ => text("name"),
    };
    Value::String(name)
}

fn location_name(store: &Store, id: i64) -> String {
    let Some(rec) = store.get("stock.location", id) else {
        return String::new();
    };
    let name = rec
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let usage = rec.get("usage").and_then(Value::as_str).unwrap_or("");
    match rec.get("location_id").and_then(Value::as_i64) {
        Some(parent) if usage != "view" => format!("{}/{name}", location_name(store, parent)),
        _ => name,
    }
}

/// Values Odoo computes on read (not stored in the fake); `None` = read the stored value.
pub fn computed(store: &Store, model: &str, id: i64, field: &str) -> Option<Value> {
    match (model, field) {
        ("ir.model.data", "complete_name") => Some(display_name(store, model, id)),
        ("ir.model.data", "reference") => {
            let rec = store.get(model, id)?;
            Some(json!(format!(
                "{},{}",
                rec.get("model").and_then(Value::as_str).unwrap_or_default(),
                rec.get("res_id").and_then(Value::as_i64).unwrap_or(0)
            )))
        }
        ("stock.location", "complete_name") | ("product.category", "complete_name") => {
            Some(display_name(store, model, id))
        }
        ("product.product", "qty_available") => Some(json!(stock::on_hand(store, id))),
        ("product.product", "virtual_available") => Some(json!(stock::forecast(store, id))),
        ("stock.quant", "quantity") => {
            let rec = store.get(model, id)?;
            let product = rec.get("product_id").and_then(Value::as_i64)?;
            let location = rec.get("location_id").and_then(Value::as_i64)?;
            Some(json!(stock::quantity_at(store, product, location)))
        }
        ("stock.warehouse.orderpoint", _) => stock::orderpoint_computed(store, id, field),
        ("purchase.order", _) => purchase::order_computed(store, id, field),
        ("purchase.order.line", _) => purchase::line_computed(store, id, field),
        ("stock.picking", "picking_type_code") => {
            let kind = store
                .get(model, id)?
                .get("picking_type_id")
                .and_then(Value::as_i64)?;
            store.get("stock.picking.type", kind)?.get("code").cloned()
        }
        ("stock.move", "product_qty") => store.get(model, id)?.get("product_uom_qty").cloned(),
        ("stock.move", "reference") => {
            let rec = store.get(model, id)?;
            match rec.get("picking_id").and_then(Value::as_i64) {
                Some(p) => store.get("stock.picking", p)?.get("name").cloned(),
                None => rec.get("name").cloned(),
            }
        }
        ("account.move", "invoice_line_ids") => Some(account::invoice_lines(store, id)),
        ("account.move.line", "amount_residual") => Some(json!(account::residual(store, id))),
        ("account.move.line", "reconciled") => Some(json!(account::reconciled(store, id))),
        ("account.move.line", "account_type") => Some(account::account_type(store, id)),
        ("account.move.line", "partner_id") => {
            let mv = store
                .get(model, id)?
                .get("move_id")
                .and_then(Value::as_i64)?;
            Some(
                store
                    .get("account.move", mv)?
                    .get("partner_id")
                    .cloned()
                    .unwrap_or(json!(false)),
            )
        }
        _ => None,
    }
}

/// The public methods beyond the generic ORM; `None` when the model has no such method.
pub fn call(
    env: &mut Env,
    model: &str,
    method: &str,
    args: &Args,
) -> Option<Result<Option<Value>, Fault>> {
    match (model, method) {
        ("ir.model.data", "check_object_reference") => Some(check_object_reference(env, args)),
        ("ir.model.data", "xmlid_to_res_id") | ("ir.model.data", "xmlid_lookup") => {
            Some(Err(Fault::attribute_error(format!(
                "type object 'ir.model.data' has no attribute '{method}'"
            ))))
        }
        ("res.partner", "name_create") => Some((|| {
            let name = args
                .get(0, "name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let mut vals = Record::new();
            vals.insert("name".into(), json!(name));
            let id = env.create(model, vec![vals])?[0];
            Ok(Some(json!([id, display_name(env.store, model, id)])))
        })()),
        ("account.move", _) | ("account.payment", _) | ("account.payment.register", _) => {
            account::call(env, model, method, args)
        }
        ("purchase.order", _) => purchase::call(env, method, args),
        ("stock.picking", _)
        | ("stock.quant", _)
        | ("stock.backorder.confirmation", _)
        | ("stock.warehouse.orderpoint", _) => stock::call(env, model, method, args),
        _ => None,
    }
}

/// `check_object_reference(module, xml_id)` (API-NOTES §3.2).
fn check_object_reference(env: &mut Env, args: &Args) -> Result<Option<Value>, Fault> {
    let module = args
        .get(0, "module")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = args
        .get(1, "xml_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let found = env
        .store
        .lookup("ir.model.data", "name", &json!(name))
        .unwrap_or_default()
        .into_iter()
        .find(|&id| env.str("ir.model.data", id, "module") == module);
    let Some(xmlid) = found else {
        return Err(Fault::value_error(format!(
            "External ID not found in the system: {module}.{name}"
        )));
    };
    let target_model = env.str("ir.model.data", xmlid, "model");
    let Some(res_id) = env.id("ir.model.data", xmlid, "res_id") else {
        return Err(Fault::value_error(format!(
            "External ID not found in the system: {module}.{name}"
        )));
    };
    if env.store.exists(&target_model, res_id) {
        Ok(Some(json!([target_model, res_id])))
    } else {
        Ok(Some(json!([target_model, false])))
    }
}
