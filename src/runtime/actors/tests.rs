//! Registry and actor tests against a real SQLite store in a temp dir: passivation, the LRU
//! cap, snapshot + tail against full replay, conflict retries, rejections.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use careflow_aggregates::{
    AddressedCommand, Aggregate, AnyCommand, Ctx, InventoryItem, PatientAccount, RecordedEvent,
    Rejection, StreamId,
};
use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::watch;
use uuid::Uuid;

use super::{ActorConfig, CommandContext, CommandError, Registry};
use crate::store::snapshot::{MemorySnapshots, Snapshot, SnapshotStore};
use crate::store::sqlite::{SqliteConfig, SqliteStore};
use crate::store::{
    AppendRequest, Appended, CommandMeta, Direction, EventStore, ExpectedVersion, ProposedEvent,
    StoreError,
};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn EventStore>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(SqliteConfig::new(dir.path().join("careflow.db"))).unwrap();
    Fixture {
        _dir: dir,
        store: Arc::new(store),
    }
}

fn config() -> ActorConfig {
    ActorConfig {
        idle: Duration::from_secs(60),
        max_live: 1_000,
        snapshot_every: 100,
        max_conflict_retries: 3,
        arbiters: 2,
        clock: crate::clock::Clock::system(),
    }
}

fn context() -> CommandContext {
    CommandContext {
        command_id: Uuid::new_v4(),
        correlation_id: "corr-1".into(),
        causation_id: "req-1".into(),
        principal: "test".into(),
        source: "test".into(),
        occurred_at: Utc::now(),
        check_duplicate: false,
    }
}

fn stream(mrn: &str) -> StreamId {
    StreamId::new(PatientAccount::KIND, mrn).unwrap()
}

fn command(body: Value) -> <PatientAccount as Aggregate>::Command {
    PatientAccount::parse_command(body).unwrap().command
}

fn register() -> <PatientAccount as Aggregate>::Command {
    command(json!({
        "type": "RegisterPatient",
        "name": {"family": "Doe", "given": ["Jane"]},
        "birth_date": "1980-04-12",
        "gender": "female",
        "facility": "MAIN"
    }))
}

fn charge(id: &str) -> <PatientAccount as Aggregate>::Command {
    command(json!({
        "type": "PostCharge", "charge_id": id, "encounter_id": "V1", "code": "99213",
        "description": "office visit", "quantity": 1, "unit_price": "10.00"
    }))
}

async fn run(
    registry: &Registry,
    stream: &StreamId,
    command: <PatientAccount as Aggregate>::Command,
) -> Result<super::CommandOutcome, CommandError> {
    registry
        .execute::<PatientAccount>(stream, command, context())
        .await
}

async fn full_replay(
    store: &dyn EventStore,
    stream: &StreamId,
) -> <PatientAccount as Aggregate>::State {
    let events = store
        .read_stream(stream, 1, Direction::Forward, 100_000)
        .await
        .unwrap();
    let decoded: Vec<_> = events
        .iter()
        .map(|e| PatientAccount::decode(&e.event_type, e.schema_version, e.data.clone()).unwrap())
        .collect();
    PatientAccount::replay(&decoded)
}

async fn within<F: FnMut() -> bool>(what: &str, mut check: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await; // poll interval, bounded by the deadline
    }
}

#[actix_rt::test]
async fn commands_append_and_the_live_state_equals_a_replay() {
    let f = fixture();
    let registry = Registry::start(f.store.clone(), Arc::new(MemorySnapshots::new()), config());
    let s = stream("M1");
    let first = run(&registry, &s, register()).await.unwrap();
    assert_eq!((first.version, first.events.len()), (1, 1));
    assert_eq!(first.events[0].metadata.correlation_id, "corr-1");
    for i in 0..3 {
        run(&registry, &s, charge(&format!("C{i}"))).await.unwrap();
    }
    let observed = registry.observe::<PatientAccount>(&s).await.unwrap();
    assert_eq!(observed.version, 4);
    assert_eq!(observed.state, full_replay(f.store.as_ref(), &s).await);
    assert_eq!(observed.state.balance.0, 3_000);
}

#[actix_rt::test]
async fn a_rejected_command_appends_nothing() {
    let f = fixture();
    let registry = Registry::start(f.store.clone(), Arc::new(MemorySnapshots::new()), config());
    let s = stream("M1");
    let refused = run(&registry, &s, charge("C1")).await.unwrap_err();
    assert!(
        matches!(refused, CommandError::Rejected(Rejection::NotRegistered)),
        "{refused:?}"
    );
    run(&registry, &s, register()).await.unwrap();
    let again = run(&registry, &s, register()).await.unwrap_err();
    assert!(matches!(
        again,
        CommandError::Rejected(Rejection::AlreadyRegistered)
    ));
    assert_eq!(f.store.head_position().await.unwrap(), 1);
}

#[actix_rt::test]
async fn idle_actors_are_passivated_and_come_back_with_their_state() {
    let f = fixture();
    let registry = Registry::start(f.store.clone(), Arc::new(MemorySnapshots::new()), config());
    let (a, b) = (stream("A"), stream("B"));
    run(&registry, &a, register()).await.unwrap();
    run(&registry, &b, register()).await.unwrap();
    assert_eq!(registry.live(), 2);
    within("two running actors", || registry.running() == 2).await;

    // Nothing is idle long enough yet.
    assert_eq!(registry.passivate_idle(Instant::now()), 0);
    let later = Instant::now() + Duration::from_secs(61);
    assert_eq!(registry.passivate_idle(later), 2);
    assert_eq!(registry.live(), 0);
    within("passivated actors to stop", || registry.running() == 0).await;

    // A new command rebuilds the state: a second registration is still refused.
    let again = run(&registry, &a, register()).await.unwrap_err();
    assert!(matches!(
        again,
        CommandError::Rejected(Rejection::AlreadyRegistered)
    ));
    let charged = run(&registry, &a, charge("C1")).await.unwrap();
    assert_eq!(charged.version, 2);
}

#[actix_rt::test]
async fn the_cap_passivates_the_least_recently_used_actor() {
    let f = fixture();
    let registry = Registry::start(
        f.store.clone(),
        Arc::new(MemorySnapshots::new()),
        ActorConfig {
            max_live: 2,
            ..config()
        },
    );
    let (a, b, c) = (stream("A"), stream("B"), stream("C"));
    run(&registry, &a, register()).await.unwrap();
    run(&registry, &b, register()).await.unwrap();
    // Using A again makes B the least recently used.
    run(&registry, &a, charge("C1")).await.unwrap();
    run(&registry, &c, register()).await.unwrap();
    assert_eq!(registry.live(), 2);
    assert!(registry.is_live(&a) && registry.is_live(&c) && !registry.is_live(&b));
    within("the evicted actor to stop", || registry.running() == 2).await;
    // B still works after its eviction.
    assert_eq!(run(&registry, &b, charge("C1")).await.unwrap().version, 2);
    assert!(!registry.is_live(&a), "A is now the least recently used");
}

#[actix_rt::test]
async fn snapshot_plus_tail_equals_full_replay_and_bad_snapshots_are_ignored() {
    let f = fixture();
    let snapshots = Arc::new(MemorySnapshots::new());
    let registry = Registry::start(
        f.store.clone(),
        snapshots.clone(),
        ActorConfig {
            snapshot_every: 3,
            ..config()
        },
    );
    let s = stream("M1");
    run(&registry, &s, register()).await.unwrap();
    for i in 0..9 {
        run(&registry, &s, charge(&format!("C{i}"))).await.unwrap();
    }
    // 10 events: snapshots at 3, 6 and 9 (written in the background).
    within("the snapshot at version 9", || {
        snapshots.get(&s).is_some_and(|snap| snap.version == 9)
    })
    .await;
    let replayed = full_replay(f.store.as_ref(), &s).await;

    // A fresh registry starts from the snapshot and reads the one-event tail.
    let fresh = Registry::start(f.store.clone(), snapshots.clone(), config());
    let observed = fresh.observe::<PatientAccount>(&s).await.unwrap();
    assert_eq!((observed.version, &observed.state), (10, &replayed));

    // Proof that the snapshot is really used: a planted state shows through...
    let mut planted = snapshots.get(&s).unwrap();
    let mut state: serde_json::Value = serde_json::from_str(&planted.state).unwrap();
    state["facility"] = json!("PLANTED");
    planted.state = state.to_string();
    snapshots.put(planted.clone());
    let fresh = Registry::start(f.store.clone(), snapshots.clone(), config());
    let observed = fresh.observe::<PatientAccount>(&s).await.unwrap();
    assert_eq!(observed.state.facility, "PLANTED");
    assert_eq!(observed.version, 10);

    // ...while one whose anchor event does not match, one of another snapshot version and
    // one that does not decode are all ignored: full replay.
    for broken in [
        Snapshot {
            head_hash: "00".repeat(32),
            ..planted.clone()
        },
        Snapshot {
            snapshot_version: PatientAccount::SNAPSHOT_VERSION + 1,
            ..planted.clone()
        },
        Snapshot {
            state: json!({"not": "a state"}).to_string(),
            ..planted.clone()
        },
    ] {
        snapshots.put(broken);
        let fresh = Registry::start(f.store.clone(), snapshots.clone(), config());
        let observed = fresh.observe::<PatientAccount>(&s).await.unwrap();
        assert_eq!((observed.version, &observed.state), (10, &replayed));
    }
}

/// A store that lets "another node" append to the stream just before each of the first
/// `interfere` appends it forwards.
struct Interfering {
    inner: Arc<dyn EventStore>,
    interfere: AtomicU32,
}

#[async_trait]
impl EventStore for Interfering {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn append_all(&self, requests: Vec<AppendRequest>) -> Result<Vec<Appended>, StoreError> {
        self.inner.append_all(requests).await
    }

    async fn append(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        let interfere = self
            .interfere
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if interfere {
            let events = self
                .inner
                .read_stream(&request.stream_id, 1, Direction::Forward, 100_000)
                .await?;
            let decoded: Vec<_> = events
                .iter()
                .map(|e| {
                    PatientAccount::decode(&e.event_type, e.schema_version, e.data.clone()).unwrap()
                })
                .collect();
            let state = PatientAccount::replay(&decoded);
            let command_id = Uuid::new_v4();
            let foreign = PatientAccount::decide(
                &state,
                &charge(&format!("OTHER-{command_id}")),
                &Ctx::new(Utc::now(), command_id, "node-b"),
            )
            .unwrap();
            let encoded = PatientAccount::encode(&foreign[0]);
            self.inner
                .append(AppendRequest {
                    stream_id: request.stream_id.clone(),
                    expected: ExpectedVersion::Exact(events.len() as u64),
                    meta: CommandMeta {
                        command_id,
                        correlation_id: "other".into(),
                        causation_id: "other".into(),
                        principal: "node-b".into(),
                        source: "test".into(),
                        occurred_at: Utc::now(),
                    },
                    events: vec![ProposedEvent {
                        event_type: encoded.event_type.into(),
                        schema_version: encoded.schema_version,
                        data: encoded.data,
                    }],
                })
                .await?;
        }
        self.inner.append(request).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream, from, direction, limit).await
    }

    async fn read_all(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(from, limit).await
    }

    async fn find_command(
        &self,
        stream: &StreamId,
        command_id: Uuid,
    ) -> Result<Option<Appended>, StoreError> {
        self.inner.find_command(stream, command_id).await
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        self.inner.head_position().await
    }

    fn head_watch(&self) -> watch::Receiver<u64> {
        self.inner.head_watch()
    }

    fn poll_interval(&self) -> Option<Duration> {
        self.inner.poll_interval()
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

#[actix_rt::test]
async fn version_conflicts_are_decided_again_up_to_three_times_then_409() {
    let f = fixture();
    let store = Arc::new(Interfering {
        inner: f.store.clone(),
        interfere: AtomicU32::new(0),
    });
    let registry = Registry::start(store.clone(), Arc::new(MemorySnapshots::new()), config());
    let s = stream("M1");
    run(&registry, &s, register()).await.unwrap();

    // Three interfering appends: the fourth attempt succeeds on top of them.
    store.interfere.store(3, Ordering::SeqCst);
    let done = run(&registry, &s, charge("MINE-1")).await.unwrap();
    assert_eq!(done.version, 5, "1 registration + 3 foreign charges + ours");
    let state = full_replay(f.store.as_ref(), &s).await;
    assert_eq!(state.charges.len(), 4);

    // Four: the retries are used up, the answer is a conflict and ours is not appended.
    store.interfere.store(4, Ordering::SeqCst);
    let refused = run(&registry, &s, charge("MINE-2")).await.unwrap_err();
    assert!(
        matches!(refused, CommandError::Conflict { attempts: 4 }),
        "{refused:?}"
    );
    let state = full_replay(f.store.as_ref(), &s).await;
    assert_eq!(state.charges.len(), 8);
    assert!(state.charge("MINE-2").is_none());
}

#[actix_rt::test]
async fn a_keyed_retry_gets_its_first_answer_even_when_deciding_again_would_refuse() {
    let f = fixture();
    let registry = Registry::start(f.store.clone(), Arc::new(MemorySnapshots::new()), config());
    let s = stream("M1");
    let context = CommandContext {
        check_duplicate: true,
        ..context()
    };
    let first = registry
        .execute::<PatientAccount>(&s, register(), context.clone())
        .await
        .unwrap();
    let again = registry
        .execute::<PatientAccount>(&s, register(), context)
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.events, first.events);
    assert_eq!(f.store.head_position().await.unwrap(), 1);
}

#[actix_rt::test]
async fn a_command_to_any_aggregate_reaches_its_own_stream_under_its_own_id() {
    let f = fixture();
    let registry = Registry::start(f.store.clone(), Arc::new(MemorySnapshots::new()), config());
    let command_id = Uuid::from_u128(42);
    let addressed =
        AddressedCommand::new("M1", command_id, AnyCommand::PatientAccount(register())).unwrap();
    // A resend is recognised by the addressed id, whatever id the context carries.
    let resend = || CommandContext {
        check_duplicate: true,
        ..context()
    };
    let first = registry.execute_any(&addressed, resend()).await.unwrap();
    assert_eq!(first.stream_id, stream("M1"));
    assert_eq!(first.events[0].metadata.command_id, command_id);
    let again = registry.execute_any(&addressed, resend()).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(f.store.head_position().await.unwrap(), 1);

    let item = AnyCommand::InventoryItem(
        InventoryItem::parse_command(json!({
            "type": "DefineItem", "name": "Gauze", "unit": "box", "facility": "MAIN",
            "reorder_point": 5, "reorder_quantity": 20, "vendor_id": "V1",
            "unit_cost": "1.50"
        }))
        .unwrap()
        .command,
    );
    let addressed = AddressedCommand::new("GAUZE", Uuid::from_u128(43), item).unwrap();
    let defined = registry.execute_any(&addressed, context()).await.unwrap();
    assert_eq!(defined.stream_id.as_str(), "inventory_item-GAUZE");
    assert_eq!(defined.events[0].event_type, "ItemDefined");
}

#[actix_rt::test]
async fn sqlite_snapshots_survive_a_restart_of_the_registry() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snapshots.db");
    let snapshots: Arc<dyn SnapshotStore> =
        Arc::new(crate::store::snapshot::SqliteSnapshots::open(&path).unwrap());
    let registry = Registry::start(
        f.store.clone(),
        snapshots.clone(),
        ActorConfig {
            snapshot_every: 2,
            ..config()
        },
    );
    let s = stream("M1");
    run(&registry, &s, register()).await.unwrap();
    run(&registry, &s, charge("C1")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if snapshots.load(&s).await.unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no snapshot written");
        tokio::time::sleep(Duration::from_millis(5)).await; // poll interval, bounded by the deadline
    }
    let reopened: Arc<dyn SnapshotStore> =
        Arc::new(crate::store::snapshot::SqliteSnapshots::open(&path).unwrap());
    let fresh = Registry::start(f.store.clone(), reopened, config());
    let observed = fresh.observe::<PatientAccount>(&s).await.unwrap();
    assert_eq!(observed.state, full_replay(f.store.as_ref(), &s).await);
    assert_eq!(observed.version, 2);
}
