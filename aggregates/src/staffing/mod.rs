//! Staffing: the shortfalls of one department of one facility on one day
//! (`staffing-{facility}.{department}.{date}`), as the staffing process manager finds them.
//!
//! A shortfall is an hour and a role where the encounters scheduled need more staff than the
//! rosters put there. This aggregate owns their lifecycle and its rules: a shortfall is
//! detected with figures that do fall short, on a clock hour; re-detecting it with the same
//! figures is a no-op (a redelivered trigger), with new figures an update; and nothing is
//! resolved that is not open, nor with figures that still fall short. It does not compute
//! demand or read rosters: the policy (`policies::staffing`) does, from the log, and sends
//! the figures. Its events are ordinary events of the log, so NATS and webhooks carry them.

mod command;
mod decide;
mod event;
mod state;

pub use command::{Command, RecordShortfall, ResolveShortfall};
pub use decide::decide;
pub use event::{Event, StaffingShortfallDetected, StaffingShortfallResolved};
pub use state::{OpenShortfall, State, evolve, initial_state, shortfall_key};

use crate::aggregate::Aggregate;
use crate::context::Ctx;
use crate::rejection::Rejection;
use crate::roster::RosterId;

/// The Staffing aggregate (a marker type for [`Aggregate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staffing;

impl Aggregate for Staffing {
    const KIND: &'static str = "staffing";
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

    /// The same `{facility}.{department}.{date}` as a roster's.
    fn check_id(id: &str) -> Result<(), &'static str> {
        RosterId::parse(id).map(|_| ()).map_err(|e| e.rule())
    }
}

#[cfg(test)]
mod tests;
