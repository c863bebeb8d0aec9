use careflow_aggregates::{EventMetadata, RecordedEvent, StreamId, chain_hash};
use chrono::{TimeZone, Utc};
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::operations::audit::raw::RawEvent;

/// A stored row of a correctly hashed event, with `data` and `metadata` as the stores
/// write them.
fn stored() -> RawEvent {
    let mut event = RecordedEvent {
        event_id: Uuid::from_u128(1),
        stream_id: StreamId::parse("patient_account-M1").unwrap(),
        version: 1,
        position: 1,
        event_type: "ChargePosted".into(),
        schema_version: 2,
        data: json!({"charge_id": "C1", "amount": "125.50", "note": "caf\u{e9} \"x\""}),
        metadata: EventMetadata {
            command_id: Uuid::from_u128(2),
            correlation_id: "c".into(),
            causation_id: "r".into(),
            principal: "ehr".into(),
            source: "http".into(),
            recorded_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
                + chrono::Duration::nanoseconds(123_456_789),
            occurred_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 0, 0).unwrap(),
        },
        prev_hash: EventHash::ZERO,
        hash: EventHash::ZERO,
    };
    event.hash = chain_hash(&event);
    RawEvent {
        position: 1,
        stream_id: event.stream_id.to_string(),
        version: 1,
        event_id: event.event_id,
        event_type: event.event_type.clone(),
        schema_version: 2,
        data: serde_json::to_string(&event.data).unwrap(),
        metadata: serde_json::to_string(&event.metadata).unwrap(),
        prev_hash: event.prev_hash.0.to_vec(),
        hash: event.hash.0.to_vec(),
        problem: None,
    }
}

#[track_caller]
fn check(edit: impl FnOnce(&mut RawEvent), expected: Content) {
    let mut row = stored();
    edit(&mut row);
    assert_eq!(check_content(&row.view()).content, expected);
}

#[test]
fn an_untouched_row_is_intact() {
    check(|_| {}, Content::Intact);
}

#[test]
fn another_spelling_of_the_same_content_is_not_a_finding() {
    check(
        |row| {
            let data: serde_json::Value = serde_json::from_str(&row.data).unwrap();
            row.data = serde_json::to_string_pretty(&data).unwrap();
            let metadata: serde_json::Value = serde_json::from_str(&row.metadata).unwrap();
            row.metadata = serde_json::to_string_pretty(&metadata).unwrap();
        },
        Content::Intact,
    );
}

#[test]
fn edits_are_mismatches_and_broken_rows_unreadable() {
    check(
        |row| row.data = row.data.replace("125.50", "125.51"),
        Content::HashMismatch,
    );
    check(|row| row.version = 2, Content::HashMismatch);
    check(
        |row| row.metadata = row.metadata.replace("\"ehr\"", "\"eve\""),
        Content::HashMismatch,
    );
    assert!(matches!(
        { let mut row = stored(); row.data.pop(); check_content(&row.view()).content },
        Content::Unreadable(reason) if reason.starts_with("data:")
    ));
    assert!(matches!(
        {
            let mut row = stored();
            row.hash.pop();
            check_content(&row.view()).content
        },
        Content::Unreadable(_)
    ));
    assert!(matches!(
        { let mut row = stored(); row.stream_id = "no spaces".into(); check_content(&row.view()).content },
        Content::Unreadable(reason) if reason.starts_with("stream_id:")
    ));
}
