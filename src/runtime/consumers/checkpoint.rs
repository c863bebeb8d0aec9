//! Where each process manager keeps its checkpoint (position + folded state) and how it owns
//! its work.
//!
//! One row per process manager: `(name, position, state, updated_at)`. The state is the
//! policy's JSON snapshot, written in the same statement as the position, so a restart never
//! pairs a position with a state from another moment.
//!
//! - SQLite: `process_managers.db` beside `careflow.db`, WAL with `synchronous=NORMAL`: a power
//!   cut may lose the newest checkpoints, which only redelivers events whose commands repeat
//!   their ids (harmless by design), so an fsync per batch would buy nothing. The event
//!   store's lock file already keeps a second process off the data dir, so the lease is
//!   granted at once.
//! - PostgreSQL: a table in the events' schema, shared by every node. A runner owns its
//!   process manager through a session advisory lock on a connection of its own (as the
//!   projection writers do): if the node dies, PostgreSQL ends the session and another node's
//!   runner takes over. Two nodes therefore never send one flow's commands concurrently.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use deadpool_postgres::Pool;
use rusqlite::{Connection, OptionalExtension, params};
use tokio_postgres::Client;

use crate::clock::Clock;
use crate::config::Config;
use crate::store::postgres::describe_pg_error;
use crate::store::side::{self, SideStore, SideStoreError, Synchronous};

/// Why the checkpoint table could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckpointError {
    /// Occurs when the database cannot be reached or refuses the statement.
    ///
    /// ### Handling
    /// The runner stops acting, waits with backoff and starts over from its checkpoint.
    #[error("consumer checkpoints unavailable: {0}")]
    Unavailable(String),
}

fn unavailable(error: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Unavailable(error.to_string())
}

fn not_opened(error: SideStoreError) -> CheckpointError {
    unavailable(error.describe())
}

/// The SQLite file beside `careflow.db` (named before the checkpoints served every consumer).
pub(crate) const FILE: &str = "process_managers.db";

/// A process manager's progress: everything before and at `position` has been acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: u64,
    /// The policy's state as JSON (`null` for stateless policies).
    pub state: String,
}

/// Proof that this runner is the one that acts for a process manager; dropped to release.
pub trait Lease: Send + Sync {
    /// False once the ownership is gone (the lock's connection ended): stop acting at once.
    fn is_held(&self) -> bool;
}

/// The checkpoint table and the leases.
#[async_trait]
pub trait CheckpointStore: Send + Sync + 'static {
    async fn load(&self, name: &str) -> Result<Option<Checkpoint>, CheckpointError>;
    async fn save(&self, name: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError>;
    /// Every consumer's checkpoint, by name (what `store copy` carries over).
    async fn all(&self) -> Result<Vec<(String, Checkpoint)>, CheckpointError>;
    /// The lease of `name`, or `None` while another node holds it.
    async fn acquire(&self, name: &str) -> Result<Option<Box<dyn Lease>>, CheckpointError>;
}

/// Opens the checkpoints that belong with the configured event store; `clock` stamps their
/// `updated_at`.
///
/// # Errors
/// [`CheckpointError::Unavailable`].
pub async fn open(
    config: &Config,
    clock: &Clock,
) -> Result<Arc<dyn CheckpointStore>, CheckpointError> {
    match SideStore::of(config, FILE).map_err(not_opened)? {
        SideStore::Postgres { url, schema } => Ok(Arc::new(
            PostgresCheckpoints::open(&url, &schema)
                .await?
                .with_clock(clock.clone()),
        )),
        SideStore::Sqlite(path) => Ok(Arc::new(
            SqliteCheckpoints::open(path)?.with_clock(clock.clone()),
        )),
    }
}

/// Checkpoints in a SQLite file.
pub struct SqliteCheckpoints {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    clock: Clock,
}

impl SqliteCheckpoints {
    /// Opens (creating) the file and its table.
    ///
    /// # Errors
    /// [`CheckpointError::Unavailable`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref().to_path_buf();
        let conn = side::open_sqlite(&path, Synchronous::Normal).map_err(not_opened)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS process_manager_checkpoints (
                 name       TEXT PRIMARY KEY,
                 position   INTEGER NOT NULL,
                 state      TEXT NOT NULL,
                 updated_at TEXT NOT NULL
             );",
        )
        .map_err(unavailable)?;
        Ok(Self {
            path,
            conn: Arc::new(Mutex::new(conn)),
            clock: Clock::system(),
        })
    }

    /// The same checkpoints with `updated_at` stamped by `clock` (the system's by default).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, CheckpointError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .map_err(|_| unavailable("checkpoint connection poisoned"))?;
            f(&conn).map_err(unavailable)
        })
        .await
        .map_err(unavailable)?
    }
}

/// The lease of a single-process store: always held.
struct LocalLease;

impl Lease for LocalLease {
    fn is_held(&self) -> bool {
        true
    }
}

#[async_trait]
impl CheckpointStore for SqliteCheckpoints {
    async fn load(&self, name: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        let name = name.to_owned();
        self.with_conn(move |conn| {
            conn.query_row(
                "SELECT position, state FROM process_manager_checkpoints WHERE name = ?1",
                params![name],
                |row| {
                    Ok(Checkpoint {
                        position: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                        state: row.get(1)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    async fn all(&self) -> Result<Vec<(String, Checkpoint)>, CheckpointError> {
        self.with_conn(|conn| {
            let mut select = conn.prepare(
                "SELECT name, position, state FROM process_manager_checkpoints ORDER BY name",
            )?;
            let rows = select.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    Checkpoint {
                        position: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                        state: row.get(2)?,
                    },
                ))
            })?;
            rows.collect()
        })
        .await
    }

    async fn save(&self, name: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let name = name.to_owned();
        let position = i64::try_from(checkpoint.position).unwrap_or(i64::MAX);
        let state = checkpoint.state.clone();
        let updated_at = self.clock.now().to_rfc3339();
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO process_manager_checkpoints (name, position, state, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE
                 SET position = excluded.position, state = excluded.state,
                     updated_at = excluded.updated_at",
                params![name, position, state, updated_at],
            )
            .map(|_| ())
        })
        .await
    }

    async fn acquire(&self, _name: &str) -> Result<Option<Box<dyn Lease>>, CheckpointError> {
        Ok(Some(Box::new(LocalLease)))
    }
}

/// Checkpoints in the events' PostgreSQL schema.
pub struct PostgresCheckpoints {
    pool: Pool,
    url: String,
    schema: String,
    clock: Clock,
}

fn pg(error: tokio_postgres::Error) -> CheckpointError {
    unavailable(describe_pg_error(&error))
}

impl PostgresCheckpoints {
    /// Connects and creates the table when missing.
    ///
    /// # Errors
    /// [`CheckpointError::Unavailable`]; also when `schema` is not a plain identifier.
    pub async fn open(url: &str, schema: &str) -> Result<Self, CheckpointError> {
        let pool = side::open_tables(
            url,
            schema,
            &format!(
                "CREATE TABLE IF NOT EXISTS {schema}.process_manager_checkpoints (
                    name       TEXT PRIMARY KEY,
                    position   BIGINT      NOT NULL,
                    state      TEXT        NOT NULL,
                    updated_at TIMESTAMPTZ NOT NULL
                );"
            ),
        )
        .await
        .map_err(not_opened)?;
        Ok(Self {
            pool,
            url: url.to_owned(),
            schema: schema.to_owned(),
            clock: Clock::system(),
        })
    }

    /// The same checkpoints with `updated_at` stamped by `clock` (the system's by default).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

/// A session advisory lock held by a connection of its own.
struct PostgresLease {
    client: Client,
}

impl Lease for PostgresLease {
    fn is_held(&self) -> bool {
        !self.client.is_closed()
    }
}

#[async_trait]
impl CheckpointStore for PostgresCheckpoints {
    async fn load(&self, name: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT position, state FROM {}.process_manager_checkpoints WHERE name = $1",
                    self.schema
                ),
                &[&name],
            )
            .await
            .map_err(pg)?;
        Ok(row.map(|row| Checkpoint {
            position: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            state: row.get(1),
        }))
    }

    async fn all(&self) -> Result<Vec<(String, Checkpoint)>, CheckpointError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let rows = client
            .query(
                &format!(
                    "SELECT name, position, state FROM {}.process_manager_checkpoints ORDER BY name",
                    self.schema
                ),
                &[],
            )
            .await
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    Checkpoint {
                        position: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
                        state: row.get(2),
                    },
                )
            })
            .collect())
    }

    async fn save(&self, name: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let position = i64::try_from(checkpoint.position).unwrap_or(i64::MAX);
        client
            .execute(
                &format!(
                    "INSERT INTO {}.process_manager_checkpoints (name, position, state, updated_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (name) DO UPDATE
                     SET position = excluded.position, state = excluded.state,
                         updated_at = excluded.updated_at",
                    self.schema
                ),
                &[&name, &position, &checkpoint.state, &self.clock.now()],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn acquire(&self, name: &str) -> Result<Option<Box<dyn Lease>>, CheckpointError> {
        let key = format!("careflow-process-manager-{}-{name}", self.schema);
        let client = side::try_session_lock(&self.url, &key, "process-manager lease")
            .await
            .map_err(|error| unavailable(error.describe()))?;
        Ok(client.map(|client| Box::new(PostgresLease { client }) as Box<dyn Lease>))
    }
}
