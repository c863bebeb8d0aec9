//! The in-memory database: one table per model (rows by id), equality indexes on the fields
//! the schema marks `indexed`, named counters for sequences, and an undo journal so a call that
//! raises leaves nothing behind (one `execute_kw` is one transaction, API-NOTES §5.1).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value};

use super::schema::{Kind, Schema, first_id, schema};

pub type Record = Map<String, Value>;

#[derive(Default)]
pub struct Table {
    pub rows: BTreeMap<i64, Record>,
    pub next_id: i64,
    index: HashMap<&'static str, HashMap<String, BTreeSet<i64>>>,
}

enum Undo {
    Inserted(&'static str, i64, i64),
    Replaced(&'static str, i64, Record),
    Removed(&'static str, i64, Record),
    Counter(String, Option<i64>),
    OnHand((i64, i64), f64),
}

pub struct Store {
    pub schema: &'static Schema,
    tables: HashMap<&'static str, Table>,
    counters: HashMap<String, i64>,
    /// Done quantity per (product, location): what moves brought in less what they took out.
    on_hand: HashMap<(i64, i64), f64>,
    journal: Vec<Undo>,
}

/// The index key of a value: the JSON text, so `42` and `"42"` differ.
pub fn index_key(value: &Value) -> String {
    value.to_string()
}

impl Store {
    pub fn new() -> Store {
        let schema = schema();
        let tables = schema
            .models
            .keys()
            .map(|&name| {
                (
                    name,
                    Table {
                        next_id: first_id(name),
                        ..Table::default()
                    },
                )
            })
            .collect();
        Store {
            schema,
            tables,
            counters: HashMap::new(),
            on_hand: HashMap::new(),
            journal: Vec::new(),
        }
    }

    /// The table of a known model (callers check the model exists first).
    pub fn table(&self, model: &str) -> &Table {
        self.tables
            .get(model)
            .unwrap_or_else(|| panic!("fake Odoo: no table for {model}"))
    }

    fn table_mut(&mut self, model: &str) -> (&'static str, &mut Table) {
        let name = self
            .schema
            .models
            .get_key_value(model)
            .map(|(k, _)| *k)
            .unwrap_or_else(|| panic!("fake Odoo: no model {model}"));
        (name, self.tables.get_mut(name).unwrap())
    }

    pub fn get(&self, model: &str, id: i64) -> Option<&Record> {
        self.tables.get(model).and_then(|t| t.rows.get(&id))
    }

    pub fn exists(&self, model: &str, id: i64) -> bool {
        self.get(model, id).is_some()
    }

    /// Ids whose indexed `field` equals `value` (None when the field has no index).
    pub fn lookup(&self, model: &str, field: &str, value: &Value) -> Option<Vec<i64>> {
        let table = self.tables.get(model)?;
        let index = table.index.get(field)?;
        Some(
            index
                .get(&index_key(value))
                .map(|ids| ids.iter().copied().collect())
                .unwrap_or_default(),
        )
    }

    pub fn is_indexed(&self, model: &str, field: &str) -> bool {
        self.schema
            .model(model)
            .and_then(|m| m.field(field))
            .is_some_and(|f| f.indexed)
    }

    fn add_to_index(
        schema: &Schema,
        model: &'static str,
        table: &mut Table,
        id: i64,
        rec: &Record,
    ) {
        let Some(def) = schema.model(model) else {
            return;
        };
        for field in def.fields.iter().filter(|f| f.indexed) {
            let value = rec.get(field.name).unwrap_or(&Value::Bool(false));
            table
                .index
                .entry(field.name)
                .or_default()
                .entry(index_key(value))
                .or_default()
                .insert(id);
        }
    }

    fn drop_from_index(
        schema: &Schema,
        model: &'static str,
        table: &mut Table,
        id: i64,
        rec: &Record,
    ) {
        let Some(def) = schema.model(model) else {
            return;
        };
        for field in def.fields.iter().filter(|f| f.indexed) {
            let value = rec.get(field.name).unwrap_or(&Value::Bool(false));
            if let Some(ids) = table
                .index
                .get_mut(field.name)
                .and_then(|i| i.get_mut(&index_key(value)))
            {
                ids.remove(&id);
            }
        }
    }

    /// Inserts a new row with the next id (or `id` when given, for seeds).
    pub fn insert(&mut self, model: &str, mut rec: Record, id: Option<i64>) -> i64 {
        let schema = self.schema;
        let (name, table) = self.table_mut(model);
        let previous_next = table.next_id;
        let id = match id {
            Some(id) => id,
            None => {
                let id = table.next_id;
                table.next_id += 1;
                id
            }
        };
        rec.insert("id".into(), Value::from(id));
        Self::add_to_index(schema, name, table, id, &rec);
        table.rows.insert(id, rec);
        self.journal.push(Undo::Inserted(name, id, previous_next));
        id
    }

    /// Sets fields on an existing row.
    pub fn update(&mut self, model: &str, id: i64, values: Record) {
        let schema = self.schema;
        let (name, table) = self.table_mut(model);
        let Some(old) = table.rows.get(&id).cloned() else {
            return;
        };
        Self::drop_from_index(schema, name, table, id, &old);
        let row = table.rows.get_mut(&id).unwrap();
        for (k, v) in values {
            row.insert(k, v);
        }
        let new = row.clone();
        Self::add_to_index(schema, name, table, id, &new);
        self.journal.push(Undo::Replaced(name, id, old));
    }

    pub fn set(&mut self, model: &str, id: i64, field: &str, value: Value) {
        let mut values = Record::new();
        values.insert(field.into(), value);
        self.update(model, id, values);
    }

    pub fn remove(&mut self, model: &str, id: i64) {
        let schema = self.schema;
        let (name, table) = self.table_mut(model);
        if let Some(old) = table.rows.remove(&id) {
            Self::drop_from_index(schema, name, table, id, &old);
            self.journal.push(Undo::Removed(name, id, old));
        }
    }

    /// The next value of a named counter (1, 2, …); journaled like the rows.
    pub fn next(&mut self, key: &str) -> i64 {
        let old = self.counters.get(key).copied();
        let next = old.unwrap_or(0) + 1;
        self.counters.insert(key.to_owned(), next);
        self.journal.push(Undo::Counter(key.to_owned(), old));
        next
    }

    /// The done quantity of `product` at `location`.
    pub fn on_hand(&self, product: i64, location: i64) -> f64 {
        self.on_hand
            .get(&(product, location))
            .copied()
            .unwrap_or(0.0)
    }

    /// Adds a done move's effect at one location; journaled like the rows.
    pub fn add_on_hand(&mut self, product: i64, location: i64, delta: f64) {
        let old = self.on_hand(product, location);
        self.on_hand.insert((product, location), old + delta);
        self.journal.push(Undo::OnHand((product, location), old));
    }

    /// Sets the id the next created record of `model` gets.
    pub fn set_next_id(&mut self, model: &str, id: i64) {
        let (_, table) = self.table_mut(model);
        table.next_id = id;
    }

    /// Forgets the journal: the changes so far are committed.
    pub fn commit(&mut self) {
        self.journal.clear();
    }

    /// Undoes every change since the last commit.
    pub fn rollback(&mut self) {
        let schema = self.schema;
        while let Some(undo) = self.journal.pop() {
            match undo {
                Undo::Inserted(model, id, previous_next) => {
                    let table = self.tables.get_mut(model).unwrap();
                    if let Some(rec) = table.rows.remove(&id) {
                        Self::drop_from_index(schema, model, table, id, &rec);
                    }
                    table.next_id = previous_next;
                }
                Undo::Replaced(model, id, old) => {
                    let table = self.tables.get_mut(model).unwrap();
                    if let Some(rec) = table.rows.remove(&id) {
                        Self::drop_from_index(schema, model, table, id, &rec);
                    }
                    Self::add_to_index(schema, model, table, id, &old);
                    table.rows.insert(id, old);
                }
                Undo::Removed(model, id, old) => {
                    let table = self.tables.get_mut(model).unwrap();
                    Self::add_to_index(schema, model, table, id, &old);
                    table.rows.insert(id, old);
                }
                Undo::OnHand(key, old) => {
                    self.on_hand.insert(key, old);
                }
                Undo::Counter(key, old) => match old {
                    Some(v) => {
                        self.counters.insert(key, v);
                    }
                    None => {
                        self.counters.remove(&key);
                    }
                },
            }
        }
    }

    /// Ids of `comodel` rows whose many2one `inverse` points at `id` (a one2many's value).
    pub fn children(&self, comodel: &str, inverse: &str, id: i64) -> Vec<i64> {
        if let Some(ids) = self.lookup(comodel, inverse, &Value::from(id)) {
            return ids;
        }
        self.tables
            .get(comodel)
            .map(|t| {
                t.rows
                    .iter()
                    .filter(|(_, r)| r.get(inverse).and_then(Value::as_i64) == Some(id))
                    .map(|(&i, _)| i)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every one2many of a model, with its comodel and inverse.
    pub fn one2manys(&self, model: &str) -> Vec<(&'static str, &'static str, &'static str)> {
        self.schema
            .model(model)
            .map(|m| {
                m.fields
                    .iter()
                    .filter_map(|f| match f.kind {
                        Kind::One2many(comodel, inverse) => Some((f.name, comodel, inverse)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
