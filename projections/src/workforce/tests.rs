//! Given a log, then the workforce view: demand per hour, labor per day, open shortfalls.

use careflow_aggregates::encounter::{
    EncounterCancelled, EncounterClass, EncounterScheduled, Event as EncounterEvent, PatientArrived,
};
use careflow_aggregates::roster::{Event as RosterEvent, ShiftAssigned, ShiftCancelled, StaffRole};
use careflow_aggregates::staffing::{
    Event as StaffingEvent, StaffingShortfallDetected, StaffingShortfallResolved,
};
use chrono::TimeZone;

use super::*;
use crate::store::{MemoryViewStore, load_range};
use crate::testing::{EventLog, replay};

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, hour, minute, 0).unwrap()
}

fn scheduled(class: EncounterClass, hour: u32, minute: u32) -> EncounterEvent {
    EncounterScheduled {
        account_id: "MRN-1".into(),
        facility: "MAIN".into(),
        department: "ED".into(),
        encounter_class: class,
        scheduled_for: at(hour, minute),
    }
    .into()
}

fn shift(id: &str, from: (u32, u32), to: (u32, u32), cents: i64) -> RosterEvent {
    ShiftAssigned {
        shift_id: id.into(),
        staff_id: format!("N-{id}"),
        role: StaffRole::Nurse,
        start: at(from.0, from.1),
        end: at(to.0, to.1),
        hourly_cost: Cents(cents),
    }
    .into()
}

fn shortfall(required: u32, rostered: u32) -> StaffingShortfallDetected {
    StaffingShortfallDetected {
        facility: "MAIN".into(),
        department: "ED".into(),
        hour: at(9, 0),
        role: StaffRole::Nurse,
        required,
        rostered,
    }
}

/// Replays `log` twice (the view is a pure fold: both replays agree) and returns the view.
#[track_caller]
fn view(log: &EventLog) -> MemoryViewStore {
    let store = replay(&Workforce, log.events());
    assert_eq!(
        replay(&Workforce, log.events()),
        store,
        "second replay differs"
    );
    store
}

#[test]
fn demand_counts_scheduled_and_arrived_encounters_per_hour_and_class() {
    let log = EventLog::new()
        .push(
            "V1",
            "2026-12-06T10:00:00Z",
            scheduled(EncounterClass::Emergency, 9, 5),
        )
        .push(
            "V2",
            "2026-12-06T10:00:00Z",
            scheduled(EncounterClass::Emergency, 9, 55),
        )
        .push(
            "V3",
            "2026-12-06T10:00:00Z",
            scheduled(EncounterClass::Outpatient, 9, 30),
        )
        .push(
            "V4",
            "2026-12-06T10:00:00Z",
            scheduled(EncounterClass::Emergency, 10, 0),
        )
        .push(
            "V1",
            "2026-12-07T09:06:00Z",
            EncounterEvent::from(PatientArrived {}),
        )
        // Arriving twice or after a cancellation counts once / not at all.
        .push(
            "V4",
            "2026-12-07T08:00:00Z",
            EncounterEvent::from(EncounterCancelled {
                reason: "no show".into(),
            }),
        )
        .push(
            "V4",
            "2026-12-07T10:00:00Z",
            EncounterEvent::from(PatientArrived {}),
        );
    let store = view(&log);
    let nine = load::<DemandHour>(&store, DEMAND, "MAIN.ED 2026-12-07T09:00:00Z")
        .unwrap()
        .unwrap();
    assert_eq!(
        nine.scheduled,
        BTreeMap::from([
            (EncounterClass::Outpatient, 1),
            (EncounterClass::Emergency, 2)
        ])
    );
    assert_eq!(
        nine.arrived,
        BTreeMap::from([(EncounterClass::Emergency, 1)])
    );
    // The cancelled 10:00 encounter leaves no row behind.
    assert_eq!(
        load::<DemandHour>(&store, DEMAND, "MAIN.ED 2026-12-07T10:00:00Z").unwrap(),
        None
    );
    let day = load::<LaborDay>(&store, LABOR, "2026-12-07 MAIN.ED")
        .unwrap()
        .unwrap();
    assert_eq!(day.encounters, 3);
}

#[test]
fn labor_adds_shifts_exactly_and_a_cancellation_takes_its_share_back() {
    // 08:00-16:00 at 45.00 (360.00), 09:00-13:20 at 38.33 (4h20 = 166.096666…), cancelled
    // 12:00-14:00 at 50.00.
    let log = EventLog::new()
        .push(
            "MAIN.ED.2026-12-07",
            "2026-12-06T10:00:00Z",
            shift("S1", (8, 0), (16, 0), 4_500),
        )
        .push(
            "MAIN.ED.2026-12-07",
            "2026-12-06T10:00:00Z",
            shift("S2", (9, 0), (13, 20), 3_833),
        )
        .push(
            "MAIN.ED.2026-12-07",
            "2026-12-06T10:00:00Z",
            shift("S3", (12, 0), (14, 0), 5_000),
        )
        .push(
            "MAIN.ED.2026-12-07",
            "2026-12-06T11:00:00Z",
            RosterEvent::from(ShiftCancelled {
                shift_id: "S3".into(),
                reason: "sick".into(),
            }),
        )
        .push(
            "V1",
            "2026-12-06T10:00:00Z",
            scheduled(EncounterClass::Emergency, 9, 5),
        )
        .push(
            "V2",
            "2026-12-06T10:00:00Z",
            scheduled(EncounterClass::Emergency, 11, 5),
        )
        .push(
            "V3",
            "2026-12-06T10:00:00Z",
            scheduled(EncounterClass::Inpatient, 23, 59),
        );
    let store = view(&log);
    let days: Vec<(String, LaborDay)> = load_range(&store, LABOR, "2026-12-07", None).unwrap();
    assert_eq!(days.len(), 1);
    let day = &days[0].1;
    assert_eq!(day.rostered_minutes, 740);
    assert_eq!(hours_text(day.rostered_minutes), "12.33");
    assert_eq!(day.cost_cent_minutes, 4_500 * 480 + 3_833 * 260);
    assert_eq!(labor_cost(day.cost_cent_minutes).to_string(), "526.10");
    assert_eq!(day.encounters, 3);
    // 526.0966… / 3 = 175.3655… → 175.37 (rounded once, from the exact cost).
    assert_eq!(
        cost_per_encounter(day.cost_cent_minutes, day.encounters).map(|c| c.to_string()),
        Some("175.37".to_owned())
    );
    assert_eq!(cost_per_encounter(day.cost_cent_minutes, 0), None);
}

#[test]
fn a_shortfall_row_is_open_from_detection_to_resolution() {
    let detected = EventLog::new()
        .push(
            "MAIN.ED.2026-12-07",
            "2026-12-07T06:00:00Z",
            StaffingEvent::from(shortfall(3, 1)),
        )
        .push(
            "MAIN.ED.2026-12-07",
            "2026-12-07T06:01:00Z",
            StaffingEvent::from(shortfall(2, 1)),
        );
    let store = view(&detected);
    let rows = store.table(SHORTFALLS);
    assert_eq!(rows.len(), 1);
    let row = load::<ShortfallRow>(&store, SHORTFALLS, "MAIN.ED 2026-12-07T09:00:00Z nurse")
        .unwrap()
        .unwrap();
    assert_eq!((row.required, row.rostered), (2, 1));
    let resolved = detected.push(
        "MAIN.ED.2026-12-07",
        "2026-12-07T07:00:00Z",
        StaffingEvent::from(StaffingShortfallResolved {
            facility: "MAIN".into(),
            department: "ED".into(),
            hour: at(9, 0),
            role: StaffRole::Nurse,
            required: 2,
            rostered: 2,
        }),
    );
    assert!(view(&resolved).table(SHORTFALLS).is_empty());
}
