//! Views in SQLite files beside `careflow.db`: `SqliteViews` is one file,
//! `SqliteViewFiles` (what `serve` uses) a file per projection, `views-{projection}.db`.
//!
//! A file of its own, because view writes must not queue behind (or hold up) the event
//! store's single writer; WAL and `synchronous=NORMAL`, because a view is derived data: a
//! power cut can lose the last committed batches, and their checkpoint with them, so the
//! runner simply applies those events again (rows and checkpoint always commit together).
//! Each view table is `(key TEXT PRIMARY KEY, row TEXT) WITHOUT ROWID`: keys compare as bytes
//! (`BINARY` collation), which the projections' key layouts rely on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use careflow_projections::{ProjectionError, ViewStore};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::{
    Catalog, Generation, GenerationStatus, ReadView, ViewBackend, ViewError, ViewWriter, Write,
    not_opened, physical, unavailable,
};
use crate::clock::Clock;
use crate::store::side::{self, Synchronous};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS projection_generations (
    projection TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    status     TEXT    NOT NULL,
    position   INTEGER NOT NULL,
    updated_at TEXT    NOT NULL,
    last_error TEXT,
    PRIMARY KEY (projection, generation)
);
CREATE TABLE IF NOT EXISTS projection_rebuild_requests (
    projection   TEXT PRIMARY KEY,
    requested_at TEXT NOT NULL
);
";

/// Views in one SQLite file; readers share a small pool of connections.
pub struct SqliteViews {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    /// What stamps the catalog's times.
    clock: Clock,
}

/// A connection (the writer's, or one more reader's): the side store's settings plus the
/// views' own 64 MiB page cache and statement cache.
fn connect(path: &Path) -> Result<Connection, ViewError> {
    let conn = side::open_sqlite(path, Synchronous::Normal).map_err(not_opened)?;
    conn.execute_batch("PRAGMA cache_size=-65536;")
        .map_err(unavailable)?;
    // Two generations of every table, each with an upsert, a delete and a fetch.
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

fn sql(error: rusqlite::Error) -> ViewError {
    unavailable(error)
}

fn row_error(error: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Store(error.to_string().into())
}

impl SqliteViews {
    /// Opens (creating) the file and the catalog.
    ///
    /// # Errors
    /// [`ViewError::Unavailable`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ViewError> {
        let path = path.as_ref().to_path_buf();
        let conn = connect(&path)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        Ok(Self {
            path,
            readers: Mutex::new(vec![conn]),
            clock: Clock::system(),
        })
    }

    /// The same views with the catalog's times stamped by `clock` (the system's by default).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ViewError>,
    ) -> Result<T, ViewError> {
        let pooled = self
            .readers
            .lock()
            .map_err(|_| unavailable("view pool poisoned"))?
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => connect(&self.path)?,
        };
        let result = f(&conn);
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < 8
        {
            pool.push(conn);
        }
        result
    }
}

fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).map_or_else(|_| DateTime::<Utc>::MIN_UTC, |t| t.to_utc())
}

fn read_catalog(conn: &Connection, projection: &str) -> Result<Catalog, ViewError> {
    let mut catalog = Catalog::default();
    let mut stmt = conn
        .prepare_cached(
            "SELECT generation, status, position, updated_at, last_error
               FROM projection_generations WHERE projection = ?1",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map(params![projection], |row| {
            Ok((
                row.get::<_, u32>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, Option<String>>(4)?,
            ))
        })
        .map_err(sql)?;
    for row in rows {
        let (generation, status, position, updated_at, last_error) = row.map_err(sql)?;
        let Some(status) = GenerationStatus::parse(&status) else {
            continue;
        };
        let entry = Generation {
            generation,
            status,
            position: u64::try_from(position).unwrap_or(0),
            updated_at: parse_time(&updated_at),
            last_error,
        };
        match status {
            GenerationStatus::Live => catalog.live = Some(entry),
            GenerationStatus::Building => catalog.building = Some(entry),
        }
    }
    catalog.rebuild_requested = conn
        .prepare_cached("SELECT 1 FROM projection_rebuild_requests WHERE projection = ?1")
        .map_err(sql)?
        .query_row(params![projection], |_| Ok(()))
        .optional()
        .map_err(sql)?
        .is_some();
    Ok(catalog)
}

fn fetch_text(
    conn: &Connection,
    table: &str,
    generation: u32,
    key: &str,
) -> Result<Option<String>, rusqlite::Error> {
    conn.prepare_cached(&format!(
        "SELECT row FROM {} WHERE key = ?1",
        physical(table, generation)
    ))?
    .query_row(params![key], |row| row.get(0))
    .optional()
}

/// The live generation's rows, read inside the reader's transaction.
struct SnapshotRows<'a> {
    conn: &'a Connection,
    generation: u32,
}

impl ViewStore for SnapshotRows<'_> {
    fn get(&self, table: &'static str, key: &str) -> Result<Option<Value>, ProjectionError> {
        fetch_text(self.conn, table, self.generation, key)
            .map_err(row_error)?
            .map(|text| serde_json::from_str(&text).map_err(row_error))
            .transpose()
    }

    fn put(&mut self, table: &'static str, _: &str, _: Value) -> Result<(), ProjectionError> {
        Err(ProjectionError::Store(
            format!("{table} is read-only here").into(),
        ))
    }

    fn delete(&mut self, table: &'static str, _: &str) -> Result<(), ProjectionError> {
        Err(ProjectionError::Store(
            format!("{table} is read-only here").into(),
        ))
    }

    fn scan_range(
        &self,
        table: &'static str,
        from: &str,
        to: Option<&str>,
    ) -> Result<Vec<(String, Value)>, ProjectionError> {
        let name = physical(table, self.generation);
        let decode = |row: &rusqlite::Row<'_>| -> rusqlite::Result<(String, String)> {
            Ok((row.get(0)?, row.get(1)?))
        };
        let rows: Vec<(String, String)> = match to {
            Some(to) => self
                .conn
                .prepare_cached(&format!(
                    "SELECT key, row FROM {name} WHERE key >= ?1 AND key < ?2 ORDER BY key"
                ))
                .and_then(|mut s| s.query_map(params![from, to], decode)?.collect())
                .map_err(row_error)?,
            None => self
                .conn
                .prepare_cached(&format!(
                    "SELECT key, row FROM {name} WHERE key >= ?1 ORDER BY key"
                ))
                .and_then(|mut s| s.query_map(params![from], decode)?.collect())
                .map_err(row_error)?,
        };
        rows.into_iter()
            .map(|(key, text)| Ok((key, serde_json::from_str(&text).map_err(row_error)?)))
            .collect()
    }
}

impl ViewBackend for SqliteViews {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn read(
        &self,
        projection: &'static str,
        _tables: &'static [&'static str],
        f: &mut dyn FnMut(ReadView<'_>) -> Result<(), ViewError>,
    ) -> Result<(), ViewError> {
        self.with_reader(|conn| {
            // One read transaction: the catalog row and the rows come from one snapshot, so
            // the position answered is exactly what the rows reflect, and a swap committed
            // meanwhile is simply not seen.
            conn.execute_batch("BEGIN").map_err(sql)?;
            let result = (|| {
                let live = read_catalog(conn, projection)?
                    .live
                    .ok_or_else(|| ViewError::NotBuilt(projection.to_owned()))?;
                let rows = SnapshotRows {
                    conn,
                    generation: live.generation,
                };
                f(ReadView {
                    rows: &rows,
                    position: live.position,
                })
            })();
            conn.execute_batch("COMMIT").map_err(sql)?;
            result
        })
    }

    fn catalog(&self, projection: &str) -> Result<Catalog, ViewError> {
        self.with_reader(|conn| read_catalog(conn, projection))
    }

    fn request_rebuild(&self, projection: &str) -> Result<bool, ViewError> {
        self.with_reader(|conn| {
            let catalog = read_catalog(conn, projection)?;
            if catalog.rebuild_requested || catalog.building.is_some() {
                return Ok(false);
            }
            conn.execute(
                "INSERT OR IGNORE INTO projection_rebuild_requests (projection, requested_at)
                 VALUES (?1, ?2)",
                params![projection, self.clock.now().to_rfc3339()],
            )
            .map_err(sql)?;
            Ok(true)
        })
    }

    fn writer(&self, projection: &'static str) -> Result<Box<dyn ViewWriter>, ViewError> {
        // The event store's lock file already makes this process the only writer.
        Ok(Box::new(SqliteWriter {
            conn: connect(&self.path)?,
            projection,
            clock: self.clock.clone(),
        }))
    }
}

/// A projection's writer: a connection of its own.
pub struct SqliteWriter {
    conn: Connection,
    projection: &'static str,
    clock: Clock,
}

impl SqliteWriter {
    fn in_transaction<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, ViewError> {
        // IMMEDIATE: take the write lock up front (waiting on the busy timeout), rather than
        // failing at once on an upgrade from a read lock that another writer blocks.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql)?;
        let value = f(&tx).map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(value)
    }
}

impl ViewWriter for SqliteWriter {
    fn catalog(&mut self) -> Result<Catalog, ViewError> {
        read_catalog(&self.conn, self.projection)
    }

    fn create_generation(
        &mut self,
        tables: &[&'static str],
        generation: u32,
        status: GenerationStatus,
    ) -> Result<(), ViewError> {
        let projection = self.projection;
        let now = self.clock.now().to_rfc3339();
        self.in_transaction(|tx| {
            for table in tables {
                let name = physical(table, generation);
                tx.execute_batch(&format!(
                    "DROP TABLE IF EXISTS {name};
                     CREATE TABLE {name} (key TEXT PRIMARY KEY, row TEXT NOT NULL) WITHOUT ROWID;"
                ))?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO projection_generations
                     (projection, generation, status, position, updated_at, last_error)
                 VALUES (?1, ?2, ?3, 0, ?4, NULL)",
                params![projection, generation, status.as_str(), now],
            )?;
            tx.execute(
                "DELETE FROM projection_rebuild_requests WHERE projection = ?1",
                params![projection],
            )?;
            Ok(())
        })
    }

    fn fetch(
        &self,
        table: &'static str,
        generation: u32,
        key: &str,
    ) -> Result<Option<String>, ViewError> {
        fetch_text(&self.conn, table, generation, key).map_err(sql)
    }

    fn commit(
        &mut self,
        generation: u32,
        writes: &mut dyn Iterator<Item = Write<'_>>,
        position: u64,
    ) -> Result<(), ViewError> {
        let projection = self.projection;
        let now = self.clock.now().to_rfc3339();
        self.in_transaction(|tx| {
            for (table, key, row) in writes {
                let name = physical(table, generation);
                match row {
                    Some(row) => {
                        tx.prepare_cached(&format!(
                            "INSERT INTO {name} (key, row) VALUES (?1, ?2)
                             ON CONFLICT (key) DO UPDATE SET row = excluded.row"
                        ))?
                        .execute(params![key, row])?;
                    }
                    None => {
                        tx.prepare_cached(&format!("DELETE FROM {name} WHERE key = ?1"))?
                            .execute(params![key])?;
                    }
                }
            }
            tx.prepare_cached(
                "UPDATE projection_generations
                    SET position = ?1, updated_at = ?2, last_error = NULL
                  WHERE projection = ?3 AND generation = ?4",
            )?
            .execute(params![
                i64::try_from(position).unwrap_or(i64::MAX),
                now,
                projection,
                generation
            ])?;
            Ok(())
        })
    }

    fn promote(
        &mut self,
        tables: &[&'static str],
        building: u32,
        retired: Option<u32>,
    ) -> Result<(), ViewError> {
        let projection = self.projection;
        self.in_transaction(|tx| {
            if let Some(retired) = retired {
                tx.execute(
                    "DELETE FROM projection_generations WHERE projection = ?1 AND generation = ?2",
                    params![projection, retired],
                )?;
            }
            tx.execute(
                "UPDATE projection_generations SET status = 'live'
                  WHERE projection = ?1 AND generation = ?2",
                params![projection, building],
            )?;
            Ok(())
        })?;
        if let Some(retired) = retired {
            // Statements cached for the retired tables would pin them; forget them first.
            self.conn.flush_prepared_statement_cache();
            for table in tables {
                self.conn
                    .execute_batch(&format!(
                        "DROP TABLE IF EXISTS {}",
                        physical(table, retired)
                    ))
                    .map_err(sql)?;
            }
        }
        Ok(())
    }

    fn set_error(&mut self, generation: u32, error: Option<&str>) -> Result<(), ViewError> {
        self.conn
            .execute(
                "UPDATE projection_generations SET last_error = ?1
                  WHERE projection = ?2 AND generation = ?3",
                params![error, self.projection, generation],
            )
            .map_err(sql)?;
        Ok(())
    }
}

/// The file of one projection's views in a data dir.
pub fn view_file(projection: &str) -> String {
    format!("{VIEW_FILE_PREFIX}{projection}.db")
}

/// What every view file's name starts with (`backup` finds them by it).
pub const VIEW_FILE_PREFIX: &str = "views-";

/// The views of a data dir: one SQLite file per projection, `views-{projection}.db`.
///
/// Why not one file: SQLite empties a connection's page cache whenever another connection has
/// committed to the same file, and the three projection writers commit all the time. In one
/// `views.db`, each writer re-read its pages from the kernel after every commit of the others
/// (a quarter of the server's CPU under `bench http`, docs/performance.md). A file each keeps
/// each writer's cache its own. A view is derived data: an older data dir's `views.db` is not
/// read any more, and each projection rebuilds its file from the log on first start.
pub struct SqliteViewFiles {
    dir: PathBuf,
    files: Mutex<HashMap<String, Arc<SqliteViews>>>,
    clock: Clock,
}

impl SqliteViewFiles {
    pub fn open(dir: impl AsRef<Path>) -> Self {
        Self {
            dir: dir.as_ref().to_path_buf(),
            files: Mutex::new(HashMap::new()),
            clock: Clock::system(),
        }
    }

    /// The same views with the catalogs' times stamped by `clock` (the system's by default).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The file of `projection`, opened (and created) on first use.
    fn file(&self, projection: &str) -> Result<Arc<SqliteViews>, ViewError> {
        if projection.is_empty()
            || !projection
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(ViewError::UnknownProjection(projection.to_owned()));
        }
        let mut files = self
            .files
            .lock()
            .map_err(|_| ViewError::Unavailable("the view files' lock is poisoned".into()))?;
        if let Some(file) = files.get(projection) {
            return Ok(Arc::clone(file));
        }
        let file = Arc::new(
            SqliteViews::open(self.dir.join(view_file(projection)))?.with_clock(self.clock.clone()),
        );
        files.insert(projection.to_owned(), Arc::clone(&file));
        Ok(file)
    }
}

impl ViewBackend for SqliteViewFiles {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn read(
        &self,
        projection: &'static str,
        tables: &'static [&'static str],
        f: &mut dyn FnMut(ReadView<'_>) -> Result<(), ViewError>,
    ) -> Result<(), ViewError> {
        self.file(projection)?.read(projection, tables, f)
    }

    fn catalog(&self, projection: &str) -> Result<Catalog, ViewError> {
        self.file(projection)?.catalog(projection)
    }

    fn request_rebuild(&self, projection: &str) -> Result<bool, ViewError> {
        self.file(projection)?.request_rebuild(projection)
    }

    fn writer(&self, projection: &'static str) -> Result<Box<dyn ViewWriter>, ViewError> {
        self.file(projection)?.writer(projection)
    }
}
