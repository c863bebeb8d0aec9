//! Roster state and `evolve`: rendered by `GET /v1/rosters/{id}` and snapshotted.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::command::StaffRole;
use super::event::Event;
use crate::money::Cents;

/// A shift on the roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shift {
    pub shift_id: String,
    pub staff_id: String,
    pub role: StaffRole,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub hourly_cost: Cents,
}

impl Shift {
    /// Whether the two shifts share any moment (touching ends do not).
    pub fn overlaps(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        self.start < end && start < self.end
    }
}

/// A roster: the shifts that will be worked, and the ids of those cancelled (an id is never
/// reused, so a resend after a cancellation cannot bring a shift back by accident).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct State {
    pub shifts: BTreeMap<String, Shift>,
    pub cancelled: BTreeSet<String>,
}

/// The state of a stream with no events.
pub fn initial_state() -> State {
    State::default()
}

/// Applies one event. Total: never fails.
pub fn evolve(mut state: State, event: &Event) -> State {
    match event {
        Event::ShiftAssigned(e) => {
            state.shifts.insert(
                e.shift_id.clone(),
                Shift {
                    shift_id: e.shift_id.clone(),
                    staff_id: e.staff_id.clone(),
                    role: e.role,
                    start: e.start,
                    end: e.end,
                    hourly_cost: e.hourly_cost,
                },
            );
        }
        Event::ShiftCancelled(e) => {
            state.shifts.remove(&e.shift_id);
            state.cancelled.insert(e.shift_id.clone());
        }
    }
    state
}
