//! `careflow replay <stream> [--as-of T]`: a stream's state as of a time, with the events
//! that made it.
//!
//! The state is rebuilt by folding the stream's events whose `recorded_at` is at or before
//! `as_of` (the first later event ends the replay, as for `GET ...?as_of=`), and rendered with
//! the same view the HTTP API uses, so an auditor sees the shape the upstream systems saw.
//! It only reads: on SQLite it runs on a read-only handle, beside a running server or on a
//! stopped one's data dir.

use careflow_aggregates::{
    Aggregate, Encounter, InventoryItem, PatientAccount, PurchaseWorkflow, RecordedEvent, StreamId,
};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::inbound::http::views::Resource;
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

/// A replayed state.
#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    pub stream: String,
    pub as_of: Option<DateTime<Utc>>,
    pub version: u64,
    pub position: u64,
    /// The state as the HTTP API renders it.
    pub state: serde_json::Value,
    /// The events folded into it, in version order.
    pub events: Vec<RecordedEvent>,
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
    match stream.kind() {
        PatientAccount::KIND => fold::<PatientAccount>(store, stream, as_of).await,
        Encounter::KIND => fold::<Encounter>(store, stream, as_of).await,
        InventoryItem::KIND => fold::<InventoryItem>(store, stream, as_of).await,
        PurchaseWorkflow::KIND => fold::<PurchaseWorkflow>(store, stream, as_of).await,
        other => Err(ReplayError::NotAnAggregate(other.to_owned())),
    }
}

async fn fold<A: Resource>(
    store: &dyn EventStore,
    stream: &StreamId,
    as_of: Option<DateTime<Utc>>,
) -> Result<Replayed, ReplayError> {
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
    let Some(last) = events.last() else {
        return Err(ReplayError::NoEvents(stream.to_string()));
    };
    let (version, position) = (last.version, last.position);
    let state = serde_json::to_value(A::view(stream.id(), &state, version))
        .map_err(|e| ReplayError::Store(StoreError::unavailable(e)))?;
    Ok(Replayed {
        stream: stream.to_string(),
        as_of,
        version,
        position,
        state,
        events,
    })
}

impl Replayed {
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
        for e in &self.events {
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
