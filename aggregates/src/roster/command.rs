//! Roster commands, exactly as DESIGN.md "Workforce" spells them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codec::command_enum;
use crate::money::Cents;

command_enum! {
    /// A command to a roster (`POST /v1/rosters/{facility}.{department}.{date}/commands`).
    pub enum Command {
        AssignShift,
        CancelShift,
    }
}

/// The staffing roles careflow plans for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    Nurse,
    Physician,
    Technician,
}

impl StaffRole {
    pub const ALL: [StaffRole; 3] = [
        StaffRole::Nurse,
        StaffRole::Physician,
        StaffRole::Technician,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StaffRole::Nurse => "nurse",
            StaffRole::Physician => "physician",
            StaffRole::Technician => "technician",
        }
    }
}

/// `AssignShift`: a staff member works `start`..`end` in a role, at an hourly cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignShift {
    pub shift_id: String,
    pub staff_id: String,
    pub role: StaffRole,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub hourly_cost: Cents,
}

/// `CancelShift`: the shift will not be worked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelShift {
    pub shift_id: String,
    pub reason: String,
}
