//! Outbound interop: committed events published to NATS JetStream and to registered
//! webhooks (DESIGN.md "Interop", docs/interop.md "Outbound").
//!
//! Both publishers are projections of the raw log (`Runtime.stored`, the bytes the store
//! holds) with a checkpoint of their own in the process-manager checkpoint table (`nats`,
//! `webhooks`), whose PostgreSQL lease makes one node publish. They never read through the
//! decrypting store: a patient's `personal` object goes out as `null` (see [`wire_event`]), so
//! no outside consumer receives personal data in clear; it reads the current state through
//! the audited API instead.
//!
//! - [`nats`]: every event on `{prefix}.{kind}.{event_type}`, `Nats-Msg-Id` = event id, the
//!   checkpoint written only after JetStream acknowledged the batch.
//! - [`webhooks`]: registrations (events of `webhooks-{id}`), deliveries signed per the
//!   Standard Webhooks spec ([`signing`]), retries with jittered backoff, dead letters.
//!
//! Each runs on an actix arbiter thread of its own, as the process managers do, so a burst of
//! publishing does not share a thread with the HTTP server.

pub mod breaker;
pub mod nats;
pub mod odoo;
pub mod payer;
pub mod signing;
pub mod webhooks;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use careflow_aggregates::RecordedEvent;
use careflow_aggregates::personal::PERSONAL_FIELD;
use serde_json::Value;
use tokio::sync::watch;

use self::nats::{NatsDeps, NatsSettings};
use self::webhooks::{WebhookError, WebhookSettings, Webhooks};
use crate::clock::Clock;
use crate::config::Config;
use crate::operations::dead_letters::DeadLetters;
use crate::operations::personal_data::PersonalKeys;
use crate::runtime::consumers::Health;
use crate::runtime::consumers::checkpoint::CheckpointStore;
use crate::runtime::runner_thread::RunnerThread;
use crate::store::LogFeed;

/// An event as outbound consumers receive it: the stored envelope (`event_id`, `stream_id`,
/// `version`, `position`, `event_type`, `schema_version`, `data`, `metadata`, `prev_hash`,
/// `hash`) with `data.personal` set to `null` when the event has one.
///
/// The hashes are those of the stored event, whose `personal` is ciphertext: they identify
/// the event and its place in the chain, but cannot be recomputed from the wire form.
pub fn wire_event(event: &RecordedEvent) -> Value {
    let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Some(personal) = value
        .get_mut("data")
        .and_then(Value::as_object_mut)
        .and_then(|data| data.get_mut(PERSONAL_FIELD))
    {
        *personal = Value::Null;
    }
    value
}

/// [`wire_event`] as the bytes that are sent (and, for webhooks, signed).
///
/// # Errors
/// Serialisation errors (none in practice: the value came from JSON).
pub fn wire_bytes(event: &RecordedEvent) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&wire_event(event))
}

/// The outbound publishers of this node.
pub struct Outbound {
    /// Registrations, for the HTTP routes.
    pub webhooks: Arc<Webhooks>,
    stop: watch::Sender<bool>,
    threads: Mutex<Vec<RunnerThread>>,
}

/// What the publishers read and write.
pub struct OutboundDeps {
    /// The raw log as this process reads it (personal data as ciphertext, blanked on the
    /// wire).
    pub feed: Arc<LogFeed>,
    pub checkpoints: Arc<dyn CheckpointStore>,
    /// Seals webhook secrets in the registration events.
    pub personal: Arc<PersonalKeys>,
    pub dead_letters: DeadLetters,
    /// The runtime's clock: webhook timestamps, ids and delays.
    pub clock: Clock,
}

impl Outbound {
    /// Starts the webhook deliveries, and the NATS publisher when `nats_url` is set. Must be
    /// called inside an actix system.
    ///
    /// # Errors
    /// [`WebhookError::Client`] when the webhooks' HTTP client cannot be built.
    pub fn start(
        config: &Config,
        deps: OutboundDeps,
        health: &Arc<Health>,
    ) -> Result<Arc<Self>, WebhookError> {
        let (stop, stop_rx) = watch::channel(false);
        let mut threads = Vec::new();
        match &config.nats_url {
            Some(url) => {
                let nats = NatsDeps {
                    feed: Arc::clone(&deps.feed),
                    checkpoints: Arc::clone(&deps.checkpoints),
                    settings: NatsSettings::new(
                        url.clone(),
                        config.nats_stream.clone(),
                        config.nats_subject_prefix.clone(),
                    ),
                    stop: stop_rx.clone(),
                    health: health.register("nats", true),
                    acks: None,
                    clock: deps.clock.clone(),
                };
                threads.push(RunnerThread::start("nats", move || nats::run(nats)));
            }
            None => {
                health.register("nats", false);
                tracing::info!("nats_url is not set: events are not published to NATS");
            }
        }
        let webhooks = Arc::new(Webhooks::new(
            Arc::clone(&deps.feed),
            Arc::clone(&deps.checkpoints),
            Arc::clone(&deps.personal),
            deps.dead_letters.clone(),
            WebhookSettings::from_config(config),
            deps.clock.clone(),
        )?);
        threads.push(RunnerThread::start("webhooks", {
            let webhooks = Arc::clone(&webhooks);
            let health = health.register("webhooks", true);
            move || webhooks::run(webhooks, stop_rx, health)
        }));
        Ok(Arc::new(Self {
            webhooks,
            stop,
            threads: Mutex::new(threads),
        }))
    }

    /// Stops the publishers and waits for them, at most `deadline` each. A batch in flight is
    /// abandoned before its checkpoint, so it goes out again after the restart (deduplicated
    /// by NATS; at-least-once with the same `webhook-id` for webhooks).
    pub async fn shutdown(&self, deadline: Duration) {
        let _ = self.stop.send(true);
        let threads = self
            .threads
            .lock()
            .map(|mut threads| std::mem::take(&mut *threads))
            .unwrap_or_default();
        for thread in threads {
            thread.stop(deadline).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use careflow_aggregates::{EventHash, EventMetadata, StreamId};
    use chrono::Utc;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    fn event(stream: &str, data: Value) -> RecordedEvent {
        let now = Utc::now();
        RecordedEvent {
            event_id: Uuid::from_u128(7),
            stream_id: StreamId::parse(stream).unwrap(),
            version: 1,
            position: 42,
            event_type: "PatientRegistered".into(),
            schema_version: 1,
            data,
            metadata: EventMetadata {
                command_id: Uuid::from_u128(1),
                correlation_id: "c".into(),
                causation_id: "c".into(),
                principal: "ehr".into(),
                source: "http".into(),
                recorded_at: now,
                occurred_at: now,
            },
            prev_hash: EventHash::ZERO,
            hash: EventHash::ZERO,
        }
    }

    #[test]
    fn personal_data_goes_out_as_null_and_the_rest_unchanged() {
        let recorded = event(
            "patient_account-MRN-1",
            json!({"facility": "MAIN", "personal": {"v": 1, "ct": "c2VjcmV0"}}),
        );
        let wire = wire_event(&recorded);
        assert_eq!(wire["data"], json!({"facility": "MAIN", "personal": null}));
        assert_eq!(wire["position"], 42);
        assert_eq!(wire["event_id"], Uuid::from_u128(7).to_string());
        assert_eq!(wire["stream_id"], "patient_account-MRN-1");
        assert_eq!(wire["metadata"]["principal"], "ehr");
        // Events without a personal object are sent as stored.
        let plain = event("encounter-V-1", json!({"facility": "MAIN"}));
        assert_eq!(wire_event(&plain)["data"], json!({"facility": "MAIN"}));
        assert_eq!(
            nats::subject("careflow.events", &recorded),
            "careflow.events.patient_account.PatientRegistered"
        );
    }
}
