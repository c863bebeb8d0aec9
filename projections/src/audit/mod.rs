//! The audit view: an index of every stream, and the log of who read which patient's data.
//!
//! It reads envelopes only and never decodes an aggregate's event data: an auditor needs the
//! index to be complete even where data would not decode, and a stream of a kind this build
//! has never heard of (a new process manager, a timer) is indexed like any other. The one
//! content it reads is the data of access-log events (streams of kind `access_log`, type
//! `RecordAccessed`), leniently: known fields are taken when they are strings, anything
//! else is ignored. The shape expected from the HTTP layer is in docs/projections.md.
//!
//! Time travel (state as of T) is not a view: the shell replays a stream up to T on demand.

use careflow_aggregates::stream_id::validate_id;
use careflow_aggregates::{PatientAccount, RecordedEvent, StreamId, aggregate::Aggregate};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ProjectionError;
use crate::projection::Projection;
use crate::store::{ViewStore, save, save_owned, take};

/// Key: the stream id. One [`StreamIndexRow`] per stream of any kind.
pub const STREAMS: &str = "audit_streams";
/// Key: the event's global position, zero-padded to 20 digits (so key order is log order).
/// One [`AccessEntry`] per recorded read.
pub const ACCESS_LOG: &str = "audit_access_log";
/// Key: `{mrn}/{position, 20 digits}`. The same [`AccessEntry`], for reads of a known patient,
/// so "who read this patient's data" is one prefix scan.
pub const ACCESS_BY_PATIENT: &str = "audit_access_by_patient";

/// The stream kind the HTTP layer appends access records to.
pub const ACCESS_LOG_KIND: &str = "access_log";
/// The event types of an access-log stream that record a read.
pub const ACCESS_EVENT_TYPES: &[&str] = &[RecordAccessed::EVENT_TYPE];

/// `RecordAccessed`: one read of a patient's data (`read_state`, `read_history`,
/// `read_billing`, `read_access_log`) or one audit export (`export`), as the shell appends it
/// to the day's `access_log-YYYY-MM-DD` stream. The contract between its writer and this view:
/// the shell builds it, the view reads it back.
///
/// Reading is lenient on purpose (an auditor's index must list every record even where a
/// field is malformed): every field reads as absent when it is missing or not of its type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordAccessed {
    /// Who read: the token's subject, or the OS user / `--subject` of an export.
    #[serde(default, deserialize_with = "lenient")]
    pub principal: Option<String>,
    /// The caller's role when it read (`auditor` for exports).
    #[serde(default, deserialize_with = "lenient")]
    pub role: Option<String>,
    /// What was done: `read_state`, `read_history`, `read_billing`, `read_access_log`,
    /// `export`.
    #[serde(default, deserialize_with = "lenient")]
    pub action: Option<String>,
    /// The stream read.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub stream_id: Option<String>,
    /// The patient, where the stream read does not say it.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub account_id: Option<String>,
    /// The time-travel instant of an `?as_of=` read (RFC 3339).
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub as_of: Option<String>,
    /// An export's selection (`patient CF-1001`, `all`).
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub selection: Option<String>,
    /// How many events an export held.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub events: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    pub correlation_id: Option<String>,
}

/// A field of a [`RecordAccessed`] as read: its value when it has the field's type, else
/// absent (an empty string is absent too).
fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = Value::deserialize(deserializer)?;
    if value.as_str() == Some("") {
        return Ok(None);
    }
    Ok(serde_json::from_value(value).ok())
}

impl RecordAccessed {
    /// The event type it is stored under.
    pub const EVENT_TYPE: &'static str = "RecordAccessed";

    /// Reads a stored record's data, leniently (see the type's docs); data that is not an
    /// object reads as a record with nothing known but its envelope.
    pub fn read(data: &Value) -> Self {
        match data {
            // Every field is lenient and unknown members are ignored: an object always reads.
            Value::Object(_) => Self::deserialize(data).unwrap_or_default(),
            _ => Self::default(),
        }
    }
}

/// The audit projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Audit;

impl Projection for Audit {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[STREAMS, ACCESS_LOG, ACCESS_BY_PATIENT]
    }

    fn apply(
        &self,
        store: &mut dyn ViewStore,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        index_stream(store, event)?;
        if event.stream_id.kind() == ACCESS_LOG_KIND
            && ACCESS_EVENT_TYPES.contains(&event.event_type.as_str())
        {
            log_access(store, event)?;
        }
        Ok(())
    }
}

/// Where a stream starts and ends in the log. Times are `recorded_at` (the store's clock,
/// which the caller cannot set), not business time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamIndexRow {
    pub stream_id: String,
    pub kind: String,
    pub id: String,
    pub first_position: u64,
    pub last_position: u64,
    pub first_recorded_at: DateTime<Utc>,
    pub last_recorded_at: DateTime<Utc>,
    /// Version of the last event (equals `event_count` in a gap-free stream; a difference is
    /// worth an `audit verify`).
    pub last_version: u64,
    pub event_count: u64,
}

/// One read of patient data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    pub position: u64,
    pub event_id: String,
    /// When the read was recorded (`recorded_at`).
    pub accessed_at: DateTime<Utc>,
    /// Who read: the authenticated caller (`metadata.principal`).
    pub principal: String,
    /// The caller's role when it read (`data.role`).
    pub role: Option<String>,
    pub correlation_id: String,
    /// The patient (MRN): `data.account_id`, else the id of `data.stream_id` when that is a
    /// patient account stream; `None` when neither says.
    pub patient: Option<String>,
    /// The stream read (`data.stream_id`).
    pub stream_id: Option<String>,
    /// What was read: `read_state`, `read_history`, `read_billing`, `export`...
    /// (`data.action`).
    pub access: Option<String>,
    /// The time-travel instant, for `?as_of=` reads (`data.as_of`).
    pub as_of: Option<String>,
}

fn index_stream(store: &mut dyn ViewStore, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let key = event.stream_id.as_str();
    let recorded_at = event.metadata.recorded_at;
    // Taken, not copied: saved below.
    let row = match take::<StreamIndexRow>(store, STREAMS, key)? {
        Some(mut row) => {
            row.last_position = event.position;
            row.last_recorded_at = recorded_at;
            row.last_version = event.version;
            row.event_count += 1;
            row
        }
        None => StreamIndexRow {
            stream_id: key.to_owned(),
            kind: event.stream_id.kind().to_owned(),
            id: event.stream_id.id().to_owned(),
            first_position: event.position,
            last_position: event.position,
            first_recorded_at: recorded_at,
            last_recorded_at: recorded_at,
            last_version: event.version,
            event_count: 1,
        },
    };
    save_owned(store, STREAMS, key, row)
}

fn log_access(store: &mut dyn ViewStore, event: &RecordedEvent) -> Result<(), ProjectionError> {
    let record = RecordAccessed::read(&event.data);
    let patient = record.account_id.clone().or_else(|| {
        let read = StreamId::parse(record.stream_id.as_deref()?).ok()?;
        (read.kind() == PatientAccount::KIND).then(|| read.id().to_owned())
    });
    let entry = AccessEntry {
        position: event.position,
        event_id: event.event_id.to_string(),
        accessed_at: event.metadata.recorded_at,
        principal: event.metadata.principal.clone(),
        role: record.role,
        correlation_id: event.metadata.correlation_id.clone(),
        patient,
        stream_id: record.stream_id,
        access: record.action,
        as_of: record.as_of,
    };
    let position = format!("{:020}", event.position);
    save(store, ACCESS_LOG, &position, &entry)?;
    // Only a well-formed MRN goes into a key: one holding `/` could pose as another patient's
    // prefix. The entry above keeps whatever was sent.
    if let Some(patient) = entry.patient.as_deref().filter(|p| validate_id(p).is_ok()) {
        save(
            store,
            ACCESS_BY_PATIENT,
            &format!("{patient}/{position}"),
            &entry,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
