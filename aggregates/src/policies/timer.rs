//! Durable timers as events: `TimerScheduled`, `TimerFired`, `TimerCancelled`.
//!
//! A deadline (an approval due in 48 hours, a payer that must answer within 15 minutes) must
//! survive a restart and fire once even if it fell due while careflow was down. Keeping
//! timers as events of an internal stream (`timers-<process>`) gives that for free: the
//! runner folds the stream into [`Timers`], asks which are due at its clock's `now`, and
//! appends `TimerFired` (with the payload, so policies react to that one event). A fired or
//! cancelled timer is remembered, so a redelivered `TimerScheduled` does not revive it.
//!
//! This module decides nothing about *what* a timer means; the policies do, by matching
//! [`TimerPayload`]. It reads no clock: `now` is an argument.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::codec::{DecodeError, EncodedEvent};
use crate::rejection::describe_serde_error;
use crate::stream_id::{StreamId, StreamIdError};

/// The stream kind of timer streams: `timers-<process>`.
pub const TIMER_STREAM_KIND: &str = "timers";

/// The one schema version of every timer event so far.
const SCHEMA_VERSION: u32 = 1;

/// The timer stream of process manager `process` (`timers-purchase_approval`).
///
/// # Errors
/// [`StreamIdError`] if `process` breaks the id rule (process names are constants that keep it).
pub fn timer_stream(process: &str) -> Result<StreamId, StreamIdError> {
    StreamId::new(TIMER_STREAM_KIND, process)
}

/// What a timer is for. Stored in the event, so the fired event alone tells a policy what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum TimerPayload {
    /// A requisition awaiting approval escalates when this fires.
    ApprovalDeadline { requisition_id: String },
    /// A registration whose payer has not answered is flagged self-pay when this fires.
    EligibilityDeadline { account_id: String },
}

/// A policy's request to schedule a timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerRequest {
    /// The process manager that owns it (its stream is `timers-<process>`).
    pub process: &'static str,
    pub timer_id: Uuid,
    pub due_at: DateTime<Utc>,
    pub payload: TimerPayload,
}

/// A policy's request to drop a timer (the decision it guarded was taken).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerCancellation {
    pub process: &'static str,
    pub timer_id: Uuid,
}

/// A timer was set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerScheduled {
    pub timer_id: Uuid,
    pub due_at: DateTime<Utc>,
    pub payload: TimerPayload,
}

/// A timer fell due and was acted on (at most once: the fold refuses a second fire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerFired {
    pub timer_id: Uuid,
    pub due_at: DateTime<Utc>,
    pub payload: TimerPayload,
}

/// A timer will not fire. Recorded even for a timer not (yet) seen, so a schedule that is
/// redelivered after its cancellation stays cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerCancelled {
    pub timer_id: Uuid,
}

/// An event of a `timers-<process>` stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerEvent {
    TimerScheduled(TimerScheduled),
    TimerFired(TimerFired),
    TimerCancelled(TimerCancelled),
}

impl TimerEvent {
    /// Every timer event type, for registries and codec tests.
    pub const EVENT_TYPES: &'static [&'static str] =
        &["TimerScheduled", "TimerFired", "TimerCancelled"];

    pub fn event_type(&self) -> &'static str {
        match self {
            TimerEvent::TimerScheduled(_) => "TimerScheduled",
            TimerEvent::TimerFired(_) => "TimerFired",
            TimerEvent::TimerCancelled(_) => "TimerCancelled",
        }
    }

    pub fn timer_id(&self) -> Uuid {
        match self {
            TimerEvent::TimerScheduled(e) => e.timer_id,
            TimerEvent::TimerFired(e) => e.timer_id,
            TimerEvent::TimerCancelled(e) => e.timer_id,
        }
    }

    /// The event as `event_type`, `schema_version` and `data`, ready for an append.
    ///
    /// # Panics
    /// Never in practice: timer events hold only strings, UUIDs and timestamps.
    pub fn encode(&self) -> EncodedEvent {
        let data = match self {
            TimerEvent::TimerScheduled(e) => serde_json::to_value(e),
            TimerEvent::TimerFired(e) => serde_json::to_value(e),
            TimerEvent::TimerCancelled(e) => serde_json::to_value(e),
        };
        let data = match data {
            Ok(data) => data,
            Err(error) => unreachable!("timer event failed to serialise: {error}"),
        };
        EncodedEvent {
            event_type: self.event_type(),
            schema_version: SCHEMA_VERSION,
            data,
        }
    }

    /// Reads a stored timer event.
    ///
    /// # Errors
    /// [`DecodeError`] for an unknown type, a newer schema, or data that does not match.
    pub fn decode(
        event_type: &str,
        schema_version: u32,
        data: Value,
    ) -> Result<TimerEvent, DecodeError> {
        if !Self::EVENT_TYPES.contains(&event_type) {
            return Err(DecodeError::UnknownEventType {
                kind: TIMER_STREAM_KIND,
                event_type: event_type.to_owned(),
            });
        }
        if schema_version > SCHEMA_VERSION {
            return Err(DecodeError::FutureSchemaVersion {
                event_type: event_type.to_owned(),
                found: schema_version,
                current: SCHEMA_VERSION,
            });
        }
        let decoded = match event_type {
            "TimerScheduled" => serde_json::from_value(data).map(TimerEvent::TimerScheduled),
            "TimerFired" => serde_json::from_value(data).map(TimerEvent::TimerFired),
            _ => serde_json::from_value(data).map(TimerEvent::TimerCancelled),
        };
        decoded.map_err(|error| DecodeError::Data {
            event_type: event_type.to_owned(),
            detail: describe_serde_error(&error),
        })
    }
}

/// A scheduled timer that has neither fired nor been cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTimer {
    pub timer_id: Uuid,
    pub due_at: DateTime<Utc>,
    pub payload: TimerPayload,
}

/// The fold of one or more timer streams: which timers are pending, in due order.
///
/// Pending timers are indexed by `(due_at, timer_id)`, so "what is due at T" walks only the
/// due ones and the runner can sleep until [`Timers::next_due_at`]. Finished ids are kept (16
/// bytes each) so redeliveries stay harmless.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timers {
    queue: BTreeMap<(DateTime<Utc>, Uuid), TimerPayload>,
    due_of: HashMap<Uuid, DateTime<Utc>>,
    finished: HashSet<Uuid>,
}

impl Timers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one timer event. Total and idempotent: a repeat, or a schedule after the timer
    /// finished, changes nothing.
    #[must_use]
    pub fn evolve(mut self, event: &TimerEvent) -> Self {
        self.apply(event);
        self
    }

    /// [`Timers::evolve`] in place, for runners folding many events.
    pub fn apply(&mut self, event: &TimerEvent) {
        match event {
            TimerEvent::TimerScheduled(e) => {
                if self.finished.contains(&e.timer_id) || self.due_of.contains_key(&e.timer_id) {
                    return;
                }
                self.due_of.insert(e.timer_id, e.due_at);
                self.queue.insert((e.due_at, e.timer_id), e.payload.clone());
            }
            TimerEvent::TimerFired(TimerFired { timer_id, .. })
            | TimerEvent::TimerCancelled(TimerCancelled { timer_id }) => {
                if let Some(due_at) = self.due_of.remove(timer_id) {
                    self.queue.remove(&(due_at, *timer_id));
                }
                self.finished.insert(*timer_id);
            }
        }
    }

    /// Pending timers due at or before `now`, earliest first.
    pub fn due(&self, now: DateTime<Utc>) -> impl Iterator<Item = PendingTimer> + '_ {
        self.queue
            .iter()
            .take_while(move |((due_at, _), _)| *due_at <= now)
            .map(|((due_at, timer_id), payload)| PendingTimer {
                timer_id: *timer_id,
                due_at: *due_at,
                payload: payload.clone(),
            })
    }

    /// When the earliest pending timer falls due: the runner sleeps until then (or a new
    /// schedule arrives).
    pub fn next_due_at(&self) -> Option<DateTime<Utc>> {
        self.queue.keys().next().map(|(due_at, _)| *due_at)
    }

    pub fn pending_count(&self) -> usize {
        self.due_of.len()
    }

    pub fn is_pending(&self, timer_id: Uuid) -> bool {
        self.due_of.contains_key(&timer_id)
    }

    /// The event that schedules `request`, or `None` if the timer is already known (pending,
    /// fired or cancelled): a redelivered request appends nothing.
    pub fn schedule(&self, request: &TimerRequest) -> Option<TimerEvent> {
        if self.finished.contains(&request.timer_id) || self.due_of.contains_key(&request.timer_id)
        {
            return None;
        }
        Some(TimerEvent::TimerScheduled(TimerScheduled {
            timer_id: request.timer_id,
            due_at: request.due_at,
            payload: request.payload.clone(),
        }))
    }

    /// The event that fires `timer_id` at `now`, or `None` if it is not pending or not due yet.
    /// This is the once-only guard: a fired timer is no longer pending.
    pub fn fire(&self, timer_id: Uuid, now: DateTime<Utc>) -> Option<TimerEvent> {
        let due_at = *self.due_of.get(&timer_id)?;
        if due_at > now {
            return None;
        }
        let payload = self.queue.get(&(due_at, timer_id))?.clone();
        Some(TimerEvent::TimerFired(TimerFired {
            timer_id,
            due_at,
            payload,
        }))
    }

    /// The event that cancels `timer_id`, or `None` if it already fired or was cancelled.
    pub fn cancel(&self, timer_id: Uuid) -> Option<TimerEvent> {
        if self.finished.contains(&timer_id) {
            return None;
        }
        Some(TimerEvent::TimerCancelled(TimerCancelled { timer_id }))
    }
}
