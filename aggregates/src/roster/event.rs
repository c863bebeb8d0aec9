//! Roster events. Each variant's number in [`Event`] is its current schema version.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Roster;
use super::command::StaffRole;
use crate::codec::event_enum;
use crate::money::Cents;

event_enum! {
    aggregate = Roster;
    /// An event of a `roster-{facility}.{department}.{date}` stream.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Event {
        ShiftAssigned = 1,
        ShiftCancelled = 1,
    }
}

/// A shift was put on the roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftAssigned {
    pub shift_id: String,
    pub staff_id: String,
    pub role: StaffRole,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub hourly_cost: Cents,
}

/// A shift was taken off the roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftCancelled {
    pub shift_id: String,
    pub reason: String,
}
