//! Signed checkpoints: the server's signed word on how long the log was and what it held.
//!
//! A hash chain proves each stream's history is consistent, but not that it is *complete*:
//! whoever can delete the newest events of the log leaves perfectly valid chains behind. So
//! `serve` periodically (every [`CHECKPOINT_EVERY`]) and at a clean shutdown signs a
//! [`Checkpoint`]: the newest position, the hash of the event there, the log digest through it
//! (`careflow_aggregates::log_verifier`, which covers every position and hash before it, so
//! also a reordering across streams), the time, and the public key. `audit verify` checks that
//! the log reaches every checkpoint and matches it.
//!
//! Checkpoints are kept beside the events: the `audit_checkpoints` table in `careflow.db`
//! (SQLite) or in careflow's schema (PostgreSQL), append-only by trigger like `events`. A
//! tamperer who can delete events can delete checkpoints too; an auditor who wants protection
//! against that keeps a copy of the newest checkpoint elsewhere (`audit verify` prints it,
//! docs/audit-guide.md).

use std::sync::Arc;
use std::time::Duration;

use careflow_aggregates::EventHash;
use careflow_aggregates::log_verifier::digest_step;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use tokio::sync::Mutex;

use super::AuditError;
use super::raw::{LogSource, open_sqlite};
use crate::clock::Clock;
use crate::config::Config;
use crate::store::EventStore;

/// How often `serve` signs a checkpoint (when the log has grown since the last one).
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);

/// Events read per store call while extending the digest.
const PAGE: usize = 10_000;

/// One signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: u64,
    /// Hash of the event at `position`.
    pub last_hash: EventHash,
    /// Log digest through `position`.
    pub log_digest: EventHash,
    pub created_at: DateTime<Utc>,
    pub public_key: [u8; 32],
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// The signed bytes: a fixed text, so anyone can re-derive them from the stored columns.
    pub fn message(
        position: u64,
        last_hash: EventHash,
        log_digest: EventHash,
        created_at: DateTime<Utc>,
    ) -> Vec<u8> {
        format!(
            "careflow-checkpoint-v1\nposition {position}\nlast_hash {last_hash}\nlog_digest {log_digest}\ncreated_at {}\n",
            created_at.to_rfc3339_opts(SecondsFormat::Micros, true)
        )
        .into_bytes()
    }

    pub fn sign(
        key: &SigningKey,
        position: u64,
        last_hash: EventHash,
        log_digest: EventHash,
        created_at: DateTime<Utc>,
    ) -> Self {
        let signature = key.sign(&Self::message(position, last_hash, log_digest, created_at));
        Self {
            position,
            last_hash,
            log_digest,
            created_at,
            public_key: key.verifying_key().to_bytes(),
            signature: signature.to_bytes(),
        }
    }

    /// Whether the signature is the embedded public key's signature of the contents.
    pub fn signature_holds(&self) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.public_key) else {
            return false;
        };
        let message = Self::message(
            self.position,
            self.last_hash,
            self.log_digest,
            self.created_at,
        );
        key.verify(&message, &Signature::from_bytes(&self.signature))
            .is_ok()
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.public_key)
    }
}

const SQLITE_TABLE: &str = "
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    id         INTEGER PRIMARY KEY,
    position   INTEGER NOT NULL,
    last_hash  BLOB    NOT NULL,
    log_digest BLOB    NOT NULL,
    created_at TEXT    NOT NULL,
    public_key BLOB    NOT NULL,
    signature  BLOB    NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_append_only_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_append_only_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
";

/// `events_are_append_only()` is created with the store's schema.
const POSTGRES_TABLE: &str = "
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    id         bigserial PRIMARY KEY,
    position   bigint NOT NULL,
    last_hash  bytea  NOT NULL,
    log_digest bytea  NOT NULL,
    created_at text   NOT NULL,
    public_key bytea  NOT NULL,
    signature  bytea  NOT NULL
);
CREATE OR REPLACE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();
";

const SELECT: &str = "SELECT position, last_hash, log_digest, created_at, public_key, signature \
     FROM audit_checkpoints ORDER BY position, id";

/// Every stored checkpoint, oldest position first; none when the table does not exist yet.
///
/// A row that does not decode is returned with a zero signature, so it fails as a finding
/// rather than stopping the check.
///
/// # Errors
/// [`AuditError::Database`].
pub async fn load_all(source: &LogSource) -> Result<Vec<Checkpoint>, AuditError> {
    type Row = (i64, Vec<u8>, Vec<u8>, String, Vec<u8>, Vec<u8>);
    let rows: Vec<Row> = match source {
        LogSource::Kurrent { checkpoints, .. } if !checkpoints.exists() => Vec::new(),
        LogSource::Sqlite(path)
        | LogSource::Kurrent {
            checkpoints: path, ..
        } => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let conn = open_sqlite(&path)?;
                let exists: bool = conn
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'audit_checkpoints')",
                        [],
                        |r| r.get(0),
                    )
                    .map_err(AuditError::database)?;
                if !exists {
                    return Ok(Vec::new());
                }
                let mut stmt = conn.prepare(SELECT).map_err(AuditError::database)?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                    })
                    .map_err(AuditError::database)?;
                rows.collect::<Result<Vec<Row>, _>>()
                    .map_err(AuditError::database)
            })
            .await
            .map_err(AuditError::database)??
        }
        LogSource::Postgres { url, schema } => {
            let client = super::pg_connect(url, schema).await?;
            let exists: bool = client
                .query_one("SELECT to_regclass('audit_checkpoints') IS NOT NULL", &[])
                .await
                .map_err(AuditError::database)?
                .get(0);
            if !exists {
                return Ok(Vec::new());
            }
            client
                .query(SELECT, &[])
                .await
                .map_err(AuditError::database)?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
                .collect()
        }
    };
    rows.into_iter().map(decode).collect()
}

/// A stored checkpoint row. One that does not read (a column of the wrong length, a
/// negative position) is an error naming it, never a zeroed checkpoint: a guessed
/// checkpoint could not be trusted, and the auditor must hear that the table was damaged.
fn decode(
    row: (i64, Vec<u8>, Vec<u8>, String, Vec<u8>, Vec<u8>),
) -> Result<Checkpoint, AuditError> {
    let (position, last_hash, log_digest, created_at, public_key, signature) = row;
    let corrupt = |column: &str, reason: String| {
        AuditError::Format(format!(
            "audit checkpoint at position {position}: {column} does not read: {reason}"
        ))
    };
    let hash = |column: &str, bytes: &[u8]| {
        EventHash::from_slice(bytes).map_err(|reason| corrupt(column, reason))
    };
    Ok(Checkpoint {
        position: u64::try_from(position).map_err(|e| corrupt("position", e.to_string()))?,
        last_hash: hash("last_hash", &last_hash)?,
        log_digest: hash("log_digest", &log_digest)?,
        created_at: DateTime::parse_from_rfc3339(&created_at)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| corrupt("created_at", e.to_string()))?,
        public_key: public_key
            .try_into()
            .map_err(|v: Vec<u8>| corrupt("public_key", format!("{} bytes, not 32", v.len())))?,
        signature: signature
            .try_into()
            .map_err(|v: Vec<u8>| corrupt("signature", format!("{} bytes, not 64", v.len())))?,
    })
}

/// Where a running server writes its checkpoints.
enum Sink {
    Sqlite(std::sync::Arc<std::sync::Mutex<rusqlite::Connection>>),
    Postgres(tokio_postgres::Client),
}

impl Sink {
    async fn open(source: &LogSource) -> Result<Self, AuditError> {
        match source {
            LogSource::Sqlite(path)
            | LogSource::Kurrent {
                checkpoints: path, ..
            } => {
                let conn =
                    rusqlite::Connection::open(path).map_err(|e| AuditError::file(path, e))?;
                conn.busy_timeout(Duration::from_secs(5))
                    .map_err(AuditError::database)?;
                conn.execute_batch(SQLITE_TABLE)
                    .map_err(AuditError::database)?;
                Ok(Sink::Sqlite(Arc::new(std::sync::Mutex::new(conn))))
            }
            LogSource::Postgres { url, schema } => {
                let client = super::pg_connect(url, schema).await?;
                client
                    .batch_execute(&format!(
                        "SELECT pg_advisory_lock(hashtext('careflow-checkpoints-' || '{schema}')); \
                         {POSTGRES_TABLE} \
                         SELECT pg_advisory_unlock(hashtext('careflow-checkpoints-' || '{schema}'));"
                    ))
                    .await
                    .map_err(AuditError::database)?;
                Ok(Sink::Postgres(client))
            }
        }
    }

    async fn insert(&self, c: &Checkpoint) -> Result<(), AuditError> {
        let created_at = c.created_at.to_rfc3339_opts(SecondsFormat::Micros, true);
        match self {
            Sink::Sqlite(conn) => {
                let conn = Arc::clone(conn);
                let c = c.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = conn
                        .lock()
                        .map_err(|_| AuditError::database("checkpoint connection poisoned"))?;
                    conn.execute(
                        "INSERT INTO audit_checkpoints \
                         (position, last_hash, log_digest, created_at, public_key, signature) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        rusqlite::params![
                            c.position as i64,
                            c.last_hash.0.as_slice(),
                            c.log_digest.0.as_slice(),
                            created_at,
                            c.public_key.as_slice(),
                            c.signature.as_slice(),
                        ],
                    )
                    .map(|_| ())
                    .map_err(AuditError::database)
                })
                .await
                .map_err(AuditError::database)?
            }
            Sink::Postgres(client) => client
                .execute(
                    "INSERT INTO audit_checkpoints \
                     (position, last_hash, log_digest, created_at, public_key, signature) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &(c.position as i64),
                        &c.last_hash.0.as_slice(),
                        &c.log_digest.0.as_slice(),
                        &created_at,
                        &c.public_key.as_slice(),
                        &c.signature.as_slice(),
                    ],
                )
                .await
                .map(|_| ())
                .map_err(AuditError::database),
        }
    }
}

/// Extends the log digest as the log grows and signs checkpoints; owned by `serve`.
pub struct Checkpointer {
    store: Arc<dyn EventStore>,
    sink: Sink,
    key: SigningKey,
    /// Position and digest through it, as of the newest checkpoint or digest extension.
    through: Mutex<(u64, EventHash, EventHash)>,
    /// What dates each checkpoint.
    clock: Clock,
}

impl Checkpointer {
    /// Opens the checkpoint table (creating it) and resumes the digest from the newest
    /// stored checkpoint. A checkpoint is trusted here without re-reading the log: if the log
    /// was cut below it, the next checkpoint's digest will not match the log either, so the
    /// damage stays evident to `audit verify` rather than being signed over.
    ///
    /// # Errors
    /// [`AuditError`] when the key, the table or the checkpoints cannot be read.
    pub async fn open(
        config: &Config,
        store: Arc<dyn EventStore>,
        clock: Clock,
    ) -> Result<Self, AuditError> {
        let key = super::key::load_or_create(config)?;
        let source = LogSource::from_config(config)?;
        let sink = Sink::open(&source).await?;
        let newest = load_all(&source).await?.into_iter().last();
        let through = match newest {
            Some(c) => (c.position, c.last_hash, c.log_digest),
            None => (0, EventHash::ZERO, EventHash::ZERO),
        };
        Ok(Self {
            store,
            sink,
            key,
            through: Mutex::new(through),
            clock,
        })
    }

    /// Extends the digest to the log's head and, when it moved, signs and stores a checkpoint.
    ///
    /// # Errors
    /// [`AuditError`] when the log cannot be read or the checkpoint not stored.
    pub async fn write(&self) -> Result<Option<Checkpoint>, AuditError> {
        let mut through = self.through.lock().await;
        let (start, _, _) = *through;
        let (mut position, mut last_hash, mut digest) = *through;
        loop {
            let page = self.store.read_all(position + 1, PAGE).await?;
            for event in &page {
                digest = digest_step(digest, event.position, event.hash);
                position = event.position;
                last_hash = event.hash;
            }
            if page.len() < PAGE {
                break;
            }
        }
        if position == start {
            return Ok(None);
        }
        let checkpoint = Checkpoint::sign(&self.key, position, last_hash, digest, self.clock.now());
        self.sink.insert(&checkpoint).await?;
        *through = (position, last_hash, digest);
        tracing::info!(position, "audit checkpoint signed");
        Ok(Some(checkpoint))
    }

    /// Signs a checkpoint every [`CHECKPOINT_EVERY`] until the task is aborted.
    pub fn spawn_periodic(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(CHECKPOINT_EVERY);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                if let Err(error) = this.write().await {
                    tracing::warn!(%error, "audit checkpoint failed; retrying at the next interval");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_signature_covers_every_field() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let c = Checkpoint::sign(&key, 10, EventHash([1; 32]), EventHash([2; 32]), at);
        assert!(c.signature_holds());
        let altered = [
            Checkpoint {
                position: 9,
                ..c.clone()
            },
            Checkpoint {
                last_hash: EventHash([3; 32]),
                ..c.clone()
            },
            Checkpoint {
                log_digest: EventHash([3; 32]),
                ..c.clone()
            },
            Checkpoint {
                created_at: at + chrono::Duration::seconds(1),
                ..c.clone()
            },
            Checkpoint {
                public_key: SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes(),
                ..c.clone()
            },
        ];
        for a in altered {
            assert!(!a.signature_holds(), "{a:?}");
        }
        // What is stored decodes back to the same checkpoint.
        let row = (
            10,
            c.last_hash.0.to_vec(),
            c.log_digest.0.to_vec(),
            c.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            c.public_key.to_vec(),
            c.signature.to_vec(),
        );
        assert_eq!(decode(row).unwrap(), c);
    }

    #[test]
    fn a_checkpoint_row_that_does_not_read_is_an_error_not_a_zeroed_checkpoint() {
        let row = |hash: Vec<u8>| {
            (
                7_i64,
                hash,
                vec![0; 32],
                "2026-01-01T00:00:00Z".to_owned(),
                vec![0; 32],
                vec![0; 64],
            )
        };
        assert!(decode(row(vec![0; 32])).is_ok());
        let error = decode(row(vec![0; 31])).unwrap_err().to_string();
        assert!(
            error.contains("position 7: last_hash does not read"),
            "{error}"
        );
        let mut bad_time = row(vec![0; 32]);
        bad_time.3 = "yesterday".to_owned();
        assert!(
            decode(bad_time)
                .unwrap_err()
                .to_string()
                .contains("created_at")
        );
    }
}
