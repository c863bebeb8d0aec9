//! Dead letters: work an outbound consumer could not do, kept for an operator.
//!
//! A consumer that follows the log (the Odoo executor, the webhook deliverer) meets items it
//! cannot finish: Odoo refuses a record, a receiver keeps failing. Blocking the consumer on
//! such an item would stop everything behind it, and skipping it silently would lose it. So
//! the consumer records it here and goes on; an operator lists the rows
//! (`GET /v1/dead-letters`), fixes the cause, and asks for a retry or discards the row with a
//! reason. The consumer owns the retry: it polls [`DeadLetters::retry_requests`] and reports
//! back with [`DeadLetters::resolve`] or [`DeadLetters::failed_again`].
//!
//! Order inside a record is kept with **keys**: a consumer parks later items of the same key
//! (status `parked`) behind an open row, and runs them in order once the head is resolved or
//! discarded ([`DeadLetters::open_for_key`]). Items of other keys never wait.
//!
//! Storage: `dead_letters.db` beside `careflow.db`, or table `dead_letters` in the PostgreSQL
//! schema that every node shares (a retry asked of any node reaches the consumer that owns the
//! source). The rows are operational state, not history: what an operator decided is also
//! appended to the log as an event by the HTTP layer.

pub mod decision;

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::Config;
use crate::operations::metrics;
use crate::store::postgres::describe_pg_error;
use crate::store::side::{self, SideStore, SideStoreError, Synchronous};

/// Why the dead-letter list could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeadLetterError {
    /// Occurs when the database cannot be reached or refuses a statement.
    ///
    /// ### Handling
    /// Consumers retry with backoff; HTTP answers 503.
    #[error("dead letters unavailable: {0}")]
    Unavailable(String),
    /// Occurs when a row does not exist.
    ///
    /// ### Handling
    /// HTTP answers 404.
    #[error("no dead letter {0}")]
    NotFound(i64),
    /// Occurs when retry or discard is asked of a row that is already resolved or discarded.
    ///
    /// ### Handling
    /// HTTP answers 409 with the row's status.
    #[error("dead letter {id} is {status}, not open")]
    NotOpen { id: i64, status: DeadLetterStatus },
    /// Occurs when a stored row does not read back (an edited or damaged table): it is not
    /// guessed at, because a retry of a guessed row would redo the wrong thing.
    ///
    /// ### Handling
    /// Consumers stop and retry with backoff (`/readyz` names them after a while); HTTP
    /// answers 500; an operator repairs or deletes the row.
    #[error("dead letter {id}: column {column} does not read: {reason}")]
    Corrupt {
        id: i64,
        column: &'static str,
        reason: String,
    },
}

fn unavailable(error: impl std::fmt::Display) -> DeadLetterError {
    DeadLetterError::Unavailable(error.to_string())
}

fn not_opened(error: SideStoreError) -> DeadLetterError {
    unavailable(error.describe())
}

/// The SQLite file beside `careflow.db`.
pub(crate) const FILE: &str = "dead_letters.db";

/// Where a row stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterStatus {
    /// Failed; waits for an operator.
    Dead,
    /// Not tried: it waits behind an open row of the same key.
    Parked,
    /// An operator asked for a retry; the consumer has not reported yet.
    RetryRequested,
    /// Done after a retry (or after its head was resolved).
    Resolved,
    /// An operator gave it up, with a reason.
    Discarded,
}

impl DeadLetterStatus {
    /// The stored word (also the metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dead => "dead",
            Self::Parked => "parked",
            Self::RetryRequested => "retry_requested",
            Self::Resolved => "resolved",
            Self::Discarded => "discarded",
        }
    }

    /// The status a stored word names; `None` for a word this build does not write.
    fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == word)
    }

    /// Dead, parked or retry requested: the row still holds its key.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Dead | Self::Parked | Self::RetryRequested)
    }

    const ALL: [Self; 5] = [
        Self::Dead,
        Self::Parked,
        Self::RetryRequested,
        Self::Resolved,
        Self::Discarded,
    ];
}

impl std::fmt::Display for DeadLetterStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure (or a parked item) as the consumer reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeadLetter {
    /// Who owns and retries it: `odoo`, `webhook`, `process_manager:<name>`.
    pub source: String,
    /// The ordering key inside the source (Odoo: the record's external id; webhooks: the
    /// webhook id).
    pub key: String,
    pub event_id: Uuid,
    pub position: u64,
    /// What to redo (the intent, the delivery) as JSON. Its `id` member, when present, tells
    /// two items of one event and key apart.
    pub payload: serde_json::Value,
    pub error: String,
    pub attempts: u32,
}

/// A stored row.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    pub id: i64,
    pub source: String,
    pub key: String,
    pub event_id: Uuid,
    pub position: u64,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub error: String,
    pub attempts: u32,
    pub first_failure: DateTime<Utc>,
    pub last_failure: DateTime<Utc>,
    pub status: DeadLetterStatus,
    pub discard_reason: Option<String>,
}

/// The item identity inside (source, event, key): the payload's `id`, else empty.
fn item_of(payload: &serde_json::Value) -> String {
    match payload.get("id") {
        Some(serde_json::Value::String(id)) => id.clone(),
        Some(other) if !other.is_null() => other.to_string(),
        _ => String::new(),
    }
}

/// The dead-letter list of this deployment. Cheap to clone.
#[derive(Clone)]
pub struct DeadLetters {
    backend: Arc<Backend>,
    /// What dates failures and operators' decisions.
    clock: Clock,
}

enum Backend {
    Sqlite(Arc<Mutex<Connection>>),
    Postgres { pool: Pool, schema: String },
}

/// The consumers that dead-letter today: their gauges read 0 rather than being absent before
/// their first row, so an alert on them has a series to watch.
const KNOWN_SOURCES: [&str; 3] = ["odoo", "odoo:mapping", "webhook"];
const COLUMNS: &str = "id, source, key, event_id, position, payload, error, attempts, \
                       first_failure, last_failure, status, discard_reason";

impl DeadLetters {
    /// Opens the list that belongs with the configured event store.
    ///
    /// # Errors
    /// [`DeadLetterError::Unavailable`].
    pub async fn open(config: &Config, clock: &Clock) -> Result<Self, DeadLetterError> {
        match SideStore::of(config, FILE).map_err(not_opened)? {
            SideStore::Postgres { url, schema } => Self::open_postgres(&url, &schema).await,
            SideStore::Sqlite(path) => Self::open_sqlite(&path),
        }
        .map(|list| list.with_clock(clock.clone()))
        .inspect(|list| {
            let gauge = list.clone();
            tokio::spawn(async move { gauge.refresh_gauge().await });
        })
    }

    /// Opens (creating) a SQLite file.
    ///
    /// # Errors
    /// [`DeadLetterError::Unavailable`].
    pub fn open_sqlite(path: &Path) -> Result<Self, DeadLetterError> {
        // synchronous=FULL: a row records that an item was *not* done; losing it to a power
        // cut after the consumer moved its checkpoint on would lose the item.
        let conn = side::open_sqlite(path, Synchronous::Full).map_err(not_opened)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS dead_letters (
                 id             INTEGER PRIMARY KEY AUTOINCREMENT,
                 source         TEXT NOT NULL,
                 key            TEXT NOT NULL,
                 event_id       TEXT NOT NULL,
                 item           TEXT NOT NULL,
                 position       INTEGER NOT NULL,
                 payload        TEXT NOT NULL,
                 error          TEXT NOT NULL,
                 attempts       INTEGER NOT NULL,
                 first_failure  TEXT NOT NULL,
                 last_failure   TEXT NOT NULL,
                 status         TEXT NOT NULL,
                 discard_reason TEXT,
                 UNIQUE (source, event_id, key, item)
             );
             CREATE INDEX IF NOT EXISTS dead_letters_open
                 ON dead_letters (source, status, key);",
        )
        .map_err(unavailable)?;
        Ok(Self {
            backend: Arc::new(Backend::Sqlite(Arc::new(Mutex::new(conn)))),
            clock: Clock::system(),
        })
    }

    /// The same list dated by `clock` (the system's by default).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock the list dates by.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Connects to PostgreSQL and creates the table when missing.
    ///
    /// # Errors
    /// [`DeadLetterError::Unavailable`]; also when `schema` is not a plain identifier.
    pub async fn open_postgres(url: &str, schema: &str) -> Result<Self, DeadLetterError> {
        let pool = side::open_tables(
            url,
            schema,
            &format!(
                "CREATE TABLE IF NOT EXISTS {schema}.dead_letters (
                    id             BIGSERIAL PRIMARY KEY,
                    source         TEXT NOT NULL,
                    key            TEXT NOT NULL,
                    event_id       TEXT NOT NULL,
                    item           TEXT NOT NULL,
                    position       BIGINT NOT NULL,
                    payload        TEXT NOT NULL,
                    error          TEXT NOT NULL,
                    attempts       BIGINT NOT NULL,
                    first_failure  TEXT NOT NULL,
                    last_failure   TEXT NOT NULL,
                    status         TEXT NOT NULL,
                    discard_reason TEXT,
                    UNIQUE (source, event_id, key, item)
                );
                CREATE INDEX IF NOT EXISTS dead_letters_open
                    ON {schema}.dead_letters (source, status, key);"
            ),
        )
        .await
        .map_err(not_opened)?;
        Ok(Self {
            backend: Arc::new(Backend::Postgres {
                pool,
                schema: schema.to_owned(),
            }),
            clock: Clock::system(),
        })
    }

    /// Records a failure (`Dead`) or an item waiting behind one of its key (`Parked`).
    ///
    /// Recording the same item again (same source, event, key and payload `id`) updates its
    /// error, attempts, last failure and status and returns the same id, so a consumer that
    /// restarts from an older checkpoint does not list an item twice. A row an operator has
    /// closed (resolved, discarded) is left as it is.
    ///
    /// # Errors
    /// [`DeadLetterError::Unavailable`].
    pub async fn record(
        &self,
        new: NewDeadLetter,
        status: DeadLetterStatus,
    ) -> Result<i64, DeadLetterError> {
        let item = item_of(&new.payload);
        let now = self.clock.now().to_rfc3339();
        let payload = new.payload.to_string();
        let event_id = new.event_id.to_string();
        let position = i64::try_from(new.position).unwrap_or(i64::MAX);
        let attempts = i64::from(new.attempts);
        let status_word = status.as_str();
        let id = match &*self.backend {
            Backend::Sqlite(conn) => {
                let conn = Arc::clone(conn);
                blocking(move || {
                    let conn = lock(&conn)?;
                    conn.query_row(
                        "INSERT INTO dead_letters (source, key, event_id, item, position, payload,
                             error, attempts, first_failure, last_failure, status)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)
                         ON CONFLICT (source, event_id, key, item) DO UPDATE
                         SET error = CASE WHEN status IN ('resolved', 'discarded')
                                          THEN error ELSE excluded.error END,
                             attempts = CASE WHEN status IN ('resolved', 'discarded')
                                          THEN attempts ELSE excluded.attempts END,
                             last_failure = CASE WHEN status IN ('resolved', 'discarded')
                                          THEN last_failure ELSE excluded.last_failure END,
                             status = CASE WHEN status IN ('resolved', 'discarded')
                                          THEN status ELSE excluded.status END
                         RETURNING id",
                        params![
                            new.source,
                            new.key,
                            event_id,
                            item,
                            position,
                            payload,
                            new.error,
                            attempts,
                            now,
                            status_word
                        ],
                        |row| row.get::<_, i64>(0),
                    )
                    .map_err(unavailable)
                })
                .await?
            }
            Backend::Postgres { pool, schema } => {
                let client = pool.get().await.map_err(unavailable)?;
                client
                    .query_one(
                        &format!(
                            "INSERT INTO {schema}.dead_letters AS d (source, key, event_id, item,
                                 position, payload, error, attempts, first_failure, last_failure,
                                 status)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)
                             ON CONFLICT (source, event_id, key, item) DO UPDATE
                             SET error = CASE WHEN d.status IN ('resolved', 'discarded')
                                              THEN d.error ELSE excluded.error END,
                                 attempts = CASE WHEN d.status IN ('resolved', 'discarded')
                                              THEN d.attempts ELSE excluded.attempts END,
                                 last_failure = CASE WHEN d.status IN ('resolved', 'discarded')
                                              THEN d.last_failure ELSE excluded.last_failure END,
                                 status = CASE WHEN d.status IN ('resolved', 'discarded')
                                              THEN d.status ELSE excluded.status END
                             RETURNING id"
                        ),
                        &[
                            &new.source,
                            &new.key,
                            &event_id,
                            &item,
                            &position,
                            &payload,
                            &new.error,
                            &attempts,
                            &now,
                            &status_word,
                        ],
                    )
                    .await
                    .map_err(pg)?
                    .get::<_, i64>(0)
            }
        };
        self.refresh_gauge().await;
        Ok(id)
    }

    /// Rows of `source` (every source when `None`), open ones only unless `include_closed`,
    /// oldest first.
    ///
    /// # Errors
    /// [`DeadLetterError::Unavailable`].
    pub async fn list(
        &self,
        source: Option<&str>,
        include_closed: bool,
    ) -> Result<Vec<DeadLetter>, DeadLetterError> {
        let mut conditions = Vec::new();
        let mut args = Vec::new();
        if let Some(source) = source {
            args.push(source.to_owned());
            conditions.push(format!("source = {}", self.placeholder(args.len())));
        }
        if !include_closed {
            conditions.push("status IN ('dead', 'parked', 'retry_requested')".to_owned());
        }
        self.select(&conditions, args).await
    }

    /// One row.
    ///
    /// # Errors
    /// [`DeadLetterError::Unavailable`].
    pub async fn get(&self, id: i64) -> Result<Option<DeadLetter>, DeadLetterError> {
        let rows = self
            .select(
                // Compared as text so one parameter type serves both backends.
                &[format!("CAST(id AS TEXT) = {}", self.placeholder(1))],
                vec![id.to_string()],
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    /// Asks the owning consumer to try the row again: dead or parked → retry requested.
    ///
    /// # Errors
    /// [`DeadLetterError::NotFound`], [`DeadLetterError::NotOpen`] for a closed row,
    /// [`DeadLetterError::Unavailable`].
    pub async fn request_retry(&self, id: i64) -> Result<DeadLetter, DeadLetterError> {
        self.transition(id, DeadLetterStatus::RetryRequested, None, None)
            .await
    }

    /// Rows of `source` an operator asked to retry, oldest first. The consumer polls this.
    ///
    /// # Errors
    /// [`DeadLetterError::Unavailable`].
    pub async fn retry_requests(&self, source: &str) -> Result<Vec<DeadLetter>, DeadLetterError> {
        self.select(
            &[
                format!("source = {}", self.placeholder(1)),
                "status = 'retry_requested'".to_owned(),
            ],
            vec![source.to_owned()],
        )
        .await
    }

    /// The consumer did the item after all.
    ///
    /// # Errors
    /// As [`DeadLetters::request_retry`].
    pub async fn resolve(&self, id: i64) -> Result<(), DeadLetterError> {
        self.transition(id, DeadLetterStatus::Resolved, None, None)
            .await
            .map(|_| ())
    }

    /// The retry failed too: back to dead, one more attempt counted.
    ///
    /// # Errors
    /// As [`DeadLetters::request_retry`].
    pub async fn failed_again(&self, id: i64, error: &str) -> Result<(), DeadLetterError> {
        self.transition(id, DeadLetterStatus::Dead, Some(error), None)
            .await
            .map(|_| ())
    }

    /// An operator gives the item up. The HTTP layer records the decision as an event too.
    ///
    /// # Errors
    /// As [`DeadLetters::request_retry`].
    pub async fn discard(&self, id: i64, reason: &str) -> Result<DeadLetter, DeadLetterError> {
        self.transition(id, DeadLetterStatus::Discarded, None, Some(reason))
            .await
    }

    /// Keys of `source` that still have an open row: a consumer parks later items of these
    /// keys behind them.
    ///
    /// # Errors
    /// [`DeadLetterError::Unavailable`].
    pub async fn open_keys(&self, source: &str) -> Result<Vec<String>, DeadLetterError> {
        let mut keys: Vec<String> = self
            .list(Some(source), false)
            .await?
            .into_iter()
            .map(|row| row.key)
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Open rows of one key, oldest first: the head and what is parked behind it.
    ///
    /// # Errors
    /// [`DeadLetterError::Unavailable`].
    pub async fn open_for_key(
        &self,
        source: &str,
        key: &str,
    ) -> Result<Vec<DeadLetter>, DeadLetterError> {
        self.select(
            &[
                format!("source = {}", self.placeholder(1)),
                format!("key = {}", self.placeholder(2)),
                "status IN ('dead', 'parked', 'retry_requested')".to_owned(),
            ],
            vec![source.to_owned(), key.to_owned()],
        )
        .await
    }

    fn placeholder(&self, n: usize) -> String {
        match &*self.backend {
            Backend::Sqlite(_) => format!("?{n}"),
            Backend::Postgres { .. } => format!("${n}"),
        }
    }

    /// Moves an open row to `to`. Every transition starts from an open row: a closed one is
    /// final.
    async fn transition(
        &self,
        id: i64,
        to: DeadLetterStatus,
        error: Option<&str>,
        reason: Option<&str>,
    ) -> Result<DeadLetter, DeadLetterError> {
        let current = self.get(id).await?.ok_or(DeadLetterError::NotFound(id))?;
        if !current.status.is_open() {
            return Err(DeadLetterError::NotOpen {
                id,
                status: current.status,
            });
        }
        let now = self.clock.now().to_rfc3339();
        let failed = error.is_some();
        let error = error.unwrap_or(&current.error).to_owned();
        let reason = reason.map(str::to_owned);
        let attempts = i64::from(current.attempts) + i64::from(failed);
        let last_failure = if failed {
            now
        } else {
            current.last_failure.to_rfc3339()
        };
        let changed = match &*self.backend {
            Backend::Sqlite(conn) => {
                let conn = Arc::clone(conn);
                blocking(move || {
                    lock(&conn)?
                        .execute(
                            "UPDATE dead_letters SET status = ?2, error = ?3, attempts = ?4,
                                 last_failure = ?5, discard_reason = COALESCE(?6, discard_reason)
                             WHERE id = ?1 AND status IN ('dead', 'parked', 'retry_requested')",
                            params![id, to.as_str(), error, attempts, last_failure, reason],
                        )
                        .map_err(unavailable)
                })
                .await?
            }
            Backend::Postgres { pool, schema } => {
                let client = pool.get().await.map_err(unavailable)?;
                let changed = client
                    .execute(
                        &format!(
                            "UPDATE {schema}.dead_letters SET status = $2, error = $3,
                                 attempts = $4, last_failure = $5,
                                 discard_reason = COALESCE($6, discard_reason)
                             WHERE id = $1 AND status IN ('dead', 'parked', 'retry_requested')"
                        ),
                        &[&id, &to.as_str(), &error, &attempts, &last_failure, &reason],
                    )
                    .await
                    .map_err(pg)?;
                usize::try_from(changed).unwrap_or(usize::MAX)
            }
        };
        let after = self.get(id).await?.ok_or(DeadLetterError::NotFound(id))?;
        if changed == 0 {
            // Closed by someone else between the read and the update.
            return Err(DeadLetterError::NotOpen {
                id,
                status: after.status,
            });
        }
        self.refresh_gauge().await;
        Ok(after)
    }

    /// `SELECT` with `conditions` joined by AND; `args` fill `?1..`/`$1..`, all text.
    async fn select(
        &self,
        conditions: &[String],
        args: Vec<String>,
    ) -> Result<Vec<DeadLetter>, DeadLetterError> {
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        match &*self.backend {
            Backend::Sqlite(conn) => {
                let conn = Arc::clone(conn);
                let sql = format!("SELECT {COLUMNS} FROM dead_letters{filter} ORDER BY id");
                blocking(move || {
                    let conn = lock(&conn)?;
                    let mut statement = conn.prepare_cached(&sql).map_err(unavailable)?;
                    let rows = statement
                        .query_map(rusqlite::params_from_iter(args.iter()), |row| {
                            Ok(RawRow {
                                id: row.get(0)?,
                                source: row.get(1)?,
                                key: row.get(2)?,
                                event_id: row.get(3)?,
                                position: row.get(4)?,
                                payload: row.get(5)?,
                                error: row.get(6)?,
                                attempts: row.get(7)?,
                                first_failure: row.get(8)?,
                                last_failure: row.get(9)?,
                                status: row.get(10)?,
                                discard_reason: row.get(11)?,
                            })
                        })
                        .map_err(unavailable)?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(unavailable)?;
                    rows.into_iter().map(RawRow::into_row).collect()
                })
                .await
            }
            Backend::Postgres { pool, schema } => {
                let sql =
                    format!("SELECT {COLUMNS} FROM {schema}.dead_letters{filter} ORDER BY id");
                let client = pool.get().await.map_err(unavailable)?;
                let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args
                    .iter()
                    .map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                let rows = client.query(&sql, &params).await.map_err(pg)?;
                rows.into_iter()
                    .map(|row| {
                        RawRow {
                            id: row.get(0),
                            source: row.get(1),
                            key: row.get(2),
                            event_id: row.get(3),
                            position: row.get(4),
                            payload: row.get(5),
                            error: row.get(6),
                            attempts: row.get(7),
                            first_failure: row.get(8),
                            last_failure: row.get(9),
                            status: row.get(10),
                            discard_reason: row.get(11),
                        }
                        .into_row()
                    })
                    .collect()
            }
        }
    }

    /// Sets `careflow_dead_letters{source,status}` from the table. Best effort: a failure to
    /// count only leaves the gauge stale.
    async fn refresh_gauge(&self) {
        let Ok(rows) = self.list(None, true).await else {
            return;
        };
        let mut counts = std::collections::BTreeMap::<(String, DeadLetterStatus), i64>::new();
        for row in &rows {
            *counts.entry((row.source.clone(), row.status)).or_default() += 1;
        }
        let mut sources: std::collections::BTreeSet<&str> =
            rows.iter().map(|r| r.source.as_str()).collect();
        sources.extend(KNOWN_SOURCES);
        // Every process manager's, from the one list of their names.
        let managers: Vec<String> = crate::runtime::process_managers::NAMES
            .iter()
            .map(|name| format!("process_manager:{name}"))
            .collect();
        sources.extend(managers.iter().map(String::as_str));
        for source in sources {
            for status in DeadLetterStatus::ALL {
                let count = counts
                    .get(&(source.to_owned(), status))
                    .copied()
                    .unwrap_or(0);
                metrics::dead_letters(source, status.as_str(), count);
            }
        }
    }
}

/// A row as stored, before its text columns are parsed.
struct RawRow {
    id: i64,
    source: String,
    key: String,
    event_id: String,
    position: i64,
    payload: String,
    error: String,
    attempts: i64,
    first_failure: String,
    last_failure: String,
    status: String,
    discard_reason: Option<String>,
}

impl RawRow {
    fn into_row(self) -> Result<DeadLetter, DeadLetterError> {
        let id = self.id;
        let corrupt =
            |column: &'static str, reason: String| DeadLetterError::Corrupt { id, column, reason };
        let time = |column: &'static str, text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| corrupt(column, e.to_string()))
        };
        Ok(DeadLetter {
            id,
            source: self.source,
            key: self.key,
            event_id: self
                .event_id
                .parse()
                .map_err(|e: uuid::Error| corrupt("event_id", e.to_string()))?,
            position: u64::try_from(self.position)
                .map_err(|e| corrupt("position", e.to_string()))?,
            payload: serde_json::from_str(&self.payload)
                .map_err(|e| corrupt("payload", e.to_string()))?,
            error: self.error,
            attempts: u32::try_from(self.attempts)
                .map_err(|e| corrupt("attempts", e.to_string()))?,
            first_failure: time("first_failure", &self.first_failure)?,
            last_failure: time("last_failure", &self.last_failure)?,
            status: DeadLetterStatus::parse(&self.status)
                .ok_or_else(|| corrupt("status", format!("unknown status {:?}", self.status)))?,
            discard_reason: self.discard_reason,
        })
    }
}

fn pg(error: tokio_postgres::Error) -> DeadLetterError {
    unavailable(describe_pg_error(&error))
}

fn lock(
    conn: &Mutex<Connection>,
) -> Result<std::sync::MutexGuard<'_, Connection>, DeadLetterError> {
    conn.lock()
        .map_err(|_| unavailable("dead-letter connection poisoned"))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DeadLetterError> + Send + 'static,
) -> Result<T, DeadLetterError> {
    tokio::task::spawn_blocking(f).await.map_err(unavailable)?
}

#[cfg(test)]
mod tests;
