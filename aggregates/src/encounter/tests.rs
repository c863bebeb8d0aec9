//! Given/when/then tests of the Encounter lifecycle, its codec and its command contract.

use chrono::{TimeZone, Utc};
use serde_json::json;

use super::*;
use crate::aggregate::Aggregate;
use crate::codec::DomainEvent;
use crate::money::{Cents, Currency};
use crate::rejection::Rejection;
use crate::stream_id::StreamIdError;
use crate::testing::{assert_codec_round_trip, assert_contract_body, given, given_no_history};

// ---- fixtures ----

fn schedule() -> ScheduleEncounter {
    ScheduleEncounter {
        account_id: "MRN001".into(),
        facility: "MAIN".into(),
        department: "cardiology".into(),
        encounter_class: EncounterClass::Outpatient,
        scheduled_for: Utc.with_ymd_and_hms(2025, 3, 2, 14, 0, 0).unwrap(),
    }
}

fn scheduled() -> Event {
    EncounterScheduled {
        account_id: "MRN001".into(),
        facility: "MAIN".into(),
        department: "cardiology".into(),
        encounter_class: EncounterClass::Outpatient,
        scheduled_for: Utc.with_ymd_and_hms(2025, 3, 2, 14, 0, 0).unwrap(),
    }
    .into()
}

fn arrived() -> Event {
    PatientArrived {}.into()
}

fn procedure() -> RecordProcedure {
    RecordProcedure {
        code: "93000".into(),
        description: "electrocardiogram".into(),
        quantity: 2,
        unit_price: Cents(4_500),
        currency: Currency::USD,
    }
}

fn recorded(line: u32) -> Event {
    ProcedureRecorded {
        line,
        code: "93000".into(),
        description: "electrocardiogram".into(),
        quantity: 2,
        unit_price: Cents(4_500),
        amount: Cents(9_000),
        currency: Currency::USD,
    }
    .into()
}

fn supply() -> RecordSupplyUsage {
    RecordSupplyUsage {
        item_id: "ELECTRODE-10".into(),
        quantity: 12,
    }
}

fn consumed() -> Event {
    SuppliesConsumed {
        item_id: "ELECTRODE-10".into(),
        quantity: 12,
    }
    .into()
}

fn completed() -> Event {
    EncounterCompleted {
        account_id: "MRN001".into(),
        facility: "MAIN".into(),
        currency: None,
        procedures: vec![],
        supplies: vec![],
    }
    .into()
}

fn cancelled() -> Event {
    EncounterCancelled {
        reason: "patient called off".into(),
    }
    .into()
}

fn discharged() -> Event {
    PatientDischarged {
        disposition: "home".into(),
    }
    .into()
}

fn every_command() -> Vec<Command> {
    vec![
        schedule().into(),
        CheckIn {}.into(),
        procedure().into(),
        supply().into(),
        CompleteEncounter {}.into(),
        Discharge {
            disposition: "home".into(),
        }
        .into(),
        CancelEncounter {
            reason: "no show".into(),
        }
        .into(),
    ]
}

// ---- lifecycle ----

#[test]
fn the_happy_path_runs_in_order() {
    given_no_history::<Encounter>()
        .when(schedule())
        .then_expect([scheduled()])
        .then_state_matches(|s| {
            assert_eq!(s.status, Some(EncounterStatus::Scheduled));
            assert_eq!(s.account_id, "MRN001");
        });
    given([scheduled()])
        .when(CheckIn {})
        .then_expect([arrived()])
        .then_state_matches(|s| assert_eq!(s.status, Some(EncounterStatus::Arrived)));
    given([scheduled(), arrived()])
        .when(procedure())
        .then_expect([recorded(1)]);
    given([scheduled(), arrived(), recorded(1)])
        .when(procedure())
        .then_expect([recorded(2)]);
    given([scheduled(), arrived()])
        .when(supply())
        .then_expect([consumed()]);
    given([scheduled(), arrived(), recorded(1), consumed()])
        .when(CompleteEncounter {})
        .then_expect([EncounterCompleted {
            account_id: "MRN001".into(),
            facility: "MAIN".into(),
            currency: Some(Currency::USD),
            procedures: vec![Procedure {
                line: 1,
                code: "93000".into(),
                description: "electrocardiogram".into(),
                quantity: 2,
                unit_price: Cents(4_500),
                amount: Cents(9_000),
            }],
            supplies: vec![SupplyUsage {
                item_id: "ELECTRODE-10".into(),
                quantity: 12,
            }],
        }
        .into()])
        .then_state_matches(|s| assert_eq!(s.status, Some(EncounterStatus::Completed)));
    given([scheduled(), arrived(), completed()])
        .when(Discharge {
            disposition: "home".into(),
        })
        .then_expect([discharged()])
        .then_state_matches(|s| {
            assert_eq!(s.status, Some(EncounterStatus::Discharged));
            assert_eq!(s.disposition.as_deref(), Some("home"));
        });
}

#[test]
fn scheduling_twice_is_a_conflict() {
    given([scheduled()])
        .when(schedule())
        .then_rejects(Rejection::AlreadyScheduled);
}

#[test]
fn nothing_happens_to_an_unscheduled_encounter() {
    for command in every_command().into_iter().skip(1) {
        given_no_history::<Encounter>()
            .when(command)
            .then_rejects(Rejection::NotScheduled);
    }
}

#[track_caller]
fn out_of_order(history: Vec<Event>, command: impl Into<Command>, status: &'static str) {
    let command = command.into();
    let name = command.name();
    given(history)
        .when(command)
        .then_rejects(Rejection::InvalidTransition {
            aggregate: "encounter",
            status,
            command: name,
        });
}

#[test]
fn completing_before_check_in_is_a_conflict() {
    out_of_order(vec![scheduled()], CompleteEncounter {}, "scheduled");
}

#[test]
fn care_is_recorded_only_while_the_patient_is_there() {
    out_of_order(vec![scheduled()], procedure(), "scheduled");
    out_of_order(vec![scheduled()], supply(), "scheduled");
    out_of_order(
        vec![scheduled(), arrived(), completed()],
        procedure(),
        "completed",
    );
    out_of_order(
        vec![scheduled(), arrived(), completed()],
        supply(),
        "completed",
    );
}

#[test]
fn discharge_follows_completion() {
    let discharge = || Discharge {
        disposition: "home".into(),
    };
    out_of_order(vec![scheduled()], discharge(), "scheduled");
    out_of_order(vec![scheduled(), arrived()], discharge(), "arrived");
    out_of_order(
        vec![scheduled(), arrived(), completed(), discharged()],
        discharge(),
        "discharged",
    );
}

#[test]
fn checking_in_twice_is_a_conflict() {
    out_of_order(vec![scheduled(), arrived()], CheckIn {}, "arrived");
}

#[test]
fn cancelling_is_possible_before_completion_only() {
    let cancel = || CancelEncounter {
        reason: "patient called off".into(),
    };
    given([scheduled()])
        .when(cancel())
        .then_expect([cancelled()])
        .then_state_matches(|s| {
            assert_eq!(s.status, Some(EncounterStatus::Cancelled));
            assert_eq!(s.cancel_reason.as_deref(), Some("patient called off"));
        });
    given([scheduled(), arrived()])
        .when(cancel())
        .then_expect([cancelled()]);
    out_of_order(
        vec![scheduled(), arrived(), completed()],
        cancel(),
        "completed",
    );
}

#[test]
fn anything_after_cancel_is_a_conflict() {
    for command in every_command().into_iter().skip(1) {
        out_of_order(vec![scheduled(), cancelled()], command, "cancelled");
    }
    given([scheduled(), cancelled()])
        .when(schedule())
        .then_rejects(Rejection::AlreadyScheduled);
}

// ---- validation ----

#[test]
fn bodies_are_validated() {
    let cases: Vec<(Command, Rejection)> = vec![
        (
            ScheduleEncounter {
                account_id: "MRN 1".into(),
                ..schedule()
            }
            .into(),
            Rejection::InvalidId {
                field: "account_id",
                reason: StreamIdError::IdCharacter(' '),
            },
        ),
        (
            ScheduleEncounter {
                department: "".into(),
                ..schedule()
            }
            .into(),
            Rejection::EmptyField {
                field: "department",
            },
        ),
        (
            RecordProcedure {
                quantity: 0,
                ..procedure()
            }
            .into(),
            Rejection::InvalidQuantity { field: "quantity" },
        ),
        (
            RecordProcedure {
                unit_price: Cents(-1),
                ..procedure()
            }
            .into(),
            Rejection::NegativeAmount {
                field: "unit_price",
            },
        ),
        (
            RecordSupplyUsage {
                quantity: 0,
                ..supply()
            }
            .into(),
            Rejection::InvalidQuantity { field: "quantity" },
        ),
        (
            RecordSupplyUsage {
                item_id: "a/b".into(),
                ..supply()
            }
            .into(),
            Rejection::InvalidId {
                field: "item_id",
                reason: StreamIdError::IdCharacter('/'),
            },
        ),
        (
            Discharge {
                disposition: " ".into(),
            }
            .into(),
            Rejection::EmptyField {
                field: "disposition",
            },
        ),
        (
            CancelEncounter { reason: "".into() }.into(),
            Rejection::EmptyField { field: "reason" },
        ),
    ];
    for (command, rejection) in cases {
        given([scheduled(), arrived()])
            .when(command)
            .then_rejects(rejection);
    }
}

#[test]
fn procedures_of_one_encounter_share_a_currency() {
    let eur = Currency::parse("EUR").unwrap();
    given([scheduled(), arrived(), recorded(1)])
        .when(RecordProcedure {
            currency: eur,
            ..procedure()
        })
        .then_rejects(Rejection::CurrencyMismatch {
            expected: Currency::USD,
            found: eur,
        });
}

// ---- codec and contract ----

#[test]
fn every_event_type_round_trips_through_the_codec() {
    let events = vec![
        scheduled(),
        arrived(),
        recorded(1),
        consumed(),
        completed(),
        discharged(),
        cancelled(),
    ];
    let mut types: Vec<&str> = events.iter().map(DomainEvent::event_type).collect();
    types.sort_unstable();
    let mut all = Event::EVENT_TYPES.to_vec();
    all.sort_unstable();
    assert_eq!(types, all);
    for event in &events {
        assert_codec_round_trip::<Encounter>(event);
    }
    assert_eq!(
        Encounter::encode(&scheduled()).data,
        json!({"account_id": "MRN001", "facility": "MAIN", "department": "cardiology",
               "class": "outpatient", "scheduled_for": "2025-03-02T14:00:00Z"})
    );
}

#[track_caller]
fn parse(body: serde_json::Value) -> Result<Command, Rejection> {
    Encounter::parse_command(body).map(|b| b.command)
}

#[test]
fn every_command_parses_from_its_contract_shape() {
    let cases = [
        (
            json!({"type": "ScheduleEncounter", "account_id": "MRN001", "facility": "MAIN",
                   "department": "cardiology", "class": "outpatient",
                   "scheduled_for": "2025-03-02T14:00:00Z"}),
            schedule().into(),
        ),
        (json!({"type": "CheckIn"}), CheckIn {}.into()),
        (
            json!({"type": "RecordProcedure", "code": "93000", "description": "electrocardiogram",
                   "quantity": 2, "unit_price": "45.00"}),
            procedure().into(),
        ),
        (
            json!({"type": "RecordSupplyUsage", "item_id": "ELECTRODE-10", "quantity": 12}),
            supply().into(),
        ),
        (
            json!({"type": "CompleteEncounter"}),
            CompleteEncounter {}.into(),
        ),
        (
            json!({"type": "Discharge", "disposition": "home"}),
            Discharge {
                disposition: "home".into(),
            }
            .into(),
        ),
        (
            json!({"type": "CancelEncounter", "reason": "no show"}),
            CancelEncounter {
                reason: "no show".into(),
            }
            .into(),
        ),
    ];
    for (body, expected) in cases {
        assert_contract_body::<Encounter>(body, expected);
    }
}

#[test]
fn bodies_outside_the_contract_are_refused() {
    let refused = [
        json!({"type": "CheckIn", "room": "12"}),
        json!({"type": "ScheduleEncounter", "account_id": "MRN001", "facility": "MAIN",
               "department": "cardiology", "class": "daycare",
               "scheduled_for": "2025-03-02T14:00:00Z"}),
        json!({"type": "ScheduleEncounter", "account_id": "MRN001", "facility": "MAIN",
               "department": "cardiology", "class": "outpatient",
               "scheduled_for": "tomorrow"}),
        json!({"type": "RecordProcedure", "code": "93000", "description": "ecg",
               "quantity": 2, "unit_price": 45}),
        json!({"type": "RecordSupplyUsage", "item_id": "E", "quantity": 1.5}),
        json!({"type": "Discharge"}),
    ];
    for body in refused {
        let result = parse(body.clone());
        assert!(
            matches!(result, Err(Rejection::InvalidCommand { .. })),
            "{body} gave {result:?}"
        );
    }
}

#[test]
fn state_renders_the_pinned_status() {
    let state = Encounter::replay(&[scheduled(), arrived(), recorded(1)]);
    let json = serde_json::to_value(&state).unwrap();
    assert_eq!(json["status"], json!("arrived"));
    assert_eq!(json["class"], json!("outpatient"));
    assert_eq!(json["procedures"][0]["amount"], json!("90.00"));
    let snapshot: State = serde_json::from_value(json).unwrap();
    assert_eq!(snapshot, state);
}
