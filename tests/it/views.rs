//! The view backends (SQLite `views.db`, PostgreSQL tables) behind one contract, and the
//! runner's handling of an event a projection refuses.

use std::sync::Arc;
use std::time::Duration;

use careflow::runtime::views::postgres::PostgresViews;
use careflow::runtime::views::sqlite::SqliteViews;
use careflow::runtime::views::{
    GenerationStatus, ProjectionSet, RunnerConfig, ViewBackend, ViewError,
};
use careflow::store::sqlite::{SqliteConfig, SqliteStore};
use careflow::store::{AppendRequest, CommandMeta, EventStore, ExpectedVersion, ProposedEvent};
use careflow_aggregates::{RecordedEvent, StreamId};
use careflow_projections::{Projection, ProjectionError, ViewStore};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{TempDir, drop_schema, eventually, postgres_url, unique_schema};

const TABLES: &[&str] = &["test_rows", "test_other"];

type Rows = Vec<(&'static str, &'static str, Option<String>)>;

/// The borrowed form `ViewWriter::commit` takes.
fn writes(rows: &Rows) -> impl Iterator<Item = careflow::runtime::views::Write<'_>> {
    rows.iter().map(|(t, k, r)| (*t, *k, r.as_deref()))
}

fn text(value: Value) -> Option<String> {
    Some(value.to_string())
}

/// Writes, reads, scans and a promotion, the same on every backend.
fn exercise(views: &dyn ViewBackend) {
    // Before any runner created it, a projection cannot be read.
    let mut noop = |_: careflow::runtime::views::ReadView<'_>| Ok(());
    assert!(matches!(
        views.read("test", TABLES, &mut noop),
        Err(ViewError::NotBuilt(_))
    ));
    let mut writer = views.writer("test").unwrap();
    writer
        .create_generation(TABLES, 1, GenerationStatus::Live)
        .unwrap();
    let rows: Rows = vec![
        ("test_rows", "b/2", text(json!({"n": 2}))),
        ("test_rows", "a/1", text(json!({"n": 1}))),
        ("test_rows", "b/10", text(json!({"n": 10}))),
        ("test_rows", "c", text(json!({"n": 3}))),
        ("test_other", "x", text(json!("only here"))),
    ];
    writer.commit(1, &mut writes(&rows), 7).unwrap();
    assert_eq!(
        writer.fetch("test_rows", 1, "b/10").unwrap(),
        text(json!({"n": 10}))
    );
    assert_eq!(writer.fetch("test_rows", 1, "zzz").unwrap(), None);
    // A delete and an update commit with the next checkpoint.
    let changes: Rows = vec![
        ("test_rows", "c", None),
        ("test_rows", "a/1", text(json!({"n": 100}))),
    ];
    writer.commit(1, &mut writes(&changes), 9).unwrap();

    let mut seen = None;
    views
        .read("test", TABLES, &mut |view| {
            // Keys compare as bytes: "b/10" < "b/2".
            let b: Vec<String> = view
                .rows
                .scan_prefix("test_rows", "b/")?
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            let all = view.rows.scan_range("test_rows", "", None)?;
            let bounded = view.rows.scan_range("test_rows", "a", Some("b/2"))?;
            seen = Some((
                view.position,
                b,
                all.len(),
                bounded.len(),
                view.rows.get("test_rows", "a/1")?,
                view.rows.get("test_rows", "c")?,
            ));
            Ok(())
        })
        .unwrap();
    assert_eq!(
        seen.unwrap(),
        (
            9,
            vec!["b/10".to_string(), "b/2".to_string()],
            3,
            2,
            Some(json!({"n": 100})),
            None
        )
    );

    // A rebuild: generation 2 is invisible to readers until promoted.
    assert!(views.request_rebuild("test").unwrap());
    assert!(!views.request_rebuild("test").unwrap(), "asked twice");
    assert!(writer.catalog().unwrap().rebuild_requested);
    writer
        .create_generation(TABLES, 2, GenerationStatus::Building)
        .unwrap();
    let catalog = views.catalog("test").unwrap();
    assert!(!catalog.rebuild_requested);
    assert_eq!(catalog.building.as_ref().unwrap().generation, 2);
    let fresh: Rows = vec![("test_rows", "new", text(json!(true)))];
    writer.commit(2, &mut writes(&fresh), 9).unwrap();
    let live_rows = |views: &dyn ViewBackend| {
        let mut keys = Vec::new();
        views
            .read("test", TABLES, &mut |view| {
                keys = view
                    .rows
                    .scan_range("test_rows", "", None)?
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                Ok(())
            })
            .unwrap();
        keys
    };
    assert_eq!(live_rows(views), ["a/1", "b/10", "b/2"]);
    writer.set_error(2, Some("boom")).unwrap();
    assert_eq!(
        views.catalog("test").unwrap().building.unwrap().last_error,
        Some("boom".into())
    );
    writer.promote(TABLES, 2, Some(1)).unwrap();
    assert_eq!(live_rows(views), ["new"]);
    let catalog = views.catalog("test").unwrap();
    assert_eq!(catalog.live.unwrap().generation, 2);
    assert!(catalog.building.is_none());
}

#[test]
fn sqlite_views_keep_the_contract() {
    let dir = TempDir::new();
    let views = SqliteViews::open(dir.path().join("views.db")).unwrap();
    exercise(&views);
    // Generation 1's tables are gone.
    let conn = rusqlite::Connection::open(dir.path().join("views.db")).unwrap();
    let left: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'test_%_g1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_views_keep_the_contract_and_one_writer_per_projection() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let schema = unique_schema("views");
    let views = PostgresViews::open(&url, &schema).await.unwrap();
    let views = Arc::new(views);
    let other = Arc::new(PostgresViews::open(&url, &schema).await.unwrap());
    let (a, b) = (Arc::clone(&views), Arc::clone(&other));
    tokio::task::spawn_blocking(move || {
        exercise(a.as_ref());
        // The writer of `exercise` is dropped; its session ends (and frees the lock) a moment
        // later, on the server's time. Then the lock is free again, but only for one.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let first = loop {
            match b.writer("test") {
                Ok(writer) => break writer,
                Err(ViewError::NotOwner(_)) if std::time::Instant::now() < deadline => {
                    std::thread::yield_now();
                }
                Err(error) => panic!("the lock was not released: {error}"),
            }
        };
        assert!(matches!(a.writer("test"), Err(ViewError::NotOwner(_))));
        drop(first);
    })
    .await
    .unwrap();
    drop_schema(&url, &schema).await;
}

/// Refuses the event whose data says `"poison": true`, counts everything else.
struct Picky;

impl Projection for Picky {
    fn name(&self) -> &'static str {
        "picky"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["picky_counts"]
    }

    fn apply(
        &self,
        store: &mut dyn ViewStore,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if event.data["poison"] == json!(true) {
            return Err(ProjectionError::Store("refused on purpose".into()));
        }
        let count = store
            .get("picky_counts", "all")?
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        store.put("picky_counts", "all", json!(count + 1))
    }
}

fn append(position_data: Value, n: usize) -> AppendRequest {
    AppendRequest {
        stream_id: StreamId::new("test_stream", &format!("s{n}")).unwrap(),
        expected: ExpectedVersion::Any,
        meta: CommandMeta {
            command_id: Uuid::new_v4(),
            correlation_id: "c".into(),
            causation_id: "c".into(),
            principal: "test".into(),
            source: "test".into(),
            occurred_at: chrono::Utc::now(),
        },
        events: vec![ProposedEvent {
            event_type: "Happened".into(),
            schema_version: 1,
            data: position_data,
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_stops_the_view_just_before_it_with_the_error_recorded() {
    let dir = TempDir::new();
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir.path().join("careflow.db"))).unwrap());
    for n in 0..5 {
        store.append(append(json!({}), n)).await.unwrap();
    }
    store
        .append(append(json!({"poison": true}), 5))
        .await
        .unwrap();
    store.append(append(json!({}), 6)).await.unwrap();
    let views: Arc<dyn ViewBackend> =
        Arc::new(SqliteViews::open(dir.path().join("views.db")).unwrap());
    let config = RunnerConfig {
        retry_after: Duration::from_secs(60),
        ..RunnerConfig::default()
    };
    let health = careflow::runtime::consumers::Health::new();
    let set = ProjectionSet::start(
        careflow::store::LogFeed::start(Arc::clone(&store), Default::default()).await,
        Arc::clone(&views),
        vec![Arc::new(Picky)],
        config,
        &health,
    );
    let live = eventually(Duration::from_secs(10), "the error in the catalog", || {
        let views = Arc::clone(&views);
        async move {
            let catalog = views.catalog("picky").ok()?;
            catalog.live.filter(|g| g.last_error.is_some())
        }
    })
    .await;
    // Events 1-5 are in, the poison (6) and what follows (7) are not.
    assert_eq!(live.position, 5);
    assert!(live.last_error.unwrap().contains("refused on purpose"));
    let set2 = Arc::clone(&set);
    let (count, position) = tokio::task::spawn_blocking(move || {
        set2.read("picky", |view| {
            Ok(view.rows.get("picky_counts", "all")?.unwrap())
        })
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!((count, position), (json!(5), 5));
    let status = set.statuses().await.unwrap();
    assert_eq!(status[0].lag, 2);
    assert!(status[0].last_error.is_some());
    // The consumer runtime reports it stuck (what makes /readyz answer 503 and name it).
    let failing = health.failing();
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert_eq!(failing[0].name, "picky");
    assert_eq!(
        failing[0].state,
        careflow::runtime::consumers::ConsumerState::Stuck
    );
    assert!(
        failing[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("halted at position 6")),
        "{failing:?}"
    );
    set.shutdown().await;
    store.close().await;
}
