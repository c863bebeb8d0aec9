//! The HTTP service and its side tables (snapshots, idempotency keys) on PostgreSQL. Skipped
//! without a server unless `CAREFLOW_REQUIRE_POSTGRES=1` (see support::postgres_url).

use careflow::idempotency::{Claim, IdempotencyStore, PostgresIdempotency, StoredAnswer};
use careflow::snapshot::{PostgresSnapshots, Snapshot, SnapshotStore};
use std::time::Duration;

use careflow_aggregates::StreamId;
use serde_json::json;
use uuid::Uuid;

use crate::api::{Api, assert_log_is_sound};
use crate::journey::{charge_body, register_body};
use crate::serve::{Server, token_with_env};
use crate::support::{TempDir, drop_schema, eventually, postgres_url, unique_schema};

#[tokio::test]
async fn postgres_snapshots_keep_the_newest_and_idempotency_claims_once() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let schema = unique_schema("side");
    let snapshots = PostgresSnapshots::open(&url, &schema).await.unwrap();
    let stream = StreamId::parse("patient_account-M1").unwrap();
    let snap = |version: u64| Snapshot {
        stream_id: stream.clone(),
        version,
        position: version + 10,
        head_hash: "ab".repeat(32),
        snapshot_version: 1,
        state: json!({"version": version}),
    };
    assert_eq!(snapshots.load(&stream).await.unwrap(), None);
    snapshots.save(snap(5)).await.unwrap();
    snapshots.save(snap(3)).await.unwrap();
    assert_eq!(snapshots.load(&stream).await.unwrap(), Some(snap(5)));
    snapshots.delete(&stream).await.unwrap();
    assert_eq!(snapshots.load(&stream).await.unwrap(), None);

    let keys = PostgresIdempotency::open(&url, &schema).await.unwrap();
    let id = Uuid::new_v4();
    assert_eq!(keys.claim(id, "f1").await.unwrap(), Claim::New);
    let answer = StoredAnswer::Success { body: None };
    keys.complete(id, answer.clone()).await.unwrap();
    assert_eq!(
        keys.claim(id, "f2").await.unwrap(),
        Claim::Seen {
            fingerprint: "f1".into(),
            answer: Some(answer)
        }
    );
    drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn the_api_runs_on_postgres_and_rebuilds_from_snapshots_after_a_restart() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let schema = unique_schema("api");
    let dir = TempDir::new();
    let env = [
        ("CAREFLOW_STORE", "postgres"),
        ("CAREFLOW_DATABASE_URL", url.as_str()),
        ("CAREFLOW_DATABASE_SCHEMA", schema.as_str()),
        ("CAREFLOW_SNAPSHOT_EVERY", "2"),
    ];
    let ehr = token_with_env(&dir.path(), &env, "system", "ehr");
    let auditor = token_with_env(&dir.path(), &env, "auditor", "compliance");
    let server = Server::start_with_env(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    api.ok(&ehr, "patient-accounts", "MRN-P1", register_body("Doe"))
        .await;
    for i in 0..4 {
        api.ok(
            &ehr,
            "patient-accounts",
            "MRN-P1",
            charge_body(&format!("C{i}"), "2.50", 1),
        )
        .await;
    }
    let keyed = [("Idempotency-Key", "pg-key-1")];
    let first = api
        .command_with(
            &ehr,
            "patient-accounts",
            "MRN-P1",
            charge_body("C9", "1.00", 1),
            &keyed,
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    // Snapshots are written in the background every 2 events: the one at version 6 arrives.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let query = format!("SELECT max(version) FROM {schema}.snapshots WHERE stream_id = $1");
    eventually(Duration::from_secs(30), "the snapshot at version 6", || {
        let client = &client;
        let query = &query;
        async move {
            let row = client
                .query_one(query.as_str(), &[&"patient_account-MRN-P1"])
                .await
                .ok()?;
            let version: Option<i64> = row.get(0);
            (version == Some(6)).then_some(())
        }
    })
    .await;
    assert!(server.terminate().await.success());

    let server = Server::start_with_env(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let account = api.get("/v1/patient-accounts/MRN-P1", Some(&ehr)).await;
    assert_eq!(account.status, 200, "{}", account.text);
    assert_eq!(account.body["balance"], "11.00");
    assert_eq!(account.body["version"], 6);
    let again = api
        .command_with(
            &ehr,
            "patient-accounts",
            "MRN-P1",
            charge_body("C9", "1.00", 1),
            &keyed,
        )
        .await;
    assert_eq!(again.body["events"], first.body["events"]);
    let other = api
        .command_with(
            &ehr,
            "patient-accounts",
            "MRN-P1",
            charge_body("C9", "2.00", 1),
            &keyed,
        )
        .await;
    assert_eq!(other.assert_problem(422), "idempotency_key_reused");
    assert_log_is_sound(&api.all_events(&auditor).await);
    assert!(server.terminate().await.success());

    drop_schema(&url, &schema).await;
}
