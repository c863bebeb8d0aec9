//! The event envelope: what every stored event carries besides its domain payload.
//!
//! These types are a contract (stored forever, exported to auditors, served over HTTP), which
//! is why they, and not domain state, derive serde. Field names follow DESIGN.md "The event
//! model" exactly.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::chain::EventHash;
use crate::stream_id::StreamId;

/// Who did what, when and why: carried by every event of one command alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMetadata {
    /// The command that produced the event; the idempotency key of the append.
    pub command_id: Uuid,
    /// Ties together everything one upstream request set in motion (`X-Correlation-Id`).
    pub correlation_id: String,
    /// What directly caused the command: the request id, or the event a process manager
    /// reacted to.
    pub causation_id: String,
    /// The authenticated caller (token subject), or the internal component that acted.
    pub principal: String,
    /// The channel the command came through (`http`, `fhir`, `hl7`, `process_manager:...`).
    pub source: String,
    /// When the store accepted the event (UTC, set by the shell's clock).
    pub recorded_at: DateTime<Utc>,
    /// Business time, as the caller stated it.
    pub occurred_at: DateTime<Utc>,
}

/// An event as the store holds it.
///
/// `position` is the global commit order and is deliberately *not* covered by `hash`: the
/// chain is per stream, so a stream can be verified and exported on its own, and a backend
/// that assigns positions on the server after the append (KurrentDB) can carry the same
/// chain. Global order is protected by the signed checkpoints of the audit log instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub event_id: Uuid,
    pub stream_id: StreamId,
    /// 1 for the first event of a stream, then +1 without gaps.
    pub version: u64,
    /// Global commit order, 1 for the first event in the store.
    pub position: u64,
    /// PastTense name, e.g. `ChargePosted`.
    pub event_type: String,
    /// Version of `data`'s shape for this `event_type`; old shapes are upcast on read.
    pub schema_version: u32,
    pub data: serde_json::Value,
    pub metadata: EventMetadata,
    /// `hash` of the previous event of the stream; all zeros for version 1.
    pub prev_hash: EventHash,
    /// `sha256(prev_hash || canonical(event))`.
    pub hash: EventHash,
}

/// The deterministic id of the `index`-th event of a command: UUID v5 in the command id's
/// namespace. A retried append of the same command therefore produces the same event ids, and
/// downstream consumers (NATS `Nats-Msg-Id`, webhook ids) deduplicate on them.
pub fn event_id_for(command_id: Uuid, index: u32) -> Uuid {
    Uuid::new_v5(&command_id, &index.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_deterministic_and_distinct_per_index() {
        let command = Uuid::from_u128(0x1234);
        assert_eq!(event_id_for(command, 0), event_id_for(command, 0));
        assert_ne!(event_id_for(command, 0), event_id_for(command, 1));
        assert_ne!(
            event_id_for(command, 0),
            event_id_for(Uuid::from_u128(0x1235), 0)
        );
        assert_eq!(event_id_for(command, 0).get_version_num(), 5);
    }
}
