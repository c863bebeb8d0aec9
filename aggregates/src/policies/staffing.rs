//! Staffing against demand: a shortfall is recorded when the encounters scheduled in an hour
//! need more staff of a role than the rosters put there, and resolved when they no longer do.
//!
//! The policy folds what it needs from the log into its own state:
//!
//! - **demand**: each `EncounterScheduled` counts once in its facility, department, clock hour
//!   (UTC, `scheduled_for` cut to the hour) and class; its `EncounterCancelled` takes it out
//!   (an arrival or completion leaves it in: the hour was still worked);
//! - **rosters**: each `ShiftAssigned` of `roster-{facility}.{department}.{date}` is one staff
//!   member of its role in every clock hour the shift covers *whole* (08:00-16:00 covers 08
//!   to 15; 08:30-16:00 does not cover 08); `ShiftCancelled` takes it out;
//! - **what is recorded**: the `StaffingShortfallDetected`/`Resolved` events of the
//!   `staffing-…` streams, read back from the log. The aggregate is the truth, so the policy
//!   never assumes its own command landed.
//!
//! The staff an hour needs of a role is `ceil(Σ encounters of class c / per_staff(c))` over the
//! classes the department's rule names for that role ([`StaffingRules`]). After every event
//! that moves demand, a roster or a record, each affected hour and role is compared with what
//! is recorded: short and not recorded with these figures → `RecordShortfall`; covered and
//! recorded open → `ResolveShortfall`. Reading its own events back makes the streams converge
//! even when a shift lands before the detection it answers: the read-back detection is
//! compared with the roster as it is then, and resolved.
//!
//! Command ids are v5 of the trigger's event id and the shortfall's key, so a redelivered event
//! sends the same ids, which the store recognises; a detection with figures already open is a
//! no-op of the aggregate.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::{
    PolicyError, ProcessManager, Reaction, Trigger, TriggerEvent, address, command_id_for,
};
use crate::encounter::{self, EncounterClass};
use crate::roster::{self, RosterId, StaffRole};
use crate::staffing::{self, OpenShortfall, RecordShortfall, ResolveShortfall, shortfall_key};
use crate::{Aggregate, AnyCommand, Encounter, Roster, Staffing};

/// The staffing process manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaffingWatch;

/// Encounters of each class one staff member of a role looks after in an hour. A class not
/// named needs none of that role.
pub type ClassRatios = BTreeMap<EncounterClass, u32>;
/// The ratios of each role.
pub type RoleRatios = BTreeMap<StaffRole, ClassRatios>;

/// The staffing rules: `default` for every department not in `departments` (a department
/// listed replaces the default whole). From `careflow.toml`'s `[staffing]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffingRules {
    pub default: RoleRatios,
    pub departments: BTreeMap<String, RoleRatios>,
}

impl Default for StaffingRules {
    /// A sane set when the config names none: one nurse per 4 inpatients, 8 outpatients or 3
    /// emergencies an hour; one physician per 10, 4 or 5; one technician per 12, 10 or 6.
    fn default() -> Self {
        let ratios = |i, o, e| {
            ClassRatios::from([
                (EncounterClass::Inpatient, i),
                (EncounterClass::Outpatient, o),
                (EncounterClass::Emergency, e),
            ])
        };
        Self {
            default: RoleRatios::from([
                (StaffRole::Nurse, ratios(4, 8, 3)),
                (StaffRole::Physician, ratios(10, 4, 5)),
                (StaffRole::Technician, ratios(12, 10, 6)),
            ]),
            departments: BTreeMap::new(),
        }
    }
}

impl StaffingRules {
    /// Staff of `role` that `demand` (encounters per class in one hour) needs in `department`:
    /// the ceiling of the exact sum of `count / per_staff`, so two half-loads make one.
    pub fn required(&self, department: &str, role: StaffRole, demand: &ClassCounts) -> u32 {
        let rules = self.departments.get(department).unwrap_or(&self.default);
        let Some(ratios) = rules.get(&role) else {
            return 0;
        };
        // Σ count/n as one fraction num/den, kept reduced (u128: no overflow for u32 inputs).
        let (mut num, mut den) = (0u128, 1u128);
        for (class, count) in demand {
            let Some(&per_staff) = ratios.get(class) else {
                continue;
            };
            if per_staff == 0 || *count == 0 {
                continue;
            }
            let n = u128::from(per_staff);
            num = num * n + u128::from(*count) * den;
            den *= n;
            let g = gcd(num, den);
            num /= g;
            den /= g;
        }
        u32::try_from(num.div_ceil(den)).unwrap_or(u32::MAX)
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// Encounters per class in one hour.
pub type ClassCounts = BTreeMap<EncounterClass, u32>;

/// Where and when an encounter is booked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    pub unit: String,
    pub hour: DateTime<Utc>,
    pub class: EncounterClass,
    pub cancelled: bool,
}

/// A shift as demand is compared with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosteredShift {
    pub role: StaffRole,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// One department of one facility.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Unit {
    pub facility: String,
    pub department: String,
    /// Clock hour -> encounters per class.
    pub demand: BTreeMap<DateTime<Utc>, ClassCounts>,
    /// `{roster stream}/{shift_id}` -> the shift.
    pub shifts: BTreeMap<String, RosteredShift>,
    /// [`shortfall_key`] -> the shortfall as last recorded open on its staffing stream.
    pub recorded: BTreeMap<String, OpenShortfall>,
}

impl Unit {
    /// Staff of `role` on the rosters for the whole of `hour`.
    pub fn rostered(&self, hour: DateTime<Utc>, role: StaffRole) -> u32 {
        let end = hour + TimeDelta::hours(1);
        let n = self
            .shifts
            .values()
            .filter(|s| s.role == role && s.start <= hour && s.end >= end)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// The policy's state: bookings by visit, and units by `{facility}.{department}`. It grows
/// with the log (one small entry per encounter and shift); see docs/process-managers.md.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StaffingState {
    pub bookings: BTreeMap<String, Booking>,
    pub units: BTreeMap<String, Unit>,
}

/// What one event changes, or nothing when the state has it already (a redelivery) or the
/// event does not concern staffing.
#[derive(Debug, Clone, PartialEq)]
enum Effect {
    Booked {
        visit: String,
        booking: Booking,
        facility: String,
        department: String,
    },
    Unbooked {
        visit: String,
    },
    ShiftAdded {
        unit: String,
        facility: String,
        department: String,
        key: String,
        shift: RosteredShift,
    },
    ShiftRemoved {
        unit: String,
        key: String,
    },
    Recorded {
        unit: String,
        facility: String,
        department: String,
        open: OpenShortfall,
    },
    Cleared {
        unit: String,
        key: String,
    },
}

/// The clock hour `at` falls in.
pub fn clock_hour(at: DateTime<Utc>) -> DateTime<Utc> {
    let seconds = at.timestamp();
    DateTime::from_timestamp(seconds - seconds.rem_euclid(3_600), 0).unwrap_or(at)
}

/// Whether a facility and department can name a roster (and so a staffing stream): an
/// encounter booked under free text (`Main Campus`) has no roster to fall short of, and is
/// left out rather than dead-lettered.
fn rosterable(facility: &str, department: &str) -> bool {
    !facility.contains('.')
        && !department.contains('.')
        && crate::stream_id::validate_id(&format!("{facility}.{department}.2000-01-01")).is_ok()
}

fn unit_key(facility: &str, department: &str) -> String {
    format!("{facility}.{department}")
}

fn effect(state: &StaffingState, trigger: &Trigger) -> Option<Effect> {
    match &trigger.event {
        TriggerEvent::Encounter(encounter::Event::EncounterScheduled(e)) => {
            let visit = trigger.stream_id.id().to_owned();
            if state.bookings.contains_key(&visit) || !rosterable(&e.facility, &e.department) {
                return None;
            }
            Some(Effect::Booked {
                visit,
                booking: Booking {
                    unit: unit_key(&e.facility, &e.department),
                    hour: clock_hour(e.scheduled_for),
                    class: e.encounter_class,
                    cancelled: false,
                },
                facility: e.facility.clone(),
                department: e.department.clone(),
            })
        }
        TriggerEvent::Encounter(encounter::Event::EncounterCancelled(_)) => {
            let visit = trigger.stream_id.id();
            let booking = state.bookings.get(visit)?;
            (!booking.cancelled).then(|| Effect::Unbooked {
                visit: visit.to_owned(),
            })
        }
        TriggerEvent::Roster(event) => {
            let id = RosterId::parse(trigger.stream_id.id()).ok()?;
            let unit = unit_key(&id.facility, &id.department);
            let shifts = state.units.get(&unit).map(|u| &u.shifts);
            match event {
                roster::Event::ShiftAssigned(e) => {
                    let key = format!("{}/{}", trigger.stream_id, e.shift_id);
                    if shifts.is_some_and(|s| s.contains_key(&key)) {
                        return None;
                    }
                    Some(Effect::ShiftAdded {
                        unit,
                        facility: id.facility,
                        department: id.department,
                        key,
                        shift: RosteredShift {
                            role: e.role,
                            start: e.start,
                            end: e.end,
                        },
                    })
                }
                roster::Event::ShiftCancelled(e) => {
                    let key = format!("{}/{}", trigger.stream_id, e.shift_id);
                    shifts?
                        .contains_key(&key)
                        .then_some(Effect::ShiftRemoved { unit, key })
                }
            }
        }
        TriggerEvent::Staffing(staffing::Event::StaffingShortfallDetected(e)) => {
            Some(Effect::Recorded {
                unit: unit_key(&e.facility, &e.department),
                facility: e.facility.clone(),
                department: e.department.clone(),
                open: OpenShortfall {
                    hour: e.hour,
                    role: e.role,
                    required: e.required,
                    rostered: e.rostered,
                },
            })
        }
        TriggerEvent::Staffing(staffing::Event::StaffingShortfallResolved(e)) => {
            Some(Effect::Cleared {
                unit: unit_key(&e.facility, &e.department),
                key: shortfall_key(e.hour, e.role),
            })
        }
        _ => None,
    }
}

/// The unit an effect touches, and the (hour, role) pairs to look at again after it.
fn touched(state: &StaffingState, effect: &Effect) -> Option<String> {
    Some(match effect {
        Effect::Booked { booking, .. } => booking.unit.clone(),
        Effect::Unbooked { visit } => state.bookings.get(visit)?.unit.clone(),
        Effect::ShiftAdded { unit, .. }
        | Effect::ShiftRemoved { unit, .. }
        | Effect::Recorded { unit, .. }
        | Effect::Cleared { unit, .. } => unit.clone(),
    })
}

/// Applies `effect` to its unit (`bookings` is the state's, for cancellations).
fn apply_to_unit(unit: &mut Unit, bookings: &BTreeMap<String, Booking>, effect: &Effect) {
    match effect {
        Effect::Booked {
            booking,
            facility,
            department,
            ..
        } => {
            unit.facility.clone_from(facility);
            unit.department.clone_from(department);
            *unit
                .demand
                .entry(booking.hour)
                .or_default()
                .entry(booking.class)
                .or_default() += 1;
        }
        Effect::Unbooked { visit } => {
            let Some(booking) = bookings.get(visit) else {
                return;
            };
            if let Some(counts) = unit.demand.get_mut(&booking.hour) {
                if let Some(count) = counts.get_mut(&booking.class) {
                    *count = count.saturating_sub(1);
                }
                counts.retain(|_, n| *n > 0);
                if counts.is_empty() {
                    unit.demand.remove(&booking.hour);
                }
            }
        }
        Effect::ShiftAdded {
            facility,
            department,
            key,
            shift,
            ..
        } => {
            unit.facility.clone_from(facility);
            unit.department.clone_from(department);
            unit.shifts.insert(key.clone(), shift.clone());
        }
        Effect::ShiftRemoved { key, .. } => {
            unit.shifts.remove(key);
        }
        Effect::Recorded {
            facility,
            department,
            open,
            ..
        } => {
            unit.facility.clone_from(facility);
            unit.department.clone_from(department);
            unit.recorded
                .insert(shortfall_key(open.hour, open.role), open.clone());
        }
        Effect::Cleared { key, .. } => {
            unit.recorded.remove(key);
        }
    }
}

/// The (hour, role) pairs whose figures `effect` may have changed: `before` is the unit as
/// the state has it (a removed shift is still there), `after` with the effect applied.
fn affected(
    before: Option<&Unit>,
    after: &Unit,
    bookings: &BTreeMap<String, Booking>,
    effect: &Effect,
) -> Vec<(DateTime<Utc>, StaffRole)> {
    let all_roles = |hour| StaffRole::ALL.map(|role| (hour, role)).to_vec();
    match effect {
        Effect::Booked { booking, .. } => all_roles(booking.hour),
        Effect::Unbooked { visit } => bookings
            .get(visit)
            .map(|b| all_roles(b.hour))
            .unwrap_or_default(),
        Effect::ShiftAdded { shift, .. } => hours_of(after, shift),
        Effect::ShiftRemoved { key, .. } => before
            .and_then(|unit| unit.shifts.get(key))
            .map(|shift| hours_of(after, shift))
            .unwrap_or_default(),
        Effect::Recorded { open, .. } => vec![(open.hour, open.role)],
        Effect::Cleared { .. } => Vec::new(),
    }
}

/// The hours with demand or a record that `shift` covers whole, for its role.
fn hours_of(unit: &Unit, shift: &RosteredShift) -> Vec<(DateTime<Utc>, StaffRole)> {
    unit.demand
        .keys()
        .copied()
        .chain(unit.recorded.values().map(|o| o.hour))
        .filter(|hour| shift.start <= *hour && shift.end >= *hour + TimeDelta::hours(1))
        .map(|hour| (hour, shift.role))
        .collect()
}

impl ProcessManager for StaffingWatch {
    const NAME: &'static str = "staffing";
    const STREAM_KINDS: &'static [&'static str] = &[Encounter::KIND, Roster::KIND, Staffing::KIND];
    type State = StaffingState;
    type Settings = StaffingRules;

    fn react(
        state: &StaffingState,
        trigger: &Trigger,
        rules: &StaffingRules,
    ) -> Result<Reaction, PolicyError> {
        let mut reaction = Reaction::default();
        let Some(effect) = effect(state, trigger) else {
            return Ok(reaction);
        };
        let Some(unit_id) = touched(state, &effect) else {
            return Ok(reaction);
        };
        let mut after = state.units.get(&unit_id).cloned().unwrap_or_default();
        apply_to_unit(&mut after, &state.bookings, &effect);
        let mut pairs = affected(state.units.get(&unit_id), &after, &state.bookings, &effect);
        pairs.sort();
        pairs.dedup();
        for (hour, role) in pairs {
            let empty = ClassCounts::new();
            let demand = after.demand.get(&hour).unwrap_or(&empty);
            let required = rules.required(&after.department, role, demand);
            let rostered = after.rostered(hour, role);
            let key = shortfall_key(hour, role);
            let recorded = after.recorded.get(&key);
            let stream = format!(
                "{}.{}.{}",
                after.facility,
                after.department,
                hour.date_naive().format("%Y-%m-%d")
            );
            let step = format!("staffing/{unit_id}/{key}");
            let command = if required > rostered {
                if recorded.is_some_and(|o| o.required == required && o.rostered == rostered) {
                    continue;
                }
                staffing::Command::from(RecordShortfall {
                    facility: after.facility.clone(),
                    department: after.department.clone(),
                    hour,
                    role,
                    required,
                    rostered,
                })
            } else if recorded.is_some() {
                staffing::Command::from(ResolveShortfall {
                    facility: after.facility.clone(),
                    department: after.department.clone(),
                    hour,
                    role,
                    required,
                    rostered,
                })
            } else {
                continue;
            };
            reaction.commands.push(address(
                &stream,
                command_id_for(trigger.event_id, &step),
                AnyCommand::Staffing(command),
            )?);
        }
        Ok(reaction)
    }

    fn evolve(mut state: StaffingState, trigger: &Trigger) -> StaffingState {
        let Some(effect) = effect(&state, trigger) else {
            return state;
        };
        let Some(unit_id) = touched(&state, &effect) else {
            return state;
        };
        let unit = state.units.entry(unit_id).or_default();
        apply_to_unit(unit, &state.bookings, &effect);
        match effect {
            Effect::Booked { visit, booking, .. } => {
                state.bookings.insert(visit, booking);
            }
            Effect::Unbooked { visit } => {
                if let Some(booking) = state.bookings.get_mut(&visit) {
                    booking.cancelled = true;
                }
            }
            _ => {}
        }
        state
    }
}
