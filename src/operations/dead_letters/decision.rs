//! An operator's decision on a dead letter (retry, discard), kept as an event of the internal
//! stream `dead_letters-{source}`: the list itself is a table that changes, its history is
//! not, so an auditor sees who retried or gave up what, when and why.

use careflow_aggregates::StreamId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::DeadLetter;
use crate::store::internal::{self, InternalEvent, Recorder};
use crate::store::{EventStore, ExpectedVersion, StoreError};

/// The stream kind of the decisions: `dead_letters-{source}`.
pub const STREAM_KIND: &str = "dead_letters";

/// What the operator decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// `DeadLetterRetryRequested`: the consumer is to try once more.
    RetryRequested,
    /// `DeadLetterDiscarded`: given up, with a reason.
    Discarded,
}

/// The data of a decision: the row as it stood, and the reason of a discard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecorded {
    pub dead_letter_id: i64,
    pub source: String,
    pub key: String,
    pub event_id: Uuid,
    pub position: u64,
    pub attempts: u32,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A decision as stored: its type names what was decided, its data is the row.
struct Decided<'a> {
    decision: Decision,
    record: &'a DecisionRecorded,
}

impl InternalEvent for Decided<'_> {
    fn event_type(&self) -> &'static str {
        match self.decision {
            Decision::RetryRequested => "DeadLetterRetryRequested",
            Decision::Discarded => "DeadLetterDiscarded",
        }
    }

    fn data(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self.record)
    }
}

/// Appends `decision` on `row` to `dead_letters-{source}`, by `by.principal`, under
/// `command_id` (a fresh one: every decision is recorded).
///
/// # Errors
/// The store's; [`StoreError::Unavailable`] for a source that makes no stream id.
pub async fn record(
    store: &dyn EventStore,
    command_id: Uuid,
    row: &DeadLetter,
    decision: Decision,
    reason: Option<&str>,
    by: &Recorder,
) -> Result<(), StoreError> {
    let stream = StreamId::new(STREAM_KIND, &row.source).map_err(|error| {
        StoreError::Unavailable(format!(
            "dead-letter source {:?} is not a stream id: {error}",
            row.source
        ))
    })?;
    let record = DecisionRecorded {
        dead_letter_id: row.id,
        source: row.source.clone(),
        key: row.key.clone(),
        event_id: row.event_id,
        position: row.position,
        attempts: row.attempts,
        error: row.error.clone(),
        reason: reason.map(str::to_owned),
    };
    internal::record(
        store,
        stream,
        ExpectedVersion::Any,
        command_id,
        by,
        &[&Decided {
            decision,
            record: &record,
        }],
    )
    .await?;
    Ok(())
}
