//! Claim: what the hospital asks one payer to pay for one visit (`claim-{claim_id}`), from
//! draft to the payer's answer.
//!
//! It owns the claim's lines (the encounter's charges, priced), its submissions and the
//! payer's adjudication: what was paid, the contractual adjustments, and what is left for the
//! patient. It moves no money itself: the claims process manager posts `RecordPayment` and
//! `ApplyAdjustment` to the patient account from `ClaimResponseRecorded`, so the account stays
//! the one ledger of what a patient owes.
//!
//! The rule every history keeps: once a claim is adjudicated, paid + adjusted + patient
//! balance = the claimed total, and none of the three is negative.

mod command;
mod decide;
mod event;
mod state;

pub use command::{
    ClaimLine, ClaimOutcome, Command, CreateClaim, RecordClaimResponse, RemittanceAdjustment,
    ResubmitClaim, SubmitClaim, VoidClaim,
};
pub use decide::decide;
pub use event::{
    ClaimCreated, ClaimResponseRecorded, ClaimResubmitted, ClaimSubmitted, ClaimVoided, Event,
};
pub use state::{ClaimStatus, State, evolve, initial_state};

use crate::aggregate::Aggregate;
use crate::context::Ctx;
use crate::rejection::Rejection;

/// The Claim aggregate (a marker type for [`Aggregate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim;

impl Aggregate for Claim {
    const KIND: &'static str = "claim";
    const SNAPSHOT_VERSION: u32 = 1;

    type State = State;
    type Command = Command;
    type Event = Event;

    fn initial_state() -> State {
        initial_state()
    }

    fn decide(state: &State, command: &Command, ctx: &Ctx) -> Result<Vec<Event>, Rejection> {
        decide(state, command, ctx)
    }

    fn evolve(state: State, event: &Event) -> State {
        evolve(state, event)
    }

    fn command_name(command: &Command) -> &'static str {
        command.name()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
