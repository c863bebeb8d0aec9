use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::envelope::{EventMetadata, event_id_for};

fn event(stream: &str, version: u64, prev: EventHash, data: serde_json::Value) -> RecordedEvent {
    let command_id = Uuid::from_u128(u128::from(version) + 7);
    let mut e = RecordedEvent {
        event_id: event_id_for(command_id, 0),
        stream_id: StreamId::parse(stream).unwrap(),
        version,
        position: version * 10,
        event_type: "ChargePosted".into(),
        schema_version: 1,
        data,
        metadata: EventMetadata {
            command_id,
            correlation_id: "corr-1".into(),
            causation_id: "req-1".into(),
            principal: "ehr".into(),
            source: "http".into(),
            recorded_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            occurred_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 0, 0).unwrap(),
        },
        prev_hash: prev,
        hash: EventHash::ZERO,
    };
    e.hash = chain_hash(&e);
    e
}

fn chain_of(n: u64) -> Vec<RecordedEvent> {
    let mut prev = EventHash::ZERO;
    (1..=n)
        .map(|v| {
            let e = event(
                "patient_account-M1",
                v,
                prev,
                json!({"amount": "12.50", "n": v}),
            );
            prev = e.hash;
            e
        })
        .collect()
}

fn verify(events: &[RecordedEvent]) -> Vec<ChainBreak> {
    let mut v = ChainVerifier::new(StreamId::parse("patient_account-M1").unwrap());
    events
        .iter()
        .filter_map(|e| v.check(e).err())
        .flatten()
        .collect()
}

#[test]
fn canonical_form_is_sorted_and_compact() {
    let e = event(
        "encounter-V1",
        1,
        EventHash::ZERO,
        json!({"z": 1, "a": {"y": [1, "x"], "b": null}, "é": 1.5}),
    );
    let text = String::from_utf8(canonical_bytes(&e)).unwrap();
    assert!(text.starts_with(r#"{"data":{"a":{"b":null,"y":[1,"x"]},"z":1,"é":1.5},"event_id":""#));
    assert!(text.ends_with(r#","schema_version":1,"stream_id":"encounter-V1","version":1}"#));
    assert!(text.contains(r#""recorded_at":"2026-01-02T03:04:05Z""#));
    assert!(!text.contains(' '));
}

#[test]
fn canonical_form_ignores_position_and_hashes() {
    let a = event("encounter-V1", 1, EventHash::ZERO, json!({}));
    let mut b = a.clone();
    b.position = 999;
    b.hash = EventHash([1; 32]);
    assert_eq!(canonical_bytes(&a), canonical_bytes(&b));
}

#[test]
fn known_answer_for_a_fixed_event() {
    // Pinned so that an accidental change of the canonical form (which would make every stored
    // chain fail verification) shows up here first.
    let e = event("encounter-V1", 1, EventHash::ZERO, json!({"a": 1}));
    let expected = format!(
        concat!(
            r#"{{"data":{{"a":1}},"event_id":"{}","event_type":"ChargePosted","#,
            r#""metadata":{{"causation_id":"req-1","command_id":"{}","correlation_id":"corr-1","#,
            r#""occurred_at":"2026-01-02T03:00:00Z","principal":"ehr","#,
            r#""recorded_at":"2026-01-02T03:04:05Z","source":"http"}},"#,
            r#""schema_version":1,"stream_id":"encounter-V1","version":1}}"#
        ),
        e.event_id, e.metadata.command_id
    );
    assert_eq!(String::from_utf8(canonical_bytes(&e)).unwrap(), expected);
    let mut h = Sha256::new();
    h.update([0u8; 32]);
    h.update(expected.as_bytes());
    assert_eq!(e.hash, EventHash(h.finalize().into()));
}

#[test]
fn an_intact_chain_verifies() {
    assert_eq!(verify(&chain_of(5)), vec![]);
}

#[test]
fn deletion_insertion_and_swap_are_caught() {
    let chain = chain_of(5);

    let mut deleted = chain.clone();
    deleted.remove(2);
    assert!(verify(&deleted).contains(&ChainBreak::BrokenLink));

    let mut swapped = chain.clone();
    swapped.swap(1, 2);
    assert!(!verify(&swapped).is_empty());

    let mut inserted = chain.clone();
    let forged = event("patient_account-M1", 3, chain[1].hash, json!({"n": 99}));
    inserted.insert(2, forged);
    assert!(!verify(&inserted).is_empty());
}

#[test]
fn a_foreign_event_is_reported() {
    let mut chain = chain_of(2);
    chain[1].stream_id = StreamId::parse("patient_account-M2").unwrap();
    assert!(verify(&chain).contains(&ChainBreak::ForeignStream("patient_account-M2".into())));
}

/// Changes one field of an event; `field` enumerates every field the envelope carries.
fn mutate(e: &mut RecordedEvent, field: usize, salt: u8) {
    let s = format!("x{salt}");
    match field {
        0 => e.event_id = Uuid::from_u128(u128::from(salt) + 1_000_000),
        1 => e.stream_id = StreamId::parse(&format!("patient_account-M{s}")).unwrap(),
        2 => e.version += u64::from(salt) + 1,
        3 => e.event_type.push_str(&s),
        4 => e.schema_version += u32::from(salt) + 1,
        5 => e.data["n"] = json!(format!("tampered{s}")),
        6 => e.metadata.command_id = Uuid::from_u128(u128::from(salt) + 2_000_000),
        7 => e.metadata.correlation_id.push_str(&s),
        8 => e.metadata.causation_id.push_str(&s),
        9 => e.metadata.principal.push_str(&s),
        10 => e.metadata.source.push_str(&s),
        11 => e.metadata.recorded_at += chrono::Duration::nanoseconds(i64::from(salt) + 1),
        12 => e.metadata.occurred_at += chrono::Duration::seconds(i64::from(salt) + 1),
        13 => e.prev_hash.0[usize::from(salt) % 32] ^= 1,
        14 => e.hash.0[usize::from(salt) % 32] ^= 1,
        15 => e.data["amount"] = json!("12.51"),
        _ => unreachable!(),
    }
}

proptest! {
    /// Any change to any field of any event breaks verification.
    #[test]
    fn any_change_to_any_field_breaks_verification(
        len in 1u64..8, index in 0usize..8, field in 0usize..16, salt in any::<u8>()
    ) {
        let mut chain = chain_of(len);
        let index = index % chain.len();
        mutate(&mut chain[index], field, salt);
        prop_assert!(!verify(&chain).is_empty(), "field {field} of event {index} changed unnoticed");
    }
}

proptest! {
    /// The hand-written timestamp and string writers produce exactly what chrono and
    /// serde_json produce, so the fast path cannot change a single hash.
    #[test]
    fn fast_writers_match_chrono_and_serde_json(
        secs in -62_135_596_800i64..253_402_300_799i64,
        nanos in prop_oneof![Just(0u32), (0u32..1000).prop_map(|n| n * 1_000_000),
                             (0u32..1_000_000).prop_map(|n| n * 1_000), 0u32..1_000_000_000],
        text in any::<String>(),
    ) {
        let t = chrono::DateTime::from_timestamp(secs, nanos).unwrap();
        let mut fast = Vec::new();
        write_timestamp(&mut fast, &t);
        let slow = serde_json::to_string(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)).unwrap();
        prop_assert_eq!(String::from_utf8(fast).unwrap(), slow);

        let mut fast = Vec::new();
        write_str(&mut fast, &text);
        prop_assert_eq!(String::from_utf8(fast).unwrap(), serde_json::to_string(&text).unwrap());
    }
}

#[test]
fn hashing_the_stored_data_text_matches_hashing_the_value() {
    let e = event(
        "patient_account-M1",
        1,
        EventHash::ZERO,
        json!({"z": 1, "a": {"y": "x\"q", "b": [1.5, null, true]}}),
    );
    let stored = serde_json::to_string(&e.data).unwrap();
    assert_eq!(chain_hash_with_data_text(&e, &stored), e.hash);
    // A different spelling of the same value does not match on the fast path; callers
    // then parse and use `chain_hash`, which does.
    let spaced = serde_json::to_string_pretty(&e.data).unwrap();
    assert_ne!(chain_hash_with_data_text(&e, &spaced), e.hash);
}

#[test]
fn hashing_the_stored_text_matches_hashing_the_decoded_event() {
    let mut stored = Vec::new();
    for nanos in [0, 5_000_000, 123_456_000, 123_456_789] {
        let mut e = event(
            "patient_account-M1",
            3,
            EventHash([9; 32]),
            json!({"b": [1, "two"], "a": "x\u{e9}"}),
        );
        e.metadata.recorded_at += chrono::Duration::nanoseconds(nanos);
        e.hash = chain_hash(&e);
        stored.push((
            e.clone(),
            serde_json::to_string(&e.data).unwrap(),
            serde_json::to_string(&e.metadata).unwrap(),
        ));
    }
    for (e, data, metadata) in &stored {
        let text = EventText {
            event_id: &e.event_id,
            stream_id: e.stream_id.as_str(),
            version: e.version,
            event_type: &e.event_type,
            schema_version: e.schema_version,
            data,
            metadata: serde_json::from_str(metadata).unwrap(),
            prev_hash: e.prev_hash,
        };
        assert_eq!(chain_hash_text(&text), e.hash, "{metadata}");
        let other = EventText { version: 4, ..text };
        assert_ne!(chain_hash_text(&other), e.hash);
    }
}
