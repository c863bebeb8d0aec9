//! Roster: who works in one department of one facility on one day
//! (`roster-{facility}.{department}.{date}`), as the HR or scheduling system assigns it.
//!
//! It owns the shifts (staff, role, start, end, hourly cost) and two rules: a shift is a real
//! interval of at most [`MAX_SHIFT_HOURS`], and nobody works two overlapping shifts on one
//! roster. Demand (encounters per hour) is not its business: the staffing process manager
//! compares the roster with the demand view and records shortfalls on a stream of its own.

mod command;
mod decide;
mod event;
mod id;
mod state;

pub use command::{AssignShift, CancelShift, Command, StaffRole};
pub use decide::{MAX_SHIFT_HOURS, decide};
pub use event::{Event, ShiftAssigned, ShiftCancelled};
pub use id::{RosterId, RosterIdError};
pub use state::{Shift, State, evolve, initial_state};

use crate::aggregate::Aggregate;
use crate::context::Ctx;
use crate::rejection::Rejection;

/// The Roster aggregate (a marker type for [`Aggregate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roster;

impl Aggregate for Roster {
    const KIND: &'static str = "roster";
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

    fn check_id(id: &str) -> Result<(), &'static str> {
        RosterId::parse(id).map(|_| ()).map_err(|e| e.rule())
    }
}

#[cfg(test)]
mod tests;
