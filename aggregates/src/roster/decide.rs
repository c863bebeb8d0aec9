//! Roster `decide`: real, bounded shifts and nobody in two places at once.

use chrono::Duration;

use super::command::{AssignShift, CancelShift, Command};
use super::event::{Event, ShiftAssigned, ShiftCancelled};
use super::state::State;
use crate::context::Ctx;
use crate::field::{self, LONG_TEXT};
use crate::rejection::Rejection;

/// The longest shift careflow takes: a longer one is a typing error (a date off by a day), not
/// a shift.
pub const MAX_SHIFT_HOURS: i64 = 24;

/// Decides a command against a roster.
///
/// # Errors
/// A [`Rejection`] (409 or 422); nothing is appended.
pub fn decide(state: &State, command: &Command, _ctx: &Ctx) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::AssignShift(c) => assign(state, c),
        Command::CancelShift(c) => cancel(state, c),
    }
}

fn assign(state: &State, c: &AssignShift) -> Result<Vec<Event>, Rejection> {
    field::id("shift_id", &c.shift_id)?;
    field::id("staff_id", &c.staff_id)?;
    field::non_negative("hourly_cost", c.hourly_cost)?;
    if c.end <= c.start {
        return Err(Rejection::ShiftEndsBeforeStart);
    }
    if c.end - c.start > Duration::hours(MAX_SHIFT_HOURS) {
        return Err(Rejection::ShiftTooLong {
            max_hours: MAX_SHIFT_HOURS,
        });
    }
    if state.shifts.contains_key(&c.shift_id) || state.cancelled.contains(&c.shift_id) {
        return Err(Rejection::DuplicateShift {
            shift_id: c.shift_id.clone(),
        });
    }
    if let Some(other) = state
        .shifts
        .values()
        .find(|s| s.staff_id == c.staff_id && s.overlaps(c.start, c.end))
    {
        return Err(Rejection::StaffDoubleBooked {
            staff_id: c.staff_id.clone(),
            shift_id: other.shift_id.clone(),
        });
    }
    Ok(vec![
        ShiftAssigned {
            shift_id: c.shift_id.clone(),
            staff_id: c.staff_id.clone(),
            role: c.role,
            start: c.start,
            end: c.end,
            hourly_cost: c.hourly_cost,
        }
        .into(),
    ])
}

fn cancel(state: &State, c: &CancelShift) -> Result<Vec<Event>, Rejection> {
    field::id("shift_id", &c.shift_id)?;
    field::text("reason", &c.reason, LONG_TEXT)?;
    if !state.shifts.contains_key(&c.shift_id) {
        return Err(Rejection::UnknownShift {
            shift_id: c.shift_id.clone(),
        });
    }
    Ok(vec![
        ShiftCancelled {
            shift_id: c.shift_id.clone(),
            reason: c.reason.clone(),
        }
        .into(),
    ])
}
