//! The access log: every read of a patient's data is itself an event.
//!
//! A read of a patient account's or an encounter's state (current or `as_of`) or history
//! appends one `RecordAccessed` event to the day's internal stream `access_log-YYYY-MM-DD`
//! (UTC) *before* the answer is sent: who (`principal`, `role`), what (`action`, `stream_id`,
//! `as_of`), when (`recorded_at` of the envelope) and the correlation id. If the record cannot
//! be written the read is refused with 503, so no read goes unrecorded. Only successful reads
//! are recorded (a 404 reveals nothing). Reads of `/v1/events` are not recorded here: that
//! route is for auditors and operators, and see docs/http-api.md for why.

use careflow_aggregates::StreamId;
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::Caller;
use super::error::ApiError;
use crate::store::{
    AppendRequest, CommandMeta, EventStore, ExpectedVersion, ProposedEvent, StoreError,
};

/// The stream kind of the access log.
pub const KIND: &str = "access_log";
/// The event type of an access record.
pub const EVENT_TYPE: &str = "RecordAccessed";

/// What was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    State,
    History,
    /// A patient's billing view (balance, charges, payments).
    Billing,
    /// The access log itself (who looked at who looked).
    AccessLog,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::State => "read_state",
            Access::History => "read_history",
            Access::Billing => "read_billing",
            Access::AccessLog => "read_access_log",
        }
    }
}

/// Appends the access record of one read.
///
/// # Errors
/// [`ApiError::Unavailable`] when the record cannot be written.
pub async fn record(
    store: &dyn EventStore,
    caller: &Caller,
    access: Access,
    target: &StreamId,
    as_of: Option<DateTime<Utc>>,
    correlation_id: &str,
) -> Result<(), ApiError> {
    let now = Utc::now();
    let stream = StreamId::new(KIND, &now.format("%Y-%m-%d").to_string()).map_err(|error| {
        ApiError::Internal {
            cause: format!("access log stream id: {error}"),
        }
    })?;
    let mut data = json!({
        "principal": caller.subject,
        "role": caller.role.as_str(),
        "action": access.as_str(),
        "stream_id": target.as_str(),
        "correlation_id": correlation_id,
    });
    if let Some(as_of) = as_of {
        data["as_of"] = json!(as_of.to_rfc3339());
    }
    append(
        store,
        stream,
        &caller.subject,
        "http",
        data,
        correlation_id,
        now,
    )
    .await
    .map_err(ApiError::from)
}

/// Appends the access record of an audit export (`careflow audit export`): who (the OS user
/// or `--subject`), what (`selection`, e.g. `patient CF-1001`, and how many events), when.
///
/// # Errors
/// The store's error; the export is then not handed out.
pub async fn record_export(
    store: &dyn EventStore,
    subject: &str,
    selection: &str,
    events: u64,
    correlation_id: &str,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let stream = StreamId::new(KIND, &now.format("%Y-%m-%d").to_string())
        .map_err(|error| StoreError::Unavailable(format!("access log stream id: {error}")))?;
    let data = json!({
        "principal": subject,
        "role": "auditor",
        "action": "export",
        "selection": selection,
        "events": events,
        "correlation_id": correlation_id,
    });
    append(store, stream, subject, "cli", data, correlation_id, now).await
}

async fn append(
    store: &dyn EventStore,
    stream: StreamId,
    principal: &str,
    source: &str,
    data: serde_json::Value,
    correlation_id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let request_id = Uuid::new_v4();
    store
        .append(AppendRequest {
            stream_id: stream,
            expected: ExpectedVersion::Any,
            meta: CommandMeta {
                command_id: request_id,
                correlation_id: correlation_id.to_owned(),
                causation_id: request_id.to_string(),
                principal: principal.to_owned(),
                source: source.to_owned(),
                occurred_at: now,
            },
            events: vec![ProposedEvent {
                event_type: EVENT_TYPE.into(),
                schema_version: 1,
                data,
            }],
        })
        .await?;
    Ok(())
}
