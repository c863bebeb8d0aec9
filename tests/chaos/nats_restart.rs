//! NATS restarted while careflow publishes: a NATS server of the test's own (JetStream on a
//! temp dir), stopped and started again on the same port and store.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::api::Api;
use crate::server::{Server, token_with_env};
use crate::support::{TempDir, eventually};
use crate::{Acks, one_at_a_time, post_charge, register_body};

struct Nats {
    child: Child,
    port: u16,
    store: TempDir,
}

impl Nats {
    fn start(port: u16, store: TempDir) -> Self {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (Debian package nats-server) on PATH");
        Self { child, port, store }
    }

    async fn wait_up(&self) {
        let addr = format!("127.0.0.1:{}", self.port);
        eventually(Duration::from_secs(30), "nats-server to listen", || async {
            tokio::net::TcpStream::connect(&addr).await.ok().map(|_| ())
        })
        .await;
    }

    /// SIGTERM, as a service manager restarts it; its JetStream store stays.
    fn stop(mut self) -> (u16, TempDir) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let port = self.port;
        let store = std::mem::replace(&mut self.store, TempDir::new());
        (port, store)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_restart_while_publishing_neither_loses_nor_doubles_a_message() {
    let _turn = one_at_a_time().await;
    let nats = Nats::start(free_port(), TempDir::new());
    nats.wait_up().await;
    let url = format!("nats://127.0.0.1:{}", nats.port);
    let dir = TempDir::new();
    let env = [
        ("CAREFLOW_NATS_URL", url.as_str()),
        ("CAREFLOW_NATS_STREAM", "CHAOS_EVENTS"),
        ("CAREFLOW_NATS_SUBJECT_PREFIX", "chaos.events"),
        ("CAREFLOW_RATE_LIMIT_PER_SECOND", "0"),
    ];
    let ehr = token_with_env(&dir.path(), &env, "system", "ehr");
    let auditor = token_with_env(&dir.path(), &env, "auditor", "compliance");
    let server = Server::start_with_env(&dir.path(), &env);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    api.ok(&ehr, "patient-accounts", "MRN-NATS", register_body())
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged: Acks = Arc::default();
    let client = {
        let (api, ehr) = (api.clone(), ehr.clone());
        let (stop, acknowledged) = (Arc::clone(&stop), Arc::clone(&acknowledged));
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let outcome = post_charge(&api, &ehr, "MRN-NATS", &format!("C-{i}")).await;
                assert_eq!(outcome.status, 200, "commands do not depend on NATS");
                acknowledged.lock().unwrap().extend(outcome.events);
                i += 1;
            }
        })
    };
    let grown = |n: usize| {
        let acknowledged = Arc::clone(&acknowledged);
        move || {
            let len = acknowledged.lock().unwrap().len();
            async move { (len >= n).then_some(()) }
        }
    };
    eventually(
        Duration::from_secs(60),
        "commands before the restart",
        grown(30),
    )
    .await;
    let (port, store) = nats.stop();
    eventually(
        Duration::from_secs(60),
        "commands while NATS is down",
        grown(60),
    )
    .await;
    let nats = Nats::start(port, store);
    nats.wait_up().await;
    eventually(
        Duration::from_secs(60),
        "commands after the restart",
        grown(90),
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    client.await.unwrap();

    // Every event of the log is on the stream exactly once, in log order (the reads here
    // are recorded in the access log too, so the stream may have more after it).
    let log = api.all_events(&auditor).await;
    let client = async_nats::connect(url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let published = eventually(Duration::from_secs(60), "every event published", || async {
        let mut stream = js.get_stream("CHAOS_EVENTS").await.ok()?;
        let count = stream.info().await.ok()?.state.messages;
        (count >= log.len() as u64).then_some(count)
    })
    .await;
    let stream = js.get_stream("CHAOS_EVENTS").await.unwrap();
    let mut ids = Vec::new();
    for sequence in 1..=published {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let id = message
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned());
        ids.push(id.unwrap());
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "a message was published twice");
    let expected: Vec<String> = log.iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(
        ids[..expected.len()],
        expected[..],
        "the stream differs from the log"
    );
    assert!(server.terminate().await.success());
}
