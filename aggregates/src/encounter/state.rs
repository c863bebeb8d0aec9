//! Encounter state and `evolve`: the visit as its events leave it, rendered by
//! `GET /v1/encounters/{visit}` and snapshotted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::command::EncounterClass;
use super::event::{Event, Procedure, SupplyUsage};
use crate::money::Currency;

/// The pinned status values of an encounter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncounterStatus {
    Scheduled,
    Arrived,
    Completed,
    Discharged,
    Cancelled,
}

impl EncounterStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EncounterStatus::Scheduled => "scheduled",
            EncounterStatus::Arrived => "arrived",
            EncounterStatus::Completed => "completed",
            EncounterStatus::Discharged => "discharged",
            EncounterStatus::Cancelled => "cancelled",
        }
    }
}

/// An encounter. `status` is `None` until it is scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct State {
    pub status: Option<EncounterStatus>,
    /// The MRN of the patient account the visit bills to.
    pub account_id: String,
    pub facility: String,
    pub department: String,
    #[serde(rename = "class")]
    pub encounter_class: Option<EncounterClass>,
    pub scheduled_for: Option<DateTime<Utc>>,
    /// The currency of the procedures, fixed by the first one.
    pub currency: Option<Currency>,
    pub procedures: Vec<Procedure>,
    pub supplies: Vec<SupplyUsage>,
    pub disposition: Option<String>,
    pub cancel_reason: Option<String>,
}

/// The state of an encounter with no history.
pub fn initial_state() -> State {
    State::default()
}

/// Applies one event.
pub fn evolve(mut state: State, event: &Event) -> State {
    match event {
        Event::EncounterScheduled(e) => {
            state.status = Some(EncounterStatus::Scheduled);
            state.account_id.clone_from(&e.account_id);
            state.facility.clone_from(&e.facility);
            state.department.clone_from(&e.department);
            state.encounter_class = Some(e.encounter_class);
            state.scheduled_for = Some(e.scheduled_for);
        }
        Event::PatientArrived(_) => state.status = Some(EncounterStatus::Arrived),
        Event::ProcedureRecorded(e) => {
            state.currency = Some(e.currency);
            state.procedures.push(Procedure {
                line: e.line,
                code: e.code.clone(),
                description: e.description.clone(),
                quantity: e.quantity,
                unit_price: e.unit_price,
                amount: e.amount,
            });
        }
        Event::SuppliesConsumed(e) => state.supplies.push(SupplyUsage {
            item_id: e.item_id.clone(),
            quantity: e.quantity,
        }),
        Event::EncounterCompleted(_) => state.status = Some(EncounterStatus::Completed),
        Event::PatientDischarged(e) => {
            state.status = Some(EncounterStatus::Discharged);
            state.disposition = Some(e.disposition.clone());
        }
        Event::EncounterCancelled(e) => {
            state.status = Some(EncounterStatus::Cancelled);
            state.cancel_reason = Some(e.reason.clone());
        }
    }
    state
}
