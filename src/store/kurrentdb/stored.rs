//! How a careflow event is kept in a KurrentDB event, and read back.
//!
//! KurrentDB stores an event id, a type, a JSON body and opaque "custom metadata" bytes; it
//! assigns the revision and the position. careflow puts its envelope in the custom metadata
//! as one JSON object:
//!
//! ```json
//! {"careflow":1,"schema_version":1,"prev_hash":"<hex>","hash":"<hex>","metadata":{...}}
//! ```
//!
//! where `metadata` is [`EventMetadata`] exactly as the other backends store it. The body is
//! `data` as the same JSON text, so the hash (computed by `PreparedAppend`, covering the
//! version but not the position) is byte for byte what SQLite and PostgreSQL compute.
//! careflow's version is KurrentDB's revision + 1; careflow's position is the event's commit
//! position (see docs/event-store.md, "KurrentDB").

use bytes::Bytes;
use careflow_aggregates::{EventHash, EventMetadata, RecordedEvent, StreamId};
use serde::Deserialize;

use crate::store::{PreparedAppend, StoreError};

/// The version of the custom-metadata layout above.
const LAYOUT: u32 = 1;

#[derive(Deserialize)]
struct Envelope {
    careflow: u32,
    schema_version: u32,
    prev_hash: EventHash,
    hash: EventHash,
    metadata: EventMetadata,
}

/// Whether a KurrentDB event belongs to the server rather than to careflow: its type or its
/// stream starts with `$` (`$epoch-information`, `$metadata`, careflow's own
/// `$careflow-cmd-` markers). careflow's reads of `$all` leave them out.
pub(crate) fn is_system(event: &kurrentdb::RecordedEvent) -> bool {
    event.event_type.starts_with('$') || event.stream_id().starts_with('$')
}

/// The KurrentDB events of a sealed append, in order.
///
/// # Errors
/// [`StoreError::Unavailable`] if a body is not valid JSON (it always is: `PreparedAppend`
/// wrote it from a `serde_json::Value`).
pub(crate) fn to_event_data(
    prepared: &PreparedAppend,
    sealed: &[RecordedEvent],
) -> Result<Vec<kurrentdb::EventData>, StoreError> {
    sealed
        .iter()
        .enumerate()
        .map(|(i, event)| {
            event_data(
                event,
                prepared.stored_data(i).to_owned(),
                prepared.stored_metadata(),
            )
        })
        .collect()
}

/// The KurrentDB events of events recorded elsewhere (`store copy`): the same layout, the
/// data and metadata serialised as every backend stores them, so the hashes still hold.
///
/// # Errors
/// [`StoreError::Unavailable`] if the data or metadata cannot be serialised (never, for a
/// `serde_json::Value`).
pub(crate) fn recorded_to_event_data(
    events: &[RecordedEvent],
) -> Result<Vec<kurrentdb::EventData>, StoreError> {
    events
        .iter()
        .map(|event| {
            let data = serde_json::to_string(&event.data).map_err(StoreError::unavailable)?;
            let metadata =
                serde_json::to_string(&event.metadata).map_err(StoreError::unavailable)?;
            event_data(event, data, &metadata)
        })
        .collect()
}

/// One KurrentDB event: `data_text` as the body, the envelope as custom metadata.
fn event_data(
    event: &RecordedEvent,
    data_text: String,
    metadata_text: &str,
) -> Result<kurrentdb::EventData, StoreError> {
    let body =
        serde_json::value::RawValue::from_string(data_text).map_err(StoreError::unavailable)?;
    let custom = format!(
        r#"{{"careflow":{LAYOUT},"schema_version":{},"prev_hash":"{}","hash":"{}","metadata":{metadata_text}}}"#,
        event.schema_version,
        event.prev_hash.to_hex(),
        event.hash.to_hex(),
    );
    Ok(kurrentdb::EventData::json(&event.event_type, &body)
        .map_err(StoreError::unavailable)?
        .id(event.event_id)
        .metadata(Bytes::from(custom)))
}

/// A careflow event read back from KurrentDB.
///
/// # Errors
/// [`StoreError::Corrupt`] when the event was not written by careflow or was altered: a
/// stream id that breaks the rule, missing or unreadable custom metadata, a body that is not
/// JSON.
pub(crate) fn decode(event: &kurrentdb::RecordedEvent) -> Result<RecordedEvent, StoreError> {
    let position = event.position.commit;
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    let stream_id = StreamId::parse(event.stream_id())
        .map_err(|e| corrupt(format!("stream {:?}: {e}", event.stream_id())))?;
    let envelope: Envelope = serde_json::from_slice(&event.custom_metadata)
        .map_err(|e| corrupt(format!("careflow metadata: {e}")))?;
    if envelope.careflow != LAYOUT {
        return Err(corrupt(format!(
            "careflow metadata layout {} (this build reads {LAYOUT})",
            envelope.careflow
        )));
    }
    let data = serde_json::from_slice(&event.data).map_err(|e| corrupt(format!("data: {e}")))?;
    Ok(RecordedEvent {
        event_id: event.id,
        stream_id,
        version: event.revision + 1,
        position,
        event_type: event.event_type.clone(),
        schema_version: envelope.schema_version,
        data,
        metadata: envelope.metadata,
        prev_hash: envelope.prev_hash,
        hash: envelope.hash,
    })
}
