//! `KurrentStore`: the event store on a KurrentDB server, through the official gRPC client.
//!
//! KurrentDB already is an event store, so this backend is mostly a translation
//! (docs/event-store.md, "KurrentDB", has the reasoning):
//!
//! - **Appends.** careflow chains hashes itself (`PreparedAppend`), so an append reads the
//!   stream's head (its last event, for the version and the hash to chain onto), seals the
//!   events on it and appends them expecting exactly that revision. A conflict is
//!   KurrentDB's `WrongExpectedVersion`; for `ExpectedVersion::Any` the store re-reads the
//!   head and tries again (the chain must link to the real head). The events are read back
//!   after the write: KurrentDB gives each event its position, and a write the server took
//!   as an idempotent repeat of an earlier one (same event ids) is recognised by its hashes.
//! - **Repeated commands** ([`lookup`]): event ids are deterministic, so a repeat is found
//!   in the stream; `Any` appends also leave a marker stream per command.
//! - **Positions** are KurrentDB commit positions: ordered, never dense.
//! - **`append_all`** commits a unit only when it targets one stream (one KurrentDB append is
//!   atomic); a unit across streams is refused with [`StoreError::AtomicAcrossStreams`],
//!   because the client has no multi-stream transaction.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use careflow_aggregates::{RecordedEvent, StreamId};
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, Position, ReadAllOptions, ReadStreamOptions,
    StreamPosition, StreamState,
};
use tokio::sync::watch;
use uuid::Uuid;

use super::{
    Appended, Direction, EventStore, ExpectedVersion, PreparedAppend, StoreError, StreamHead,
};
use crate::clock::Clock;
use crate::operations::metrics;

mod import;
mod lookup;
mod stored;

pub use import::{ImportError, Imported};

const BACKEND: &str = "kurrentdb";

/// How many times an `Any` append re-reads a moving head before it gives up.
const ANY_ATTEMPTS: usize = 32;

/// How often a live subscription re-reads `$all` for other nodes' writes.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The most events one read of `$all` asks for.
const READ_PAGE: usize = 4_096;

/// Errors opening the backend.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Occurs when `kurrentdb_url` is not a connection string the client accepts.
    #[error("kurrentdb_url is not a KurrentDB connection string (kurrentdb://host:port?tls=false)")]
    Url(#[source] kurrentdb::ClientSettingsParseError),
    /// Occurs when the client cannot be built (it needs a tokio runtime). The client reports
    /// an `eyre::Report`, which is not a `std::error::Error`, so its text is kept.
    #[error("the KurrentDB client cannot start: {0}")]
    Client(String),
    /// Occurs when the server does not answer the first read.
    #[error("KurrentDB does not answer")]
    Unreachable(#[source] kurrentdb::Error),
}

impl From<OpenError> for StoreError {
    fn from(error: OpenError) -> Self {
        StoreError::Unavailable(crate::error_chain::error_chain(&error))
    }
}

/// The event store on KurrentDB.
pub struct KurrentStore {
    client: Client,
    head: watch::Sender<u64>,
    head_rx: watch::Receiver<u64>,
    open: std::sync::atomic::AtomicBool,
    /// Stamps `recorded_at` (the system's clock unless [`KurrentStore::with_clock`]).
    clock: Clock,
}

impl KurrentStore {
    /// Connects with a client connection string (`kurrentdb://` or `esdb://`) and checks the
    /// server answers a read.
    ///
    /// # Errors
    /// [`OpenError`].
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        let settings: ClientSettings = url.parse().map_err(OpenError::Url)?;
        let client = Client::new(settings).map_err(|e| OpenError::Client(e.to_string()))?;
        let (head, head_rx) = watch::channel(0);
        let store = Self {
            client,
            head,
            head_rx,
            open: std::sync::atomic::AtomicBool::new(true),
            clock: Clock::system(),
        };
        let position = store
            .last_position()
            .await
            .map_err(OpenError::Unreachable)?;
        store.head.send_replace(position);
        Ok(store)
    }

    /// The same store with `recorded_at` stamped by `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.open.load(std::sync::atomic::Ordering::Acquire) {
            Ok(())
        } else {
            Err(StoreError::Closed)
        }
    }

    /// Up to `limit` raw events of a stream from revision `from` (0-based) forward, or from
    /// `from` backward (`None`: the end).
    async fn read_raw(
        &self,
        stream: &str,
        from: Option<u64>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<kurrentdb::RecordedEvent>, StoreError> {
        let position = match (from, direction) {
            (Some(revision), _) => StreamPosition::Position(revision),
            (None, Direction::Forward) => StreamPosition::Start,
            (None, Direction::Backward) => StreamPosition::End,
        };
        let options = ReadStreamOptions::default()
            .position(position)
            .max_count(limit);
        let options = match direction {
            Direction::Forward => options.forwards(),
            Direction::Backward => options.backwards(),
        };
        let mut read = match self.client.read_stream(stream, &options).await {
            Ok(read) => read,
            Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
            Err(e) => return Err(unavailable(e)),
        };
        let mut out = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(resolved)) => {
                    if let Some(event) = resolved.event {
                        out.push(event);
                    }
                }
                Ok(None) => return Ok(out),
                Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
                Err(e) => return Err(unavailable(e)),
            }
        }
    }

    /// The stream's last event as careflow reads it: what the next append chains onto.
    async fn stream_head(&self, stream: &StreamId) -> Result<StreamHead, StoreError> {
        let last = self
            .read_raw(stream.as_str(), None, Direction::Backward, 1)
            .await?;
        match last.first() {
            None => Ok(StreamHead::default()),
            Some(raw) => {
                let event = stored::decode(raw)?;
                Ok(StreamHead {
                    version: event.version,
                    hash: event.hash,
                })
            }
        }
    }

    /// Events of `$all`, raw, forward from a KurrentDB position (`None`: the start).
    async fn read_all_raw(
        &self,
        from: Option<u64>,
        limit: usize,
    ) -> Result<Vec<kurrentdb::RecordedEvent>, kurrentdb::Error> {
        let position = match from {
            Some(p) => StreamPosition::Position(Position {
                commit: p,
                prepare: p,
            }),
            None => StreamPosition::Start,
        };
        let options = ReadAllOptions::default()
            .position(position)
            .forwards()
            .max_count(limit);
        let mut read = self.client.read_all(&options).await?;
        let mut out = Vec::new();
        while let Some(resolved) = read.next().await? {
            if let Some(event) = resolved.event {
                out.push(event);
            }
        }
        Ok(out)
    }

    /// The commit position of the newest careflow event (0: none), skipping the server's own.
    async fn last_position(&self) -> Result<u64, kurrentdb::Error> {
        const PAGE: usize = 64;
        let mut from = StreamPosition::End;
        loop {
            let options = ReadAllOptions::default()
                .position(from)
                .backwards()
                .max_count(PAGE);
            let mut read = self.client.read_all(&options).await?;
            let mut seen = 0;
            let mut oldest = None;
            while let Some(resolved) = read.next().await? {
                let Some(event) = resolved.event else {
                    continue;
                };
                seen += 1;
                if !stored::is_system(&event) {
                    return Ok(event.position.commit);
                }
                oldest = Some(event.position);
            }
            match oldest {
                Some(position) if seen == PAGE => from = StreamPosition::Position(position),
                _ => return Ok(0),
            }
        }
    }

    /// Appends one prepared command: seal on the head, append at that revision, read back.
    async fn append_prepared(&self, prepared: PreparedAppend) -> Result<Appended, StoreError> {
        let stream = prepared.request_stream.clone();
        let command_id = prepared.command_id;
        if prepared.expected == ExpectedVersion::Any
            && let Some(first) = lookup::marked_command(self, &stream, command_id).await?
        {
            return Ok(first);
        }
        let mut head = self.stream_head(&stream).await?;
        for _ in 0..ANY_ATTEMPTS {
            if !prepared.expected.admits(head.version) {
                return self.refuse(&prepared, head.version).await;
            }
            let sealed = prepared.seal(head, 0)?;
            let events = stored::to_event_data(&prepared, &sealed)?;
            let state = match head.version {
                0 => StreamState::NoStream,
                v => StreamState::StreamRevision(v - 1),
            };
            let started = Instant::now();
            let written = self
                .client
                .append_to_stream(
                    stream.as_str(),
                    &AppendToStreamOptions::default().stream_state(state),
                    events,
                )
                .await;
            match written {
                Ok(_) => {
                    metrics::store_commit(BACKEND, 1, started.elapsed());
                    return self.read_back(&prepared, head.version, &sealed).await;
                }
                Err(kurrentdb::Error::WrongExpectedVersion { current, .. }) => {
                    let actual = match current {
                        kurrentdb::CurrentRevision::Current(r) => r + 1,
                        kurrentdb::CurrentRevision::NoStream => 0,
                    };
                    if prepared.expected != ExpectedVersion::Any {
                        return self.refuse(&prepared, actual).await;
                    }
                    // Someone appended in between: maybe this very command (a concurrent
                    // retry), else chain onto the new head.
                    if let Some(first) =
                        lookup::command_after(self, &stream, head.version, command_id).await?
                    {
                        return Ok(first);
                    }
                    head = self.stream_head(&stream).await?;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "{stream} kept moving: {ANY_ATTEMPTS} appends in a row lost the race"
        )))
    }

    /// The answer to an append whose expectation failed at `actual`: the first result when
    /// the command was appended before (after the version it expected), else the conflict.
    async fn refuse(&self, prepared: &PreparedAppend, actual: u64) -> Result<Appended, StoreError> {
        let after = match prepared.expected {
            ExpectedVersion::Exact(v) => v,
            ExpectedVersion::NoStream | ExpectedVersion::Any => 0,
        };
        if actual > after
            && let Some(first) =
                lookup::command_after(self, &prepared.request_stream, after, prepared.command_id)
                    .await?
        {
            return Ok(first);
        }
        Err(StoreError::WrongExpectedVersion {
            stream: prepared.request_stream.clone(),
            expected: prepared.expected,
            actual,
        })
    }

    /// Reads the command's events back after a successful write: their positions, and
    /// whether they are the ones just sealed (else the server took the write as a repeat of
    /// an earlier one with the same ids, and those are the first result).
    async fn read_back(
        &self,
        prepared: &PreparedAppend,
        head_version: u64,
        sealed: &[RecordedEvent],
    ) -> Result<Appended, StoreError> {
        let raw = self
            .read_raw(
                prepared.request_stream.as_str(),
                Some(head_version),
                Direction::Forward,
                sealed.len(),
            )
            .await?;
        let events = raw
            .iter()
            .map(stored::decode)
            .collect::<Result<Vec<_>, _>>()?;
        let same_ids = events.len() == sealed.len()
            && events
                .iter()
                .zip(sealed)
                .all(|(read, ours)| read.event_id == ours.event_id);
        if !same_ids {
            return Err(StoreError::Unavailable(format!(
                "{} was written but its events do not read back",
                prepared.request_stream
            )));
        }
        let ours = events
            .iter()
            .zip(sealed)
            .all(|(read, ours)| read.hash == ours.hash);
        if let Some(last) = events.last() {
            self.head.send_if_modified(|h| {
                let moved = last.position > *h;
                *h = (*h).max(last.position);
                moved
            });
        }
        appended(events, !ours)
    }
}

/// The answer for a command's events.
fn appended(events: Vec<RecordedEvent>, duplicate: bool) -> Result<Appended, StoreError> {
    Appended::from_events(events, duplicate).ok_or(StoreError::EmptyAppend)
}

fn unavailable(error: kurrentdb::Error) -> StoreError {
    StoreError::Unavailable(format!("kurrentdb: {error}"))
}

#[async_trait]
impl EventStore for KurrentStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn append(&self, request: super::AppendRequest) -> Result<Appended, StoreError> {
        self.check_open()?;
        let started = Instant::now();
        let prepared = PreparedAppend::new(request, self.clock.now())?;
        let result = self.append_prepared(prepared).await;
        metrics::store_append(BACKEND, started.elapsed());
        result
    }

    async fn append_all(
        &self,
        requests: Vec<super::AppendRequest>,
    ) -> Result<Vec<Appended>, StoreError> {
        self.check_open()?;
        let started = Instant::now();
        let result = self.append_unit(requests).await;
        metrics::store_append(BACKEND, started.elapsed());
        result
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 || (direction == Direction::Backward && from == 0) {
            return Ok(Vec::new());
        }
        // careflow versions start at 1, KurrentDB revisions at 0.
        let revision = match direction {
            Direction::Forward => Some(from.saturating_sub(1)),
            Direction::Backward if from == u64::MAX => None,
            Direction::Backward => Some(from - 1),
        };
        self.read_raw(stream.as_str(), revision, direction, limit)
            .await?
            .iter()
            .map(stored::decode)
            .collect()
    }

    async fn read_all(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_all_stored(from, limit)
            .await?
            .iter()
            .map(stored::decode)
            .collect()
    }

    async fn find_command(
        &self,
        stream: &StreamId,
        command_id: Uuid,
    ) -> Result<Option<Appended>, StoreError> {
        lookup::find_in_stream(self, stream, command_id).await
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        let position = self.last_position().await.map_err(unavailable)?;
        self.head.send_if_modified(|h| {
            let moved = position > *h;
            *h = (*h).max(position);
            moved
        });
        Ok(position)
    }

    fn head_watch(&self) -> watch::Receiver<u64> {
        self.head_rx.clone()
    }

    fn poll_interval(&self) -> Option<Duration> {
        // Other careflow nodes (and `store copy`) may write to the same server.
        Some(POLL_INTERVAL)
    }

    async fn close(&self) {
        // Appends are awaited by their callers; nothing is queued inside the store.
        self.open.store(false, std::sync::atomic::Ordering::Release);
    }
}

impl KurrentStore {
    /// Up to `limit` of careflow's events with position `>= from`, as KurrentDB returned them
    /// (the server's own events left out): what `read_all` decodes, and what `audit verify`
    /// hashes from the stored bytes.
    ///
    /// # Errors
    /// [`StoreError::InvalidPosition`] for a `from` KurrentDB cannot start at, otherwise
    /// [`StoreError::Unavailable`].
    pub async fn read_all_stored(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<kurrentdb::RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(limit.min(4_096));
        // Positions below `floor` were asked for by nobody or handled already: a page after
        // the first starts at the last event of the one before (a position KurrentDB can
        // read from), which is read again and skipped.
        let mut floor = from;
        let mut want = limit.min(READ_PAGE) + 1;
        let (mut cursor, mut page) = self.first_page(from, want).await?;
        loop {
            let got = page.len();
            for raw in page {
                let position = raw.position.commit;
                cursor = Some(position);
                // The server's own events ($-typed, $-streams) are not careflow's log.
                if position < floor || stored::is_system(&raw) {
                    continue;
                }
                out.push(raw);
                if out.len() == limit {
                    return Ok(out);
                }
            }
            if got < want {
                return Ok(out);
            }
            floor = cursor.map_or(floor, |c| c + 1).max(floor);
            want = (limit - out.len()).min(READ_PAGE) + 1;
            page = self.read_all_raw(cursor, want).await.map_err(unavailable)?;
        }
    }

    /// `append_all` on KurrentDB: one append when every request targets one stream (each
    /// part's expectation checked against the parts before it), a refusal otherwise.
    async fn append_unit(
        &self,
        requests: Vec<super::AppendRequest>,
    ) -> Result<Vec<Appended>, StoreError> {
        let prepared = super::prepare_unit(requests, self.clock.now())?;
        let Some(stream) = prepared.first().map(|p| p.request_stream.clone()) else {
            return Ok(Vec::new());
        };
        let mut streams: Vec<&StreamId> = prepared.iter().map(|p| &p.request_stream).collect();
        streams.sort();
        streams.dedup();
        if streams.len() > 1 {
            return Err(StoreError::AtomicAcrossStreams {
                backend: BACKEND,
                streams: streams.len(),
            });
        }
        let head = self.stream_head(&stream).await?;
        let mut running = head;
        let mut sealed_parts = Vec::with_capacity(prepared.len());
        for part in &prepared {
            if !part.expected.admits(running.version) {
                return self.unit_refused(&prepared, part, running.version).await;
            }
            let sealed = part.seal(running, 0)?;
            if let Some(last) = sealed.last() {
                running = StreamHead {
                    version: last.version,
                    hash: last.hash,
                };
            }
            sealed_parts.push(sealed);
        }
        let mut events = Vec::new();
        for (part, sealed) in prepared.iter().zip(&sealed_parts) {
            events.extend(stored::to_event_data(part, sealed)?);
        }
        let state = match head.version {
            0 => StreamState::NoStream,
            v => StreamState::StreamRevision(v - 1),
        };
        let started = Instant::now();
        let written = self
            .client
            .append_to_stream(
                stream.as_str(),
                &AppendToStreamOptions::default().stream_state(state),
                events,
            )
            .await;
        match written {
            Ok(_) => metrics::store_commit(BACKEND, prepared.len(), started.elapsed()),
            Err(kurrentdb::Error::WrongExpectedVersion { current, .. }) => {
                let actual = match current {
                    kurrentdb::CurrentRevision::Current(r) => r + 1,
                    kurrentdb::CurrentRevision::NoStream => 0,
                };
                let first = prepared.first().unwrap_or_else(|| unreachable!());
                return self.unit_refused(&prepared, first, actual).await;
            }
            Err(e) => return Err(unavailable(e)),
        }
        let mut answers = Vec::with_capacity(prepared.len());
        let mut version = head.version;
        for (part, sealed) in prepared.iter().zip(&sealed_parts) {
            let answer = self.read_back(part, version, sealed).await?;
            version += sealed.len() as u64;
            answers.push(answer);
        }
        Ok(answers)
    }

    /// A unit whose `failing` part's expectation does not hold at `actual`: the first results
    /// when every part was committed before (a retried unit), else the conflict.
    async fn unit_refused(
        &self,
        prepared: &[PreparedAppend],
        failing: &PreparedAppend,
        actual: u64,
    ) -> Result<Vec<Appended>, StoreError> {
        let mut repeats = Vec::new();
        for part in prepared {
            let after = match part.expected {
                ExpectedVersion::Exact(v) => v,
                ExpectedVersion::NoStream | ExpectedVersion::Any => 0,
            };
            if let Some(first) =
                lookup::command_after(self, &part.request_stream, after, part.command_id).await?
            {
                repeats.push(first);
            }
        }
        if repeats.len() == prepared.len() {
            return Ok(repeats);
        }
        if !repeats.is_empty() {
            return Err(StoreError::Unavailable(
                "an atomic append repeats only some of the commands of an earlier one".into(),
            ));
        }
        Err(StoreError::WrongExpectedVersion {
            stream: failing.request_stream.clone(),
            expected: failing.expected,
            actual,
        })
    }

    /// The first page of a read of careflow positions `>= from`, and where it started.
    ///
    /// KurrentDB can only read `$all` from a position where a record starts. Every reader of
    /// the log asks for the position after the last one it handled (`last + 1`), so
    /// `from - 1` is an event's own position and is tried first; a caller that passes an
    /// event's position itself is served by the second try. Anything else is refused with a
    /// clear error.
    async fn first_page(
        &self,
        from: u64,
        want: usize,
    ) -> Result<(Option<u64>, Vec<kurrentdb::RecordedEvent>), StoreError> {
        if from <= 1 {
            let page = self.read_all_raw(None, want).await.map_err(unavailable)?;
            return Ok((None, page));
        }
        for candidate in [from - 1, from] {
            match self.read_all_raw(Some(candidate), want).await {
                Ok(page) => return Ok((Some(candidate), page)),
                Err(kurrentdb::Error::Grpc {
                    code: tonic::Code::InvalidArgument,
                    ..
                }) => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StoreError::InvalidPosition { position: from })
    }
}
