//! The runtime as `serve` opens it, on a manual clock: what it records is dated by the
//! injected clock, and a process manager's deadline fires when that clock passes it, with no
//! real time waited for.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use careflow_aggregates::money::{Cents, Currency};
use careflow_aggregates::policies::timer::timer_stream;
use careflow_aggregates::purchase::{self, RequestLine, RequestPurchase};
use careflow_aggregates::{Aggregate, PurchaseWorkflow, RecordedEvent, StreamId};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};

use super::{OpenFailure, Runtime};
use crate::clock::{Clock, ManualClock};
use crate::config::Config;
use crate::runtime::actors::CommandContext;
use crate::store::Direction;

/// Polls `probe` until it answers, for at most 20 s of real time.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn events(runtime: &Runtime, stream: &StreamId) -> Vec<RecordedEvent> {
    runtime
        .store
        .read_stream(stream, 1, Direction::Forward, 100)
        .await
        .unwrap()
}

fn count(events: &[RecordedEvent], event_type: &str) -> usize {
    events.iter().filter(|e| e.event_type == event_type).count()
}

/// Requests a purchase with no `approval_deadline`: the policy's default (48 hours after
/// the request was recorded) applies.
async fn request(runtime: &Runtime, clock: &ManualClock, requisition: &str) -> RecordedEvent {
    let stream = StreamId::new(PurchaseWorkflow::KIND, requisition).unwrap();
    let outcome = runtime
        .registry
        .execute::<PurchaseWorkflow>(
            &stream,
            purchase::Command::RequestPurchase(RequestPurchase {
                requester: "nurse-1".into(),
                facility: "MAIN".into(),
                vendor_id: "V-1".into(),
                lines: vec![RequestLine {
                    item_id: "GAUZE".into(),
                    quantity: 10,
                    unit_price: Cents(250),
                }],
                reason: "restock".into(),
                approval_deadline: None,
                currency: Currency::default(),
            }),
            CommandContext {
                command_id: runtime.clock.new_id(),
                correlation_id: "clock-test".into(),
                causation_id: "clock-test".into(),
                principal: "ehr".into(),
                source: "test".into(),
                occurred_at: clock.now(),
                check_duplicate: false,
            },
        )
        .await
        .unwrap();
    outcome.events.into_iter().next().unwrap()
}

#[actix_rt::test]
async fn an_approval_deadline_fires_when_the_injected_clock_passes_it_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let env = BTreeMap::from([(
        "CAREFLOW_DATA_DIR".to_string(),
        dir.path().join("data").display().to_string(),
    )]);
    let config = Config::from_sources(None, None, &env).unwrap();
    // Far in the future: a component still reading the wall clock would date the request
    // now (its deadline then 48 real hours away) or never see the deadline come.
    let start: DateTime<Utc> = Utc.with_ymd_and_hms(2100, 1, 4, 9, 0, 0).unwrap();
    let manual = Clock::manual(start);
    let runtime = match Runtime::open(&config, &manual.clock()).await {
        Ok(runtime) => runtime,
        Err(OpenFailure::Retry(error) | OpenFailure::Fatal(error)) => panic!("{error}"),
    };

    // The request is recorded at the clock's time, and its deadline is 48 hours after.
    let requested = request(&runtime, &manual, "REQ-CLOCK").await;
    assert_eq!(requested.metadata.recorded_at, start);
    assert_eq!(requested.metadata.occurred_at, start);
    let due = start + TimeDelta::hours(48);
    let timers = timer_stream("purchase_approval").unwrap();
    let scheduled = eventually("the deadline timer", || async {
        let events = events(&runtime, &timers).await;
        events
            .into_iter()
            .find(|e| e.event_type == "TimerScheduled")
    })
    .await;
    assert_eq!(scheduled.data["due_at"], serde_json::json!(due));
    assert_eq!(scheduled.metadata.recorded_at, start);

    // One second short of the deadline: the runner goes round its loop (it schedules a
    // second purchase's timer, after looking for due ones) and fires nothing.
    manual.advance(Duration::from_secs(48 * 3_600 - 1));
    request(&runtime, &manual, "REQ-LATER").await;
    eventually("the second purchase's timer", || async {
        let events = events(&runtime, &timers).await;
        (count(&events, "TimerScheduled") == 2).then_some(())
    })
    .await;
    assert_eq!(count(&events(&runtime, &timers).await, "TimerFired"), 0);

    // At the deadline the timer fires (woken by the clock, not by real time passing), and
    // the purchase is escalated once; the later purchase's deadline is still ahead.
    manual.advance(Duration::from_secs(1));
    let purchase = StreamId::new(PurchaseWorkflow::KIND, "REQ-CLOCK").unwrap();
    let escalated = eventually("the escalation", || async {
        events(&runtime, &purchase)
            .await
            .into_iter()
            .find(|e| e.event_type == "ApprovalEscalated")
    })
    .await;
    assert_eq!(escalated.metadata.recorded_at, due);
    let timer_events = events(&runtime, &timers).await;
    assert_eq!(count(&timer_events, "TimerFired"), 1);
    let fired = timer_events
        .iter()
        .find(|e| e.event_type == "TimerFired")
        .unwrap();
    assert_eq!(fired.metadata.recorded_at, due);
    let later = StreamId::new(PurchaseWorkflow::KIND, "REQ-LATER").unwrap();
    assert_eq!(
        count(&events(&runtime, &later).await, "ApprovalEscalated"),
        0
    );

    runtime.shutdown(async {}).await;
}
