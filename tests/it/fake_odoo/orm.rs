//! The generic ORM every model shares: `create` (single dict → int, list → list), `write`,
//! `read`, `search`, `search_read`, `search_count`, `unlink`, `name_search`, `fields_get`,
//! domains (API-NOTES §2.3), x2many commands (§2.4) and the integrity errors of §5.1.
//! Model-specific behaviour is in `business`.

use std::cmp::Ordering;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime};
use serde_json::{Map, Value, json};

use super::business;
use super::fault::{Fault, py_repr};
use super::schema::{Field, Kind, Model};
use super::store::{Record, Store};

/// A test's "reject this record" switch: create/write of a matching record raises a
/// ValidationError.
#[derive(Clone)]
pub struct Rejection {
    pub model: String,
    pub predicate: Arc<dyn Fn(&Record) -> bool + Send + Sync>,
}

/// One call's environment: the database, the call's context (`kwargs.context`), the clock.
pub struct Env<'a> {
    pub store: &'a mut Store,
    pub context: Map<String, Value>,
    pub today: String,
    pub now: String,
    pub rejections: &'a [Rejection],
}

/// The positional and keyword arguments of a call.
pub struct Args {
    pub pos: Vec<Value>,
    pub kw: Map<String, Value>,
}

impl Args {
    pub fn get(&self, index: usize, name: &str) -> Option<&Value> {
        self.pos.get(index).or_else(|| self.kw.get(name))
    }

    /// `args[0]` of a record method: one id or a list of ids (`_call_kw_multi`).
    pub fn ids(&self) -> Result<Vec<i64>, Fault> {
        let first = self.pos.first().ok_or_else(Fault::index_error)?;
        ids_of(first)
    }
}

pub fn ids_of(value: &Value) -> Result<Vec<i64>, Fault> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .map(|id| vec![id])
            .ok_or_else(|| Fault::type_error(format!("invalid id {n}"))),
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| Fault::type_error(format!("invalid id {v}")))
            })
            .collect(),
        Value::Bool(false) | Value::Null => Ok(vec![]),
        other => Err(Fault::type_error(format!("invalid ids {other}"))),
    }
}

pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

pub fn money(amount: f64) -> f64 {
    (amount * 100.0).round() / 100.0
}

fn invalid_field(field: &str, model: &str) -> Fault {
    Fault::value_error(format!("Invalid field '{field}' on model '{model}'"))
}

impl Env<'_> {
    pub fn model(&self, name: &str) -> Result<&'static Model, Fault> {
        self.store
            .schema
            .model(name)
            .ok_or_else(|| Fault::user(format!("Object {name} doesn't exist")))
    }

    pub fn get(&self, model: &str, id: i64) -> Option<&Record> {
        self.store.get(model, id)
    }

    /// A stored field of a row (false when unset).
    pub fn val(&self, model: &str, id: i64, field: &str) -> Value {
        self.store
            .get(model, id)
            .and_then(|r| r.get(field))
            .cloned()
            .unwrap_or(Value::Bool(false))
    }

    pub fn f64(&self, model: &str, id: i64, field: &str) -> f64 {
        self.val(model, id, field).as_f64().unwrap_or(0.0)
    }

    pub fn id(&self, model: &str, id: i64, field: &str) -> Option<i64> {
        self.val(model, id, field).as_i64()
    }

    pub fn str(&self, model: &str, id: i64, field: &str) -> String {
        match self.val(model, id, field) {
            Value::String(s) => s,
            _ => String::new(),
        }
    }

    pub fn ctx_bool(&self, key: &str) -> bool {
        self.context.get(key).is_some_and(truthy)
    }

    // ------------------------------------------------------------------ create / write

    /// `create`: one record per dict, all or nothing.
    pub fn create(&mut self, model: &str, vals_list: Vec<Record>) -> Result<Vec<i64>, Fault> {
        let def = self.model(model)?;
        let mut ids = Vec::with_capacity(vals_list.len());
        for vals in vals_list {
            let mut rec = Record::new();
            let mut later = Vec::new();
            for field in &def.fields {
                if !matches!(field.kind, Kind::One2many(..)) {
                    rec.insert(field.name.into(), field.default.clone());
                }
            }
            for (key, value) in &vals {
                let field = def.field(key).ok_or_else(|| invalid_field(key, model))?;
                if key == "id" {
                    continue;
                }
                match field.kind {
                    Kind::One2many(..) => later.push((field, value.clone())),
                    Kind::Many2many(_) => {
                        let ids = self.many2many(field, &[], value)?;
                        rec.insert(key.clone(), json!(ids));
                    }
                    _ if field.computed => {}
                    _ => {
                        let value = self.convert(model, field, value)?;
                        rec.insert(key.clone(), value);
                    }
                }
            }
            rec.insert("create_date".into(), json!(self.now));
            rec.insert("write_date".into(), json!(self.now));
            rec.insert("create_uid".into(), json!(super::UID));
            rec.insert("write_uid".into(), json!(super::UID));
            business::prepare_create(self, model, &mut rec, &vals)?;
            self.check_record(def, &rec)?;
            business::check_create(self, model, &rec)?;
            let id = self.store.insert(model, rec, None);
            for (field, commands) in later {
                self.one2many(model, id, field, &commands)?;
            }
            business::after_create(self, model, id, &vals)?;
            self.check_rejections(model, id)?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// `write`: the same values on every id; a missing id is a MissingError.
    pub fn write(&mut self, model: &str, ids: &[i64], vals: &Record) -> Result<(), Fault> {
        let def = self.model(model)?;
        let missing: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|&id| !self.store.exists(model, id))
            .collect();
        if !missing.is_empty() {
            return Err(Fault::missing(model, &missing));
        }
        for (key, _) in vals.iter() {
            def.field(key).ok_or_else(|| invalid_field(key, model))?;
        }
        for &id in ids {
            business::check_write(self, model, id, vals)?;
            let mut changes = Record::new();
            let mut later = Vec::new();
            for (key, value) in vals {
                let field = def.field(key).ok_or_else(|| invalid_field(key, model))?;
                match field.kind {
                    Kind::One2many(..) => later.push((field, value.clone())),
                    Kind::Many2many(_) => {
                        let current = ids_of(&self.val(model, id, key)).unwrap_or_default();
                        let ids = self.many2many(field, &current, value)?;
                        changes.insert(key.clone(), json!(ids));
                    }
                    _ if field.computed || key == "id" => {}
                    _ => {
                        changes.insert(key.clone(), self.convert(model, field, value)?);
                    }
                }
            }
            changes.insert("write_date".into(), json!(self.now));
            let mut merged = self.store.get(model, id).cloned().unwrap_or_default();
            for (k, v) in &changes {
                merged.insert(k.clone(), v.clone());
            }
            self.check_record(def, &merged)?;
            self.store.update(model, id, changes);
            for (field, commands) in later {
                self.one2many(model, id, field, &commands)?;
            }
            business::after_write(self, model, id, vals)?;
            self.check_rejections(model, id)?;
        }
        Ok(())
    }

    /// `unlink`: deletes the rows, their one2many children and their external ids.
    pub fn unlink(&mut self, model: &str, ids: &[i64]) -> Result<(), Fault> {
        for &id in ids {
            if !self.store.exists(model, id) {
                continue;
            }
            business::check_unlink(self, model, id)?;
            for (_, comodel, inverse) in self.store.one2manys(model) {
                if comodel == model {
                    continue;
                }
                for child in self.store.children(comodel, inverse, id) {
                    self.unlink(comodel, &[child])?;
                }
            }
            self.store.remove(model, id);
            if model != "ir.model.data" {
                let xmlids: Vec<i64> = self
                    .store
                    .lookup("ir.model.data", "res_id", &json!(id))
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|&x| self.str("ir.model.data", x, "model") == model)
                    .collect();
                for x in xmlids {
                    self.store.remove("ir.model.data", x);
                }
            }
        }
        Ok(())
    }

    fn check_rejections(&self, model: &str, id: i64) -> Result<(), Fault> {
        let Some(rec) = self.store.get(model, id) else {
            return Ok(());
        };
        for rejection in self.rejections.iter().filter(|r| r.model == model) {
            if (rejection.predicate)(rec) {
                return Err(Fault::validation(format!(
                    "The record {model}({id},) was rejected by a validation rule of this database."
                )));
            }
        }
        Ok(())
    }

    /// NOT NULL and foreign keys, as `_as_validation_error` words them.
    fn check_record(&self, def: &Model, rec: &Record) -> Result<(), Fault> {
        for field in &def.fields {
            let value = rec.get(field.name).unwrap_or(&Value::Bool(false));
            if field.required && matches!(value, Value::Bool(false) | Value::Null) {
                return Err(Fault::validation(format!(
                    "The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n- Delete: another model requires the record being deleted. If possible, archive it instead.\n\nModel: {} ({})\nField: {} ({})\n",
                    def.description,
                    def.name,
                    field.label_text(),
                    field.name
                )));
            }
            if let (Kind::Many2one(comodel), Some(target)) = (field.kind, value.as_i64())
                && !self.store.exists(comodel, target)
            {
                return Err(Fault::validation(format!(
                    "The operation cannot be completed: another model requires the record being deleted. If possible, archive it instead.\n\nModel: {} ({})\nConstraint: {}_{}_fkey\n",
                    def.description,
                    def.name,
                    def.name.replace('.', "_"),
                    field.name
                )));
            }
            if let Kind::Many2many(comodel) = field.kind {
                for target in ids_of(value).unwrap_or_default() {
                    if !self.store.exists(comodel, target) {
                        return Err(Fault::missing(comodel, &[target]));
                    }
                }
            }
        }
        Ok(())
    }

    /// A client's value converted to what the field stores (17.0's `convert_to_cache`).
    fn convert(&self, model: &str, field: &Field, value: &Value) -> Result<Value, Fault> {
        let falsy = matches!(value, Value::Null | Value::Bool(false));
        Ok(match field.kind {
            Kind::Char | Kind::Text => match value {
                _ if falsy => Value::Bool(false),
                Value::String(_) => value.clone(),
                other => Value::String(other.to_string()),
            },
            Kind::Int | Kind::Reference => {
                if falsy {
                    if field.kind == Kind::Reference {
                        Value::Bool(false)
                    } else {
                        json!(0)
                    }
                } else {
                    json!(value.as_f64().ok_or_else(|| Fault::value_error(format!(
                        "invalid literal for int() with base 10: {}",
                        py_repr(value)
                    )))? as i64)
                }
            }
            Kind::Float => {
                if falsy {
                    json!(0.0)
                } else {
                    json!(value.as_f64().ok_or_else(|| Fault::value_error(format!(
                        "could not convert string to float: {}",
                        py_repr(value)
                    )))?)
                }
            }
            Kind::Bool => Value::Bool(truthy(value)),
            Kind::Date => match value {
                _ if falsy => Value::Bool(false),
                Value::String(s) => {
                    let head = s.get(..10).unwrap_or(s);
                    NaiveDate::parse_from_str(head, "%Y-%m-%d").map_err(|_| {
                        Fault::value_error(format!(
                            "time data {} does not match format '%Y-%m-%d'",
                            py_repr(&json!(head))
                        ))
                    })?;
                    json!(head)
                }
                other => return Err(Fault::type_error(format!("invalid date {other}"))),
            },
            Kind::Datetime => match value {
                _ if falsy => Value::Bool(false),
                Value::String(s) if s.len() == 10 => {
                    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
                        Fault::value_error(format!(
                            "time data {} does not match format '%Y-%m-%d'",
                            py_repr(value)
                        ))
                    })?;
                    json!(format!("{s} 00:00:00"))
                }
                Value::String(s) => {
                    let head = s.get(..19).unwrap_or(s);
                    NaiveDateTime::parse_from_str(head, "%Y-%m-%d %H:%M:%S").map_err(|_| {
                        Fault::value_error(format!(
                            "time data {} does not match format '%Y-%m-%d %H:%M:%S'",
                            py_repr(&json!(head))
                        ))
                    })?;
                    json!(head)
                }
                other => return Err(Fault::type_error(format!("invalid datetime {other}"))),
            },
            Kind::Selection(options) => match value {
                _ if falsy => Value::Bool(false),
                Value::String(s) if options.contains(&s.as_str()) => value.clone(),
                other => {
                    return Err(Fault::value_error(format!(
                        "Wrong value for {model}.{}: {}",
                        field.name,
                        py_repr(other)
                    )));
                }
            },
            Kind::Many2one(_) => match value {
                _ if falsy => Value::Bool(false),
                Value::Number(n) if n.as_i64().is_some() => value.clone(),
                other => {
                    return Err(Fault::type_error(format!(
                        "unhashable or invalid many2one value: {}",
                        py_repr(other)
                    )));
                }
            },
            Kind::One2many(..) | Kind::Many2many(_) => value.clone(),
        })
    }

    /// Applies x2many commands (or a plain id list) to a many2many's current ids.
    fn many2many(
        &mut self,
        field: &Field,
        current: &[i64],
        value: &Value,
    ) -> Result<Vec<i64>, Fault> {
        let Kind::Many2many(comodel) = field.kind else {
            unreachable!("many2many called for a non-many2many field");
        };
        let mut ids: Vec<i64> = current.to_vec();
        let Value::Array(items) = value else {
            if matches!(value, Value::Bool(false) | Value::Null) {
                return Ok(vec![]);
            }
            return Err(Fault::value_error(format!(
                "Wrong value for {}: {}",
                field.name,
                py_repr(value)
            )));
        };
        if items.iter().all(Value::is_i64) {
            return ids_of(value);
        }
        for command in items {
            let parts = command.as_array().cloned().unwrap_or_default();
            let code = parts.first().and_then(Value::as_i64).unwrap_or(-1);
            let target = parts.get(1).and_then(Value::as_i64).unwrap_or(0);
            match code {
                0 => {
                    let vals = parts
                        .get(2)
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    let new = self.create(comodel, vec![vals])?;
                    ids.extend(new);
                }
                1 => {
                    let vals = parts
                        .get(2)
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    self.write(comodel, &[target], &vals)?;
                }
                2 => {
                    ids.retain(|&i| i != target);
                    self.unlink(comodel, &[target])?;
                }
                3 => ids.retain(|&i| i != target),
                4 => {
                    if !ids.contains(&target) {
                        ids.push(target);
                    }
                }
                5 => ids.clear(),
                6 => ids = ids_of(parts.get(2).unwrap_or(&json!([])))?,
                _ => {
                    return Err(Fault::value_error(format!(
                        "Wrong value for {}: {}",
                        field.name,
                        py_repr(command)
                    )));
                }
            }
        }
        Ok(ids)
    }

    /// Applies one2many commands for the parent `id`.
    fn one2many(
        &mut self,
        model: &str,
        id: i64,
        field: &Field,
        value: &Value,
    ) -> Result<(), Fault> {
        let Kind::One2many(comodel, inverse) = field.kind else {
            unreachable!("one2many called for a non-one2many field");
        };
        let items = match value {
            Value::Array(items) => items.clone(),
            Value::Bool(false) | Value::Null => return Ok(()),
            other => {
                return Err(Fault::value_error(format!(
                    "Wrong value for {model}.{}: {}",
                    field.name,
                    py_repr(other)
                )));
            }
        };
        if items.iter().all(Value::is_i64) {
            let wanted = ids_of(value)?;
            for child in self.store.children(comodel, inverse, id) {
                if !wanted.contains(&child) {
                    self.unlink(comodel, &[child])?;
                }
            }
            for child in wanted {
                let mut vals = Record::new();
                vals.insert(inverse.into(), json!(id));
                self.write(comodel, &[child], &vals)?;
            }
            return Ok(());
        }
        for command in &items {
            let parts = command.as_array().cloned().unwrap_or_default();
            let code = parts.first().and_then(Value::as_i64).unwrap_or(-1);
            let target = parts.get(1).and_then(Value::as_i64).unwrap_or(0);
            match code {
                0 => {
                    let mut vals = parts
                        .get(2)
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    vals.insert(inverse.into(), json!(id));
                    self.create(comodel, vec![vals])?;
                }
                1 => {
                    let vals = parts
                        .get(2)
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    self.write(comodel, &[target], &vals)?;
                }
                2 | 3 => self.unlink(comodel, &[target])?,
                4 => {
                    let mut vals = Record::new();
                    vals.insert(inverse.into(), json!(id));
                    self.write(comodel, &[target], &vals)?;
                }
                5 => {
                    for child in self.store.children(comodel, inverse, id) {
                        self.unlink(comodel, &[child])?;
                    }
                }
                6 => {
                    let wanted = ids_of(parts.get(2).unwrap_or(&json!([])))?;
                    for child in self.store.children(comodel, inverse, id) {
                        if !wanted.contains(&child) {
                            self.unlink(comodel, &[child])?;
                        }
                    }
                    for child in wanted {
                        let mut vals = Record::new();
                        vals.insert(inverse.into(), json!(id));
                        self.write(comodel, &[child], &vals)?;
                    }
                }
                _ => {
                    return Err(Fault::value_error(format!(
                        "Wrong value for {model}.{}: {}",
                        field.name,
                        py_repr(command)
                    )));
                }
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ read

    /// The value `read` answers for one field (`load` false: many2one as a bare id).
    pub fn read_field(&self, model: &str, id: i64, field: &Field, load: bool) -> Value {
        if field.name == "id" {
            return json!(id);
        }
        if field.name == "display_name" {
            return business::display_name(self.store, model, id);
        }
        if let Some(value) = business::computed(self.store, model, id, field.name) {
            return value;
        }
        let value = match field.kind {
            Kind::One2many(comodel, inverse) => json!(self.store.children(comodel, inverse, id)),
            _ => self
                .store
                .get(model, id)
                .and_then(|r| r.get(field.name))
                .cloned()
                .unwrap_or_else(|| field.default.clone()),
        };
        match (field.kind, value.as_i64()) {
            (Kind::Many2one(comodel), Some(target)) if load => {
                json!([target, business::display_name(self.store, comodel, target)])
            }
            _ => value,
        }
    }

    fn field_list(
        &self,
        model: &str,
        fields: Option<&Value>,
    ) -> Result<Vec<&'static Field>, Fault> {
        let def = self.model(model)?;
        let names: Vec<String> = match fields {
            Some(Value::Array(names)) if !names.is_empty() => names
                .iter()
                .map(|n| n.as_str().unwrap_or_default().to_owned())
                .collect(),
            _ => return Ok(def.fields.iter().collect()),
        };
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            out.push(
                def.field(&name)
                    .ok_or_else(|| invalid_field(&name, model))?,
            );
        }
        Ok(out)
    }

    /// `read`: ids that no longer exist are skipped silently (API-NOTES §2.2).
    pub fn read(
        &self,
        model: &str,
        ids: &[i64],
        fields: Option<&Value>,
        load: bool,
    ) -> Result<Vec<Value>, Fault> {
        let fields = self.field_list(model, fields)?;
        let mut rows = Vec::with_capacity(ids.len());
        for &id in ids {
            if !self.store.exists(model, id) {
                continue;
            }
            let mut row = Map::new();
            row.insert("id".into(), json!(id));
            for field in &fields {
                row.insert(field.name.into(), self.read_field(model, id, field, load));
            }
            rows.push(Value::Object(row));
        }
        Ok(rows)
    }

    // ------------------------------------------------------------------ search

    pub fn search(
        &self,
        model: &str,
        domain: &Value,
        offset: usize,
        limit: Option<usize>,
        order: Option<&str>,
    ) -> Result<Vec<i64>, Fault> {
        let def = self.model(model)?;
        let node = parse_domain(self.store, def, domain)?;
        let candidates: Vec<i64> = match indexed_leaf(self.store, model, &node) {
            Some(ids) => ids,
            None => self.store.table(model).rows.keys().copied().collect(),
        };
        let active_test = def.has_active()
            && !mentions(&node, "active")
            && self.context.get("active_test") != Some(&Value::Bool(false));
        let mut ids = Vec::new();
        for id in candidates {
            let Some(rec) = self.store.get(model, id) else {
                continue;
            };
            if active_test && rec.get("active") == Some(&Value::Bool(false)) {
                continue;
            }
            if eval(self, model, id, &node) {
                ids.push(id);
            }
        }
        let order = order.filter(|o| !o.trim().is_empty()).unwrap_or(def.order);
        self.sort(model, &mut ids, order);
        Ok(ids
            .into_iter()
            .skip(offset)
            .take(limit.unwrap_or(usize::MAX))
            .collect())
    }

    fn sort(&self, model: &str, ids: &mut [i64], order: &str) {
        let def = self.store.schema.model(model);
        let terms: Vec<(String, bool)> = order
            .split(',')
            .filter_map(|term| {
                let mut words = term.split_whitespace();
                let name = words.next()?.to_owned();
                let desc = words.next().is_some_and(|w| w.eq_ignore_ascii_case("desc"));
                def.and_then(|d| d.field(&name)).map(|_| (name, desc))
            })
            .collect();
        ids.sort_by(|&a, &b| {
            for (name, desc) in &terms {
                let ordering = if name == "id" {
                    a.cmp(&b)
                } else {
                    compare_values(&self.val(model, a, name), &self.val(model, b, name))
                };
                let ordering = if *desc { ordering.reverse() } else { ordering };
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
            a.cmp(&b)
        });
    }

    // ------------------------------------------------------------------ dispatch

    /// The ORM methods every model answers; `None` when `method` is not one of them.
    pub fn call_generic(
        &mut self,
        model: &str,
        method: &str,
        args: &Args,
    ) -> Option<Result<Option<Value>, Fault>> {
        let result = match method {
            "create" => self.call_create(model, args),
            "write" => (|| {
                let ids = args.ids()?;
                let vals = match args.get(1, "vals") {
                    Some(Value::Object(vals)) => vals.clone(),
                    Some(other) => {
                        return Err(Fault::attribute_error(format!(
                            "'{}' object has no attribute 'items'",
                            python_type(other)
                        )));
                    }
                    None => {
                        return Err(Fault::type_error(
                            "write() missing 1 required positional argument: 'vals'",
                        ));
                    }
                };
                self.write(model, &ids, &vals)?;
                Ok(Some(json!(true)))
            })(),
            "unlink" => (|| {
                let ids = args.ids()?;
                self.unlink(model, &ids)?;
                Ok(Some(json!(true)))
            })(),
            "read" => (|| {
                let ids = args.ids()?;
                let load = !matches!(args.kw.get("load"), Some(Value::Null | Value::Bool(false)));
                let rows = self.read(model, &ids, args.get(1, "fields"), load)?;
                Ok(Some(json!(rows)))
            })(),
            "search" | "search_read" | "search_count" => (|| {
                let domain = args.get(0, "domain").cloned().unwrap_or(json!([]));
                let (offset, limit, order) = if method == "search_read" {
                    (
                        args.get(2, "offset"),
                        args.get(3, "limit"),
                        args.get(4, "order"),
                    )
                } else {
                    (
                        args.get(1, "offset"),
                        args.get(2, "limit"),
                        args.get(3, "order"),
                    )
                };
                let offset = offset.and_then(Value::as_u64).unwrap_or(0) as usize;
                let limit = limit.and_then(Value::as_u64).map(|l| l as usize);
                let order = order.and_then(Value::as_str);
                if method == "search_count" {
                    let limit = args
                        .get(1, "limit")
                        .and_then(Value::as_u64)
                        .map(|l| l as usize);
                    let ids = self.search(model, &domain, 0, limit, None)?;
                    return Ok(Some(json!(ids.len())));
                }
                let ids = self.search(model, &domain, offset, limit, order)?;
                if method == "search" {
                    return Ok(Some(json!(ids)));
                }
                let rows = self.read(model, &ids, args.get(1, "fields"), true)?;
                Ok(Some(json!(rows)))
            })(),
            "name_search" => (|| {
                let name = args.get(0, "name").and_then(Value::as_str).unwrap_or("");
                let operator = args
                    .get(2, "operator")
                    .and_then(Value::as_str)
                    .unwrap_or("ilike");
                let limit = args.get(3, "limit").and_then(Value::as_u64).unwrap_or(100) as usize;
                let mut domain = match args.get(1, "args") {
                    Some(Value::Array(extra)) => extra.clone(),
                    _ => vec![],
                };
                if !name.is_empty() {
                    domain.push(json!(["display_name", operator, name]));
                }
                let ids = self.search(model, &json!(domain), 0, Some(limit), None)?;
                let pairs: Vec<Value> = ids
                    .into_iter()
                    .map(|id| json!([id, business::display_name(self.store, model, id)]))
                    .collect();
                Ok(Some(json!(pairs)))
            })(),
            "fields_get" => (|| {
                let def = self.model(model)?;
                let attributes: Option<Vec<String>> = args
                    .get(1, "attributes")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    });
                let mut out = Map::new();
                for field in &def.fields {
                    let mut desc = Map::new();
                    desc.insert("type".into(), json!(kind_name(field.kind)));
                    desc.insert("string".into(), json!(field.label_text()));
                    desc.insert("required".into(), json!(field.required));
                    desc.insert("readonly".into(), json!(field.computed));
                    match field.kind {
                        Kind::Many2one(c) | Kind::Many2many(c) | Kind::One2many(c, _) => {
                            desc.insert("relation".into(), json!(c));
                        }
                        Kind::Selection(options) => {
                            let pairs: Vec<Value> = options.iter().map(|o| json!([o, o])).collect();
                            desc.insert("selection".into(), json!(pairs));
                        }
                        _ => {}
                    }
                    if let Some(wanted) = &attributes {
                        desc.retain(|k, _| wanted.iter().any(|w| w == k));
                    }
                    out.insert(field.name.into(), Value::Object(desc));
                }
                Ok(Some(Value::Object(out)))
            })(),
            "exists" => (|| {
                let ids = args.ids()?;
                let kept: Vec<i64> = ids
                    .into_iter()
                    .filter(|&i| self.store.exists(model, i))
                    .collect();
                Ok(Some(json!(kept)))
            })(),
            _ => return None,
        };
        Some(result)
    }

    /// `_call_kw_model_create` reads `args[0]`: the values must be positional.
    fn call_create(&mut self, model: &str, args: &Args) -> Result<Option<Value>, Fault> {
        match args.pos.first() {
            Some(Value::Object(vals)) => {
                let ids = self.create(model, vec![vals.clone()])?;
                Ok(Some(json!(ids[0])))
            }
            Some(Value::Array(list)) => {
                let mut vals_list = Vec::with_capacity(list.len());
                for vals in list {
                    match vals {
                        Value::Object(vals) => vals_list.push(vals.clone()),
                        other => {
                            return Err(Fault::attribute_error(format!(
                                "'{}' object has no attribute 'items'",
                                python_type(other)
                            )));
                        }
                    }
                }
                let ids = self.create(model, vals_list)?;
                Ok(Some(json!(ids)))
            }
            Some(other) => Err(Fault::attribute_error(format!(
                "'{}' object has no attribute 'items'",
                python_type(other)
            ))),
            None => Err(Fault::index_error()),
        }
    }
}

/// The keyword arguments a method takes (beyond `context`, which `call_kw` pops); any other
/// is Python's TypeError. Business methods take none.
pub fn check_kwargs(method: &str, kwargs: &Map<String, Value>) -> Result<(), Fault> {
    let allowed: &[&str] = match method {
        // Accepted by `create` itself, then `_call_kw_model_create` reads `args[0]`.
        "create" => &["vals_list"],
        "read" => &["fields", "load"],
        "search" => &["domain", "offset", "limit", "order"],
        "search_read" => &["domain", "fields", "offset", "limit", "order", "load"],
        "search_count" => &["domain", "limit"],
        "name_search" => &["name", "args", "operator", "limit"],
        "fields_get" => &["allfields", "attributes"],
        "check_object_reference" => &["module", "xml_id", "raise_on_access_error"],
        _ => &[],
    };
    match kwargs.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unexpected) => Err(Fault::type_error(format!(
            "{method}() got an unexpected keyword argument '{unexpected}'"
        ))),
        None => Ok(()),
    }
}

pub fn python_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Char => "char",
        Kind::Text => "text",
        Kind::Int => "integer",
        Kind::Float => "float",
        Kind::Bool => "boolean",
        Kind::Date => "date",
        Kind::Datetime => "datetime",
        Kind::Selection(_) => "selection",
        Kind::Many2one(_) => "many2one",
        Kind::One2many(..) => "one2many",
        Kind::Many2many(_) => "many2many",
        Kind::Reference => "many2one_reference",
    }
}

// ---------------------------------------------------------------------- domains

/// A parsed domain.
pub enum Node {
    Leaf(Vec<String>, String, Value),
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Const(bool),
}

const OPERATORS: &[&str] = &[
    "=",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "=?",
    "=like",
    "=ilike",
    "like",
    "not like",
    "ilike",
    "not ilike",
    "in",
    "not in",
    "child_of",
    "parent_of",
];

fn parse_domain(store: &Store, def: &Model, domain: &Value) -> Result<Node, Fault> {
    let items = match domain {
        Value::Array(items) => items,
        Value::Bool(false) | Value::Null => return Ok(Node::Const(true)),
        other => {
            return Err(Fault::value_error(format!(
                "Invalid domain: {}",
                py_repr(other)
            )));
        }
    };
    let mut stack: Vec<Node> = Vec::new();
    for item in items.iter().rev() {
        match item {
            Value::String(op) if op == "&" || op == "|" => {
                let (Some(a), Some(b)) = (stack.pop(), stack.pop()) else {
                    return Err(Fault::value_error(format!(
                        "Invalid domain: {}",
                        py_repr(domain)
                    )));
                };
                stack.push(if op == "&" {
                    Node::And(vec![a, b])
                } else {
                    Node::Or(vec![a, b])
                });
            }
            Value::String(op) if op == "!" => {
                let Some(a) = stack.pop() else {
                    return Err(Fault::value_error(format!(
                        "Invalid domain: {}",
                        py_repr(domain)
                    )));
                };
                stack.push(Node::Not(Box::new(a)));
            }
            Value::Array(leaf) if leaf.len() == 3 => {
                stack.push(parse_leaf(store, def, leaf, item)?)
            }
            other => {
                return Err(Fault::value_error(format!(
                    "Invalid leaf {}",
                    py_repr(other)
                )));
            }
        }
    }
    stack.reverse();
    Ok(Node::And(stack))
}

fn parse_leaf(store: &Store, def: &Model, leaf: &[Value], raw: &Value) -> Result<Node, Fault> {
    if leaf[0].as_i64() == Some(1) && leaf[2].as_i64() == Some(1) {
        return Ok(Node::Const(true));
    }
    if leaf[0].as_i64() == Some(0) && leaf[2].as_i64() == Some(1) {
        return Ok(Node::Const(false));
    }
    let (Some(path), Some(op)) = (leaf[0].as_str(), leaf[1].as_str()) else {
        return Err(Fault::value_error(format!("Invalid leaf {}", py_repr(raw))));
    };
    let op = op.to_lowercase();
    if !OPERATORS.contains(&op.as_str()) {
        return Err(Fault::value_error(format!("Invalid leaf {}", py_repr(raw))));
    }
    let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
    let mut model = def;
    for (i, part) in parts.iter().enumerate() {
        let field = model.field(part).ok_or_else(|| {
            Fault::value_error(format!(
                "Invalid field {}.{} in leaf {}",
                model.name,
                part,
                py_repr(raw)
            ))
        })?;
        if i + 1 < parts.len() {
            let comodel = match field.kind {
                Kind::Many2one(c) | Kind::Many2many(c) | Kind::One2many(c, _) => c,
                _ => {
                    return Err(Fault::value_error(format!(
                        "Invalid field {}.{} in leaf {}",
                        model.name,
                        part,
                        py_repr(raw)
                    )));
                }
            };
            model = store
                .schema
                .model(comodel)
                .ok_or_else(|| Fault::value_error(format!("Invalid leaf {}", py_repr(raw))))?;
        }
    }
    Ok(Node::Leaf(parts, op, leaf[2].clone()))
}

fn mentions(node: &Node, field: &str) -> bool {
    match node {
        Node::Leaf(path, ..) => path.first().is_some_and(|p| p == field),
        Node::And(nodes) | Node::Or(nodes) => nodes.iter().any(|n| mentions(n, field)),
        Node::Not(n) => mentions(n, field),
        Node::Const(_) => false,
    }
}

/// Candidates from an index when the domain is a conjunction holding `[indexed, "=", value]`
/// or `[indexed, "in", values]` (the leaf is still evaluated on each candidate).
fn indexed_leaf(store: &Store, model: &str, node: &Node) -> Option<Vec<i64>> {
    let Node::And(nodes) = node else {
        return None;
    };
    for n in nodes {
        if let Node::Leaf(path, op, value) = n
            && path.len() == 1
            && store.is_indexed(model, &path[0])
        {
            if op == "=" && truthy(value) && !value.is_array() {
                return store.lookup(model, &path[0], value);
            }
            if op == "in"
                && let Value::Array(values) = value
                && values.iter().all(truthy)
            {
                let mut ids: Vec<i64> = values
                    .iter()
                    .flat_map(|v| store.lookup(model, &path[0], v).unwrap_or_default())
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                return Some(ids);
            }
        }
        if let Node::And(_) = n
            && let Some(ids) = indexed_leaf(store, model, n)
        {
            return Some(ids);
        }
    }
    None
}

fn eval(env: &Env, model: &str, id: i64, node: &Node) -> bool {
    match node {
        Node::Const(b) => *b,
        Node::And(nodes) => nodes.iter().all(|n| eval(env, model, id, n)),
        Node::Or(nodes) => nodes.iter().any(|n| eval(env, model, id, n)),
        Node::Not(n) => !eval(env, model, id, n),
        Node::Leaf(path, op, value) => eval_path(env, model, id, path, op, value),
    }
}

fn eval_path(env: &Env, model: &str, id: i64, path: &[String], op: &str, value: &Value) -> bool {
    let Some(def) = env.store.schema.model(model) else {
        return false;
    };
    let Some(field) = def.field(&path[0]) else {
        return false;
    };
    let current = env.read_field(model, id, field, false);
    if path.len() > 1 {
        let comodel = match field.kind {
            Kind::Many2one(c) | Kind::Many2many(c) | Kind::One2many(c, _) => c,
            _ => return false,
        };
        let targets = ids_of(&current).unwrap_or_default();
        let negative = matches!(op, "!=" | "<>" | "not in" | "not like" | "not ilike");
        if targets.is_empty() {
            return negative;
        }
        return targets
            .iter()
            .any(|&t| eval_path(env, comodel, t, &path[1..], op, value));
    }
    match field.kind {
        Kind::One2many(..) | Kind::Many2many(_) => {
            let have = ids_of(&current).unwrap_or_default();
            let want = ids_of(value).unwrap_or_default();
            match op {
                "=" | "in" | "child_of" | "parent_of" => {
                    if !truthy(value) {
                        have.is_empty()
                    } else {
                        have.iter().any(|h| want.contains(h))
                    }
                }
                "!=" | "<>" | "not in" => {
                    if !truthy(value) {
                        !have.is_empty()
                    } else {
                        !have.iter().any(|h| want.contains(h))
                    }
                }
                _ => false,
            }
        }
        _ => compare(&current, op, value),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (x, y) if !truthy(y) && matches!(y, Value::Bool(false) | Value::Null) => {
            matches!(x, Value::Bool(false) | Value::Null)
        }
        (x, y) => x == y,
    }
}

fn compare(current: &Value, op: &str, value: &Value) -> bool {
    match op {
        "=" | "child_of" | "parent_of" if value.is_array() => compare(current, "in", value),
        "=" | "child_of" | "parent_of" => equal(current, value),
        "!=" | "<>" => !equal(current, value),
        "=?" => !truthy(value) || equal(current, value),
        "in" => value
            .as_array()
            .is_some_and(|items| items.iter().any(|v| equal(current, v))),
        "not in" => !value
            .as_array()
            .is_some_and(|items| items.iter().any(|v| equal(current, v))),
        "<" | "<=" | ">" | ">=" => {
            if matches!(current, Value::Bool(false) | Value::Null) {
                return false;
            }
            let ordering = compare_values(current, value);
            match op {
                "<" => ordering == Ordering::Less,
                "<=" => ordering != Ordering::Greater,
                ">" => ordering == Ordering::Greater,
                _ => ordering != Ordering::Less,
            }
        }
        "like" | "ilike" | "not like" | "not ilike" | "=like" | "=ilike" => {
            let text = match current {
                Value::String(s) => s.clone(),
                Value::Bool(false) | Value::Null => {
                    return op.starts_with("not");
                }
                other => other.to_string(),
            };
            let pattern = value.as_str().unwrap_or_default();
            let insensitive = op.contains("ilike");
            let (text, pattern) = if insensitive {
                (text.to_lowercase(), pattern.to_lowercase())
            } else {
                (text, pattern.to_owned())
            };
            let matched = if op.starts_with('=') {
                sql_like(&text, &pattern)
            } else {
                text.contains(&pattern)
            };
            if op.starts_with("not") {
                !matched
            } else {
                matched
            }
        }
        _ => false,
    }
}

/// SQL `LIKE` with `%` and `_`.
fn sql_like(text: &str, pattern: &str) -> bool {
    fn go(t: &[char], p: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('%') => (0..=t.len()).any(|i| go(&t[i..], &p[1..])),
            Some('_') => !t.is_empty() && go(&t[1..], &p[1..]),
            Some(c) => t.first() == Some(c) && go(&t[1..], &p[1..]),
        }
    }
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    go(&t, &p)
}

/// Orders values as PostgreSQL would for `ORDER BY … ASC`: NULL (false) last.
fn compare_values(a: &Value, b: &Value) -> Ordering {
    let a_null = matches!(a, Value::Bool(false) | Value::Null);
    let b_null = matches!(b, Value::Bool(false) | Value::Null);
    match (a_null, b_null) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}
