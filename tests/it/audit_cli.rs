//! Black-box: `careflow replay`, `audit export` and `audit check-export` on a stopped
//! server's data dir, and `GET /v1/audit/verify`.

use careflow::store::EventStore;
use careflow::store::sqlite::SqliteStore;
use careflow_aggregates::RecordedEvent;
use serde_json::Value;

use crate::api::Api;
use crate::journey::{charge_body, register_body};
use crate::serve::{Server, token};
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

    // The exported lines are the stored events, hashes included.
    let text = std::fs::read_to_string(&out).unwrap();
    let exported: Vec<RecordedEvent> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
