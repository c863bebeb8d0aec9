//! Pickings, moves, quants and the backorder wizard (API-NOTES §4.4–§4.5, §6.11, §8): confirm,
//! reserve (storable products only up to what is on hand, consumables and moves from a vendor
//! in full), validate with the backorder question, `skip_backorder` and
//! `picking_ids_not_to_backorder`, inventory adjustments.

use serde_json::{Value, json};

use super::fault::Fault;
use super::orm::{Args, Env, ids_of, truthy};
use super::store::{Record, Store};

pub const SUPPLIERS: i64 = 4;
pub const CUSTOMERS: i64 = 5;
pub const STOCK: i64 = 8;
pub const INVENTORY: i64 = 14;
pub const TYPE_IN: i64 = 1;
pub const TYPE_OUT: i64 = 2;
/// Id of view `stock.view_backorder_confirmation` in the examples (instance-specific).
pub const BACKORDER_VIEW: i64 = 321;

const EPSILON: f64 = 1e-6;

pub fn prepare_create(
    env: &mut Env,
    model: &str,
    rec: &mut Record,
    vals: &Record,
) -> Result<(), Fault> {
    match model {
        "stock.picking" => {
            let kind = rec.get("picking_type_id").and_then(Value::as_i64);
            if let Some(kind) = kind.filter(|&k| env.store.exists("stock.picking.type", k)) {
                if !truthy(rec.get("location_id").unwrap_or(&Value::Null)) {
                    rec.insert(
                        "location_id".into(),
                        env.val("stock.picking.type", kind, "default_location_src_id"),
                    );
                }
                if !truthy(rec.get("location_dest_id").unwrap_or(&Value::Null)) {
                    rec.insert(
                        "location_dest_id".into(),
                        env.val("stock.picking.type", kind, "default_location_dest_id"),
                    );
                }
                if rec.get("name").and_then(Value::as_str).unwrap_or("/") == "/" {
                    let code = env.str("stock.picking.type", kind, "sequence_code");
                    let n = env.store.next(&format!("picking/{kind}"));
                    rec.insert("name".into(), json!(format!("WH/{code}/{n:05}")));
                }
            }
            if !truthy(rec.get("scheduled_date").unwrap_or(&Value::Null)) {
                rec.insert("scheduled_date".into(), json!(env.now));
            }
            rec.insert("state".into(), json!("draft"));
        }
        "stock.move" => {
            if let Some(picking) = rec.get("picking_id").and_then(Value::as_i64) {
                for field in [
                    "location_id",
                    "location_dest_id",
                    "picking_type_id",
                    "partner_id",
                ] {
                    if !truthy(rec.get(field).unwrap_or(&Value::Null)) {
                        rec.insert(field.into(), env.val("stock.picking", picking, field));
                    }
                }
                if !truthy(rec.get("origin").unwrap_or(&Value::Null)) {
                    rec.insert("origin".into(), env.val("stock.picking", picking, "origin"));
                }
            }
            if let Some(product) = rec.get("product_id").and_then(Value::as_i64)
                && !vals.contains_key("product_uom")
            {
                rec.insert(
                    "product_uom".into(),
                    env.val("product.product", product, "uom_id"),
                );
            }
            if !truthy(rec.get("date").unwrap_or(&Value::Null)) {
                rec.insert("date".into(), json!(env.now));
            }
            rec.insert("state".into(), json!("draft"));
        }
        "stock.backorder.confirmation" => {
            if !vals.contains_key("pick_ids") {
                let mut picks = Vec::new();
                if let Some(Value::Array(commands)) = env.context.get("default_pick_ids") {
                    for command in commands {
                        match command {
                            Value::Array(parts)
                                if parts.first().and_then(Value::as_i64) == Some(4) =>
                            {
                                picks.extend(parts.get(1).and_then(Value::as_i64));
                            }
                            Value::Array(parts)
                                if parts.first().and_then(Value::as_i64) == Some(6) =>
                            {
                                picks.extend(
                                    ids_of(parts.get(2).unwrap_or(&json!([]))).unwrap_or_default(),
                                );
                            }
                            Value::Number(n) => picks.extend(n.as_i64()),
                            _ => {}
                        }
                    }
                }
                rec.insert("pick_ids".into(), json!(picks));
            }
            if !vals.contains_key("show_transfers") {
                let show = env.ctx_bool("default_show_transfers");
                rec.insert("show_transfers".into(), json!(show));
            }
        }
        "stock.quant" => {
            if !env.ctx_bool("inventory_mode") || !vals.contains_key("inventory_quantity") {
                return Err(Fault::user(
                    "Quant's creation is restricted, you can't do this operation.",
                ));
            }
            rec.insert("inventory_quantity_set".into(), json!(true));
        }
        _ => {}
    }
    Ok(())
}

/// Quants exist only for storable products.
pub fn check_quant(env: &Env, rec: &Record) -> Result<(), Fault> {
    let product = rec.get("product_id").and_then(Value::as_i64).unwrap_or(0);
    if env.str("product.product", product, "type") != "product" {
        return Err(Fault::validation(
            "Quants cannot be created for consumables or services.",
        ));
    }
    Ok(())
}

pub fn after_change(env: &mut Env, model: &str, id: i64, vals: &Record) -> Result<(), Fault> {
    if model == "stock.move"
        && let Some(picking) = env.id("stock.move", id, "picking_id")
    {
        if vals.contains_key("quantity")
            && matches!(
                env.str("stock.move", id, "state").as_str(),
                "confirmed" | "partially_available"
            )
        {
            let state = if env.f64("stock.move", id, "quantity") + EPSILON
                >= env.f64("stock.move", id, "product_uom_qty")
            {
                "assigned"
            } else {
                "partially_available"
            };
            env.store.set("stock.move", id, "state", json!(state));
        }
        let picking_state = env.str("stock.picking", picking, "state");
        if picking_state != "draft" && env.str("stock.move", id, "state") == "draft" {
            env.store.set("stock.move", id, "state", json!("confirmed"));
        }
        refresh_state(env, picking);
    }
    Ok(())
}

fn stock_value(store: &Store, model: &str, id: i64, field: &str) -> Value {
    store
        .get(model, id)
        .and_then(|r| r.get(field))
        .cloned()
        .unwrap_or(Value::Bool(false))
}

/// Done quantity of `product` moved into `location` less what moved out (kept up to date by
/// [`record_done`], so a busy product costs nothing to look up).
pub fn quantity_at(store: &Store, product: i64, location: i64) -> f64 {
    store.on_hand(product, location)
}

/// Books a move that just became done.
fn record_done(env: &mut Env, move_id: i64) {
    let product = env.id("stock.move", move_id, "product_id").unwrap_or(0);
    let quantity = env.f64("stock.move", move_id, "quantity");
    let from = env.id("stock.move", move_id, "location_id").unwrap_or(0);
    let to = env
        .id("stock.move", move_id, "location_dest_id")
        .unwrap_or(0);
    env.store.add_on_hand(product, from, -quantity);
    env.store.add_on_hand(product, to, quantity);
}

fn moves_of(store: &Store, product: i64) -> Vec<i64> {
    store
        .lookup("stock.move", "product_id", &json!(product))
        .unwrap_or_default()
}

pub fn on_hand(store: &Store, product: i64) -> f64 {
    quantity_at(store, product, STOCK)
}

/// On hand plus the demand of pending moves into stock, less pending moves out of it.
pub fn forecast(store: &Store, product: i64) -> f64 {
    let pending: f64 = moves_of(store, product)
        .into_iter()
        .filter(|&m| {
            !matches!(
                stock_value(store, "stock.move", m, "state").as_str(),
                Some("done" | "cancel" | "draft")
            )
        })
        .map(|m| {
            let demand = stock_value(store, "stock.move", m, "product_uom_qty")
                .as_f64()
                .unwrap_or(0.0);
            let from = stock_value(store, "stock.move", m, "location_id").as_i64();
            let to = stock_value(store, "stock.move", m, "location_dest_id").as_i64();
            match (from == Some(STOCK), to == Some(STOCK)) {
                (false, true) => demand,
                (true, false) => -demand,
                _ => 0.0,
            }
        })
        .sum();
    on_hand(store, product) + pending
}

pub fn orderpoint_computed(store: &Store, id: i64, field: &str) -> Option<Value> {
    let product = stock_value(store, "stock.warehouse.orderpoint", id, "product_id").as_i64()?;
    let number = |f: &str| {
        stock_value(store, "stock.warehouse.orderpoint", id, f)
            .as_f64()
            .unwrap_or(0.0)
    };
    Some(match field {
        "qty_on_hand" => json!(on_hand(store, product)),
        "qty_forecast" => json!(forecast(store, product)),
        "product_uom" => stock_value(store, "product.product", product, "uom_id"),
        "qty_to_order" => {
            let forecast = forecast(store, product);
            if forecast >= number("product_min_qty") {
                json!(0.0)
            } else {
                let needed = number("product_max_qty").max(number("product_min_qty")) - forecast;
                let multiple = number("qty_multiple");
                let needed = if multiple > 0.0 {
                    (needed / multiple).ceil() * multiple
                } else {
                    needed
                };
                json!(needed)
            }
        }
        _ => return None,
    })
}

fn moves(env: &Env, picking: i64) -> Vec<i64> {
    env.store.children("stock.move", "picking_id", picking)
}

fn is_storable(env: &Env, move_id: i64) -> bool {
    let product = env.id("stock.move", move_id, "product_id").unwrap_or(0);
    env.str("product.product", product, "type") == "product"
}

/// `_should_bypass_reservation`: the source is not an internal location or the product is
/// not storable.
fn bypasses_reservation(env: &Env, move_id: i64) -> bool {
    let source = env.id("stock.move", move_id, "location_id").unwrap_or(0);
    env.str("stock.location", source, "usage") != "internal" || !is_storable(env, move_id)
}

/// The picking's state from its moves (`_compute_state`, move type "direct").
pub fn refresh_state(env: &mut Env, picking: i64) {
    let states: Vec<String> = moves(env, picking)
        .into_iter()
        .map(|m| env.str("stock.move", m, "state"))
        .collect();
    let current = env.str("stock.picking", picking, "state");
    let state = if states.is_empty() {
        current.as_str()
    } else if states.iter().all(|s| s == "cancel") {
        "cancel"
    } else if states.iter().all(|s| s == "done" || s == "cancel") {
        "done"
    } else if states.iter().any(|s| s == "draft") {
        "draft"
    } else if states
        .iter()
        .any(|s| s == "assigned" || s == "partially_available")
    {
        "assigned"
    } else {
        "confirmed"
    };
    if state != current {
        let state = state.to_owned();
        env.store
            .set("stock.picking", picking, "state", json!(state));
    }
}

fn exists(env: &Env, picking: i64) -> Result<(), Fault> {
    if env.store.exists("stock.picking", picking) {
        Ok(())
    } else {
        Err(Fault::missing("stock.picking", &[picking]))
    }
}

/// `action_confirm`: draft moves become confirmed; moves that bypass reservation and come from
/// outside the warehouse are reserved at once.
pub fn confirm(env: &mut Env, pickings: &[i64]) -> Result<(), Fault> {
    for &picking in pickings {
        exists(env, picking)?;
        for m in moves(env, picking) {
            if env.str("stock.move", m, "state") == "draft" {
                env.store.set("stock.move", m, "state", json!("confirmed"));
            }
        }
        if env.str("stock.picking", picking, "state") == "draft" {
            env.store
                .set("stock.picking", picking, "state", json!("confirmed"));
        }
        refresh_state(env, picking);
    }
    Ok(())
}

/// `action_assign`: reserves what can be.
pub fn assign(env: &mut Env, pickings: &[i64]) -> Result<(), Fault> {
    let drafts: Vec<i64> = pickings
        .iter()
        .copied()
        .filter(|&p| env.str("stock.picking", p, "state") == "draft")
        .collect();
    confirm(env, &drafts)?;
    for &picking in pickings {
        exists(env, picking)?;
        for m in moves(env, picking) {
            let state = env.str("stock.move", m, "state");
            if !matches!(
                state.as_str(),
                "confirmed" | "partially_available" | "waiting"
            ) {
                continue;
            }
            let demand = env.f64("stock.move", m, "product_uom_qty");
            let reserved = if bypasses_reservation(env, m) {
                demand
            } else {
                let product = env.id("stock.move", m, "product_id").unwrap_or(0);
                let source = env.id("stock.move", m, "location_id").unwrap_or(0);
                let held_elsewhere: f64 = ["assigned", "partially_available"]
                    .into_iter()
                    .flat_map(|state| {
                        env.store
                            .lookup("stock.move", "state", &json!(state))
                            .unwrap_or_default()
                    })
                    .filter(|&o| {
                        o != m
                            && env.id("stock.move", o, "product_id") == Some(product)
                            && env.id("stock.move", o, "location_id") == Some(source)
                    })
                    .map(|o| env.f64("stock.move", o, "quantity"))
                    .sum();
                let available = (quantity_at(env.store, product, source) - held_elsewhere).max(0.0);
                demand.min(available)
            };
            let state = if reserved + EPSILON >= demand {
                "assigned"
            } else if reserved > EPSILON {
                "partially_available"
            } else {
                "confirmed"
            };
            let mut values = Record::new();
            values.insert("quantity".into(), json!(reserved));
            values.insert("state".into(), json!(state));
            env.store.update("stock.move", m, values);
        }
        refresh_state(env, picking);
    }
    Ok(())
}

pub fn cancel(env: &mut Env, picking: i64) {
    for m in moves(env, picking) {
        if env.str("stock.move", m, "state") != "done" {
            env.store.set("stock.move", m, "state", json!("cancel"));
        }
    }
    env.store
        .set("stock.picking", picking, "state", json!("cancel"));
    refresh_state(env, picking);
}

/// `button_validate` (17.0): confirm drafts, sanity checks, the backorder question unless
/// `skip_backorder`, then `_action_done`.
fn validate(env: &mut Env, pickings: &[i64]) -> Result<Value, Fault> {
    for &picking in pickings {
        exists(env, picking)?;
    }
    let drafts: Vec<i64> = pickings
        .iter()
        .copied()
        .filter(|&p| env.str("stock.picking", p, "state") == "draft")
        .collect();
    confirm(env, &drafts)?;
    for &picking in &drafts {
        for m in moves(env, picking) {
            if env.f64("stock.move", m, "quantity").abs() < EPSILON {
                let demand = env.f64("stock.move", m, "product_uom_qty");
                env.store.set("stock.move", m, "quantity", json!(demand));
            }
        }
    }
    for &picking in pickings {
        let all = moves(env, picking);
        if all.is_empty() {
            return Err(Fault::user(
                "You can't validate an empty transfer. Please add some items to move before proceeding.",
            ));
        }
        let open: Vec<i64> = all
            .iter()
            .copied()
            .filter(|&m| {
                !matches!(
                    env.str("stock.move", m, "state").as_str(),
                    "done" | "cancel"
                )
            })
            .collect();
        if open
            .iter()
            .all(|&m| env.f64("stock.move", m, "quantity").abs() < EPSILON)
        {
            return Err(Fault::user(
                "You cannot validate a transfer if no quantities are reserved. To force the transfer, encode quantities.",
            ));
        }
        if !open
            .iter()
            .any(|&m| truthy(&env.val("stock.move", m, "picked")))
        {
            for &m in &open {
                env.store.set("stock.move", m, "picked", json!(true));
            }
        }
    }
    if !env.ctx_bool("skip_backorder") {
        let short: Vec<i64> = pickings
            .iter()
            .copied()
            .filter(|&p| {
                let kind = env.id("stock.picking", p, "picking_type_id").unwrap_or(0);
                env.str("stock.picking.type", kind, "create_backorder") == "ask"
                    && moves(env, p).into_iter().any(|m| {
                        env.str("stock.move", m, "state") != "cancel"
                            && picked_quantity(env, m) + EPSILON
                                < env.f64("stock.move", m, "product_uom_qty")
                    })
            })
            .collect();
        if !short.is_empty() {
            let mut context = env.context.clone();
            if !context.contains_key("button_validate_picking_ids") {
                context.insert("button_validate_picking_ids".into(), json!(pickings));
            }
            context.insert("default_show_transfers".into(), json!(pickings.len() > 1));
            let picks: Vec<Value> = short.iter().map(|&p| json!([4, p])).collect();
            context.insert("default_pick_ids".into(), json!(picks));
            return Ok(json!({
                "name": "Create Backorder?",
                "type": "ir.actions.act_window",
                "view_mode": "form",
                "res_model": "stock.backorder.confirmation",
                "views": [[BACKORDER_VIEW, "form"]],
                "view_id": BACKORDER_VIEW,
                "target": "new",
                "context": context,
            }));
        }
    }
    let not_to_backorder = ids_of(
        env.context
            .get("picking_ids_not_to_backorder")
            .unwrap_or(&json!([])),
    )
    .unwrap_or_default();
    for &picking in pickings {
        let kind = env
            .id("stock.picking", picking, "picking_type_id")
            .unwrap_or(0);
        let policy = env.str("stock.picking.type", kind, "create_backorder");
        let cancel_rest =
            policy == "never" || (not_to_backorder.contains(&picking) && policy != "always");
        done(env, picking, cancel_rest)?;
    }
    Ok(json!(true))
}

/// `_get_picked_quantity`: only a picked move counts as processed.
fn picked_quantity(env: &Env, move_id: i64) -> f64 {
    if truthy(&env.val("stock.move", move_id, "picked")) {
        env.f64("stock.move", move_id, "quantity")
    } else {
        0.0
    }
}

/// `_action_done` for one picking: done moves, the rest to a backorder or cancelled.
fn done(env: &mut Env, picking: i64, cancel_rest: bool) -> Result<(), Fault> {
    let mut rest: Vec<(i64, f64)> = Vec::new();
    for m in moves(env, picking) {
        if matches!(
            env.str("stock.move", m, "state").as_str(),
            "done" | "cancel"
        ) {
            continue;
        }
        let quantity = picked_quantity(env, m);
        let demand = env.f64("stock.move", m, "product_uom_qty");
        if quantity < EPSILON {
            rest.push((m, demand));
            continue;
        }
        if quantity + EPSILON < demand {
            rest.push((m, demand - quantity));
            env.store
                .set("stock.move", m, "product_uom_qty", json!(quantity));
        }
        let mut values = Record::new();
        values.insert("state".into(), json!("done"));
        values.insert("picked".into(), json!(true));
        values.insert("date".into(), json!(env.now));
        env.store.update("stock.move", m, values);
        record_done(env, m);
    }
    let mut values = Record::new();
    values.insert("state".into(), json!("done"));
    values.insert("date_done".into(), json!(env.now));
    env.store.update("stock.picking", picking, values);
    if rest.is_empty() {
        return Ok(());
    }
    if cancel_rest {
        for (m, _) in rest {
            if env.str("stock.move", m, "state") != "done" {
                env.store.set("stock.move", m, "state", json!("cancel"));
            }
        }
        return Ok(());
    }
    let mut backorder = env
        .store
        .get("stock.picking", picking)
        .cloned()
        .unwrap_or_default();
    for field in ["id", "state", "date_done", "name"] {
        backorder.remove(field);
    }
    let kind = env
        .id("stock.picking", picking, "picking_type_id")
        .unwrap_or(TYPE_IN);
    let code = env.str("stock.picking.type", kind, "sequence_code");
    let n = env.store.next(&format!("picking/{kind}"));
    backorder.insert("name".into(), json!(format!("WH/{code}/{n:05}")));
    backorder.insert("backorder_id".into(), json!(picking));
    backorder.insert("state".into(), json!("confirmed"));
    backorder.insert("create_date".into(), json!(env.now));
    let backorder = env.store.insert("stock.picking", backorder, None);
    for (m, remaining) in rest {
        if env.str("stock.move", m, "state") == "done" {
            let mut copy = env.store.get("stock.move", m).cloned().unwrap_or_default();
            copy.remove("id");
            copy.insert("product_uom_qty".into(), json!(remaining));
            copy.insert("quantity".into(), json!(0.0));
            copy.insert("picked".into(), json!(false));
            copy.insert("state".into(), json!("confirmed"));
            copy.insert("picking_id".into(), json!(backorder));
            env.store.insert("stock.move", copy, None);
        } else {
            let mut values = Record::new();
            values.insert("picking_id".into(), json!(backorder));
            values.insert("quantity".into(), json!(0.0));
            values.insert("picked".into(), json!(false));
            values.insert("state".into(), json!("confirmed"));
            env.store.update("stock.move", m, values);
        }
    }
    assign(env, &[backorder])?;
    Ok(())
}

pub fn call(
    env: &mut Env,
    model: &str,
    method: &str,
    args: &Args,
) -> Option<Result<Option<Value>, Fault>> {
    let outcome = match (model, method) {
        ("stock.picking", "action_confirm") => args.ids().and_then(|ids| {
            confirm(env, &ids)?;
            Ok(Some(json!(true)))
        }),
        ("stock.picking", "action_assign") => args.ids().and_then(|ids| {
            assign(env, &ids)?;
            Ok(Some(json!(true)))
        }),
        ("stock.picking", "button_validate") => {
            args.ids().and_then(|ids| validate(env, &ids).map(Some))
        }
        ("stock.picking", "action_cancel") => args.ids().and_then(|ids| {
            for id in ids {
                exists(env, id)?;
                cancel(env, id);
            }
            Ok(Some(json!(true)))
        }),
        ("stock.backorder.confirmation", "process" | "process_cancel_backorder") => {
            args.ids().and_then(|ids| {
                let Some(targets) = env.context.get("button_validate_picking_ids").cloned() else {
                    return Ok(Some(json!(true)));
                };
                let targets = ids_of(&targets)?;
                env.context.insert("skip_backorder".into(), json!(true));
                if method == "process_cancel_backorder" {
                    let picks: Vec<i64> = ids
                        .iter()
                        .flat_map(|&w| {
                            ids_of(&env.val("stock.backorder.confirmation", w, "pick_ids"))
                                .unwrap_or_default()
                        })
                        .collect();
                    env.context
                        .insert("picking_ids_not_to_backorder".into(), json!(picks));
                }
                validate(env, &targets).map(Some)
            })
        }
        ("stock.quant", "create") => create_quants(env, args).map(Some),
        ("stock.quant", "action_apply_inventory") => args.ids().and_then(|ids| {
            apply_inventory(env, &ids)?;
            Ok(None)
        }),
        _ => return None,
    };
    Some(outcome)
}

/// `stock.quant.create` in inventory mode: the existing quant of (product, location) takes the
/// counted quantity, else a new one is made.
fn create_quants(env: &mut Env, args: &Args) -> Result<Value, Fault> {
    let (list, single) = match args.get(0, "vals_list") {
        Some(Value::Object(vals)) => (vec![vals.clone()], true),
        Some(Value::Array(items)) => (
            items
                .iter()
                .filter_map(|v| v.as_object().cloned())
                .collect(),
            false,
        ),
        _ => return Err(Fault::index_error()),
    };
    let mut ids = Vec::new();
    for vals in list {
        let product = vals.get("product_id").cloned().unwrap_or(Value::Null);
        let location = vals.get("location_id").cloned().unwrap_or(json!(STOCK));
        let existing = env
            .store
            .table("stock.quant")
            .rows
            .iter()
            .find(|(_, r)| {
                r.get("product_id") == Some(&product) && r.get("location_id") == Some(&location)
            })
            .map(|(&id, _)| id);
        match existing {
            Some(id)
                if env.ctx_bool("inventory_mode") && vals.contains_key("inventory_quantity") =>
            {
                let mut values = Record::new();
                values.insert(
                    "inventory_quantity".into(),
                    vals["inventory_quantity"].clone(),
                );
                values.insert("inventory_quantity_set".into(), json!(true));
                env.write("stock.quant", &[id], &values)?;
                ids.push(id);
            }
            _ => {
                let mut vals = vals.clone();
                vals.entry("location_id").or_insert(location);
                ids.extend(env.create("stock.quant", vec![vals])?);
            }
        }
    }
    Ok(if single { json!(ids[0]) } else { json!(ids) })
}

/// `action_apply_inventory`: a done move from or to the inventory-adjustment location for the
/// difference; answers None.
fn apply_inventory(env: &mut Env, ids: &[i64]) -> Result<(), Fault> {
    for &quant in ids {
        if !env.store.exists("stock.quant", quant) {
            return Err(Fault::missing("stock.quant", &[quant]));
        }
        let product = env.id("stock.quant", quant, "product_id").unwrap_or(0);
        let location = env.id("stock.quant", quant, "location_id").unwrap_or(STOCK);
        let counted = env.f64("stock.quant", quant, "inventory_quantity");
        let current = quantity_at(env.store, product, location);
        let difference = counted - current;
        if difference.abs() > EPSILON {
            let (from, to) = if difference > 0.0 {
                (INVENTORY, location)
            } else {
                (location, INVENTORY)
            };
            let mut rec = Record::new();
            if let Some(def) = env.store.schema.model("stock.move") {
                for field in &def.fields {
                    if !field.computed && !matches!(field.kind, super::schema::Kind::One2many(..)) {
                        rec.insert(field.name.into(), field.default.clone());
                    }
                }
            }
            rec.extend(
                json!({
                    "name": "Product Quantity Updated",
                    "product_id": product,
                    "product_uom_qty": difference.abs(),
                    "quantity": difference.abs(),
                    "product_uom": env.val("product.product", product, "uom_id"),
                    "location_id": from,
                    "location_dest_id": to,
                    "state": "done",
                    "picked": true,
                    "date": env.now,
                    "create_date": env.now,
                })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            );
            let adjustment = env.store.insert("stock.move", rec, None);
            record_done(env, adjustment);
        }
        let mut values = Record::new();
        values.insert("inventory_quantity".into(), json!(0.0));
        values.insert("inventory_quantity_set".into(), json!(false));
        env.store.update("stock.quant", quant, values);
    }
    Ok(())
}
