//! Claim `decide`: lifecycle order and the remittance arithmetic.
//!
//! | command               | allowed while              | becomes                         |
//! |-----------------------|----------------------------|---------------------------------|
//! | `CreateClaim`         | not yet created            | draft                           |
//! | `SubmitClaim`         | draft                      | submitted                       |
//! | `RecordClaimResponse` | submitted                  | paid / partially_paid / denied  |
//! | `ResubmitClaim`       | denied                     | submitted                       |
//! | `VoidClaim`           | draft, submitted, denied   | void                            |
//!
//! A response repeated word for word (the payer posting the same ClaimResponse twice) is a
//! no-op; a different answer to an adjudicated claim is refused (409).

use super::command::{
    ClaimLine, ClaimOutcome, Command, CreateClaim, RecordClaimResponse, ResubmitClaim, VoidClaim,
};
use super::event::{
    ClaimCreated, ClaimResponseRecorded, ClaimResubmitted, ClaimSubmitted, ClaimVoided, Event,
};
use super::state::{ClaimStatus, State};
use crate::context::Ctx;
use crate::field::{self, LONG_TEXT, SHORT_TEXT};
use crate::money::Cents;
use crate::rejection::Rejection;

use ClaimStatus::{Denied, Draft, Submitted};

/// Decides a command against a claim.
///
/// # Errors
/// A [`Rejection`] (409 or 422); nothing is appended.
pub fn decide(state: &State, command: &Command, _ctx: &Ctx) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::CreateClaim(c) => create(state, c),
        Command::SubmitClaim(_) => {
            require(state, command, &[Draft])?;
            Ok(vec![ClaimSubmitted {}.into()])
        }
        Command::RecordClaimResponse(c) => respond(state, command, c),
        Command::ResubmitClaim(c) => resubmit(state, command, c),
        Command::VoidClaim(c) => void(state, command, c),
    }
}

fn require(
    state: &State,
    command: &Command,
    allowed: &[ClaimStatus],
) -> Result<ClaimStatus, Rejection> {
    match state.status {
        None => Err(Rejection::ClaimNotCreated),
        Some(status) if allowed.contains(&status) => Ok(status),
        Some(status) => Err(Rejection::InvalidTransition {
            aggregate: "claim",
            status: status.as_str(),
            command: command.name(),
        }),
    }
}

/// Checks the lines and sums them.
fn priced(lines: &[ClaimLine]) -> Result<Cents, Rejection> {
    if lines.is_empty() {
        return Err(Rejection::EmptyField { field: "lines" });
    }
    let mut total = Cents::ZERO;
    for line in lines {
        field::id("lines.charge_id", &line.charge_id)?;
        field::text("lines.code", &line.code, SHORT_TEXT)?;
        field::quantity("lines.quantity", line.quantity)?;
        field::non_negative("lines.unit_price", line.unit_price)?;
        let line_total = field::line_total("lines.unit_price", line.unit_price, line.quantity)?;
        total = total
            .checked_add(line_total)
            .ok_or(Rejection::AmountOutOfRange { field: "lines" })?;
    }
    field::distinct_items(lines.iter().map(|l| l.charge_id.as_str()))?;
    // The total becomes the payment and adjustments posted to the account: an amount too.
    field::amount("lines", total)
}

fn create(state: &State, c: &CreateClaim) -> Result<Vec<Event>, Rejection> {
    field::id("account_id", &c.account_id)?;
    field::id("encounter_id", &c.encounter_id)?;
    field::id("payer_id", &c.payer_id)?;
    let total = priced(&c.lines)?;
    if state.status.is_some() {
        return Err(Rejection::ClaimAlreadyCreated);
    }
    Ok(vec![
        ClaimCreated {
            account_id: c.account_id.clone(),
            encounter_id: c.encounter_id.clone(),
            payer_id: c.payer_id.clone(),
            lines: c.lines.clone(),
            currency: c.currency,
            total,
        }
        .into(),
    ])
}

fn respond(
    state: &State,
    command: &Command,
    c: &RecordClaimResponse,
) -> Result<Vec<Event>, Rejection> {
    field::text("reference", &c.reference, SHORT_TEXT)?;
    field::optional_text("denial_reason", c.denial_reason.as_deref(), LONG_TEXT)?;
    field::non_negative("paid_amount", c.paid_amount)?;
    let mut adjusted = Cents::ZERO;
    for adjustment in &c.adjustments {
        field::text(
            "adjustments.reason_code",
            &adjustment.reason_code,
            SHORT_TEXT,
        )?;
        if !adjustment.amount.is_positive() {
            return Err(Rejection::NonPositiveAmount {
                field: "adjustments.amount",
            });
        }
        field::amount("adjustments.amount", adjustment.amount)?;
        adjusted = adjusted
            .checked_add(adjustment.amount)
            .ok_or(Rejection::AmountOutOfRange {
                field: "adjustments",
            })?;
    }
    match c.outcome {
        ClaimOutcome::Denied => {
            if c.paid_amount != Cents::ZERO {
                return Err(Rejection::InconsistentResponse {
                    detail: "a denial pays nothing: paid_amount must be 0.00",
                });
            }
            if c.denial_reason.is_none() {
                return Err(Rejection::EmptyField {
                    field: "denial_reason",
                });
            }
        }
        ClaimOutcome::Paid | ClaimOutcome::PartiallyPaid => {
            if !c.paid_amount.is_positive() {
                return Err(Rejection::InconsistentResponse {
                    detail: "a payment pays something: paid_amount must be above 0.00",
                });
            }
        }
    }
    if let Some(status) = state.status
        && status.is_adjudicated()
        && state.reference.as_deref() == Some(c.reference.as_str())
        && ClaimStatus::from(c.outcome) == status
        && state.paid == c.paid_amount
        && state.adjustments == c.adjustments
    {
        return Ok(vec![]);
    }
    require(state, command, &[Submitted])?;
    let patient_balance = c
        .paid_amount
        .checked_add(adjusted)
        .and_then(|settled| state.total.checked_sub(settled))
        .filter(|left| !left.is_negative())
        .ok_or(Rejection::RemittanceExceedsClaim {
            claimed: state.total,
        })?;
    Ok(vec![
        ClaimResponseRecorded {
            outcome: c.outcome,
            paid_amount: c.paid_amount,
            adjustments: c.adjustments.clone(),
            adjusted,
            patient_balance,
            denial_reason: c.denial_reason.clone(),
            reference: c.reference.clone(),
        }
        .into(),
    ])
}

fn resubmit(state: &State, command: &Command, c: &ResubmitClaim) -> Result<Vec<Event>, Rejection> {
    field::text("note", &c.note, LONG_TEXT)?;
    let (lines, total) = match &c.lines {
        Some(lines) => (lines.clone(), priced(lines)?),
        None => (state.lines.clone(), state.total),
    };
    require(state, command, &[Denied])?;
    Ok(vec![
        ClaimResubmitted {
            lines,
            total,
            note: c.note.clone(),
        }
        .into(),
    ])
}

fn void(state: &State, command: &Command, c: &VoidClaim) -> Result<Vec<Event>, Rejection> {
    field::text("reason", &c.reason, LONG_TEXT)?;
    require(state, command, &[Draft, Submitted, Denied])?;
    Ok(vec![
        ClaimVoided {
            reason: c.reason.clone(),
        }
        .into(),
    ])
}
