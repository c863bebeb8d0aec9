//! Given/when/then tests of the staffing policy: demand against rosters, detections and
//! resolutions, their ids, and the rule arithmetic.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use super::staffing::{ClassCounts, StaffingRules, StaffingState, StaffingWatch, clock_hour};
use super::*;
use crate::encounter::{EncounterCancelled, EncounterClass, EncounterScheduled};
use crate::money::Cents;
use crate::roster::{ShiftAssigned, ShiftCancelled, StaffRole};
use crate::staffing::{
    Command as StaffingCommand, RecordShortfall, ResolveShortfall, StaffingShortfallDetected,
    StaffingShortfallResolved,
};

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, hour, minute, 0).unwrap()
}

fn trigger(n: u128, stream: &str, event: TriggerEvent) -> Trigger {
    Trigger {
        event_id: Uuid::from_u128(n),
        position: u64::try_from(n).unwrap(),
        stream_id: StreamId::parse(stream).unwrap(),
        recorded_at: at(6, 0),
        event,
    }
}

fn scheduled(n: u128, visit: &str, class: EncounterClass, hour: u32) -> Trigger {
    trigger(
        n,
        &format!("encounter-{visit}"),
        TriggerEvent::Encounter(
            EncounterScheduled {
                account_id: "MRN-1".into(),
                facility: "MAIN".into(),
                department: "ED".into(),
                encounter_class: class,
                scheduled_for: at(hour, 20),
            }
            .into(),
        ),
    )
}

fn cancelled(n: u128, visit: &str) -> Trigger {
    trigger(
        n,
        &format!("encounter-{visit}"),
        TriggerEvent::Encounter(
            EncounterCancelled {
                reason: "no show".into(),
            }
            .into(),
        ),
    )
}

fn shift(n: u128, shift_id: &str, from: u32, to: u32) -> Trigger {
    trigger(
        n,
        "roster-MAIN.ED.2026-12-07",
        TriggerEvent::Roster(
            ShiftAssigned {
                shift_id: shift_id.into(),
                staff_id: format!("N-{shift_id}"),
                role: StaffRole::Nurse,
                start: at(from, 0),
                end: at(to, 0),
                hourly_cost: Cents(4_500),
            }
            .into(),
        ),
    )
}

fn shift_cancelled(n: u128, shift_id: &str) -> Trigger {
    trigger(
        n,
        "roster-MAIN.ED.2026-12-07",
        TriggerEvent::Roster(
            ShiftCancelled {
                shift_id: shift_id.into(),
                reason: "sick".into(),
            }
            .into(),
        ),
    )
}

/// ED: one nurse per 2 emergencies, nothing else (so only nurses are ever short).
fn rules() -> StaffingRules {
    StaffingRules {
        default: BTreeMap::new(),
        departments: BTreeMap::from([(
            "ED".to_owned(),
            BTreeMap::from([(
                StaffRole::Nurse,
                BTreeMap::from([(EncounterClass::Emergency, 2)]),
            )]),
        )]),
    }
}

/// One command as (`RecordShortfall` or `ResolveShortfall`, hour, required, rostered).
type Sent = (&'static str, u32, u32, u32);

/// What the policy sent, as (`RecordShortfall` or `ResolveShortfall`, hour, required,
/// rostered), with the target stream checked.
fn sent(reaction: &Reaction) -> Vec<Sent> {
    reaction
        .commands
        .iter()
        .map(|c| {
            assert_eq!(c.target().as_str(), "staffing-MAIN.ED.2026-12-07");
            match c.command() {
                AnyCommand::Staffing(StaffingCommand::RecordShortfall(RecordShortfall {
                    hour,
                    role: StaffRole::Nurse,
                    required,
                    rostered,
                    ..
                })) => ("RecordShortfall", hour_of(*hour), *required, *rostered),
                AnyCommand::Staffing(StaffingCommand::ResolveShortfall(ResolveShortfall {
                    hour,
                    role: StaffRole::Nurse,
                    required,
                    rostered,
                    ..
                })) => ("ResolveShortfall", hour_of(*hour), *required, *rostered),
                other => panic!("unexpected {other:?}"),
            }
        })
        .collect()
}

fn hour_of(hour: DateTime<Utc>) -> u32 {
    chrono::Timelike::hour(&hour)
}

/// The staffing aggregate's events for what the policy sent (as the log would hold them once
/// the commands land), to be read back.
fn landed(n: &mut u128, reaction: &Reaction) -> Vec<Trigger> {
    reaction
        .commands
        .iter()
        .map(|c| {
            *n += 1;
            let event: crate::staffing::Event = match c.command() {
                AnyCommand::Staffing(StaffingCommand::RecordShortfall(r)) => {
                    StaffingShortfallDetected {
                        facility: r.facility.clone(),
                        department: r.department.clone(),
                        hour: r.hour,
                        role: r.role,
                        required: r.required,
                        rostered: r.rostered,
                    }
                    .into()
                }
                AnyCommand::Staffing(StaffingCommand::ResolveShortfall(r)) => {
                    StaffingShortfallResolved {
                        facility: r.facility.clone(),
                        department: r.department.clone(),
                        hour: r.hour,
                        role: r.role,
                        required: r.required,
                        rostered: r.rostered,
                    }
                    .into()
                }
                other => panic!("unexpected {other:?}"),
            };
            trigger(*n, c.target().as_str(), TriggerEvent::Staffing(event))
        })
        .collect()
}

/// Folds `triggers` through the policy; returns the state and each trigger's commands.
fn run(
    state: StaffingState,
    triggers: &[Trigger],
) -> (StaffingState, Vec<Vec<Sent>>, Vec<Reaction>) {
    let (mut state, mut out, mut reactions) = (state, Vec::new(), Vec::new());
    for t in triggers {
        let reaction = StaffingWatch::react(&state, t, &rules()).unwrap();
        out.push(sent(&reaction));
        reactions.push(reaction);
        state = StaffingWatch::evolve(state, t);
    }
    (state, out, reactions)
}

#[test]
fn scheduled_demand_beyond_the_roster_is_detected_with_its_figures() {
    // Given one nurse 08-16; when three emergencies are booked at 09:20; then two nurses are
    // needed (ceil 3/2) and one works: a shortfall at 09:00, updated as demand grows.
    let (_, sent, _) = run(
        StaffingState::default(),
        &[
            shift(1, "S1", 8, 16),
            scheduled(2, "V1", EncounterClass::Emergency, 9),
            scheduled(3, "V2", EncounterClass::Emergency, 9),
            scheduled(4, "V3", EncounterClass::Emergency, 9),
        ],
    );
    assert_eq!(
        sent,
        vec![vec![], vec![], vec![], vec![("RecordShortfall", 9, 2, 1)],]
    );
}

#[test]
fn a_shift_closes_the_gap_and_a_cancelled_shift_opens_it_again() {
    let mut n = 10;
    let (state, sent, reactions) = run(
        StaffingState::default(),
        &[
            scheduled(1, "V1", EncounterClass::Emergency, 9),
            scheduled(2, "V2", EncounterClass::Emergency, 9),
            scheduled(3, "V3", EncounterClass::Emergency, 9),
        ],
    );
    assert_eq!(sent[0], vec![("RecordShortfall", 9, 1, 0)]);
    assert_eq!(sent[2], vec![("RecordShortfall", 9, 2, 0)]);
    // The detections land and are read back: the record now says (2, 0), nothing to send.
    let back: Vec<Trigger> = landed(&mut n, &reactions[0])
        .into_iter()
        .chain(landed(&mut n, &reactions[2]))
        .collect();
    let (state, sent, _) = run(state, &back);
    assert_eq!(sent[1], vec![]);
    // One nurse 07-15: still short (2 needed, 1 works), the figures move.
    let (state, sent, _) = run(state, &[shift(20, "S1", 7, 15)]);
    assert_eq!(sent, vec![vec![("RecordShortfall", 9, 2, 1)]]);
    // A second nurse 09-10: covered, resolved.
    let (state, sent, resolved) = run(state, &[shift(21, "S2", 9, 10)]);
    assert_eq!(sent, vec![vec![("ResolveShortfall", 9, 2, 2)]]);
    let back = landed(&mut n, &resolved[0]);
    let (state, sent, _) = run(state, &back);
    assert_eq!(sent, vec![vec![]]);
    // Cancelling S2 opens it again; cancelling a visit then closes it (ceil 2/2 = 1).
    let (_, sent, _) = run(state, &[shift_cancelled(22, "S2"), cancelled(23, "V3")]);
    assert_eq!(
        sent,
        vec![vec![("RecordShortfall", 9, 2, 1)], vec![]],
        "the record is still resolved until the detection is read back"
    );
}

#[test]
fn a_shift_that_lands_before_the_detection_is_read_back_still_resolves_it() {
    let mut n = 10;
    let (state, sent, reactions) = run(
        StaffingState::default(),
        &[
            scheduled(1, "V1", EncounterClass::Emergency, 9),
            shift(2, "S1", 9, 10),
        ],
    );
    assert_eq!(sent, vec![vec![("RecordShortfall", 9, 1, 0)], vec![]]);
    let back = landed(&mut n, &reactions[0]);
    let (_, sent, _) = run(state, &back);
    assert_eq!(sent, vec![vec![("ResolveShortfall", 9, 1, 1)]]);
}

#[test]
fn only_whole_hours_count_and_other_departments_are_apart() {
    // 09:30-17:00 does not cover 09:00-10:00.
    let (_, sent, _) = run(
        StaffingState::default(),
        &[
            shift(1, "S1", 9, 17),
            scheduled(2, "V1", EncounterClass::Emergency, 8),
        ],
    );
    assert_eq!(sent[1], vec![("RecordShortfall", 8, 1, 0)]);
    let other = trigger(
        3,
        "encounter-V9",
        TriggerEvent::Encounter(
            EncounterScheduled {
                account_id: "MRN-1".into(),
                facility: "MAIN".into(),
                department: "RAD".into(),
                encounter_class: EncounterClass::Emergency,
                scheduled_for: at(9, 0),
            }
            .into(),
        ),
    );
    // A facility in free text names no roster: left out, not dead-lettered.
    let mut free_text = other.clone();
    if let TriggerEvent::Encounter(encounter::Event::EncounterScheduled(e)) = &mut free_text.event {
        e.facility = "Main Campus".into();
    }
    let state = StaffingWatch::evolve(StaffingState::default(), &free_text);
    assert_eq!(state, StaffingState::default());
    // RAD has no rule of its own and the default here is empty: nothing is required.
    let reaction = StaffingWatch::react(&StaffingState::default(), &other, &rules()).unwrap();
    assert!(reaction.is_empty());
}

#[test]
fn a_redelivered_event_sends_the_same_ids_and_a_seen_one_nothing() {
    let first = scheduled(1, "V1", EncounterClass::Emergency, 9);
    let state = StaffingState::default();
    let a = StaffingWatch::react(&state, &first, &rules()).unwrap();
    let b = StaffingWatch::react(&state, &first, &rules()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.commands.len(), 1);
    let seen = StaffingWatch::evolve(state, &first);
    assert!(
        StaffingWatch::react(&seen, &first, &rules())
            .unwrap()
            .is_empty()
    );
    assert_eq!(StaffingWatch::evolve(seen.clone(), &first), seen);
}

#[test]
fn the_staff_required_is_the_ceiling_of_the_exact_sum() {
    let rules = StaffingRules::default();
    let counts = |e: u32, i: u32| {
        ClassCounts::from([
            (EncounterClass::Emergency, e),
            (EncounterClass::Inpatient, i),
        ])
    };
    // Nurses: 1 per 3 emergencies, 1 per 4 inpatients.
    for ((e, i), expected) in [
        ((0, 0), 0),
        ((1, 1), 1),
        ((2, 2), 2),
        ((3, 4), 2),
        ((3, 5), 3),
    ] {
        assert_eq!(
            rules.required("ED", StaffRole::Nurse, &counts(e, i)),
            expected,
            "{e} emergencies, {i} inpatients"
        );
    }
    assert_eq!(clock_hour(at(9, 59)), at(9, 0));
}
