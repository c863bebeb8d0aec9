//! The embedded backend: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! **Group commit.** One OS thread owns the only writing connection. It blocks for the first
//! queued append, drains every other append already waiting (up to `max_batch`), writes them
//! all in one transaction and commits once, so a single fsync acknowledges many commands. An
//! append that breaks its expectation is answered with a conflict without disturbing the rest
//! of its batch; if the batch itself fails (an I/O error), every append in it is retried in a
//! transaction of its own, so one bad append cannot sink its neighbours.
//!
//! Because the writer is the only writer, positions are assigned in commit order (gap-free,
//! never visible out of order) and the head of each recently written stream can be cached in
//! memory. A lock file beside the database keeps a second careflow process from writing the
//! same file; readers (the HTTP reads, `careflow replay`, `audit verify`) use their own
//! connections and may run while the server writes.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use careflow_aggregates::{EventHash, EventMetadata, RecordedEvent, StreamId};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use super::{
    AppendRequest, Appended, Direction, EventStore, Outcome, PreparedAppend, StoreError,
    StreamHead, now,
};
use crate::metrics;

/// Tunables of the SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The database file (`./data/careflow.db` by default).
    pub path: PathBuf,
    /// Most appends in one transaction.
    pub max_batch: usize,
    /// Appends that may wait for the writer before callers feel back-pressure.
    pub queue_capacity: usize,
}

impl SqliteConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_batch: 4096,
            queue_capacity: 65_536,
        }
    }
}

/// Heads cached by the writer; cleared wholesale when it grows past this (a miss costs one
/// indexed read, so a simple bound beats LRU bookkeeping on the hot path).
const HEAD_CACHE_LIMIT: usize = 200_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY,
    stream_id      TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    event_id       BLOB    NOT NULL UNIQUE,
    command_id     BLOB    NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    data           TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    prev_hash      BLOB    NOT NULL,
    hash           BLOB    NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE TRIGGER IF NOT EXISTS events_are_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_are_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO store_meta (key, value) VALUES ('schema_version', '1');
";

const SELECT_EVENT: &str = "SELECT position, stream_id, version, event_id, event_type, \
     schema_version, data, metadata, prev_hash, hash FROM events";

struct WriteJob {
    prepared: PreparedAppend,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

/// The SQLite event store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    path: PathBuf,
    queue: Mutex<Option<mpsc::Sender<WriteJob>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    head: watch::Receiver<u64>,
    /// Held while this handle may write; released by `close`.
    lock: Mutex<Option<File>>,
}

impl SqliteStore {
    /// Opens (creating when absent) the database for writing and starts the writer thread.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the file cannot be opened, the schema cannot be
    /// created, or another careflow process already writes this database.
    pub fn open(config: SqliteConfig) -> Result<Self, StoreError> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("creating {}: {e}", dir.display())))?;
        }
        let lock = acquire_lock(&config.path)?;
        let conn = open_connection(&config.path, false)?;
        conn.execute_batch(SCHEMA)
            .map_err(StoreError::unavailable)?;
        let head_position: u64 = conn
            .query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(StoreError::unavailable)? as u64;
        let (head_tx, head_rx) = watch::channel(head_position);
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let writer = Writer {
            conn,
            next_position: head_position + 1,
            heads: HashMap::new(),
            head_tx,
            max_batch: config.max_batch.max(1),
        };
        let handle = std::thread::Builder::new()
            .name("careflow-sqlite-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(StoreError::unavailable)?;
        Ok(Self {
            path: config.path,
            queue: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            readers: Arc::new(Mutex::new(Vec::new())),
            head: head_rx,
            lock: Mutex::new(Some(lock)),
        })
    }

    /// Opens an existing database for reading only (no writer, no lock): what `replay` and
    /// `audit verify` use, also while a server runs on the same file.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the file is missing or unreadable.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = open_connection(&path, true)?;
        let head_position: u64 = conn
            .query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(StoreError::unavailable)? as u64;
        let (_tx, rx) = watch::channel(head_position);
        Ok(Self {
            path,
            queue: Mutex::new(None),
            writer: Mutex::new(None),
            readers: Arc::new(Mutex::new(vec![conn])),
            head: rx,
            lock: Mutex::new(None),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with_reader<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = Arc::clone(&self.readers);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = pool.lock().map_err(|_| poisoned())?.pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&path, true)?,
            };
            let result = f(&conn);
            pool.lock().map_err(|_| poisoned())?.push(conn);
            result
        })
        .await
        .map_err(StoreError::unavailable)?
    }
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("reader pool lock poisoned".into())
}

fn acquire_lock(db: &Path) -> Result<File, StoreError> {
    let lock_path = db.with_extension("lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Unavailable(format!("opening {}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "{} is in use by another careflow process",
            db.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Unavailable(format!(
            "locking {}: {e}",
            lock_path.display()
        ))),
    }
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Unavailable(format!("opening {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(StoreError::unavailable)?;
    // WAL lets readers run beside the writer; FULL syncs the WAL on every commit, which is
    // what makes an acknowledged append durable across power loss.
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(StoreError::unavailable)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "journal_mode is {mode}, expected wal"
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous=FULL; PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY;",
    )
    .map_err(StoreError::unavailable)?;
    if read_only {
        conn.execute_batch("PRAGMA query_only=ON;")
            .map_err(StoreError::unavailable)?;
    }
    Ok(conn)
}

/// The writer thread's state: the only connection that writes.
struct Writer {
    conn: Connection,
    next_position: u64,
    heads: HashMap<StreamId, StreamHead>,
    head_tx: watch::Sender<u64>,
    max_batch: usize,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<WriteJob>) {
        let mut jobs = Vec::with_capacity(self.max_batch);
        while let Some(job) = rx.blocking_recv() {
            jobs.push(job);
            while jobs.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut jobs);
        }
        tracing::info!(backend = "sqlite", "event store writer stopped");
    }

    fn commit_batch(&mut self, jobs: &mut Vec<WriteJob>) {
        let started = Instant::now();
        let size = jobs.len();
        let outcomes = match self.write_batch(jobs) {
            Ok(outcomes) => outcomes,
            Err(failure) => {
                if let BatchFailure::Store(error) = &failure {
                    tracing::warn!(%error, size, "group commit failed; retrying its appends one by one");
                }
                self.forget_cached_state();
                jobs.iter().map(|job| self.write_alone(job)).collect()
            }
        };
        let _ = self.head_tx.send(self.next_position - 1);
        metrics::store_commit("sqlite", size, started.elapsed());
        super::answer(jobs.drain(..).map(|j| j.reply), outcomes);
    }

    /// Writes one append in a transaction of its own: the slow path after a batch failed.
    fn write_alone(&mut self, job: &WriteJob) -> Outcome {
        match self.write_batch(std::slice::from_ref(job)) {
            Ok(mut outcomes) => outcomes
                .pop()
                .unwrap_or(Outcome::Done(Err(StoreError::EmptyAppend))),
            Err(BatchFailure::Repeat) => {
                // The command's first event id exists: a retry of a committed command.
                let found = find_command_in(&self.conn, job.prepared.command_id);
                Outcome::Done(found.and_then(|first| {
                    first.ok_or_else(|| {
                        StoreError::Unavailable("event id collides with another command".into())
                    })
                }))
            }
            Err(BatchFailure::Store(error)) => {
                self.forget_cached_state();
                Outcome::Done(Err(error))
            }
        }
    }

    /// Re-reads what the cache and the position counter assume after a failed transaction.
    fn forget_cached_state(&mut self) {
        self.heads.clear();
        if let Ok(max) =
            self.conn
                .query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
                    r.get::<_, i64>(0)
                })
        {
            self.next_position = max as u64 + 1;
        }
    }

    /// Writes every job of the batch in one transaction. `Err` means nothing was committed.
    fn write_batch(&mut self, jobs: &[WriteJob]) -> Result<Vec<Outcome>, BatchFailure> {
        if self.heads.len() > HEAD_CACHE_LIMIT {
            self.heads.clear();
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::unavailable)?;
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut touched: HashMap<StreamId, StreamHead> = HashMap::new();
        let mut seen: HashMap<Uuid, usize> = HashMap::new();
        let mut next_position = self.next_position;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (position, stream_id, version, event_id, command_id, \
                     event_type, schema_version, data, metadata, prev_hash, hash) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(StoreError::unavailable)?;
            for (index, job) in jobs.iter().enumerate() {
                let p = &job.prepared;
                if let Some(&earlier) = seen.get(&p.command_id) {
                    outcomes.push(Outcome::SameAs(earlier));
                    continue;
                }
                seen.insert(p.command_id, index);
                let head = match touched
                    .get(&p.request_stream)
                    .or(self.heads.get(&p.request_stream))
                {
                    Some(head) => *head,
                    None => read_head(&tx, &p.request_stream)?,
                };
                let events = match p.seal(head, next_position) {
                    Ok(events) => events,
                    Err(conflict) => {
                        // A retried command arrives with a now-stale expectation: answer it
                        // with its first result rather than a conflict.
                        let outcome = match find_command_in(&tx, p.command_id)? {
                            Some(first) => Ok(first),
                            None => Err(conflict),
                        };
                        outcomes.push(Outcome::Done(outcome));
                        continue;
                    }
                };
                // A unique violation means an event id exists already: the command is a repeat
                // that slipped past the version check (ExpectedVersion::Any). The transaction
                // has partly written this job, so the batch is abandoned and retried job by job.
                insert_events(&mut insert, &events).map_err(|e| {
                    if is_unique_violation(&e) {
                        BatchFailure::Repeat
                    } else {
                        BatchFailure::Store(StoreError::unavailable(e))
                    }
                })?;
                next_position += events.len() as u64;
                if let Some(last) = events.last() {
                    touched.insert(
                        p.request_stream.clone(),
                        StreamHead {
                            version: last.version,
                            hash: last.hash,
                        },
                    );
                }
                outcomes.push(Outcome::Written(events));
            }
        }
        tx.commit().map_err(StoreError::unavailable)?;
        self.next_position = next_position;
        self.heads.extend(touched);
        Ok(outcomes)
    }
}

/// Why a batch transaction was abandoned (nothing of it is committed).
enum BatchFailure {
    /// An insert hit an existing event id: some job repeats a committed command.
    Repeat,
    Store(StoreError),
}

impl From<StoreError> for BatchFailure {
    fn from(error: StoreError) -> Self {
        BatchFailure::Store(error)
    }
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::ConstraintViolation)
}

fn insert_events(
    insert: &mut rusqlite::CachedStatement<'_>,
    events: &[RecordedEvent],
) -> Result<(), rusqlite::Error> {
    for e in events {
        let data = serde_json::to_string(&e.data)
            .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))?;
        let metadata = serde_json::to_string(&e.metadata)
            .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))?;
        insert.execute(params![
            e.position as i64,
            e.stream_id.as_str(),
            e.version as i64,
            e.event_id.as_bytes().as_slice(),
            e.metadata.command_id.as_bytes().as_slice(),
            e.event_type,
            e.schema_version,
            data,
            metadata,
            e.prev_hash.0.as_slice(),
            e.hash.0.as_slice(),
        ])?;
    }
    Ok(())
}

fn read_head(conn: &Connection, stream: &StreamId) -> Result<StreamHead, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT version, hash FROM events WHERE stream_id = ?1 ORDER BY version DESC LIMIT 1",
        )
        .map_err(StoreError::unavailable)?;
    let head = stmt
        .query_row([stream.as_str()], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .optional()
        .map_err(StoreError::unavailable)?;
    match head {
        None => Ok(StreamHead::default()),
        Some((version, hash)) => Ok(StreamHead {
            version: version as u64,
            hash: EventHash::from_slice(&hash).map_err(|reason| StoreError::Corrupt {
                position: 0,
                reason,
            })?,
        }),
    }
}

fn find_command_in(conn: &Connection, command_id: Uuid) -> Result<Option<Appended>, StoreError> {
    let first_event = careflow_aggregates::event_id_for(command_id, 0);
    let mut stmt = conn
        .prepare_cached(&format!(
            "{SELECT_EVENT} WHERE stream_id = (SELECT stream_id FROM events WHERE event_id = ?1) \
             AND version >= (SELECT version FROM events WHERE event_id = ?1) \
             AND command_id = ?2 ORDER BY version"
        ))
        .map_err(StoreError::unavailable)?;
    let events = collect_events(stmt.query(params![
        first_event.as_bytes().as_slice(),
        command_id.as_bytes().as_slice()
    ]))?;
    Ok(Appended::from_events(events, true))
}

fn collect_events(
    rows: rusqlite::Result<rusqlite::Rows<'_>>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut rows = rows.map_err(StoreError::unavailable)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(StoreError::unavailable)? {
        out.push(decode_row(row)?);
    }
    Ok(out)
}

fn decode_row(row: &rusqlite::Row<'_>) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.get(0).map_err(StoreError::unavailable)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        position: position as u64,
        reason,
    };
    let stream: String = row.get(1).map_err(|e| corrupt(e.to_string()))?;
    let version: i64 = row.get(2).map_err(|e| corrupt(e.to_string()))?;
    let event_id: Vec<u8> = row.get(3).map_err(|e| corrupt(e.to_string()))?;
    let event_type: String = row.get(4).map_err(|e| corrupt(e.to_string()))?;
    let schema_version: u32 = row.get(5).map_err(|e| corrupt(e.to_string()))?;
    let data: String = row.get(6).map_err(|e| corrupt(e.to_string()))?;
    let metadata: String = row.get(7).map_err(|e| corrupt(e.to_string()))?;
    let prev_hash: Vec<u8> = row.get(8).map_err(|e| corrupt(e.to_string()))?;
    let hash: Vec<u8> = row.get(9).map_err(|e| corrupt(e.to_string()))?;
    Ok(RecordedEvent {
        event_id: Uuid::from_slice(&event_id).map_err(|e| corrupt(e.to_string()))?,
        stream_id: StreamId::parse(&stream).map_err(|e| corrupt(e.to_string()))?,
        version: version as u64,
        position: position as u64,
        event_type,
        schema_version,
        data: serde_json::from_str(&data).map_err(|e| corrupt(format!("data: {e}")))?,
        metadata: serde_json::from_str::<EventMetadata>(&metadata)
            .map_err(|e| corrupt(format!("metadata: {e}")))?,
        prev_hash: EventHash::from_slice(&prev_hash).map_err(corrupt)?,
        hash: EventHash::from_slice(&hash).map_err(corrupt)?,
    })
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl EventStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn append(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        let started = Instant::now();
        let prepared = PreparedAppend::new(request, now())?;
        let queue = self
            .queue
            .lock()
            .map_err(|_| StoreError::Closed)?
            .clone()
            .ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        queue
            .send(WriteJob { prepared, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        let result = answer.await.map_err(|_| StoreError::Closed)?;
        metrics::store_append("sqlite", started.elapsed());
        result
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream = stream.clone();
        self.with_reader(move |conn| {
            let sql = match direction {
                Direction::Forward => format!(
                    "{SELECT_EVENT} WHERE stream_id = ?1 AND version >= ?2 ORDER BY version LIMIT ?3"
                ),
                Direction::Backward => format!(
                    "{SELECT_EVENT} WHERE stream_id = ?1 AND version <= ?2 ORDER BY version DESC LIMIT ?3"
                ),
            };
            let mut stmt = conn.prepare_cached(&sql).map_err(StoreError::unavailable)?;
            collect_events(stmt.query(params![stream.as_str(), clamp(from), clamp(limit as u64)]))
        })
        .await
    }

    async fn read_all(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.with_reader(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "{SELECT_EVENT} WHERE position >= ?1 ORDER BY position LIMIT ?2"
                ))
                .map_err(StoreError::unavailable)?;
            collect_events(stmt.query(params![clamp(from), clamp(limit as u64)]))
        })
        .await
    }

    async fn find_command(&self, command_id: Uuid) -> Result<Option<Appended>, StoreError> {
        self.with_reader(move |conn| find_command_in(conn, command_id))
            .await
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        self.with_reader(|conn| {
            conn.query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|p| p as u64)
            .map_err(StoreError::unavailable)
        })
        .await
    }

    fn head_watch(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }

    fn poll_interval(&self) -> Option<Duration> {
        // A read-only handle sees another process's writes only by polling.
        match self.queue.lock() {
            Ok(queue) if queue.is_some() => None,
            _ => Some(Duration::from_millis(200)),
        }
    }

    async fn close(&self) {
        // Dropping the only sender ends the writer loop once the queue is drained.
        if let Ok(mut queue) = self.queue.lock() {
            queue.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
    }
}
