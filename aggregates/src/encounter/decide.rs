//! Encounter `decide`: the visit's lifecycle order.
//!
//! | command             | allowed while        | becomes     |
//! |---------------------|----------------------|-------------|
//! | `ScheduleEncounter` | not yet scheduled    | scheduled   |
//! | `CheckIn`           | scheduled            | arrived     |
//! | `RecordProcedure`   | arrived              | (unchanged) |
//! | `RecordSupplyUsage` | arrived              | (unchanged) |
//! | `CompleteEncounter` | arrived              | completed   |
//! | `Discharge`         | completed            | discharged  |
//! | `CancelEncounter`   | scheduled or arrived | cancelled   |
//!
//! Anything else is `InvalidTransition` (409), so nothing follows a cancellation or discharge.

use super::command::{
    CancelEncounter, Command, Discharge, RecordProcedure, RecordSupplyUsage, ScheduleEncounter,
};
use super::event::{
    EncounterCancelled, EncounterCompleted, EncounterScheduled, Event, PatientArrived,
    PatientDischarged, ProcedureRecorded, SuppliesConsumed,
};
use super::state::{EncounterStatus, State};
use crate::context::Ctx;
use crate::field::{self, LONG_TEXT, SHORT_TEXT};
use crate::rejection::Rejection;

/// Decides a command against an encounter.
///
/// # Errors
/// A [`Rejection`] (409 or 422); nothing is appended.
pub fn decide(state: &State, command: &Command, _ctx: &Ctx) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::ScheduleEncounter(c) => schedule(state, c),
        Command::CheckIn(_) => {
            require(state, command, &[EncounterStatus::Scheduled])?;
            Ok(vec![PatientArrived {}.into()])
        }
        Command::RecordProcedure(c) => record_procedure(state, command, c),
        Command::RecordSupplyUsage(c) => record_supply_usage(state, command, c),
        Command::CompleteEncounter(_) => {
            require(state, command, &[EncounterStatus::Arrived])?;
            Ok(vec![
                EncounterCompleted {
                    account_id: state.account_id.clone(),
                    facility: state.facility.clone(),
                    currency: state.currency,
                    procedures: state.procedures.clone(),
                    supplies: state.supplies.clone(),
                }
                .into(),
            ])
        }
        Command::Discharge(c) => discharge(state, command, c),
        Command::CancelEncounter(c) => cancel(state, command, c),
    }
}

/// Refuses the command unless the encounter is in one of `allowed`.
fn require(
    state: &State,
    command: &Command,
    allowed: &[EncounterStatus],
) -> Result<EncounterStatus, Rejection> {
    match state.status {
        None => Err(Rejection::NotScheduled),
        Some(status) if allowed.contains(&status) => Ok(status),
        Some(status) => Err(Rejection::InvalidTransition {
            aggregate: "encounter",
            status: status.as_str(),
            command: command.name(),
        }),
    }
}

fn schedule(state: &State, c: &ScheduleEncounter) -> Result<Vec<Event>, Rejection> {
    field::id("account_id", &c.account_id)?;
    field::text("facility", &c.facility, SHORT_TEXT)?;
    field::text("department", &c.department, SHORT_TEXT)?;
    if state.status.is_some() {
        return Err(Rejection::AlreadyScheduled);
    }
    Ok(vec![
        EncounterScheduled {
            account_id: c.account_id.clone(),
            facility: c.facility.clone(),
            department: c.department.clone(),
            encounter_class: c.encounter_class,
            scheduled_for: c.scheduled_for,
        }
        .into(),
    ])
}

fn record_procedure(
    state: &State,
    command: &Command,
    c: &RecordProcedure,
) -> Result<Vec<Event>, Rejection> {
    field::text("code", &c.code, SHORT_TEXT)?;
    field::text("description", &c.description, LONG_TEXT)?;
    field::quantity("quantity", c.quantity)?;
    field::non_negative("unit_price", c.unit_price)?;
    let amount = field::line_total("unit_price", c.unit_price, c.quantity)?;
    require(state, command, &[EncounterStatus::Arrived])?;
    if let Some(expected) = state.currency
        && expected != c.currency
    {
        return Err(Rejection::CurrencyMismatch {
            expected,
            found: c.currency,
        });
    }
    let line = u32::try_from(state.procedures.len())
        .ok()
        .and_then(|n| n.checked_add(1))
        .ok_or(Rejection::QuantityOutOfRange {
            field: "procedures",
        })?;
    Ok(vec![
        ProcedureRecorded {
            line,
            code: c.code.clone(),
            description: c.description.clone(),
            quantity: c.quantity,
            unit_price: c.unit_price,
            amount,
            currency: c.currency,
        }
        .into(),
    ])
}

fn record_supply_usage(
    state: &State,
    command: &Command,
    c: &RecordSupplyUsage,
) -> Result<Vec<Event>, Rejection> {
    field::id("item_id", &c.item_id)?;
    field::quantity("quantity", c.quantity)?;
    require(state, command, &[EncounterStatus::Arrived])?;
    Ok(vec![
        SuppliesConsumed {
            item_id: c.item_id.clone(),
            quantity: c.quantity,
        }
        .into(),
    ])
}

fn discharge(state: &State, command: &Command, c: &Discharge) -> Result<Vec<Event>, Rejection> {
    field::text("disposition", &c.disposition, LONG_TEXT)?;
    require(state, command, &[EncounterStatus::Completed])?;
    Ok(vec![
        PatientDischarged {
            disposition: c.disposition.clone(),
        }
        .into(),
    ])
}

fn cancel(state: &State, command: &Command, c: &CancelEncounter) -> Result<Vec<Event>, Rejection> {
    field::text("reason", &c.reason, LONG_TEXT)?;
    require(
        state,
        command,
        &[EncounterStatus::Scheduled, EncounterStatus::Arrived],
    )?;
    Ok(vec![
        EncounterCancelled {
            reason: c.reason.clone(),
        }
        .into(),
    ])
}
