//! Process-manager policies: an event in, the commands and timers it calls for out.
//!
//! A policy is the pure half of a process manager (DESIGN.md "Process managers"). It never
//! sends anything, reads no clock and calls no payer: it says *what* should happen, as data,
//! and the runner in `src/` does it. That split lets every flow be tested in microseconds and
//! makes a redelivery harmless:
//!
//! - every command carries a **deterministic command id**, UUID v5 of the triggering event's id
//!   and a step label ([`command_id_for`]), so the same event always yields the same ids and the
//!   store's command-id lookup turns a resend into a no-op;
//! - every timer has a **deterministic timer id** derived from what it guards
//!   ([`timer_id_for`]), so it can be cancelled without remembering who scheduled it;
//! - stateful policies ([`replenishment`], [`purchase_stock`]) fold their own small state with
//!   an `evolve` that ignores what it has already seen, so replaying the log into them is safe.
//!
//! The seven process managers, each with its own runner and checkpoint:
//!
//! | module | reacts to | emits |
//! |---|---|---|
//! | [`eligibility`] | `PatientRegistered`, `EligibilityVerified`/`Denied`, its deadline timer | a payer check, `ActivateAccount`, `FlagSelfPay`, timers |
//! | [`charges`] | `EncounterCompleted`, `SuppliesConsumed` | `PostCharge`, `ConsumeStock` |
//! | [`replenishment`] | `ReorderPointReached`, the purchase's end, `ReplenishmentClosed` | `RequestPurchase`, `CloseReplenishment` |
//! | [`approval_deadline`] | `PurchaseRequested`, the decision, its timer | timers, `EscalateApproval` |
//! | [`purchase_stock`] | `GoodsReceived`, `PurchaseCancelled` | `ReceiveStock`, compensating `ConsumeStock` |
//! | [`staffing`] | `EncounterScheduled`/`Cancelled`, `ShiftAssigned`/`Cancelled`, its own `StaffingShortfallDetected`/`Resolved` read back | `RecordShortfall`, `ResolveShortfall` |
//! | [`claims`] | `EncounterCompleted`, `ChargePosted`, the account's coverage and activation, `ClaimCreated`, `ClaimSubmitted`/`ClaimResubmitted`, `ClaimResponseRecorded` | `CreateClaim` + `SubmitClaim`, a claim submission to the payer, then `RecordPayment` and `ApplyAdjustment` on the account |
//! | [`merges`] | `PatientMerged` | `AbsorbMergedAccount` on the surviving account |
//!
//! Timers are events of an internal stream; [`timer`] holds their types and the fold that says
//! which are due. docs/process-managers.md draws every flow.

pub mod approval_deadline;
pub mod charges;
pub mod claims;
pub mod eligibility;
pub mod merges;
pub mod purchase_stock;
pub mod replenishment;
pub mod staffing;
pub mod timer;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod staffing_tests;
#[cfg(test)]
mod tests;

use std::fmt::Debug;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::addressed::{AddressedCommand, AnyCommand};
use crate::aggregate::Aggregate;
use crate::codec::DecodeError;
use crate::envelope::RecordedEvent;
use crate::stream_id::{StreamId, StreamIdError};
use crate::{Claim, Encounter, InventoryItem, PatientAccount, PurchaseWorkflow, Roster, Staffing};
use crate::{claim, encounter, inventory_item, patient_account, purchase, roster};

pub use claims::ClaimSubmission;
pub use eligibility::{EligibilityAnswer, EligibilityCheck};
pub use timer::{TimerCancellation, TimerEvent, TimerPayload, TimerRequest, Timers};

/// The principal and `source` prefix every process-manager command is recorded under
/// (`process_manager:<name>`), so an auditor can tell them from upstream systems.
pub const PRINCIPAL_PREFIX: &str = "process_manager:";

/// The requester of replenishment purchases (issue 6), a staff-like identifier so
/// segregation of duties still holds: no human approver is ever `careflow-replenishment`.
pub const REPLENISHMENT_REQUESTER: &str = "careflow-replenishment";

/// The command id of step `step` taken because of event `event_id`: UUID v5 in the event id's
/// namespace, the same construction as [`crate::event_id_for`]. A redelivered event therefore
/// produces the same command ids, and the store recognises the resend.
pub fn command_id_for(event_id: Uuid, step: &str) -> Uuid {
    Uuid::new_v5(&event_id, step.as_bytes())
}

/// The namespace of timer ids (a fixed random UUID; changing it would orphan pending timers).
const TIMER_NAMESPACE: Uuid = Uuid::from_u128(0x6c1f_2b9e_43a7_4d0e_9f55_1c2d_8a3b_7e41);

/// The id of the timer `process` keeps for `key` (a requisition, an MRN): derived from what the
/// timer guards rather than from the event that set it, so a later event (a decision) can cancel
/// it without the policy keeping state.
pub fn timer_id_for(process: &str, key: &str) -> Uuid {
    Uuid::new_v5(&TIMER_NAMESPACE, format!("{process}/{key}").as_bytes())
}

/// An event as a policy sees it: where it sits in the log, and its decoded payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// Command ids derive from it ([`command_id_for`]).
    pub event_id: Uuid,
    /// The global position; runners checkpoint after it.
    pub position: u64,
    pub stream_id: StreamId,
    /// When the store accepted the event; default deadlines count from here, so an import
    /// of back-dated business events does not escalate at once.
    pub recorded_at: DateTime<Utc>,
    pub event: TriggerEvent,
}

/// The decoded payload of a [`Trigger`], by stream kind.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerEvent {
    PatientAccount(patient_account::Event),
    Encounter(encounter::Event),
    InventoryItem(inventory_item::Event),
    Purchase(purchase::Event),
    Claim(claim::Event),
    Roster(roster::Event),
    Staffing(crate::staffing::Event),
    Timer(TimerEvent),
}

impl Trigger {
    /// Decodes a stored event for the policies (upcasting old schemas). Streams no policy
    /// reads (the access log) give `Ok(None)`.
    ///
    /// The shell decrypts `data.personal` first: the eligibility check needs the member id.
    ///
    /// # Errors
    /// A [`DecodeError`] when the data does not decode; the runner treats the event as poison
    /// (dead letter) rather than guess.
    pub fn from_recorded(recorded: &RecordedEvent) -> Result<Option<Trigger>, DecodeError> {
        let kind = recorded.stream_id.kind();
        let (event_type, version, data) = (
            recorded.event_type.as_str(),
            recorded.schema_version,
            recorded.data.clone(),
        );
        let event = if kind == PatientAccount::KIND {
            TriggerEvent::PatientAccount(PatientAccount::decode(event_type, version, data)?)
        } else if kind == Encounter::KIND {
            TriggerEvent::Encounter(Encounter::decode(event_type, version, data)?)
        } else if kind == InventoryItem::KIND {
            TriggerEvent::InventoryItem(InventoryItem::decode(event_type, version, data)?)
        } else if kind == PurchaseWorkflow::KIND {
            TriggerEvent::Purchase(PurchaseWorkflow::decode(event_type, version, data)?)
        } else if kind == Claim::KIND {
            TriggerEvent::Claim(Claim::decode(event_type, version, data)?)
        } else if kind == Roster::KIND {
            TriggerEvent::Roster(Roster::decode(event_type, version, data)?)
        } else if kind == Staffing::KIND {
            TriggerEvent::Staffing(Staffing::decode(event_type, version, data)?)
        } else if kind == timer::TIMER_STREAM_KIND {
            TriggerEvent::Timer(TimerEvent::decode(event_type, version, data)?)
        } else {
            return Ok(None);
        };
        Ok(Some(Trigger {
            event_id: recorded.event_id,
            position: recorded.position,
            stream_id: recorded.stream_id.clone(),
            recorded_at: recorded.metadata.recorded_at,
            event,
        }))
    }
}

/// Everything one event calls for. An empty reaction is the common case (most events concern
/// no policy).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reaction {
    /// Each under a deterministic command id ([`command_id_for`]).
    pub commands: Vec<AddressedCommand>,
    /// Timers to schedule (`TimerScheduled` on the process's timer stream).
    pub timers: Vec<TimerRequest>,
    /// Timers that no longer matter (`TimerCancelled`).
    pub cancelled_timers: Vec<TimerCancellation>,
    /// Payer calls the eligibility runner makes (I/O, so not a command).
    pub eligibility_checks: Vec<EligibilityCheck>,
    /// Claims the claims runner sends to the payer (`POST {payer_url}/Claim/$submit`).
    pub claim_submissions: Vec<ClaimSubmission>,
}

impl Reaction {
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
            && self.timers.is_empty()
            && self.cancelled_timers.is_empty()
            && self.eligibility_checks.is_empty()
            && self.claim_submissions.is_empty()
    }
}

/// Why a policy could not build its reaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Occurs when an id read from an event does not make a stream id (for example a visit
    /// imported before the id rule). The runner dead-letters the event; nothing is sent.
    #[error("{kind} id from the event breaks the id rule: {source}")]
    InvalidTarget {
        kind: &'static str,
        #[source]
        source: StreamIdError,
    },
}

/// A process manager's policy, written once against this trait so one runner hosts them all.
///
/// The runner calls `react(&state, trigger)`, performs the reaction, then folds the trigger
/// with `evolve` and checkpoints (state and position together). `react` reads the state
/// *before* the event; a policy stays correct when the runner redelivers an event its state
/// has already seen (a crash between saving the state and the checkpoint).
pub trait ProcessManager {
    /// The runner's name: checkpoint key, metric label, `process_manager:<NAME>` principal,
    /// `timers-<NAME>` stream.
    const NAME: &'static str;
    /// The stream kinds whose events `react` or `evolve` can act on. The runner decodes only
    /// these (every runner reads the whole log; decoding the rest would be wasted work), so a
    /// policy that starts reacting to another kind must list it here.
    const STREAM_KINDS: &'static [&'static str];
    /// Whether `react` reads the patient's personal data (the shell then decrypts `personal`
    /// for this policy alone; every other one sees it sealed, and never looks).
    const READS_PERSONAL: bool = false;
    /// The process state (`()` for stateless policies); serialisable for the runner's snapshot.
    type State: Clone
        + Debug
        + Default
        + PartialEq
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static;
    /// Deadlines and similar knobs, from config.
    type Settings: Clone + Debug + Default + Send + Sync + 'static;

    /// What `trigger` calls for, given the state before it.
    ///
    /// # Errors
    /// [`PolicyError`] when the event holds an id that cannot address a stream.
    fn react(
        state: &Self::State,
        trigger: &Trigger,
        settings: &Self::Settings,
    ) -> Result<Reaction, PolicyError>;

    /// Folds the trigger into the state. Total, and idempotent for an event already seen.
    fn evolve(state: Self::State, trigger: &Trigger) -> Self::State;
}

/// Addresses `command` to the instance `id` of its aggregate, an id read from an event.
fn address(
    id: &str,
    command_id: Uuid,
    command: AnyCommand,
) -> Result<AddressedCommand, PolicyError> {
    let kind = command.kind();
    AddressedCommand::new(id, command_id, command)
        .map_err(|source| PolicyError::InvalidTarget { kind, source })
}

/// Cuts `text` to at most `max` characters (on a character boundary): free texts built from
/// outside answers must still fit the command's field rule.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    }
}
