//! Black-box: `careflow backup` while the server takes commands, `careflow restore` into a new
//! data dir, and the restored node: the log verifies, every command acknowledged before the
//! backup began is there, the views equal the accounts, the server serves. A damaged backup
//! restores nothing. On PostgreSQL: pg_dump, a restore into another database, `audit verify`.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use careflow_aggregates::RecordedEvent;
use serde_json::json;

use crate::api::{Api, assert_log_is_sound};
use crate::journey::{charge_body, register_body};
use crate::server::{Server, careflow, run_to_end, token};
use crate::support::{TempDir, eventually, postgres_url, unique_schema};

const ACCOUNTS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_under_load_restores_into_a_node_that_verifies_and_serves() {
    let old = TempDir::new();
    let env = [("CAREFLOW_RATE_LIMIT_PER_SECOND", "0")];
    let server = Server::start_with_env(&old.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let ehr = token(&old.path(), "system", "ehr");
    let auditor = token(&old.path(), "auditor", "compliance");
    let finance = token(&old.path(), "finance", "fin");
    let mrns: Vec<String> = (0..ACCOUNTS).map(|i| format!("MRN-B{i}")).collect();
    for mrn in &mrns {
        api.ok(&ehr, "patient-accounts", mrn, register_body("Doe"))
            .await;
    }

    // One client per account posts charges until told to stop; acknowledged ones are kept.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged: Arc<Mutex<Vec<RecordedEvent>>> = Arc::default();
    let mut clients = Vec::new();
    for (client, mrn) in mrns.iter().cloned().enumerate() {
        let (api, ehr) = (api.clone(), ehr.clone());
        let (stop, acknowledged) = (Arc::clone(&stop), Arc::clone(&acknowledged));
        clients.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let reply = api
                    .ok(
                        &ehr,
                        "patient-accounts",
                        &mrn,
                        charge_body(&format!("C{client}-{i}"), "1.00", 1),
                    )
                    .await;
                let events: Vec<RecordedEvent> =
                    serde_json::from_value(reply["events"].clone()).unwrap();
                acknowledged.lock().unwrap().extend(events);
                i += 1;
            }
        }));
    }
    eventually(Duration::from_secs(60), "commands under way", || {
        let n = acknowledged.lock().unwrap().len();
        async move { (n >= 30).then_some(()) }
    })
    .await;

    // The backup, while the clients go on.
    let before_backup = acknowledged.lock().unwrap().clone();
    let backup_dir = old.path().join("backup");
    let (code, output) = run_to_end(careflow(&old.path()).arg("backup").arg(&backup_dir));
    assert_eq!(code, Some(0), "{output}");
    let during = acknowledged.lock().unwrap().len();
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    let after = acknowledged.lock().unwrap().len();
    assert!(
        after > before_backup.len(),
        "the load ran on during the backup"
    );
    eprintln!(
        "backup test: {} acknowledged before the backup, {during} when it ended, {after} in all",
        before_backup.len()
    );
    for name in [
        "careflow.db",
        "keys.db",
        "audit_signing_key",
        "jwt_secret",
        "views-billing.db",
    ] {
        assert!(
            output.contains(&format!("backed up {name} (")),
            "{name}: {output}"
        );
    }
    // The master key is kept apart from the data it protects.
    assert!(!backup_dir.join("master_key").exists(), "{output}");
    assert!(output.contains("not backed up: master_key"), "{output}");
    assert!(server.terminate().await.success());

    // A damaged backup restores nothing.
    let damaged = old.path().join("damaged");
    std::fs::create_dir_all(&damaged).unwrap();
    for entry in std::fs::read_dir(&backup_dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), damaged.join(entry.file_name())).unwrap();
    }
    let mut keys = std::fs::read(damaged.join("keys.db")).unwrap();
    let last = keys.len() - 1;
    keys[last] ^= 0x01;
    std::fs::write(damaged.join("keys.db"), keys).unwrap();
    let elsewhere = TempDir::new();
    let (code, output) = run_to_end(careflow(&elsewhere.path()).arg("restore").arg(&damaged));
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("keys.db in the backup differs from the manifest"),
        "{output}"
    );
    assert!(!elsewhere.path().join("data").join("careflow.db").exists());

    // The restore, into a new data dir.
    let new = TempDir::new();
    let (code, output) = run_to_end(careflow(&new.path()).arg("restore").arg(&backup_dir));
    assert_eq!(code, Some(0), "{output}");
    // Not over a node's files.
    let (code, output) = run_to_end(careflow(&new.path()).arg("restore").arg(&backup_dir));
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("restore into an empty data dir"),
        "{output}"
    );
    let (code, output) = run_to_end(careflow(&new.path()).args(["audit", "verify"]));
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("intact"), "{output}");
    // The operator brings the master key from where it is kept.
    std::fs::copy(
        old.path().join("data").join("master_key"),
        new.path().join("data").join("master_key"),
    )
    .unwrap();

    let server = Server::start_with_env(&new.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    // Tokens of the old node hold: the JWT secret came along.
    let log = api.all_events(&auditor).await;
    assert_log_is_sound(&log);
    for event in &before_backup {
        let stored = log
            .iter()
            .find(|e| e.event_id == event.event_id)
            .unwrap_or_else(|| {
                panic!(
                    "{} acknowledged before the backup is missing",
                    event.event_id
                )
            });
        assert_eq!(stored, event);
    }
    // Each view agrees with the accounts it describes (views caught up from the restored
    // checkpoint), and personal data is readable (the keys came along).
    for mrn in &mrns {
        let account = api
            .get(&format!("/v1/patient-accounts/{mrn}"), Some(&ehr))
            .await;
        assert_eq!(
            account.body["personal"]["name"]["family"], "Doe",
            "{}",
            account.text
        );
        let balance = account.body["balance"].as_str().unwrap().to_owned();
        let head = log.last().unwrap().position;
        eventually(
            Duration::from_secs(30),
            "the billing view at the head",
            || {
                let (api, finance, balance) = (api.clone(), finance.clone(), balance.clone());
                let path = format!("/v1/billing/accounts/{mrn}?min_position={head}");
                async move {
                    let view = api.get(&path, Some(&finance)).await;
                    (view.status == 200 && view.body["account"]["balance"] == json!(balance))
                        .then_some(())
                }
            },
        )
        .await;
    }
    // And it takes new work.
    api.ok(
        &ehr,
        "patient-accounts",
        "MRN-B0",
        charge_body("C-AFTER", "1.00", 1),
    )
    .await;
    assert!(server.terminate().await.success());
}

/// PostgreSQL: the database is backed up with pg_dump (docs/operations.md); a dump restored
/// into another database verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_dump_restored_into_another_database_verifies() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let schema = unique_schema("backup");
    let dir = TempDir::new();
    let pg_env = [
        ("CAREFLOW_STORE", "postgres"),
        ("CAREFLOW_DATABASE_URL", url.as_str()),
        ("CAREFLOW_DATABASE_SCHEMA", schema.as_str()),
    ];
    let server = Server::start_with_env(&dir.path(), &pg_env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let ehr = token(&dir.path(), "system", "ehr");
    for i in 0..3 {
        api.ok(
            &ehr,
            "patient-accounts",
            &format!("MRN-PG{i}"),
            register_body("Doe"),
        )
        .await;
        api.ok(
            &ehr,
            "patient-accounts",
            &format!("MRN-PG{i}"),
            charge_body("C1", "2.00", 1),
        )
        .await;
    }
    assert!(server.terminate().await.success());

    let dump = dir.path().join("careflow.dump");
    let (code, output) = run_to_end(
        Command::new("pg_dump")
            .args(["--format=custom", "--schema", &schema, "--file"])
            .arg(&dump)
            .arg(&url),
    );
    assert_eq!(code, Some(0), "{output}");
    let database = format!("restore_{schema}");
    let admin = url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap()
        .to_owned();
    let (code, output) = run_to_end(
        Command::new("psql")
            .arg(format!("{admin}/postgres"))
            .args(["-c", &format!("CREATE DATABASE {database}")]),
    );
    assert_eq!(code, Some(0), "{output}");
    let restored_url = format!("{admin}/{database}");
    let (code, output) = run_to_end(
        Command::new("pg_restore")
            .args(["--dbname", &restored_url])
            .arg(&dump),
    );
    assert_eq!(code, Some(0), "{output}");

    let (code, output) = run_to_end(
        careflow(&dir.path())
            .env("CAREFLOW_STORE", "postgres")
            .env("CAREFLOW_DATABASE_URL", &restored_url)
            .env("CAREFLOW_DATABASE_SCHEMA", &schema)
            .args(["audit", "verify"]),
    );
    let _ = Command::new("psql")
        .arg(format!("{admin}/postgres"))
        .args(["-c", &format!("DROP DATABASE {database}")])
        .output();
    crate::support::drop_schema(&url, &schema).await;
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("checked 6 events"), "{output}");
    assert!(output.contains("intact"), "{output}");
}
