//! Claim events. Each variant's number in [`Event`] is its current schema version.

use serde::{Deserialize, Serialize};

use super::Claim;
use super::command::{ClaimLine, ClaimOutcome, RemittanceAdjustment};
use crate::codec::event_enum;
use crate::money::{Cents, Currency};

event_enum! {
    aggregate = Claim;
    /// An event of a `claim-{claim_id}` stream.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Event {
        ClaimCreated = 1,
        ClaimSubmitted = 1,
        ClaimResponseRecorded = 1,
        ClaimResubmitted = 1,
        ClaimVoided = 1,
    }
}

/// A draft claim; `total` is the sum of its line totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimCreated {
    pub account_id: String,
    pub encounter_id: String,
    pub payer_id: String,
    pub lines: Vec<ClaimLine>,
    pub currency: Currency,
    pub total: Cents,
}

/// The claim went to the payer (the first time; later times are [`ClaimResubmitted`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClaimSubmitted {}

/// The payer adjudicated the claim. `adjusted` is the sum of `adjustments`, and
/// `paid_amount + adjusted + patient_balance` is the claim's total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimResponseRecorded {
    pub outcome: ClaimOutcome,
    pub paid_amount: Cents,
    pub adjustments: Vec<RemittanceAdjustment>,
    pub adjusted: Cents,
    pub patient_balance: Cents,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial_reason: Option<String>,
    pub reference: String,
}

/// A denied claim went to the payer again; `lines` and `total` are what was sent this time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimResubmitted {
    pub lines: Vec<ClaimLine>,
    pub total: Cents,
    pub note: String,
}

/// The claim was withdrawn. Final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimVoided {
    pub reason: String,
}
