//! Black-box: `kill -9` in the middle of concurrent commands. Every command answered 2xx has
//! its events in the store exactly once, retries after the restart append nothing twice, and
//! every stream's hash chain verifies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use careflow_aggregates::RecordedEvent;
use serde_json::json;
use uuid::Uuid;

use crate::api::{Api, assert_log_is_sound};
use crate::journey::{charge_body, register_body};
use crate::server::{Server, token};
use crate::support::{TempDir, eventually};

const CLIENTS: usize = 4;
const PER_CLIENT: usize = 200;

/// What a client sent with one Idempotency-Key, and what it got back if anything.
#[derive(Debug, Clone)]
struct Sent {
    mrn: String,
    charge_id: String,
    key: String,
    acknowledged: Option<Vec<RecordedEvent>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_acknowledged_before_a_kill_9_are_stored_exactly_once() {
    kill_9_under_load(&[]).await;
}

/// The same on KurrentDB (the fake server, which lives in this process and so outlives the
/// killed careflow): what was acknowledged is there once, and retries append nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_acknowledged_before_a_kill_9_are_stored_exactly_once_on_kurrentdb() {
    let kurrent = fake_kurrentdb::FakeKurrentDb::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = kurrent.connection_string();
    kill_9_under_load(&[
        ("CAREFLOW_STORE", "kurrentdb"),
        ("CAREFLOW_KURRENTDB_URL", url.as_str()),
    ])
    .await;
    kurrent.stop().await;
}

async fn kill_9_under_load(store_env: &[(&str, &str)]) {
    let dir = TempDir::new();
    let mut env = vec![("CAREFLOW_RATE_LIMIT_PER_SECOND", "0")];
    env.extend_from_slice(store_env);
    let server = Server::start_with_env(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let ehr = token(&dir.path(), "system", "ehr");
    let auditor = token(&dir.path(), "auditor", "compliance");

    // Clients 0 and 1 share one account (so their commands contend), 2 and 3 have their own.
    let mrns: Vec<String> = (0..CLIENTS).map(|c| format!("MRN-K{}", c.max(1))).collect();
    let mut registered = mrns.clone();
    registered.dedup();
    for mrn in &registered {
        api.ok(&ehr, "patient-accounts", mrn, register_body("Doe"))
            .await;
    }

    let acknowledged = Arc::new(AtomicUsize::new(0));
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let mut clients = Vec::new();
    for (client, mrn) in mrns.iter().enumerate() {
        let api = api.clone();
        let ehr = ehr.clone();
        let mrn = mrn.clone();
        let acknowledged = Arc::clone(&acknowledged);
        let sent = Arc::clone(&sent);
        clients.push(tokio::spawn(async move {
            for i in 0..PER_CLIENT {
                let charge_id = format!("C{client}-{i}");
                let key = Uuid::new_v4().to_string();
                let index = {
                    let mut sent = sent.lock().unwrap();
                    sent.push(Sent {
                        mrn: mrn.clone(),
                        charge_id: charge_id.clone(),
                        key: key.clone(),
                        acknowledged: None,
                    });
                    sent.len() - 1
                };
                let body = charge_body(&charge_id, "1.00", 1).to_string();
                let path = format!("/v1/patient-accounts/{mrn}/commands");
                let reply = api
                    .send(
                        reqwest::Method::POST,
                        &path,
                        Some(&ehr),
                        &[("Idempotency-Key", &key)],
                        Some(body),
                    )
                    .await;
                match reply {
                    Ok(reply) if reply.status == 200 => {
                        let events: Vec<RecordedEvent> =
                            serde_json::from_value(reply.body["events"].clone()).unwrap();
                        assert_eq!(events.len(), 1);
                        sent.lock().unwrap()[index].acknowledged = Some(events);
                        acknowledged.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(reply) => panic!("unexpected answer {}: {}", reply.status, reply.text),
                    // The server died under us: this one is in doubt.
                    Err(_) => return,
                }
            }
        }));
    }

    // Kill the server once a good share of the commands has been acknowledged.
    eventually(Duration::from_secs(60), "acknowledged commands", || {
        let n = acknowledged.load(Ordering::SeqCst);
        async move { (n >= 60).then_some(()) }
    })
    .await;
    server.kill9();
    for client in clients {
        client.await.unwrap();
    }
    let sent = sent.lock().unwrap().clone();
    let total_acked = sent.iter().filter(|s| s.acknowledged.is_some()).count();
    eprintln!(
        "crash test: {} sent, {total_acked} acknowledged before the kill",
        sent.len()
    );
    assert!(total_acked >= 60);
    assert!(
        total_acked < CLIENTS * PER_CLIENT,
        "every command finished before the kill; the test proved nothing"
    );

    // Restart on the same data dir.
    let server = Server::start_with_env(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let log = api.all_events(&auditor).await;
    assert_log_is_sound(&log);
    let by_id: HashMap<Uuid, &RecordedEvent> = log.iter().map(|e| (e.event_id, e)).collect();
    let mut by_command: HashMap<Uuid, usize> = HashMap::new();
    for event in &log {
        *by_command.entry(event.metadata.command_id).or_default() += 1;
    }
    for s in sent.iter() {
        if let Some(events) = &s.acknowledged {
            for event in events {
                let stored = by_id
                    .get(&event.event_id)
                    .unwrap_or_else(|| panic!("acknowledged event of {} lost", s.charge_id));
                assert_eq!(
                    *stored, event,
                    "stored event differs from the acknowledgement"
                );
                assert_eq!(by_command[&event.metadata.command_id], 1);
            }
        }
    }

    // Retrying every command in doubt (and a few acknowledged ones) with its key appends each
    // at most once: afterwards every charge is on its account exactly once.
    for s in sent.iter() {
        let reply = api
            .command_with(
                &ehr,
                "patient-accounts",
                &s.mrn,
                charge_body(&s.charge_id, "1.00", 1),
                &[("Idempotency-Key", &s.key)],
            )
            .await;
        assert_eq!(reply.status, 200, "{}: {}", s.charge_id, reply.text);
        if let Some(events) = &s.acknowledged {
            let again: Vec<RecordedEvent> =
                serde_json::from_value(reply.body["events"].clone()).unwrap();
            assert_eq!(&again, events, "a retry got another answer");
        }
    }
    for mrn in &registered {
        let account = api
            .get(&format!("/v1/patient-accounts/{mrn}"), Some(&ehr))
            .await;
        let charges = account.body["charges"].as_array().unwrap();
        let expected = sent.iter().filter(|s| &s.mrn == mrn).count();
        assert_eq!(charges.len(), expected, "{mrn}");
        let mut ids: Vec<&str> = charges
            .iter()
            .map(|c| c["charge_id"].as_str().unwrap())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), expected, "{mrn} holds a charge twice");
        assert_eq!(
            account.body["balance"],
            json!(format!("{expected}.00")),
            "{mrn}"
        );
    }
    let log = api.all_events(&auditor).await;
    assert_log_is_sound(&log);
    assert!(server.terminate().await.success());
}

/// What the mixed clients had acknowledged: HTTP charges' events, FHIR Bundles' patients,
/// MLLP messages' control ids.
#[derive(Default)]
struct MixedAcks {
    http: Vec<RecordedEvent>,
    bundles: Vec<String>,
    hl7: Vec<String>,
}

const ROUNDS: usize = 5;

/// Sends one framed HL7 message and reads its ACK's MSA-1; `None` when the connection breaks
/// (the server was killed).
async fn exchange_hl7(stream: &mut tokio::net::TcpStream, message: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut frame = vec![0x0b];
    frame.extend_from_slice(message.as_bytes());
    frame.extend_from_slice(&[0x1c, 0x0d]);
    stream.write_all(&frame).await.ok()?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.ends_with(&[0x1c, 0x0d]) {
        let n = stream.read(&mut buffer).await.ok()?;
        if n == 0 {
            return None;
        }
        answer.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let msa = text.split('\r').find(|s| s.starts_with("MSA|"))?.to_owned();
    msa.split('|').nth(1).map(str::to_owned)
}

fn dft(control_id: &str, mrn: &str) -> String {
    let pv1 = format!("PV1|1|O|CLINIC{}V-{mrn}", "|".repeat(16));
    format!(
        "MSH|^~\\&|LOAD|FAC|CAREFLOW|CF|20261208010000||DFT^P03|{control_id}|P|2.5\rPID|1||{mrn}^^^FAC^MR||Doe^Jane||19800131|F\r{pv1}\rFT1|1|||20261208||CG|99213^Visit|||1||1.00\r"
    )
}

/// Issue #15 part 4: five kill -9 rounds in a row while HTTP commands, FHIR transaction
/// Bundles and MLLP messages arrive together. After them every acknowledged command, Bundle
/// and message is stored exactly once, every chain verifies, and each account's billing view
/// equals its state as rebuilt from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_kill_9_rounds_under_http_fhir_and_mllp_load_lose_and_double_nothing() {
    let dir = TempDir::new();
    let env = [("CAREFLOW_RATE_LIMIT_PER_SECOND", "0")];
    let ehr = token(&dir.path(), "system", "ehr");
    let auditor = token(&dir.path(), "auditor", "compliance");
    let finance = token(&dir.path(), "finance", "fin");
    let acks: Arc<Mutex<MixedAcks>> = Arc::default();
    for round in 0..ROUNDS {
        let server = Server::start_with_env(&dir.path(), &env);
        server.wait_ready().await;
        let api = Api::new(&server.base);
        let http_mrn = format!("MRN-R{round}");
        let hl7_mrn = format!("MRN-H{round}");
        for mrn in [&http_mrn, &hl7_mrn] {
            api.ok(&ehr, "patient-accounts", mrn, register_body("Doe"))
                .await;
        }
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let http = {
            let (api, ehr, acks, n) = (
                api.clone(),
                ehr.clone(),
                Arc::clone(&acks),
                Arc::clone(&acknowledged),
            );
            tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("K{round}-{i}");
                    let body = charge_body(&format!("C{round}-{i}"), "1.00", 1).to_string();
                    let path = format!("/v1/patient-accounts/{http_mrn}/commands");
                    let headers = [("Idempotency-Key", key.as_str())];
                    let Ok(reply) = api
                        .send(
                            reqwest::Method::POST,
                            &path,
                            Some(&ehr),
                            &headers,
                            Some(body),
                        )
                        .await
                    else {
                        return;
                    };
                    assert_eq!(reply.status, 200, "{}", reply.text);
                    let events: Vec<RecordedEvent> =
                        serde_json::from_value(reply.body["events"].clone()).unwrap();
                    acks.lock().unwrap().http.extend(events);
                    n.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let fhir = {
            let (api, ehr, acks, n) = (
                api.clone(),
                ehr.clone(),
                Arc::clone(&acks),
                Arc::clone(&acknowledged),
            );
            tokio::spawn(async move {
                for i in 0.. {
                    let mrn = format!("MRN-F{round}-{i}");
                    let bundle =
                        crate::fhir::bundle_entries(vec![crate::fhir::patient_entry(&mrn)]);
                    let headers = [("content-type", "application/fhir+json")];
                    let Ok(reply) = api
                        .send(
                            reqwest::Method::POST,
                            "/fhir/r4",
                            Some(&ehr),
                            &headers,
                            Some(bundle.to_string()),
                        )
                        .await
                    else {
                        return;
                    };
                    assert_eq!(reply.status, 200, "{}", reply.text);
                    acks.lock().unwrap().bundles.push(mrn);
                    n.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let mllp = {
            let (addr, acks, n) = (
                server.mllp.clone(),
                Arc::clone(&acks),
                Arc::clone(&acknowledged),
            );
            tokio::spawn(async move {
                let Ok(mut stream) = tokio::net::TcpStream::connect(&addr).await else {
                    return;
                };
                for i in 0.. {
                    let control = format!("M{round}-{i}");
                    match exchange_hl7(&mut stream, &dft(&control, &hl7_mrn))
                        .await
                        .as_deref()
                    {
                        Some("AA") => {
                            acks.lock().unwrap().hl7.push(control);
                            n.fetch_add(1, Ordering::SeqCst);
                        }
                        Some(other) => panic!("{control} answered {other}"),
                        None => return,
                    }
                }
            })
        };
        eventually(
            Duration::from_secs(60),
            "acknowledgements in this round",
            || {
                let n = acknowledged.load(Ordering::SeqCst);
                async move { (n >= 30).then_some(()) }
            },
        )
        .await;
        server.kill9();
        for client in [http, fhir, mllp] {
            client.await.unwrap();
        }
    }

    let server = Server::start_with_env(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let log = api.all_events(&auditor).await;
    assert_log_is_sound(&log);
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    eprintln!(
        "kill -9 rounds: {ROUNDS}; acknowledged: {} HTTP events, {} Bundles, {} HL7 messages",
        acks.http.len(),
        acks.bundles.len(),
        acks.hl7.len()
    );
    assert!(!acks.http.is_empty() && !acks.bundles.is_empty() && !acks.hl7.is_empty());
    crate::api::assert_acknowledged_present_once(&acks.http, &log);
    let count = |stream: &str, event_type: &str| {
        log.iter()
            .filter(|e| e.stream_id.as_str() == stream && e.event_type == event_type)
            .count()
    };
    for mrn in &acks.bundles {
        assert_eq!(
            count(&format!("patient_account-{mrn}"), "PatientRegistered"),
            1,
            "{mrn}"
        );
    }
    for control in &acks.hl7 {
        let charge = format!("{control}-1");
        let stored = log
            .iter()
            .filter(|e| e.event_type == "ChargePosted" && e.data["charge_id"] == charge.as_str())
            .count();
        assert_eq!(stored, 1, "HL7 {control}");
    }
    // Each view equals the state rebuilt from the log, account by account.
    let head = log.last().unwrap().position;
    for round in 0..ROUNDS {
        for mrn in [format!("MRN-R{round}"), format!("MRN-H{round}")] {
            let state = api
                .get(&format!("/v1/patient-accounts/{mrn}"), Some(&ehr))
                .await;
            let balance = state.body["balance"].clone();
            let path = format!("/v1/billing/accounts/{mrn}?min_position={head}");
            let view = eventually(
                Duration::from_secs(30),
                "the billing view at the head",
                || async {
                    let view = api.get(&path, Some(&finance)).await;
                    (view.status == 200).then_some(view)
                },
            )
            .await;
            assert_eq!(view.body["account"]["balance"], balance, "{mrn}");
        }
    }
    assert!(server.terminate().await.success());
    let (code, output) =
        crate::server::run_to_end(crate::server::careflow(&dir.path()).args(["audit", "verify"]));
    assert_eq!(code, Some(0), "{output}");
}
