//! [`ViewStore`]: the only way a projection reads or writes its view.
//!
//! A view is a set of tables of JSON rows keyed by a string. The trait is deliberately small
//! and object-safe (`&mut dyn ViewStore`) so the shell can implement it over SQLite or
//! PostgreSQL tables inside the very transaction that advances the projection's checkpoint:
//! one `(key TEXT PRIMARY KEY, row JSON)` table per name, and a range scan is
//! `WHERE key >= ? AND key < ? ORDER BY key`. Keys compare as bytes (SQLite's default `BINARY`
//! collation; PostgreSQL needs `COLLATE "C"`), which every key this crate builds relies on.
//! [`MemoryViewStore`] is the reference implementation and serves the tests.
//!
//! Rows are `serde_json::Value`s at the trait boundary; the typed helpers [`load`], [`save`]
//! and [`load_prefix`] turn them into each view's row structs, so the trait needs no generics.

use std::any::Any;
use std::collections::BTreeMap;
use std::ops::Bound;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ProjectionError;

/// Rows keyed by `(table, key)`, with ordered scans. See the module docs for the contract.
pub trait ViewStore {
    /// The row under `key`, if any.
    ///
    /// # Errors
    /// [`ProjectionError::Store`] when the backend fails.
    fn get(&self, table: &'static str, key: &str) -> Result<Option<Value>, ProjectionError>;

    /// The row under `key`, for a caller that will write it back (or delete it) before its
    /// `apply` returns `Ok`. A store may hand the row over instead of copying it, and may hand
    /// over the typed row a [`ViewStore::put_typed`] left, so until it is written back the row
    /// may read as absent. The default copies ([`ViewStore::get`]).
    ///
    /// This exists for speed: a projection's hot rows (an account's open items, a day's
    /// counters) are read and rewritten for every event, and turning a large row into JSON and
    /// back for each event was most of the cost of a rebuild (docs/performance.md).
    ///
    /// # Errors
    /// [`ProjectionError::Store`] when the backend fails.
    fn take(&mut self, table: &'static str, key: &str) -> Result<Option<Taken>, ProjectionError> {
        Ok(self.get(table, key)?.map(Taken::Json))
    }

    /// Inserts or replaces the row under `key` with a typed row, which a store may keep as it
    /// is until it must write it out. The default serialises it at once.
    ///
    /// # Errors
    /// [`ProjectionError::Serialize`] (not expected); the backend's errors.
    fn put_typed(
        &mut self,
        table: &'static str,
        key: &str,
        row: Box<dyn TypedRow>,
    ) -> Result<(), ProjectionError> {
        let value = row.to_json().map_err(|error| ProjectionError::Serialize {
            table,
            key: key.to_owned(),
            detail: error.to_string(),
        })?;
        self.put(table, key, value)
    }

    /// Inserts or replaces the row under `key`.
    ///
    /// # Errors
    /// [`ProjectionError::Store`] when the backend fails.
    fn put(&mut self, table: &'static str, key: &str, row: Value) -> Result<(), ProjectionError>;

    /// Removes the row under `key` (no error if there is none).
    ///
    /// # Errors
    /// [`ProjectionError::Store`] when the backend fails.
    fn delete(&mut self, table: &'static str, key: &str) -> Result<(), ProjectionError>;

    /// Rows whose key is `>= from` and, when `to` is given, `< to`, in key order.
    ///
    /// # Errors
    /// [`ProjectionError::Store`] when the backend fails.
    fn scan_range(
        &self,
        table: &'static str,
        from: &str,
        to: Option<&str>,
    ) -> Result<Vec<(String, Value)>, ProjectionError>;

    /// Rows whose key starts with `prefix`, in key order. The default filters a range scan;
    /// a SQL backend may override it with `key >= prefix AND key < successor(prefix)`.
    ///
    /// # Errors
    /// [`ProjectionError::Store`] when the backend fails.
    fn scan_prefix(
        &self,
        table: &'static str,
        prefix: &str,
    ) -> Result<Vec<(String, Value)>, ProjectionError> {
        let mut rows = self.scan_range(table, prefix, None)?;
        // Keys >= prefix that start with it form one contiguous run at the front.
        let end = rows
            .iter()
            .position(|(key, _)| !key.starts_with(prefix))
            .unwrap_or(rows.len());
        rows.truncate(end);
        Ok(rows)
    }
}

/// A row kept in its own type by a store that defers serialisation (see
/// [`ViewStore::put_typed`]).
pub trait TypedRow: Any + Send {
    /// The row as the JSON it is stored as.
    ///
    /// # Errors
    /// What serde_json reports (not expected for this crate's rows).
    fn to_json(&self) -> Result<Value, serde_json::Error>;
    /// The row as JSON text, straight from the typed row (no `Value` in between).
    ///
    /// # Errors
    /// What serde_json reports (not expected for this crate's rows).
    fn to_text(&self) -> Result<String, serde_json::Error>;
    /// For the downcast back to the row's type.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<T: Serialize + Any + Send> TypedRow for T {
    fn to_json(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }

    fn to_text(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// What [`ViewStore::take`] hands over: stored JSON, or a typed row a projection left.
pub enum Taken {
    Json(Value),
    Typed(Box<dyn TypedRow>),
}

impl std::fmt::Debug for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Taken::Json(value) => f.debug_tuple("Json").field(value).finish(),
            Taken::Typed(_) => f.write_str("Typed(..)"),
        }
    }
}

/// A [`ViewStore`] in memory: one ordered map per table. Used by every test in this crate and
/// usable by the shell's own tests; `PartialEq` lets a test compare two whole views.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryViewStore {
    tables: BTreeMap<&'static str, BTreeMap<String, Value>>,
}

impl MemoryViewStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// One table's rows in key order (empty if the table was never written).
    pub fn table(&self, table: &str) -> BTreeMap<String, Value> {
        self.tables.get(table).cloned().unwrap_or_default()
    }

    /// Every table, for dumps and whole-view comparisons.
    pub fn tables(&self) -> &BTreeMap<&'static str, BTreeMap<String, Value>> {
        &self.tables
    }
}

impl ViewStore for MemoryViewStore {
    fn get(&self, table: &'static str, key: &str) -> Result<Option<Value>, ProjectionError> {
        Ok(self
            .tables
            .get(table)
            .and_then(|rows| rows.get(key))
            .cloned())
    }

    fn put(&mut self, table: &'static str, key: &str, row: Value) -> Result<(), ProjectionError> {
        self.tables
            .entry(table)
            .or_default()
            .insert(key.to_owned(), row);
        Ok(())
    }

    fn delete(&mut self, table: &'static str, key: &str) -> Result<(), ProjectionError> {
        if let Some(rows) = self.tables.get_mut(table) {
            rows.remove(key);
            if rows.is_empty() {
                // An emptied table and a never-written one compare equal (determinism tests).
                self.tables.remove(table);
            }
        }
        Ok(())
    }

    fn scan_range(
        &self,
        table: &'static str,
        from: &str,
        to: Option<&str>,
    ) -> Result<Vec<(String, Value)>, ProjectionError> {
        let Some(rows) = self.tables.get(table) else {
            return Ok(Vec::new());
        };
        let upper = match to {
            Some(to) if to <= from => return Ok(Vec::new()),
            Some(to) => Bound::Excluded(to),
            None => Bound::Unbounded,
        };
        Ok(rows
            .range::<str, _>((Bound::Included(from), upper))
            .map(|(key, row)| (key.clone(), row.clone()))
            .collect())
    }
}

/// Reads and deserialises one row.
///
/// # Errors
/// [`ProjectionError::Row`] when the row has another shape; the store's own errors.
pub fn load<T: DeserializeOwned>(
    store: &dyn ViewStore,
    table: &'static str,
    key: &str,
) -> Result<Option<T>, ProjectionError> {
    store
        .get(table, key)?
        .map(|row| decode_row(table, key, row))
        .transpose()
}

/// Reads one row that the caller writes back with [`save`] before it returns `Ok` (see
/// [`ViewStore::take`]); every success path must save it.
///
/// # Errors
/// [`ProjectionError::Row`] when the row has another shape; the store's own errors.
pub fn take<T: DeserializeOwned + 'static>(
    store: &mut dyn ViewStore,
    table: &'static str,
    key: &str,
) -> Result<Option<T>, ProjectionError> {
    match store.take(table, key)? {
        None => Ok(None),
        Some(Taken::Json(row)) => decode_row(table, key, row).map(Some),
        Some(Taken::Typed(row)) => match row.into_any().downcast::<T>() {
            Ok(row) => Ok(Some(*row)),
            Err(_) => Err(ProjectionError::Row {
                table,
                key: key.to_owned(),
                detail: "the row was left as another type".to_owned(),
            }),
        },
    }
}

/// Writes one row, handing it over typed: a store that defers serialisation keeps it as it
/// is until its batch commits (see [`ViewStore::put_typed`]). The partner of [`take`].
///
/// # Errors
/// [`ProjectionError::Serialize`] (not expected); the store's own errors.
pub fn save_owned<T: Serialize + Send + 'static>(
    store: &mut dyn ViewStore,
    table: &'static str,
    key: &str,
    row: T,
) -> Result<(), ProjectionError> {
    store.put_typed(table, key, Box::new(row))
}

/// Serialises and writes one row.
///
/// # Errors
/// [`ProjectionError::Serialize`] (not expected for this crate's rows); the store's own errors.
pub fn save<T: Serialize>(
    store: &mut dyn ViewStore,
    table: &'static str,
    key: &str,
    row: &T,
) -> Result<(), ProjectionError> {
    let value = serde_json::to_value(row).map_err(|error| ProjectionError::Serialize {
        table,
        key: key.to_owned(),
        detail: error.to_string(),
    })?;
    store.put(table, key, value)
}

/// Reads and deserialises every row whose key is `>= from` and, when `to` is given, `< to`,
/// in key order.
///
/// # Errors
/// As [`load`].
pub fn load_range<T: DeserializeOwned>(
    store: &dyn ViewStore,
    table: &'static str,
    from: &str,
    to: Option<&str>,
) -> Result<Vec<(String, T)>, ProjectionError> {
    store
        .scan_range(table, from, to)?
        .into_iter()
        .map(|(key, row)| {
            let row = decode_row(table, &key, row)?;
            Ok((key, row))
        })
        .collect()
}

/// Reads and deserialises every row whose key starts with `prefix`, in key order.
///
/// # Errors
/// As [`load`].
pub fn load_prefix<T: DeserializeOwned>(
    store: &dyn ViewStore,
    table: &'static str,
    prefix: &str,
) -> Result<Vec<(String, T)>, ProjectionError> {
    store
        .scan_prefix(table, prefix)?
        .into_iter()
        .map(|(key, row)| {
            let row = decode_row(table, &key, row)?;
            Ok((key, row))
        })
        .collect()
}

/// One row of `table` as its struct; a row of another shape is [`ProjectionError::Row`].
///
/// # Errors
/// [`ProjectionError::Row`].
pub fn decode_row<T: DeserializeOwned>(
    table: &'static str,
    key: &str,
    row: Value,
) -> Result<T, ProjectionError> {
    serde_json::from_value(row).map_err(|error| ProjectionError::Row {
        table,
        key: key.to_owned(),
        // serde_json's message names the field and the expected type; row values are view
        // data, and the ones that could be personal are never stored (see docs/projections.md).
        detail: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn store_with(keys: &[&str]) -> MemoryViewStore {
        let mut store = MemoryViewStore::new();
        for key in keys {
            store.put("t", key, json!(key)).unwrap();
        }
        store
    }

    #[track_caller]
    fn check_prefix(keys: &[&str], prefix: &str, expected: &[&str]) {
        let store = store_with(keys);
        let got: Vec<String> = store
            .scan_prefix("t", prefix)
            .unwrap()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(got, expected, "prefix {prefix:?}");
    }

    #[track_caller]
    fn check_range(keys: &[&str], from: &str, to: Option<&str>, expected: &[&str]) {
        let store = store_with(keys);
        let got: Vec<String> = store
            .scan_range("t", from, to)
            .unwrap()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(got, expected, "range {from:?}..{to:?}");
    }

    #[test]
    fn prefix_scans_are_ordered_and_exact() {
        let keys = ["V1/C2", "V1/C1", "V10/C1", "V2/C1", "V1"];
        check_prefix(&keys, "V1/", &["V1/C1", "V1/C2"]);
        check_prefix(&keys, "V1", &["V1", "V1/C1", "V1/C2", "V10/C1"]);
        check_prefix(&keys, "", &["V1", "V1/C1", "V1/C2", "V10/C1", "V2/C1"]);
        check_prefix(&keys, "X", &[]);
    }

    #[test]
    fn range_scans_are_half_open() {
        let keys = ["2025-03-01 A", "2025-03-02 A", "2025-03-03 B"];
        check_range(
            &keys,
            "2025-03-01",
            Some("2025-03-03"),
            &["2025-03-01 A", "2025-03-02 A"],
        );
        check_range(&keys, "2025-03-02", None, &["2025-03-02 A", "2025-03-03 B"]);
        check_range(&keys, "2025-03-03", Some("2025-03-01"), &[]);
    }

    #[test]
    fn get_put_delete_and_typed_rows() {
        let mut store = MemoryViewStore::new();
        assert_eq!(store.get("t", "k").unwrap(), None);
        save(&mut store, "t", "k", &vec![1u32, 2]).unwrap();
        assert_eq!(
            load::<Vec<u32>>(&store, "t", "k").unwrap(),
            Some(vec![1, 2])
        );
        let wrong = load::<String>(&store, "t", "k");
        assert!(
            matches!(&wrong, Err(ProjectionError::Row { table: "t", key, .. }) if key == "k"),
            "{wrong:?}"
        );
        store.delete("t", "k").unwrap();
        store.delete("t", "absent").unwrap();
        assert_eq!(store, MemoryViewStore::new());
    }

    #[test]
    fn the_trait_is_object_safe() {
        let mut store = MemoryViewStore::new();
        let dynamic: &mut dyn ViewStore = &mut store;
        dynamic.put("t", "k", json!(1)).unwrap();
        assert_eq!(dynamic.get("t", "k").unwrap(), Some(json!(1)));
    }
}
