//! The access log: every read of a patient's data, and every audit export, is itself an event.
//!
//! A read of a patient account's or an encounter's state (current or `as_of`) or history, a
//! patient's billing view, the access log itself, or an export appends one
//! [`RecordAccessed`] to the day's internal stream `access_log-YYYY-MM-DD` (UTC) *before* the
//! answer is given: who (`principal`, `role`), what (`action`, `stream_id`, `as_of`; an
//! export's `selection` and event count), when (`recorded_at` of the envelope) and the
//! correlation id. A read whose record cannot be written is refused, so no read goes
//! unrecorded; an export whose record cannot be written is deleted. Reads of `/v1/events` are
//! not recorded here: that route is for auditors and operators (docs/http-api.md says why).
//!
//! The HTTP layer calls [`record_read`] with its caller; `careflow audit export` calls
//! [`record_export`]. The audit view reads the records back (`careflow_projections::audit`).

use crate::clock::Clock;
use careflow_aggregates::StreamId;
use careflow_projections::RecordAccessed;
use chrono::{DateTime, Utc};

use crate::store::internal::{self, Recorder, internal_event};
use crate::store::{EventStore, ExpectedVersion, StoreError};

/// The stream kind of the access log.
pub const KIND: &str = careflow_projections::audit::ACCESS_LOG_KIND;

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

internal_event!(RecordAccessed, RecordAccessed::EVENT_TYPE);

/// Today's access-log stream, by `clock`.
///
/// # Errors
/// None in practice: a date is a valid id.
pub fn todays_stream(clock: &Clock) -> Result<StreamId, StoreError> {
    stream_of(clock.now())
}

/// The access-log stream of the day of `at`.
fn stream_of(at: DateTime<Utc>) -> Result<StreamId, StoreError> {
    StreamId::new(KIND, &at.format("%Y-%m-%d").to_string())
        .map_err(|error| StoreError::Unavailable(format!("access log stream id: {error}")))
}

/// The access log of a store, dated and numbered by a clock: where reads and exports are
/// recorded.
#[derive(Clone, Copy)]
pub struct AccessLog<'a> {
    pub store: &'a dyn EventStore,
    pub clock: &'a Clock,
}

impl AccessLog<'_> {
    /// Appends the access record of one read by `principal` in `role` (`source` `http`).
    ///
    /// # Errors
    /// The store's: the read must then be refused.
    pub async fn record_read(
        self,
        principal: &str,
        role: &str,
        access: Access,
        target: &StreamId,
        as_of: Option<DateTime<Utc>>,
        correlation_id: &str,
    ) -> Result<(), StoreError> {
        let record = RecordAccessed {
            principal: Some(principal.to_owned()),
            role: Some(role.to_owned()),
            action: Some(access.as_str().to_owned()),
            stream_id: Some(target.as_str().to_owned()),
            as_of: as_of.map(|t| t.to_rfc3339()),
            correlation_id: Some(correlation_id.to_owned()),
            ..RecordAccessed::default()
        };
        append(self, principal, "http", &record, correlation_id).await
    }

    /// Appends the access record of an audit export (`careflow audit export`): who (the OS
    /// user or `--subject`), what (`selection`, e.g. `patient CF-1001`, and how many
    /// events), when.
    ///
    /// # Errors
    /// The store's error; the export is then not handed out.
    pub async fn record_export(
        self,
        subject: &str,
        selection: &str,
        events: u64,
        correlation_id: &str,
    ) -> Result<(), StoreError> {
        let record = RecordAccessed {
            principal: Some(subject.to_owned()),
            role: Some("auditor".to_owned()),
            action: Some("export".to_owned()),
            selection: Some(selection.to_owned()),
            events: Some(events),
            correlation_id: Some(correlation_id.to_owned()),
            ..RecordAccessed::default()
        };
        append(self, subject, "cli", &record, correlation_id).await
    }
}

async fn append(
    AccessLog { store, clock }: AccessLog<'_>,
    principal: &str,
    source: &str,
    record: &RecordAccessed,
    correlation_id: &str,
) -> Result<(), StoreError> {
    // Every read is its own record: a fresh command id, which is also what caused it.
    let request_id = clock.new_id();
    let now = clock.now();
    let by = Recorder {
        principal: principal.to_owned(),
        source: source.to_owned(),
        correlation_id: correlation_id.to_owned(),
        causation_id: request_id.to_string(),
        occurred_at: now,
    };
    internal::record(
        store,
        // The record's day is the day of its time, even across midnight.
        stream_of(now)?,
        ExpectedVersion::Any,
        request_id,
        &by,
        &[record],
    )
    .await?;
    Ok(())
}
