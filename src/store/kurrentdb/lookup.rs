//! Finding a command's first result on KurrentDB, which has no index on careflow's metadata.
//!
//! Event ids are `event_id_for(command_id, index)`, so a command's first event has an id known
//! in advance; what KurrentDB cannot do is find an event by id (its own idempotency check
//! covers only the write it is handed and, for `Any`, a bounded in-memory cache). So:
//!
//! - **after a failed expectation** (the common repeat: a retry with its original, now stale
//!   expectation) the command can only be among the events after the version it expected,
//!   which are read forward from there ([`command_after`]), as SQLite does;
//! - **`find_command`** scans the stream from its end, backward, in pages
//!   ([`find_in_stream`]). A stream is one aggregate instance, so this is short; repeats
//!   are found near the end;
//! - **`ExpectedVersion::Any` appends** have no expectation to fail, and their streams (the
//!   timers, the access log) are the long ones. Each such command first writes a marker event
//!   to `$careflow-cmd-{command_id}` (event id fixed by the command id, so concurrent retries
//!   write it once), then appends. A command without a marker was never appended and needs no
//!   search; with a marker, its stream is scanned ([`marked_command`]). The marker comes
//!   *before* the events, so a crash between the two costs a scan on retry, never a double
//!   append. Marker streams start with `$`, which keeps them out of careflow's log.

use careflow_aggregates::{RecordedEvent, StreamId, event_id_for};
use uuid::Uuid;

use super::{Direction, KurrentStore, appended, stored, unavailable};
use crate::store::{Appended, StoreError};

/// Events read per page when scanning a stream.
const SCAN_PAGE: usize = 256;

/// The event type of a marker.
const MARKER_TYPE: &str = "$careflow-command";

/// Index of the marker's event id among the command's ids (no command has this many events).
const MARKER_INDEX: u32 = u32::MAX;

fn marker_stream(command_id: Uuid) -> String {
    format!("$careflow-cmd-{command_id}")
}

/// The command's events, starting at `first` (already decoded) and reading on while events
/// carry the same command id.
async fn collect_from(
    store: &KurrentStore,
    stream: &StreamId,
    first: RecordedEvent,
) -> Result<Appended, StoreError> {
    let command_id = first.metadata.command_id;
    let mut events = vec![first];
    loop {
        let next_revision = events.last().map_or(0, |e| e.version);
        let page = store
            .read_raw(
                stream.as_str(),
                Some(next_revision),
                Direction::Forward,
                SCAN_PAGE,
            )
            .await?;
        let before = events.len();
        for raw in &page {
            let event = stored::decode(raw)?;
            if event.metadata.command_id != command_id {
                return appended(events, true);
            }
            events.push(event);
        }
        if page.len() < SCAN_PAGE || events.len() == before {
            return appended(events, true);
        }
    }
}

/// The command's first result among the events after careflow version `after`.
pub(super) async fn command_after(
    store: &KurrentStore,
    stream: &StreamId,
    after: u64,
    command_id: Uuid,
) -> Result<Option<Appended>, StoreError> {
    let first_id = event_id_for(command_id, 0);
    let mut revision = after;
    loop {
        let page = store
            .read_raw(
                stream.as_str(),
                Some(revision),
                Direction::Forward,
                SCAN_PAGE,
            )
            .await?;
        for raw in &page {
            if raw.id == first_id {
                return collect_from(store, stream, stored::decode(raw)?)
                    .await
                    .map(Some);
            }
        }
        match page.last() {
            Some(last) if page.len() == SCAN_PAGE => revision = last.revision + 1,
            _ => return Ok(None),
        }
    }
}

/// The command's first result anywhere in the stream, scanning from the end.
pub(super) async fn find_in_stream(
    store: &KurrentStore,
    stream: &StreamId,
    command_id: Uuid,
) -> Result<Option<Appended>, StoreError> {
    let first_id = event_id_for(command_id, 0);
    let mut from = None;
    loop {
        let page = store
            .read_raw(stream.as_str(), from, Direction::Backward, SCAN_PAGE)
            .await?;
        for raw in &page {
            if raw.id == first_id {
                return collect_from(store, stream, stored::decode(raw)?)
                    .await
                    .map(Some);
            }
        }
        match page.last() {
            Some(last) if page.len() == SCAN_PAGE && last.revision > 0 => {
                from = Some(last.revision - 1);
            }
            _ => return Ok(None),
        }
    }
}

/// For an `Any` append: the command's first result if its marker exists and the command is
/// in the stream; otherwise writes the marker (idempotently) and answers `None`.
pub(super) async fn marked_command(
    store: &KurrentStore,
    stream: &StreamId,
    command_id: Uuid,
) -> Result<Option<Appended>, StoreError> {
    let marker = marker_stream(command_id);
    let existing = store
        .read_raw(&marker, None, Direction::Backward, 1)
        .await?;
    if !existing.is_empty() {
        if let Some(first) = find_in_stream(store, stream, command_id).await? {
            return Ok(Some(first));
        }
        // Marked but not appended: the earlier attempt stopped in between.
        return Ok(None);
    }
    write_marker(store, stream, command_id).await?;
    Ok(None)
}

/// Writes the command's marker (idempotently): from now on, a repeat of the command is looked
/// for in `stream`.
pub(super) async fn write_marker(
    store: &KurrentStore,
    stream: &StreamId,
    command_id: Uuid,
) -> Result<(), StoreError> {
    let marker = marker_stream(command_id);
    let body = serde_json::json!({ "stream": stream.as_str() });
    let event = kurrentdb::EventData::json(MARKER_TYPE, &body)
        .map_err(StoreError::unavailable)?
        .id(event_id_for(command_id, MARKER_INDEX));
    // `Any` with a fixed event id: a concurrent retry's marker is the same write, which
    // KurrentDB answers as already done.
    store
        .client
        .append_to_stream(
            marker.as_str(),
            &kurrentdb::AppendToStreamOptions::default().stream_state(kurrentdb::StreamState::Any),
            event,
        )
        .await
        .map_err(unavailable)?;
    Ok(())
}
