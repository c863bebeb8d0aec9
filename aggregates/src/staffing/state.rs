//! Staffing state and `evolve`: the shortfalls open on the stream.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::event::Event;
use crate::roster::StaffRole;

/// An open shortfall, with the figures last recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenShortfall {
    pub hour: DateTime<Utc>,
    pub role: StaffRole,
    pub required: u32,
    pub rostered: u32,
}

/// The open shortfalls, by [`shortfall_key`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct State {
    pub open: BTreeMap<String, OpenShortfall>,
}

/// `{hour as RFC 3339} {role}`: sorts by hour, then role.
pub fn shortfall_key(hour: DateTime<Utc>, role: StaffRole) -> String {
    format!(
        "{} {}",
        hour.to_rfc3339_opts(SecondsFormat::Secs, true),
        role.as_str()
    )
}

/// The state of a stream with no events.
pub fn initial_state() -> State {
    State::default()
}

/// Applies one event. Total: never fails.
pub fn evolve(mut state: State, event: &Event) -> State {
    match event {
        Event::StaffingShortfallDetected(e) => {
            state.open.insert(
                shortfall_key(e.hour, e.role),
                OpenShortfall {
                    hour: e.hour,
                    role: e.role,
                    required: e.required,
                    rostered: e.rostered,
                },
            );
        }
        Event::StaffingShortfallResolved(e) => {
            state.open.remove(&shortfall_key(e.hour, e.role));
        }
    }
    state
}
