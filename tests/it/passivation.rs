//! Black-box: the registry's sweeper passivates idle actors on its own, and a passivated
//! aggregate comes back with its state.

use std::time::Duration;

use serde_json::json;

use crate::api::Api;
use crate::journey::{charge_body, register_body};
use crate::server::{Server, token};
use crate::support::{TempDir, eventually};

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn idle_actors_are_passivated_by_the_sweeper_and_come_back() {
    let dir = TempDir::new();
    let server = Server::start_with_env(&dir.path(), &[("CAREFLOW_ACTOR_IDLE_SECONDS", "1")]);
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let ehr = token(&dir.path(), "system", "ehr");
    api.ok(&ehr, "patient-accounts", "MRN-S1", register_body("Doe"))
        .await;
    api.ok(
        &ehr,
        "patient-accounts",
        "MRN-S1",
        charge_body("C1", "3.00", 1),
    )
    .await;

    let metrics_url = "/metrics";
    eventually(
        Duration::from_secs(30),
        "the idle actor to be passivated",
        || {
            let api = api.clone();
            async move {
                let text = api.get(metrics_url, None).await.text;
                let passivated =
                    metric(&text, "careflow_actor_passivations_total{reason=\"idle\"}")?;
                let live = metric(&text, "careflow_actors_live")?;
                (passivated >= 1.0 && live == 0.0).then_some(())
            }
        },
    )
    .await;

    // The next command rebuilds the state from the store.
    let reply = api
        .command(
            &ehr,
            "patient-accounts",
            "MRN-S1",
            charge_body("C1", "3.00", 1),
        )
        .await;
    assert_eq!(reply.assert_problem(409), "duplicate_charge");
    let done = api
        .ok(
            &ehr,
            "patient-accounts",
            "MRN-S1",
            json!({
                "type": "RecordPayment", "payment_id": "P1", "amount": "3.00", "method": "cash"
            }),
        )
        .await;
    assert_eq!(done["version"], 3);
    assert!(server.terminate().await.success());
}
