//! The event store conformance suite: every case runs against every backend.
//!
//! Each case gets a fresh store (a temp SQLite file, its own PostgreSQL schema, or a fresh fake
//! KurrentDB server) and, when it ends, the whole log is checked: positions run 1..=head without
//! a gap (on KurrentDB, whose positions are commit positions: strictly increasing) and every
//! stream's hash chain verifies.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use careflow::store::kurrentdb::KurrentStore;
use careflow::store::postgres::{PostgresConfig, PostgresStore};
use careflow::store::sqlite::{SqliteConfig, SqliteStore};
use careflow::store::{
    self, AppendRequest, Appended, CommandMeta, Direction, EventStore, ExpectedVersion,
    ProposedEvent, StoreError,
};
use careflow_aggregates::{ChainVerifier, RecordedEvent, StreamId};
use chrono::{TimeZone, Utc};
use fake_kurrentdb::FakeKurrentDb;
use serde_json::json;
use uuid::Uuid;

use crate::support::{TempDir, drop_schema, eventually, postgres_url, unique_schema};

/// One backend under test.
enum Backend {
    Sqlite { _dir: TempDir },
    Postgres { url: String, schema: String },
    Kurrent { server: FakeKurrentDb },
}

struct Harness {
    store: Arc<dyn EventStore>,
    backend: Backend,
}

impl Harness {
    fn sqlite() -> Self {
        Self::sqlite_with(|_| {})
    }

    /// SQLite with a tiny memtable, so every case also runs across many index flushes and
    /// reads merge the flushed index with the in-memory tail.
    fn sqlite_flushing() -> Self {
        Self::sqlite_with(|c| {
            c.flush_at = 7;
            c.idle_flush_after = Duration::from_millis(1);
        })
    }

    fn sqlite_with(tune: impl FnOnce(&mut SqliteConfig)) -> Self {
        let dir = TempDir::new();
        let mut config = SqliteConfig::new(dir.path().join("careflow.db"));
        tune(&mut config);
        let store = SqliteStore::open(config).unwrap();
        Self {
            store: Arc::new(store),
            backend: Backend::Sqlite { _dir: dir },
        }
    }

    async fn postgres() -> Option<Self> {
        let url = postgres_url().await?;
        let schema = unique_schema("conf");
        let store = PostgresStore::open(PostgresConfig::new(&url, &schema))
            .await
            .unwrap();
        Some(Self {
            store: Arc::new(store),
            backend: Backend::Postgres { url, schema },
        })
    }

    /// A fresh fake KurrentDB server and the backend connected to it.
    async fn kurrentdb() -> Self {
        let server = FakeKurrentDb::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let store = KurrentStore::open(&server.connection_string())
            .await
            .unwrap();
        Self {
            store: Arc::new(store),
            backend: Backend::Kurrent { server },
        }
    }

    /// Whether positions are dense (1, 2, 3, ...): SQLite and PostgreSQL; KurrentDB's commit
    /// positions are only increasing.
    fn dense(&self) -> bool {
        !matches!(self.backend, Backend::Kurrent { .. })
    }

    /// Whether `append_all` commits a unit across several streams (not on KurrentDB).
    fn atomic_across_streams(&self) -> bool {
        !matches!(self.backend, Backend::Kurrent { .. })
    }

    /// How many events the log holds after position `head`.
    async fn appended_since(&self, head: u64) -> usize {
        read_everything(&self.store)
            .await
            .iter()
            .filter(|e| e.position > head)
            .count()
    }

    /// Another handle on the same database, as a second careflow node would open it.
    async fn second_node(&self) -> Option<Arc<dyn EventStore>> {
        match &self.backend {
            Backend::Sqlite { .. } => None,
            Backend::Kurrent { server } => Some(Arc::new(
                KurrentStore::open(&server.connection_string())
                    .await
                    .unwrap(),
            )),
            Backend::Postgres { url, schema } => Some(Arc::new(
                PostgresStore::open(PostgresConfig::new(url, schema))
                    .await
                    .unwrap(),
            )),
        }
    }

    /// The end-of-case check, then cleanup.
    async fn finish(self) {
        let all = read_everything(&self.store).await;
        assert_log_is_sound(&all, self.dense());
        self.store.close().await;
        match self.backend {
            Backend::Postgres { url, schema } => drop_schema(&url, &schema).await,
            Backend::Kurrent { server } => {
                // Every careflow event the server holds is in the log careflow read.
                let user_events = server.log().lock().unwrap().user_events();
                assert_eq!(user_events, all.len(), "read_all missed events");
                server.stop().await;
            }
            Backend::Sqlite { .. } => {}
        }
    }
}

async fn read_everything(store: &Arc<dyn EventStore>) -> Vec<RecordedEvent> {
    let mut out: Vec<RecordedEvent> = Vec::new();
    loop {
        let from = out.last().map_or(1, |e| e.position + 1);
        let page = store.read_all(from, 1000).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Positions are 1..=n without a gap (`dense`) or strictly increasing, and every stream's
/// chain verifies.
fn assert_log_is_sound(all: &[RecordedEvent], dense: bool) {
    for (i, e) in all.iter().enumerate() {
        if dense {
            assert_eq!(
                e.position,
                i as u64 + 1,
                "gap or disorder in the global log"
            );
        } else if i > 0 {
            assert!(
                e.position > all[i - 1].position,
                "disorder in the global log"
            );
        }
    }
    let mut chains: BTreeMap<StreamId, ChainVerifier> = BTreeMap::new();
    for e in all {
        let verifier = chains
            .entry(e.stream_id.clone())
            .or_insert_with(|| ChainVerifier::new(e.stream_id.clone()));
        if let Err(breaks) = verifier.check(e) {
            panic!("chain broken at {} v{}: {breaks:?}", e.stream_id, e.version);
        }
    }
}

fn stream(id: &str) -> StreamId {
    StreamId::new("patient_account", id).unwrap()
}

fn request(stream_id: &StreamId, expected: ExpectedVersion, n: usize) -> AppendRequest {
    request_with(stream_id, expected, n, Uuid::new_v4())
}

fn request_with(
    stream_id: &StreamId,
    expected: ExpectedVersion,
    n: usize,
    command_id: Uuid,
) -> AppendRequest {
    AppendRequest {
        stream_id: stream_id.clone(),
        expected,
        meta: CommandMeta {
            command_id,
            correlation_id: "corr".into(),
            causation_id: "cause".into(),
            principal: "ehr".into(),
            source: "test".into(),
            occurred_at: Utc.with_ymd_and_hms(2026, 11, 25, 8, 0, 0).unwrap(),
        },
        events: (0..n)
            .map(|i| ProposedEvent {
                event_type: "ChargePosted".into(),
                schema_version: 1,
                data: json!({"charge_id": format!("C{i}"), "unit_price": "12.50", "q": i}),
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// The cases.

async fn append_then_read_forward_backward_and_from_a_version(h: &Harness) {
    let s = stream("M1");
    let first = h
        .store
        .append(request(&s, ExpectedVersion::NoStream, 3))
        .await
        .unwrap();
    assert_eq!((first.version, first.events.len()), (3, 3));
    assert!(!first.duplicate);
    let second = h
        .store
        .append(request(&s, ExpectedVersion::Exact(3), 2))
        .await
        .unwrap();
    assert_eq!(second.version, 5);
    if h.dense() {
        assert_eq!(second.position, first.position + 2);
    } else {
        assert!(second.events[0].position > first.position);
        assert!(second.position > second.events[0].position);
    }

    let forward = h
        .store
        .read_stream(&s, 1, Direction::Forward, 100)
        .await
        .unwrap();
    assert_eq!(
        forward.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(forward[..3], first.events[..]);
    assert_eq!(
        forward[1].data,
        json!({"charge_id": "C1", "unit_price": "12.50", "q": 1})
    );
    assert_eq!(forward[0].metadata.principal, "ehr");

    let from_three = h
        .store
        .read_stream(&s, 3, Direction::Forward, 2)
        .await
        .unwrap();
    assert_eq!(
        from_three.iter().map(|e| e.version).collect::<Vec<_>>(),
        [3, 4]
    );

    let backward = h
        .store
        .read_stream(&s, u64::MAX, Direction::Backward, 100)
        .await
        .unwrap();
    assert_eq!(
        backward.iter().map(|e| e.version).collect::<Vec<_>>(),
        [5, 4, 3, 2, 1]
    );
    let backward_from_two = h
        .store
        .read_stream(&s, 2, Direction::Backward, 100)
        .await
        .unwrap();
    assert_eq!(
        backward_from_two
            .iter()
            .map(|e| e.version)
            .collect::<Vec<_>>(),
        [2, 1]
    );

    let none = h
        .store
        .read_stream(&stream("nobody"), 1, Direction::Forward, 10)
        .await
        .unwrap();
    assert!(none.is_empty());
}

async fn expectations_are_enforced_and_refusals_append_nothing(h: &Harness) {
    let s = stream("M2");
    h.store
        .append(request(&s, ExpectedVersion::NoStream, 1))
        .await
        .unwrap();
    let head = h.store.head_position().await.unwrap();

    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Exact(2),
    ] {
        match h.store.append(request(&s, expected, 1)).await {
            Err(StoreError::WrongExpectedVersion { actual: 1, .. }) => {}
            other => panic!("{expected:?}: expected a conflict at version 1, got {other:?}"),
        }
    }
    assert!(matches!(
        h.store
            .append(request(&stream("M2b"), ExpectedVersion::Exact(4), 1))
            .await,
        Err(StoreError::WrongExpectedVersion { actual: 0, .. })
    ));
    assert!(matches!(
        h.store.append(request(&s, ExpectedVersion::Any, 0)).await,
        Err(StoreError::EmptyAppend)
    ));
    assert_eq!(
        h.store.head_position().await.unwrap(),
        head,
        "a refusal appended something"
    );

    let any = h
        .store
        .append(request(&s, ExpectedVersion::Any, 2))
        .await
        .unwrap();
    assert_eq!(any.version, 3);
}

async fn racing_appends_at_one_expected_version_exactly_one_wins(h: &Harness) {
    for round in 0..20 {
        let s = stream(&format!("race{round}"));
        h.store
            .append(request(&s, ExpectedVersion::NoStream, 1))
            .await
            .unwrap();
        let racers: Vec<_> = (0..4)
            .map(|_| {
                let store = Arc::clone(&h.store);
                let req = request(&s, ExpectedVersion::Exact(1), 1);
                tokio::spawn(async move { store.append(req).await })
            })
            .collect();
        let mut wins = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(appended) => {
                    wins += 1;
                    assert_eq!(appended.version, 2);
                }
                Err(StoreError::WrongExpectedVersion { actual: 2, .. }) => {}
                Err(other) => panic!("unexpected error {other}"),
            }
        }
        assert_eq!(wins, 1, "round {round}");
    }
}

async fn a_retried_command_appends_nothing_and_returns_the_first_result(h: &Harness) {
    let s = stream("M3");
    let command = Uuid::new_v4();
    let first = h
        .store
        .append(request_with(&s, ExpectedVersion::NoStream, 2, command))
        .await
        .unwrap();
    let head = h.store.head_position().await.unwrap();

    // The same command again, with its original (now stale) expectation, also after another
    // command moved the stream on.
    for _ in 0..2 {
        let again = h
            .store
            .append(request_with(&s, ExpectedVersion::NoStream, 2, command))
            .await
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(again.events, first.events);
        assert_eq!(
            (again.version, again.position),
            (first.version, first.position)
        );
        h.store
            .append(request(&s, ExpectedVersion::Any, 1))
            .await
            .unwrap();
    }
    assert_eq!(h.appended_since(head).await, 2);

    // An `Any` append retried as it was sent.
    let any_command = Uuid::new_v4();
    let any_first = h
        .store
        .append(request_with(&s, ExpectedVersion::Any, 1, any_command))
        .await
        .unwrap();
    let any_again = h
        .store
        .append(request_with(&s, ExpectedVersion::Any, 1, any_command))
        .await
        .unwrap();
    assert!(any_again.duplicate);
    assert_eq!(any_again.events, any_first.events);
    assert_eq!(h.appended_since(head).await, 3);

    let found: Appended = h.store.find_command(&s, command).await.unwrap().unwrap();
    assert_eq!(found.events, first.events);
    let missing = h.store.find_command(&s, Uuid::new_v4()).await.unwrap();
    assert!(missing.is_none());
    let elsewhere = h
        .store
        .find_command(&stream("other"), command)
        .await
        .unwrap();
    assert!(elsewhere.is_none());

    // Concurrent retries of one new command (they may land in one group commit).
    let command = Uuid::new_v4();
    let s2 = stream("M3b");
    let tries: Vec<_> = (0..6)
        .map(|_| {
            let store = Arc::clone(&h.store);
            let req = request_with(&s2, ExpectedVersion::NoStream, 1, command);
            tokio::spawn(async move { store.append(req).await.unwrap() })
        })
        .collect();
    let mut results = Vec::new();
    for t in tries {
        results.push(t.await.unwrap());
    }
    assert_eq!(results.iter().filter(|r| !r.duplicate).count(), 1);
    assert!(results.iter().all(|r| r.events == results[0].events));
    let events = h
        .store
        .read_stream(&s2, 1, Direction::Forward, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
}

async fn the_global_log_is_in_commit_order_and_pages(h: &Harness) {
    let streams: Vec<_> = (0..5).map(|i| stream(&format!("G{i}"))).collect();
    let base = h.store.head_position().await.unwrap();
    let mut expected = Vec::new();
    for round in 0..4u64 {
        for s in &streams {
            let expectation = if round == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(round)
            };
            let a = h.store.append(request(s, expectation, 1)).await.unwrap();
            expected.push(a.events[0].event_id);
        }
    }
    let mut got = Vec::new();
    let mut from = base + 1;
    loop {
        let page = h.store.read_all(from, 7).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.position + 1;
        got.extend(page.iter().map(|e| e.event_id));
    }
    assert_eq!(got, expected);
    assert_eq!(h.store.read_all(from, 10).await.unwrap(), vec![]);
}

async fn a_subscriber_starting_mid_way_sees_every_event_once_in_order(h: &Harness) {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 60;
    let base = h.store.head_position().await.unwrap();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&h.store);
            tokio::spawn(async move {
                let s = stream(&format!("sub{w}"));
                let mut version = 0;
                for i in 0..PER_WRITER {
                    let expected = if i == 0 {
                        ExpectedVersion::NoStream
                    } else {
                        ExpectedVersion::Exact(version)
                    };
                    version = store
                        .append(request(&s, expected, 1 + i % 2))
                        .await
                        .unwrap()
                        .version;
                }
            })
        })
        .collect();
    // Start once the writers are under way, from the beginning of this case's events.
    eventually(Duration::from_secs(30), "the writers to start", || async {
        (h.store.head_position().await.unwrap() > base + 20).then_some(())
    })
    .await;
    let mut subscription = store::subscribe(Arc::clone(&h.store), base + 1)
        .await
        .with_batch(37);
    let total: usize = WRITERS * (0..PER_WRITER).map(|i| 1 + i % 2).sum::<usize>();
    let mut seen = Vec::with_capacity(total);
    while seen.len() < total {
        let batch = tokio::time::timeout(Duration::from_secs(30), subscription.next_batch())
            .await
            .expect("subscription stalled")
            .unwrap();
        seen.extend(batch.iter().cloned());
    }
    for w in writers {
        w.await.unwrap();
    }
    let positions: Vec<u64> = seen.iter().map(|e| e.position).collect();
    let expected: Vec<u64> = read_everything(&h.store)
        .await
        .iter()
        .map(|e| e.position)
        .filter(|&p| p > base)
        .collect();
    assert_eq!(expected.len(), total);
    if h.dense() {
        assert_eq!(
            expected,
            (base + 1..=base + total as u64).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        positions, expected,
        "subscription skipped, repeated or reordered"
    );
    let ids: HashSet<Uuid> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), total);
    // Nothing more arrives after the last write.
    assert!(subscription.try_next_batch().await.unwrap().is_empty());
}

async fn a_live_subscription_wakes_for_new_events(h: &Harness) {
    let base = h.store.head_position().await.unwrap();
    let mut subscription = store::subscribe(Arc::clone(&h.store), base + 1).await;
    let waiting = tokio::spawn(async move { subscription.next_batch().await.unwrap() });
    let appended = h
        .store
        .append(request(&stream("live"), ExpectedVersion::NoStream, 2))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("live subscription never woke")
        .unwrap();
    assert_eq!(got.to_vec(), appended.events);
}

async fn stream_ids_that_break_the_rule_never_reach_the_store(_h: &Harness) {
    for bad in [
        "patient_account-",
        "patient_account-a b",
        "patient_account-x/y",
        "nodash",
    ] {
        assert!(StreamId::parse(bad).is_err(), "{bad:?} accepted");
    }
    assert!(StreamId::new("patient_account", &"x".repeat(129)).is_err());
    // And the store refuses to hand back a row whose stream id breaks it (see the backend
    // tests, which write such a row by hand).
}

/// `append_all`: several streams commit together, or nothing of the unit is written when one
/// expectation fails; a retried unit answers its first result; appends queued around a unit
/// are unaffected.
async fn an_atomic_append_commits_every_stream_or_none(h: &Harness) {
    if !h.atomic_across_streams() {
        return an_atomic_append_is_refused_across_streams_and_whole_on_one(h).await;
    }
    let (a, b, c) = (stream("U1"), stream("U2"), stream("U3"));
    h.store
        .append(request(&b, ExpectedVersion::NoStream, 1))
        .await
        .unwrap();
    let head = h.store.head_position().await.unwrap();

    // One conflicting part (b is at version 1, not 0): nothing of a, b or c is written.
    let refused = h
        .store
        .append_all(vec![
            request(&a, ExpectedVersion::NoStream, 2),
            request(&b, ExpectedVersion::Exact(0), 1),
            request(&c, ExpectedVersion::NoStream, 1),
        ])
        .await;
    match refused {
        Err(StoreError::WrongExpectedVersion {
            stream, actual: 1, ..
        }) => assert_eq!(stream, b),
        other => panic!("expected the conflict of {b}, got {other:?}"),
    }
    assert_eq!(
        h.store.head_position().await.unwrap(),
        head,
        "a refused unit appended"
    );
    for s in [&a, &c] {
        let read = h
            .store
            .read_stream(s, 1, Direction::Forward, 10)
            .await
            .unwrap();
        assert!(read.is_empty(), "{s} holds events of a refused unit");
    }
    assert!(matches!(
        h.store
            .append_all(vec![
                request(&a, ExpectedVersion::NoStream, 1),
                request(&c, ExpectedVersion::NoStream, 0),
            ])
            .await,
        Err(StoreError::EmptyAppend)
    ));
    assert_eq!(h.store.head_position().await.unwrap(), head);

    // Every expectation holds: all parts commit, in request order, gap-free.
    let ids = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    let unit = || {
        vec![
            request_with(&a, ExpectedVersion::NoStream, 2, ids[0]),
            request_with(&b, ExpectedVersion::Exact(1), 1, ids[1]),
            request_with(&a, ExpectedVersion::Exact(2), 1, ids[2]),
        ]
    };
    let done = h.store.append_all(unit()).await.unwrap();
    assert_eq!(
        done.iter()
            .map(|d| (d.stream_id.clone(), d.version, d.position, d.duplicate))
            .collect::<Vec<_>>(),
        vec![
            (a.clone(), 2, head + 2, false),
            (b.clone(), 2, head + 3, false),
            (a.clone(), 3, head + 4, false),
        ]
    );
    let read = h
        .store
        .read_stream(&a, 1, Direction::Forward, 10)
        .await
        .unwrap();
    assert_eq!(read.len(), 3);
    assert_eq!(read[2].metadata.command_id, ids[2]);

    // The same unit again (a retry): the first answers, nothing new.
    let again = h.store.append_all(unit()).await.unwrap();
    assert!(again.iter().all(|d| d.duplicate));
    assert_eq!(
        again.iter().map(|d| d.position).collect::<Vec<_>>(),
        done.iter().map(|d| d.position).collect::<Vec<_>>()
    );
    assert_eq!(h.store.head_position().await.unwrap(), head + 4);

    // Single appends racing with units all land, and units stay whole.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = Arc::clone(&h.store);
        tasks.push(tokio::spawn(async move {
            let (x, y) = (stream(&format!("R{i}x")), stream(&format!("R{i}y")));
            if i % 2 == 0 {
                store
                    .append_all(vec![
                        request(&x, ExpectedVersion::NoStream, 1),
                        request(&y, ExpectedVersion::NoStream, 2),
                    ])
                    .await
                    .map(|all| all.len())
            } else {
                store
                    .append(request(&x, ExpectedVersion::NoStream, 1))
                    .await
                    .map(|_| 1)
            }
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    for i in (0..16).step_by(2) {
        let y = stream(&format!("R{i}y"));
        let read = h
            .store
            .read_stream(&y, 1, Direction::Forward, 10)
            .await
            .unwrap();
        assert_eq!(read.len(), 2);
    }
}

/// `append_all` where the backend commits only one stream at a time (KurrentDB): a unit across
/// streams is refused with a clear error and appends nothing; a unit on one stream is one
/// atomic append whose parts chain, conflicts as a whole, and answers a retry with its first
/// results.
async fn an_atomic_append_is_refused_across_streams_and_whole_on_one(h: &Harness) {
    let (a, b) = (stream("U1"), stream("U2"));
    h.store
        .append(request(&b, ExpectedVersion::NoStream, 1))
        .await
        .unwrap();
    let head = h.store.head_position().await.unwrap();
    match h
        .store
        .append_all(vec![
            request(&a, ExpectedVersion::NoStream, 2),
            request(&b, ExpectedVersion::Exact(1), 1),
        ])
        .await
    {
        Err(StoreError::AtomicAcrossStreams { streams: 2, .. }) => {}
        other => panic!("expected a refusal across streams, got {other:?}"),
    }
    assert_eq!(h.store.head_position().await.unwrap(), head);
    assert!(
        h.store
            .read_stream(&a, 1, Direction::Forward, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        h.store
            .append_all(vec![
                request(&a, ExpectedVersion::NoStream, 1),
                request(&a, ExpectedVersion::Exact(1), 0),
            ])
            .await,
        Err(StoreError::EmptyAppend)
    ));

    // One stream, two commands: the second's expectation is checked against the first's end.
    let ids = [Uuid::new_v4(), Uuid::new_v4()];
    let unit = || {
        vec![
            request_with(&a, ExpectedVersion::NoStream, 2, ids[0]),
            request_with(&a, ExpectedVersion::Exact(2), 1, ids[1]),
        ]
    };
    let done = h.store.append_all(unit()).await.unwrap();
    assert_eq!(
        done.iter()
            .map(|d| (d.version, d.duplicate))
            .collect::<Vec<_>>(),
        [(2, false), (3, false)]
    );
    assert!(done[1].position > done[0].position && done[0].position > head);
    let again = h.store.append_all(unit()).await.unwrap();
    assert!(again.iter().all(|d| d.duplicate));
    assert_eq!(
        again.iter().map(|d| &d.events).collect::<Vec<_>>(),
        done.iter().map(|d| &d.events).collect::<Vec<_>>()
    );
    assert_eq!(h.appended_since(head).await, 3);

    // A part whose expectation fails sinks the unit.
    match h
        .store
        .append_all(vec![
            request(&a, ExpectedVersion::Exact(3), 1),
            request(&a, ExpectedVersion::Exact(9), 1),
        ])
        .await
    {
        Err(StoreError::WrongExpectedVersion { actual: 4, .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(h.appended_since(head).await, 3);
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let h = super::Harness::sqlite();
                    super::$case(&h).await;
                    h.finish().await;
                }
            )*
        }
        mod sqlite_flushing {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let h = super::Harness::sqlite_flushing();
                    super::$case(&h).await;
                    h.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(h) = super::Harness::postgres().await else { return };
                    super::$case(&h).await;
                    h.finish().await;
                }
            )*
        }
        mod kurrentdb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let h = super::Harness::kurrentdb().await;
                    super::$case(&h).await;
                    h.finish().await;
                }
            )*
        }
    };
}

conformance!(
    append_then_read_forward_backward_and_from_a_version,
    expectations_are_enforced_and_refusals_append_nothing,
    racing_appends_at_one_expected_version_exactly_one_wins,
    a_retried_command_appends_nothing_and_returns_the_first_result,
    the_global_log_is_in_commit_order_and_pages,
    a_subscriber_starting_mid_way_sees_every_event_once_in_order,
    a_live_subscription_wakes_for_new_events,
    stream_ids_that_break_the_rule_never_reach_the_store,
    an_atomic_append_commits_every_stream_or_none,
);

// ---------------------------------------------------------------------------------------------
// Backend-specific cases.

/// A slow PostgreSQL transaction holds positions; later appends, from this node and from a
/// second node, must not become visible before it commits, and a subscriber that is live the
/// whole time sees every event exactly once, in position order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_delayed_transaction_cannot_be_overtaken() {
    let Some(h) = Harness::postgres().await else {
        return;
    };
    let Backend::Postgres { url, schema } = &h.backend else {
        unreachable!("postgres harness")
    };
    let pg = PostgresStore::open(PostgresConfig::new(url, schema))
        .await
        .unwrap();
    let node_b = h.second_node().await.unwrap();
    h.store
        .append(request(&stream("before"), ExpectedVersion::NoStream, 1))
        .await
        .unwrap();

    let mut subscription = store::subscribe(Arc::clone(&h.store), 1).await;
    let mut seen = subscription.next_batch().await.unwrap().to_vec();
    assert_eq!(seen.len(), 1);

    let held = pg
        .hold_append(request(&stream("slow"), ExpectedVersion::NoStream, 2))
        .await
        .unwrap();
    assert_eq!(held.events[0].position, 2);

    // Later appends from both nodes, issued while the slow transaction is open.
    let later: Vec<_> = (0..6)
        .map(|i| {
            let store = if i % 2 == 0 {
                Arc::clone(&h.store)
            } else {
                Arc::clone(&node_b)
            };
            tokio::spawn(async move {
                store
                    .append(request(
                        &stream(&format!("fast{i}")),
                        ExpectedVersion::NoStream,
                        1,
                    ))
                    .await
                    .unwrap()
            })
        })
        .collect();
    // Wait until PostgreSQL shows the later writers blocked behind the held lock.
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    eventually(
        Duration::from_secs(30),
        "writers to queue behind the lock",
        || async {
            let waiting: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND application_name = 'careflow'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (waiting >= 2).then_some(())
        },
    )
    .await;
    // Nothing later is visible while position 2 is uncommitted.
    assert!(subscription.try_next_batch().await.unwrap().is_empty());
    assert!(h.store.read_all(2, 100).await.unwrap().is_empty());

    let committed = held.commit().await.unwrap();
    for t in later {
        t.await.unwrap();
    }
    while seen.len() < 1 + 2 + 6 {
        let batch = tokio::time::timeout(Duration::from_secs(30), subscription.next_batch())
            .await
            .expect("subscription stalled")
            .unwrap();
        seen.extend(batch.iter().cloned());
    }
    assert_eq!(
        seen.iter().map(|e| e.position).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    assert_eq!(seen[1..3], committed[..]);
    pg.close().await;
    node_b.close().await;
    h.finish().await;
}

/// Two nodes append to the same streams concurrently: optimistic concurrency holds across
/// them and the shared log stays gap-free with intact chains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_nodes_share_one_log() {
    let Some(h) = Harness::postgres().await else {
        return;
    };
    let node_b = h.second_node().await.unwrap();
    let s = stream("shared");
    h.store
        .append(request(&s, ExpectedVersion::NoStream, 1))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for node in [Arc::clone(&h.store), Arc::clone(&node_b)] {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut wins = 0;
            for _ in 0..40 {
                let head = node
                    .read_stream(&s, u64::MAX, Direction::Backward, 1)
                    .await
                    .unwrap()[0]
                    .version;
                if node
                    .append(request(&s, ExpectedVersion::Exact(head), 1))
                    .await
                    .is_ok()
                {
                    wins += 1;
                }
            }
            wins
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += t.await.unwrap();
    }
    let events = h
        .store
        .read_stream(&s, 1, Direction::Forward, 1000)
        .await
        .unwrap();
    assert_eq!(events.len(), 1 + wins);
    node_b.close().await;
    h.finish().await;
}

/// What SQLite acknowledged survives closing and reopening, and a second writer on the same
/// file is refused while the first holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reopens_with_everything_and_refuses_a_second_writer() {
    let dir = TempDir::new();
    let path = dir.path().join("careflow.db");
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    let s = stream("durable");
    let a = store
        .append(request(&s, ExpectedVersion::NoStream, 3))
        .await
        .unwrap();
    match SqliteStore::open(SqliteConfig::new(&path)) {
        Err(StoreError::Unavailable(msg)) => assert!(msg.contains("in use"), "{msg}"),
        other => panic!("second writer not refused: {:?}", other.map(|_| ())),
    }
    // A read-only handle works beside the writer.
    let reader = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(
        reader
            .read_stream(&s, 1, Direction::Forward, 10)
            .await
            .unwrap(),
        a.events
    );
    assert!(matches!(
        reader.append(request(&s, ExpectedVersion::Any, 1)).await,
        Err(StoreError::Closed)
    ));
    store.close().await;

    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    assert_eq!(
        store
            .read_stream(&s, 1, Direction::Forward, 10)
            .await
            .unwrap(),
        a.events
    );
    let b = store
        .append(request(&s, ExpectedVersion::Exact(3), 1))
        .await
        .unwrap();
    assert_eq!((b.version, b.position), (4, 4));
    assert_eq!(b.events[0].prev_hash, a.events[2].hash);
    store.close().await;
}

/// Stored events are append-only: the database itself refuses updates and deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_updates_and_deletes_of_events() {
    let dir = TempDir::new();
    let path = dir.path().join("careflow.db");
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    store
        .append(request(&stream("ro"), ExpectedVersion::NoStream, 1))
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let update = conn
        .execute("UPDATE events SET data = '{}'", [])
        .unwrap_err();
    assert!(update.to_string().contains("append-only"), "{update}");
    let delete = conn.execute("DELETE FROM events", []).unwrap_err();
    assert!(delete.to_string().contains("append-only"), "{delete}");
    store.close().await;
}

/// A crash leaves committed events that the stream index never saw (the memtable was only in
/// memory). Reads from another process find them by scanning the tail, and the next open
/// indexes them before taking appends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_finds_events_the_index_never_saw() {
    let dir = TempDir::new();
    let path = dir.path().join("careflow.db");
    let mut config = SqliteConfig::new(&path);
    config.flush_at = 5;
    config.idle_flush_after = Duration::from_secs(3600);
    let store = SqliteStore::open(config).unwrap();
    let s = stream("tail");
    let mut written = Vec::new();
    let mut version = 0;
    for _ in 0..4 {
        let a = store
            .append(request(&s, ExpectedVersion::Exact(version), 3))
            .await
            .unwrap();
        version = a.version;
        written.extend(a.events);
    }
    // Some entries are flushed (every 5), the rest only in memory: a read-only handle, which
    // has no memtable, must merge the index with a scan of the tail.
    let reader = SqliteStore::open_read_only(&path).unwrap();
    let seen = reader
        .read_stream(&s, 1, Direction::Forward, 100)
        .await
        .unwrap();
    assert_eq!(seen, written);
    let backward = reader
        .read_stream(&s, 11, Direction::Backward, 4)
        .await
        .unwrap();
    assert_eq!(
        backward.iter().map(|e| e.version).collect::<Vec<_>>(),
        [11, 10, 9, 8]
    );
    store.close().await;

    // Recreate what a crash before any flush leaves on disk, then reopen.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DELETE FROM stream_index; UPDATE store_meta SET value = '0' WHERE key = 'indexed_through';",
        )
        .unwrap();
    }
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    let indexed: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM stream_index", [], |r| r.get(0))
        .unwrap();
    assert_eq!(indexed, 12, "the tail was not indexed on open");
    assert_eq!(
        store
            .read_stream(&s, 1, Direction::Forward, 100)
            .await
            .unwrap(),
        written
    );
    let next = store
        .append(request(&s, ExpectedVersion::Exact(12), 1))
        .await
        .unwrap();
    assert_eq!(next.events[0].prev_hash, written[11].hash);
    store.close().await;
}

/// KurrentDB positions are commit positions: reading the log works from an event's position
/// and from the one after it (what every cursor asks for), and any other position is refused
/// with a clear error rather than a server failure. The server's own events never appear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kurrentdb_reads_from_an_event_or_the_one_after_and_refuses_other_positions() {
    let h = Harness::kurrentdb().await;
    let s = stream("P1");
    h.store
        .append(request(&s, ExpectedVersion::NoStream, 3))
        .await
        .unwrap();
    // An `Any` append leaves its marker stream on the server, outside careflow's log.
    h.store
        .append(request(&s, ExpectedVersion::Any, 1))
        .await
        .unwrap();
    let all = read_everything(&h.store).await;
    assert_eq!(all.len(), 4);
    let second = all[1].position;
    assert!(all[2].position > second + 1, "positions are byte offsets");
    let from_event = h.store.read_all(second, 10).await.unwrap();
    assert_eq!(from_event[0].position, second);
    let after_event = h.store.read_all(second + 1, 10).await.unwrap();
    assert_eq!(after_event[0].position, all[2].position);
    assert_eq!(after_event.len(), 2);
    match h.store.read_all(second + 2, 10).await {
        Err(StoreError::InvalidPosition { position }) => assert_eq!(position, second + 2),
        other => panic!("expected InvalidPosition, got {other:?}"),
    }
    assert_eq!(
        h.store.head_position().await.unwrap(),
        all[3].position,
        "the head skips the server's own (and the markers') events"
    );
    h.finish().await;
}
