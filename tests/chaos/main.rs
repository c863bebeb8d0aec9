//! Chaos: faults beyond a single kill -9, each bounded in time and on loopback
//! (docs/reliability.md, "Faults"). A test binary of its own because it restarts the machine's
//! PostgreSQL: cargo runs test binaries one at a time, so no other test loses its database
//! under it, and the tests here take turns ([`one_at_a_time`]).

#[allow(dead_code)]
#[path = "../it/api.rs"]
mod api;
#[allow(dead_code)]
#[path = "../it/server.rs"]
mod server;
#[allow(dead_code)]
#[path = "../it/support.rs"]
mod support;

mod disk_full;
mod nats_restart;
mod postgres_restart;

use std::sync::{Arc, Mutex};

use careflow_aggregates::RecordedEvent;
use serde_json::{Value, json};

use crate::api::Api;

/// Serialises the tests of this binary: each takes a shared dependency down.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

pub fn register_body() -> Value {
    json!({
        "type": "RegisterPatient",
        "name": {"family": "Doe", "given": ["Jane"]},
        "birth_date": "1980-04-12", "gender": "female", "facility": "MAIN",
        "coverage": {"payer_id": "ACME", "member_id": "M-1", "plan": "gold"}
    })
}

pub fn charge_body(charge_id: &str) -> Value {
    json!({
        "type": "PostCharge", "charge_id": charge_id, "encounter_id": "V-C1",
        "code": "99213", "description": "office visit", "quantity": 1, "unit_price": "1.00"
    })
}

/// What one command got: its charge id and, when answered 200, its events.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: u16,
    pub retry_after: bool,
    pub events: Vec<RecordedEvent>,
}

/// Posts one charge with an Idempotency-Key; transport errors count as status 0.
pub async fn post_charge(api: &Api, token: &str, mrn: &str, charge_id: &str) -> Outcome {
    let path = format!("/v1/patient-accounts/{mrn}/commands");
    let reply = api
        .send(
            reqwest::Method::POST,
            &path,
            Some(token),
            &[("Idempotency-Key", charge_id)],
            Some(charge_body(charge_id).to_string()),
        )
        .await;
    match reply {
        Ok(reply) => Outcome {
            status: reply.status,
            retry_after: reply.headers.contains_key("retry-after"),
            events: if reply.status == 200 {
                serde_json::from_value(reply.body["events"].clone()).unwrap()
            } else {
                Vec::new()
            },
        },
        Err(_) => Outcome {
            status: 0,
            retry_after: false,
            events: Vec::new(),
        },
    }
}

/// A shared list of acknowledged events, filled by load clients.
pub type Acks = Arc<Mutex<Vec<RecordedEvent>>>;
