//! State snapshots: a cache that shortens the replay an actor does when it starts.
//!
//! A snapshot is the serialised state of one stream at one version, tagged with the
//! aggregate's `SNAPSHOT_VERSION`. It is **only a cache**: a missing, unreadable or outdated
//! snapshot falls back to replaying the whole stream, and nothing else reads it. That is why it
//! lives outside the event store (no change to the `EventStore` trait, no effect on the hash
//! chain) in a table of its own:
//!
//! - `sqlite`: `snapshots.db` beside `careflow.db` in the data dir (WAL, `synchronous=NORMAL`:
//!   losing the last snapshots in a power cut only costs a longer replay);
//! - `postgres`: table `snapshots` in the same schema as the events, so every node shares them.
//!
//! What this module deliberately does not do: encrypt. A patient account's state holds the
//! identity in clear (docs/domain.md), so the server wraps this store in
//! `personal_data::EncryptingSnapshots`, which seals those states with the patient's key; an
//! erasure also calls `delete` (docs/http-api.md "Actors and snapshots").

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use careflow_aggregates::StreamId;
use deadpool_postgres::Pool;
use rusqlite::{Connection, OptionalExtension, params};

use crate::clock::Clock;
use crate::config::Config;
use crate::store::side::{self, SideStore, SideStoreError, Synchronous};

/// A stored state of one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub stream_id: StreamId,
    /// The stream version the state includes (every event up to and including it).
    pub version: u64,
    /// The global position of the event at `version`.
    pub position: u64,
    /// The hash of the event at `version` (hex): a snapshot whose event is not in the store
    /// any more (a restored or replaced database) is recognised and ignored.
    pub head_hash: String,
    /// The aggregate's `SNAPSHOT_VERSION` when it was written.
    pub snapshot_version: u32,
    /// The state as JSON text, decoded straight into the aggregate's state type (one parse,
    /// no intermediate `Value`: a long account's snapshot is most of an activation's cost).
    pub state: String,
}

/// Why the snapshot cache failed. Callers log it and carry on without a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Occurs when the database cannot be opened, read or written.
    #[error("snapshot store unavailable: {0}")]
    Unavailable(String),
}

/// A PostgreSQL error with the server's message.
fn pg(error: tokio_postgres::Error) -> SnapshotError {
    unavailable(crate::store::postgres::describe_pg_error(&error))
}

fn unavailable(error: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Unavailable(error.to_string())
}

fn not_opened(error: SideStoreError) -> SnapshotError {
    unavailable(error.describe())
}

/// The SQLite file beside `careflow.db`.
pub(crate) const FILE: &str = "snapshots.db";

/// Where snapshots are kept.
#[async_trait]
pub trait SnapshotStore: Send + Sync + 'static {
    /// The newest snapshot of `stream`, if any.
    async fn load(&self, stream: &StreamId) -> Result<Option<Snapshot>, SnapshotError>;
    /// Stores `snapshot` unless a newer one is already there.
    async fn save(&self, snapshot: Snapshot) -> Result<(), SnapshotError>;
    /// Forgets the snapshot of `stream` (erasure; tests).
    async fn delete(&self, stream: &StreamId) -> Result<(), SnapshotError>;
}

/// Opens the snapshot store that matches the configured event store; `clock` stamps
/// `taken_at`.
///
/// # Errors
/// [`SnapshotError::Unavailable`] when the database cannot be opened.
pub async fn open(config: &Config, clock: &Clock) -> Result<Arc<dyn SnapshotStore>, SnapshotError> {
    match SideStore::of(config, FILE).map_err(not_opened)? {
        SideStore::Postgres { url, schema } => Ok(Arc::new(
            PostgresSnapshots::open(&url, &schema)
                .await?
                .with_clock(clock.clone()),
        )),
        SideStore::Sqlite(path) => Ok(Arc::new(
            SqliteSnapshots::open(path)?.with_clock(clock.clone()),
        )),
    }
}

/// Snapshots in a SQLite file of their own.
pub struct SqliteSnapshots {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    clock: Clock,
}

impl SqliteSnapshots {
    /// Opens (creating) the file.
    ///
    /// # Errors
    /// [`SnapshotError::Unavailable`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SnapshotError> {
        let path = path.as_ref().to_path_buf();
        let conn = side::open_sqlite(&path, Synchronous::Normal).map_err(not_opened)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS snapshots (
                 stream_id TEXT PRIMARY KEY,
                 version INTEGER NOT NULL,
                 position INTEGER NOT NULL,
                 head_hash TEXT NOT NULL,
                 snapshot_version INTEGER NOT NULL,
                 state TEXT NOT NULL,
                 taken_at TEXT NOT NULL
             );",
        )
        .map_err(unavailable)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
            clock: Clock::system(),
        })
    }

    /// The same store with `taken_at` stamped by `clock` (the system's by default).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with_conn<T, F>(&self, f: F) -> Result<T, SnapshotError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, SnapshotError> + Send + 'static,
    {
        // On the calling thread: one indexed row, cheaper than a hop to the blocking pool
        // (see `SqliteStore::with_reader`).
        let guard = self
            .conn
            .lock()
            .map_err(|_| unavailable("snapshot connection lock poisoned"))?;
        f(&guard)
    }
}

#[async_trait]
impl SnapshotStore for SqliteSnapshots {
    async fn load(&self, stream: &StreamId) -> Result<Option<Snapshot>, SnapshotError> {
        let stream = stream.clone();
        self.with_conn(move |conn| {
            let row = conn
                .prepare_cached(
                    "SELECT version, position, head_hash, snapshot_version, state
                     FROM snapshots WHERE stream_id = ?1",
                )
                .map_err(unavailable)?
                .query_row(params![stream.as_str()], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, String>(4)?,
                    ))
                })
                .optional()
                .map_err(unavailable)?;
            let Some((version, position, head_hash, snapshot_version, state)) = row else {
                return Ok(None);
            };
            Ok(Some(Snapshot {
                stream_id: stream,
                version: u64::try_from(version).map_err(unavailable)?,
                position: u64::try_from(position).map_err(unavailable)?,
                head_hash,
                snapshot_version: u32::try_from(snapshot_version).map_err(unavailable)?,
                state,
            }))
        })
        .await
    }

    async fn save(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        let taken_at = self.clock.now().to_rfc3339();
        self.with_conn(move |conn| {
            let state = snapshot.state;
            conn.prepare_cached(
                "INSERT INTO snapshots
                     (stream_id, version, snapshot_version, state, taken_at, position, head_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(stream_id) DO UPDATE SET
                     version = excluded.version,
                     position = excluded.position,
                     head_hash = excluded.head_hash,
                     snapshot_version = excluded.snapshot_version,
                     state = excluded.state,
                     taken_at = excluded.taken_at
                 WHERE excluded.version > snapshots.version
                    OR excluded.snapshot_version <> snapshots.snapshot_version",
            )
            .map_err(unavailable)?
            .execute(params![
                snapshot.stream_id.as_str(),
                i64::try_from(snapshot.version).map_err(unavailable)?,
                i64::from(snapshot.snapshot_version),
                state,
                taken_at,
                i64::try_from(snapshot.position).map_err(unavailable)?,
                snapshot.head_hash,
            ])
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, stream: &StreamId) -> Result<(), SnapshotError> {
        let stream = stream.clone();
        self.with_conn(move |conn| {
            conn.prepare_cached("DELETE FROM snapshots WHERE stream_id = ?1")
                .map_err(unavailable)?
                .execute(params![stream.as_str()])
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}

/// Snapshots in the events' PostgreSQL schema, shared by every node.
pub struct PostgresSnapshots {
    pool: Pool,
    table: String,
    clock: Clock,
}

impl PostgresSnapshots {
    /// Connects and creates the table when missing.
    ///
    /// # Errors
    /// [`SnapshotError::Unavailable`]; also when `schema` is not a plain identifier.
    pub async fn open(url: &str, schema: &str) -> Result<Self, SnapshotError> {
        let pool = side::open_tables(
            url,
            schema,
            &format!(
                "CREATE TABLE IF NOT EXISTS {schema}.snapshots (
                    stream_id TEXT PRIMARY KEY,
                    version BIGINT NOT NULL,
                    position BIGINT NOT NULL,
                    head_hash TEXT NOT NULL,
                    snapshot_version INTEGER NOT NULL,
                    state TEXT NOT NULL,
                    taken_at TIMESTAMPTZ NOT NULL DEFAULT now()
                );"
            ),
        )
        .await
        .map_err(not_opened)?;
        Ok(Self {
            pool,
            table: format!("{schema}.snapshots"),
            clock: Clock::system(),
        })
    }

    /// The same store with `taken_at` stamped by `clock` (the system's by default).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

#[async_trait]
impl SnapshotStore for PostgresSnapshots {
    async fn load(&self, stream: &StreamId) -> Result<Option<Snapshot>, SnapshotError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT version, snapshot_version, state, position, head_hash
                     FROM {} WHERE stream_id = $1",
                    self.table
                ),
                &[&stream.as_str()],
            )
            .await
            .map_err(pg)?;
        let Some(row) = row else { return Ok(None) };
        let version: i64 = row.try_get(0).map_err(pg)?;
        let snapshot_version: i32 = row.try_get(1).map_err(pg)?;
        let state: String = row.try_get(2).map_err(pg)?;
        let position: i64 = row.try_get(3).map_err(pg)?;
        let head_hash: String = row.try_get(4).map_err(pg)?;
        Ok(Some(Snapshot {
            stream_id: stream.clone(),
            version: u64::try_from(version).map_err(unavailable)?,
            position: u64::try_from(position).map_err(unavailable)?,
            head_hash,
            snapshot_version: u32::try_from(snapshot_version).map_err(unavailable)?,
            state,
        }))
    }

    async fn save(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let state = snapshot.state.clone();
        let version = i64::try_from(snapshot.version).map_err(unavailable)?;
        let snapshot_version = i32::try_from(snapshot.snapshot_version).map_err(unavailable)?;
        let position = i64::try_from(snapshot.position).map_err(unavailable)?;
        client
            .execute(
                &format!(
                    "INSERT INTO {t}
                         (stream_id, version, snapshot_version, state, position, head_hash,
                          taken_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (stream_id) DO UPDATE SET
                         version = EXCLUDED.version,
                         position = EXCLUDED.position,
                         head_hash = EXCLUDED.head_hash,
                         snapshot_version = EXCLUDED.snapshot_version,
                         state = EXCLUDED.state,
                         taken_at = EXCLUDED.taken_at
                     WHERE EXCLUDED.version > {t}.version
                        OR EXCLUDED.snapshot_version <> {t}.snapshot_version",
                    t = self.table
                ),
                &[
                    &snapshot.stream_id.as_str(),
                    &version,
                    &snapshot_version,
                    &state,
                    &position,
                    &snapshot.head_hash,
                    &self.clock.now(),
                ],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn delete(&self, stream: &StreamId) -> Result<(), SnapshotError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        client
            .execute(
                &format!("DELETE FROM {} WHERE stream_id = $1", self.table),
                &[&stream.as_str()],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }
}

/// Snapshots in memory: for tests, and to run without a snapshot file.
#[derive(Default)]
pub struct MemorySnapshots {
    map: Mutex<std::collections::HashMap<StreamId, Snapshot>>,
}

impl MemorySnapshots {
    pub fn new() -> Self {
        Self::default()
    }

    /// Overwrites whatever is stored (tests use it to plant broken snapshots).
    pub fn put(&self, snapshot: Snapshot) {
        if let Ok(mut map) = self.map.lock() {
            map.insert(snapshot.stream_id.clone(), snapshot);
        }
    }

    pub fn get(&self, stream: &StreamId) -> Option<Snapshot> {
        self.map.lock().ok()?.get(stream).cloned()
    }
}

#[async_trait]
impl SnapshotStore for MemorySnapshots {
    async fn load(&self, stream: &StreamId) -> Result<Option<Snapshot>, SnapshotError> {
        Ok(self.get(stream))
    }

    async fn save(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        let mut map = self.map.lock().map_err(|_| unavailable("lock poisoned"))?;
        let newer = map
            .get(&snapshot.stream_id)
            .is_none_or(|old| old.version < snapshot.version);
        if newer {
            map.insert(snapshot.stream_id.clone(), snapshot);
        }
        Ok(())
    }

    async fn delete(&self, stream: &StreamId) -> Result<(), SnapshotError> {
        let mut map = self.map.lock().map_err(|_| unavailable("lock poisoned"))?;
        map.remove(stream);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(version: u64) -> Snapshot {
        Snapshot {
            stream_id: StreamId::parse("patient_account-M1").unwrap(),
            version,
            position: version,
            head_hash: "00".into(),
            snapshot_version: 1,
            state: serde_json::json!({"v": version}).to_string(),
        }
    }

    #[tokio::test]
    async fn sqlite_keeps_the_newest_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteSnapshots::open(dir.path().join("snapshots.db")).unwrap();
        let stream = snap(0).stream_id;
        assert_eq!(store.load(&stream).await.unwrap(), None);
        store.save(snap(200)).await.unwrap();
        store.save(snap(100)).await.unwrap();
        assert_eq!(store.load(&stream).await.unwrap(), Some(snap(200)));
        store.delete(&stream).await.unwrap();
        assert_eq!(store.load(&stream).await.unwrap(), None);
    }
}
