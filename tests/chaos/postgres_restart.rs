//! PostgreSQL stopped and started again under load (`pg_ctlcluster`, as the machine runs it).

use std::io::{Read, Write};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::assert_acknowledged_present_once;
use crate::api::{Api, assert_log_is_sound};
use crate::server::{Server, token_with_env};
use crate::support::{TempDir, drop_schema, eventually, postgres_url, unique_schema};
use crate::{Acks, one_at_a_time, post_charge, register_body};

const CLIENTS: usize = 3;

fn cluster(action: &str) {
    let versions = std::fs::read_dir("/etc/postgresql").unwrap();
    for version in versions.flatten() {
        let version = version.file_name().to_string_lossy().into_owned();
        let status = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &version, "main", action])
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctlcluster {version} main {action}");
    }
}

fn postgres_answers() -> bool {
    Command::new("pg_isready")
        .args(["-q", "-h", "127.0.0.1", "-p", "5432"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Sends one HL7 message over MLLP and returns the ACK's MSA-1, or `None` when the
/// connection gives no answer.
fn mllp_ack(addr: &str, message: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    let mut frame = vec![0x0b];
    frame.extend_from_slice(message.as_bytes());
    frame.extend_from_slice(&[0x1c, 0x0d]);
    stream.write_all(&frame).ok()?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.ends_with(&[0x1c, 0x0d]) {
        let n = stream.read(&mut buffer).ok()?;
        if n == 0 {
            return None;
        }
        answer.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let msa = text.split('\r').find(|s| s.starts_with("MSA|"))?;
    msa.split('|').nth(1).map(str::to_owned)
}

/// A DFT^P03 charging one visit of `mrn` (the shape tests/it/mllp.rs sends).
fn charge_message(control_id: &str, mrn: &str) -> String {
    let pv1 = format!("PV1|1|O|CLINIC{}V-{mrn}", "|".repeat(16));
    format!(
        "MSH|^~\\&|LOAD|FAC|CAREFLOW|CF|20261208010000||DFT^P03|{control_id}|P|2.5\rPID|1||{mrn}^^^FAC^MR||Doe^Jane||19800131|F\r{pv1}\rFT1|1|||20261208||CG|99213^Visit|||1||10.00\r"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_under_load_answers_503_loses_nothing_and_recovers_by_itself() {
    let _turn = one_at_a_time().await;
    let Some(url) = postgres_url().await else {
        return;
    };
    let schema = unique_schema("chaos");
    let dir = TempDir::new();
    let env = [
        ("CAREFLOW_STORE", "postgres"),
        ("CAREFLOW_DATABASE_URL", url.as_str()),
        ("CAREFLOW_DATABASE_SCHEMA", schema.as_str()),
        ("CAREFLOW_RATE_LIMIT_PER_SECOND", "0"),
    ];
    let ehr = token_with_env(&dir.path(), &env, "system", "ehr");
    let auditor = token_with_env(&dir.path(), &env, "auditor", "compliance");
    let server = Server::start_with_env(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    for c in 0..CLIENTS {
        api.ok(
            &ehr,
            "patient-accounts",
            &format!("MRN-PGC{c}"),
            register_body(),
        )
        .await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged: Acks = Arc::default();
    let statuses: Arc<Mutex<Vec<(u16, bool)>>> = Arc::default();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (api, ehr) = (api.clone(), ehr.clone());
        let (stop, acknowledged, statuses) = (
            Arc::clone(&stop),
            Arc::clone(&acknowledged),
            Arc::clone(&statuses),
        );
        clients.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let outcome =
                    post_charge(&api, &ehr, &format!("MRN-PGC{c}"), &format!("C{c}-{i}")).await;
                statuses
                    .lock()
                    .unwrap()
                    .push((outcome.status, outcome.retry_after));
                if outcome.status == 200 {
                    acknowledged.lock().unwrap().extend(outcome.events);
                    i += 1;
                }
                // Otherwise retried with the same key (and charge id).
            }
        }));
    }
    eventually(Duration::from_secs(60), "load under way", || {
        let n = acknowledged.lock().unwrap().len();
        async move { (n >= 20).then_some(()) }
    })
    .await;

    cluster("stop");
    let down = async {
        // While it is down: readyz names the store, commands are refused with Retry-After,
        // and an HL7 message gets no AA.
        let ready = eventually(
            Duration::from_secs(30),
            "readyz to say the store is down",
            || async {
                let ready = api.get("/readyz", None).await;
                (ready.status == 503 && ready.text.contains("event_store")).then_some(ready)
            },
        )
        .await;
        assert!(ready.text.contains("postgres"), "{}", ready.text);
        let outcome = post_charge(&api, &ehr, "MRN-PGC0", "C-while-down").await;
        assert_eq!(outcome.status, 503);
        assert!(outcome.retry_after);
        let mllp = server.mllp.clone();
        let ack = tokio::task::spawn_blocking(move || {
            mllp_ack(&mllp, &charge_message("HL7-DOWN", "MRN-PGC0"))
        })
        .await
        .unwrap();
        assert_ne!(
            ack.as_deref(),
            Some("AA"),
            "an HL7 message was accepted with the store down"
        );
    };
    let checked = tokio::time::timeout(Duration::from_secs(60), down).await;
    cluster("start");
    checked.expect("the checks while PostgreSQL was down took too long");
    eventually(Duration::from_secs(60), "PostgreSQL up", || async {
        postgres_answers().then_some(())
    })
    .await;

    // It recovers by itself: commands go through and readyz is 200 again.
    let before = acknowledged.lock().unwrap().len();
    eventually(Duration::from_secs(60), "commands accepted again", || {
        let n = acknowledged.lock().unwrap().len();
        async move { (n >= before + 20).then_some(()) }
    })
    .await;
    eventually(Duration::from_secs(30), "readyz 200", || async {
        (api.get("/readyz", None).await.status == 200).then_some(())
    })
    .await;
    // The message refused while the store was down is valid: sent again, it is accepted.
    let mllp = server.mllp.clone();
    let ack = tokio::task::spawn_blocking(move || {
        mllp_ack(&mllp, &charge_message("HL7-DOWN", "MRN-PGC0"))
    })
    .await
    .unwrap();
    assert_eq!(ack.as_deref(), Some("AA"));
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    let statuses = statuses.lock().unwrap().clone();
    assert!(
        statuses
            .iter()
            .all(|(s, retry)| *s == 200 || (*s == 503 && *retry)),
        "only 200 or 503 with Retry-After: {:?}",
        statuses
            .iter()
            .filter(|(s, _)| *s != 200)
            .collect::<Vec<_>>()
    );
    assert!(
        statuses.iter().any(|(s, _)| *s == 503),
        "the clients never saw the outage"
    );

    let log = api.all_events(&auditor).await;
    assert_log_is_sound(&log);
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_acknowledged_present_once(&acknowledged, &log);
    assert!(server.terminate().await.success());
    let verify = crate::server::careflow(&dir.path())
        .envs(env)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    drop_schema(&url, &schema).await;
}
