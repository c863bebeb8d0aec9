//! Encounter events. Each variant's number in [`Event`] is its current schema version.
//!
//! No personal data: the patient is referred to by `account_id` (the MRN) only.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Encounter;
use super::command::EncounterClass;
use crate::codec::event_enum;
use crate::money::{Cents, Currency};

event_enum! {
    aggregate = Encounter;
    /// An event of an `encounter-{visit}` stream.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Event {
        EncounterScheduled = 1,
        PatientArrived = 1,
        ProcedureRecorded = 1,
        SuppliesConsumed = 1,
        EncounterCompleted = 1,
        PatientDischarged = 1,
        EncounterCancelled = 1,
    }
}

/// The visit was booked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncounterScheduled {
    pub account_id: String,
    pub facility: String,
    pub department: String,
    #[serde(rename = "class")]
    pub encounter_class: EncounterClass,
    pub scheduled_for: DateTime<Utc>,
}

/// The patient checked in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PatientArrived {}

/// A procedure of the visit. `line` numbers procedures 1, 2, 3... within the encounter, so the
/// process manager can derive a stable charge id (`{visit}-{line}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Procedure {
    pub line: u32,
    pub code: String,
    pub description: String,
    pub quantity: u32,
    pub unit_price: Cents,
    /// `quantity × unit_price`.
    pub amount: Cents,
}

/// A procedure was performed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcedureRecorded {
    pub line: u32,
    pub code: String,
    pub description: String,
    pub quantity: u32,
    pub unit_price: Cents,
    pub amount: Cents,
    pub currency: Currency,
}

/// A quantity of one stock item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupplyUsage {
    pub item_id: String,
    pub quantity: u32,
}

/// Supplies were used during the visit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppliesConsumed {
    pub item_id: String,
    pub quantity: u32,
}

/// Care is finished. Carries everything the charge and consumption flows need, so their
/// process-manager policy is a function of this event alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncounterCompleted {
    pub account_id: String,
    pub facility: String,
    /// `None` when no procedure was recorded.
    pub currency: Option<Currency>,
    pub procedures: Vec<Procedure>,
    pub supplies: Vec<SupplyUsage>,
}

/// The patient left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientDischarged {
    pub disposition: String,
}

/// The visit was cancelled (before completion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncounterCancelled {
    pub reason: String,
}
