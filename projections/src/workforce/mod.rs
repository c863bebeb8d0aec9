//! The workforce view: demand (encounters per facility, department and clock hour), labor
//! (rostered hours and cost per department and day, against that day's encounters) and the
//! open staffing shortfalls.
//!
//! Mapping from the log:
//!
//! - `EncounterScheduled` (`facility`, `department`, `class`, `scheduled_for`) counts one
//!   *scheduled* encounter of its class in the clock hour (UTC) of `scheduled_for`, and one
//!   encounter of the department's day (that hour's UTC date). `PatientArrived` counts it
//!   *arrived* in the same hour (the hour it was booked for, not the hour it arrived: demand is
//!   measured against the roster of that hour). `EncounterCancelled` takes it out of scheduled
//!   (and arrived, and the day). Completion and discharge change nothing here.
//! - `ShiftAssigned` on `roster-{facility}.{department}.{date}` adds its minutes and its
//!   cost (`hourly_cost × minutes`, kept in cent-minutes so nothing is rounded until read) to
//!   that department's `date`; `ShiftCancelled` takes them out again.
//! - `StaffingShortfallDetected` opens (or updates) a shortfall row; `StaffingShortfallResolved`
//!   deletes it.
//!
//! Counts and amounts only, like every view: no patient identifier is kept beyond the visit id
//! as a lookup key.

use std::collections::BTreeMap;

use careflow_aggregates::encounter::{EncounterClass, Event as EncounterEvent};
use careflow_aggregates::policies::staffing::clock_hour;
use careflow_aggregates::roster::{Event as RosterEvent, RosterId, StaffRole};
use careflow_aggregates::staffing::{Event as StaffingEvent, shortfall_key};
use careflow_aggregates::{Cents, RecordedEvent};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ProjectionError;
use crate::projection::{Decoded, Projection, decode};
use crate::store::{ViewStore, load, save, take};

/// Key: `{facility}.{department} {hour as RFC 3339}`. One [`DemandHour`] row.
pub const DEMAND: &str = "workforce_demand";
/// Key: `{YYYY-MM-DD} {facility}.{department}` (fixed-width date first: a date range is a key
/// range). One [`LaborDay`] row.
pub const LABOR: &str = "workforce_labor";
/// Key: `{facility}.{department} {hour} {role}`. One [`ShortfallRow`] per open shortfall.
pub const SHORTFALLS: &str = "workforce_shortfalls";
/// Key: the encounter's stream id. Lookup: where and when it is booked.
pub const BOOKINGS: &str = "workforce_bookings";
/// Key: `{roster stream id}/{shift_id}`. Lookup: a shift's day, minutes and cost.
pub const SHIFTS: &str = "workforce_shifts";

/// The workforce projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Workforce;

impl Projection for Workforce {
    fn name(&self) -> &'static str {
        "workforce"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[DEMAND, LABOR, SHORTFALLS, BOOKINGS, SHIFTS]
    }

    fn apply(
        &self,
        store: &mut dyn ViewStore,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        match decode(event)? {
            Decoded::Encounter(e) => apply_encounter(store, event, &e),
            Decoded::Roster(e) => apply_roster(store, event, &e),
            Decoded::Staffing(e) => apply_staffing(store, &e),
            Decoded::PatientAccount(_)
            | Decoded::InventoryItem(_)
            | Decoded::Purchase(_)
            | Decoded::Claim(_)
            | Decoded::Internal => Ok(()),
        }
    }
}

/// Encounters of one department in one clock hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemandHour {
    pub facility: String,
    pub department: String,
    pub hour: DateTime<Utc>,
    /// Class -> encounters booked for the hour and not cancelled.
    pub scheduled: BTreeMap<EncounterClass, u64>,
    /// Class -> of those, the patients who arrived.
    pub arrived: BTreeMap<EncounterClass, u64>,
}

/// One department's day: what its rosters cost and how many encounters it had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaborDay {
    pub date: NaiveDate,
    pub facility: String,
    pub department: String,
    pub rostered_minutes: i64,
    /// Σ hourly cost in cents × minutes: the exact cost is this / 60 cents.
    pub cost_cent_minutes: i128,
    /// Encounters booked for the day and not cancelled.
    pub encounters: u64,
}

impl LaborDay {
    fn new(date: NaiveDate, facility: &str, department: &str) -> Self {
        Self {
            date,
            facility: facility.to_owned(),
            department: department.to_owned(),
            rostered_minutes: 0,
            cost_cent_minutes: 0,
            encounters: 0,
        }
    }
}

/// The exact cost of `cent_minutes`, rounded half up to the cent once.
pub fn labor_cost(cent_minutes: i128) -> Cents {
    Cents(i64::try_from(div_half_up(cent_minutes, 60)).unwrap_or(i64::MAX))
}

/// The cost per encounter, `cent_minutes / 60 / encounters` rounded half up to the cent once
/// (not the rounded cost divided again); `None` without encounters.
pub fn cost_per_encounter(cent_minutes: i128, encounters: u64) -> Option<Cents> {
    if encounters == 0 {
        return None;
    }
    let divisor = 60 * i128::from(encounters);
    Some(Cents(
        i64::try_from(div_half_up(cent_minutes, divisor)).unwrap_or(i64::MAX),
    ))
}

/// Hours from minutes, exact to the hundredth when it can be, as a decimal text (`7.50`):
/// rounded half up otherwise (20 minutes is `0.33`).
pub fn hours_text(minutes: i64) -> String {
    let hundredths = div_half_up(i128::from(minutes) * 100, 60);
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

/// `n / d` rounded half up, for non-negative `n` and positive `d`.
fn div_half_up(n: i128, d: i128) -> i128 {
    (2 * n + d) / (2 * d)
}

/// An open shortfall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShortfallRow {
    pub facility: String,
    pub department: String,
    pub hour: DateTime<Utc>,
    pub role: StaffRole,
    pub required: u32,
    pub rostered: u32,
}

/// Where and when an encounter is booked (a lookup for its later events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    pub facility: String,
    pub department: String,
    pub hour: DateTime<Utc>,
    pub class: EncounterClass,
    pub arrived: bool,
    pub cancelled: bool,
}

/// A shift's share of its day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftShare {
    pub date: NaiveDate,
    pub facility: String,
    pub department: String,
    pub minutes: i64,
    pub cent_minutes: i128,
}

fn demand_key(facility: &str, department: &str, hour: DateTime<Utc>) -> String {
    format!(
        "{facility}.{department} {}",
        hour.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

fn labor_key(date: NaiveDate, facility: &str, department: &str) -> String {
    format!("{} {facility}.{department}", date.format("%Y-%m-%d"))
}

fn overflow(table: &'static str, event: &RecordedEvent) -> ProjectionError {
    ProjectionError::Overflow {
        table,
        position: event.position,
    }
}

fn update_demand(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    booking: &Booking,
    change: impl FnOnce(&mut DemandHour) -> Option<()>,
) -> Result<(), ProjectionError> {
    let key = demand_key(&booking.facility, &booking.department, booking.hour);
    let mut row = take::<DemandHour>(store, DEMAND, &key)?.unwrap_or_else(|| DemandHour {
        facility: booking.facility.clone(),
        department: booking.department.clone(),
        hour: booking.hour,
        scheduled: BTreeMap::new(),
        arrived: BTreeMap::new(),
    });
    change(&mut row).ok_or_else(|| overflow(DEMAND, event))?;
    row.scheduled.retain(|_, n| *n > 0);
    row.arrived.retain(|_, n| *n > 0);
    if row.scheduled.is_empty() && row.arrived.is_empty() {
        return store.delete(DEMAND, &key);
    }
    save(store, DEMAND, &key, &row)
}

fn update_labor(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    (date, facility, department): (NaiveDate, &str, &str),
    change: impl FnOnce(&mut LaborDay) -> Option<()>,
) -> Result<(), ProjectionError> {
    let key = labor_key(date, facility, department);
    let mut row = take::<LaborDay>(store, LABOR, &key)?
        .unwrap_or_else(|| LaborDay::new(date, facility, department));
    change(&mut row).ok_or_else(|| overflow(LABOR, event))?;
    save(store, LABOR, &key, &row)
}

fn apply_encounter(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    e: &EncounterEvent,
) -> Result<(), ProjectionError> {
    let visit = event.stream_id.as_str();
    match e {
        EncounterEvent::EncounterScheduled(s) => {
            let booking = Booking {
                facility: s.facility.clone(),
                department: s.department.clone(),
                hour: clock_hour(s.scheduled_for),
                class: s.encounter_class,
                arrived: false,
                cancelled: false,
            };
            update_demand(store, event, &booking, |row| {
                let n = row.scheduled.entry(booking.class).or_default();
                *n = n.checked_add(1)?;
                Some(())
            })?;
            let place = (
                booking.hour.date_naive(),
                booking.facility.as_str(),
                booking.department.as_str(),
            );
            update_labor(store, event, place, |day| {
                day.encounters = day.encounters.checked_add(1)?;
                Some(())
            })?;
            save(store, BOOKINGS, visit, &booking)
        }
        EncounterEvent::PatientArrived(_) => {
            let Some(mut booking) = load::<Booking>(store, BOOKINGS, visit)? else {
                return Err(missing(event));
            };
            if booking.arrived || booking.cancelled {
                return Ok(());
            }
            update_demand(store, event, &booking, |row| {
                let n = row.arrived.entry(booking.class).or_default();
                *n = n.checked_add(1)?;
                Some(())
            })?;
            booking.arrived = true;
            save(store, BOOKINGS, visit, &booking)
        }
        EncounterEvent::EncounterCancelled(_) => {
            let Some(mut booking) = load::<Booking>(store, BOOKINGS, visit)? else {
                return Err(missing(event));
            };
            if booking.cancelled {
                return Ok(());
            }
            update_demand(store, event, &booking, |row| {
                let n = row.scheduled.entry(booking.class).or_default();
                *n = n.checked_sub(1)?;
                if booking.arrived {
                    let n = row.arrived.entry(booking.class).or_default();
                    *n = n.checked_sub(1)?;
                }
                Some(())
            })?;
            let place = (
                booking.hour.date_naive(),
                booking.facility.as_str(),
                booking.department.as_str(),
            );
            update_labor(store, event, place, |day| {
                day.encounters = day.encounters.checked_sub(1)?;
                Some(())
            })?;
            booking.cancelled = true;
            save(store, BOOKINGS, visit, &booking)
        }
        EncounterEvent::ProcedureRecorded(_)
        | EncounterEvent::SuppliesConsumed(_)
        | EncounterEvent::EncounterCompleted(_)
        | EncounterEvent::PatientDischarged(_) => Ok(()),
    }
}

fn missing(event: &RecordedEvent) -> ProjectionError {
    ProjectionError::MissingContext {
        stream_id: event.stream_id.to_string(),
        position: event.position,
        what: "booking",
    }
}

fn apply_roster(
    store: &mut dyn ViewStore,
    event: &RecordedEvent,
    e: &RosterEvent,
) -> Result<(), ProjectionError> {
    // The HTTP path refuses a roster id that does not parse; one that slipped in otherwise is
    // not a department's day and counts nowhere.
    let Ok(id) = RosterId::parse(event.stream_id.id()) else {
        return Ok(());
    };
    match e {
        RosterEvent::ShiftAssigned(s) => {
            let minutes = (s.end - s.start).num_minutes();
            let share = ShiftShare {
                date: id.date,
                facility: id.facility.clone(),
                department: id.department.clone(),
                minutes,
                cent_minutes: i128::from(s.hourly_cost.0) * i128::from(minutes),
            };
            update_labor(
                store,
                event,
                (id.date, &id.facility, &id.department),
                |day| {
                    day.rostered_minutes = day.rostered_minutes.checked_add(share.minutes)?;
                    day.cost_cent_minutes =
                        day.cost_cent_minutes.checked_add(share.cent_minutes)?;
                    Some(())
                },
            )?;
            save(
                store,
                SHIFTS,
                &format!("{}/{}", event.stream_id, s.shift_id),
                &share,
            )
        }
        RosterEvent::ShiftCancelled(c) => {
            let key = format!("{}/{}", event.stream_id, c.shift_id);
            let Some(share) = take::<ShiftShare>(store, SHIFTS, &key)? else {
                return Err(ProjectionError::MissingContext {
                    stream_id: event.stream_id.to_string(),
                    position: event.position,
                    what: "shift",
                });
            };
            update_labor(
                store,
                event,
                (id.date, &id.facility, &id.department),
                |day| {
                    day.rostered_minutes = day.rostered_minutes.checked_sub(share.minutes)?;
                    day.cost_cent_minutes =
                        day.cost_cent_minutes.checked_sub(share.cent_minutes)?;
                    Some(())
                },
            )
        }
    }
}

fn apply_staffing(store: &mut dyn ViewStore, e: &StaffingEvent) -> Result<(), ProjectionError> {
    match e {
        StaffingEvent::StaffingShortfallDetected(d) => {
            let key = format!(
                "{}.{} {}",
                d.facility,
                d.department,
                shortfall_key(d.hour, d.role)
            );
            save(
                store,
                SHORTFALLS,
                &key,
                &ShortfallRow {
                    facility: d.facility.clone(),
                    department: d.department.clone(),
                    hour: d.hour,
                    role: d.role,
                    required: d.required,
                    rostered: d.rostered,
                },
            )
        }
        StaffingEvent::StaffingShortfallResolved(r) => store.delete(
            SHORTFALLS,
            &format!(
                "{}.{} {}",
                r.facility,
                r.department,
                shortfall_key(r.hour, r.role)
            ),
        ),
    }
}

#[cfg(test)]
mod tests;
