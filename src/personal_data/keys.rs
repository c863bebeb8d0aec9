//! Where wrapped data keys live: `keys.db` beside the SQLite events, or table `patient_keys`
//! in the PostgreSQL schema.
//!
//! A key is written durably *before* the first event that needs it is appended, so a
//! committed event never refers to a key that a crash lost. Erasure deletes the key's row and
//! records the MRN in `erased_patients`, so no key is ever created for that patient again.
//! On SQLite the file runs with `secure_delete=ON` (freed cells are zeroed) and the WAL is
//! checkpointed and truncated after an erasure, so the wrapped key's bytes are not left in a
//! free page or an old WAL frame. On PostgreSQL a `VACUUM` follows; what PostgreSQL keeps in its
//! WAL archive and backups is covered in docs/operations.md.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use rusqlite::{Connection, OptionalExtension, params};

use super::PersonalDataError;

/// A patient's key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredKey {
    /// The data key, wrapped with the master key.
    Wrapped { kid: String, wrapped: Vec<u8> },
    /// Destroyed by an erasure.
    Erased,
    /// Never created.
    Missing,
}

/// Storage of wrapped data keys.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    async fn load(&self, mrn: &str) -> Result<StoredKey, PersonalDataError>;
    /// Stores `wrapped` unless the patient already has a key or was erased; answers what is
    /// stored afterwards. Durable when it returns.
    async fn create(
        &self,
        mrn: &str,
        kid: &str,
        wrapped: Vec<u8>,
    ) -> Result<StoredKey, PersonalDataError>;
    /// Deletes the key and remembers the erasure (idempotent). Durable when it returns.
    async fn destroy(&self, mrn: &str) -> Result<(), PersonalDataError>;
    /// Records the master key's fingerprint, or checks it against the recorded one.
    async fn check_master(&self, fingerprint: &str) -> Result<(), PersonalDataError>;
}

fn unavailable(error: impl std::fmt::Display) -> PersonalDataError {
    PersonalDataError::unavailable(error)
}

const SQLITE_SCHEMA: &str = "
    PRAGMA journal_mode=WAL;
    PRAGMA synchronous=FULL;
    PRAGMA secure_delete=ON;
    PRAGMA busy_timeout=5000;
    CREATE TABLE IF NOT EXISTS patient_keys (
        mrn TEXT PRIMARY KEY,
        kid TEXT NOT NULL,
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

enum Job {
    Create {
        mrn: String,
        kid: String,
        wrapped: Vec<u8>,
        reply: tokio::sync::oneshot::Sender<Result<StoredKey, PersonalDataError>>,
    },
    Destroy {
        mrn: String,
        reply: tokio::sync::oneshot::Sender<Result<(), PersonalDataError>>,
    },
}

/// Keys in `keys.db`. One writer thread group-commits key creations (one fsync for every
/// registration waiting at that moment, like the event store's writer), so a burst of
/// registrations does not queue behind one fsync each; reads use their own connection.
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
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(unavailable)?;
        }
        let writer = Connection::open(&path).map_err(unavailable)?;
        writer.execute_batch(SQLITE_SCHEMA).map_err(unavailable)?;
        let reader = Connection::open(&path).map_err(unavailable)?;
        reader
            .execute_batch("PRAGMA busy_timeout=5000; PRAGMA secure_delete=ON;")
            .map_err(unavailable)?;
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
}

fn load_row(conn: &Connection, mrn: &str) -> rusqlite::Result<StoredKey> {
    let key = conn
        .prepare_cached("SELECT kid, wrapped FROM patient_keys WHERE mrn = ?1")?
        .query_row(params![mrn], |row| {
            Ok(StoredKey::Wrapped {
                kid: row.get(0)?,
                wrapped: row.get(1)?,
            })
        })
        .optional()?;
    if let Some(key) = key {
        return Ok(key);
    }
    let erased = conn
        .prepare_cached("SELECT 1 FROM erased_patients WHERE mrn = ?1")?
        .query_row(params![mrn], |_| Ok(()))
        .optional()?;
    Ok(if erased.is_some() {
        StoredKey::Erased
    } else {
        StoredKey::Missing
    })
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
        let result = (|| -> rusqlite::Result<Vec<StoredKey>> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut answers = Vec::with_capacity(batch.len());
            for job in &batch {
                match job {
                    Job::Create {
                        mrn, kid, wrapped, ..
                    } => {
                        let erased = tx
                            .prepare_cached("SELECT 1 FROM erased_patients WHERE mrn = ?1")?
                            .query_row(params![mrn], |_| Ok(()))
                            .optional()?;
                        if erased.is_none() {
                            tx.prepare_cached(
                                "INSERT OR IGNORE INTO patient_keys (mrn, kid, wrapped)
                                 VALUES (?1, ?2, ?3)",
                            )?
                            .execute(params![mrn, kid, wrapped])?;
                        }
                        answers.push(load_row(&tx, mrn)?);
                    }
                    Job::Destroy { mrn, .. } => {
                        tx.prepare_cached("DELETE FROM patient_keys WHERE mrn = ?1")?
                            .execute(params![mrn])?;
                        tx.prepare_cached(
                            "INSERT OR IGNORE INTO erased_patients (mrn) VALUES (?1)",
                        )?
                        .execute(params![mrn])?;
                        answers.push(StoredKey::Erased);
                    }
                }
            }
            tx.commit()?;
            Ok(answers)
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
        match result {
            Ok(answers) => {
                for (job, answer) in batch.into_iter().zip(answers) {
                    match job {
                        Job::Create { reply, .. } => {
                            let _ = reply.send(Ok(answer));
                        }
                        Job::Destroy { reply, .. } => {
                            let _ = reply.send(Ok(()));
                        }
                    }
                }
            }
            Err(error) => {
                let error = unavailable(error);
                for job in batch {
                    match job {
                        Job::Create { reply, .. } => {
                            let _ = reply.send(Err(error.clone()));
                        }
                        Job::Destroy { reply, .. } => {
                            let _ = reply.send(Err(error.clone()));
                        }
                    }
                }
            }
        }
    }
}

#[async_trait]
impl KeyStore for SqliteKeys {
    async fn load(&self, mrn: &str) -> Result<StoredKey, PersonalDataError> {
        // On the calling thread: one indexed row, and only on a cache miss.
        let conn = self
            .reader
            .lock()
            .map_err(|_| unavailable("key reader lock poisoned"))?;
        load_row(&conn, mrn).map_err(unavailable)
    }

    async fn create(
        &self,
        mrn: &str,
        kid: &str,
        wrapped: Vec<u8>,
    ) -> Result<StoredKey, PersonalDataError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Job::Create {
            mrn: mrn.to_owned(),
            kid: kid.to_owned(),
            wrapped,
            reply,
        })?;
        answer
            .await
            .map_err(|_| unavailable("key writer stopped"))?
    }

    async fn destroy(&self, mrn: &str) -> Result<(), PersonalDataError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Job::Destroy {
            mrn: mrn.to_owned(),
            reply,
        })?;
        answer
            .await
            .map_err(|_| unavailable("key writer stopped"))?
    }

    async fn check_master(&self, fingerprint: &str) -> Result<(), PersonalDataError> {
        let conn = self
            .reader
            .lock()
            .map_err(|_| unavailable("key reader lock poisoned"))?;
        conn.execute(
            "INSERT OR IGNORE INTO master_key_check (id, fingerprint) VALUES (1, ?1)",
            params![fingerprint],
        )
        .map_err(unavailable)?;
        let stored: String = conn
            .query_row(
                "SELECT fingerprint FROM master_key_check WHERE id = 1",
                [],
                |row| row.get(0),
            )
            .map_err(unavailable)?;
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
        if !crate::config::is_identifier(schema) {
            return Err(unavailable("database_schema is not a plain identifier"));
        }
        let pool = crate::snapshot::pg_pool(url).map_err(unavailable)?;
        let client = pool.get().await.map_err(unavailable)?;
        client
            .batch_execute(&format!(
                // Same advisory lock as the other side tables: nodes starting together.
                "BEGIN;
                 SELECT pg_advisory_xact_lock(hashtext('careflow-side-tables-{schema}'));
                 CREATE SCHEMA IF NOT EXISTS {schema};
                 CREATE TABLE IF NOT EXISTS {schema}.patient_keys (
                     mrn TEXT PRIMARY KEY,
                     kid TEXT NOT NULL,
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
                 );
                 COMMIT;"
            ))
            .await
            .map_err(pg)?;
        Ok(Self {
            pool,
            schema: schema.to_owned(),
        })
    }
}

#[async_trait]
impl KeyStore for PostgresKeys {
    async fn load(&self, mrn: &str) -> Result<StoredKey, PersonalDataError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT k.kid, k.wrapped, e.mrn IS NOT NULL
                     FROM (SELECT $1::text AS mrn) q
                     LEFT JOIN {s}.patient_keys k ON k.mrn = q.mrn
                     LEFT JOIN {s}.erased_patients e ON e.mrn = q.mrn",
                    s = self.schema
                ),
                &[&mrn],
            )
            .await
            .map_err(pg)?;
        let Some(row) = row else {
            return Ok(StoredKey::Missing);
        };
        let kid: Option<String> = row.try_get(0).map_err(pg)?;
        let wrapped: Option<Vec<u8>> = row.try_get(1).map_err(pg)?;
        let erased: bool = row.try_get(2).map_err(pg)?;
        Ok(match (kid, wrapped, erased) {
            (_, _, true) => StoredKey::Erased,
            (Some(kid), Some(wrapped), false) => StoredKey::Wrapped { kid, wrapped },
            _ => StoredKey::Missing,
        })
    }

    async fn create(
        &self,
        mrn: &str,
        kid: &str,
        wrapped: Vec<u8>,
    ) -> Result<StoredKey, PersonalDataError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        client
            .execute(
                &format!(
                    "INSERT INTO {s}.patient_keys (mrn, kid, wrapped)
                     SELECT $1, $2, $3
                     WHERE NOT EXISTS (SELECT 1 FROM {s}.erased_patients WHERE mrn = $1)
                     ON CONFLICT (mrn) DO NOTHING",
                    s = self.schema
                ),
                &[&mrn, &kid, &wrapped],
            )
            .await
            .map_err(pg)?;
        drop(client);
        // A new statement sees a row another node committed while this insert waited.
        self.load(mrn).await
    }

    async fn destroy(&self, mrn: &str) -> Result<(), PersonalDataError> {
        let mut client = self.pool.get().await.map_err(unavailable)?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute(
            &format!("DELETE FROM {}.patient_keys WHERE mrn = $1", self.schema),
            &[&mrn],
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
