//! Staffing commands. Only the staffing process manager sends them (there is no HTTP route).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codec::command_enum;
use crate::roster::StaffRole;

command_enum! {
    /// A command to a `staffing-{facility}.{department}.{date}` stream.
    pub enum Command {
        RecordShortfall,
        ResolveShortfall,
    }
}

/// `RecordShortfall`: at `hour`, `required` staff of `role` are needed and `rostered` work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordShortfall {
    pub facility: String,
    pub department: String,
    pub hour: DateTime<Utc>,
    pub role: StaffRole,
    pub required: u32,
    pub rostered: u32,
}

/// `ResolveShortfall`: the roster (or the demand) changed, and the hour is covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveShortfall {
    pub facility: String,
    pub department: String,
    pub hour: DateTime<Utc>,
    pub role: StaffRole,
    pub required: u32,
    pub rostered: u32,
}
