//! Throughput of the two costs every append and every `audit verify` pays: canonical
//! encoding and SHA-256 chaining. Reported as events/s per batch; see docs/performance.md.

use chrono::{TimeZone, Utc};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use uuid::Uuid;

use careflow_aggregates::{
    ChainVerifier, EventHash, EventMetadata, RecordedEvent, StreamId, canonical_bytes, chain_hash,
    event_id_for,
};

fn sample_chain(n: u64) -> Vec<RecordedEvent> {
    let stream = StreamId::parse("patient_account-MRN000123").unwrap();
    let mut prev = EventHash::ZERO;
    (1..=n)
        .map(|v| {
            let command_id = Uuid::from_u128(u128::from(v));
            let mut e = RecordedEvent {
                event_id: event_id_for(command_id, 0),
                stream_id: stream.clone(),
                version: v,
                position: v,
                event_type: "ChargePosted".into(),
                schema_version: 1,
                data: json!({
                    "charge_id": format!("C-{v}"), "encounter_id": "V-2026-0001",
                    "code": "99213", "description": "Office visit, established patient",
                    "quantity": 1, "unit_price": "125.50", "currency": "USD"
                }),
                metadata: EventMetadata {
                    command_id,
                    correlation_id: "9b2f6f2e-4c1c-4a57-8f0e-0a8c6f3d2a11".into(),
                    causation_id: "9b2f6f2e-4c1c-4a57-8f0e-0a8c6f3d2a11".into(),
                    principal: "ehr-main".into(),
                    source: "http".into(),
                    recorded_at: Utc.with_ymd_and_hms(2026, 11, 25, 8, 0, 0).unwrap(),
                    occurred_at: Utc.with_ymd_and_hms(2026, 11, 25, 7, 59, 0).unwrap(),
                },
                prev_hash: prev,
                hash: EventHash::ZERO,
            };
            e.hash = chain_hash(&e);
            prev = e.hash;
            e
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let events = sample_chain(1_000);
    let mut group = c.benchmark_group("chain");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_with_input(
        BenchmarkId::new("canonical_bytes", events.len()),
        &events,
        |b, events| {
            b.iter(|| {
                events
                    .iter()
                    .map(|e| canonical_bytes(e).len())
                    .sum::<usize>()
            })
        },
    );
    group.bench_with_input(
        BenchmarkId::new("chain_hash", events.len()),
        &events,
        |b, events| {
            b.iter(|| {
                events
                    .iter()
                    .map(|e| chain_hash(e).0[0])
                    .fold(0u8, |a, x| a ^ x)
            })
        },
    );
    group.bench_with_input(
        BenchmarkId::new("verify", events.len()),
        &events,
        |b, events| {
            b.iter(|| {
                let mut v = ChainVerifier::new(events[0].stream_id.clone());
                events.iter().filter(|e| v.check(e).is_ok()).count()
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
