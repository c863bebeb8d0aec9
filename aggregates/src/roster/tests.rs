//! Given/when/then tests of the Roster rules.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use super::*;
use crate::aggregate::Aggregate;
use crate::money::Cents;
use crate::rejection::Rejection;
use crate::testing::{assert_codec_round_trip, assert_contract_body, given, given_no_history};

fn at(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, hour, 0, 0).unwrap()
}

fn assign(shift_id: &str, staff_id: &str, from: u32, to: u32) -> AssignShift {
    AssignShift {
        shift_id: shift_id.into(),
        staff_id: staff_id.into(),
        role: StaffRole::Nurse,
        start: at(from),
        end: at(to),
        hourly_cost: Cents(4_500),
    }
}

fn assigned(shift_id: &str, staff_id: &str, from: u32, to: u32) -> Event {
    let c = assign(shift_id, staff_id, from, to);
    ShiftAssigned {
        shift_id: c.shift_id,
        staff_id: c.staff_id,
        role: c.role,
        start: c.start,
        end: c.end,
        hourly_cost: c.hourly_cost,
    }
    .into()
}

#[test]
fn a_shift_is_assigned_and_cancelled() {
    given_no_history::<Roster>()
        .when(assign("S1", "N-1", 7, 15))
        .then_expect([assigned("S1", "N-1", 7, 15)])
        .then_state_matches(|s| assert_eq!(s.shifts["S1"].end, at(15)));
    given([assigned("S1", "N-1", 7, 15)])
        .when(CancelShift {
            shift_id: "S1".into(),
            reason: "sick".into(),
        })
        .then_state_matches(|s| {
            assert!(s.shifts.is_empty());
            assert!(s.cancelled.contains("S1"));
        });
}

#[test]
fn a_shift_that_ends_before_it_starts_or_lasts_over_a_day_is_refused() {
    given_no_history::<Roster>()
        .when(assign("S1", "N-1", 15, 7))
        .then_rejects(Rejection::ShiftEndsBeforeStart);
    given_no_history::<Roster>()
        .when(assign("S1", "N-1", 7, 7))
        .then_rejects(Rejection::ShiftEndsBeforeStart);
    let mut long = assign("S1", "N-1", 7, 8);
    long.end = at(8) + chrono::Duration::days(1);
    given_no_history::<Roster>()
        .when(long)
        .then_rejects(Rejection::ShiftTooLong { max_hours: 24 });
}

#[test]
fn nobody_works_two_overlapping_shifts_and_ids_are_never_reused() {
    given([assigned("S1", "N-1", 7, 15)])
        .when(assign("S2", "N-1", 14, 20))
        .then_rejects(Rejection::StaffDoubleBooked {
            staff_id: "N-1".into(),
            shift_id: "S1".into(),
        });
    // Back to back is fine, and so is someone else at the same time.
    given([assigned("S1", "N-1", 7, 15)])
        .when(assign("S2", "N-1", 15, 20))
        .then_expect([assigned("S2", "N-1", 15, 20)]);
    given([assigned("S1", "N-1", 7, 15)])
        .when(assign("S2", "N-2", 7, 15))
        .then_expect([assigned("S2", "N-2", 7, 15)]);
    given([assigned("S1", "N-1", 7, 15)])
        .when(assign("S1", "N-2", 16, 20))
        .then_rejects(Rejection::DuplicateShift {
            shift_id: "S1".into(),
        });
    let cancelled: Event = ShiftCancelled {
        shift_id: "S1".into(),
        reason: "sick".into(),
    }
    .into();
    given([assigned("S1", "N-1", 7, 15), cancelled.clone()])
        .when(assign("S1", "N-1", 7, 15))
        .then_rejects(Rejection::DuplicateShift {
            shift_id: "S1".into(),
        });
    given([assigned("S1", "N-1", 7, 15), cancelled])
        .when(CancelShift {
            shift_id: "S1".into(),
            reason: "again".into(),
        })
        .then_rejects(Rejection::UnknownShift {
            shift_id: "S1".into(),
        });
}

#[test]
fn the_pinned_body_parses_and_events_round_trip() {
    assert_contract_body::<Roster>(
        json!({
            "type": "AssignShift", "shift_id": "S1", "staff_id": "N-1", "role": "nurse",
            "start": "2026-12-07T07:00:00Z", "end": "2026-12-07T15:00:00Z", "hourly_cost": "45.00"
        }),
        Command::AssignShift(assign("S1", "N-1", 7, 15)),
    );
    assert_codec_round_trip::<Roster>(&assigned("S1", "N-1", 7, 15));
    assert!(Roster::check_id("MAIN.ED.2026-12-07").is_ok());
    assert!(Roster::check_id("MAIN-ED-2026-12-07").is_err());
}
