//! Black-box: the right to erasure (issue 7 part 5) on SQLite and PostgreSQL. A patient with
//! distinctive personal data is registered, billed and paid for, then erased over HTTP; every
//! read shows the personal fields as `null` while billing figures and the hash chains hold,
//! after a restart and a projection rebuild too, and no byte of the data is left in the data
//! dir's files or in any row of the PostgreSQL schema.

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::Api;
use crate::server::{Server, token_with_env};
use crate::support::eventually;
use crate::tamper::Site;

const MRN: &str = "ERASE-1";
/// Every personal value the patient's events carry: none may survive the erasure.
const FAMILY: &str = "Quillfeather-Zebedee";
const GIVEN: &str = "Ottoline";
const MEMBER_ID: &str = "MEMBER-ZQ-991";
const PAYER: &str = "Guarantor-Xanthippe";
const SECRETS: [&str; 4] = [FAMILY, GIVEN, MEMBER_ID, PAYER];

struct Tokens {
    system: String,
    admin: String,
    auditor: String,
    finance: String,
}

fn env_of(site: &Site) -> Vec<(&str, &str)> {
    site.env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([("CAREFLOW_SNAPSHOT_EVERY", "2")])
        .collect()
}

fn tokens(site: &Site) -> Tokens {
    let env = env_of(site);
    let t = |role: &str, subject: &str| token_with_env(&site.dir.path(), &env, role, subject);
    Tokens {
        system: t("system", "ehr"),
        admin: t("admin", "dpo-alice"),
        auditor: t("auditor", "compliance"),
        finance: t("finance", "ar-team"),
    }
}

fn start(site: &Site) -> Server {
    Server::start_with_env(&site.dir.path(), &env_of(site))
}

#[track_caller]
fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{what} still holds {secret:?}: {text}"
        );
    }
}

async fn balance(api: &Api, t: &Tokens, min_position: u64) -> Value {
    let reply = eventually(Duration::from_secs(30), "the billing view", || async {
        let reply = api
            .get(
                &format!("/v1/billing/accounts/{MRN}?min_position={min_position}"),
                Some(&t.finance),
            )
            .await;
        (reply.status == 200).then_some(reply)
    })
    .await;
    reply.body["account"]["balance"].clone()
}

/// Registers, bills and pays, erases over HTTP, and checks every read before and after a
/// restart and a rebuild. Leaves the server stopped.
async fn erase_over_http(site: &Site) {
    let t = tokens(site);
    let server = start(site);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let register = json!({
        "type": "RegisterPatient",
        "name": {"family": FAMILY, "given": [GIVEN]},
        "birth_date": "1961-07-30",
        "gender": "female",
        "facility": "MAIN",
        "coverage": {"payer_id": "ACME", "member_id": MEMBER_ID}
    });
    let answer = api.ok(&t.system, "patient-accounts", MRN, register).await;
    // The command's answer shows what was sent, decrypted.
    assert_eq!(
        answer["events"][0]["data"]["personal"]["name"]["family"],
        FAMILY
    );
    api.ok(
        &t.system,
        "patient-accounts",
        MRN,
        json!({"type": "PostCharge", "charge_id": "C1", "encounter_id": "V1", "code": "99213",
               "description": "office visit", "quantity": 1, "unit_price": "100.00"}),
    )
    .await;
    let paid = api
        .ok(
            &t.system,
            "patient-accounts",
            MRN,
            json!({"type": "RecordPayment", "payment_id": "P1", "amount": "30.00",
                   "method": "cash", "payer": PAYER}),
        )
        .await;
    let paid_at = paid["position"].as_u64().unwrap();
    let before = api
        .get(&format!("/v1/patient-accounts/{MRN}"), Some(&t.system))
        .await;
    assert_eq!(before.status, 200, "{}", before.text);
    assert!(before.text.contains(FAMILY), "{}", before.text);
    assert_eq!(balance(&api, &t, paid_at).await, "70.00");

    // Only an admin erases, and only through the erase route.
    let path = format!("/v1/patient-accounts/{MRN}/erase");
    let body = json!({"reason": "GDPR art. 17 request 2026-118"}).to_string();
    api.post_raw(&path, Some(&t.system), &[], body.clone())
        .await
        .assert_problem(403);
    let smuggled = api
        .command(
            &t.system,
            "patient-accounts",
            MRN,
            json!({"type": "ErasePersonalData", "reason": "x"}),
        )
        .await;
    assert_eq!(smuggled.status, 422, "{}", smuggled.text);
    api.post_raw(
        &path,
        Some(&t.admin),
        &[],
        json!({"reason": " "}).to_string(),
    )
    .await
    .assert_problem(422);
    let erased = api.post_raw(&path, Some(&t.admin), &[], body.clone()).await;
    assert_eq!(erased.status, 200, "{}", erased.text);
    let event = &erased.body["events"][0];
    assert_eq!(event["event_type"], "PersonalDataErased");
    assert_eq!(event["metadata"]["principal"], "dpo-alice");
    assert_eq!(event["data"]["reason"], "GDPR art. 17 request 2026-118");
    let erased_at = erased.body["position"].as_u64().unwrap();
    let again = api.post_raw(&path, Some(&t.admin), &[], body).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["events"], json!([]));

    check_reads(&api, &t, erased_at).await;
    // A rebuilt billing view has the same figures.
    let accepted = api
        .post_raw(
            "/v1/projections/billing/rebuild",
            Some(&t.admin),
            &[],
            String::new(),
        )
        .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    eventually(
        Duration::from_secs(60),
        "the rebuilt billing view",
        || async {
            let reply = api.get("/v1/projections", Some(&t.admin)).await;
            let billing = reply.body["projections"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == "billing")?
                .clone();
            (billing["generation"] == 2 && billing["state"] == "live").then_some(())
        },
    )
    .await;
    assert_eq!(balance(&api, &t, erased_at).await, "70.00");
    assert!(server.terminate().await.success());

    // After a restart: still erased (no snapshot, no cache brings anything back).
    let server = start(site);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    check_reads(&api, &t, erased_at).await;
    assert!(server.terminate().await.success());

    // The auditor's tools on the stopped site.
    let (code, output) = site.run(&["audit", "verify"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("intact"), "{output}");
    let (code, output) = site.run(&[
        "replay",
        &format!("patient_account-{MRN}"),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("\"personal_data_erased\": true"),
        "{output}"
    );
    assert_no_secret("replay", &output);
    let out = site.dir.path().join("erased.ndjson");
    let out_text = out.display().to_string();
    let (code, output) = site.run(&["audit", "export", "--patient", MRN, "--out", &out_text]);
    assert_eq!(code, 0, "{output}");
    let (code, output) = site.run(&["audit", "check-export", &out_text]);
    assert_eq!(code, 0, "{output}");
    assert_no_secret("the export", &std::fs::read_to_string(&out).unwrap());
    std::fs::remove_file(&out).unwrap();
}

/// State, history and billing after the erasure.
async fn check_reads(api: &Api, t: &Tokens, erased_at: u64) {
    let state = api
        .get(&format!("/v1/patient-accounts/{MRN}"), Some(&t.system))
        .await;
    assert_eq!(state.status, 200, "{}", state.text);
    assert_eq!(state.body["personal"], Value::Null, "{}", state.text);
    assert_eq!(state.body["personal_data_erased"], true);
    assert_eq!(state.body["balance"], "70.00");
    assert_eq!(state.body["payments"][0]["amount"], "30.00");
    assert_no_secret("the state", &state.text);
    let history = api
        .get(
            &format!("/v1/patient-accounts/{MRN}/history"),
            Some(&t.auditor),
        )
        .await;
    assert_eq!(history.status, 200, "{}", history.text);
    let events = history.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 4, "{}", history.text);
    for event in &events[..3] {
        if event["data"].get("personal").is_some() {
            assert_eq!(event["data"]["personal"], Value::Null, "{event}");
        }
    }
    assert_eq!(events[0]["data"]["facility"], "MAIN");
    assert_no_secret("the history", &history.text);
    assert_eq!(balance(api, t, erased_at).await, "70.00");
    let verify = api
        .get(
            &format!("/v1/audit/verify?stream=patient_account-{MRN}"),
            Some(&t.auditor),
        )
        .await;
    assert_eq!(verify.body["intact"], true, "{}", verify.text);
}

/// Every file of the data dir, byte for byte.
fn assert_no_secret_in_files(dir: &std::path::Path) {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for secret in SECRETS {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} still holds {secret:?}",
                path.display()
            );
        }
        checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    for expected in [
        "careflow.db",
        "keys.db",
        "snapshots.db",
        "views-billing.db",
        "views-analytics.db",
        "views-audit.db",
        "idempotency.db",
    ] {
        assert!(
            checked.iter().any(|c| c == expected),
            "{expected} not checked: {checked:?}"
        );
    }
}

#[tokio::test]
async fn erasure_on_sqlite_leaves_no_personal_data_in_any_file() {
    let site = Site::sqlite();
    erase_over_http(&site).await;
    assert_no_secret_in_files(&site.dir.path().join("data"));

    // The CLI: refused beside a running server (exit 2, with the way out), done without one.
    let t = tokens(&site);
    let server = start(&site);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let mut register = crate::journey::register_body("Doe");
    register["name"]["family"] = json!(FAMILY);
    api.ok(&t.system, "patient-accounts", "ERASE-2", register)
        .await;
    let (code, output) = site.run(&["erase", "ERASE-2", "--reason", "ticket 9"]);
    assert_eq!(code, 2, "{output}");
    assert!(
        output.contains("POST /v1/patient-accounts/{mrn}/erase"),
        "{output}"
    );
    assert!(server.terminate().await.success());
    let (code, output) = site.run(&[
        "erase",
        "ERASE-2",
        "--reason",
        "ticket 9",
        "--subject",
        "dpo-bob",
    ]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("erased personal data of patient ERASE-2: PersonalDataErased"),
        "{output}"
    );
    let (code, output) = site.run(&["erase", "NOBODY", "--reason", "ticket 10"]);
    assert_eq!(code, 2, "{output}");
    assert_no_secret_in_files(&site.dir.path().join("data"));
    let (code, output) = site.run(&["audit", "verify"]);
    assert_eq!(code, 0, "{output}");
}

#[tokio::test]
async fn erasure_on_postgres_leaves_no_personal_data_in_any_table() {
    let Some(site) = Site::postgres().await else {
        return;
    };
    erase_over_http(&site).await;
    // The CLI runs beside (or without) the nodes on PostgreSQL.
    let (code, output) = site.run(&["erase", MRN, "--reason", "repeat"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("already erased"), "{output}");

    let (url, schema) = site.pg.clone().unwrap();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let tables = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
            &[&schema],
        )
        .await
        .unwrap();
    let names: Vec<String> = tables.iter().map(|r| r.get(0)).collect();
    for expected in ["events", "patient_keys", "snapshots", "idempotency_keys"] {
        assert!(
            names.iter().any(|n| n == expected),
            "no {expected} in {names:?}"
        );
    }
    for table in &names {
        let rows = client
            .query(&format!("SELECT t::text FROM {schema}.{table} t"), &[])
            .await
            .unwrap();
        for row in rows {
            let text: String = row.get(0);
            assert_no_secret(&format!("{schema}.{table}"), &text);
        }
    }
    // Every key the patient's stored events name is gone, and the erasure is remembered.
    let stream = format!("patient_account-{MRN}");
    let named: i64 = client
        .query_one(
            &format!(
                "SELECT count(DISTINCT (data::jsonb)->'personal'->>'kid') FROM {schema}.events
                 WHERE stream_id = $1 AND (data::jsonb)->'personal'->>'kid' IS NOT NULL"
            ),
            &[&stream],
        )
        .await
        .unwrap()
        .get(0);
    assert!(named >= 1, "the patient's events name no key");
    let keys = client
        .query(
            &format!(
                "SELECT 1 FROM {schema}.patient_keys WHERE kid IN (
                     SELECT (data::jsonb)->'personal'->>'kid' FROM {schema}.events
                     WHERE stream_id = $1)"
            ),
            &[&stream],
        )
        .await
        .unwrap();
    let erased = client
        .query(
            &format!("SELECT 1 FROM {schema}.erased_patients WHERE mrn = $1"),
            &[&MRN],
        )
        .await
        .unwrap();
    assert_eq!(erased.len(), 1);
    assert!(
        keys.is_empty(),
        "the erased patient's key row is still there"
    );

    // A node with another master key would read every patient as erased: it refuses to start.
    let mut other = crate::server::careflow(&site.dir.path());
    for (k, v) in &site.env {
        other.env(k, v);
    }
    let output = other
        .env("CAREFLOW_MASTER_KEY", "cd".repeat(32))
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the master key does not match"), "{stderr}");
    site.cleanup().await;
}
