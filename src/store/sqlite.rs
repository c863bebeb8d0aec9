//! The embedded backend: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! **Group commit.** One OS thread owns the only writing connection. It blocks for the first
//! queued append, drains every other append already waiting (up to `max_batch`), writes them
//! all in one transaction and commits once, so a single fsync acknowledges many commands. An
//! append that breaks its expectation is answered with a conflict without disturbing the rest
//! of its batch; if the batch itself fails (an I/O error), every append in it is retried in a
//! transaction of its own, so one bad append cannot sink its neighbours.
//!
//! **A deferred stream index.** The `events` table is keyed by position only, so a commit
//! writes a few sequential pages. A B-tree index on `(stream_id, version)` maintained in the
//! commit would dirty one random 4 KiB page per stream per commit, and the WAL writes whole
//! pages: measured here, that capped durable appends near 15,000/s. Instead, as KurrentDB
//! does with its memtable and PTables, the writer keeps the newest index entries in memory
//! (the [`Memtable`]) and flushes them into `stream_index` in large sorted batches, recording
//! how far the durable index reaches (`indexed_through`). Readers in this process merge the
//! memtable with `stream_index`; readers in other processes (`replay`, `audit verify`) scan
//! the short unindexed tail instead. On open, the tail left by a crash is indexed before the
//! first append.
//!
//! Because the writer is the only writer, positions are assigned in commit order (gap-free,
//! never visible out of order) and the head of each recently written stream can be cached in
//! memory. A lock file beside the database keeps a second careflow process from writing the
//! same file; readers use their own connections and may run while the server writes.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use careflow_aggregates::{EventHash, EventMetadata, RecordedEvent, StreamId};
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior, params};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::{
    AppendRequest, Appended, AtomicJob, Direction, EventStore, ExpectedVersion, Outcome,
    PreparedAppend, StoreError, StreamHead, WriteJob, WriterQueue,
};
use crate::clock::Clock;
use crate::operations::metrics;

/// Tunables of the SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The database file (`./data/careflow.db` by default).
    pub path: PathBuf,
    /// Most appends in one transaction.
    pub max_batch: usize,
    /// Appends that may wait for the writer before callers feel back-pressure.
    pub queue_capacity: usize,
    /// Stream-index entries held in memory before a flush is forced.
    pub flush_at: usize,
    /// After this long without an append, whatever the memtable holds is flushed, so a quiet
    /// server keeps its unindexed tail (what other processes must scan) empty. Under load
    /// only `flush_at` triggers flushes, which keeps them large and their pages local.
    pub idle_flush_after: Duration,
    /// How long `open` keeps trying for the lock file before it refuses. A process that is
    /// exiting, or a child forked by another thread of this one and not yet exec'd, holds the
    /// lock for a moment after its owner let go of it; a restart must not fail on that.
    pub lock_wait: Duration,
    /// What stamps `recorded_at` (the system clock unless a test injects its own).
    pub clock: Clock,
}

impl SqliteConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_batch: 4096,
            queue_capacity: 65_536,
            flush_at: 32_768,
            idle_flush_after: Duration::from_millis(200),
            lock_wait: Duration::from_secs(2),
            clock: Clock::system(),
        }
    }

    /// The same configuration with `clock` stamping `recorded_at`.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
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
    event_id       BLOB    NOT NULL,
    command_id     BLOB    NOT NULL,
    any_command_id BLOB,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    data           TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    prev_hash      BLOB    NOT NULL,
    hash           BLOB    NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_any_command ON events (any_command_id)
    WHERE any_command_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS stream_index (
    stream_id TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    position  INTEGER NOT NULL,
    PRIMARY KEY (stream_id, version)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS events_are_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_are_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO store_meta (key, value) VALUES ('schema_version', '1');
INSERT OR IGNORE INTO store_meta (key, value) VALUES ('indexed_through', '0');
";

const SELECT_EVENT: &str = "SELECT position, stream_id, version, event_id, event_type, \
     schema_version, data, metadata, prev_hash, hash FROM events";

/// Stream-index entries newer than `indexed_through`, per stream as `(version, position)` in
/// ascending order. Only the writer thread changes it; in-process readers take a read lock.
#[derive(Debug, Default)]
struct Memtable {
    streams: HashMap<StreamId, Vec<(u64, u64)>>,
    len: usize,
}

type SharedMemtable = Arc<RwLock<Memtable>>;

/// What the writer thread takes: one command's append, or an atomic unit of several
/// ([`EventStore::append_all`]), which is committed in a transaction of its own.
pub(crate) enum SqliteJob {
    One(WriteJob),
    All(AtomicJob),
}

impl From<WriteJob> for SqliteJob {
    fn from(job: WriteJob) -> Self {
        SqliteJob::One(job)
    }
}

impl From<AtomicJob> for SqliteJob {
    fn from(job: AtomicJob) -> Self {
        SqliteJob::All(job)
    }
}

/// The SQLite event store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    path: PathBuf,
    queue: WriterQueue<SqliteJob>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// `None` on a read-only handle, which scans the unindexed tail instead.
    memtable: Option<SharedMemtable>,
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
        let lock = acquire_lock(&config.path, config.lock_wait)?;
        let conn = open_connection(&config.path, false)?;
        conn.execute_batch(SCHEMA)
            .map_err(StoreError::unavailable)?;
        index_unindexed_tail(&conn)?;
        let head_position = max_position(&conn)?;
        let memtable = SharedMemtable::default();
        let (head_tx, head_rx) = watch::channel(head_position);
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let waiter = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(StoreError::unavailable)?;
        let writer = Writer {
            conn,
            next_position: head_position + 1,
            heads: HashMap::new(),
            memtable: Arc::clone(&memtable),
            head_tx,
            max_batch: config.max_batch.max(1),
            flush_at: config.flush_at.max(1),
            idle_flush_after: config.idle_flush_after,
            waiter,
        };
        let handle = std::thread::Builder::new()
            .name("careflow-sqlite-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(StoreError::unavailable)?;
        Ok(Self {
            path: config.path,
            queue: WriterQueue::new("sqlite", Some(tx), config.clock),
            writer: Mutex::new(Some(handle)),
            readers: Arc::new(Mutex::new(Vec::new())),
            memtable: Some(memtable),
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
        let head_position = max_position(&conn)?;
        let (_tx, rx) = watch::channel(head_position);
        Ok(Self {
            path,
            queue: WriterQueue::new("sqlite", None, Clock::system()),
            writer: Mutex::new(None),
            readers: Arc::new(Mutex::new(vec![conn])),
            memtable: None,
            head: rx,
            lock: Mutex::new(None),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a read on a pooled connection.
    ///
    /// Small reads (`Placement::Inline`: one stream's page, a command look-up) run on the
    /// calling thread: a warm SQLite read of a few rows takes microseconds, while a hop to
    /// the blocking pool and back costs two context switches, which measured as a third of
    /// an actor activation (docs/performance.md). Bulk reads of the global log go to the
    /// blocking pool so they never stall an arbiter or an HTTP worker.
    async fn with_reader<T, F>(&self, placement: Placement, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, Option<&SharedMemtable>) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = Arc::clone(&self.readers);
        let path = self.path.clone();
        let memtable = self.memtable.clone();
        let run = move || {
            let pooled = pool.lock().map_err(|_| poisoned())?.pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&path, true)?,
            };
            let result = f(&conn, memtable.as_ref());
            pool.lock().map_err(|_| poisoned())?.push(conn);
            result
        };
        match placement {
            Placement::Inline => run(),
            Placement::BlockingPool => tokio::task::spawn_blocking(run)
                .await
                .map_err(StoreError::unavailable)?,
        }
    }
}

/// Where a read runs; see [`SqliteStore::with_reader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    Inline,
    BlockingPool,
}

/// Stream reads up to this many events run inline.
const INLINE_READ_LIMIT: usize = 1_000;

fn poisoned() -> StoreError {
    StoreError::Unavailable("store lock poisoned".into())
}

fn acquire_lock(db: &Path, wait: Duration) -> Result<File, StoreError> {
    let lock_path = db.with_extension("lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Unavailable(format!("opening {}: {e}", lock_path.display())))?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Unavailable(format!(
                    "{} is in use by another careflow process",
                    db.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Unavailable(format!(
                    "locking {}: {e}",
                    lock_path.display()
                )));
            }
        }
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

fn max_position(conn: &Connection) -> Result<u64, StoreError> {
    conn.query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|p| p as u64)
    .map_err(StoreError::unavailable)
}

fn indexed_through(conn: &Connection) -> Result<u64, StoreError> {
    let value: String = conn
        .query_row(
            "SELECT value FROM store_meta WHERE key = 'indexed_through'",
            [],
            |r| r.get(0),
        )
        .map_err(StoreError::unavailable)?;
    value.parse().map_err(|_| StoreError::Corrupt {
        position: 0,
        reason: format!("indexed_through is {value:?}"),
    })
}

/// Indexes whatever a crash left past `indexed_through`, so the memtable starts empty.
fn index_unindexed_tail(conn: &Connection) -> Result<(), StoreError> {
    let through = indexed_through(conn)?;
    let head = max_position(conn)?;
    if head <= through {
        return Ok(());
    }
    let tx = conn
        .unchecked_transaction()
        .map_err(StoreError::unavailable)?;
    tx.execute(
        "INSERT INTO stream_index (stream_id, version, position) \
         SELECT stream_id, version, position FROM events WHERE position > ?1 \
         ORDER BY stream_id, version",
        [clamp(through)],
    )
    .map_err(StoreError::unavailable)?;
    tx.execute(
        "UPDATE store_meta SET value = ?1 WHERE key = 'indexed_through'",
        [head.to_string()],
    )
    .map_err(StoreError::unavailable)?;
    tx.commit().map_err(StoreError::unavailable)?;
    tracing::info!(
        from = through + 1,
        to = head,
        "indexed the event log's tail"
    );
    Ok(())
}

/// The writer thread's state: the only connection that writes.
struct Writer {
    conn: Connection,
    next_position: u64,
    heads: HashMap<StreamId, StreamHead>,
    memtable: SharedMemtable,
    head_tx: watch::Sender<u64>,
    max_batch: usize,
    flush_at: usize,
    idle_flush_after: Duration,
    /// Lets the writer thread wait for the next append with a timeout.
    waiter: tokio::runtime::Runtime,
}

/// Why a batch transaction was abandoned (nothing of it is committed).
enum BatchFailure {
    /// An `Any` append hit the unique index of command ids: it repeats a committed command.
    Repeat,
    /// An atomic unit in which some part was not written: this is its answer.
    Refused(Result<Vec<Appended>, StoreError>),
    Store(StoreError),
}

impl From<StoreError> for BatchFailure {
    fn from(error: StoreError) -> Self {
        BatchFailure::Store(error)
    }
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<SqliteJob>) {
        let mut jobs = Vec::with_capacity(self.max_batch);
        loop {
            let next = if self.memtable_len() > 0 {
                let idle = self.idle_flush_after;
                let wait = async { tokio::time::timeout(idle, rx.recv()).await };
                match self.waiter.block_on(wait) {
                    Ok(next) => next,
                    Err(_idle) => {
                        self.flush_index();
                        continue;
                    }
                }
            } else {
                rx.blocking_recv()
            };
            let Some(job) = next else { break };
            match job {
                SqliteJob::One(job) => {
                    jobs.push(job);
                    let unit = self.gather(&mut rx, &mut jobs);
                    self.commit_batch(&mut jobs);
                    if let Some(unit) = unit {
                        self.commit_unit(unit);
                    }
                }
                SqliteJob::All(unit) => self.commit_unit(unit),
            }
            if self.memtable_len() >= self.flush_at {
                self.flush_index();
            }
        }
        self.flush_index();
        tracing::info!(backend = "sqlite", "event store writer stopped");
    }

    /// Drains whatever is already queued into `jobs`, up to the batch cap. It does not
    /// linger for more: a pause to gather (PostgreSQL's `commit_delay`) was measured and
    /// cost more in scheduler churn on two cores than it gained in larger batches. An atomic
    /// unit ends the gathering and is returned, to be committed right after the batch (so
    /// queue order is kept).
    fn gather(
        &self,
        rx: &mut mpsc::Receiver<SqliteJob>,
        jobs: &mut Vec<WriteJob>,
    ) -> Option<AtomicJob> {
        while jobs.len() < self.max_batch {
            match rx.try_recv() {
                Ok(SqliteJob::One(job)) => jobs.push(job),
                Ok(SqliteJob::All(unit)) => return Some(unit),
                Err(_) => break,
            }
        }
        None
    }

    /// Commits an atomic unit in a transaction of its own: every part written, or none.
    fn commit_unit(&mut self, mut unit: AtomicJob) {
        let started = Instant::now();
        let size = unit.prepared.len();
        let mut parts: Vec<&mut PreparedAppend> = unit.prepared.iter_mut().collect();
        let result = match self.write_batch(&mut parts, true) {
            Ok(outcomes) => super::unit_answer(outcomes),
            Err(BatchFailure::Refused(answer)) => answer,
            Err(BatchFailure::Repeat) => {
                // An `Any` part repeats a committed command: answer the unit as a repeat when
                // every part is one.
                self.forget_cached_state();
                let found: Result<Vec<Option<Appended>>, StoreError> =
                    self.memtable.read().map_err(|_| poisoned()).and_then(|m| {
                        parts
                            .iter()
                            .map(|p| {
                                find_in_stream(
                                    &self.conn,
                                    Some(&m),
                                    &p.request_stream,
                                    0,
                                    p.command_id,
                                )
                            })
                            .collect()
                    });
                found.and_then(|all| {
                    all.into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| {
                        StoreError::Unavailable(
                            "an atomic append repeats only some of the commands of an earlier one"
                                .into(),
                        )
                    })
                })
            }
            Err(BatchFailure::Store(error)) => {
                tracing::warn!(%error, size, "atomic append failed");
                self.forget_cached_state();
                Err(error)
            }
        };
        let _ = self.head_tx.send(self.next_position - 1);
        metrics::store_commit("sqlite", 1, started.elapsed());
        // A caller that stopped waiting is fine: a committed unit is durable regardless.
        let _ = unit.reply.send(result);
    }

    fn memtable_len(&self) -> usize {
        self.memtable.read().map(|m| m.len).unwrap_or(0)
    }

    fn commit_batch(&mut self, jobs: &mut Vec<WriteJob>) {
        let started = Instant::now();
        let size = jobs.len();
        let mut prepared: Vec<&mut PreparedAppend> =
            jobs.iter_mut().map(|job| &mut job.prepared).collect();
        let outcomes = match self.write_batch(&mut prepared, false) {
            Ok(outcomes) => outcomes,
            Err(failure) => {
                if let BatchFailure::Store(error) = &failure {
                    tracing::warn!(%error, size, "group commit failed; retrying its appends one by one");
                }
                self.forget_cached_state();
                prepared.iter_mut().map(|p| self.write_alone(p)).collect()
            }
        };
        let _ = self.head_tx.send(self.next_position - 1);
        metrics::store_commit("sqlite", size, started.elapsed());
        super::answer(jobs.drain(..).map(|j| j.reply), outcomes);
    }

    /// Writes one append in a transaction of its own: the slow path after a batch failed.
    fn write_alone(&mut self, prepared: &mut &mut PreparedAppend) -> Outcome {
        match self.write_batch(std::slice::from_mut(prepared), false) {
            Ok(mut outcomes) => outcomes
                .pop()
                .unwrap_or(Outcome::Done(Err(StoreError::EmptyAppend))),
            Err(BatchFailure::Refused(answer)) => {
                Outcome::Done(answer.and_then(|mut all| all.pop().ok_or(StoreError::EmptyAppend)))
            }
            Err(BatchFailure::Repeat) => {
                let p = &**prepared;
                let found = self.memtable.read().map_err(|_| poisoned()).and_then(|m| {
                    find_in_stream(&self.conn, Some(&m), &p.request_stream, 0, p.command_id)
                });
                Outcome::Done(found.and_then(|first| {
                    first.ok_or_else(|| {
                        StoreError::Unavailable(
                            "command id was appended before to another stream".into(),
                        )
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
        if let Ok(max) = max_position(&self.conn) {
            self.next_position = max + 1;
        }
    }

    /// Writes every job of the batch in one transaction. `Err` means nothing was committed.
    /// With `atomic`, the transaction is abandoned unless every job is written
    /// ([`BatchFailure::Refused`] then carries the unit's answer).
    fn write_batch(
        &mut self,
        jobs: &mut [&mut PreparedAppend],
        atomic: bool,
    ) -> Result<Vec<Outcome>, BatchFailure> {
        if self.heads.len() > HEAD_CACHE_LIMIT {
            self.heads.clear();
        }
        let memtable = Arc::clone(&self.memtable);
        let memtable = memtable.read().map_err(|_| poisoned())?;
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
                     any_command_id, event_type, schema_version, data, metadata, prev_hash, hash) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(StoreError::unavailable)?;
            for (index, p) in jobs.iter_mut().enumerate() {
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
                    None => read_head(&tx, &memtable, &p.request_stream)?,
                };
                match p.seal_in_place(head, next_position) {
                    Ok(()) => {}
                    Err(conflict) => {
                        // A retried command arrives with a now-stale expectation: its events,
                        // if it was committed, lie after the version it expected.
                        let after = match p.expected {
                            ExpectedVersion::Exact(v) => v,
                            ExpectedVersion::NoStream | ExpectedVersion::Any => 0,
                        };
                        let first = find_in_stream(
                            &tx,
                            Some(&memtable),
                            &p.request_stream,
                            after,
                            p.command_id,
                        )?;
                        outcomes.push(Outcome::Done(first.ok_or(conflict)));
                        continue;
                    }
                };
                // `Any` appends carry their command id in a uniquely indexed column (the
                // version check cannot recognise their repeats). A violation means a repeat;
                // the batch is abandoned and retried job by job, which answers it.
                insert_events(&mut insert, p).map_err(|e| {
                    if is_unique_violation(&e) {
                        BatchFailure::Repeat
                    } else {
                        BatchFailure::Store(StoreError::unavailable(e))
                    }
                })?;
                next_position += p.len() as u64;
                if let Some(last) = p.events().last() {
                    touched.insert(
                        p.request_stream.clone(),
                        StreamHead {
                            version: last.version,
                            hash: last.hash,
                        },
                    );
                }
                // Filled with the events once the commit has made them durable.
                outcomes.push(Outcome::Written(Vec::new()));
            }
        }
        if atomic && let Some(answer) = super::unit_refusal(&outcomes) {
            // Dropping the transaction rolls it back: nothing of the unit is written.
            drop(tx);
            return Err(BatchFailure::Refused(answer));
        }
        tx.commit().map_err(StoreError::unavailable)?;
        drop(memtable);
        self.next_position = next_position;
        self.heads.extend(touched);
        self.remember(jobs, &mut outcomes)?;
        Ok(outcomes)
    }

    /// Adds the committed events to the memtable and moves them into their outcomes, before
    /// their callers are answered.
    fn remember(
        &mut self,
        jobs: &mut [&mut PreparedAppend],
        outcomes: &mut [Outcome],
    ) -> Result<(), StoreError> {
        let mut memtable = self.memtable.write().map_err(|_| poisoned())?;
        for (job, outcome) in jobs.iter_mut().zip(outcomes.iter_mut()) {
            if let Outcome::Written(events) = outcome {
                *events = job.take_events();
                let Some(first) = events.first() else {
                    continue;
                };
                let entries = memtable.streams.entry(first.stream_id.clone()).or_default();
                entries.extend(events.iter().map(|e| (e.version, e.position)));
                memtable.len += events.len();
            }
        }
        Ok(())
    }

    /// Moves the memtable into `stream_index`, sorted, in one transaction.
    fn flush_index(&mut self) {
        let started = Instant::now();
        let result = (|| -> Result<usize, StoreError> {
            let memtable = self.memtable.read().map_err(|_| poisoned())?;
            if memtable.len == 0 {
                return Ok(0);
            }
            let mut entries: Vec<(&StreamId, u64, u64)> = memtable
                .streams
                .iter()
                .flat_map(|(s, v)| {
                    v.iter()
                        .map(move |(version, position)| (s, *version, *position))
                })
                .collect();
            entries.sort_unstable();
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(StoreError::unavailable)?;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO stream_index (stream_id, version, position) VALUES (?1, ?2, ?3)",
                    )
                    .map_err(StoreError::unavailable)?;
                for (stream, version, position) in &entries {
                    insert
                        .execute(params![stream.as_str(), clamp(*version), clamp(*position)])
                        .map_err(StoreError::unavailable)?;
                }
            }
            tx.execute(
                "UPDATE store_meta SET value = ?1 WHERE key = 'indexed_through'",
                [(self.next_position - 1).to_string()],
            )
            .map_err(StoreError::unavailable)?;
            tx.commit().map_err(StoreError::unavailable)?;
            Ok(entries.len())
        })();
        match result {
            Ok(0) => {}
            Ok(flushed) => {
                // Committed: the entries are in `stream_index` before they leave memory, so a
                // reader that misses them here finds them there.
                if let Ok(mut memtable) = self.memtable.write() {
                    *memtable = Memtable::default();
                }
                tracing::debug!(
                    flushed,
                    took_ms = started.elapsed().as_millis() as u64,
                    "stream index flushed"
                );
            }
            Err(error) => {
                tracing::warn!(%error, "stream index flush failed; keeping entries in memory");
            }
        }
    }
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::ConstraintViolation)
}

fn insert_events(
    insert: &mut rusqlite::CachedStatement<'_>,
    prepared: &PreparedAppend,
) -> Result<(), rusqlite::Error> {
    let any = prepared.expected == ExpectedVersion::Any;
    let metadata = prepared.stored_metadata();
    for (i, e) in prepared.events().iter().enumerate() {
        let data = prepared.stored_data(i);
        let command = e.metadata.command_id.as_bytes().as_slice();
        insert.execute(params![
            e.position as i64,
            e.stream_id.as_str(),
            e.version as i64,
            e.event_id.as_bytes().as_slice(),
            command,
            (any && i == 0).then_some(command),
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

/// The `(version, position)` pairs of `stream` from version `from` in `direction`, at most
/// `limit`: the memtable (or, without one, the unindexed tail) merged with `stream_index`.
///
/// The memtable (or the tail) is read *before* the index: a flush commits the index entries
/// and the new `indexed_through` first and clears the memtable after, so an entry is always
/// in at least one of the two reads, with or without a surrounding transaction.
fn stream_positions(
    conn: &Connection,
    memtable: Option<&Memtable>,
    stream: &StreamId,
    from: u64,
    direction: Direction,
    limit: usize,
) -> Result<Vec<(u64, u64)>, StoreError> {
    let in_range = |version: u64| match direction {
        Direction::Forward => version >= from,
        Direction::Backward => version <= from,
    };
    let mut pairs: Vec<(u64, u64)> = match memtable {
        Some(m) => m
            .streams
            .get(stream)
            .map(|v| {
                v.iter()
                    .copied()
                    .filter(|(version, _)| in_range(*version))
                    .collect()
            })
            .unwrap_or_default(),
        None => {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT version, position FROM events WHERE position > \
                     (SELECT CAST(value AS INTEGER) FROM store_meta WHERE key = 'indexed_through') \
                     AND stream_id = ?1",
                )
                .map_err(StoreError::unavailable)?;
            let rows = stmt
                .query_map([stream.as_str()], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
                })
                .map_err(StoreError::unavailable)?;
            let mut out = Vec::new();
            for row in rows {
                let pair = row.map_err(StoreError::unavailable)?;
                if in_range(pair.0) {
                    out.push(pair);
                }
            }
            out
        }
    };
    let sql = match direction {
        Direction::Forward => {
            "SELECT version, position FROM stream_index WHERE stream_id = ?1 AND version >= ?2 \
             ORDER BY version LIMIT ?3"
        }
        Direction::Backward => {
            "SELECT version, position FROM stream_index WHERE stream_id = ?1 AND version <= ?2 \
             ORDER BY version DESC LIMIT ?3"
        }
    };
    let mut stmt = conn.prepare_cached(sql).map_err(StoreError::unavailable)?;
    let rows = stmt
        .query_map(
            params![stream.as_str(), clamp(from), clamp(limit as u64)],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )
        .map_err(StoreError::unavailable)?;
    for row in rows {
        pairs.push(row.map_err(StoreError::unavailable)?);
    }
    match direction {
        Direction::Forward => pairs.sort_unstable(),
        Direction::Backward => pairs.sort_unstable_by(|a, b| b.cmp(a)),
    }
    pairs.dedup_by_key(|p| p.0);
    pairs.truncate(limit);
    Ok(pairs)
}

/// Positions fetched per statement in [`events_at`]; shorter chunks repeat their last position.
const FETCH_CHUNK: usize = 32;

/// The events at the positions of `pairs`, in the order of `pairs`.
///
/// A stream's events are scattered through the log, so they are fetched by position, 32 per
/// statement (`position IN (...)` with a fixed arity, so one cached statement serves every
/// chunk): a 100-event tail is 4 statements rather than 100.
fn events_at(conn: &Connection, pairs: &[(u64, u64)]) -> Result<Vec<RecordedEvent>, StoreError> {
    let placeholders = vec!["?"; FETCH_CHUNK].join(", ");
    let mut stmt = conn
        .prepare_cached(&format!(
            "{SELECT_EVENT} WHERE position IN ({placeholders})"
        ))
        .map_err(StoreError::unavailable)?;
    let mut found: HashMap<u64, RecordedEvent> = HashMap::with_capacity(pairs.len());
    for chunk in pairs.chunks(FETCH_CHUNK) {
        let Some(&(_, last)) = chunk.last() else {
            continue;
        };
        let positions: Vec<i64> = (0..FETCH_CHUNK)
            .map(|i| clamp(chunk.get(i).map_or(last, |p| p.1)))
            .collect();
        let rows = stmt.query(rusqlite::params_from_iter(positions.iter()));
        for event in collect_events(rows)? {
            found.insert(event.position, event);
        }
    }
    pairs
        .iter()
        .map(|(_, position)| {
            found.remove(position).ok_or(StoreError::Corrupt {
                position: *position,
                reason: "the stream index names a position with no event".into(),
            })
        })
        .collect()
}

fn read_stream_in(
    conn: &Connection,
    memtable: Option<&SharedMemtable>,
    stream: &StreamId,
    from: u64,
    direction: Direction,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    // No read transaction is needed (and BEGIN/COMMIT cost two statement parses per read):
    // `stream_positions` reads the memtable or tail before the index, which is safe against a
    // concurrent flush, and stored events never change, so fetching them afterwards by
    // position returns what the positions named.
    let pairs = match memtable {
        Some(m) => {
            let m = m.read().map_err(|_| poisoned())?;
            stream_positions(conn, Some(&m), stream, from, direction, limit)?
        }
        None => stream_positions(conn, None, stream, from, direction, limit)?,
    };
    events_at(conn, &pairs)
}

fn read_head(
    conn: &Connection,
    memtable: &Memtable,
    stream: &StreamId,
) -> Result<StreamHead, StoreError> {
    let pairs = stream_positions(
        conn,
        Some(memtable),
        stream,
        u64::MAX,
        Direction::Backward,
        1,
    )?;
    let Some(&(version, position)) = pairs.first() else {
        return Ok(StreamHead::default());
    };
    let hash: Vec<u8> = conn
        .query_row(
            "SELECT hash FROM events WHERE position = ?1",
            [clamp(position)],
            |r| r.get(0),
        )
        .map_err(StoreError::unavailable)?;
    Ok(StreamHead {
        version,
        hash: EventHash::from_slice(&hash)
            .map_err(|reason| StoreError::Corrupt { position, reason })?,
    })
}

/// The events of `command_id` in `stream` after version `after`, as a repeat's answer.
fn find_in_stream(
    conn: &Connection,
    memtable: Option<&Memtable>,
    stream: &StreamId,
    after: u64,
    command_id: Uuid,
) -> Result<Option<Appended>, StoreError> {
    let pairs = stream_positions(
        conn,
        memtable,
        stream,
        after + 1,
        Direction::Forward,
        usize::MAX,
    )?;
    let events: Vec<RecordedEvent> = events_at(conn, &pairs)?
        .into_iter()
        .filter(|e| e.metadata.command_id == command_id)
        .collect();
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
        self.queue.submit(request).await
    }

    async fn append_all(&self, requests: Vec<AppendRequest>) -> Result<Vec<Appended>, StoreError> {
        self.queue.submit_all(requests).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream = stream.clone();
        let placement = if limit <= INLINE_READ_LIMIT {
            Placement::Inline
        } else {
            Placement::BlockingPool
        };
        self.with_reader(placement, move |conn, memtable| {
            read_stream_in(conn, memtable, &stream, from, direction, limit)
        })
        .await
    }

    async fn read_all(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.with_reader(Placement::BlockingPool, move |conn, _| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "{SELECT_EVENT} WHERE position >= ?1 ORDER BY position LIMIT ?2"
                ))
                .map_err(StoreError::unavailable)?;
            collect_events(stmt.query(params![clamp(from), clamp(limit as u64)]))
        })
        .await
    }

    async fn find_command(
        &self,
        stream: &StreamId,
        command_id: Uuid,
    ) -> Result<Option<Appended>, StoreError> {
        let stream = stream.clone();
        self.with_reader(Placement::Inline, move |conn, memtable| match memtable {
            Some(m) => {
                let m = m.read().map_err(|_| poisoned())?;
                find_in_stream(conn, Some(&m), &stream, 0, command_id)
            }
            None => find_in_stream(conn, None, &stream, 0, command_id),
        })
        .await
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        self.with_reader(Placement::Inline, |conn, _| max_position(conn))
            .await
    }

    fn head_watch(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }

    fn poll_interval(&self) -> Option<Duration> {
        // A read-only handle sees another process's writes only by polling.
        if self.queue.is_open() {
            None
        } else {
            Some(Duration::from_millis(200))
        }
    }

    async fn close(&self) {
        // Dropping the only sender ends the writer loop once the queue is drained.
        self.queue.close();
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
    }
}
