//! Where wrapped data keys live: `keys.db` beside the SQLite events, or table `patient_keys`
//! in the PostgreSQL schema.
//!
//! Keys are made ahead of need: a batch of fresh keys is written durably (one commit for the
//! batch) before any of them is handed out, so a committed event never refers to a key a
//! crash lost, and a registration does not wait for a commit of its own. A key is found by its
//! id (`kid`), which every envelope carries; which patient holds it is what the patient's
//! events say, so erasure deletes every `kid` found in the patient's stream (a patient may hold
//! several: one per cold cache that sealed something). Erasure also records the MRN in
//! `erased_patients`, so no key is used for that patient again. On SQLite the file runs
//! with `secure_delete=ON` (freed cells are zeroed) and the WAL is checkpointed and truncated
//! after an erasure, so the wrapped key's bytes are not left in a free page or an old WAL
//! frame. On PostgreSQL a `VACUUM` follows; what PostgreSQL keeps in its WAL archive and
//! backups is covered in docs/operations.md.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use rusqlite::{Connection, OptionalExtension, params};

use super::PersonalDataError;
use crate::store::side::{self, SideStoreError, Synchronous};

/// A data key as stored: its id and the key wrapped with the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub kid: String,
    pub wrapped: Vec<u8>,
}

/// Storage of wrapped data keys.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// The wrapped key `kid`, if it still exists.
    async fn by_kid(&self, kid: &str) -> Result<Option<Vec<u8>>, PersonalDataError>;
    /// Stores fresh, unassigned keys. Durable when it returns.
    async fn add(&self, keys: Vec<WrappedKey>) -> Result<(), PersonalDataError>;
    /// Deletes every key in `kids` and remembers that `mrn` was erased (idempotent). Durable
    /// when it returns.
    async fn destroy(&self, mrn: &str, kids: &[String]) -> Result<(), PersonalDataError>;
    /// Whether `mrn` was erased.
    async fn is_erased(&self, mrn: &str) -> Result<bool, PersonalDataError>;
    /// Records the master key's fingerprint, or checks it against the recorded one.
    async fn check_master(&self, fingerprint: &str) -> Result<(), PersonalDataError>;
}

fn unavailable(error: impl std::fmt::Display) -> PersonalDataError {
    PersonalDataError::unavailable(error)
}

pub(super) fn not_opened(error: SideStoreError) -> PersonalDataError {
    unavailable(error.describe())
}

/// The SQLite file beside `careflow.db`.
pub(crate) const FILE: &str = "keys.db";

const SQLITE_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS patient_keys (
        kid TEXT PRIMARY KEY,
        wrapped BLOB NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE TABLE IF NOT EXISTS erased_patients (
        mrn TEXT PRIMARY KEY,
        erased_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE TABLE IF NOT EXISTS master_key_check (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        fingerprint TEXT NOT NULL
    );";

type Reply = tokio::sync::oneshot::Sender<Result<(), PersonalDataError>>;

enum Job {
    Add {
        keys: Vec<WrappedKey>,
        reply: Reply,
    },
    Destroy {
        mrn: String,
        kids: Vec<String>,
        reply: Reply,
    },
}

/// Keys in `keys.db`: one writer thread commits whatever is waiting in one transaction;
/// reads use their own connection.
pub struct SqliteKeys {
    reader: Mutex<Connection>,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    path: PathBuf,
}

impl SqliteKeys {
    /// Opens (creating) the file and starts its writer thread.
    ///
    /// # Errors
    /// [`PersonalDataError::Unavailable`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, PersonalDataError> {
        let path = path.as_ref().to_path_buf();
        let connect = || -> Result<Connection, PersonalDataError> {
            // synchronous=FULL: an acknowledged key may already seal an event's data.
            let conn = side::open_sqlite(&path, Synchronous::Full).map_err(not_opened)?;
            conn.execute_batch("PRAGMA secure_delete=ON;")
                .map_err(unavailable)?;
            Ok(conn)
        };
        let writer = connect()?;
        writer.execute_batch(SQLITE_SCHEMA).map_err(unavailable)?;
        let reader = connect()?;
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("careflow-keys".into())
            .spawn(move || write_loop(writer, receiver))
            .map_err(unavailable)?;
        Ok(Self {
            reader: Mutex::new(reader),
            writer: Mutex::new(Some(sender)),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, job: Job) -> Result<(), PersonalDataError> {
        let guard = self
            .writer
            .lock()
            .map_err(|_| unavailable("key writer lock poisoned"))?;
        guard
            .as_ref()
            .ok_or_else(|| unavailable("key store is closed"))?
            .send(job)
            .map_err(|_| unavailable("key writer stopped"))
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, PersonalDataError> {
        // On the calling thread: one indexed row, and only on a cache miss.
        let conn = self
            .reader
            .lock()
            .map_err(|_| unavailable("key reader lock poisoned"))?;
        f(&conn).map_err(unavailable)
    }
}

fn erased(conn: &Connection, mrn: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM erased_patients WHERE mrn = ?1")?
        .query_row(params![mrn], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Takes every job waiting, runs them in one transaction, commits (one fsync), answers.
fn write_loop(mut conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let destroyed = batch.iter().any(|j| matches!(j, Job::Destroy { .. }));
        let result = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for job in &batch {
                match job {
                    Job::Add { keys, .. } => {
                        let mut insert = tx.prepare_cached(
                            "INSERT OR IGNORE INTO patient_keys (kid, wrapped) VALUES (?1, ?2)",
                        )?;
                        for key in keys {
                            insert.execute(params![key.kid, key.wrapped])?;
                        }
                    }
                    Job::Destroy { mrn, kids, .. } => {
                        for kid in kids {
                            tx.prepare_cached("DELETE FROM patient_keys WHERE kid = ?1")?
                                .execute(params![kid])?;
                        }
                        tx.prepare_cached(
                            "INSERT OR IGNORE INTO erased_patients (mrn) VALUES (?1)",
                        )?
                        .execute(params![mrn])?;
                    }
                }
            }
            tx.commit()
        })();
        if destroyed && result.is_ok() {
            // Copy the zeroed pages into the file and empty the WAL, so the old frames that
            // held the key are gone too (secure_delete only zeroes the current page).
            if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                row.get::<_, i64>(0)
            }) {
                tracing::warn!(%error, "keys.db checkpoint after erasure failed");
            }
        }
        let result = result.map_err(unavailable);
        for job in batch {
            match job {
                Job::Add { reply, .. } | Job::Destroy { reply, .. } => {
                    let _ = reply.send(result.clone());
                }
            }
        }
    }
}

#[async_trait]
impl KeyStore for SqliteKeys {
    async fn by_kid(&self, kid: &str) -> Result<Option<Vec<u8>>, PersonalDataError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT wrapped FROM patient_keys WHERE kid = ?1")?
                .query_row(params![kid], |row| row.get(0))
                .optional()
        })
    }

    async fn add(&self, keys: Vec<WrappedKey>) -> Result<(), PersonalDataError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Job::Add { keys, reply })?;
        answer
            .await
            .map_err(|_| unavailable("key writer stopped"))?
    }

    async fn destroy(&self, mrn: &str, kids: &[String]) -> Result<(), PersonalDataError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Job::Destroy {
            mrn: mrn.to_owned(),
            kids: kids.to_vec(),
            reply,
        })?;
        answer
            .await
            .map_err(|_| unavailable("key writer stopped"))?
    }

    async fn is_erased(&self, mrn: &str) -> Result<bool, PersonalDataError> {
        self.read(|conn| erased(conn, mrn))
    }

    async fn check_master(&self, fingerprint: &str) -> Result<(), PersonalDataError> {
        let stored: String = self.read(|conn| {
            conn.execute(
                "INSERT OR IGNORE INTO master_key_check (id, fingerprint) VALUES (1, ?1)",
                params![fingerprint],
            )?;
            conn.query_row(
                "SELECT fingerprint FROM master_key_check WHERE id = 1",
                [],
                |row| row.get(0),
            )
        })?;
        if stored == fingerprint {
            Ok(())
        } else {
            Err(PersonalDataError::MasterKeyMismatch { expected: stored })
        }
    }
}

/// Keys in the events' PostgreSQL schema, shared by every node.
pub struct PostgresKeys {
    pool: Pool,
    schema: String,
}

fn pg(error: tokio_postgres::Error) -> PersonalDataError {
    unavailable(crate::store::postgres::describe_pg_error(&error))
}

impl PostgresKeys {
    /// Connects and creates the tables when missing.
    ///
    /// # Errors
    /// [`PersonalDataError::Unavailable`]; also when `schema` is not a plain identifier.
    pub async fn open(url: &str, schema: &str) -> Result<Self, PersonalDataError> {
        let pool = side::open_tables(
            url,
            schema,
            &format!(
                "CREATE TABLE IF NOT EXISTS {schema}.patient_keys (
                    kid TEXT PRIMARY KEY,
                    wrapped BYTEA NOT NULL,
                    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
                );
                CREATE TABLE IF NOT EXISTS {schema}.erased_patients (
                    mrn TEXT PRIMARY KEY,
                    erased_at TIMESTAMPTZ NOT NULL DEFAULT now()
                );
                CREATE TABLE IF NOT EXISTS {schema}.master_key_check (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    fingerprint TEXT NOT NULL
                );"
            ),
        )
        .await
        .map_err(not_opened)?;
        Ok(Self {
            pool,
            schema: schema.to_owned(),
        })
    }
}

#[async_trait]
impl KeyStore for PostgresKeys {
    async fn by_kid(&self, kid: &str) -> Result<Option<Vec<u8>>, PersonalDataError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT wrapped FROM {}.patient_keys WHERE kid = $1",
                    self.schema
                ),
                &[&kid],
            )
            .await
            .map_err(pg)?;
        row.map(|r| r.try_get(0)).transpose().map_err(pg)
    }

    async fn add(&self, keys: Vec<WrappedKey>) -> Result<(), PersonalDataError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
        let wrapped: Vec<&[u8]> = keys.iter().map(|k| k.wrapped.as_slice()).collect();
        client
            .execute(
                &format!(
                    "INSERT INTO {}.patient_keys (kid, wrapped)
                     SELECT * FROM UNNEST($1::text[], $2::bytea[])
                     ON CONFLICT (kid) DO NOTHING",
                    self.schema
                ),
                &[&kids, &wrapped],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn destroy(&self, mrn: &str, kids: &[String]) -> Result<(), PersonalDataError> {
        let mut client = self.pool.get().await.map_err(unavailable)?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute(
            &format!(
                "DELETE FROM {}.patient_keys WHERE kid = ANY($1)",
                self.schema
            ),
            &[&kids],
        )
        .await
        .map_err(pg)?;
        tx.execute(
            &format!(
                "INSERT INTO {}.erased_patients (mrn) VALUES ($1) ON CONFLICT (mrn) DO NOTHING",
                self.schema
            ),
            &[&mrn],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        // Dead row versions out of the table's pages (not a guarantee for PostgreSQL's WAL
        // and backups; see docs/operations.md).
        if let Err(error) = client
            .batch_execute(&format!("VACUUM {}.patient_keys", self.schema))
            .await
        {
            tracing::warn!(error = %crate::store::postgres::describe_pg_error(&error), "VACUUM of patient_keys after erasure failed");
        }
        Ok(())
    }

    async fn is_erased(&self, mrn: &str) -> Result<bool, PersonalDataError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT 1 FROM {}.erased_patients WHERE mrn = $1",
                    self.schema
                ),
                &[&mrn],
            )
            .await
            .map_err(pg)?;
        Ok(row.is_some())
    }

    async fn check_master(&self, fingerprint: &str) -> Result<(), PersonalDataError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        client
            .execute(
                &format!(
                    "INSERT INTO {}.master_key_check (id, fingerprint) VALUES (1, $1)
                     ON CONFLICT (id) DO NOTHING",
                    self.schema
                ),
                &[&fingerprint],
            )
            .await
            .map_err(pg)?;
        let row = client
            .query_one(
                &format!(
                    "SELECT fingerprint FROM {}.master_key_check WHERE id = 1",
                    self.schema
                ),
                &[],
            )
            .await
            .map_err(pg)?;
        let stored: String = row.try_get(0).map_err(pg)?;
        if stored == fingerprint {
            Ok(())
        } else {
            Err(PersonalDataError::MasterKeyMismatch { expected: stored })
        }
    }
}
