//! The `ViewStore` a runner hands to `apply`: cached reads, buffered writes.
//!
//! `apply` reads a row, changes it and writes it back, often the same few rows (an account,
//! its receivables, a facility's day) for many events in a row. The [`Overlay`] answers reads
//! from the batch's own writes, then from a [`RowCache`] kept across batches, and only then
//! from the database; writes stay in memory until the runner commits them together with the
//! checkpoint. That is what makes a batch atomic (all of its rows and its checkpoint, or
//! nothing) and what makes a rebuild fast: a fresh generation starts empty, so while the
//! cache has never dropped a row, a miss is known to be absent without asking the database.
//!
//! The cache is bounded: past its limit it is emptied (simpler than LRU bookkeeping on the
//! hot path, and a miss costs one indexed read) and loses its "complete" knowledge.

use std::cell::RefCell;
use std::collections::HashMap;

use careflow_projections::{ProjectionError, ViewStore};
use serde_json::Value;

use super::{ViewWriter, Write};

type Rows = HashMap<&'static str, HashMap<String, Option<Value>>>;

/// Rows of one generation known to match the database, kept across batches.
#[derive(Debug, Default)]
pub struct RowCache {
    rows: Rows,
    len: usize,
    limit: usize,
    /// Every row of the generation is in `rows` (it was created empty in this process and
    /// nothing was dropped since): a miss means the row does not exist.
    complete: bool,
}

impl RowCache {
    /// An empty cache holding at most `limit` rows. `complete` says the generation is empty.
    pub fn new(limit: usize, complete: bool) -> Self {
        Self {
            rows: HashMap::new(),
            len: 0,
            limit: limit.max(1),
            complete,
        }
    }

    /// Forgets everything (after a failed commit, the database is the only truth).
    pub fn invalidate(&mut self) {
        self.rows.clear();
        self.len = 0;
        self.complete = false;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn get(&self, table: &str, key: &str) -> Option<&Option<Value>> {
        self.rows.get(table).and_then(|rows| rows.get(key))
    }

    fn insert(&mut self, table: &'static str, key: String, row: Option<Value>) {
        if self
            .rows
            .entry(table)
            .or_default()
            .insert(key, row)
            .is_none()
        {
            self.len += 1;
        }
    }

    fn trim(&mut self) {
        if self.len > self.limit {
            self.invalidate();
        }
    }
}

/// One batch's view of a generation: reads through, writes buffered.
pub struct Overlay<'w, 'c> {
    writer: &'w dyn ViewWriter,
    generation: u32,
    cache: RefCell<&'c mut RowCache>,
    dirty: Rows,
}

impl<'w, 'c> Overlay<'w, 'c> {
    pub fn new(writer: &'w dyn ViewWriter, generation: u32, cache: &'c mut RowCache) -> Self {
        Self {
            writer,
            generation,
            cache: RefCell::new(cache),
            dirty: HashMap::new(),
        }
    }

    /// Ends the reading part of the batch, releasing the writer so it can commit.
    pub fn into_pending(self) -> Pending<'c> {
        Pending {
            cache: self.cache.into_inner(),
            dirty: self.dirty,
        }
    }
}

/// A batch's writes waiting for their commit.
pub struct Pending<'c> {
    cache: &'c mut RowCache,
    dirty: Rows,
}

impl Pending<'_> {
    /// Rows written in this batch.
    pub fn len(&self) -> usize {
        self.dirty.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The writes, for `ViewWriter::commit`.
    pub fn writes(&self) -> impl Iterator<Item = Write> + '_ {
        self.dirty.iter().flat_map(|(table, rows)| {
            rows.iter()
                .map(move |(key, row)| (*table, key.clone(), row.clone()))
        })
    }

    /// After the commit: committed rows join the cache; a failed commit empties it, since
    /// the database is then the only truth.
    pub fn settle(self, committed: bool) {
        if !committed {
            self.cache.invalidate();
            return;
        }
        for (table, rows) in self.dirty {
            for (key, row) in rows {
                self.cache.insert(table, key, row);
            }
        }
        self.cache.trim();
    }
}

impl ViewStore for Overlay<'_, '_> {
    fn get(&self, table: &'static str, key: &str) -> Result<Option<Value>, ProjectionError> {
        if let Some(row) = self.dirty.get(table).and_then(|rows| rows.get(key)) {
            return Ok(row.clone());
        }
        let mut cache = self.cache.borrow_mut();
        if let Some(row) = cache.get(table, key) {
            return Ok(row.clone());
        }
        if cache.complete {
            return Ok(None);
        }
        let row = self
            .writer
            .fetch(table, self.generation, key)
            .map_err(|e| ProjectionError::Store(e.to_string().into()))?;
        cache.insert(table, key.to_owned(), row.clone());
        Ok(row)
    }

    fn put(&mut self, table: &'static str, key: &str, row: Value) -> Result<(), ProjectionError> {
        self.dirty
            .entry(table)
            .or_default()
            .insert(key.to_owned(), Some(row));
        Ok(())
    }

    fn delete(&mut self, table: &'static str, key: &str) -> Result<(), ProjectionError> {
        self.dirty
            .entry(table)
            .or_default()
            .insert(key.to_owned(), None);
        Ok(())
    }

    /// Projections only look rows up by key while applying; ranges are for readers, which
    /// read the committed tables (`ViewBackend::read`).
    fn scan_range(
        &self,
        table: &'static str,
        _from: &str,
        _to: Option<&str>,
    ) -> Result<Vec<(String, Value)>, ProjectionError> {
        Err(ProjectionError::Store(
            format!("{table}: range scans are not available while applying events").into(),
        ))
    }
}
