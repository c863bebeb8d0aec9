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
use crate::serve::{Server, careflow, token_with_env};
use crate::support::{TempDir, eventually};

const WITHIN: Duration = Duration::from_secs(30);

fn with_env(mut cmd: Command, env: &[(&str, &str)]) -> Command {
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd
}

fn run(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    let output = with_env(careflow(dir), env).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
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
