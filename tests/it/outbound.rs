//! Black-box: the outbound publishers through the real binary. NATS against the real server
//! on 127.0.0.1:4222 (skipped when none answers, failing under `CAREFLOW_REQUIRE_NATS=1`),
//! each test with a stream name and subject prefix of its own; webhooks against a receiver on
//! port 0 in the test that verifies every Standard Webhooks signature itself.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use careflow_aggregates::RecordedEvent;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::api::Api;
use crate::server::{Server, careflow, token};
use crate::support::{TempDir, eventually, nats_url};

const WITHIN: Duration = Duration::from_secs(30);

fn register_body(family: &str) -> Value {
    json!({
        "type": "RegisterPatient",
        "name": {"family": family, "given": ["Jane"]},
        "birth_date": "1980-04-12",
        "gender": "female",
        "facility": "MAIN",
    })
}

fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
    let mut cmd = careflow(dir);
    for (key, value) in env {
        cmd.env(key, value);
    }
    Server::spawn(cmd)
}

/// A name no other test (or earlier run) uses, for streams and subject prefixes.
fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Every message of a JetStream stream, in sequence order.
async fn stream_messages(
    js: &async_nats::jetstream::Context,
    name: &str,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let mut stream = js.get_stream(name).await.unwrap();
    let info = stream.info().await.unwrap();
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return out;
    }
    for seq in first..=last {
        out.push(stream.get_raw_message(seq).await.unwrap());
    }
    out
}

async fn message_count(js: &async_nats::jetstream::Context, name: &str) -> Option<u64> {
    let mut stream = js.get_stream(name).await.ok()?;
    Some(stream.info().await.ok()?.state.messages)
}

/// The `nats` checkpoint in the data dir's checkpoint table.
fn nats_checkpoint(dir: &Path) -> Option<u64> {
    let conn = rusqlite::Connection::open(dir.join("data/process_managers.db")).ok()?;
    conn.query_row(
        "SELECT position FROM process_manager_checkpoints WHERE name = 'nats'",
        [],
        |row| row.get::<_, i64>(0),
    )
    .ok()
    .map(|p| p as u64)
}

#[tokio::test]
async fn nats_gets_every_event_in_order_with_its_id_and_a_restart_resends_nothing_twice() {
    let Some(url) = nats_url().await else {
        return;
    };
    let stream_name = unique("CF_TEST");
    let prefix = format!("cftest.{}", unique("p"));
    let env = [
        ("CAREFLOW_NATS_URL", url.as_str()),
        ("CAREFLOW_NATS_STREAM", stream_name.as_str()),
        ("CAREFLOW_NATS_SUBJECT_PREFIX", prefix.as_str()),
    ];
    let dir = TempDir::new();
    let server = start(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let ehr = token(&dir.path(), "system", "ehr");
    let admin = token(&dir.path(), "admin", "ops");
    for mrn in ["MRN-N1", "MRN-N2", "MRN-N3"] {
        api.ok(&ehr, "patient-accounts", mrn, register_body("Doe"))
            .await;
    }
    api.ok(
        &ehr,
        "encounters",
        "V-N1",
        json!({"type": "ScheduleEncounter", "account_id": "MRN-N1", "facility": "MAIN",
               "department": "ER", "class": "emergency", "scheduled_for": "2026-05-01T10:00:00Z"}),
    )
    .await;
    let log: Vec<RecordedEvent> = api.all_events(&admin).await;
    assert!(log.len() >= 4, "{log:?}");

    let client = async_nats::connect(url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let expected = log.len() as u64;
    eventually(WITHIN, "every event on NATS", || async {
        (message_count(&js, &stream_name).await? >= expected).then_some(())
    })
    .await;
    let messages = stream_messages(&js, &stream_name).await;
    assert_eq!(messages.len(), log.len());
    for (message, event) in messages.iter().zip(&log) {
        assert_eq!(
            message.subject.as_str(),
            format!("{prefix}.{}.{}", event.stream_id.kind(), event.event_type)
        );
        assert_eq!(
            message.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some(event.event_id.to_string().as_str())
        );
        let body: Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(body["position"], event.position, "in position order");
        assert_eq!(body["event_id"], event.event_id.to_string());
        if event.event_type == "PatientRegistered" {
            // Personal data never goes out in clear.
            assert!(event.data["personal"].is_object());
            assert_eq!(body["data"]["personal"], Value::Null);
            assert!(!String::from_utf8_lossy(&message.payload).contains("Doe"));
        }
    }

    // Stop, rewind the checkpoint to the start (well inside the duplicate window), restart:
    // everything is published again and JetStream drops every repeat by its Nats-Msg-Id.
    let head = log.last().unwrap().position;
    eventually(WITHIN, "the nats checkpoint at the head", || async {
        (nats_checkpoint(&dir.path())? >= head).then_some(())
    })
    .await;
    assert!(server.terminate().await.success());
    let conn = rusqlite::Connection::open(dir.path().join("data/process_managers.db")).unwrap();
    let rewound = conn
        .execute(
            "UPDATE process_manager_checkpoints SET position = 0 WHERE name = 'nats'",
            [],
        )
        .unwrap();
    assert_eq!(rewound, 1);
    drop(conn);
    let server = start(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    api.ok(&ehr, "patient-accounts", "MRN-N4", register_body("Roe"))
        .await;
    let log = api.all_events(&admin).await;
    let head = log.last().unwrap().position;
    eventually(WITHIN, "the republished log acknowledged", || async {
        (nats_checkpoint(&dir.path())? >= head).then_some(())
    })
    .await;
    let messages = stream_messages(&js, &stream_name).await;
    let ids: Vec<String> = messages
        .iter()
        .map(|m| m.headers.get("Nats-Msg-Id").unwrap().to_string())
        .collect();
    let unique_ids: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique_ids.len(), ids.len(), "a message was published twice");
    assert_eq!(messages.len(), log.len(), "exactly one message per event");
    let positions: Vec<u64> = messages
        .iter()
        .map(|m| {
            serde_json::from_slice::<Value>(&m.payload).unwrap()["position"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");

    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("careflow_nats_published_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("careflow_nats_lag_seconds_bucket"),
        "{metrics}"
    );
    assert!(server.terminate().await.success());
    js.delete_stream(&stream_name).await.unwrap();
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    webhook_id: String,
    signature_ok: bool,
    status: u16,
    body: Value,
}

/// How a receiver path answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 200 to every correctly signed request.
    Ok,
    /// 500 to the first `n` attempts of every webhook-id, then 200.
    FailFirst(usize),
    /// 503 to everything.
    Down,
}

#[derive(Default)]
struct ReceiverState {
    secrets: Mutex<HashMap<String, Vec<u8>>>,
    modes: Mutex<HashMap<String, Mode>>,
    attempts: Mutex<HashMap<(String, String), usize>>,
    received: Mutex<Vec<Received>>,
}

/// A webhook receiver on 127.0.0.1:0 that checks every signature with the secret of its path
/// (its own HMAC, not careflow's code) and answers as the path's [`Mode`] says.
struct Receiver {
    base: String,
    state: Arc<ReceiverState>,
    handle: ServerHandle,
}

fn verify(secret: &[u8], id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    header.split(' ').any(|signature| {
        let Some(encoded) = signature.strip_prefix("v1,") else {
            return false;
        };
        let Ok(expected) = BASE64.decode(encoded) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    })
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    let path = req.path().trim_start_matches('/').to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() <= 300);
    let signature_ok = fresh
        && state
            .secrets
            .lock()
            .unwrap()
            .get(&path)
            .is_some_and(|secret| verify(secret, &id, &timestamp, &body, &signature));
    let mode = state
        .modes
        .lock()
        .unwrap()
        .get(&path)
        .copied()
        .unwrap_or(Mode::Down);
    let attempt = {
        let mut attempts = state.attempts.lock().unwrap();
        let n = attempts.entry((path.clone(), id.clone())).or_default();
        *n += 1;
        *n
    };
    let status = match mode {
        _ if !signature_ok => 401,
        Mode::Ok => 200,
        Mode::FailFirst(n) if attempt <= n => 500,
        Mode::FailFirst(_) => 200,
        Mode::Down => 503,
    };
    state.received.lock().unwrap().push(Received {
        path,
        webhook_id: id,
        signature_ok,
        status,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(ReceiverState::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let data = web::Data::from(shared);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .default_service(web::to(receive))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .unwrap()
                .run();
                tx.send(server.handle()).unwrap();
                server.await.unwrap();
            });
        });
        let handle = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Receiver {
            base,
            state,
            handle,
        }
    }

    fn route(&self, path: &str, secret: &str, mode: Mode) {
        let key = BASE64
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        self.state
            .secrets
            .lock()
            .unwrap()
            .insert(path.to_string(), key);
        self.set_mode(path, mode);
    }

    fn set_mode(&self, path: &str, mode: Mode) {
        self.state
            .modes
            .lock()
            .unwrap()
            .insert(path.to_string(), mode);
    }

    fn received(&self, path: &str) -> Vec<Received> {
        self.state
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(handle.stop(false));
        });
    }
}

fn test_secret(byte: u8) -> String {
    format!("whsec_{}", BASE64.encode([byte; 32]))
}

async fn post_webhook(api: &Api, token: &str, body: Value) -> crate::api::Reply {
    api.post_raw("/v1/webhooks", Some(token), &[], body.to_string())
        .await
}

#[tokio::test]
async fn webhooks_are_validated_signed_filtered_retried_with_a_stable_id_and_dead_lettered() {
    let receiver = Receiver::start();
    let dir = TempDir::new();
    let server = start(
        &dir.path(),
        &[
            ("CAREFLOW_WEBHOOK_MAX_ATTEMPTS", "3"),
            ("CAREFLOW_WEBHOOK_BACKOFF_FIRST_MS", "20"),
            ("CAREFLOW_WEBHOOK_BACKOFF_MAX_MS", "100"),
            ("CAREFLOW_WEBHOOK_TIMEOUT_MS", "5000"),
        ],
    );
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let ehr = token(&dir.path(), "system", "ehr");
    let admin = token(&dir.path(), "admin", "ops");

    // Refusals: role, url, event types, secret, unknown field. None appends anything.
    let ok_url = format!("{}/registrations", receiver.base);
    let refused = post_webhook(&api, &ehr, json!({"url": ok_url, "event_types": ["*"]})).await;
    assert_eq!(refused.assert_problem(403), "forbidden");
    for (body, code) in [
        (
            json!({"url": "ftp://x.example/", "event_types": ["*"]}),
            "invalid_webhook_url",
        ),
        (
            json!({"url": "nowhere", "event_types": ["*"]}),
            "invalid_webhook_url",
        ),
        (
            json!({"url": ok_url, "event_types": []}),
            "invalid_webhook_event_types",
        ),
        (
            json!({"url": ok_url, "event_types": ["patient.registered"]}),
            "invalid_webhook_event_types",
        ),
        (
            json!({"url": ok_url, "event_types": ["*"], "secret": "plain"}),
            "invalid_webhook_secret",
        ),
        (
            json!({"url": ok_url, "event_types": ["*"], "secret": "whsec_AAAA"}),
            "invalid_webhook_secret",
        ),
        (
            json!({"url": ok_url, "event_types": ["*"], "colour": "red"}),
            "invalid_webhook",
        ),
    ] {
        let reply = post_webhook(&api, &admin, body.clone()).await;
        assert_eq!(reply.assert_problem(422), code, "{body}");
    }
    let listed = api.get("/v1/webhooks", Some(&admin)).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.body["webhooks"], json!([]));
    assert!(
        api.all_events(&admin).await.is_empty(),
        "a refused registration appended something"
    );

    // registrations: only PatientRegistered, with our secret.
    let registrations_secret = test_secret(7);
    receiver.route("registrations", &registrations_secret, Mode::Ok);
    let reply = post_webhook(
        &api,
        &admin,
        json!({"url": ok_url, "event_types": ["PatientRegistered"], "secret": registrations_secret}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.body["secret"], registrations_secret.as_str());
    // charges: ChargePosted to a receiver that is down.
    let charges_secret = test_secret(9);
    receiver.route("charges", &charges_secret, Mode::Down);
    let reply = post_webhook(
        &api,
        &admin,
        json!({"url": format!("{}/charges", receiver.base), "event_types": ["ChargePosted"], "secret": charges_secret}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let charges_id = reply.body["id"].as_str().unwrap().to_string();
    // everything: every event, secret generated, failing the first two attempts of each.
    let reply = post_webhook(
        &api,
        &admin,
        json!({"url": format!("{}/everything", receiver.base), "event_types": ["*"]}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let generated = reply.body["secret"].as_str().unwrap().to_string();
    assert!(generated.starts_with("whsec_"), "{generated}");
    receiver.route("everything", &generated, Mode::FailFirst(2));

    let listed = api.get("/v1/webhooks", Some(&admin)).await;
    let webhooks = listed.body["webhooks"].as_array().unwrap();
    assert_eq!(webhooks.len(), 3, "{}", listed.text);
    assert!(
        !listed.text.contains("whsec_"),
        "GET shows a secret: {}",
        listed.text
    );
    assert!(!listed.text.contains("secret"), "{}", listed.text);

    // The events.
    api.ok(&ehr, "patient-accounts", "MRN-W1", register_body("Doe"))
        .await;
    api.ok(&ehr, "patient-accounts", "MRN-W2", register_body("Roe"))
        .await;
    api.ok(
        &ehr,
        "patient-accounts",
        "MRN-W1",
        json!({"type": "PostCharge", "charge_id": "CH-1", "encounter_id": "V-W1", "code": "99213",
               "description": "visit", "quantity": 1, "unit_price": "125.50"}),
    )
    .await;
    let log = api.all_events(&admin).await;
    let after = |path: &str| -> Vec<RecordedEvent> {
        let registered_at = log
            .iter()
            .find(|e| {
                e.event_type == "WebhookRegistered"
                    && e.data["url"].as_str().unwrap().ends_with(path)
            })
            .unwrap()
            .position;
        log.iter()
            .filter(|e| e.position > registered_at)
            .cloned()
            .collect()
    };
    let msg_id = |e: &RecordedEvent| format!("msg_{}", e.event_id.simple());

    // registrations: exactly the PatientRegistered events, in order, personal data null.
    let wanted: Vec<RecordedEvent> = after("/registrations")
        .into_iter()
        .filter(|e| e.event_type == "PatientRegistered")
        .collect();
    assert_eq!(wanted.len(), 2);
    let got = eventually(WITHIN, "the registrations delivered", || async {
        let got = receiver.received("registrations");
        (got.len() >= wanted.len()).then_some(got)
    })
    .await;
    assert_eq!(got.len(), wanted.len(), "{got:?}");
    for (received, event) in got.iter().zip(&wanted) {
        assert!(received.signature_ok);
        assert_eq!(received.status, 200);
        assert_eq!(received.webhook_id, msg_id(event));
        assert_eq!(received.body["event_type"], "PatientRegistered");
        assert_eq!(received.body["position"], event.position);
        assert_eq!(received.body["data"]["personal"], Value::Null);
    }

    // everything: every later event, each after two failures, all three attempts under the
    // same webhook-id, the successes in position order.
    let wanted = after("/everything");
    assert!(wanted.len() >= 3);
    let got = eventually(WITHIN, "every event delivered to everything", || async {
        let got = receiver.received("everything");
        (got.iter().filter(|r| r.status == 200).count() >= wanted.len()).then_some(got)
    })
    .await;
    assert!(got.iter().all(|r| r.signature_ok), "{got:?}");
    let delivered: Vec<&Received> = got.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        delivered
            .iter()
            .map(|r| r.webhook_id.clone())
            .collect::<Vec<_>>(),
        wanted.iter().map(msg_id).collect::<Vec<_>>()
    );
    for event in &wanted {
        let attempts: Vec<&Received> = got
            .iter()
            .filter(|r| r.webhook_id == msg_id(event))
            .collect();
        assert_eq!(
            attempts.iter().map(|r| r.status).collect::<Vec<_>>(),
            vec![500, 500, 200],
            "{}",
            event.event_type
        );
    }

    // charges: three failed attempts of the ChargePosted, then a dead letter.
    let charge = log
        .iter()
        .find(|e| e.event_type == "ChargePosted")
        .unwrap()
        .clone();
    eventually(WITHIN, "three attempts at the charge", || async {
        (receiver.received("charges").len() >= 3).then_some(())
    })
    .await;
    let dead = eventually(WITHIN, "the dead letter", || async {
        let reply = api
            .get("/v1/dead-letters?source=webhook", Some(&admin))
            .await;
        (reply.status == 200).then_some(())?;
        let rows = reply.body["dead_letters"].as_array()?.clone();
        rows.into_iter()
            .find(|row| row["key"] == charges_id.as_str())
    })
    .await;
    assert_eq!(dead["event_id"], charge.event_id.to_string());
    assert_eq!(dead["attempts"], 3);
    assert_eq!(dead["status"], "dead");
    let dead_id = dead["id"].as_i64().unwrap();
    let attempts = receiver.received("charges");
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(
        attempts
            .iter()
            .all(|r| r.signature_ok && r.status == 503 && r.webhook_id == msg_id(&charge))
    );

    // The receiver is fixed; an operator retries: delivered once more, same webhook-id.
    receiver.set_mode("charges", Mode::Ok);
    let reply = api
        .post_raw(
            &format!("/v1/dead-letters/{dead_id}/retry"),
            Some(&admin),
            &[],
            "{}".into(),
        )
        .await;
    assert!(reply.status < 300, "{}", reply.text);
    let got = eventually(WITHIN, "the retried charge delivered", || async {
        let got = receiver.received("charges");
        got.iter().any(|r| r.status == 200).then_some(got)
    })
    .await;
    let last = got.last().unwrap();
    assert_eq!(
        (last.status, last.webhook_id.clone()),
        (200, msg_id(&charge))
    );
    assert_eq!(last.body["event_type"], "ChargePosted");
    eventually(WITHIN, "the dead letter resolved", || async {
        let reply = api
            .get("/v1/dead-letters?source=webhook&all=true", Some(&admin))
            .await;
        let rows = reply.body["dead_letters"].as_array()?.clone();
        rows.iter()
            .any(|row| row["id"] == dead_id && row["status"] == "resolved")
            .then_some(())
    })
    .await;

    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for outcome in ["delivered", "failed", "dead_lettered", "redelivered"] {
        assert!(
            metrics.contains(&format!(
                "careflow_webhook_deliveries_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome}: {metrics}"
        );
    }

    // Removal: gone from the list, a second removal is a 404.
    let path = format!("/v1/webhooks/{charges_id}");
    let removed = api
        .send(reqwest::Method::DELETE, &path, Some(&admin), &[], None)
        .await
        .unwrap();
    assert_eq!(removed.status, 204, "{}", removed.text);
    let again = api
        .send(reqwest::Method::DELETE, &path, Some(&admin), &[], None)
        .await
        .unwrap();
    assert_eq!(again.assert_problem(404), "not_found");
    let listed = api.get("/v1/webhooks", Some(&admin)).await;
    assert_eq!(listed.body["webhooks"].as_array().unwrap().len(), 2);
    assert!(server.terminate().await.success());
}

#[tokio::test]
async fn a_delivery_cut_by_a_crash_is_made_after_the_restart_with_the_same_webhook_id() {
    let receiver = Receiver::start();
    let dir = TempDir::new();
    let env = [
        ("CAREFLOW_WEBHOOK_MAX_ATTEMPTS", "1000"),
        ("CAREFLOW_WEBHOOK_BACKOFF_FIRST_MS", "20"),
        ("CAREFLOW_WEBHOOK_BACKOFF_MAX_MS", "50"),
    ];
    let server = start(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let ehr = token(&dir.path(), "system", "ehr");
    let admin = token(&dir.path(), "admin", "ops");
    let secret = test_secret(3);
    receiver.route("ledger", &secret, Mode::Down);
    let reply = post_webhook(
        &api,
        &admin,
        json!({"url": format!("{}/ledger", receiver.base), "event_types": ["PatientRegistered"], "secret": secret}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    api.ok(&ehr, "patient-accounts", "MRN-C1", register_body("Doe"))
        .await;
    api.ok(&ehr, "patient-accounts", "MRN-C2", register_body("Roe"))
        .await;
    let wanted: Vec<String> = api
        .all_events(&admin)
        .await
        .iter()
        .filter(|e| e.event_type == "PatientRegistered")
        .map(|e| format!("msg_{}", e.event_id.simple()))
        .collect();
    // The first delivery is being retried when the process dies.
    eventually(WITHIN, "attempts at the first registration", || async {
        (receiver.received("ledger").len() >= 2).then_some(())
    })
    .await;
    server.kill9();
    let before = receiver.received("ledger");
    assert!(
        before
            .iter()
            .all(|r| r.signature_ok && r.status == 503 && r.webhook_id == wanted[0])
    );

    receiver.set_mode("ledger", Mode::Ok);
    let server = start(&dir.path(), &env);
    server.wait_ready().await;
    let delivered = eventually(
        WITHIN,
        "both registrations delivered after the restart",
        || async {
            let delivered: Vec<String> = receiver
                .received("ledger")
                .into_iter()
                .filter(|r| r.status == 200)
                .map(|r| r.webhook_id)
                .collect();
            (delivered.len() >= wanted.len()).then_some(delivered)
        },
    )
    .await;
    assert_eq!(delivered, wanted, "the same webhook-ids, in order");
    let listed = Api::new(&server.base)
        .get("/v1/webhooks", Some(&admin))
        .await;
    assert_eq!(
        listed.body["webhooks"].as_array().unwrap().len(),
        1,
        "{}",
        listed.text
    );
    assert!(server.terminate().await.success());
}
