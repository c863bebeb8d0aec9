//! The HTTP service and its side tables (snapshots, idempotency keys) on PostgreSQL. Skipped
//! without a server unless `CAREFLOW_REQUIRE_POSTGRES=1` (see support::postgres_url).

use careflow::store::idempotency::{Claim, IdempotencyStore, PostgresIdempotency, StoredAnswer};
use careflow::store::snapshot::{PostgresSnapshots, Snapshot, SnapshotStore};
use std::time::Duration;

use careflow_aggregates::StreamId;
use serde_json::json;
use uuid::Uuid;

use crate::api::{Api, assert_log_is_sound};
use crate::journey::{charge_body, register_body};
use crate::server::{Server, token_with_env};
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
        state: json!({"version": version}).to_string(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_one_database_retry_conflicts_and_append_each_command_once() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let schema = unique_schema("nodes");
    let env = [
        ("CAREFLOW_STORE", "postgres"),
        ("CAREFLOW_DATABASE_URL", url.as_str()),
        ("CAREFLOW_DATABASE_SCHEMA", schema.as_str()),
        ("CAREFLOW_JWT_SECRET", "shared-secret-of-both-nodes"),
        // Like the JWT secret, every node of one installation shares the master key
        // (docs/operations.md "The master key").
        (
            "CAREFLOW_MASTER_KEY",
            "0101010101010101010101010101010101010101010101010101010101010101",
        ),
        ("CAREFLOW_RATE_LIMIT_PER_SECOND", "0"),
    ];
    let (dir_a, dir_b) = (TempDir::new(), TempDir::new());
    let node_a = Server::start_with_env(&dir_a.path(), &env);
    let node_b = Server::start_with_env(&dir_b.path(), &env);
    node_a.wait_ready().await;
    node_b.wait_ready().await;
    let ehr = token_with_env(&dir_a.path(), &env, "system", "ehr");
    let auditor = token_with_env(&dir_b.path(), &env, "auditor", "compliance");
    let (api_a, api_b) = (Api::new(&node_a.base), Api::new(&node_b.base));
    api_a
        .ok(&ehr, "patient-accounts", "MRN-N1", register_body("Doe"))
        .await;

    // Four clients per node, all charging the one account: the nodes' actors race on it.
    let mut clients = Vec::new();
    for client in 0..8 {
        let api = if client % 2 == 0 {
            api_a.clone()
        } else {
            api_b.clone()
        };
        let ehr = ehr.clone();
        clients.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for i in 0..15 {
                let charge_id = format!("N{client}-{i}");
                let reply = api
                    .command(
                        &ehr,
                        "patient-accounts",
                        "MRN-N1",
                        charge_body(&charge_id, "1.00", 1),
                    )
                    .await;
                outcomes.push((charge_id, reply.status, reply.body));
            }
            outcomes
        }));
    }
    let mut accepted = Vec::new();
    let mut exhausted = Vec::new();
    for client in clients {
        for (charge_id, status, body) in client.await.unwrap() {
            match status {
                200 => accepted.push(charge_id),
                409 => {
                    assert_eq!(body["code"], "concurrent_modification", "{body}");
                    exhausted.push(charge_id);
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
    }
    let retried: f64 = [&api_a, &api_b]
        .iter()
        .map(|api| async move { api.get("/metrics", None).await.text })
        .collect::<futures_util::future::JoinAll<_>>()
        .await
        .iter()
        .flat_map(|text| text.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| {
            l.starts_with("careflow_command_conflicts_retried_total{aggregate=\"patient_account\"}")
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum();
    eprintln!(
        "two nodes: {} accepted, {} refused after retries, {retried} conflict retries",
        accepted.len(),
        exhausted.len()
    );

    let account = api_b.get("/v1/patient-accounts/MRN-N1", Some(&ehr)).await;
    let stored: Vec<String> = account.body["charges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["charge_id"].as_str().unwrap().to_string())
        .collect();
    let mut sorted_stored = stored.clone();
    sorted_stored.sort();
    let mut sorted_accepted = accepted.clone();
    sorted_accepted.sort();
    assert_eq!(
        sorted_stored, sorted_accepted,
        "accepted and stored charges differ"
    );
    assert_eq!(
        account.body["balance"],
        serde_json::json!(format!("{}.00", accepted.len()))
    );
    assert_log_is_sound(&api_a.all_events(&auditor).await);
    assert!(node_a.terminate().await.success());
    assert!(node_b.terminate().await.success());
    drop_schema(&url, &schema).await;
}
