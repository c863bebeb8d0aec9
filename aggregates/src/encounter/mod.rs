//! Encounter: one visit (`encounter-{visit}`), from scheduling to discharge or cancellation.
//!
//! It owns the visit's lifecycle (`scheduled → arrived → completed → discharged`, or
//! `cancelled` before completion) and what was done during it: procedures (code, description,
//! quantity, unit price) and supplies used (item, quantity). It does not post charges or move
//! stock itself: `EncounterCompleted` carries the procedures and supplies so the process manager
//! can turn them into `PostCharge` and `ConsumeStock` commands without reading any state. It
//! does not check that the account exists (another aggregate); the process manager does.

mod command;
mod decide;
mod event;
mod state;

pub use command::{
    CancelEncounter, CheckIn, Command, CompleteEncounter, Discharge, EncounterClass,
    RecordProcedure, RecordSupplyUsage, ScheduleEncounter,
};
pub use decide::decide;
pub use event::{
    EncounterCancelled, EncounterCompleted, EncounterScheduled, Event, PatientArrived,
    PatientDischarged, Procedure, ProcedureRecorded, SuppliesConsumed, SupplyUsage,
};
pub use state::{EncounterStatus, State, evolve, initial_state};

use crate::aggregate::Aggregate;
use crate::context::Ctx;
use crate::rejection::Rejection;

/// The Encounter aggregate (a marker type for [`Aggregate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encounter;

impl Aggregate for Encounter {
    const KIND: &'static str = "encounter";
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
