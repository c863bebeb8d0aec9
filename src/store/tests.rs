use careflow_aggregates::{ChainVerifier, chain_hash};
use chrono::TimeZone;
use serde_json::json;

use super::*;

fn request(expected: ExpectedVersion, n: usize) -> AppendRequest {
    AppendRequest {
        stream_id: StreamId::parse("encounter-V1").unwrap(),
        expected,
        meta: CommandMeta {
            command_id: Uuid::from_u128(42),
            correlation_id: "c".into(),
            causation_id: "c".into(),
            principal: "p".into(),
            source: "test".into(),
            occurred_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        },
        events: (0..n)
            .map(|i| ProposedEvent {
                event_type: "PatientArrived".into(),
                schema_version: 1,
                data: json!({ "i": i }),
            })
            .collect(),
    }
}

fn recorded_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 1).unwrap()
}

#[track_caller]
fn check_sealed(expected: ExpectedVersion, head: StreamHead, n: usize) {
    let prepared = PreparedAppend::new(request(expected, n), recorded_at()).unwrap();
    let events = prepared.seal(head, 100).unwrap();
    assert_eq!(events.len(), n);
    let mut verifier = ChainVerifier::new(events[0].stream_id.clone());
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.version, head.version + 1 + i as u64);
        assert_eq!(e.position, 100 + i as u64);
        assert_eq!(
            e.hash,
            chain_hash(e),
            "hash must equal the chain's definition"
        );
        assert_eq!(e.event_id, event_id_for(Uuid::from_u128(42), i as u32));
        assert_eq!(e.metadata.recorded_at, recorded_at());
    }
    assert_eq!(events[0].prev_hash, head.hash);
    if head.version == 0 {
        for e in &events {
            verifier.check(e).unwrap();
        }
    }
}

#[test]
fn sealing_chains_onto_the_head_for_every_expectation() {
    let head = StreamHead {
        version: 7,
        hash: EventHash([9; 32]),
    };
    check_sealed(ExpectedVersion::NoStream, StreamHead::default(), 3);
    check_sealed(ExpectedVersion::Any, StreamHead::default(), 2);
    check_sealed(ExpectedVersion::Exact(7), head, 2);
    // `Any` onto a non-empty stream recomputes the canonical bytes for the real versions.
    check_sealed(ExpectedVersion::Any, head, 3);
}

#[test]
fn sealing_refuses_a_wrong_expectation() {
    let head = StreamHead {
        version: 2,
        hash: EventHash([1; 32]),
    };
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Exact(1)] {
        let prepared = PreparedAppend::new(request(expected, 1), recorded_at()).unwrap();
        match prepared.seal(head, 1) {
            Err(StoreError::WrongExpectedVersion { actual: 2, .. }) => {}
            other => panic!("{expected:?}: {other:?}"),
        }
    }
}

#[test]
fn an_append_without_events_is_refused() {
    assert!(matches!(
        PreparedAppend::new(request(ExpectedVersion::Any, 0), recorded_at()),
        Err(StoreError::EmptyAppend)
    ));
}
