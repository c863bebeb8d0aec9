use careflow_aggregates::encounter::{
    EncounterCancelled, EncounterClass, Event as EncounterEvent, PatientArrived, PatientDischarged,
    SuppliesConsumed,
};
use careflow_aggregates::patient_account::{DemographicsUpdated, Event as AccountEvent};
use careflow_aggregates::purchase::{
    Event as PurchaseEvent, PurchaseApproved, PurchaseCancelled, PurchaseClosed,
    PurchaseOrderPlaced,
};
use careflow_aggregates::{Personal, Total};
use serde_json::{Value, json};

use super::*;
use crate::store::MemoryViewStore;
use crate::testing::events::*;
use crate::testing::{EventLog, assert_tables, replay};

/// Replays `log` into a fresh view and compares the tables named in `expected` (see
/// `testing::assert_tables`), then checks a second replay gives the same view.
#[track_caller]
fn check(log: EventLog, expected: Value) {
    let store = replay(&Analytics, log.events());
    assert_tables(&store, &expected);
    assert_eq!(
        replay(&Analytics, log.events()),
        store,
        "second replay differs"
    );
}

fn arrived() -> EncounterEvent {
    PatientArrived {}.into()
}

#[test]
fn registrations_charges_and_payments_count_per_facility_and_business_day() {
    let moved = AccountEvent::from(DemographicsUpdated {
        facility: Some("EAST".to_owned()),
        gender: None,
        coverage: None,
        personal: Personal::Erased,
    });
    let log = EventLog::new()
        .push("MRN1", "2025-03-01T09:00:00Z", registered("MAIN"))
        .push("MRN2", "2025-03-01T23:59:59Z", registered("MAIN"))
        .push("MRN3", "2025-03-02T00:00:00Z", registered("EAST"))
        .push(
            "MRN1",
            "2025-03-01T10:00:00Z",
            charge("C1", "V1", 2, 12_550),
        )
        .push("MRN2", "2025-03-01T11:00:00Z", charge("C1", "V2", 1, 4_000))
        .push("MRN1", "2025-03-02T10:00:00Z", payment("P1", 10_000))
        .push("MRN1", "2025-03-02T10:30:00Z", moved)
        // Counted at the account's facility when it happened: EAST from now on.
        .push("MRN1", "2025-03-02T11:00:00Z", payment("P2", 50))
        // Adjustments are not counted.
        .push("MRN2", "2025-03-02T11:00:00Z", adjustment("A1", -100));
    let zero = json!({"count": 0, "amounts": {}});
    check(
        log,
        json!({"analytics_daily": {
            "2025-03-01 MAIN": {
                "date": "2025-03-01", "facility": "MAIN", "registrations": 2,
                "charges": {"count": 2, "amounts": {"USD": "291.00"}},
                "payments": zero, "encounters": {}, "supplies_consumed": {},
                "purchase_cycle_times": {},
            },
            "2025-03-02 EAST": {
                "registrations": 1,
                "charges": zero, "payments": {"count": 1, "amounts": {"USD": "0.50"}},
            },
            "2025-03-02 MAIN": {
                "registrations": 0, "payments": {"count": 1, "amounts": {"USD": "100.00"}},
            },
        }}),
    );
}

#[test]
fn encounters_count_status_changes_by_class() {
    let log = EventLog::new()
        .push(
            "V1",
            "2025-03-01T08:00:00Z",
            scheduled("MRN1", "MAIN", EncounterClass::Outpatient),
        )
        .push("V1", "2025-03-01T09:00:00Z", arrived())
        .push(
            "V1",
            "2025-03-01T09:10:00Z",
            EncounterEvent::from(SuppliesConsumed {
                item_id: "GAUZE".to_owned(),
                quantity: 2,
            }),
        )
        .push(
            "V1",
            "2025-03-01T10:00:00Z",
            completed("MRN1", "MAIN", &[(1, 100)]),
        )
        .push(
            "V1",
            "2025-03-02T10:00:00Z",
            EncounterEvent::from(PatientDischarged {
                disposition: "home".to_owned(),
            }),
        )
        .push(
            "V2",
            "2025-03-01T08:00:00Z",
            scheduled("MRN2", "MAIN", EncounterClass::Emergency),
        )
        .push(
            "V2",
            "2025-03-01T08:30:00Z",
            EncounterEvent::from(EncounterCancelled {
                reason: "duplicate".to_owned(),
            }),
        )
        .push(
            "V3",
            "2025-03-01T12:00:00Z",
            scheduled("MRN3", "MAIN", EncounterClass::Outpatient),
        );
    check(
        log,
        json!({"analytics_daily": {
            "2025-03-01 MAIN": {"encounters": {
                "emergency": {"scheduled": 1, "cancelled": 1},
                "outpatient": {"scheduled": 2, "arrived": 1, "completed": 1},
            }, "supplies_consumed": {}},
            "2025-03-02 MAIN": {"encounters": {"outpatient": {"discharged": 1}}},
        }}),
    );
}

#[test]
fn supplies_are_counted_from_stock_consumption_per_item() {
    let log = EventLog::new()
        .push("GAUZE", "2025-03-01T08:00:00Z", item_defined("MAIN"))
        .push("SYRINGE", "2025-03-01T08:00:00Z", item_defined("EAST"))
        .push("GAUZE", "2025-03-01T09:00:00Z", stock_consumed(3))
        .push("GAUZE", "2025-03-01T17:00:00Z", stock_consumed(4))
        .push("SYRINGE", "2025-03-01T09:00:00Z", stock_consumed(10));
    check(
        log,
        json!({
            "analytics_daily": {
                "2025-03-01 EAST": {"supplies_consumed": {"SYRINGE": 10}},
                "2025-03-01 MAIN": {"supplies_consumed": {"GAUZE": 7}},
            },
            "analytics_streams": {
                "inventory_item-GAUZE": {"facility": "MAIN", "encounter_class": null},
                "inventory_item-SYRINGE": {"facility": "EAST"},
            },
        }),
    );
}

/// A purchase requested at `start` whose later events come `hours` after it, in order.
fn purchase(log: EventLog, id: &str, start: &str, hours: [i64; 5]) -> EventLog {
    let start_at = crate::testing::at(start);
    let time = |h: i64| {
        (start_at + chrono::Duration::hours(h)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    log.push(id, start, requested("MAIN", &[("GAUZE", 10), ("TAPE", 2)]))
        .push(
            id,
            &time(hours[0]),
            PurchaseEvent::from(PurchaseApproved {
                approver: "boss".to_owned(),
            }),
        )
        .push(
            id,
            &time(hours[1]),
            PurchaseEvent::from(PurchaseOrderPlaced {
                odoo_order_ref: "PO1".to_owned(),
            }),
        )
        .push(id, &time(hours[2]), received("R1", &[("GAUZE", 10)]))
        .push(id, &time(hours[3]), received("R2", &[("TAPE", 2)]))
        .push(id, &time(hours[4]), PurchaseEvent::from(PurchaseClosed {}))
}

#[test]
fn purchase_cycle_times_per_stage_with_exact_percentiles() {
    let mut log = EventLog::new();
    // Three purchases whose stages all end on 2025-03-02 (UTC).
    log = purchase(log, "REQ1", "2025-03-01T20:00:00Z", [5, 6, 8, 9, 10]);
    log = purchase(log, "REQ2", "2025-03-01T22:00:00Z", [4, 6, 9, 12, 13]);
    log = purchase(log, "REQ3", "2025-03-01T21:00:00Z", [7, 8, 10, 11, 25]);
    // A partial receipt does not end "ordered_to_received"; a cancelled purchase ends nothing.
    log = log
        .push(
            "REQ4",
            "2025-03-02T01:00:00Z",
            requested("MAIN", &[("GAUZE", 10)]),
        )
        .push(
            "REQ4",
            "2025-03-02T02:00:00Z",
            PurchaseEvent::from(PurchaseApproved {
                approver: "boss".to_owned(),
            }),
        )
        .push(
            "REQ4",
            "2025-03-02T03:00:00Z",
            PurchaseEvent::from(PurchaseOrderPlaced {
                odoo_order_ref: "PO4".to_owned(),
            }),
        )
        .push(
            "REQ4",
            "2025-03-02T04:00:00Z",
            received("R4", &[("GAUZE", 9)]),
        )
        .push(
            "REQ4",
            "2025-03-02T05:00:00Z",
            PurchaseEvent::from(PurchaseCancelled {
                reason: "vendor out".to_owned(),
                odoo_order_ref: Some("PO4".to_owned()),
                received: Vec::new(),
            }),
        );
    let h = 3_600;
    check(
        log,
        json!({"analytics_daily": {
            "2025-03-02 MAIN": {"purchase_cycle_times": {
                // REQ1 5h, REQ2 4h, REQ3 7h; REQ4 1h.
                "requested_to_approved": {"durations_seconds": [h, 4 * h, 5 * h, 7 * h],
                                          "p50_seconds": 4 * h, "p90_seconds": 7 * h},
                // 1h, 2h, 1h; REQ4 1h.
                "approved_to_ordered": {"durations_seconds": [h, h, h, 2 * h],
                                        "p50_seconds": h, "p90_seconds": 2 * h},
                // Ends at the second receipt: 3h, 6h, 3h.
                "ordered_to_received": {"durations_seconds": [3 * h, 3 * h, 6 * h],
                                        "p50_seconds": 3 * h, "p90_seconds": 6 * h},
                // 1h, 1h, 14h.
                "received_to_closed": {"durations_seconds": [h, h, 14 * h],
                                       "p50_seconds": h, "p90_seconds": 14 * h},
                "requested_to_closed": {"durations_seconds": [10 * h, 13 * h, 25 * h],
                                        "p50_seconds": 13 * h, "p90_seconds": 25 * h},
            }},
        }}),
    );
}

#[test]
fn nearest_rank_percentiles() {
    #[track_caller]
    fn check_percentile(values: &[i64], p: u8, expected: Option<i64>) {
        assert_eq!(percentile(values, p), expected, "p{p} of {values:?}");
    }
    check_percentile(&[], 50, None);
    check_percentile(&[7], 50, Some(7));
    check_percentile(&[7], 90, Some(7));
    check_percentile(&[1, 2], 50, Some(1));
    check_percentile(&[1, 2], 90, Some(2));
    let ten: Vec<i64> = (1..=10).collect();
    check_percentile(&ten, 50, Some(5));
    check_percentile(&ten, 90, Some(9));
    check_percentile(&ten, 100, Some(10));
    let eleven: Vec<i64> = (1..=11).collect();
    check_percentile(&eleven, 50, Some(6));
    check_percentile(&eleven, 90, Some(10));
}

#[test]
fn an_event_without_its_streams_context_asks_for_a_rebuild() {
    let log = EventLog::new()
        .push("MRN1", "2025-03-01T09:00:00Z", registered("MAIN"))
        .push("MRN1", "2025-03-01T10:00:00Z", charge("C1", "V1", 1, 100));
    let mut store = MemoryViewStore::new();
    let error = Analytics.apply(&mut store, &log.events()[1]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "patient_account-MRN1 at position 2: no earlier facility in the view (rebuild from 0)"
    );
}

#[test]
fn internal_streams_are_not_activity() {
    let log = EventLog::new().push_raw(
        "access_log-2025-03-01",
        "RecordAccessed",
        1,
        json!({"stream_id": "patient_account-MRN1"}),
        "2025-03-01T09:00:00Z",
        "auditor",
    );
    assert_eq!(replay(&Analytics, log.events()), MemoryViewStore::new());
}

/// Issue #15 part 5, defect 1: the facility's daily charge sum over many accounts left `i64`
/// and stopped the view; a day's sum is kept wide enough for any history.
#[test]
fn large_amounts_on_several_accounts_of_one_facility_day_never_stop_the_view() {
    let big = i64::MAX / 2;
    let mut log = EventLog::new();
    for mrn in ["MRN1", "MRN2", "MRN3"] {
        log = log
            .push(mrn, "2025-03-01T09:00:00Z", registered("MAIN"))
            .push(mrn, "2025-03-01T10:00:00Z", charge("C1", "V1", 1, big))
            .push(mrn, "2025-03-01T11:00:00Z", payment("P1", big));
    }
    check(
        log,
        json!({"analytics_daily": {"2025-03-01 MAIN": {
            "charges": {"count": 3, "amounts": {"USD": Total(i128::from(big) * 3).to_string()}},
            "payments": {"count": 3, "amounts": {"USD": Total(i128::from(big) * 3).to_string()}},
        }}}),
    );
}
