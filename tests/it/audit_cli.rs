//! Black-box: `careflow replay`, `audit export` and `audit check-export` on a stopped
//! server's data dir, and `GET /v1/audit/verify`.

use careflow::store::EventStore;
use careflow::store::sqlite::SqliteStore;
use careflow_aggregates::RecordedEvent;
use serde_json::Value;

use crate::api::Api;
use crate::journey::{charge_body, register_body};
use crate::server::{Server, token};
use crate::support::TempDir;
use crate::tamper::{Site, data_dir};

const MRN: &str = "AUD-1";

/// Registers `MRN` and posts two charges through a real server, stops it, and returns the
/// site with the three events the commands appended.
async fn account_history() -> (Site, Vec<RecordedEvent>) {
    let dir = TempDir::new();
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let ehr = token(&dir.path(), "system", "ehr");
    let api = Api::new(&server.base);
    let mut events = Vec::new();
    for body in [
        register_body("Doe"),
        charge_body("C1", "100.00", 1),
        charge_body("C2", "25.50", 1),
    ] {
        let answer = api.ok(&ehr, "patient-accounts", MRN, body).await;
        let appended: Vec<RecordedEvent> =
            serde_json::from_value(answer["events"].clone()).unwrap();
        events.extend(appended);
    }
    assert!(server.terminate().await.success());
    let site = Site {
        env: vec![("CAREFLOW_DATA_DIR".into(), data_dir(&dir))],
        dir,
        pg: None,
    };
    (site, events)
}

#[tokio::test]
async fn replay_shows_the_state_as_of_a_time_and_the_events_that_made_it() {
    let (site, events) = account_history().await;
    let stream = format!("patient_account-{MRN}");
    let as_of = events[1]
        .metadata
        .recorded_at
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let (code, output) = site.run(&["replay", &stream, "--as-of", &as_of, "--format", "json"]);
    assert_eq!(code, 0, "{output}");
    let json_text = output.split("\n--- stderr ---").next().unwrap();
    let replayed: Value = serde_json::from_str(json_text).unwrap();
    assert_eq!(replayed["version"], 2);
    assert_eq!(replayed["state"]["balance"], "100.00");
    let types: Vec<&str> = replayed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["PatientRegistered", "ChargePosted"]);

    let (code, output) = site.run(&["replay", &stream]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("version 3, position 3"), "{output}");
    assert!(output.contains("\"balance\": \"125.50\""), "{output}");

    let (code, output) = site.run(&["replay", "patient_account-NOBODY"]);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("has no events"), "{output}");
}

#[tokio::test]
async fn an_export_checks_offline_and_a_changed_byte_fails_it() {
    let (site, events) = account_history().await;
    let out = site.dir.path().join("aud-1.ndjson");
    let out_text = out.display().to_string();
    let (code, output) = site.run(&[
        "audit",
        "export",
        "--patient",
        MRN,
        "--out",
        &out_text,
        "--subject",
        "auditor-ann",
    ]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("exported 3 events (patient AUD-1)"),
        "{output}"
    );

    let (code, key) = site.run(&["audit", "key"]);
    assert_eq!(code, 0, "{key}");
    let key = key.lines().next().unwrap().trim().to_string();
    let (code, output) = site.run(&["audit", "check-export", &out_text, "--public-key", &key]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("3 events, positions 1..3"), "{output}");

    // The exported lines are the stored events, hashes included: the patient's `personal`
    // object as the store holds it (ciphertext), where the command answers showed it plain.
    let text = std::fs::read_to_string(&out).unwrap();
    let mut exported: Vec<RecordedEvent> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported[0].data["personal"]["enc"], "aes-256-gcm");
    assert!(!text.contains("Doe"), "{text}");
    exported[0].data["personal"] = events[0].data["personal"].clone();
    assert_eq!(exported, events);

    // The export is in the access log, under the subject given.
    let store = SqliteStore::open_read_only(site.config().sqlite_path()).unwrap();
    let log = store.read_all(1, 100).await.unwrap();
    let record = log
        .iter()
        .find(|e| e.stream_id.kind() == "access_log" && e.data["action"] == "export")
        .expect("an access record of the export");
    assert_eq!(record.data["principal"], "auditor-ann");
    assert_eq!(record.data["selection"], "patient AUD-1");
    assert_eq!(record.data["events"], 3);

    // One changed byte: the file's digest and the event's hash no longer match.
    let altered = text.replacen("100.00", "900.00", 1);
    assert_ne!(altered, text);
    std::fs::write(&out, altered).unwrap();
    let (code, output) = site.run(&["audit", "check-export", &out_text]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("ALTERED line 2"), "{output}");
    assert!(output.contains("the file's SHA-256 is"), "{output}");

    // A manifest signed by someone else's key is refused even when the file is intact.
    std::fs::write(&out, &text).unwrap();
    let other = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    let (code, output) = site.run(&["audit", "check-export", &out_text, "--public-key", other]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("not by the given key"), "{output}");
}

#[tokio::test]
async fn the_verify_endpoint_checks_one_stream_for_auditors_only() {
    let dir = TempDir::new();
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let ehr = token(&dir.path(), "system", "ehr");
    let auditor = token(&dir.path(), "auditor", "compliance");
    let api = Api::new(&server.base);
    api.ok(&ehr, "patient-accounts", "VER-1", register_body("Doe"))
        .await;
    api.ok(
        &ehr,
        "patient-accounts",
        "VER-1",
        charge_body("C1", "10.00", 1),
    )
    .await;
    let path = "/v1/audit/verify?stream=patient_account-VER-1";

    let reply = api.get(path, Some(&auditor)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.body,
        serde_json::json!({"stream": "patient_account-VER-1", "events": 2, "intact": true, "breaks": []})
    );
    api.get(path, Some(&ehr)).await.assert_problem(403);
    api.get(path, None).await.assert_problem(401);
    api.get("/v1/audit/verify?stream=bad%20id", Some(&auditor))
        .await
        .assert_problem(400);
    api.get(
        "/v1/audit/verify?stream=patient_account-NOBODY",
        Some(&auditor),
    )
    .await
    .assert_problem(404);

    // Edit the charge in the file under the running server, as an attacker would.
    let db = dir.path().join("data").join("careflow.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn.execute_batch(
        "DROP TRIGGER events_are_append_only_update; \
         UPDATE events SET data = replace(data, '10.00', '1.00') \
         WHERE stream_id = 'patient_account-VER-1' AND version = 2;",
    )
    .unwrap();
    let reply = api.get(path, Some(&auditor)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["intact"], false, "{}", reply.text);
    assert_eq!(reply.body["breaks"][0]["version"], 2, "{}", reply.text);
    assert_eq!(
        reply.body["breaks"][0]["problem"],
        "stored hash does not match the event's content"
    );
}
