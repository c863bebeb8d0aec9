//! Idempotency-Key records: what lets a retried HTTP command be recognised, and a reused key
//! with a different body be refused.
//!
//! The command id of a keyed request is derived (UUID v5 of principal and key, see
//! [`command_id_for`]), so the event store itself already refuses to append the same command
//! twice and can hand back its first result (`find_command`). What the store cannot tell is
//! whether the *body* is the same. This module keeps, per command id, a fingerprint of the
//! request (SHA-256 of method, path and the body's canonical JSON) and, once the command has
//! been answered, how it was answered:
//!
//! - an append or a no-op: only the status is kept; the answer is rebuilt from the store, so no
//!   personal data is copied here;
//! - a rejection (409/422 from the domain): the problem body, which holds no personal data.
//!
//! The record is claimed *before* the command runs, so two concurrent requests with one key
//! and different bodies cannot both get through. Storage: `idempotency.db` beside the SQLite
//! events (WAL, `synchronous=NORMAL`: records survive a process crash; a power cut may lose
//! the newest ones, and the group-committed event store is not held back by an fsync per
//! record), or table `idempotency_keys` in the PostgreSQL schema. Losing a record weakens
//! only the body comparison: the store still refuses a second append of the command id.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use deadpool_postgres::Pool;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::Config;
use crate::store::side::{self, SideStore, SideStoreError, Synchronous};

/// The namespace of derived command ids (a fixed random UUID: never change it, or retries
/// across an upgrade would no longer be recognised).
const NAMESPACE: Uuid = Uuid::from_u128(0x6c1f_2a8e_4b0d_4e55_9a43_7d2c_91f0_b3e7);

/// The command id of a request carrying `Idempotency-Key: key` from `principal`.
pub fn command_id_for(principal: &str, key: &str) -> Uuid {
    let mut name = Vec::with_capacity(principal.len() + key.len() + 1);
    name.extend_from_slice(principal.as_bytes());
    name.push(0);
    name.extend_from_slice(key.as_bytes());
    Uuid::new_v5(&NAMESPACE, &name)
}

/// The fingerprint of a request: method, path and the body as canonical JSON (so key order
/// and whitespace do not matter).
pub fn fingerprint(method: &str, path: &str, body: &serde_json::Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update([0]);
    hasher.update(path.as_bytes());
    hasher.update([0]);
    write_canonical(body, &mut hasher);
    hex::encode(hasher.finalize())
}

fn write_canonical(value: &serde_json::Value, hasher: &mut Sha256) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            hasher.update(b"{");
            for key in keys {
                hasher.update(
                    serde_json::Value::String(key.clone())
                        .to_string()
                        .as_bytes(),
                );
                hasher.update(b":");
                if let Some(inner) = map.get(key) {
                    write_canonical(inner, hasher);
                }
                hasher.update(b",");
            }
            hasher.update(b"}");
        }
        serde_json::Value::Array(items) => {
            hasher.update(b"[");
            for item in items {
                write_canonical(item, hasher);
                hasher.update(b",");
            }
            hasher.update(b"]");
        }
        other => hasher.update(other.to_string().as_bytes()),
    }
}

/// How a keyed command was answered the first time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredAnswer {
    /// A 2xx; rebuild the answer from the event store (or `body` for a no-op, which appended
    /// nothing the store could find).
    Success { body: Option<String> },
    /// A domain rejection: its status and problem body.
    Problem { status: u16, body: String },
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key was new: this request owns it.
    New,
    /// The key was seen before.
    Seen {
        fingerprint: String,
        answer: Option<StoredAnswer>,
    },
}

/// Why the record store failed (the request is answered 503).
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// Occurs when the database cannot be opened, read or written.
    #[error("idempotency records unavailable: {0}")]
    Unavailable(String),
}

/// A PostgreSQL error with the server's message.
fn pg(error: tokio_postgres::Error) -> IdempotencyError {
    unavailable(crate::store::postgres::describe_pg_error(&error))
}

fn unavailable(error: impl std::fmt::Display) -> IdempotencyError {
    IdempotencyError::Unavailable(error.to_string())
}

fn not_opened(error: SideStoreError) -> IdempotencyError {
    unavailable(error.describe())
}

/// The SQLite file beside `careflow.db`.
pub(crate) const FILE: &str = "idempotency.db";

/// Where idempotency records are kept.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Records `fingerprint` for `command_id` unless a record exists; says which happened.
    async fn claim(&self, command_id: Uuid, fingerprint: &str) -> Result<Claim, IdempotencyError>;
    /// Records how the command was answered.
    async fn complete(
        &self,
        command_id: Uuid,
        answer: StoredAnswer,
    ) -> Result<(), IdempotencyError>;
}

/// Opens the record store that matches the configured event store; `clock` stamps
/// `created_at`.
///
/// # Errors
/// [`IdempotencyError::Unavailable`].
pub async fn open(
    config: &Config,
    clock: &Clock,
) -> Result<Arc<dyn IdempotencyStore>, IdempotencyError> {
    match SideStore::of(config, FILE).map_err(not_opened)? {
        SideStore::Postgres { url, schema } => Ok(Arc::new(
            PostgresIdempotency::open(&url, &schema)
                .await?
                .with_clock(clock.clone()),
        )),
        SideStore::Sqlite(path) => Ok(Arc::new(
            SqliteIdempotency::open(path)?.with_clock(clock.clone()),
        )),
    }
}

fn split(answer: &StoredAnswer) -> (i64, Option<String>) {
    match answer {
        StoredAnswer::Success { body } => (200, body.clone()),
        StoredAnswer::Problem { status, body } => (i64::from(*status), Some(body.clone())),
    }
}

fn join(status: Option<i64>, body: Option<String>) -> Option<StoredAnswer> {
    match (status?, body) {
        (200, body) => Some(StoredAnswer::Success { body }),
        (status, Some(body)) => Some(StoredAnswer::Problem {
            status: u16::try_from(status).unwrap_or(500),
            body,
        }),
        (_, None) => None,
    }
}

/// Records in a SQLite file of their own.
pub struct SqliteIdempotency {
    conn: Arc<Mutex<Connection>>,
    clock: Clock,
}

impl SqliteIdempotency {
    /// Opens (creating) the file.
    ///
    /// # Errors
    /// [`IdempotencyError::Unavailable`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, IdempotencyError> {
        let conn = side::open_sqlite(path.as_ref(), Synchronous::Normal).map_err(not_opened)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS idempotency_keys (
                 command_id TEXT PRIMARY KEY,
                 fingerprint TEXT NOT NULL,
                 status INTEGER,
                 answer TEXT,
                 created_at TEXT NOT NULL
             );",
        )
        .map_err(unavailable)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            clock: Clock::system(),
        })
    }

    /// The same records with `created_at` stamped by `clock` (the system's by default).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    async fn with_conn<T, F>(&self, f: F) -> Result<T, IdempotencyError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, IdempotencyError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let guard = conn.lock().map_err(|_| unavailable("lock poisoned"))?;
            f(&guard)
        })
        .await
        .map_err(unavailable)?
    }
}

#[async_trait]
impl IdempotencyStore for SqliteIdempotency {
    async fn claim(&self, command_id: Uuid, fingerprint: &str) -> Result<Claim, IdempotencyError> {
        let fingerprint = fingerprint.to_owned();
        let created_at = self.clock.now().to_rfc3339();
        self.with_conn(move |conn| {
            let inserted = conn.prepare_cached("INSERT OR IGNORE INTO idempotency_keys (command_id, fingerprint, created_at)
                     VALUES (?1, ?2, ?3)").map_err(unavailable)?.execute(params![command_id.to_string(), fingerprint, created_at],
                )
                .map_err(unavailable)?;
            if inserted == 1 {
                return Ok(Claim::New);
            }
            let row = conn.prepare_cached("SELECT fingerprint, status, answer FROM idempotency_keys WHERE command_id = ?1").map_err(unavailable)?.query_row(params![command_id.to_string()],
                    |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, Option<i64>>(1)?,
                            row.get::<_, Option<String>>(2)?,
                        ))
                    },
                )
                .optional()
                .map_err(unavailable)?;
            match row {
                Some((fingerprint, status, body)) => Ok(Claim::Seen {
                    fingerprint,
                    answer: join(status, body),
                }),
                None => Err(unavailable("idempotency record vanished")),
            }
        })
        .await
    }

    async fn complete(
        &self,
        command_id: Uuid,
        answer: StoredAnswer,
    ) -> Result<(), IdempotencyError> {
        self.with_conn(move |conn| {
            let (status, body) = split(&answer);
            conn.prepare_cached(
                "UPDATE idempotency_keys SET status = ?2, answer = ?3 WHERE command_id = ?1",
            )
            .map_err(unavailable)?
            .execute(params![command_id.to_string(), status, body])
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}

/// Records in the events' PostgreSQL schema.
pub struct PostgresIdempotency {
    pool: Pool,
    table: String,
    clock: Clock,
}

impl PostgresIdempotency {
    /// Connects and creates the table when missing.
    ///
    /// # Errors
    /// [`IdempotencyError::Unavailable`].
    pub async fn open(url: &str, schema: &str) -> Result<Self, IdempotencyError> {
        let pool = side::open_tables(
            url,
            schema,
            &format!(
                "CREATE TABLE IF NOT EXISTS {schema}.idempotency_keys (
                    command_id UUID PRIMARY KEY,
                    fingerprint TEXT NOT NULL,
                    status INTEGER,
                    answer TEXT,
                    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
                );"
            ),
        )
        .await
        .map_err(not_opened)?;
        Ok(Self {
            pool,
            table: format!("{schema}.idempotency_keys"),
            clock: Clock::system(),
        })
    }

    /// The same records with `created_at` stamped by `clock` (the system's by default).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

#[async_trait]
impl IdempotencyStore for PostgresIdempotency {
    async fn claim(&self, command_id: Uuid, fingerprint: &str) -> Result<Claim, IdempotencyError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let inserted = client
            .execute(
                &format!(
                    "INSERT INTO {} (command_id, fingerprint, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (command_id) DO NOTHING",
                    self.table
                ),
                &[&command_id, &fingerprint, &self.clock.now()],
            )
            .await
            .map_err(pg)?;
        if inserted == 1 {
            return Ok(Claim::New);
        }
        let row = client
            .query_one(
                &format!(
                    "SELECT fingerprint, status, answer FROM {} WHERE command_id = $1",
                    self.table
                ),
                &[&command_id],
            )
            .await
            .map_err(pg)?;
        let fingerprint: String = row.try_get(0).map_err(pg)?;
        let status: Option<i32> = row.try_get(1).map_err(pg)?;
        let body: Option<String> = row.try_get(2).map_err(pg)?;
        Ok(Claim::Seen {
            fingerprint,
            answer: join(status.map(i64::from), body),
        })
    }

    async fn complete(
        &self,
        command_id: Uuid,
        answer: StoredAnswer,
    ) -> Result<(), IdempotencyError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let (status, body) = split(&answer);
        let status = i32::try_from(status).map_err(unavailable)?;
        client
            .execute(
                &format!(
                    "UPDATE {} SET status = $2, answer = $3 WHERE command_id = $1",
                    self.table
                ),
                &[&command_id, &status, &body],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn command_ids_depend_on_principal_and_key_only() {
        let a = command_id_for("ehr", "k1");
        assert_eq!(a, command_id_for("ehr", "k1"));
        assert_ne!(a, command_id_for("ehr2", "k1"));
        assert_ne!(a, command_id_for("ehr", "k2"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(command_id_for("ab", "c"), command_id_for("a", "bc"));
    }

    #[test]
    fn fingerprints_ignore_key_order_but_not_values_or_paths() {
        let one = fingerprint("POST", "/p", &json!({"a": 1, "b": {"c": "x", "d": [1, 2]}}));
        let same = fingerprint("POST", "/p", &json!({"b": {"d": [1, 2], "c": "x"}, "a": 1}));
        assert_eq!(one, same);
        assert_ne!(
            one,
            fingerprint("POST", "/q", &json!({"a": 1, "b": {"c": "x", "d": [1, 2]}}))
        );
        assert_ne!(
            one,
            fingerprint("POST", "/p", &json!({"a": 2, "b": {"c": "x", "d": [1, 2]}}))
        );
    }

    #[tokio::test]
    async fn sqlite_claims_once_and_keeps_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteIdempotency::open(dir.path().join("idempotency.db")).unwrap();
        let id = Uuid::from_u128(7);
        assert_eq!(store.claim(id, "f1").await.unwrap(), Claim::New);
        assert_eq!(
            store.claim(id, "f2").await.unwrap(),
            Claim::Seen {
                fingerprint: "f1".into(),
                answer: None
            }
        );
        let answer = StoredAnswer::Problem {
            status: 409,
            body: "{}".into(),
        };
        store.complete(id, answer.clone()).await.unwrap();
        assert_eq!(
            store.claim(id, "f1").await.unwrap(),
            Claim::Seen {
                fingerprint: "f1".into(),
                answer: Some(answer)
            }
        );
    }
}
