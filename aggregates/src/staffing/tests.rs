//! Given/when/then tests of the Staffing rules.

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::rejection::Rejection;
use crate::roster::StaffRole;
use crate::testing::{given, given_no_history};

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, hour, minute, 0).unwrap()
}

fn record(required: u32, rostered: u32) -> RecordShortfall {
    RecordShortfall {
        facility: "MAIN".into(),
        department: "ED".into(),
        hour: at(9, 0),
        role: StaffRole::Nurse,
        required,
        rostered,
    }
}

fn resolve(required: u32, rostered: u32) -> ResolveShortfall {
    ResolveShortfall {
        facility: "MAIN".into(),
        department: "ED".into(),
        hour: at(9, 0),
        role: StaffRole::Nurse,
        required,
        rostered,
    }
}

fn detected(required: u32, rostered: u32) -> Event {
    let c = record(required, rostered);
    StaffingShortfallDetected {
        facility: c.facility,
        department: c.department,
        hour: c.hour,
        role: c.role,
        required,
        rostered,
    }
    .into()
}

fn resolved(required: u32, rostered: u32) -> Event {
    let c = resolve(required, rostered);
    StaffingShortfallResolved {
        facility: c.facility,
        department: c.department,
        hour: c.hour,
        role: c.role,
        required,
        rostered,
    }
    .into()
}

#[test]
fn a_shortfall_is_detected_then_resolved() {
    given_no_history::<Staffing>()
        .when(record(3, 1))
        .then_expect([detected(3, 1)])
        .then_state_matches(|s| {
            assert_eq!(
                s.open[&shortfall_key(at(9, 0), StaffRole::Nurse)].required,
                3
            );
        });
    given([detected(3, 1)])
        .when(resolve(3, 3))
        .then_expect([resolved(3, 3)])
        .then_state_matches(|s| assert!(s.open.is_empty()));
}

#[test]
fn the_same_detection_again_is_a_no_op_and_new_figures_update_it() {
    given([detected(3, 1)]).when(record(3, 1)).then_expect([]);
    given([detected(3, 1)])
        .when(record(4, 2))
        .then_expect([detected(4, 2)])
        .then_state_matches(|s| {
            let open = &s.open[&shortfall_key(at(9, 0), StaffRole::Nurse)];
            assert_eq!((open.required, open.rostered), (4, 2));
        });
}

#[test]
fn nothing_is_resolved_that_was_not_detected() {
    given_no_history::<Staffing>()
        .when(resolve(1, 1))
        .then_rejects(Rejection::ShortfallNotOpen {
            hour: "2026-12-07T09:00:00Z".into(),
            role: "nurse".into(),
        });
    given([detected(3, 1), resolved(3, 3)])
        .when(resolve(3, 3))
        .then_rejects(Rejection::ShortfallNotOpen {
            hour: "2026-12-07T09:00:00Z".into(),
            role: "nurse".into(),
        });
}

#[test]
fn figures_must_say_what_the_command_claims() {
    given_no_history::<Staffing>()
        .when(record(2, 2))
        .then_rejects(Rejection::NoShortfall {
            required: 2,
            rostered: 2,
        });
    given([detected(3, 1)])
        .when(resolve(3, 2))
        .then_rejects(Rejection::ShortfallPersists {
            required: 3,
            rostered: 2,
        });
}

#[test]
fn a_shortfall_is_per_clock_hour() {
    given_no_history::<Staffing>()
        .when(RecordShortfall {
            hour: at(9, 30),
            ..record(3, 1)
        })
        .then_rejects(Rejection::NotOnTheHour);
}
