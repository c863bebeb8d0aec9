//! Encounter commands, exactly as DESIGN.md "The command contract" spells them.
//!
//! Unknown fields are refused on every struct; money is a string decimal ([`Cents`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codec::command_enum;
use crate::money::{Cents, Currency};

command_enum! {
    /// A command to an encounter (`POST /v1/encounters/{visit}/commands`).
    pub enum Command {
        ScheduleEncounter,
        CheckIn,
        RecordProcedure,
        RecordSupplyUsage,
        CompleteEncounter,
        Discharge,
        CancelEncounter,
    }
}

/// The encounter class (FHIR's `Encounter.class`, narrowed to what careflow bills).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncounterClass {
    Inpatient,
    Outpatient,
    Emergency,
}

/// `ScheduleEncounter`: books the visit for an account (the MRN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEncounter {
    pub account_id: String,
    pub facility: String,
    pub department: String,
    /// `class` on the wire (a Rust keyword).
    #[serde(rename = "class")]
    pub encounter_class: EncounterClass,
    pub scheduled_for: DateTime<Utc>,
}

/// `CheckIn`: the patient arrived.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckIn {}

/// `RecordProcedure`: a billable procedure performed during the visit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordProcedure {
    pub code: String,
    pub description: String,
    pub quantity: u32,
    pub unit_price: Cents,
    #[serde(default)]
    pub currency: Currency,
}

/// `RecordSupplyUsage`: stock used during the visit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSupplyUsage {
    pub item_id: String,
    pub quantity: u32,
}

/// `CompleteEncounter`: care is finished; charges and consumption follow.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteEncounter {}

/// `Discharge`: the patient leaves, with a disposition (home, transfer, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discharge {
    pub disposition: String,
}

/// `CancelEncounter`: the visit will not happen or not go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelEncounter {
    pub reason: String,
}
