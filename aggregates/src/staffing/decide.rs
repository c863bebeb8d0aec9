//! Staffing `decide`: a shortfall is real when detected and open when resolved.

use chrono::{DateTime, SecondsFormat, Timelike, Utc};

use super::command::{Command, RecordShortfall, ResolveShortfall};
use super::event::{Event, StaffingShortfallDetected, StaffingShortfallResolved};
use super::state::{State, shortfall_key};
use crate::context::Ctx;
use crate::field;
use crate::rejection::Rejection;

/// Decides a command against a staffing stream.
///
/// # Errors
/// A [`Rejection`] (409 or 422); nothing is appended.
pub fn decide(state: &State, command: &Command, _ctx: &Ctx) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::RecordShortfall(c) => record(state, c),
        Command::ResolveShortfall(c) => resolve(state, c),
    }
}

fn check_place(facility: &str, department: &str, hour: DateTime<Utc>) -> Result<(), Rejection> {
    field::id("facility", facility)?;
    field::id("department", department)?;
    if hour.minute() != 0 || hour.second() != 0 || hour.nanosecond() != 0 {
        return Err(Rejection::NotOnTheHour);
    }
    Ok(())
}

fn record(state: &State, c: &RecordShortfall) -> Result<Vec<Event>, Rejection> {
    check_place(&c.facility, &c.department, c.hour)?;
    if c.required <= c.rostered {
        return Err(Rejection::NoShortfall {
            required: c.required,
            rostered: c.rostered,
        });
    }
    if let Some(open) = state.open.get(&shortfall_key(c.hour, c.role))
        && open.required == c.required
        && open.rostered == c.rostered
    {
        // Already open with these figures: a redelivered detection changes nothing.
        return Ok(vec![]);
    }
    Ok(vec![
        StaffingShortfallDetected {
            facility: c.facility.clone(),
            department: c.department.clone(),
            hour: c.hour,
            role: c.role,
            required: c.required,
            rostered: c.rostered,
        }
        .into(),
    ])
}

fn resolve(state: &State, c: &ResolveShortfall) -> Result<Vec<Event>, Rejection> {
    check_place(&c.facility, &c.department, c.hour)?;
    if c.required > c.rostered {
        return Err(Rejection::ShortfallPersists {
            required: c.required,
            rostered: c.rostered,
        });
    }
    let key = shortfall_key(c.hour, c.role);
    if !state.open.contains_key(&key) {
        return Err(Rejection::ShortfallNotOpen {
            hour: c.hour.to_rfc3339_opts(SecondsFormat::Secs, true),
            role: c.role.as_str().to_owned(),
        });
    }
    Ok(vec![
        StaffingShortfallResolved {
            facility: c.facility.clone(),
            department: c.department.clone(),
            hour: c.hour,
            role: c.role,
            required: c.required,
            rostered: c.rostered,
        }
        .into(),
    ])
}
