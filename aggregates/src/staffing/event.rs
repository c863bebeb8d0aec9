//! Staffing events (names and fields pinned by DESIGN.md "Workforce"). Each variant's number
//! in [`Event`] is its current schema version.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Staffing;
use crate::codec::event_enum;
use crate::roster::StaffRole;

event_enum! {
    aggregate = Staffing;
    /// An event of a `staffing-{facility}.{department}.{date}` stream.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Event {
        StaffingShortfallDetected = 1,
        StaffingShortfallResolved = 1,
    }
}

/// The encounters scheduled at `hour` need `required` staff of `role`; `rostered` work then.
/// Recorded again with new figures while open, when demand or the roster moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffingShortfallDetected {
    pub facility: String,
    pub department: String,
    pub hour: DateTime<Utc>,
    pub role: StaffRole,
    pub required: u32,
    pub rostered: u32,
}

/// The shortfall at `hour` for `role` is closed: `rostered` now cover the `required`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffingShortfallResolved {
    pub facility: String,
    pub department: String,
    pub hour: DateTime<Utc>,
    pub role: StaffRole,
    pub required: u32,
    pub rostered: u32,
}
