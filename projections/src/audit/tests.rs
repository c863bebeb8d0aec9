use careflow_aggregates::encounter::EncounterClass;
use serde_json::{Value, json};

use super::*;
use crate::store::MemoryViewStore;
use crate::testing::events::*;
use crate::testing::{EventLog, assert_tables, replay};

/// Replays `log` into a fresh view and compares the tables named in `expected`, then checks a
/// second replay gives the same view.
#[track_caller]
fn check(log: EventLog, expected: Value) {
    let store = replay(&Audit, log.events());
    assert_tables(&store, &expected);
    assert_eq!(replay(&Audit, log.events()), store, "second replay differs");
}

fn access(log: EventLog, when: &str, who: &str, data: Value) -> EventLog {
    log.push_raw(
        "access_log-2025-03-01",
        "RecordAccessed",
        1,
        data,
        when,
        who,
    )
}

#[test]
fn every_stream_is_indexed_whatever_its_kind() {
    let log = EventLog::new()
        .push("MRN1", "2025-03-01T09:00:00Z", registered("MAIN"))
        .push(
            "V1",
            "2025-03-01T09:30:00Z",
            scheduled("MRN1", "MAIN", EncounterClass::Inpatient),
        )
        .push("MRN1", "2025-03-01T10:00:00Z", charge("C1", "V1", 1, 100))
        // A kind this build does not know, with data no aggregate would decode.
        .push_raw(
            "timer-T1",
            "DeadlineSet",
            7,
            json!([1, 2]),
            "2025-03-01T11:00:00Z",
            "pm",
        )
        .push("MRN1", "2025-03-01T12:00:00Z", payment("P1", 100))
        // An aggregate event this build cannot decode is indexed all the same.
        .push_raw(
            "encounter-V1",
            "EncounterReopened",
            1,
            json!({}),
            "2025-03-01T13:00:00Z",
            "x",
        );
    check(
        log,
        json!({"audit_streams": {
            "encounter-V1": {"kind": "encounter", "id": "V1", "first_position": 2,
                             "last_position": 6, "first_recorded_at": "2025-03-01T09:30:00Z",
                             "last_recorded_at": "2025-03-01T13:00:00Z", "last_version": 2,
                             "event_count": 2},
            "patient_account-MRN1": {"stream_id": "patient_account-MRN1",
                                     "kind": "patient_account", "id": "MRN1",
                                     "first_position": 1, "last_position": 5,
                                     "first_recorded_at": "2025-03-01T09:00:00Z",
                                     "last_recorded_at": "2025-03-01T12:00:00Z",
                                     "last_version": 3, "event_count": 3},
            "timer-T1": {"kind": "timer", "id": "T1", "first_position": 4,
                         "last_position": 4, "event_count": 1},
        }, "audit_access_log": {}}),
    );
}

#[test]
fn reads_of_patient_data_are_logged_by_time_and_by_patient() {
    let log = EventLog::new()
        .push("MRN1", "2025-03-01T09:00:00Z", registered("MAIN"))
        .push_raw(
            "access_log-2025-03-01",
            "RecordAccessed",
            1,
            json!({"stream_id": "patient_account-MRN1", "action": "history",
                   "unexpected": {"nested": true}}),
            "2025-03-01T10:00:00Z",
            "auditor-7",
        );
    let log = access(
        log,
        "2025-03-01T10:05:00Z",
        "billing-svc",
        json!({"account_id": "MRN2", "stream_id": "encounter-V9", "action": "state",
               "as_of": "2025-02-01T00:00:00Z"}),
    );
    // Lenient: wrong types and unknown fields are ignored, the read is still logged.
    let log = access(
        log,
        "2025-03-01T10:10:00Z",
        "odd-client",
        json!({"stream_id": 42, "action": ["state"]}),
    );
    let log = access(
        log,
        "2025-03-01T10:15:00Z",
        "odd-client",
        json!("not an object"),
    );
    // Logged, but not indexed under a key it could forge.
    let log = access(
        log,
        "2025-03-01T10:16:00Z",
        "odd-client",
        json!({"account_id": "MRN1/x"}),
    );
    // Other access-log event types are indexed but are not reads.
    let log = log.push_raw(
        "access_log-2025-03-01",
        "ExportSigned",
        1,
        json!({"account_id": "MRN1"}),
        "2025-03-01T10:20:00Z",
        "admin",
    );
    check(
        log,
        json!({
            "audit_access_log": {
                "00000000000000000002": {
                    "position": 2, "event_id": "00000000-0000-0000-0000-000000000002",
                    "accessed_at": "2025-03-01T10:00:00Z", "principal": "auditor-7",
                    "correlation_id": "corr-2", "patient": "MRN1",
                    "stream_id": "patient_account-MRN1", "access": "history", "as_of": null,
                },
                "00000000000000000003": {
                    "principal": "billing-svc", "patient": "MRN2", "stream_id": "encounter-V9",
                    "access": "state", "as_of": "2025-02-01T00:00:00Z",
                },
                "00000000000000000004": {"principal": "odd-client", "patient": null,
                                         "stream_id": null, "access": null},
                "00000000000000000005": {"principal": "odd-client", "patient": null},
                "00000000000000000006": {"patient": "MRN1/x"},
            },
            "audit_access_by_patient": {
                "MRN1/00000000000000000002": {"principal": "auditor-7", "access": "history"},
                "MRN2/00000000000000000003": {"principal": "billing-svc"},
            },
            "audit_streams": {
                "access_log-2025-03-01": {"kind": "access_log", "event_count": 6,
                                          "first_position": 2, "last_position": 7},
                "patient_account-MRN1": {"event_count": 1},
            },
        }),
    );
}

#[test]
fn who_read_a_patient_is_one_prefix_scan_in_log_order() {
    let mut log = EventLog::new();
    for (when, who, mrn) in [
        ("2025-03-01T10:00:00Z", "a", "MRN1"),
        ("2025-03-01T10:01:00Z", "b", "MRN10"),
        ("2025-03-01T10:02:00Z", "c", "MRN1"),
    ] {
        log = access(
            log,
            when,
            who,
            json!({"account_id": mrn, "action": "state"}),
        );
    }
    let store = replay(&Audit, log.events());
    let readers: Vec<String> = store
        .scan_prefix(ACCESS_BY_PATIENT, "MRN1/")
        .unwrap()
        .into_iter()
        .map(|(_, row)| row["principal"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(readers, ["a", "c"]);
    assert_ne!(store, MemoryViewStore::new());
}
