//! Claim commands, exactly as DESIGN.md "Claims" spells them.
//!
//! Unknown fields are refused on every struct, lines included; money is a string decimal.

use serde::{Deserialize, Serialize};

use crate::codec::command_enum;
use crate::money::{Cents, Currency};

command_enum! {
    /// A command to a claim (`POST /v1/claims/{claim_id}/commands`).
    pub enum Command {
        CreateClaim,
        SubmitClaim,
        RecordClaimResponse,
        ResubmitClaim,
        VoidClaim,
    }
}

/// One billed service: a posted charge of the encounter, priced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimLine {
    pub charge_id: String,
    pub code: String,
    pub quantity: u32,
    pub unit_price: Cents,
}

/// `CreateClaim`: a draft claim for one encounter of one account, to one payer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateClaim {
    pub account_id: String,
    pub encounter_id: String,
    pub payer_id: String,
    pub lines: Vec<ClaimLine>,
    #[serde(default)]
    pub currency: Currency,
}

/// `SubmitClaim`: the draft goes to the payer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitClaim {}

/// How the payer adjudicated a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimOutcome {
    Paid,
    PartiallyPaid,
    Denied,
}

impl ClaimOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimOutcome::Paid => "paid",
            ClaimOutcome::PartiallyPaid => "partially_paid",
            ClaimOutcome::Denied => "denied",
        }
    }
}

/// A contractual adjustment: the part of the charges the payer will not pay and the patient
/// does not owe (X12 CARC-style `reason_code`, e.g. `CO-45`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemittanceAdjustment {
    pub reason_code: String,
    pub amount: Cents,
}

/// `RecordClaimResponse`: the payer's answer to the submission (its ClaimResponse).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordClaimResponse {
    pub outcome: ClaimOutcome,
    pub paid_amount: Cents,
    #[serde(default)]
    pub adjustments: Vec<RemittanceAdjustment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial_reason: Option<String>,
    /// The payer's reference for this answer (the ClaimResponse id, a remittance number).
    pub reference: String,
}

/// `ResubmitClaim`: a denied claim goes to the payer again, corrected lines or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResubmitClaim {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<ClaimLine>>,
    pub note: String,
}

/// `VoidClaim`: the claim is withdrawn before any money moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoidClaim {
    pub reason: String,
}
