//! The shared backend: PostgreSQL, for several careflow processes on one database.
//!
//! **Gap-safe positions: a commit-ordered counter under a row lock.** The classic bug of
//! event stores on PostgreSQL (Marten, Eventuous, SQLStreamStore, commanded all shipped it) is
//! a subscriber that reads positions from a sequence: transaction A takes position 10,
//! transaction B takes 11 and commits first, the subscriber reads 11, moves its checkpoint
//! past 10, and A's event is skipped forever when A commits. careflow never lets a later
//! position become visible before an earlier one: every append transaction first locks the
//! single row of `global_position` (`SELECT ... FOR UPDATE`), takes the next positions from
//! it, inserts, writes the new value back and commits. The row lock is released only after
//! the commit is visible, so the next transaction (on any node) allocates strictly higher
//! positions and commits strictly later. Positions are therefore gap-free (a rolled-back
//! transaction never advanced the counter) and visible in order, and `read_all` can simply
//! read `position >= n`.
//!
//! The lock serialises commits across the whole cluster, which would cap throughput at one
//! commit per fsync; **group commit** pays for it: each process runs one writer task that
//! drains every queued append into one transaction (one lock, one fsync, hundreds of
//! commands). Under the lock the writer's view is authoritative, so optimistic concurrency is
//! decided by reading each stream's head in the same transaction; no unique-violation dance.
//!
//! Live subscriptions on another node notice new events by polling (`poll_interval`), on this
//! node at once through the head watch.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use careflow_aggregates::{EventHash, EventMetadata, RecordedEvent, StreamId};
use deadpool_postgres::{ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};
use uuid::Uuid;

use super::{
    AppendRequest, Appended, Direction, EventStore, Outcome, PreparedAppend, StoreError,
    StreamHead, WriteJob, WriterQueue,
};
use crate::clock::Clock;
use crate::config::is_identifier;
use crate::operations::metrics;
use crate::store::pg_connect::PgConnect;
use std::sync::Arc;

/// Tunables of the PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `postgres://user@host:port/db`.
    pub url: String,
    /// Schema holding careflow's tables; created when absent.
    pub schema: String,
    /// Most appends in one transaction.
    pub max_batch: usize,
    /// Connections for reads.
    pub pool_size: usize,
    /// How often a live subscription looks for other nodes' commits.
    pub poll_interval: Duration,
    /// What stamps `recorded_at` (the system clock unless a test injects its own).
    pub clock: Clock,
}

impl PostgresConfig {
    pub fn new(url: impl Into<String>, schema: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: schema.into(),
            max_batch: 2048,
            pool_size: 8,
            poll_interval: Duration::from_millis(50),
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

const SELECT_EVENT: &str = "SELECT position, stream_id, version, event_id, event_type, \
     schema_version, data, metadata, prev_hash, hash FROM events";

fn schema_sql(schema: &str) -> String {
    format!(
        "
SELECT pg_advisory_xact_lock(hashtext('careflow-schema-' || '{schema}'));
CREATE SCHEMA IF NOT EXISTS {schema};
SET LOCAL search_path = {schema};
CREATE TABLE IF NOT EXISTS events (
    position       bigint  PRIMARY KEY,
    stream_id      text    NOT NULL,
    version        bigint  NOT NULL,
    event_id       uuid    NOT NULL UNIQUE,
    command_id     uuid    NOT NULL,
    event_type     text    NOT NULL,
    schema_version integer NOT NULL,
    data           text    NOT NULL,
    metadata       text    NOT NULL,
    prev_hash      bytea   NOT NULL,
    hash           bytea   NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE TABLE IF NOT EXISTS global_position (
    id   smallint PRIMARY KEY CHECK (id = 1),
    last bigint   NOT NULL
);
INSERT INTO global_position (id, last) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE OR REPLACE FUNCTION events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'events are append-only'; END $$;
CREATE OR REPLACE TRIGGER events_append_only_rows BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();
CREATE OR REPLACE TRIGGER events_append_only_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();
"
    )
}

/// The PostgreSQL event store.
pub struct PostgresStore {
    pool: Pool,
    pg_config: PgConnect,
    queue: WriterQueue,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    head: watch::Receiver<u64>,
    /// Shared with the writer: atomic units commit outside it and move the head too.
    head_tx: Arc<watch::Sender<u64>>,
    poll_interval: Duration,
}

impl PostgresStore {
    /// Connects, creates the schema when absent and starts the writer task.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the server cannot be reached or the URL is invalid.
    pub async fn open(config: PostgresConfig) -> Result<Self, StoreError> {
        if !is_identifier(&config.schema) {
            return Err(StoreError::Unavailable(format!(
                "invalid schema name {:?}",
                config.schema
            )));
        }
        let mut pg_config = PgConnect::from_url(&config.url)
            .map_err(|e| StoreError::Unavailable(crate::error_chain::error_chain(&e)))?;
        // Custom plans for every execution: a prepared statement's generic plan is chosen
        // while `events` is still small (a sequential scan is cheapest then) and kept as the
        // table grows; with `event_id = ANY($1)` that meant a full scan per group commit and a
        // writer that slowed from 6,800 to a few hundred appends/s as the log grew.
        pg_config
            .config_mut()
            .options(format!(
                "-c search_path={} -c plan_cache_mode=force_custom_plan",
                config.schema
            ))
            .application_name("careflow")
            .connect_timeout(Duration::from_secs(5));

        let setup = connect(&pg_config).await?;
        setup
            .batch_execute(&format!("BEGIN;{}COMMIT;", schema_sql(&config.schema)))
            .await
            .map_err(pg_error)?;
        let head_position = current_head(&setup).await?;
        drop(setup);

        let manager = pg_config.manager(ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        });
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .build()
            .map_err(StoreError::unavailable)?;

        let (head_tx, head_rx) = watch::channel(head_position);
        let head_tx = Arc::new(head_tx);
        let (tx, rx) = mpsc::channel(65_536);
        let writer = Writer {
            pg_config: pg_config.clone(),
            client: None,
            head_tx: Arc::clone(&head_tx),
            max_batch: config.max_batch.max(1),
        };
        let handle = tokio::spawn(writer.run(rx));
        Ok(Self {
            pool,
            pg_config,
            queue: WriterQueue::new("postgres", Some(tx), config.clock),
            writer: Mutex::new(Some(handle)),
            head: head_rx,
            head_tx,
            poll_interval: config.poll_interval,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(StoreError::unavailable)
    }

    /// Test hook for the conformance suite: appends inside a transaction that stays open
    /// (holding the position lock) until [`HeldAppend::commit`]. It exists to prove that a
    /// slow transaction cannot let later positions become visible first; production code
    /// never calls it.
    #[doc(hidden)]
    pub async fn hold_append(&self, request: AppendRequest) -> Result<HeldAppend, StoreError> {
        let client = connect(&self.pg_config).await?;
        let prepared = PreparedAppend::new(request, self.queue.clock().now())?;
        let statements = Statements::prepare(&client).await?;
        client.batch_execute("BEGIN").await.map_err(pg_error)?;
        let jobs = [&prepared];
        let outcomes = write_in_transaction(&client, &statements, &jobs).await?;
        let events = match outcomes.into_iter().next() {
            Some(Outcome::Written(events)) => events,
            Some(Outcome::Done(result)) => result?.events,
            Some(Outcome::SameAs(_)) | None => return Err(StoreError::EmptyAppend),
        };
        Ok(HeldAppend { client, events })
    }
}

/// An append whose transaction is still open; see [`PostgresStore::hold_append`].
#[doc(hidden)]
pub struct HeldAppend {
    client: Client,
    pub events: Vec<RecordedEvent>,
}

impl HeldAppend {
    /// Commits the held transaction.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the commit fails.
    pub async fn commit(self) -> Result<Vec<RecordedEvent>, StoreError> {
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(pg_error)?;
        Ok(self.events)
    }
}

async fn connect(config: &PgConnect) -> Result<Client, StoreError> {
    config.connect("event store").await.map_err(pg_error)
}

fn pg_error(error: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(describe_pg_error(&error))
}

/// A PostgreSQL error as operators need it: the SQLSTATE and the server's message for a
/// database error (tokio-postgres' own `Display` says only "db error"), else the client's text
/// with its causes (its own says only "error performing TLS handshake", not which certificate
/// was refused and why).
pub(crate) fn describe_pg_error(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => crate::error_chain::error_chain(error),
    }
}

async fn current_head(client: &Client) -> Result<u64, StoreError> {
    let row = client
        .query_one("SELECT last FROM global_position WHERE id = 1", &[])
        .await
        .map_err(pg_error)?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// The append path's statements, prepared once per connection: an unprepared query costs
/// tokio-postgres an extra round trip (parse, then execute).
struct Statements {
    lock_position: Statement,
    repeated: Statement,
    heads: Statement,
    insert: Statement,
    advance: Statement,
}

const LOCK_POSITION: &str = "SELECT last FROM global_position WHERE id = 1 FOR UPDATE";
const REPEATED: &str = "SELECT event_id FROM events WHERE event_id = ANY($1)";
const HEADS: &str = "SELECT s.stream_id, h.version, h.hash FROM unnest($1::text[]) AS s(stream_id) \
     CROSS JOIN LATERAL (SELECT version, hash FROM events e \
       WHERE e.stream_id = s.stream_id ORDER BY version DESC LIMIT 1) h";
const INSERT: &str = "INSERT INTO events (position, stream_id, version, event_id, command_id, \
     event_type, schema_version, data, metadata, prev_hash, hash) \
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], \
     $5::uuid[], $6::text[], $7::integer[], $8::text[], $9::text[], $10::bytea[], \
     $11::bytea[])";
const ADVANCE: &str = "UPDATE global_position SET last = $1 WHERE id = 1";

impl Statements {
    async fn prepare(client: &Client) -> Result<Self, StoreError> {
        let (lock_position, repeated, heads, insert, advance) = tokio::try_join!(
            client.prepare(LOCK_POSITION),
            client.prepare(REPEATED),
            client.prepare(HEADS),
            client.prepare(INSERT),
            client.prepare(ADVANCE),
        )
        .map_err(pg_error)?;
        Ok(Self {
            lock_position,
            repeated,
            heads,
            insert,
            advance,
        })
    }

    /// The same statements from a pooled connection's statement cache (atomic units run on
    /// pooled connections; preparing afresh would cost each unit a parse of all five).
    async fn prepare_cached(client: &deadpool_postgres::Object) -> Result<Self, StoreError> {
        let (lock_position, repeated, heads, insert, advance) = tokio::try_join!(
            client.prepare_cached(LOCK_POSITION),
            client.prepare_cached(REPEATED),
            client.prepare_cached(HEADS),
            client.prepare_cached(INSERT),
            client.prepare_cached(ADVANCE),
        )
        .map_err(pg_error)?;
        Ok(Self {
            lock_position,
            repeated,
            heads,
            insert,
            advance,
        })
    }
}

/// The writer task: the only code that appends for this process.
struct Writer {
    pg_config: PgConnect,
    client: Option<(Client, Statements)>,
    head_tx: Arc<watch::Sender<u64>>,
    max_batch: usize,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<WriteJob>) {
        let mut jobs: Vec<WriteJob> = Vec::with_capacity(self.max_batch);
        while let Some(job) = rx.recv().await {
            jobs.push(job);
            while jobs.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let started = Instant::now();
            let size = jobs.len();
            let prepared: Vec<&PreparedAppend> = jobs.iter().map(|j| &j.prepared).collect();
            let outcomes = match self.write_batch(&prepared).await {
                Ok(outcomes) => outcomes,
                Err(error) => {
                    tracing::warn!(%error, size, "group commit failed; retrying its appends one by one");
                    let mut outcomes = Vec::with_capacity(size);
                    for one in prepared.chunks(1) {
                        let outcome = match self.write_batch(one).await {
                            Ok(mut o) => o
                                .pop()
                                .unwrap_or(Outcome::Done(Err(StoreError::EmptyAppend))),
                            Err(error) => Outcome::Done(Err(error)),
                        };
                        outcomes.push(outcome);
                    }
                    outcomes
                }
            };
            metrics::store_commit("postgres", size, started.elapsed());
            super::answer(jobs.drain(..).map(|j| j.reply), outcomes);
        }
        tracing::info!(backend = "postgres", "event store writer stopped");
    }

    async fn write_batch(&mut self, jobs: &[&PreparedAppend]) -> Result<Vec<Outcome>, StoreError> {
        if self.client.as_ref().is_none_or(|(c, _)| c.is_closed()) {
            let client = connect(&self.pg_config).await?;
            let statements = Statements::prepare(&client).await?;
            self.client = Some((client, statements));
        }
        let Some((client, statements)) = self.client.as_ref() else {
            unreachable!("connected just above")
        };
        client.batch_execute("BEGIN").await.map_err(pg_error)?;
        let outcomes = match write_in_transaction(client, statements, jobs).await {
            Ok(outcomes) => outcomes,
            Err(error) => {
                // ROLLBACK may fail too when the connection died; the next batch reconnects.
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(error);
            }
        };
        client.batch_execute("COMMIT").await.map_err(pg_error)?;
        let last = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Written(events) => events.last().map(|e| e.position),
                _ => None,
            })
            .max();
        if let Some(last) = last {
            advance_head(&self.head_tx, last);
        }
        Ok(outcomes)
    }
}

/// Moves the local head watch forward (never back: another commit may already be newer).
fn advance_head(head_tx: &watch::Sender<u64>, last: u64) {
    head_tx.send_if_modified(|head| {
        let moved = last > *head;
        if moved {
            *head = last;
        }
        moved
    });
}

impl PostgresStore {
    /// [`EventStore::append_all`]: the unit runs in its own transaction on a pooled
    /// connection, beside the writer. The position lock it takes first serialises it with
    /// every other append on every node, exactly as a group commit is serialised.
    async fn append_unit(&self, requests: Vec<AppendRequest>) -> Result<Vec<Appended>, StoreError> {
        let started = std::time::Instant::now();
        let prepared = super::prepare_unit(requests, self.queue.clock().now())?;
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let statements = Statements::prepare_cached(&client).await?;
        client.batch_execute("BEGIN").await.map_err(pg_error)?;
        let parts: Vec<&PreparedAppend> = prepared.iter().collect();
        let outcomes = match write_in_transaction(&client, &statements, &parts).await {
            Ok(outcomes) => outcomes,
            Err(error) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(error);
            }
        };
        if let Some(answer) = super::unit_refusal(&outcomes) {
            client.batch_execute("ROLLBACK").await.map_err(pg_error)?;
            return answer;
        }
        client.batch_execute("COMMIT").await.map_err(pg_error)?;
        let answer = super::unit_answer(outcomes)?;
        if let Some(last) = answer.iter().map(|a| a.position).max() {
            advance_head(&self.head_tx, last);
        }
        metrics::store_commit("postgres", 1, started.elapsed());
        metrics::store_append("postgres", started.elapsed());
        Ok(answer)
    }
}

/// The body of one append transaction; the caller has run `BEGIN` and runs `COMMIT`.
async fn write_in_transaction(
    client: &Client,
    statements: &Statements,
    jobs: &[&PreparedAppend],
) -> Result<Vec<Outcome>, StoreError> {
    // The position lock first: everything below is decided while no other writer can commit.
    let last: i64 = client
        .query_one(&statements.lock_position, &[])
        .await
        .map_err(pg_error)?
        .get(0);
    let mut next_position = last as u64 + 1;

    // Both look-ups go out together; tokio-postgres pipelines them on the one connection.
    let first_ids: Vec<Uuid> = jobs.iter().map(|j| j.first_event_id()).collect();
    let streams: Vec<&str> = jobs
        .iter()
        .map(|j| j.request_stream.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let repeated_params: [&(dyn ToSql + Sync); 1] = [&first_ids];
    let heads_params: [&(dyn ToSql + Sync); 1] = [&streams];
    let (repeated_rows, head_rows) = tokio::try_join!(
        client.query(&statements.repeated, &repeated_params),
        client.query(&statements.heads, &heads_params),
    )
    .map_err(pg_error)?;
    let repeated: HashSet<Uuid> = repeated_rows.iter().map(|r| r.get::<_, Uuid>(0)).collect();
    let mut heads: HashMap<String, StreamHead> = HashMap::with_capacity(streams.len());
    for row in head_rows {
        let hash: Vec<u8> = row.get(2);
        heads.insert(
            row.get(0),
            StreamHead {
                version: row.get::<_, i64>(1) as u64,
                hash: EventHash::from_slice(&hash).map_err(|reason| StoreError::Corrupt {
                    position: 0,
                    reason,
                })?,
            },
        );
    }

    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    let mut rows = EventRows::default();
    for (index, job) in jobs.iter().enumerate() {
        if let Some(&earlier) = seen.get(&job.command_id) {
            outcomes.push(Outcome::SameAs(earlier));
            continue;
        }
        seen.insert(job.command_id, index);
        if repeated.contains(&job.first_event_id()) {
            let first = find_command_in(client, job.command_id).await?;
            outcomes.push(Outcome::Done(first.ok_or_else(|| {
                StoreError::Unavailable("repeated command's events vanished".into())
            })));
            continue;
        }
        let head = heads
            .get(job.request_stream.as_str())
            .copied()
            .unwrap_or_default();
        match job.seal(head, next_position) {
            Ok(events) => {
                next_position += events.len() as u64;
                if let Some(last) = events.last() {
                    heads.insert(
                        job.request_stream.as_str().to_string(),
                        StreamHead {
                            version: last.version,
                            hash: last.hash,
                        },
                    );
                }
                rows.extend(job, &events);
                outcomes.push(Outcome::Written(events));
            }
            Err(conflict) => outcomes.push(Outcome::Done(Err(conflict))),
        }
    }

    if !rows.position.is_empty() {
        let last = (next_position - 1) as i64;
        let insert_params: [&(dyn ToSql + Sync); 11] = [
            &rows.position,
            &rows.stream_id,
            &rows.version,
            &rows.event_id,
            &rows.command_id,
            &rows.event_type,
            &rows.schema_version,
            &rows.data,
            &rows.metadata,
            &rows.prev_hash,
            &rows.hash,
        ];
        let advance_params: [&(dyn ToSql + Sync); 1] = [&last];
        tokio::try_join!(
            client.execute(&statements.insert, &insert_params),
            client.execute(&statements.advance, &advance_params),
        )
        .map_err(pg_error)?;
    }
    Ok(outcomes)
}

/// Column arrays for one multi-row `INSERT ... SELECT * FROM UNNEST(...)`.
#[derive(Default)]
struct EventRows {
    position: Vec<i64>,
    stream_id: Vec<String>,
    version: Vec<i64>,
    event_id: Vec<Uuid>,
    command_id: Vec<Uuid>,
    event_type: Vec<String>,
    schema_version: Vec<i32>,
    data: Vec<String>,
    metadata: Vec<String>,
    prev_hash: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
}

impl EventRows {
    fn extend(&mut self, prepared: &PreparedAppend, events: &[RecordedEvent]) {
        for (i, e) in events.iter().enumerate() {
            self.position.push(e.position as i64);
            self.stream_id.push(e.stream_id.as_str().to_string());
            self.version.push(e.version as i64);
            self.event_id.push(e.event_id);
            self.command_id.push(e.metadata.command_id);
            self.event_type.push(e.event_type.clone());
            self.schema_version.push(e.schema_version as i32);
            self.data.push(prepared.stored_data(i).to_string());
            self.metadata.push(prepared.stored_metadata().to_string());
            self.prev_hash.push(e.prev_hash.0.to_vec());
            self.hash.push(e.hash.0.to_vec());
        }
    }
}

async fn find_command_in(
    client: &Client,
    command_id: Uuid,
) -> Result<Option<Appended>, StoreError> {
    let first = careflow_aggregates::event_id_for(command_id, 0);
    let rows = client
        .query(
            &format!(
                "{SELECT_EVENT} WHERE stream_id = (SELECT stream_id FROM events WHERE event_id = $1) \
                 AND version >= (SELECT version FROM events WHERE event_id = $1) \
                 AND command_id = $2 ORDER BY version"
            ),
            &[&first, &command_id],
        )
        .await
        .map_err(pg_error)?;
    let events = rows.iter().map(decode_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Appended::from_events(events, true))
}

fn decode_row(row: &Row) -> Result<RecordedEvent, StoreError> {
    let position = row.get::<_, i64>(0) as u64;
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    let stream: String = row.get(1);
    let data: String = row.get(6);
    let metadata: String = row.get(7);
    let prev_hash: Vec<u8> = row.get(8);
    let hash: Vec<u8> = row.get(9);
    Ok(RecordedEvent {
        event_id: row.get(3),
        stream_id: StreamId::parse(&stream).map_err(|e| corrupt(e.to_string()))?,
        version: row.get::<_, i64>(2) as u64,
        position,
        event_type: row.get(4),
        schema_version: row.get::<_, i32>(5) as u32,
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
impl EventStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn append(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        self.queue.submit(request).await
    }

    async fn append_all(&self, requests: Vec<AppendRequest>) -> Result<Vec<Appended>, StoreError> {
        self.append_unit(requests).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = match direction {
            Direction::Forward => format!(
                "{SELECT_EVENT} WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3"
            ),
            Direction::Backward => format!(
                "{SELECT_EVENT} WHERE stream_id = $1 AND version <= $2 ORDER BY version DESC LIMIT $3"
            ),
        };
        let client = self.client().await?;
        let rows = client
            .query(
                &sql,
                &[&stream.as_str(), &clamp(from), &clamp(limit as u64)],
            )
            .await
            .map_err(pg_error)?;
        rows.iter().map(decode_row).collect()
    }

    async fn read_all(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "{SELECT_EVENT} WHERE position >= $1 ORDER BY position LIMIT $2"
            ))
            .await
            .map_err(pg_error)?;
        let rows = client
            .query(&stmt, &[&clamp(from), &clamp(limit as u64)])
            .await
            .map_err(pg_error)?;
        rows.iter().map(decode_row).collect()
    }

    async fn find_command(
        &self,
        stream: &StreamId,
        command_id: Uuid,
    ) -> Result<Option<Appended>, StoreError> {
        let client = self.client().await?;
        Ok(find_command_in(&client, command_id)
            .await?
            .filter(|found| &found.stream_id == stream))
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        current_head(&client).await
    }

    fn head_watch(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }

    fn poll_interval(&self) -> Option<Duration> {
        Some(self.poll_interval)
    }

    async fn close(&self) {
        self.queue.close();
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }
}
