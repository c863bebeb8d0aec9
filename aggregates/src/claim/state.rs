//! Claim state and `evolve`: rendered by `GET /v1/claims/{claim_id}` and snapshotted.

use serde::{Deserialize, Serialize};

use super::command::{ClaimLine, ClaimOutcome, RemittanceAdjustment};
use super::event::Event;
use crate::money::{Cents, Currency};

/// The pinned status values of a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    Draft,
    Submitted,
    Paid,
    PartiallyPaid,
    Denied,
    Void,
}

impl ClaimStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimStatus::Draft => "draft",
            ClaimStatus::Submitted => "submitted",
            ClaimStatus::Paid => "paid",
            ClaimStatus::PartiallyPaid => "partially_paid",
            ClaimStatus::Denied => "denied",
            ClaimStatus::Void => "void",
        }
    }

    /// The payer has answered (money may have moved).
    pub fn is_adjudicated(self) -> bool {
        matches!(
            self,
            ClaimStatus::Paid | ClaimStatus::PartiallyPaid | ClaimStatus::Denied
        )
    }
}

impl From<ClaimOutcome> for ClaimStatus {
    fn from(outcome: ClaimOutcome) -> Self {
        match outcome {
            ClaimOutcome::Paid => ClaimStatus::Paid,
            ClaimOutcome::PartiallyPaid => ClaimStatus::PartiallyPaid,
            ClaimOutcome::Denied => ClaimStatus::Denied,
        }
    }
}

/// A claim. `status` is `None` until it is created.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct State {
    pub status: Option<ClaimStatus>,
    pub account_id: String,
    pub encounter_id: String,
    pub payer_id: String,
    pub lines: Vec<ClaimLine>,
    pub currency: Currency,
    /// What the claim asks for: the sum of its lines as last sent.
    pub total: Cents,
    /// How many times it went to the payer (the first submission and each resubmission).
    pub submissions: u32,
    /// The last adjudication: paid, adjusted and left to the patient; zero before one.
    pub paid: Cents,
    pub adjusted: Cents,
    pub patient_balance: Cents,
    pub adjustments: Vec<RemittanceAdjustment>,
    pub denial_reason: Option<String>,
    /// The payer's reference of the last answer.
    pub reference: Option<String>,
    /// The note of the last resubmission.
    pub note: Option<String>,
    pub void_reason: Option<String>,
}

/// The state of a stream with no events.
pub fn initial_state() -> State {
    State::default()
}

/// Applies one event. Total: never fails.
pub fn evolve(mut state: State, event: &Event) -> State {
    match event {
        Event::ClaimCreated(e) => {
            state.status = Some(ClaimStatus::Draft);
            state.account_id.clone_from(&e.account_id);
            state.encounter_id.clone_from(&e.encounter_id);
            state.payer_id.clone_from(&e.payer_id);
            state.lines.clone_from(&e.lines);
            state.currency = e.currency;
            state.total = e.total;
        }
        Event::ClaimSubmitted(_) => {
            state.status = Some(ClaimStatus::Submitted);
            state.submissions += 1;
        }
        Event::ClaimResponseRecorded(e) => {
            state.status = Some(e.outcome.into());
            state.paid = e.paid_amount;
            state.adjusted = e.adjusted;
            state.patient_balance = e.patient_balance;
            state.adjustments.clone_from(&e.adjustments);
            state.denial_reason.clone_from(&e.denial_reason);
            state.reference = Some(e.reference.clone());
        }
        Event::ClaimResubmitted(e) => {
            state.status = Some(ClaimStatus::Submitted);
            state.submissions += 1;
            state.lines.clone_from(&e.lines);
            state.total = e.total;
            state.note = Some(e.note.clone());
            // The denial is answered; the next response says what holds now.
            state.paid = Cents::ZERO;
            state.adjusted = Cents::ZERO;
            state.patient_balance = Cents::ZERO;
            state.adjustments.clear();
            state.denial_reason = None;
        }
        Event::ClaimVoided(e) => {
            state.status = Some(ClaimStatus::Void);
            state.void_reason = Some(e.reason.clone());
        }
    }
    state
}
