//! The runner with a policy of the test's own: a poison event goes to the dead letters, and
//! an operator's retry after the fix carries out its reaction exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use careflow_aggregates::inventory_item::{self, DefineItem};
use careflow_aggregates::money::{Cents, Currency};
use careflow_aggregates::policies::{
    self, PolicyError, ProcessManager, Reaction, Trigger, TriggerEvent,
};
use careflow_aggregates::{AddressedCommand, Aggregate, AnyCommand, InventoryItem, StreamId};
use chrono::Utc;
use tokio::sync::watch;
use uuid::Uuid;

use super::runner::{self, Deps};
use super::{ManagerConfig, RunnerHandle, RunnerStatus};
use crate::operations::dead_letters::{DeadLetterStatus, DeadLetters};
use crate::operations::personal_data::{
    EncryptingStore, MasterKey, PersonalKeys, keys::SqliteKeys,
};
use crate::runtime::actors::{ActorConfig, CommandContext, Registry};
use crate::runtime::consumers::Health;
use crate::runtime::consumers::checkpoint::SqliteCheckpoints;
use crate::store::snapshot::MemorySnapshots;
use crate::store::sqlite::{SqliteConfig, SqliteStore};
use crate::store::{Direction, EventStore, FeedConfig, LogFeed};

/// Whether the cause of the poison has been fixed (the test's stand-in for corrected master
/// data or a newer build).
static FIXED: AtomicBool = AtomicBool::new(false);

/// Copies every item defined as `original` into an item `copy`; refuses to act (an id that
/// cannot address a stream) until [`FIXED`].
struct Copier;

impl ProcessManager for Copier {
    const NAME: &'static str = "copier";
    const STREAM_KINDS: &'static [&'static str] = &[InventoryItem::KIND];
    type State = u32;
    type Settings = ();

    fn react(_: &u32, trigger: &Trigger, (): &()) -> Result<Reaction, PolicyError> {
        let TriggerEvent::InventoryItem(inventory_item::Event::ItemDefined(defined)) =
            &trigger.event
        else {
            return Ok(Reaction::default());
        };
        if trigger.stream_id.as_str() != "inventory_item-original" {
            return Ok(Reaction::default());
        }
        if !FIXED.load(Ordering::SeqCst) {
            return Err(PolicyError::InvalidTarget {
                kind: InventoryItem::KIND,
                source: StreamId::new(InventoryItem::KIND, "").unwrap_err(),
            });
        }
        Ok(Reaction {
            commands: vec![
                AddressedCommand::new(
                    "copy",
                    policies::command_id_for(trigger.event_id, "copy"),
                    AnyCommand::InventoryItem(inventory_item::Command::DefineItem(DefineItem {
                        name: defined.name.clone(),
                        unit: defined.unit.clone(),
                        facility: defined.facility.clone(),
                        reorder_point: defined.reorder_point,
                        reorder_quantity: defined.reorder_quantity,
                        vendor_id: defined.vendor_id.clone(),
                        unit_cost: defined.unit_cost,
                        currency: defined.currency,
                    })),
                )
                .unwrap(),
            ],
            ..Reaction::default()
        })
    }

    fn evolve(seen: u32, _: &Trigger) -> u32 {
        seen + 1
    }
}

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

/// A SQLite store with personal-data encryption and the actors over it, in `dir`: what the
/// runner is given in a server. Returns the raw store (what the feed reads), the encrypting
/// one (what the actors and the runner use) and the registry.
async fn world(
    dir: &std::path::Path,
) -> (Arc<dyn EventStore>, Arc<EncryptingStore>, Arc<Registry>) {
    let stored: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir.join("careflow.db"))).unwrap());
    let keys = Arc::new(
        PersonalKeys::new(
            MasterKey::parse(&"cd".repeat(32)).unwrap(),
            Box::new(SqliteKeys::open(dir.join("keys.db")).unwrap()),
            None,
        )
        .await
        .unwrap(),
    );
    let personal = Arc::new(EncryptingStore::new(Arc::clone(&stored), keys));
    let store: Arc<dyn EventStore> = personal.clone();
    let registry = Registry::start(
        store,
        Arc::new(MemorySnapshots::new()),
        ActorConfig {
            arbiters: 1,
            ..ActorConfig::default()
        },
    );
    (stored, personal, registry)
}

/// Defines the item of stream `item` (an `ItemDefined` on it).
async fn define_item(registry: &Registry, item: &StreamId) {
    registry
        .execute::<InventoryItem>(
            item,
            inventory_item::Command::DefineItem(DefineItem {
                name: "Gauze 10cm".into(),
                unit: "box".into(),
                facility: "north".into(),
                reorder_point: 5,
                reorder_quantity: 20,
                vendor_id: "V-1".into(),
                unit_cost: Cents(1_250),
                currency: Currency::default(),
            }),
            CommandContext {
                command_id: Uuid::new_v4(),
                correlation_id: "test".into(),
                causation_id: "test".into(),
                principal: "test".into(),
                source: "test".into(),
                occurred_at: Utc::now(),
                check_duplicate: false,
            },
        )
        .await
        .unwrap();
}

#[actix_rt::test]
async fn a_poison_event_is_dead_lettered_and_a_retry_after_the_fix_applies_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let (stored, personal, registry) = world(dir.path()).await;
    let store: Arc<dyn EventStore> = personal.clone();
    let original = StreamId::new(InventoryItem::KIND, "original").unwrap();
    let copy = StreamId::new(InventoryItem::KIND, "copy").unwrap();
    define_item(&registry, &original).await;

    let dead_letters = DeadLetters::open_sqlite(&dir.path().join("dead_letters.db")).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let deps = Arc::new(Deps {
        store: Arc::clone(&store),
        personal,
        feed: LogFeed::start(Arc::clone(&stored), FeedConfig::default()).await,
        registry: Arc::clone(&registry),
        checkpoints: Arc::new(
            SqliteCheckpoints::open(dir.path().join("process_managers.db")).unwrap(),
        ),
        payer: None,
        config: ManagerConfig {
            dead_letter_poll: Duration::from_millis(20),
            ..ManagerConfig::default()
        },
        dead_letters: dead_letters.clone(),
        stop: stop_rx,
        clock: crate::clock::Clock::system(),
    });
    let health = Health::new();
    let handle = Arc::new(RunnerHandle {
        name: Copier::NAME,
        health: health.register(Copier::NAME, true),
        status: std::sync::Mutex::new(RunnerStatus::default()),
    });
    let running = actix_rt::spawn(runner::run::<Copier>(Arc::clone(&deps), handle, ()));

    // The poison event is listed, and nothing was sent.
    let letter = eventually("the dead letter", || async {
        dead_letters
            .list(Some("process_manager:copier"), false)
            .await
            .unwrap()
            .pop()
    })
    .await;
    assert_eq!(letter.status, DeadLetterStatus::Dead);
    assert_eq!(letter.key, original.as_str());
    assert_eq!(letter.position, 1);
    assert!(
        letter.error.contains("breaks the id rule"),
        "{}",
        letter.error
    );
    let read_copy = || async {
        store
            .read_stream(&copy, 1, Direction::Forward, 10)
            .await
            .unwrap()
    };
    assert!(read_copy().await.is_empty());

    // Fixed, then retried: acted on once, and the row is resolved.
    FIXED.store(true, Ordering::SeqCst);
    dead_letters.request_retry(letter.id).await.unwrap();
    eventually("the retry to resolve", || async {
        let row = dead_letters.get(letter.id).await.unwrap()?;
        (row.status == DeadLetterStatus::Resolved).then_some(())
    })
    .await;
    let copied = read_copy().await;
    assert_eq!(copied.len(), 1);
    assert_eq!(copied[0].event_type, "ItemDefined");
    assert_eq!(copied[0].metadata.principal, "process_manager:copier");

    // The same event redelivered (checkpoint lost, a second retry) appends nothing more.
    let _ = stop.send(true);
    running.await.unwrap();
    deps.checkpoints
        .save(
            Copier::NAME,
            &crate::runtime::consumers::checkpoint::Checkpoint {
                position: 0,
                state: "0".into(),
            },
        )
        .await
        .unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let deps = Arc::new(Deps {
        stop: stop_rx,
        store: Arc::clone(&deps.store),
        personal: Arc::clone(&deps.personal),
        feed: Arc::clone(&deps.feed),
        registry: Arc::clone(&deps.registry),
        checkpoints: Arc::clone(&deps.checkpoints),
        payer: None,
        config: deps.config.clone(),
        dead_letters: dead_letters.clone(),
        clock: deps.clock.clone(),
    });
    let handle = Arc::new(RunnerHandle {
        name: Copier::NAME,
        health: health.register(Copier::NAME, true),
        status: std::sync::Mutex::new(RunnerStatus::default()),
    });
    let running = actix_rt::spawn(runner::run::<Copier>(Arc::clone(&deps), handle, ()));
    eventually("the redelivery", || async {
        let checkpoint = deps.checkpoints.load(Copier::NAME).await.unwrap()?;
        (checkpoint.position >= 2).then_some(())
    })
    .await;
    assert_eq!(
        read_copy().await.len(),
        1,
        "the redelivered command appended again"
    );
    let _ = stop.send(true);
    running.await.unwrap();
}

/// Counts the items defined; reacts to nothing.
struct Counter;

impl ProcessManager for Counter {
    const NAME: &'static str = "counter";
    const STREAM_KINDS: &'static [&'static str] = &[InventoryItem::KIND];
    type State = u32;
    type Settings = ();

    fn react(_: &u32, _: &Trigger, (): &()) -> Result<Reaction, PolicyError> {
        Ok(Reaction::default())
    }

    fn evolve(seen: u32, _: &Trigger) -> u32 {
        seen + 1
    }
}

/// A chunk of the feed's tail is whatever its reader read at once: under a trickle of
/// commands, one event. The feed used to hand out one chunk per read, and the runner took a
/// short read for "caught up" and slept `idle_check`, so once behind it followed the log at
/// one chunk per idle period (8 claims a second in the claims bench). Now a read spans chunks
/// and only an empty read means caught up. Here the idle period is an hour: the runner must
/// reach the head without it.
#[actix_rt::test]
async fn a_runner_behind_the_head_reads_on_through_short_chunks_without_idling() {
    let dir = tempfile::tempdir().unwrap();
    let (stored, personal, registry) = world(dir.path()).await;
    let feed = LogFeed::start(Arc::clone(&stored), FeedConfig::default()).await;
    let items = 5;
    for n in 1..=items {
        define_item(
            &registry,
            &StreamId::new(InventoryItem::KIND, &format!("i{n}")).unwrap(),
        )
        .await;
        // Each event its own chunk: the reader has read it before the next is appended.
        eventually("the feed's reader", || async {
            (feed.head() >= n).then_some(())
        })
        .await;
    }
    let (stop, stop_rx) = watch::channel(false);
    let deps = Arc::new(Deps {
        store: personal.clone(),
        personal,
        feed,
        registry,
        checkpoints: Arc::new(
            SqliteCheckpoints::open(dir.path().join("process_managers.db")).unwrap(),
        ),
        payer: None,
        config: ManagerConfig {
            idle_check: Duration::from_secs(3_600),
            ..ManagerConfig::default()
        },
        dead_letters: DeadLetters::open_sqlite(&dir.path().join("dead_letters.db")).unwrap(),
        stop: stop_rx,
        clock: crate::clock::Clock::system(),
    });
    let handle = Arc::new(RunnerHandle {
        name: Counter::NAME,
        health: Health::new().register(Counter::NAME, true),
        status: std::sync::Mutex::new(RunnerStatus::default()),
    });
    let running = actix_rt::spawn(runner::run::<Counter>(Arc::clone(&deps), handle, ()));
    let checkpoint = eventually("the runner at the head", || async {
        let checkpoint = deps.checkpoints.load(Counter::NAME).await.unwrap()?;
        (checkpoint.position >= items).then_some(checkpoint)
    })
    .await;
    assert_eq!(checkpoint.position, items);
    assert_eq!(
        checkpoint.state,
        items.to_string(),
        "every event folded once"
    );
    let _ = stop.send(true);
    running.await.unwrap();
}
