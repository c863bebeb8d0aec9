//! Where a side store lives, and how its connections are opened.
//!
//! The side stores keep what is not the log but belongs beside it: snapshots, idempotency
//! records, process-manager checkpoints, views, dead letters and patient keys. Each follows
//! the configured event store, decided here once ([`SideStore::of`]):
//!
//! - SQLite (and KurrentDB, which keeps no tables of careflow's): a SQLite file of the
//!   store's own in the data dir, so its writes neither queue behind nor hold up the event
//!   store's single writer. [`open_sqlite`] gives every such connection the same settings.
//! - PostgreSQL: tables in the events' schema, so every node shares them. [`open_tables`]
//!   builds the store's pool and creates its tables; [`try_session_lock`] is the ownership
//!   the checkpoints and the views take on a connection of their own.
//!
//! What it deliberately leaves to each store: its file name, its tables, how durable its
//! commits must be ([`Synchronous`]) and any setting only it needs.

use std::path::{Path, PathBuf};

use deadpool_postgres::{ManagerConfig, Pool, RecyclingMethod};
use rusqlite::{Connection, OpenFlags};
use tokio_postgres::Client;

use crate::config::{Config, StoreKind};
use crate::store::pg_connect::{PgConnect, PgUrlError};

/// Where one side store keeps its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SideStore {
    /// A SQLite file of its own.
    Sqlite(PathBuf),
    /// Tables in the events' PostgreSQL schema.
    Postgres { url: String, schema: String },
}

impl SideStore {
    /// Where the side store whose SQLite file is named `file` lives under `config`.
    ///
    /// # Errors
    /// [`SideStoreError::NoDatabaseUrl`].
    pub fn of(config: &Config, file: &str) -> Result<Self, SideStoreError> {
        match config.store {
            StoreKind::Postgres => {
                let url = config
                    .database_url
                    .as_ref()
                    .ok_or(SideStoreError::NoDatabaseUrl)?;
                Ok(SideStore::Postgres {
                    url: url.expose().to_owned(),
                    schema: config.database_schema.clone(),
                })
            }
            StoreKind::Sqlite | StoreKind::Kurrentdb => {
                Ok(SideStore::Sqlite(config.data_dir.join(file)))
            }
        }
    }
}

/// Why a side store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SideStoreError {
    /// Occurs when the store is PostgreSQL without `database_url` (`Config::validate`
    /// refuses that, so only a configuration built by hand gets here).
    #[error("database_url is not set")]
    NoDatabaseUrl,
    /// Occurs when `database_schema` cannot be spliced into SQL; checked before any SQL
    /// holding it runs.
    #[error("database_schema is not a plain identifier")]
    Schema,
    /// Occurs when the SQLite file's directory cannot be created.
    #[error("creating {}", path.display())]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Occurs when the SQLite file cannot be opened or set up.
    #[error("opening {}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// Occurs when `database_url` does not parse, or its TLS settings cannot be honoured.
    #[error("database_url cannot be used")]
    Url(#[source] PgUrlError),
    /// Occurs when the pool cannot be built.
    #[error("the PostgreSQL pool cannot be built")]
    Pool(#[source] deadpool_postgres::BuildError),
    /// Occurs when no connection can be had.
    #[error("PostgreSQL cannot be reached")]
    Connect(#[source] deadpool_postgres::PoolError),
    /// Occurs when a lock session's connection or its lock query fails.
    #[error("the PostgreSQL session lock cannot be asked for")]
    Lock(#[source] tokio_postgres::Error),
    /// Occurs when PostgreSQL refuses to create the schema or the tables.
    #[error("the tables cannot be created in schema {schema}")]
    Tables {
        schema: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl SideStoreError {
    /// The error and its causes on one line. The side stores report `Unavailable(String)`
    /// (several must stay `Clone`, to answer every waiter of a batch), so the causes are
    /// spelled out here rather than dropped; a PostgreSQL cause with its SQLSTATE.
    pub fn describe(&self) -> String {
        crate::error_chain::error_chain(self)
    }
}

/// How durable a side store's commits are (SQLite's `synchronous` in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// Survives a process crash; a power cut may lose the newest commits. For what can be
    /// rebuilt or repeated: caches, checkpoints, views, idempotency records.
    Normal,
    /// Survives a power cut (an fsync per commit). For rows whose loss would lose work or
    /// data: dead letters, patient keys.
    Full,
}

/// Opens (creating it and its directory) a side store's SQLite file: WAL, `synchronous` as
/// asked, and a busy timeout, so a connection opening while another holds a lock waits
/// instead of failing.
///
/// # Errors
/// [`SideStoreError::Directory`], [`SideStoreError::Sqlite`].
pub fn open_sqlite(path: &Path, synchronous: Synchronous) -> Result<Connection, SideStoreError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| SideStoreError::Directory {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let sqlite = |source| SideStoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    // The busy timeout first: switching to WAL, or recovering it after a crash, takes a lock
    // that other connections opening the file at the same moment must wait for.
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sqlite)?;
    let synchronous = match synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous};"
    ))
    .map_err(sqlite)?;
    Ok(conn)
}

/// Opens a side store's pool on the careflow schema `schema` and creates its tables: `ddl`
/// holds `CREATE ... IF NOT EXISTS` statements naming `{schema}.` tables.
///
/// Nodes starting together would race on `CREATE ... IF NOT EXISTS`; one
/// transaction-scoped advisory lock per careflow schema serialises them.
///
/// # Errors
/// [`SideStoreError::Schema`] (before any SQL holding `schema` runs), or the URL, pool,
/// connection and DDL errors.
pub async fn open_tables(url: &str, schema: &str, ddl: &str) -> Result<Pool, SideStoreError> {
    if !crate::config::is_identifier(schema) {
        return Err(SideStoreError::Schema);
    }
    let mut pg_config = PgConnect::from_url(url).map_err(SideStoreError::Url)?;
    pg_config
        .config_mut()
        .application_name("careflow")
        .connect_timeout(std::time::Duration::from_secs(5));
    let manager = pg_config.manager(ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    });
    // Side tables see a few statements per command at most: a small pool is plenty.
    let pool = Pool::builder(manager)
        .max_size(4)
        .build()
        .map_err(SideStoreError::Pool)?;
    let client = pool.get().await.map_err(SideStoreError::Connect)?;
    client
        .batch_execute(&format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock(hashtext('careflow-side-tables-{schema}'));
             CREATE SCHEMA IF NOT EXISTS {schema};
             {ddl}
             COMMIT;"
        ))
        .await
        .map_err(|source| SideStoreError::Tables {
            schema: schema.to_owned(),
            source,
        })?;
    Ok(pool)
}

/// A connection of its own holding the session advisory lock `key`, or `None` while another
/// session holds it. The lock lasts as long as the returned client: if the node dies,
/// PostgreSQL ends the session and another node can take it. `what` names the connection in
/// the warning logged when it ends. Must run inside a Tokio runtime (it spawns the
/// connection's task).
///
/// # Errors
/// [`SideStoreError::Url`], or [`SideStoreError::Lock`] when the connection or the lock query
/// fails.
pub async fn try_session_lock(
    url: &str,
    key: &str,
    what: &'static str,
) -> Result<Option<Client>, SideStoreError> {
    let client = PgConnect::from_url(url)
        .map_err(SideStoreError::Url)?
        .connect(what)
        .await
        .map_err(SideStoreError::Lock)?;
    let owned: bool = client
        .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&key])
        .await
        .map_err(SideStoreError::Lock)?
        .get(0);
    Ok(owned.then_some(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_store_decides_where_a_side_store_lives() {
        let config = |pairs: &[(&str, &str)]| {
            let env = pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect();
            Config::from_sources(None, None, &env).unwrap()
        };
        let sqlite = config(&[("CAREFLOW_DATA_DIR", "/var/lib/careflow")]);
        assert_eq!(
            SideStore::of(&sqlite, "views.db").unwrap(),
            SideStore::Sqlite(PathBuf::from("/var/lib/careflow/views.db"))
        );
        let postgres = config(&[
            ("CAREFLOW_STORE", "postgres"),
            ("CAREFLOW_DATABASE_URL", "postgres://db/careflow"),
        ]);
        assert_eq!(
            SideStore::of(&postgres, "views.db").unwrap(),
            SideStore::Postgres {
                url: "postgres://db/careflow".into(),
                schema: postgres.database_schema.clone(),
            }
        );
        let mut by_hand = postgres;
        by_hand.database_url = None;
        assert_eq!(
            SideStore::of(&by_hand, "views.db").unwrap_err().describe(),
            "database_url is not set"
        );
    }

    #[test]
    fn a_sqlite_side_store_gets_its_directory_and_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("side.db");
        let conn = open_sqlite(&path, Synchronous::Full).unwrap();
        let (mode, synchronous): (String, i64) = conn
            .query_row(
                "SELECT j.journal_mode, s.synchronous FROM pragma_journal_mode j, pragma_synchronous s",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((mode.as_str(), synchronous), ("wal", 2));
    }

    #[tokio::test]
    async fn a_schema_that_is_not_an_identifier_runs_no_sql() {
        let error = open_tables("postgres://127.0.0.1:1/none", "x; DROP", "")
            .await
            .unwrap_err();
        assert!(matches!(error, SideStoreError::Schema), "{error}");
    }
}
