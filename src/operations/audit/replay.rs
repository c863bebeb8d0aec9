//! `careflow replay <stream> [--as-of T]`: a stream's state as of a time, with the events
//! that made it.
//!
//! The state is rebuilt by folding the stream's events whose `recorded_at` is at or before
//! `as_of` (the first later event ends the replay, as for `GET ...?as_of=`). The caller renders
//! it ([`Replayed::report`]): the CLI uses the same view the HTTP API uses, so an auditor sees
//! the shape the upstream systems saw, and this module stays free of HTTP.
//! It only reads: on SQLite it runs on a read-only handle, beside a running server or on a
//! stopped one's data dir.

use careflow_aggregates::{
    Aggregate, Claim, Encounter, InventoryItem, PatientAccount, PurchaseWorkflow, RecordedEvent,
    Roster, Staffing, StreamId,
};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::{Direction, EventStore, StoreError};

/// Events read per store call.
const PAGE: usize = 10_000;

/// Why a replay could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Occurs for streams that are not one of the four aggregates (the access log, timers).
    #[error("stream kind {0:?} has no state to replay")]
    NotAnAggregate(String),
    /// Occurs when the stream has no event at or before `as_of`.
    #[error("stream {0} has no events at or before the given time")]
    NoEvents(String),
    /// Occurs when a stored event does not decode (`audit verify` says more).
    #[error("{stream} version {version} does not decode: {reason}")]
    Corrupt {
        stream: String,
        version: u64,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The state a replay folded, by aggregate.
#[derive(Debug, Clone)]
pub enum FoldedState {
    PatientAccount(<PatientAccount as Aggregate>::State),
    Encounter(<Encounter as Aggregate>::State),
    InventoryItem(<InventoryItem as Aggregate>::State),
    Purchase(<PurchaseWorkflow as Aggregate>::State),
    Claim(<Claim as Aggregate>::State),
    Roster(<Roster as Aggregate>::State),
    Staffing(<Staffing as Aggregate>::State),
}

/// A replayed state.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub stream: StreamId,
    pub as_of: Option<DateTime<Utc>>,
    pub version: u64,
    pub position: u64,
    pub state: FoldedState,
    /// The events folded into it, in version order.
    pub events: Vec<RecordedEvent>,
}

/// What `careflow replay` prints: the replay with its state as the caller rendered it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport<'a> {
    pub stream: &'a str,
    pub as_of: Option<DateTime<Utc>>,
    pub version: u64,
    pub position: u64,
    pub state: serde_json::Value,
    pub events: &'a [RecordedEvent],
}

/// Replays `stream` as of `as_of` (now when `None`).
///
/// # Errors
/// [`ReplayError`].
pub async fn replay(
    store: &dyn EventStore,
    stream: &StreamId,
    as_of: Option<DateTime<Utc>>,
) -> Result<Replayed, ReplayError> {
    let (state, events) = match stream.kind() {
        PatientAccount::KIND => {
            let (state, events) = fold::<PatientAccount>(store, stream, as_of).await?;
            (FoldedState::PatientAccount(state), events)
        }
        Encounter::KIND => {
            let (state, events) = fold::<Encounter>(store, stream, as_of).await?;
            (FoldedState::Encounter(state), events)
        }
        InventoryItem::KIND => {
            let (state, events) = fold::<InventoryItem>(store, stream, as_of).await?;
            (FoldedState::InventoryItem(state), events)
        }
        PurchaseWorkflow::KIND => {
            let (state, events) = fold::<PurchaseWorkflow>(store, stream, as_of).await?;
            (FoldedState::Purchase(state), events)
        }
        Claim::KIND => {
            let (state, events) = fold::<Claim>(store, stream, as_of).await?;
            (FoldedState::Claim(state), events)
        }
        Roster::KIND => {
            let (state, events) = fold::<Roster>(store, stream, as_of).await?;
            (FoldedState::Roster(state), events)
        }
        Staffing::KIND => {
            let (state, events) = fold::<Staffing>(store, stream, as_of).await?;
            (FoldedState::Staffing(state), events)
        }
        other => return Err(ReplayError::NotAnAggregate(other.to_owned())),
    };
    let Some(last) = events.last() else {
        return Err(ReplayError::NoEvents(stream.to_string()));
    };
    Ok(Replayed {
        stream: stream.clone(),
        as_of,
        version: last.version,
        position: last.position,
        state,
        events,
    })
}

async fn fold<A: Aggregate>(
    store: &dyn EventStore,
    stream: &StreamId,
    as_of: Option<DateTime<Utc>>,
) -> Result<(A::State, Vec<RecordedEvent>), ReplayError> {
    let mut state = A::initial_state();
    let mut events: Vec<RecordedEvent> = Vec::new();
    'pages: loop {
        let from = events.last().map_or(1, |e| e.version + 1);
        let page = store
            .read_stream(stream, from, Direction::Forward, PAGE)
            .await?;
        let full = page.len() == PAGE;
        for event in page {
            if as_of.is_some_and(|t| event.metadata.recorded_at > t) {
                break 'pages;
            }
            let decoded = A::decode(&event.event_type, event.schema_version, event.data.clone())
                .map_err(|error| ReplayError::Corrupt {
                    stream: stream.to_string(),
                    version: event.version,
                    reason: error.to_string(),
                })?;
            state = A::evolve(state, &decoded);
            events.push(event);
        }
        if !full {
            break;
        }
    }
    Ok((state, events))
}

impl Replayed {
    /// The report of this replay, with the state as `render` shows it.
    pub fn report(
        &self,
        render: impl FnOnce(&FoldedState) -> serde_json::Value,
    ) -> ReplayReport<'_> {
        ReplayReport {
            stream: self.stream.as_str(),
            as_of: self.as_of,
            version: self.version,
            position: self.position,
            state: render(&self.state),
            events: &self.events,
        }
    }
}

impl ReplayReport<'_> {
    /// The table `--format table` prints: the state, then one line per event.
    pub fn render_table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let as_of = self.as_of.map_or_else(
            || "now".to_string(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        );
        let _ = writeln!(
            out,
            "{} as of {as_of}: version {}, position {}",
            self.stream, self.version, self.position
        );
        let state = serde_json::to_string_pretty(&self.state).unwrap_or_default();
        let _ = writeln!(out, "{state}");
        let _ = writeln!(
            out,
            "\n{:>7}  {:>9}  {:<24}  {:<28}  {:<16}  hash",
            "version", "position", "recorded_at", "event_type", "principal"
        );
        for e in self.events {
            let _ = writeln!(
                out,
                "{:>7}  {:>9}  {:<24}  {:<28}  {:<16}  {}",
                e.version,
                e.position,
                e.metadata
                    .recorded_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                e.event_type,
                e.metadata.principal,
                &e.hash.to_hex()[..16],
            );
        }
        out
    }
}
