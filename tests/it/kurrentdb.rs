//! Black-box: `careflow serve` and the CLI on KurrentDB, against the fake server of the
//! `fake-kurrentdb` crate (the same one `cargo run --example fake_kurrentdb` starts).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fake_kurrentdb::FakeKurrentDb;
use serde_json::json;

use crate::api::{Api, assert_log_is_sound};
use crate::fake_payer::FakePayer;
use crate::fhir::{bundle_entries, patient_entry};
use crate::journey::charge_body;
use crate::server::{Server, careflow, run_to_end, token_with_env};
use crate::support::{TempDir, eventually};

const WITHIN: Duration = Duration::from_secs(30);

fn with_env(mut cmd: Command, env: &[(&str, &str)]) -> Command {
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd
}

fn run(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    run_to_end(with_env(careflow(dir), env).args(args))
}

/// A registration checked with the payer (eligibility process manager), a charge and a
/// command path over HTTP; the views and the process managers reach the head; the
/// log read back is sound and holds none of the server's own events; `audit verify` passes
/// (with the checkpoint `serve` signed at shutdown), and a Bundle across streams is refused
/// with nothing appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_kurrentdb_runs_a_journey_to_the_head_and_audit_verify_passes() {
    let kurrent = FakeKurrentDb::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = kurrent.connection_string();
    let payer = FakePayer::start();
    let dir = TempDir::new();
    let env = [
        ("CAREFLOW_STORE", "kurrentdb"),
        ("CAREFLOW_KURRENTDB_URL", url.as_str()),
        ("CAREFLOW_PAYER_URL", payer.url.as_str()),
        ("CAREFLOW_PROCESS_MANAGERS", "true"),
    ];
    let ehr = token_with_env(&dir.path(), &env, "system", "ehr");
    let auditor = token_with_env(&dir.path(), &env, "auditor", "compliance");
    let admin = token_with_env(&dir.path(), &env, "admin", "ops");
    let server = Server::spawn(with_env(careflow(&dir.path()), &env));
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let ready = api.get("/readyz", None).await;
    assert_eq!(ready.body["store"], "kurrentdb", "{}", ready.text);

    let registered = api
        .ok(
            &ehr,
            "patient-accounts",
            "MRN-K1",
            json!({
                "type": "RegisterPatient",
                "name": {"family": "Doe", "given": ["Jane"]},
                "birth_date": "1980-04-12", "gender": "female", "facility": "MAIN",
                "coverage": {"payer_id": "ACME", "member_id": "eligible-1", "plan": "gold"}
            }),
        )
        .await;
    assert_eq!(registered["version"], 1);
    // The eligibility process manager asks the payer and activates the account.
    eventually(WITHIN, "the account to be activated", || async {
        let reply = api.get("/v1/patient-accounts/MRN-K1", Some(&ehr)).await;
        (reply.body["status"] == "active").then_some(())
    })
    .await;
    let charged = api
        .ok(
            &ehr,
            "patient-accounts",
            "MRN-K1",
            charge_body("C-K1", "125.50", 2),
        )
        .await;
    assert_eq!(charged["events"][0]["event_type"], "ChargePosted");
    // The same command again (same Idempotency-Key): the first answer, nothing appended.
    let again = api
        .command_with(
            &ehr,
            "patient-accounts",
            "MRN-K1",
            charge_body("C-K2", "10.00", 1),
            &[("Idempotency-Key", "k-1")],
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    let repeat = api
        .command_with(
            &ehr,
            "patient-accounts",
            "MRN-K1",
            charge_body("C-K2", "10.00", 1),
            &[("Idempotency-Key", "k-1")],
        )
        .await;
    assert_eq!(repeat.body["position"], again.body["position"]);
    let account = api.get("/v1/patient-accounts/MRN-K1", Some(&ehr)).await;
    assert_eq!(account.body["balance"], "261.00", "{}", account.text);

    let events = api.all_events(&auditor).await;
    assert_log_is_sound(&events);
    assert!(events.iter().all(|e| !e.event_type.starts_with('$')));
    assert!(
        events.windows(2).any(|w| w[1].position > w[0].position + 1),
        "KurrentDB positions are commit positions, not a count"
    );
    let head = events.last().unwrap().position;
    // Every view and every process manager reaches the head.
    eventually(
        WITHIN,
        "the views and process managers at the head",
        || async {
            let views = api.get("/v1/projections", Some(&admin)).await.body;
            let managers = api.get("/v1/process-managers", Some(&admin)).await.body;
            let views_done = views["projections"]
                .as_array()?
                .iter()
                .all(|p| p["position"].as_u64().is_some_and(|p| p >= head) && p["state"] == "live");
            let managers_done = managers["process_managers"]
                .as_array()?
                .iter()
                .all(|m| m["lag"] == 0 && m["status"] == "running");
            (views_done && managers_done).then_some(())
        },
    )
    .await;

    // A Bundle that changes two streams cannot be one KurrentDB append: refused, nothing
    // appended.
    let before = api.all_events(&auditor).await.len();
    let bundle = bundle_entries(vec![
        patient_entry("MRN-K2"),
        json!({"resource": {
            "resourceType": "Encounter",
            "identifier": [{"type": {"coding": [{"code": "VN"}]}, "value": "V-K2"}],
            "status": "arrived",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "urn:uuid:patient-MRN-K2"},
            "serviceType": {"text": "cardiology"},
            "period": {"start": "2026-11-25T09:00:00Z"}
        }, "request": {"method": "POST", "url": "Encounter"}}),
    ]);
    let refused = api
        .post_raw(
            "/fhir/r4",
            Some(&ehr),
            &[("content-type", "application/fhir+json")],
            bundle.to_string(),
        )
        .await;
    assert_eq!(
        api.all_events(&auditor).await.len(),
        before,
        "{}",
        refused.text
    );
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(refused.text.contains("not-supported"), "{}", refused.text);

    assert!(server.terminate().await.success());
    let (code, output) = run(&dir.path(), &env, &["audit", "verify"]);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("intact"), "{output}");
    kurrent.stop().await;
}

/// `careflow store copy --to kurrentdb` moves a SQLite node: every event, in order, with its
/// hashes; `audit verify` passes on the copy; the new node serves the same accounts and views,
/// and its process managers resume where the old node's stood (the payer is not asked again).
/// A second run finds everything already there; a copy onto a KurrentDB that has moved on
/// since is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_copy_moves_a_sqlite_node_to_kurrentdb_and_audit_verify_passes_on_the_copy() {
    let kurrent = FakeKurrentDb::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = kurrent.connection_string();
    let payer = FakePayer::start();
    let old = TempDir::new();
    let sqlite_env = [
        ("CAREFLOW_PAYER_URL", payer.url.as_str()),
        ("CAREFLOW_PROCESS_MANAGERS", "true"),
    ];
    let ehr = token_with_env(&old.path(), &sqlite_env, "system", "ehr");
    let auditor = token_with_env(&old.path(), &sqlite_env, "auditor", "compliance");
    let admin = token_with_env(&old.path(), &sqlite_env, "admin", "ops");
    let finance = token_with_env(&old.path(), &sqlite_env, "finance", "fin");

    // The old node: two patients, activated by the eligibility process manager, and charges.
    let server = Server::spawn(with_env(careflow(&old.path()), &sqlite_env));
    server.wait_ready().await;
    let api = Api::new(&server.base);
    for (mrn, member, amount) in [
        ("MRN-M1", "eligible-1", "125.50"),
        ("MRN-M2", "eligible-2", "80.00"),
    ] {
        api.ok(
            &ehr,
            "patient-accounts",
            mrn,
            json!({
                "type": "RegisterPatient",
                "name": {"family": "Doe", "given": ["Jane"]},
                "birth_date": "1980-04-12", "gender": "female", "facility": "MAIN",
                "coverage": {"payer_id": "ACME", "member_id": member, "plan": "gold"}
            }),
        )
        .await;
        eventually(WITHIN, "the account to be activated", || async {
            let reply = api
                .get(&format!("/v1/patient-accounts/{mrn}"), Some(&ehr))
                .await;
            (reply.body["status"] == "active").then_some(())
        })
        .await;
        api.ok(
            &ehr,
            "patient-accounts",
            mrn,
            charge_body(&format!("C-{mrn}"), amount, 2),
        )
        .await;
    }
    let source_events = api.all_events(&auditor).await;
    eventually(WITHIN, "the process managers at the head", || async {
        let managers = api.get("/v1/process-managers", Some(&admin)).await.body;
        managers["process_managers"]
            .as_array()?
            .iter()
            .all(|m| m["lag"] == 0)
            .then_some(())
    })
    .await;
    let billing_before = billing(&api, &finance).await;
    assert!(server.terminate().await.success());
    let asked = payer.requests();
    assert!(asked >= 2, "the payer was asked about both patients");

    // The copy, into a new data dir.
    let new = TempDir::new();
    let new_data = new.path().join("data");
    let new_data = new_data.to_str().unwrap();
    let copy = [
        "store",
        "copy",
        "--to",
        "kurrentdb",
        "--url",
        url.as_str(),
        "--data-dir",
        new_data,
    ];
    let (code, output) = run(&old.path(), &sqlite_env, &copy);
    assert_eq!(code, Some(0), "{output}");
    // The source log as it stood: what was read above, plus the access records of that read
    // and whatever the server recorded at shutdown.
    let copied_count: usize = output
        .split("copied ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {output}"));
    assert!(copied_count >= source_events.len(), "{output}");
    assert!(output.contains("checkpoints"), "{output}");
    // Run again (an interrupted copy resumes this way): nothing is written twice.
    let (code, again) = run(&old.path(), &sqlite_env, &copy);
    assert_eq!(code, Some(0), "{again}");
    assert!(again.contains("(0 commands written"), "{again}");

    let kurrent_env = [
        ("CAREFLOW_STORE", "kurrentdb"),
        ("CAREFLOW_KURRENTDB_URL", url.as_str()),
        ("CAREFLOW_PAYER_URL", payer.url.as_str()),
        ("CAREFLOW_PROCESS_MANAGERS", "true"),
    ];
    let (code, verified) = run(&new.path(), &kurrent_env, &["audit", "verify"]);
    assert_eq!(code, Some(0), "{verified}");
    assert!(verified.contains("intact"), "{verified}");

    // The new node: the same events (ids, streams, versions, hashes, in order), the same
    // balances and billing view, tokens of the old node still valid.
    let server = Server::spawn(with_env(careflow(&new.path()), &kurrent_env));
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let copied = api.all_events(&auditor).await;
    assert!(copied.len() >= copied_count);
    for (ours, theirs) in source_events.iter().zip(&copied) {
        assert_eq!(
            (ours.event_id, &ours.stream_id, ours.version, &ours.hash),
            (
                theirs.event_id,
                &theirs.stream_id,
                theirs.version,
                &theirs.hash
            )
        );
    }
    assert_log_is_sound(&copied);
    let account = api.get("/v1/patient-accounts/MRN-M1", Some(&ehr)).await;
    assert_eq!(account.body["balance"], "251.00", "{}", account.text);
    assert_eq!(account.body["status"], "active", "{}", account.text);
    let copied_head = copied.last().unwrap().position;
    eventually(WITHIN, "the rebuilt views at the head", || async {
        let views = api.get("/v1/projections", Some(&admin)).await.body;
        views["projections"]
            .as_array()?
            .iter()
            .all(|p| p["position"].as_u64().is_some_and(|p| p >= copied_head))
            .then_some(())
    })
    .await;
    assert_eq!(billing(&api, &finance).await, billing_before);
    // The process managers stand at the copy's head: nothing is asked or sent again.
    // (The reads above are recorded in the access log, which the managers read past too.)
    eventually(WITHIN, "the process managers at the head", || async {
        let managers = api.get("/v1/process-managers", Some(&admin)).await.body;
        managers["process_managers"]
            .as_array()?
            .iter()
            .all(|m| m["lag"] == 0 && m["commands_sent"] == 0)
            .then_some(())
    })
    .await;
    assert_eq!(payer.requests(), asked);
    // New work chains onto the copied streams.
    let charged = api
        .ok(
            &ehr,
            "patient-accounts",
            "MRN-M1",
            charge_body("C-NEW", "10.00", 1),
        )
        .await;
    let versions = source_events
        .iter()
        .filter(|e| e.stream_id.as_str() == "patient_account-MRN-M1")
        .count();
    assert_eq!(charged["version"], versions + 1);
    assert!(server.terminate().await.success());
    let (code, verified) = run(&new.path(), &kurrent_env, &["audit", "verify"]);
    assert_eq!(code, Some(0), "{verified}");

    // The target has moved on: copying the old log onto it again is refused.
    let (code, refused) = run(&old.path(), &sqlite_env, &copy);
    assert_ne!(code, Some(0), "{refused}");
    assert!(
        refused.contains("the target holds events the source has not"),
        "{refused}"
    );
    kurrent.stop().await;
}

/// Both accounts' billing and the aging report, without the positions (which a copy changes).
async fn billing(api: &Api, finance: &str) -> Vec<serde_json::Value> {
    fn without_positions(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.retain(|key, _| !key.contains("position"));
                map.values_mut().for_each(without_positions);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(without_positions),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for path in [
        "/v1/billing/accounts/MRN-M1",
        "/v1/billing/accounts/MRN-M2",
        "/v1/billing/aging",
    ] {
        let reply = api.get(path, Some(finance)).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        let mut body = reply.body;
        without_positions(&mut body);
        out.push(body);
    }
    out
}
