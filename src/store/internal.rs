//! careflow's own records: events it appends about itself to streams no aggregate owns (the
//! access log, the process managers' timers, webhook registrations, operators' dead-letter
//! decisions, Odoo acknowledgements).
//!
//! They are hashed, chained and kept forever like any other event, so they are typed like any
//! other: each is a struct (or an enum) with its `event_type` and `schema_version`, written
//! through [`record`] and read back with serde, never built with `json!` and read by string
//! keys. [`Recorder`] says who records and why, once.

use careflow_aggregates::StreamId;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    AppendRequest, Appended, CommandMeta, EventStore, ExpectedVersion, ProposedEvent, StoreError,
};

/// An event of an internal stream.
pub trait InternalEvent {
    /// The PastTense name the event is stored under.
    fn event_type(&self) -> &'static str;

    /// The version of its data's shape (1 until it changes; then an upcaster reads the old).
    fn schema_version(&self) -> u32 {
        1
    }

    /// Its data as stored.
    ///
    /// # Errors
    /// Serialisation errors (none for plain structs).
    fn data(&self) -> Result<serde_json::Value, serde_json::Error>;
}

/// Implements [`InternalEvent`] for a serialisable struct stored under one event type.
macro_rules! internal_event {
    ($type:ty, $name:expr) => {
        impl $crate::store::internal::InternalEvent for $type {
            fn event_type(&self) -> &'static str {
                $name
            }

            fn data(&self) -> Result<serde_json::Value, serde_json::Error> {
                serde_json::to_value(self)
            }
        }
    };
}
pub(crate) use internal_event;

/// Who records, and on whose behalf: the envelope's metadata of an internal event.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// The caller (a token's subject) or the component (`process_manager:charges`, `odoo`).
    pub principal: String,
    /// The channel: `http`, `cli`, `process_manager:{name}`, `odoo`.
    pub source: String,
    pub correlation_id: String,
    pub causation_id: String,
    /// When, by the recorder's clock (`crate::clock`): the envelope's `occurred_at`.
    pub occurred_at: DateTime<Utc>,
}

/// Appends `events` to the internal `stream` under `command_id` (a deterministic id makes a
/// repeat a no-op; a fresh one records every call), with `expected` for the streams that
/// need it (a webhook removed once).
///
/// # Errors
/// The store's; [`StoreError::Unavailable`] if an event does not serialise.
pub async fn record<E: InternalEvent + ?Sized>(
    store: &dyn EventStore,
    stream: StreamId,
    expected: ExpectedVersion,
    command_id: Uuid,
    by: &Recorder,
    events: &[&E],
) -> Result<Appended, StoreError> {
    let events = events
        .iter()
        .map(|event| {
            Ok(ProposedEvent {
                event_type: event.event_type().to_owned(),
                schema_version: event.schema_version(),
                data: event.data().map_err(StoreError::unavailable)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    store
        .append(AppendRequest {
            stream_id: stream,
            expected,
            meta: CommandMeta {
                command_id,
                correlation_id: by.correlation_id.clone(),
                causation_id: by.causation_id.clone(),
                principal: by.principal.clone(),
                source: by.source.clone(),
                occurred_at: by.occurred_at,
            },
            events,
        })
        .await
}

/// Timers are the process managers' own stream (`timers-{name}`); the pure crate encodes them.
impl InternalEvent for careflow_aggregates::policies::TimerEvent {
    fn event_type(&self) -> &'static str {
        self.encode().event_type
    }

    fn schema_version(&self) -> u32 {
        self.encode().schema_version
    }

    fn data(&self) -> Result<serde_json::Value, serde_json::Error> {
        Ok(self.encode().data)
    }
}

/// What the Odoo executor writes back once Odoo holds a record (the pure crate's contract).
impl InternalEvent for careflow_projections::odoo::OdooRecordAcknowledged {
    fn event_type(&self) -> &'static str {
        careflow_projections::odoo::ACK_EVENT_TYPE
    }

    fn schema_version(&self) -> u32 {
        careflow_projections::odoo::ack::ACK_SCHEMA_VERSION
    }

    fn data(&self) -> Result<serde_json::Value, serde_json::Error> {
        Ok(self.to_data())
    }
}
