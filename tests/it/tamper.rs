//! Tamper evidence: each test writes a small log through the real store, signs a checkpoint,
//! then edits the database directly as an attacker with file or superuser access would
//! (dropping the append-only triggers first), and runs `careflow audit verify` to see that it
//! exits 1 and names the broken link. Every kind runs on SQLite and on PostgreSQL.
//!
//! The log (positions 1..6) interleaves two accounts: A1 B1 A2 B2 A3 B3, with a checkpoint
//! signed at position 6.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use careflow::config::Config;
use careflow::operations::audit::checkpoint::Checkpointer;
use careflow::store::{
    self, AppendRequest, CommandMeta, EventStore, ExpectedVersion, ProposedEvent,
};
use careflow_aggregates::{RecordedEvent, StreamId, chain_hash};
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use crate::server::{Server, careflow};
use crate::support::{TempDir, drop_schema, postgres_url, unique_schema};

const A: &str = "patient_account-TAMPER-A";
const B: &str = "patient_account-TAMPER-B";

/// One edit an attacker makes, as SQL for each backend.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    /// Nothing: the log verifies.
    None,
    /// One byte of A2's data.
    ChangeByte,
    /// A2 removed.
    Delete,
    /// A forged "version 2" of A, correctly chained onto A1, added at position 7.
    Insert,
    /// A2 and A3 trade positions.
    Swap,
    /// B1 and A2 trade positions: both chains stay valid; only the signed log digest sees it.
    SwapAcrossStreams,
    /// A3 and B3, the newest events, removed.
    TruncateTail,
}

/// What `audit verify` must print (each a substring of one line) for a tamper.
fn expected(tamper: Tamper) -> Vec<&'static str> {
    match tamper {
        Tamper::None => vec!["intact"],
        Tamper::ChangeByte => vec![
            "BROKEN stream patient_account-TAMPER-A version 2 position 3: stored hash does not match the event's content",
        ],
        Tamper::Delete => vec![
            "BROKEN stream patient_account-TAMPER-B version 2 position 4: expected position 3, found 4",
            "BROKEN stream patient_account-TAMPER-A version 3 position 5: expected version 2 of the stream, found 3",
            "BROKEN stream patient_account-TAMPER-A version 3 position 5: prev_hash does not match",
            "the log up to it differs from what was signed",
        ],
        Tamper::Insert => vec![
            "BROKEN stream patient_account-TAMPER-A version 2 position 7: expected version 4 of the stream, found 2",
            "BROKEN stream patient_account-TAMPER-A version 2 position 7: prev_hash does not match",
        ],
        Tamper::Swap => vec![
            "BROKEN stream patient_account-TAMPER-A version 3 position 3: expected version 2 of the stream, found 3",
            "BROKEN stream patient_account-TAMPER-A version 2 position 5: expected version 4 of the stream, found 2",
        ],
        Tamper::SwapAcrossStreams => vec![
            "BROKEN checkpoint at position 6",
            "the log up to it differs from what was signed",
        ],
        Tamper::TruncateTail => vec![
            "BROKEN checkpoint at position 6",
            "the log ends at position 4; events after it were removed",
        ],
    }
}

/// Where the test log lives.
pub struct Site {
    pub dir: TempDir,
    pub env: Vec<(String, String)>,
    pub pg: Option<(String, String)>,
}

impl Site {
    pub fn sqlite() -> Self {
        let dir = TempDir::new();
        Self {
            env: vec![("CAREFLOW_DATA_DIR".into(), data_dir(&dir))],
            dir,
            pg: None,
        }
    }

    pub async fn postgres() -> Option<Self> {
        let url = postgres_url().await?;
        let schema = unique_schema("tamper");
        let dir = TempDir::new();
        Some(Self {
            env: vec![
                ("CAREFLOW_DATA_DIR".into(), data_dir(&dir)),
                ("CAREFLOW_STORE".into(), "postgres".into()),
                ("CAREFLOW_DATABASE_URL".into(), url.clone()),
                ("CAREFLOW_DATABASE_SCHEMA".into(), schema.clone()),
            ],
            dir,
            pg: Some((url, schema)),
        })
    }

    pub fn config(&self) -> Config {
        let env: BTreeMap<String, String> = self.env.iter().cloned().collect();
        Config::from_sources(None, None, &env).unwrap()
    }

    /// Runs the binary with this site's configuration; returns (exit code, stdout).
    pub fn run(&self, args: &[&str]) -> (i32, String) {
        let mut cmd = careflow(&self.dir.path());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let output = cmd.args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        (
            output.status.code().unwrap_or(-1),
            format!("{stdout}\n--- stderr ---\n{stderr}"),
        )
    }

    pub async fn cleanup(self) {
        if let Some((url, schema)) = &self.pg {
            drop_schema(url, schema).await;
        }
    }
}

pub fn data_dir(dir: &TempDir) -> String {
    dir.path().join("data").display().to_string()
}

async fn append(store: &dyn EventStore, stream: &str, version: u64, word: &str) -> RecordedEvent {
    let appended = store
        .append(AppendRequest {
            stream_id: StreamId::parse(stream).unwrap(),
            expected: ExpectedVersion::Exact(version - 1),
            meta: CommandMeta {
                command_id: Uuid::new_v4(),
                correlation_id: "tamper-test".into(),
                causation_id: "tamper-test".into(),
                principal: "ehr".into(),
                source: "test".into(),
                occurred_at: Utc::now(),
            },
            events: vec![ProposedEvent {
                event_type: "ChargePosted".into(),
                schema_version: 2,
                data: json!({"charge_id": format!("C{version}"), "note": word, "amount": "125.50"}),
            }],
        })
        .await
        .unwrap();
    appended.events.into_iter().next().unwrap()
}

/// Writes A1 B1 A2 B2 A3 B3, signs a checkpoint, closes the store; returns the events.
async fn build(site: &Site) -> Vec<RecordedEvent> {
    let config = site.config();
    let clock = careflow::clock::Clock::system();
    let store = store::open(&config, &clock).await.unwrap();
    let mut events = Vec::new();
    for (version, word) in [(1, "alpha"), (2, "bravo"), (3, "charlie")] {
        events.push(append(store.as_ref(), A, version, word).await);
        events.push(append(store.as_ref(), B, version, word).await);
    }
    let checkpointer = Checkpointer::open(&config, Arc::clone(&store), clock)
        .await
        .unwrap();
    let signed = checkpointer.write().await.unwrap().unwrap();
    assert_eq!(signed.position, 6);
    store.close().await;
    assert_eq!(
        events.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    events
}

/// A "version 2" of A that an attacker chains correctly onto A1.
fn forged(events: &[RecordedEvent]) -> RecordedEvent {
    let mut forged = events[0].clone();
    forged.version = 2;
    forged.position = 7;
    forged.event_id = Uuid::new_v4();
    forged.data = json!({"charge_id": "C2", "note": "forged", "amount": "1.00"});
    forged.prev_hash = events[0].hash;
    forged.hash = chain_hash(&forged);
    forged
}

fn tamper_sqlite(db: &Path, tamper: Tamper, events: &[RecordedEvent]) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(
        "DROP TRIGGER events_are_append_only_update; DROP TRIGGER events_are_append_only_delete;",
    )
    .unwrap();
    let sql = match tamper {
        Tamper::None => String::new(),
        Tamper::ChangeByte => {
            "UPDATE events SET data = replace(data, 'bravo', 'bravp') WHERE position = 3".into()
        }
        Tamper::Delete => "DELETE FROM events WHERE position = 3".into(),
        Tamper::Insert => {
            let f = forged(events);
            conn.execute(
                "INSERT INTO events (position, stream_id, version, event_id, command_id, event_type, \
                 schema_version, data, metadata, prev_hash, hash) \
                 VALUES (7, ?1, 2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                rusqlite::params![
                    f.stream_id.as_str(),
                    f.event_id.as_bytes().as_slice(),
                    f.metadata.command_id.as_bytes().as_slice(),
                    f.event_type,
                    f.schema_version,
                    serde_json::to_string(&f.data).unwrap(),
                    serde_json::to_string(&f.metadata).unwrap(),
                    f.prev_hash.0.as_slice(),
                    f.hash.0.as_slice(),
                ],
            )
            .unwrap();
            String::new()
        }
        Tamper::Swap => swap_sql(3, 5),
        Tamper::SwapAcrossStreams => swap_sql(2, 3),
        Tamper::TruncateTail => "DELETE FROM events WHERE position >= 5".into(),
    };
    conn.execute_batch(&sql).unwrap();
}

fn swap_sql(a: u64, b: u64) -> String {
    format!(
        "UPDATE events SET position = -1 WHERE position = {a}; \
         UPDATE events SET position = {a} WHERE position = {b}; \
         UPDATE events SET position = {b} WHERE position = -1;"
    )
}

async fn tamper_postgres(url: &str, schema: &str, tamper: Tamper, events: &[RecordedEvent]) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "SET search_path = {schema}; \
             ALTER TABLE events DISABLE TRIGGER USER; \
             ALTER TABLE events DROP CONSTRAINT IF EXISTS events_stream_id_version_key;"
        ))
        .await
        .unwrap();
    let sql = match tamper {
        Tamper::None => String::new(),
        Tamper::ChangeByte => {
            "UPDATE events SET data = replace(data, 'bravo', 'bravp') WHERE position = 3".into()
        }
        Tamper::Delete => "DELETE FROM events WHERE position = 3".into(),
        Tamper::Insert => {
            let f = forged(events);
            client
                .execute(
                    "INSERT INTO events (position, stream_id, version, event_id, command_id, event_type, \
                     schema_version, data, metadata, prev_hash, hash) \
                     VALUES (7, $1, 2, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[
                        &f.stream_id.as_str(),
                        &f.event_id,
                        &f.metadata.command_id,
                        &f.event_type,
                        &(f.schema_version as i32),
                        &serde_json::to_string(&f.data).unwrap(),
                        &serde_json::to_string(&f.metadata).unwrap(),
                        &f.prev_hash.0.as_slice(),
                        &f.hash.0.as_slice(),
                    ],
                )
                .await
                .unwrap();
            String::new()
        }
        Tamper::Swap => swap_sql(3, 5),
        Tamper::SwapAcrossStreams => swap_sql(2, 3),
        Tamper::TruncateTail => "DELETE FROM events WHERE position >= 5".into(),
    };
    client.batch_execute(&sql).await.unwrap();
}

/// Builds the log on `site`, applies `tamper`, and checks what `audit verify` reports.
#[track_caller]
fn assert_verify(site: &Site, tamper: Tamper) {
    let (code, output) = site.run(&["audit", "verify"]);
    let want_code = if matches!(tamper, Tamper::None) { 0 } else { 1 };
    assert_eq!(code, want_code, "{tamper:?}: exit code; output:\n{output}");
    for line in expected(tamper) {
        assert!(
            output.contains(line),
            "{tamper:?}: missing {line:?} in:\n{output}"
        );
    }
}

async fn check_sqlite(tamper: Tamper) {
    let site = Site::sqlite();
    let events = build(&site).await;
    tamper_sqlite(&site.config().sqlite_path(), tamper, &events);
    assert_verify(&site, tamper);
}

async fn check_postgres(tamper: Tamper) {
    let Some(site) = Site::postgres().await else {
        return;
    };
    let events = build(&site).await;
    let (url, schema) = site.pg.clone().unwrap();
    tamper_postgres(&url, &schema, tamper, &events).await;
    assert_verify(&site, tamper);
    site.cleanup().await;
}

macro_rules! tamper_cases {
    ($($name:ident: $tamper:expr,)*) => {
        mod sqlite {
            use super::*;
            $(#[tokio::test] async fn $name() { check_sqlite($tamper).await; })*
        }
        mod postgres {
            use super::*;
            $(#[tokio::test] async fn $name() { check_postgres($tamper).await; })*
        }
    };
}

tamper_cases! {
    an_untouched_log_verifies: Tamper::None,
    a_changed_byte_is_found: Tamper::ChangeByte,
    a_deleted_event_is_found: Tamper::Delete,
    an_inserted_event_is_found: Tamper::Insert,
    swapped_events_are_found: Tamper::Swap,
    events_swapped_across_streams_are_found: Tamper::SwapAcrossStreams,
    a_truncated_tail_is_found: Tamper::TruncateTail,
}

#[tokio::test]
async fn the_stream_check_names_the_altered_event() {
    let site = Site::sqlite();
    let events = build(&site).await;
    tamper_sqlite(&site.config().sqlite_path(), Tamper::ChangeByte, &events);
    let (code, output) = site.run(&["audit", "verify", "--stream", A]);
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("BROKEN stream patient_account-TAMPER-A version 2 position 3: stored hash does not match"),
        "{output}"
    );
    let (code, output) = site.run(&["audit", "verify", "--stream", B]);
    assert_eq!(code, 0, "{output}");
    let (code, output) = site.run(&["audit", "verify", "--stream", "no spaces allowed"]);
    assert_eq!(code, 2, "{output}");
}

#[tokio::test]
async fn a_checkpoint_signed_by_another_key_is_not_trusted() {
    let site = Site::sqlite();
    build(&site).await;
    let other = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    let (code, output) = site.run(&["audit", "verify", "--public-key", other]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("which is not trusted"), "{output}");
}

/// The wiring in `serve`: a clean shutdown signs the log as it is left, so cutting its
/// newest event afterwards is caught.
async fn check_shutdown_checkpoint(site: Site) {
    let mut cmd = careflow(&site.dir.path());
    for (k, v) in &site.env {
        cmd.env(k, v);
    }
    let server = Server::spawn(cmd);
    server.wait_ready().await;
    let env: Vec<(&str, &str)> = site
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let ehr = crate::server::token_with_env(&site.dir.path(), &env, "system", "ehr");
    let api = crate::api::Api::new(&server.base);
    api.ok(
        &ehr,
        "patient-accounts",
        "CKPT-1",
        crate::journey::register_body("Doe"),
    )
    .await;
    api.ok(
        &ehr,
        "patient-accounts",
        "CKPT-1",
        crate::journey::charge_body("C1", "10.00", 1),
    )
    .await;
    assert!(server.terminate().await.success());
    let (code, output) = site.run(&["audit", "verify"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("newest checkpoint: position 2"), "{output}");
    match &site.pg {
        None => {
            let conn = rusqlite::Connection::open(site.config().sqlite_path()).unwrap();
            conn.execute_batch(
                "DROP TRIGGER events_are_append_only_delete; DELETE FROM events WHERE position = 2;",
            )
            .unwrap();
        }
        Some((url, schema)) => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
                .batch_execute(&format!(
                    "SET search_path = {schema}; ALTER TABLE events DISABLE TRIGGER USER; \
                     DELETE FROM events WHERE position = 2;"
                ))
                .await
                .unwrap();
        }
    }
    let (code, output) = site.run(&["audit", "verify"]);
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("the log ends at position 1; events after it were removed"),
        "{output}"
    );
    site.cleanup().await;
}

#[tokio::test]
async fn serve_signs_a_checkpoint_at_shutdown_on_sqlite() {
    check_shutdown_checkpoint(Site::sqlite()).await;
}

#[tokio::test]
async fn serve_signs_a_checkpoint_at_shutdown_on_postgres() {
    let Some(site) = Site::postgres().await else {
        return;
    };
    check_shutdown_checkpoint(site).await;
}

/// `store copy` checks the source as it reads: a log edited at position 3 is copied up to the
/// event before it and no further, and the copy says where and why it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_copy_refuses_a_tampered_log_at_the_first_break() {
    let kurrent = fake_kurrentdb::FakeKurrentDb::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = kurrent.connection_string();
    let site = Site::sqlite();
    let events = build(&site).await;
    tamper_sqlite(&site.config().sqlite_path(), Tamper::ChangeByte, &events);
    let target = TempDir::new();
    let target_dir = data_dir(&target);
    let (code, output) = site.run(&[
        "store",
        "copy",
        "--to",
        "kurrentdb",
        "--url",
        &url,
        "--data-dir",
        &target_dir,
    ]);
    assert_eq!(code, 2, "{output}");
    assert!(
        output.contains("the source log does not verify at position 3: stored hash does not match"),
        "{output}"
    );
    let copied = copied_to(&url).await;
    let ids: Vec<Uuid> = copied.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, vec![events[0].event_id, events[1].event_id]);
    kurrent.stop().await;
}

/// From PostgreSQL the copy refuses to leave the side tables behind unless told to; told, it
/// copies the log, and `audit verify` passes on the copy (with the checkpoint the copy signs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_copy_moves_a_postgres_log_when_told_to_leave_the_side_tables() {
    let Some(site) = Site::postgres().await else {
        return;
    };
    let kurrent = fake_kurrentdb::FakeKurrentDb::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = kurrent.connection_string();
    let events = build(&site).await;
    let target = TempDir::new();
    let target_dir = data_dir(&target);
    let copy = [
        "store",
        "copy",
        "--to",
        "kurrentdb",
        "--url",
        &url,
        "--data-dir",
        &target_dir,
    ];
    let (code, output) = site.run(&copy);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("--leave-side-tables"), "{output}");
    let mut told = copy.to_vec();
    told.push("--leave-side-tables");
    let (code, output) = site.run(&told);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("copied 6 events (6 commands written"),
        "{output}"
    );
    assert!(output.contains("left in PostgreSQL"), "{output}");

    let mut verify = careflow(&target.path());
    verify
        .env("CAREFLOW_DATA_DIR", &target_dir)
        .env("CAREFLOW_STORE", "kurrentdb")
        .env("CAREFLOW_KURRENTDB_URL", &url)
        .args(["audit", "verify"]);
    let verified = verify.output().unwrap();
    let text = String::from_utf8_lossy(&verified.stdout);
    assert_eq!(verified.status.code(), Some(0), "{text}");
    assert!(text.contains("checked 6 events"), "{text}");
    assert!(text.contains("checkpoint"), "{text}");
    let copied = copied_to(&url).await;
    let hashes: Vec<_> = copied.iter().map(|e| (e.event_id, e.hash)).collect();
    let source: Vec<_> = events.iter().map(|e| (e.event_id, e.hash)).collect();
    assert_eq!(hashes, source);
    kurrent.stop().await;
    site.cleanup().await;
}

/// The events on the fake KurrentDB at `url`.
async fn copied_to(url: &str) -> Vec<RecordedEvent> {
    careflow::store::kurrentdb::KurrentStore::open(url)
        .await
        .unwrap()
        .read_all(1, 100)
        .await
        .unwrap()
}
