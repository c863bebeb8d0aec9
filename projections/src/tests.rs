//! Whole-crate tests: all projections over one mixed log.

use careflow_aggregates::encounter::EncounterClass;
use careflow_aggregates::purchase::{Event as PurchaseEvent, PurchaseApproved};
use serde_json::json;

use crate::testing::events::*;
use crate::testing::{EventLog, replay};
use crate::{Analytics, Audit, Billing, MemoryViewStore, Projection};

fn mixed_log() -> EventLog {
    EventLog::new()
        .push("MRN1", "2025-03-01T09:00:00Z", registered("MAIN"))
        .push(
            "V1",
            "2025-03-01T09:30:00Z",
            scheduled("MRN1", "MAIN", EncounterClass::Inpatient),
        )
        .push("GAUZE", "2025-03-01T09:40:00Z", item_defined("MAIN"))
        .push(
            "V1",
            "2025-03-01T11:00:00Z",
            completed("MRN1", "MAIN", &[(1, 5_000)]),
        )
        .push(
            "MRN1",
            "2025-03-01T11:01:00Z",
            charge("V1-1", "V1", 1, 5_000),
        )
        .push("GAUZE", "2025-03-01T11:02:00Z", stock_consumed(2))
        .push(
            "REQ1",
            "2025-03-01T12:00:00Z",
            requested("MAIN", &[("GAUZE", 20)]),
        )
        .push(
            "REQ1",
            "2025-03-01T13:00:00Z",
            PurchaseEvent::from(PurchaseApproved {
                approver: "boss".to_owned(),
            }),
        )
        .push("MRN1", "2025-03-02T09:00:00Z", payment("P1", 2_000))
        .push_raw(
            "access_log-2025-03-02",
            "RecordAccessed",
            1,
            json!({"account_id": "MRN1", "action": "history"}),
            "2025-03-02T10:00:00Z",
            "auditor",
        )
}

fn projections() -> [&'static dyn Projection; 3] {
    [&Billing, &Analytics, &Audit]
}

#[test]
fn replaying_the_same_log_twice_gives_the_same_views() {
    let log = mixed_log();
    for projection in projections() {
        let first = replay(projection, log.events());
        assert_ne!(
            first,
            MemoryViewStore::new(),
            "{} wrote nothing",
            projection.name()
        );
        assert_eq!(
            replay(projection, log.events()),
            first,
            "{}",
            projection.name()
        );
    }
}

#[test]
fn projections_write_only_the_tables_they_declare_and_share_a_store_safely() {
    let log = mixed_log();
    let mut shared = MemoryViewStore::new();
    for event in log.events() {
        for projection in projections() {
            projection.apply(&mut shared, event).unwrap();
        }
    }
    let mut names = Vec::new();
    for projection in projections() {
        let alone = replay(projection, log.events());
        for (table, rows) in alone.tables() {
            assert!(
                projection.tables().contains(table),
                "{} wrote undeclared table {table}",
                projection.name()
            );
            assert_eq!(
                &shared.table(table),
                rows,
                "{table} differs in a shared store"
            );
        }
        assert!(!names.contains(&projection.name()));
        names.push(projection.name());
    }
    let declared: usize = projections().iter().map(|p| p.tables().len()).sum();
    let mut all: Vec<&str> = projections()
        .iter()
        .flat_map(|p| p.tables().iter().copied())
        .collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all.len(),
        declared,
        "two projections declare the same table"
    );
}
