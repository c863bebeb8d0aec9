//! The consumers of the log share one reader (`store::feed`) and one runtime
//! (`src/consumers`): a stalled consumer holds nobody else up, the log is read once per event
//! whatever the number of consumers, and `/readyz` names a consumer that is stuck.

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::Api;
use crate::server::{Server, token};
use crate::support::{TempDir, eventually};

const WITHIN: Duration = Duration::from_secs(60);

fn register_body(family: &str) -> Value {
    json!({
        "type": "RegisterPatient",
        "name": {"family": family, "given": ["Ann"]},
        "birth_date": "1975-02-03",
        "gender": "female",
        "facility": "MAIN",
    })
}

/// The value of the sample `name` (with its labels, as the text format writes them).
async fn metric(api: &Api, name: &str) -> Option<f64> {
    let reply = api.get("/metrics", None).await;
    reply
        .text
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}

#[tokio::test]
async fn a_stalled_webhook_and_a_rebuild_leave_the_other_consumers_and_the_command_path_going() {
    // A webhook receiver that accepts connections and never answers.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/never", hanging.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            held.push(socket);
        }
    });

    let dir = TempDir::new();
    let server = Server::start_with_env(
        &dir.path(),
        &[
            ("CAREFLOW_PROCESS_MANAGERS", "true"),
            ("CAREFLOW_WEBHOOK_TIMEOUT_MS", "600000"),
        ],
    );
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let ehr = token(&dir.path(), "system", "ehr");
    let admin = token(&dir.path(), "admin", "ops");

    let reply = api
        .post_raw(
            "/v1/webhooks",
            Some(&admin),
            &[],
            json!({"url": url, "event_types": ["*"]}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    // Registrations are answered while the webhook waits on its first delivery, and while a
    // rebuild of analytics reads the whole log from position 0.
    api.ok(&ehr, "patient-accounts", "MRN-S0", register_body("First"))
        .await;
    let rebuild = api
        .post_raw(
            "/v1/projections/analytics/rebuild",
            Some(&admin),
            &[],
            String::new(),
        )
        .await;
    assert_eq!(rebuild.status, 202, "{}", rebuild.text);
    for i in 1..120 {
        api.ok(
            &ehr,
            "patient-accounts",
            &format!("MRN-S{i}"),
            register_body(&format!("Family{i}")),
        )
        .await;
    }

    // Every view (the rebuilt one included) and every process manager reaches the head; the
    // webhook is still at its first event.
    let head = eventually(WITHIN, "views and process managers at the head", || async {
        let head = metric(&api, "careflow_log_tail_position").await? as u64;
        let views = api.get("/v1/projections", Some(&admin)).await.body;
        let views_done = views["projections"].as_array()?.iter().all(|p| {
            p["position"].as_u64() == Some(head)
                && p["state"] == "live"
                && (p["name"] != "analytics" || p["generation"].as_u64() == Some(2))
        });
        let managers = api.get("/v1/process-managers", Some(&admin)).await.body;
        let managers_done = managers["process_managers"]
            .as_array()?
            .iter()
            .all(|m| m["position"].as_u64() == Some(head) && m["status"] == "running");
        (head >= 120 && views_done && managers_done).then_some(head)
    })
    .await;
    let webhook_lag = metric(&api, "careflow_consumer_lag_events{consumer=\"webhooks\"}")
        .await
        .unwrap();
    assert!(webhook_lag >= 1.0, "the stalled webhook shows no lag");
    // Slow is not failing: the node stays ready.
    assert_eq!(api.get("/readyz", None).await.status, 200);

    // The shared reader read each event once, however many consumers followed it.
    let read_once = metric(&api, "careflow_log_events_read_total{reader=\"tail\"}")
        .await
        .unwrap();
    assert_eq!(
        read_once as u64, head,
        "the tail read some event twice, or skipped one"
    );
    holder.abort();
}

#[tokio::test]
async fn readyz_names_a_consumer_that_keeps_failing() {
    // A NATS address where nothing listens: the publisher fails and starts over, again and
    // again. Briefly that is a blip; past `consumers::FAILING_AFTER` (30 s) the node says so.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new();
    let server = Server::start_with_env(
        &dir.path(),
        &[("CAREFLOW_NATS_URL", &format!("nats://127.0.0.1:{port}"))],
    );
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let reply = eventually(
        WITHIN,
        "/readyz to report the failing publisher",
        || async {
            let reply = api.get("/readyz", None).await;
            (reply.status == 503).then_some(reply)
        },
    )
    .await;
    assert_eq!(reply.body["code"], "consumer_failing", "{}", reply.text);
    assert_eq!(reply.header("retry-after"), None);
    let consumers = reply.body["consumers"].as_array().unwrap();
    assert_eq!(consumers.len(), 1, "{}", reply.text);
    assert_eq!(consumers[0]["name"], "nats");
    assert_eq!(consumers[0]["state"], "retrying");
    assert!(
        consumers[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("connecting to NATS")),
        "{}",
        reply.text
    );
    assert!(reply.body["detail"].as_str().unwrap().contains("nats"));
    // Commands are still taken: readiness reports, it does not refuse.
    let ehr = token(&dir.path(), "system", "ehr");
    api.ok(&ehr, "patient-accounts", "MRN-R1", register_body("Ready"))
        .await;
}
