//! A fake payer: the pinned eligibility endpoint (`POST /CoverageEligibilityRequest`) on
//! 127.0.0.1:0, answering by member id so one server serves every case of a test:
//!
//! | member id | answer |
//! |---|---|
//! | `eligible…` | 200, `insurance[0].inforce: true` |
//! | `not-covered…` | 200, `insurance[0].inforce: false` |
//! | `denied…` | 404 with an OperationOutcome |
//! | `failing…` | 503 |
//! | `slow…` | 200 eligible, after [`FakePayer::SLOW`] (beyond the tests' timeouts) |
//! | `slow-once…` | slow the first time, eligible at once afterwards |
//! | `garbled…` | 200 that is not a CoverageEligibilityResponse |
//!
//! [`FakePayer::set_down`] makes every request a 503 until switched back up. Every request is
//! counted (per member too) and the last body kept, so tests can assert what reached the payer
//! and that an open breaker sent nothing.
//!
//! Claims (`POST /Claim/$submit`) are adjudicated the way a FHIR payer answers: a
//! ClaimResponse with `outcome`, `request.identifier`, per-item `adjudication[]` (categories
//! `submitted`, `eligible`, `benefit`) and `payment.amount`, or `error[]` for a denial. What
//! each claim gets is set per claim id with [`FakePayer::adjudicate`] (one [`Adjudication`]
//! per submission, the last repeating); a claim nobody configured gets the default
//! ([`FakePayer::adjudicate_others`]), `queued` unless set. Each Claim received is kept
//! ([`FakePayer::claims`]).

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// How the fake payer adjudicates one submission of a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Adjudication {
    /// Every item allowed and paid at its net.
    PaidInFull,
    /// Each item allowed at `allowed_percent` of its net (the rest contractual) and
    /// `pays_percent` of what is allowed paid (the rest is the patient's).
    Partial {
        allowed_percent: i64,
        pays_percent: i64,
    },
    /// `error[]` with this code, nothing paid.
    Denied {
        code: &'static str,
        display: &'static str,
    },
    /// `outcome: queued`: the payer will post its ClaimResponse later.
    Queued,
}

#[derive(Default)]
struct Shared {
    down: AtomicBool,
    adjudications: Mutex<HashMap<String, Vec<Adjudication>>>,
    /// What a claim without adjudications of its own gets (`None`: queued).
    others: Mutex<Option<Adjudication>>,
    claims: Mutex<Vec<Value>>,
    /// Submissions so far, per claim id.
    submissions: Mutex<HashMap<String, usize>>,
    requests: AtomicU32,
    per_member: Mutex<HashMap<String, u32>>,
    last: Mutex<Option<(Option<String>, Value)>>,
}

/// A running fake payer; stopped when dropped.
pub struct FakePayer {
    pub url: String,
    shared: Arc<Shared>,
    handle: ServerHandle,
}

impl FakePayer {
    /// How long a `slow` answer takes: far beyond any timeout the tests configure, and short
    /// enough that a stopped server's leftover handler ends soon.
    pub const SLOW: Duration = Duration::from_secs(3);

    /// Starts a fake payer on a free port of 127.0.0.1 (in its own actix system thread).
    pub fn start() -> FakePayer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared::default());
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let state = shared.clone();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let state = web::Data::from(state);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(state.clone())
                        .route("/CoverageEligibilityRequest", web::post().to(answer))
                        .route("/Claim/$submit", web::post().to(adjudicate))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .unwrap()
                .run();
                handle_tx.send(server.handle()).unwrap();
                server.await.unwrap();
            });
        });
        let handle = handle_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        FakePayer {
            url,
            shared,
            handle,
        }
    }

    /// Down: every request is answered 503 (the payer is having an outage). Up: normal.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// How the submissions of `claim_id` are answered, in order (the last one repeats).
    pub fn adjudicate(&self, claim_id: &str, answers: Vec<Adjudication>) {
        self.shared
            .adjudications
            .lock()
            .unwrap()
            .insert(claim_id.to_owned(), answers);
    }

    /// How every claim not configured with [`FakePayer::adjudicate`] is answered (what
    /// examples/claims_bench.rs sets; the tests configure each claim).
    #[allow(dead_code)]
    pub fn adjudicate_others(&self, answer: Adjudication) {
        *self.shared.others.lock().unwrap() = Some(answer);
    }

    /// Every Claim received, in order.
    pub fn claims(&self) -> Vec<Value> {
        self.shared.claims.lock().unwrap().clone()
    }

    /// Requests received so far.
    pub fn requests(&self) -> u32 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests received for one member id.
    pub fn requests_for(&self, member_id: &str) -> u32 {
        self.shared
            .per_member
            .lock()
            .unwrap()
            .get(member_id)
            .copied()
            .unwrap_or(0)
    }

    /// The last request's `Content-Type` and JSON body.
    pub fn last_request(&self) -> Option<(Option<String>, Value)> {
        self.shared.last.lock().unwrap().clone()
    }
}

impl Drop for FakePayer {
    fn drop(&mut self) {
        // `stop` sends the command at once; the returned future only waits for completion.
        drop(self.handle.stop(false));
    }
}

async fn answer(request: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let member = json
        .pointer("/insurance/0/coverage/identifier/value")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let seen = {
        let mut per_member = shared.per_member.lock().unwrap();
        let count = per_member.entry(member.clone()).or_default();
        *count += 1;
        *count
    };
    *shared.last.lock().unwrap() = Some((content_type, json));

    if shared.down.load(Ordering::SeqCst) {
        return outcome(503, "transient", "the payer is down for maintenance");
    }
    if member.starts_with("slow-once") {
        if seen == 1 {
            actix_web::rt::time::sleep(FakePayer::SLOW).await;
        }
        return response(true);
    }
    if member.starts_with("slow") {
        actix_web::rt::time::sleep(FakePayer::SLOW).await;
        return response(true);
    }
    if member.starts_with("eligible") {
        response(true)
    } else if member.starts_with("not-covered") {
        response(false)
    } else if member.starts_with("denied") {
        outcome(404, "not-found", "no such member at this payer")
    } else if member.starts_with("failing") {
        outcome(503, "transient", "the payer is failing")
    } else if member.starts_with("garbled") {
        HttpResponse::Ok()
            .content_type("application/fhir+json")
            .body(r#"{"resourceType":"Bundle"}"#)
    } else {
        outcome(
            400,
            "invalid",
            "the fake payer does not know this member id",
        )
    }
}

fn response(inforce: bool) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(json!({
            "resourceType": "CoverageEligibilityResponse",
            "id": if inforce { "resp-eligible" } else { "resp-not-covered" },
            "status": "active",
            "outcome": "complete",
            "insurance": [{"inforce": inforce}],
        }))
}

fn outcome(status: u16, code: &str, diagnostics: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .content_type("application/fhir+json")
        .json(json!({
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
        }))
}

/// Cents of a FHIR decimal (the Claim's `net.value`).
fn cents_of(value: &Value) -> i64 {
    (value.as_f64().unwrap() * 100.0).round() as i64
}

fn amount(cents: i64) -> Value {
    json!({"value": cents as f64 / 100.0, "currency": "USD"})
}

async fn adjudicate(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let claim: Value = match serde_json::from_slice(&body) {
        Ok(claim) => claim,
        Err(_) => return outcome(400, "structure", "the body is not JSON"),
    };
    if shared.down.load(Ordering::SeqCst) {
        return outcome(503, "transient", "the payer is down for maintenance");
    }
    if claim["resourceType"] != "Claim" {
        return outcome(400, "invalid", "a Claim is expected");
    }
    let Some(claim_id) = claim
        .pointer("/identifier/0/value")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return outcome(400, "required", "Claim.identifier is required");
    };
    shared.claims.lock().unwrap().push(claim.clone());
    let submission = {
        let mut submissions = shared.submissions.lock().unwrap();
        let count = submissions.entry(claim_id.clone()).or_insert(0);
        *count += 1;
        *count
    };
    let adjudication = shared
        .adjudications
        .lock()
        .unwrap()
        .get(&claim_id)
        .and_then(|answers| answers.get(submission - 1).or(answers.last()).cloned())
        .or_else(|| shared.others.lock().unwrap().clone())
        .unwrap_or(Adjudication::Queued);
    let mut response = json!({
        "resourceType": "ClaimResponse",
        "id": format!("{claim_id}-r{submission}"),
        "status": "active",
        "use": "claim",
        "request": {"identifier": {"value": claim_id}},
    });
    let items = claim["item"].as_array().cloned().unwrap_or_default();
    let category = |code: &str, cents: i64| json!({"category": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adjudication", "code": code}]}, "amount": amount(cents)});
    let (allowed_percent, pays_percent) = match adjudication {
        Adjudication::Queued => {
            response["outcome"] = json!("queued");
            return fhir_ok(response);
        }
        Adjudication::Denied { code, display } => {
            response["outcome"] = json!("error");
            response["disposition"] = json!("claim denied");
            response["error"] = json!([{"code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adjudication-error", "code": code, "display": display}]}}]);
            return fhir_ok(response);
        }
        Adjudication::PaidInFull => (100, 100),
        Adjudication::Partial {
            allowed_percent,
            pays_percent,
        } => (allowed_percent, pays_percent),
    };
    let mut paid = 0;
    let adjudicated: Vec<Value> = items
        .iter()
        .map(|item| {
            let net = cents_of(&item["net"]["value"]);
            let eligible = net * allowed_percent / 100;
            let benefit = eligible * pays_percent / 100;
            paid += benefit;
            json!({
                "itemSequence": item["sequence"],
                "adjudication": [category("submitted", net), category("eligible", eligible), category("benefit", benefit)],
            })
        })
        .collect();
    response["outcome"] = json!("complete");
    response["disposition"] = json!("claim settled");
    response["item"] = json!(adjudicated);
    response["payment"] = json!({"amount": amount(paid)});
    fhir_ok(response)
}

fn fhir_ok(body: Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(body)
}
