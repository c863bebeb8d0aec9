//! Stored rows as they are, read in large batches for verification.
//!
//! `EventStore::read_all` decodes every row into a `RecordedEvent` and fails the whole read
//! when one row does not decode, which is right for the service and wrong for an auditor: a
//! row someone edited by hand is exactly what `audit verify` must report, at its position,
//! and keep going. It also parses `data` into a JSON tree that verification does not need
//! (see `chain_hash_text`). So verification reads raw rows here, one window of positions per
//! query, on several connections at once (see `audit::verify`).

use std::path::PathBuf;

use rusqlite::types::ValueRef;
use uuid::Uuid;

use super::AuditError;
use crate::config::{Config, StoreKind};
use crate::store::EventStore;
use crate::store::kurrentdb::KurrentStore;

/// One stored row of `events`, undecoded.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub position: u64,
    pub stream_id: String,
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub data: String,
    pub metadata: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    /// Set when a column does not have its declared type (possible only on SQLite, whose
    /// columns accept any value): the row is reported unreadable.
    pub problem: Option<String>,
}

/// A stored row borrowed from wherever it was read (a SQLite row, a [`RawEvent`]): what the
/// content check needs, without copying `data` and `metadata` out of SQLite's pages.
#[derive(Debug, Clone)]
pub struct RowView<'a> {
    pub position: u64,
    pub stream_id: &'a str,
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub data: &'a str,
    pub metadata: &'a str,
    pub prev_hash: &'a [u8],
    pub hash: &'a [u8],
    pub problem: Option<String>,
}

impl RawEvent {
    pub fn view(&self) -> RowView<'_> {
        RowView {
            position: self.position,
            stream_id: &self.stream_id,
            version: self.version,
            event_id: self.event_id,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            data: &self.data,
            metadata: &self.metadata,
            prev_hash: &self.prev_hash,
            hash: &self.hash,
            problem: self.problem.clone(),
        }
    }
}

/// Where the log is, for raw reads.
#[derive(Debug, Clone)]
pub enum LogSource {
    Sqlite(PathBuf),
    Postgres {
        url: String,
        schema: String,
    },
    /// The log on a KurrentDB server; the signed checkpoints, which KurrentDB has no
    /// append-only table for, in a SQLite file of their own in the data dir
    /// (`audit_checkpoints.db`, append-only by trigger like the other backends' table).
    Kurrent {
        url: String,
        checkpoints: PathBuf,
    },
}

/// The file of the signed checkpoints on KurrentDB (see [`LogSource::Kurrent`]).
pub(crate) const KURRENT_CHECKPOINTS_FILE: &str = "audit_checkpoints.db";

const SELECT: &str = "SELECT position, stream_id, version, event_id, event_type, schema_version, \
     data, metadata, prev_hash, hash FROM events";

impl LogSource {
    /// The configured backend's log.
    ///
    /// # Errors
    /// [`AuditError::Format`] for PostgreSQL or KurrentDB without a URL.
    pub fn from_config(config: &Config) -> Result<Self, AuditError> {
        match config.store {
            StoreKind::Sqlite => Ok(LogSource::Sqlite(config.sqlite_path())),
            StoreKind::Postgres => {
                let url = config
                    .database_url
                    .as_ref()
                    .ok_or_else(|| AuditError::Format("database_url is not set".into()))?;
                Ok(LogSource::Postgres {
                    url: url.expose().to_owned(),
                    schema: config.database_schema.clone(),
                })
            }
            StoreKind::Kurrentdb => {
                let url = config
                    .kurrentdb_url
                    .as_ref()
                    .ok_or_else(|| AuditError::Format("kurrentdb_url is not set".into()))?;
                Ok(LogSource::Kurrent {
                    url: url.expose().to_owned(),
                    checkpoints: config.data_dir.join(KURRENT_CHECKPOINTS_FILE),
                })
            }
        }
    }

    /// The highest stored position (0 for an empty log).
    ///
    /// # Errors
    /// [`AuditError::Database`].
    pub async fn head_position(&self) -> Result<u64, AuditError> {
        match self {
            LogSource::Sqlite(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = open_sqlite(&path)?;
                    conn.query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
                        r.get::<_, i64>(0)
                    })
                    .map(|p| p.max(0) as u64)
                    .map_err(AuditError::database)
                })
                .await
                .map_err(AuditError::database)?
            }
            LogSource::Postgres { url, schema } => {
                let client = super::pg_connect(url, schema).await?;
                let row = client
                    .query_one("SELECT COALESCE(MAX(position), 0) FROM events", &[])
                    .await
                    .map_err(AuditError::database)?;
                Ok(row.get::<_, i64>(0).max(0) as u64)
            }
            LogSource::Kurrent { url, .. } => {
                let store = KurrentStore::open(url)
                    .await
                    .map_err(crate::store::StoreError::from)?;
                Ok(store.head_position().await?)
            }
        }
    }
}

/// Up to `limit` stored events of a KurrentDB log with position `>= from`, undecoded: the
/// body and careflow's metadata as the text that was hashed.
///
/// # Errors
/// [`AuditError`] when the server cannot be read; an event whose careflow envelope does not
/// read is returned with `problem` set (a finding, not an error).
pub async fn read_kurrent(
    store: &KurrentStore,
    from: u64,
    limit: usize,
) -> Result<Vec<RawEvent>, AuditError> {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        schema_version: u32,
        prev_hash: String,
        hash: String,
        #[serde(borrow)]
        metadata: &'a serde_json::value::RawValue,
    }
    let events = store.read_all_stored(from, limit).await?;
    Ok(events
        .iter()
        .map(|e| {
            let mut raw = RawEvent {
                position: e.position.commit,
                stream_id: e.stream_id().to_owned(),
                version: e.revision + 1,
                event_id: e.id,
                event_type: e.event_type.clone(),
                schema_version: 0,
                data: String::from_utf8_lossy(&e.data).into_owned(),
                metadata: String::new(),
                prev_hash: Vec::new(),
                hash: Vec::new(),
                problem: None,
            };
            let envelope = serde_json::from_slice::<Envelope<'_>>(&e.custom_metadata)
                .map_err(|err| err.to_string())
                .and_then(|env| {
                    let prev = hex::decode(&env.prev_hash).map_err(|err| err.to_string())?;
                    let hash = hex::decode(&env.hash).map_err(|err| err.to_string())?;
                    Ok((
                        env.schema_version,
                        env.metadata.get().to_owned(),
                        prev,
                        hash,
                    ))
                });
            match envelope {
                Ok((schema_version, metadata, prev_hash, hash)) => {
                    raw.schema_version = schema_version;
                    raw.metadata = metadata;
                    raw.prev_hash = prev_hash;
                    raw.hash = hash;
                }
                Err(reason) => raw.problem = Some(format!("careflow metadata: {reason}")),
            }
            if std::str::from_utf8(&e.data).is_err() {
                raw.problem = Some("data is not UTF-8".into());
            }
            raw
        })
        .collect())
}

/// A read-only connection (`query_only`), usable while a server writes the same file.
pub(crate) fn open_sqlite(path: &std::path::Path) -> Result<rusqlite::Connection, AuditError> {
    if !path.exists() {
        return Err(AuditError::file(
            path,
            "no such database (is data_dir right?)",
        ));
    }
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| AuditError::file(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(AuditError::database)?;
    conn.execute_batch("PRAGMA query_only=ON; PRAGMA cache_size=-65536;")
        .map_err(AuditError::database)?;
    Ok(conn)
}

/// Calls `visit` with each row with `from <= position < to`, in position order, on `conn`.
/// Rows are borrowed from SQLite where possible; a row with a text column that is not UTF-8
/// is decoded leniently into a [`RawEvent`] first.
///
/// # Errors
/// [`AuditError::Database`].
pub(crate) fn visit_sqlite_window(
    conn: &rusqlite::Connection,
    from: u64,
    to: u64,
    mut visit: impl FnMut(&RowView<'_>),
) -> Result<(), AuditError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "{SELECT} WHERE position >= ?1 AND position < ?2 ORDER BY position"
        ))
        .map_err(AuditError::database)?;
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let mut rows = stmt
        .query(rusqlite::params![clamp(from), clamp(to)])
        .map_err(AuditError::database)?;
    while let Some(row) = rows.next().map_err(AuditError::database)? {
        match sqlite_view(row) {
            Some(view) => visit(&view),
            None => visit(&sqlite_row(row).view()),
        }
    }
    Ok(())
}

/// A borrowed view of a row whose columns have their declared types and whose text is
/// UTF-8; `None` otherwise (the caller then decodes it leniently with `sqlite_row`).
fn sqlite_view<'a>(row: &'a rusqlite::Row<'_>) -> Option<RowView<'a>> {
    let int = |i: usize| match row.get_ref(i) {
        Ok(ValueRef::Integer(n)) if n >= 0 => Some(n as u64),
        _ => None,
    };
    let text = |i: usize| match row.get_ref(i) {
        Ok(ValueRef::Text(bytes)) => std::str::from_utf8(bytes).ok(),
        _ => None,
    };
    let blob = |i: usize| match row.get_ref(i) {
        Ok(ValueRef::Blob(bytes)) => Some(bytes),
        _ => None,
    };
    Some(RowView {
        position: int(0)?,
        stream_id: text(1)?,
        version: int(2)?,
        event_id: Uuid::from_slice(blob(3)?).ok()?,
        event_type: text(4)?,
        schema_version: u32::try_from(int(5)?).ok()?,
        data: text(6)?,
        metadata: text(7)?,
        prev_hash: blob(8)?,
        hash: blob(9)?,
        problem: None,
    })
}

/// Decodes a row leniently: a column of the wrong type becomes `problem`, text that is not
/// UTF-8 is read with replacement characters (its hash then fails, which is the finding).
fn sqlite_row(row: &rusqlite::Row<'_>) -> RawEvent {
    let mut problem: Option<String> = None;
    let mut int = |i: usize, name: &str| match row.get_ref(i) {
        Ok(ValueRef::Integer(n)) if n >= 0 => n as u64,
        _ => {
            problem.get_or_insert_with(|| format!("{name} is not a whole number"));
            0
        }
    };
    let position = int(0, "position");
    let version = int(2, "version");
    let schema_version = u32::try_from(int(5, "schema_version")).unwrap_or(0);
    let text = |i: usize| match row.get_ref(i) {
        Ok(ValueRef::Text(bytes) | ValueRef::Blob(bytes)) => match std::str::from_utf8(bytes) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        },
        _ => String::new(),
    };
    let bytes = |i: usize| match row.get_ref(i) {
        Ok(ValueRef::Blob(bytes) | ValueRef::Text(bytes)) => bytes.to_vec(),
        _ => Vec::new(),
    };
    let event_id_bytes = bytes(3);
    let event_id = Uuid::from_slice(&event_id_bytes).unwrap_or_else(|_| {
        problem.get_or_insert_with(|| "event_id is not 16 bytes".into());
        Uuid::nil()
    });
    RawEvent {
        position,
        stream_id: text(1),
        version,
        event_id,
        event_type: text(4),
        schema_version,
        data: text(6),
        metadata: text(7),
        prev_hash: bytes(8),
        hash: bytes(9),
        problem,
    }
}

/// A PostgreSQL reader of position windows: one connection, one prepared statement.
pub(crate) struct PostgresWindows {
    client: tokio_postgres::Client,
    statement: tokio_postgres::Statement,
}

impl PostgresWindows {
    /// # Errors
    /// [`AuditError::Database`].
    pub(crate) async fn open(url: &str, schema: &str) -> Result<Self, AuditError> {
        let client = super::pg_connect(url, schema).await?;
        let statement = client
            .prepare(&format!(
                "{SELECT} WHERE position >= $1 AND position < $2 ORDER BY position"
            ))
            .await
            .map_err(AuditError::database)?;
        Ok(Self { client, statement })
    }

    /// The rows with `from <= position < to`, in position order.
    ///
    /// # Errors
    /// [`AuditError::Database`].
    pub(crate) async fn read(&self, from: u64, to: u64) -> Result<Vec<RawEvent>, AuditError> {
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(&self.statement, &[&clamp(from), &clamp(to)])
            .await
            .map_err(AuditError::database)?;
        Ok(rows
            .iter()
            .map(|row| RawEvent {
                position: row.get::<_, i64>(0).max(0) as u64,
                stream_id: row.get(1),
                version: row.get::<_, i64>(2).max(0) as u64,
                event_id: row.get(3),
                event_type: row.get(4),
                schema_version: row.get::<_, i32>(5).max(0) as u32,
                data: row.get(6),
                metadata: row.get(7),
                prev_hash: row.get(8),
                hash: row.get(9),
                problem: None,
            })
            .collect())
    }
}
