//! The `ViewStore` a runner hands to `apply`: cached reads, buffered writes.
//!
//! `apply` reads a row, changes it and writes it back, often the same few rows (an account,
//! its open items, a facility's day) for many events in a row. The [`Overlay`] answers reads
//! from the batch's own writes, then from a [`RowCache`] kept across batches, and only then
//! from the database; writes stay in memory until the runner commits them together with the
//! checkpoint. That is what makes a batch atomic (all of its rows and its checkpoint, or
//! nothing) and what makes a rebuild fast:
//!
//! - `take` hands a cached row over instead of copying it (the projection writes it back);
//! - only rows that were *read* in a batch stay cached after it: rows that are written once
//!   and never read again (a charge, a claim line) would only crowd the hot ones out;
//! - a generation created empty by this runner is *complete*: a hash of every key written
//!   to the tables that are ever read is kept, so a miss on a key never written is known to
//!   be absent without asking the database (most of a rebuild's reads are of rows that do
//!   not exist yet). Tables that are only written (charges, claim lines: most of the rows)
//!   are not tracked, so the set grows with accounts and days, not with events.
//!
//! The cache is bounded: past its limit its rows are dropped (simpler than LRU bookkeeping on
//! the hot path; a miss costs one indexed read), while the key hashes stay.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use careflow_projections::{ProjectionError, Taken, TypedRow, ViewStore};
use serde_json::Value;

use super::{ViewWriter, Write};

/// Rows as their stored JSON text (`None`: known absent).
type Texts = HashMap<&'static str, HashMap<String, Option<String>>>;

/// A row written in this batch: JSON, or a typed row serialised only when the batch commits
/// (the hot rows are rewritten once per event, so that is once per batch instead).
enum Cell {
    Json(Option<Value>),
    Typed(Box<dyn TypedRow>),
}

type Cells = HashMap<&'static str, HashMap<String, Cell>>;

fn serialize_error(table: &'static str, key: &str, error: &serde_json::Error) -> ProjectionError {
    ProjectionError::Serialize {
        table,
        key: key.to_owned(),
        detail: error.to_string(),
    }
}

fn parse(table: &'static str, key: &str, text: &str) -> Result<Value, ProjectionError> {
    serde_json::from_str(text).map_err(|error| ProjectionError::Row {
        table,
        key: key.to_owned(),
        detail: error.to_string(),
    })
}

/// Keys hashed this way; a collision only costs a database read.
fn key_hash(table: &str, key: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    table.hash(&mut hasher);
    key.hash(&mut hasher);
    hasher.finish()
}

/// Past this many keys a complete generation stops tracking them (about 16 bytes each).
const MAX_TRACKED_KEYS: usize = 50_000_000;

/// Rows of one generation known to match the database, kept across batches as their JSON
/// text: compact (a parsed `Value` of an account's open items is several times larger), and
/// bounded by bytes, which is what memory is.
#[derive(Debug, Default)]
pub struct RowCache {
    rows: Texts,
    bytes: usize,
    limit_bytes: usize,
    /// `Some` while the generation is complete: the hashes of every key ever written to a
    /// table in `read_tables`. A key of such a table whose hash is absent does not exist.
    written: Option<HashSet<u64>>,
    /// Tables read so far; only their writes are tracked in `written`.
    read_tables: HashSet<&'static str>,
    /// Tables written before their first read: their misses must ask the database.
    untracked_tables: HashSet<&'static str>,
}

impl RowCache {
    /// An empty cache of at most `limit_bytes` of row text. `complete` says the generation is
    /// empty.
    pub fn new(limit_bytes: usize, complete: bool) -> Self {
        Self {
            rows: HashMap::new(),
            bytes: 0,
            limit_bytes: limit_bytes.max(1),
            written: complete.then(HashSet::new),
            read_tables: HashSet::new(),
            untracked_tables: HashSet::new(),
        }
    }

    /// Forgets everything (after a failed commit, the database is the only truth).
    pub fn invalidate(&mut self) {
        self.rows.clear();
        self.bytes = 0;
        self.written = None;
    }

    /// Bytes of row text held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn cost(key: &str, row: Option<&String>) -> usize {
        key.len() + row.map_or(0, String::len) + 64
    }

    fn get(&self, table: &str, key: &str) -> Option<&Option<String>> {
        self.rows.get(table).and_then(|rows| rows.get(key))
    }

    fn remove(&mut self, table: &str, key: &str) -> Option<Option<String>> {
        let row = self.rows.get_mut(table)?.remove(key)?;
        self.bytes -= Self::cost(key, row.as_ref());
        Some(row)
    }

    fn insert(&mut self, table: &'static str, key: String, row: Option<String>) {
        let added = Self::cost(&key, row.as_ref());
        if let Some(old) = self.rows.entry(table).or_default().insert(key.clone(), row) {
            self.bytes -= Self::cost(&key, old.as_ref());
        }
        self.bytes += added;
    }

    /// Known absent without asking the database. Marks `table` as read.
    fn surely_absent(&mut self, table: &'static str, key: &str) -> bool {
        self.read_tables.insert(table);
        !self.untracked_tables.contains(table)
            && self
                .written
                .as_ref()
                .is_some_and(|written| !written.contains(&key_hash(table, key)))
    }

    fn note_written(&mut self, table: &'static str, key: &str) {
        if !self.read_tables.contains(table) {
            self.untracked_tables.insert(table);
            return;
        }
        if let Some(written) = &mut self.written {
            written.insert(key_hash(table, key));
            if written.len() > MAX_TRACKED_KEYS {
                self.written = None;
            }
        }
    }

    fn trim(&mut self) {
        if self.bytes > self.limit_bytes {
            self.rows.clear();
            self.bytes = 0;
        }
    }
}

/// One batch's view of a generation: reads through, writes buffered.
pub struct Overlay<'w, 'c> {
    writer: &'w dyn ViewWriter,
    generation: u32,
    cache: RefCell<&'c mut RowCache>,
    dirty: Cells,
    /// Keys read in this batch: their new values stay cached after the commit.
    read: RefCell<HashMap<&'static str, HashSet<String>>>,
}

impl<'w, 'c> Overlay<'w, 'c> {
    pub fn new(writer: &'w dyn ViewWriter, generation: u32, cache: &'c mut RowCache) -> Self {
        Self {
            writer,
            generation,
            cache: RefCell::new(cache),
            dirty: HashMap::new(),
            read: RefCell::new(HashMap::new()),
        }
    }

    /// Ends the reading part of the batch, releasing the writer so it can commit: typed rows
    /// are serialised here, once each.
    ///
    /// # Errors
    /// [`ProjectionError::Serialize`] (not expected for the projections' rows).
    pub fn into_pending(self) -> Result<Pending<'c>, ProjectionError> {
        let mut dirty: Texts = HashMap::with_capacity(self.dirty.len());
        for (table, cells) in self.dirty {
            let rows = dirty.entry(table).or_default();
            rows.reserve(cells.len());
            for (key, cell) in cells {
                let row = match cell {
                    Cell::Json(row) => row.map(|row| row.to_string()),
                    Cell::Typed(row) => Some(
                        row.to_text()
                            .map_err(|e| serialize_error(table, &key, &e))?,
                    ),
                };
                rows.insert(key, row);
            }
        }
        Ok(Pending {
            cache: self.cache.into_inner(),
            dirty,
            read: self.read.into_inner(),
        })
    }

    /// Drops the batch's writes: the cache is emptied, the database stays the truth.
    pub fn abandon(self) {
        self.cache.into_inner().invalidate();
    }

    fn write(&mut self, table: &'static str, key: &str, cell: Cell) {
        let rows = self.dirty.entry(table).or_default();
        match rows.get_mut(key) {
            Some(slot) => *slot = cell,
            None => {
                rows.insert(key.to_owned(), cell);
            }
        }
    }

    fn note_read(&self, table: &'static str, key: &str) {
        let mut read = self.read.borrow_mut();
        let keys = read.entry(table).or_default();
        if !keys.contains(key) {
            keys.insert(key.to_owned());
        }
    }

    /// A row not in this batch's writes nor in the cache, as its text.
    fn miss(&self, table: &'static str, key: &str) -> Result<Option<String>, ProjectionError> {
        if self.cache.borrow_mut().surely_absent(table, key) {
            return Ok(None);
        }
        self.writer
            .fetch(table, self.generation, key)
            .map_err(|e| ProjectionError::Store(e.to_string().into()))
    }
}

/// A batch's writes waiting for their commit.
pub struct Pending<'c> {
    cache: &'c mut RowCache,
    dirty: Texts,
    read: HashMap<&'static str, HashSet<String>>,
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
    pub fn writes(&self) -> impl Iterator<Item = Write<'_>> + '_ {
        self.dirty.iter().flat_map(|(table, rows)| {
            rows.iter()
                .map(move |(key, row)| (*table, key.as_str(), row.as_deref()))
        })
    }

    /// After the commit: the batch's keys are noted as written, and the rows it read stay
    /// cached with their new values. A failed commit empties the cache, since the database
    /// is then the only truth.
    pub fn settle(self, committed: bool) {
        if !committed {
            self.cache.invalidate();
            return;
        }
        for (table, rows) in self.dirty {
            let read = self.read.get(table);
            for (key, row) in rows {
                self.cache.note_written(table, &key);
                if read.is_some_and(|keys| keys.contains(&key)) {
                    self.cache.insert(table, key, row);
                } else {
                    // A stale cached copy must not outlive this write.
                    self.cache.remove(table, &key);
                }
            }
        }
        self.cache.trim();
    }
}

impl ViewStore for Overlay<'_, '_> {
    fn get(&self, table: &'static str, key: &str) -> Result<Option<Value>, ProjectionError> {
        match self.dirty.get(table).and_then(|rows| rows.get(key)) {
            Some(Cell::Json(row)) => return Ok(row.clone()),
            Some(Cell::Typed(row)) => {
                return row
                    .to_json()
                    .map(Some)
                    .map_err(|e| serialize_error(table, key, &e));
            }
            None => {}
        }
        self.note_read(table, key);
        if let Some(row) = self.cache.borrow().get(table, key) {
            return row
                .as_deref()
                .map(|text| parse(table, key, text))
                .transpose();
        }
        let row = self.miss(table, key)?;
        let value = row
            .as_deref()
            .map(|text| parse(table, key, text))
            .transpose()?;
        self.cache.borrow_mut().insert(table, key.to_owned(), row);
        Ok(value)
    }

    /// Hands the row over without a copy: from this batch's writes, else from the cache,
    /// else from the database. The projection writes it back before its `apply` returns.
    fn take(&mut self, table: &'static str, key: &str) -> Result<Option<Taken>, ProjectionError> {
        match self.dirty.get_mut(table).and_then(|rows| rows.remove(key)) {
            Some(Cell::Json(row)) => return Ok(row.map(Taken::Json)),
            Some(Cell::Typed(row)) => return Ok(Some(Taken::Typed(row))),
            None => {}
        }
        self.note_read(table, key);
        let cached = self.cache.borrow_mut().remove(table, key);
        let text = match cached {
            Some(row) => row,
            None => self.miss(table, key)?,
        };
        text.map(|text| parse(table, key, &text).map(Taken::Json))
            .transpose()
    }

    fn put_typed(
        &mut self,
        table: &'static str,
        key: &str,
        row: Box<dyn TypedRow>,
    ) -> Result<(), ProjectionError> {
        self.write(table, key, Cell::Typed(row));
        Ok(())
    }

    fn put(&mut self, table: &'static str, key: &str, row: Value) -> Result<(), ProjectionError> {
        self.write(table, key, Cell::Json(Some(row)));
        Ok(())
    }

    fn delete(&mut self, table: &'static str, key: &str) -> Result<(), ProjectionError> {
        self.write(table, key, Cell::Json(None));
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
