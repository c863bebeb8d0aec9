//! The event store: one trait, several backends, one conformance suite.
//!
//! This module owns the *contract* every backend keeps (DESIGN.md "The event store"):
//! optimistic concurrency per stream, idempotent appends keyed by command id, durable
//! acknowledgement (an `Ok` from [`EventStore::append`] means the events are fsync'd or
//! committed), a gap-free global order, and one reader of the log per process ([`LogFeed`]) with a
//! catch-up-then-live [`Subscription`] per consumer, built once on `read_all` for every
//! backend. What each backend owns is how it gets there: the
//! SQLite writer thread and the PostgreSQL commit lock live in their own modules.
//!
//! Hashing happens here too (see [`seal`]): a backend hands in the stream's head and gets
//! back fully formed, chained [`RecordedEvent`]s, so no backend can chain differently.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use careflow_aggregates::{
    EventHash, EventMetadata, RecordedEvent, StreamId, canonical_bytes, event_id_for,
};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::{Config, StoreKind};

pub mod availability;
pub mod feed;
pub mod idempotency;
pub mod internal;
pub mod kurrentdb;
pub mod pg_connect;
pub mod postgres;
pub mod side;
pub mod snapshot;
pub mod sqlite;

pub use feed::{Events, FeedConfig, LogFeed, Subscription};

/// What the caller believes the stream's version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream holds.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this version.
    Exact(u64),
}

impl ExpectedVersion {
    fn admits(self, current: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::Exact(v) => current == v,
        }
    }

    /// The version the first new event would get if the expectation holds, when it is known
    /// before the stream's head is read (everything but `Any`).
    fn implied_first_version(self) -> Option<u64> {
        match self {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoStream => Some(1),
            ExpectedVersion::Exact(v) => Some(v + 1),
        }
    }
}

/// One event a command wants to append, before the store gives it a place.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposedEvent {
    pub event_type: String,
    pub schema_version: u32,
    pub data: serde_json::Value,
}

/// Who asked, why and when: becomes every event's [`EventMetadata`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMeta {
    pub command_id: Uuid,
    pub correlation_id: String,
    pub causation_id: String,
    pub principal: String,
    pub source: String,
    pub occurred_at: DateTime<Utc>,
}

/// An append: the events of one command, all or nothing.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub stream_id: StreamId,
    pub expected: ExpectedVersion,
    pub meta: CommandMeta,
    pub events: Vec<ProposedEvent>,
}

/// The outcome of a successful append (or of a repeated one).
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub stream_id: StreamId,
    /// The stream's version after the command's events (of the *first* append for a repeat).
    pub version: u64,
    /// The global position of the command's last event.
    pub position: u64,
    pub events: Vec<RecordedEvent>,
    /// True when the command id had been appended before and nothing new was written.
    pub duplicate: bool,
}

/// Direction of a stream read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Versions `>= from`, ascending.
    Forward,
    /// Versions `<= from`, descending.
    Backward,
}

/// Errors of the store, whatever the backend.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Occurs when the stream's version is not what the append expected.
    ///
    /// ### Handling
    /// The actor reloads and decides again; after its retries, HTTP 409. Nothing appended.
    #[error("stream {stream} is at version {actual}, expected {expected:?}")]
    WrongExpectedVersion {
        stream: StreamId,
        expected: ExpectedVersion,
        actual: u64,
    },
    /// Occurs when an append carries no events.
    #[error("an append must carry at least one event")]
    EmptyAppend,
    /// Occurs when the backend cannot be reached or refuses work (disk full, connection lost).
    ///
    /// ### Handling
    /// HTTP 503 with Retry-After; the caller retries with the same command id.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// Occurs when stored rows cannot be turned back into events (a broken schema or a row
    /// edited by hand). `audit verify` reports the details.
    #[error("stored event at position {position} cannot be read: {reason}")]
    Corrupt { position: u64, reason: String },
    /// Occurs after [`EventStore::close`].
    #[error("event store is shut down")]
    Closed,
    /// Occurs when [`EventStore::append_all`] names several streams on a backend that cannot
    /// commit them together (KurrentDB: the client has no multi-stream transaction).
    ///
    /// ### Handling
    /// Nothing is appended. A FHIR transaction Bundle gets an OperationOutcome (422) that says
    /// so; the sender splits it or the site uses SQLite or PostgreSQL (docs/event-store.md).
    #[error(
        "{backend} cannot append to {streams} streams atomically; only to one stream at a time"
    )]
    AtomicAcrossStreams {
        backend: &'static str,
        streams: usize,
    },
    /// Occurs when `read_all` is asked to start at a position that is neither an event's
    /// position nor the one after it, on a backend whose positions are not dense (KurrentDB
    /// can read its log only from where a record starts).
    ///
    /// ### Handling
    /// HTTP 400 on `GET /v1/events`; careflow's own readers always pass `last + 1`.
    #[error("position {position} is not the position of an event, nor the one after it")]
    InvalidPosition { position: u64 },
}

impl StoreError {
    pub(crate) fn unavailable(err: impl std::fmt::Display) -> Self {
        StoreError::Unavailable(err.to_string())
    }
}

/// The operations careflow needs from an event store. See the module docs for the contract.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// `sqlite`, `postgres` or `kurrentdb`: a bounded metric label.
    fn backend(&self) -> &'static str;

    /// Appends one command's events durably, or returns the first result for a repeated
    /// command id (with `duplicate: true`) without writing anything.
    ///
    /// # Errors
    /// [`StoreError::WrongExpectedVersion`] when the expectation fails (and the command is
    /// new), otherwise backend errors.
    async fn append(&self, request: AppendRequest) -> Result<Appended, StoreError>;

    /// Appends several commands' events, to one stream or several, all or nothing: every
    /// request's expectation is checked and all of them are committed in one transaction, or
    /// none is. What a FHIR transaction Bundle needs (a Patient and its Encounter together).
    ///
    /// The answers come back in request order. When *every* request repeats a committed
    /// command (a retried unit), each answer is that first result with `duplicate: true` and
    /// nothing is written; a unit that repeats only some of its commands is refused.
    ///
    /// # Errors
    /// The first [`StoreError::WrongExpectedVersion`] of the unit (nothing appended),
    /// [`StoreError::EmptyAppend`] for a request without events, otherwise backend errors.
    async fn append_all(&self, requests: Vec<AppendRequest>) -> Result<Vec<Appended>, StoreError>;

    /// Up to `limit` events of one stream from version `from` in `direction`.
    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `limit` events of the global log with position `>= from`, in position order. A
    /// backend must never return a position while an earlier one can still appear.
    async fn read_all(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The result of an earlier append of this command id to `stream`, if there was one.
    ///
    /// Scoped to a stream because every caller knows it (the HTTP path, the HL7 and FHIR
    /// adapters, the process managers all address one aggregate), and because that keeps
    /// idempotency off a global random-key index (see docs/event-store.md).
    async fn find_command(
        &self,
        stream: &StreamId,
        command_id: Uuid,
    ) -> Result<Option<Appended>, StoreError>;

    /// The position of the newest committed event (0 for an empty store).
    async fn head_position(&self) -> Result<u64, StoreError>;

    /// Changes whenever this process commits; subscriptions wake on it. Backends shared by
    /// several processes are also polled (see [`Subscription`]).
    fn head_watch(&self) -> watch::Receiver<u64>;

    /// How often a live subscription re-reads without a local wake-up: `None` where every
    /// append goes through this process.
    fn poll_interval(&self) -> Option<Duration>;

    /// Stops taking appends, lets queued ones commit and answers them.
    async fn close(&self);
}

/// Opens the backend the configuration names, stamping `recorded_at` from `clock`.
///
/// # Errors
/// [`StoreError::Unavailable`] when the backend cannot be opened (unreachable, a bad URL).
pub async fn open(config: &Config, clock: &Clock) -> Result<Arc<dyn EventStore>, StoreError> {
    match config.store {
        StoreKind::Sqlite => Ok(Arc::new(sqlite::SqliteStore::open(
            sqlite::SqliteConfig::new(config.sqlite_path()).with_clock(clock.clone()),
        )?)),
        StoreKind::Postgres => {
            let url = config
                .database_url
                .as_ref()
                .ok_or_else(|| StoreError::Unavailable("database_url is not set".into()))?;
            Ok(Arc::new(
                postgres::PostgresStore::open(
                    postgres::PostgresConfig::new(url.expose(), config.database_schema.clone())
                        .with_clock(clock.clone()),
                )
                .await?,
            ))
        }
        StoreKind::Kurrentdb => {
            let url = config
                .kurrentdb_url
                .as_ref()
                .ok_or_else(|| StoreError::Unavailable("kurrentdb_url is not set".into()))?;
            Ok(Arc::new(
                kurrentdb::KurrentStore::open(url.expose())
                    .await?
                    .with_clock(clock.clone()),
            ))
        }
    }
}

/// Opens a subscription to the global log from `from` (inclusive): catch-up, then live, on a
/// feed of its own. A server has one [`LogFeed`] that all its consumers subscribe to; this is
/// for a reader on its own (a tool, a test).
pub async fn subscribe(store: Arc<dyn EventStore>, from: u64) -> Subscription {
    LogFeed::start(store, FeedConfig::default())
        .await
        .subscribe(from)
}

/// A stream's last version and hash, what the next append chains onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamHead {
    pub version: u64,
    pub hash: EventHash,
}

/// Proposed events turned into recorded ones *before* the backend knows the stream's head.
///
/// Everything that does not depend on the head (event ids, metadata, the canonical bytes of
/// each event and the JSON text that will be stored) is computed here, on the caller's task,
/// so that a backend's single writer only chains hashes and writes rows. The canonical bytes
/// assume the version the expectation implies; sealing recomputes them when the real head
/// differs (only possible with `ExpectedVersion::Any`).
#[derive(Debug, Clone)]
pub struct PreparedAppend {
    pub request_stream: StreamId,
    pub expected: ExpectedVersion,
    pub command_id: Uuid,
    events: Vec<RecordedEvent>,
    canonical: Option<Vec<Vec<u8>>>,
    stored_data: Vec<String>,
    stored_metadata: String,
}

impl PreparedAppend {
    /// Builds the events of a request, stamped with `recorded_at`.
    ///
    /// # Errors
    /// [`StoreError::EmptyAppend`] for a request without events; [`StoreError::Unavailable`]
    /// when the data cannot be serialised (a map with non-string keys cannot occur in a
    /// `serde_json::Value`, so in practice never).
    pub fn new(request: AppendRequest, recorded_at: DateTime<Utc>) -> Result<Self, StoreError> {
        if request.events.is_empty() {
            return Err(StoreError::EmptyAppend);
        }
        let metadata = EventMetadata {
            command_id: request.meta.command_id,
            correlation_id: request.meta.correlation_id,
            causation_id: request.meta.causation_id,
            principal: request.meta.principal,
            source: request.meta.source,
            recorded_at,
            occurred_at: request.meta.occurred_at,
        };
        let stored_metadata = serde_json::to_string(&metadata).map_err(StoreError::unavailable)?;
        let stored_data = request
            .events
            .iter()
            .map(|e| serde_json::to_string(&e.data))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::unavailable)?;
        let first = request.expected.implied_first_version().unwrap_or(1);
        let events: Vec<RecordedEvent> = request
            .events
            .into_iter()
            .enumerate()
            .map(|(i, proposed)| RecordedEvent {
                event_id: event_id_for(request.meta.command_id, i as u32),
                stream_id: request.stream_id.clone(),
                version: first + i as u64,
                position: 0,
                event_type: proposed.event_type,
                schema_version: proposed.schema_version,
                data: proposed.data,
                metadata: metadata.clone(),
                prev_hash: EventHash::ZERO,
                hash: EventHash::ZERO,
            })
            .collect();
        let canonical = request
            .expected
            .implied_first_version()
            .map(|_| events.iter().map(canonical_bytes).collect());
        Ok(Self {
            request_stream: request.stream_id,
            expected: request.expected,
            command_id: request.meta.command_id,
            events,
            canonical,
            stored_data,
            stored_metadata,
        })
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The id of the command's first event: what idempotency lookups search for.
    pub fn first_event_id(&self) -> Uuid {
        event_id_for(self.command_id, 0)
    }

    /// The `data` of event `i` as it is stored (JSON text).
    pub fn stored_data(&self, i: usize) -> &str {
        self.stored_data.get(i).map_or("null", String::as_str)
    }

    /// The metadata every event of the command stores (JSON text).
    pub fn stored_metadata(&self) -> &str {
        &self.stored_metadata
    }

    /// The events, as the last successful seal left them.
    pub fn events(&self) -> &[RecordedEvent] {
        &self.events
    }

    /// Moves the sealed events out, once the append is committed.
    pub fn take_events(&mut self) -> Vec<RecordedEvent> {
        std::mem::take(&mut self.events)
    }

    /// Checks the expectation against `head` and, when it holds, places the events after it:
    /// versions, positions from `first_position`, hash chain. Sealing again (after a failed
    /// transaction) recomputes everything.
    ///
    /// # Errors
    /// [`StoreError::WrongExpectedVersion`].
    pub fn seal_in_place(
        &mut self,
        head: StreamHead,
        first_position: u64,
    ) -> Result<(), StoreError> {
        if !self.expected.admits(head.version) {
            return Err(StoreError::WrongExpectedVersion {
                stream: self.request_stream.clone(),
                expected: self.expected,
                actual: head.version,
            });
        }
        let reuse = self
            .canonical
            .as_ref()
            .filter(|_| self.expected.implied_first_version() == Some(head.version + 1));
        let mut prev = head.hash;
        for (i, e) in self.events.iter_mut().enumerate() {
            e.version = head.version + 1 + i as u64;
            e.position = first_position + i as u64;
            e.prev_hash = prev;
            let mut hasher = Sha256::new();
            hasher.update(prev.0);
            match reuse {
                Some(bytes) => hasher.update(&bytes[i]),
                None => hasher.update(canonical_bytes(e)),
            }
            e.hash = EventHash(hasher.finalize().into());
            prev = e.hash;
        }
        Ok(())
    }

    /// Like [`PreparedAppend::seal_in_place`] but returns sealed copies, leaving `self` as it
    /// was for a backend that may need to seal the same append again.
    ///
    /// # Errors
    /// [`StoreError::WrongExpectedVersion`].
    pub fn seal(
        &self,
        head: StreamHead,
        first_position: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut copy = self.clone();
        copy.seal_in_place(head, first_position)?;
        Ok(copy.events)
    }
}

impl Appended {
    /// The answer for a command whose events were just written or found again.
    pub(crate) fn from_events(events: Vec<RecordedEvent>, duplicate: bool) -> Option<Self> {
        let last = events.last()?;
        Some(Self {
            stream_id: last.stream_id.clone(),
            version: last.version,
            position: last.position,
            events,
            duplicate,
        })
    }
}

/// One append waiting for a backend's writer, with the channel its answer goes back on.
pub(crate) struct WriteJob {
    pub prepared: PreparedAppend,
    pub reply: tokio::sync::oneshot::Sender<Result<Appended, StoreError>>,
}

/// Several appends that a backend's writer commits together or not at all
/// ([`EventStore::append_all`]).
pub(crate) struct AtomicJob {
    pub prepared: Vec<PreparedAppend>,
    pub reply: tokio::sync::oneshot::Sender<Result<Vec<Appended>, StoreError>>,
}

/// The hand-off from callers to a backend's single writer (thread or task): prepares the
/// append on the caller's side, queues it with back-pressure, and waits for the durable
/// answer. Closing it lets the writer drain what is queued and stop.
///
/// `J` is what the writer's channel carries: plain [`WriteJob`]s, or a backend's own enum
/// that also carries [`AtomicJob`]s.
pub(crate) struct WriterQueue<J = WriteJob> {
    backend: &'static str,
    sender: std::sync::Mutex<Option<tokio::sync::mpsc::Sender<J>>>,
    /// What stamps `recorded_at` on the caller's side, before the append is queued.
    clock: Clock,
}

impl<J: Send + 'static> WriterQueue<J> {
    pub fn new(
        backend: &'static str,
        sender: Option<tokio::sync::mpsc::Sender<J>>,
        clock: Clock,
    ) -> Self {
        Self {
            backend,
            sender: std::sync::Mutex::new(sender),
            clock,
        }
    }

    /// The clock that stamps `recorded_at`.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn sender(&self) -> Result<tokio::sync::mpsc::Sender<J>, StoreError> {
        self.sender
            .lock()
            .map_err(|_| StoreError::Closed)?
            .clone()
            .ok_or(StoreError::Closed)
    }

    /// Whether appends are still taken (false on read-only handles and after `close`).
    pub fn is_open(&self) -> bool {
        self.sender.lock().map(|s| s.is_some()).unwrap_or(false)
    }

    /// Drops the sender: the writer ends once the queue is drained.
    pub fn close(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
    }
}

impl<J: From<AtomicJob> + Send + 'static> WriterQueue<J> {
    /// Queues `requests` as one unit and waits until the writer answers it.
    ///
    /// # Errors
    /// What the writer answered, or [`StoreError::Closed`] once the queue is closed.
    pub async fn submit_all(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Appended>, StoreError> {
        let started = std::time::Instant::now();
        let prepared = prepare_unit(requests, self.clock.now())?;
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.sender()?
            .send(J::from(AtomicJob { prepared, reply }))
            .await
            .map_err(|_| StoreError::Closed)?;
        let result = answer.await.map_err(|_| StoreError::Closed)?;
        crate::operations::metrics::store_append(self.backend, started.elapsed());
        result
    }
}

impl<J: From<WriteJob> + Send + 'static> WriterQueue<J> {
    /// Queues `request` and waits until the writer answers it.
    ///
    /// # Errors
    /// What the writer answered, or [`StoreError::Closed`] once the queue is closed.
    pub async fn submit(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        let started = std::time::Instant::now();
        let prepared = PreparedAppend::new(request, self.clock.now())?;
        let sender = self.sender()?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        sender
            .send(J::from(WriteJob { prepared, reply }))
            .await
            .map_err(|_| StoreError::Closed)?;
        let result = answer.await.map_err(|_| StoreError::Closed)?;
        crate::operations::metrics::store_append(self.backend, started.elapsed());
        result
    }
}

/// The requests of an atomic unit prepared with one `recorded_at`.
///
/// # Errors
/// [`StoreError::EmptyAppend`] when one of them carries no events.
pub(crate) fn prepare_unit(
    requests: Vec<AppendRequest>,
    recorded_at: DateTime<Utc>,
) -> Result<Vec<PreparedAppend>, StoreError> {
    requests
        .into_iter()
        .map(|request| PreparedAppend::new(request, recorded_at))
        .collect()
}

/// Why an atomic unit must not be committed, given how each of its parts was decided: `None`
/// when every part is written (commit), else the answer to give without writing anything.
pub(crate) fn unit_refusal(outcomes: &[Outcome]) -> Option<Result<Vec<Appended>, StoreError>> {
    if outcomes.iter().all(|o| matches!(o, Outcome::Written(_))) {
        return None;
    }
    for outcome in outcomes {
        if let Outcome::Done(Err(error)) = outcome {
            return Some(Err(error.clone()));
        }
    }
    if outcomes.iter().any(|o| matches!(o, Outcome::SameAs(_))) {
        return Some(Err(StoreError::Unavailable(
            "an atomic append names the same command id twice".into(),
        )));
    }
    let repeats: Vec<Appended> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Done(Ok(first)) => Some(Appended {
                duplicate: true,
                ..first.clone()
            }),
            _ => None,
        })
        .collect();
    if repeats.len() == outcomes.len() {
        Some(Ok(repeats))
    } else {
        Some(Err(StoreError::Unavailable(
            "an atomic append repeats only some of the commands of an earlier one".into(),
        )))
    }
}

/// The answers of a committed atomic unit (every outcome is `Written`).
pub(crate) fn unit_answer(outcomes: Vec<Outcome>) -> Result<Vec<Appended>, StoreError> {
    outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Outcome::Written(events) => {
                Appended::from_events(events, false).ok_or(StoreError::EmptyAppend)
            }
            Outcome::SameAs(_) | Outcome::Done(_) => Err(StoreError::Unavailable(
                "an atomic append was committed with a part it did not write".into(),
            )),
        })
        .collect()
}

/// How one append of a group commit ended, as the backend's writer decided it.
pub(crate) enum Outcome {
    /// Written in this batch's transaction (stands once it commits).
    Written(Vec<RecordedEvent>),
    /// The same command id as the job at this earlier index of the batch.
    SameAs(usize),
    /// Decided without writing: a conflict, or the first result of a repeated command.
    Done(Result<Appended, StoreError>),
}

/// Answers every caller of a committed batch, in job order. A job that repeats an earlier
/// job's command gets that job's answer (as a duplicate, when it succeeded).
pub(crate) fn answer(
    replies: impl Iterator<Item = tokio::sync::oneshot::Sender<Result<Appended, StoreError>>>,
    outcomes: Vec<Outcome>,
) {
    let mut results: Vec<Result<Appended, StoreError>> = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        let result = match outcome {
            Outcome::Written(events) => {
                Appended::from_events(events, false).ok_or(StoreError::EmptyAppend)
            }
            Outcome::SameAs(earlier) => match results.get(earlier) {
                Some(Ok(first)) => Ok(Appended {
                    duplicate: true,
                    ..first.clone()
                }),
                Some(Err(error)) => Err(error.clone()),
                None => Err(StoreError::Unavailable(
                    "a repeated command referred to a later job".into(),
                )),
            },
            Outcome::Done(result) => result,
        };
        results.push(result);
    }
    for (reply, result) in replies.zip(results) {
        // A caller that stopped waiting is fine: its events are durable regardless.
        let _ = reply.send(result);
    }
}

#[cfg(test)]
mod tests;
