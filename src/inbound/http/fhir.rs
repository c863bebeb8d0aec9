//! The FHIR R4 routes at `/fhir/r4` (DESIGN.md "Interop"): `application/fhir+json` in and
//! out, `OperationOutcome` for every refusal, FHIR's status codes.
//!
//! Writes need the `system` role (the right to send commands), reads `system` or `auditor`,
//! like `/v1`; `GET metadata` needs no token. Writes honour `Idempotency-Key` as the command
//! path does: a retry with the same key and body gets the first answer and appends nothing.
//! Every write is a message of the `fhir` interface in `careflow_interface_*` metrics.
//! The mapping itself lives in `crate::inbound::fhir`; this file only speaks HTTP.

use actix_web::body::BoxBody;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use careflow_aggregates::{Encounter, PatientAccount, StreamId};
use serde_json::Value;

use super::error::{ApiError, MAX_BODY_BYTES};
use super::idempotency::{Check, Idempotency, Replay};
use super::json;
use super::problem::Problem;
use super::{AppState, Caller, Runtime, correlation_id};
use crate::inbound::fhir::FhirError;
use crate::inbound::fhir::bundle::Transaction;
use crate::inbound::fhir::execute::{self, Applied, Message};
use crate::inbound::fhir::inbound::{self, Method};
use crate::inbound::fhir::render::{self, FHIR_JSON};
use crate::operations::audit::access_log::Access;
use crate::operations::metrics;
use crate::store::idempotency::StoredAnswer;

/// The base of every FHIR route.
pub const BASE: &str = "/fhir/r4";

/// A recorded answer is given again as FHIR JSON, the refusal as its OperationOutcome.
const REPLAY: Replay = Replay {
    success: FHIR_JSON,
    problem: FHIR_JSON,
    fallback: StatusCode::CONFLICT,
};

/// A transaction Bundle may be larger than a command body: 20 entries of full resources.
const MAX_FHIR_BODY_BYTES: usize = 4 * MAX_BODY_BYTES;

/// Registers the FHIR routes (listed in `openapi::ROUTES` too).
pub fn register(cfg: &mut web::ServiceConfig) {
    let only = |path: &str, allow: &'static str| {
        web::resource(path).default_service(web::to(move || async move { not_allowed(allow) }))
    };
    cfg.service(
        web::scope(BASE)
            .service(only("", "POST").route(web::post().to(transaction)))
            .service(only("/metadata", "GET").route(web::get().to(metadata)))
            .service(only("/Patient", "POST").route(web::post().to(create_patient)))
            // Before `/Patient/{id}`, which would otherwise take `$merge` for an id.
            .service(only("/Patient/$merge", "POST").route(web::post().to(merge_patients)))
            .service(
                only("/Patient/{id}", "GET, PUT")
                    .route(web::get().to(read_patient))
                    .route(web::put().to(update_patient)),
            )
            .service(only("/Encounter", "POST").route(web::post().to(create_encounter)))
            .service(only("/Encounter/{id}", "GET").route(web::get().to(read_encounter)))
            .service(only("/Coverage", "POST").route(web::post().to(create_coverage)))
            .service(only("/ChargeItem", "POST").route(web::post().to(create_charge_item)))
            .service(only("/SupplyDelivery", "POST").route(web::post().to(create_supply_delivery)))
            .service(
                only("/CoverageEligibilityResponse", "POST")
                    .route(web::post().to(create_eligibility_response)),
            )
            .service(only("/Claim", "POST").route(web::post().to(create_claim)))
            .service(only("/ClaimResponse", "POST").route(web::post().to(create_claim_response)))
            .default_service(web::to(unknown)),
    );
}

/// Why a FHIR request failed: the HTTP edge's own errors (token, role, readiness) or the
/// adapter's. Both answer as an `OperationOutcome`.
#[derive(Debug)]
enum Failure {
    Api(ApiError),
    Fhir(FhirError),
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Failure::Api(error)
    }
}

impl From<FhirError> for Failure {
    fn from(error: FhirError) -> Self {
        Failure::Fhir(error)
    }
}

impl Failure {
    /// FHIR's IssueType code (a bounded metric label).
    fn issue_code(&self) -> &'static str {
        match self {
            Failure::Fhir(error) => error.issue_code(),
            Failure::Api(error) => match error.status_code().as_u16() {
                400 => "invalid",
                401 => "login",
                403 => "forbidden",
                404 => "not-found",
                409 => "conflict",
                413 => "too-costly",
                422 => "invalid",
                429 => "throttled",
                503 => "transient",
                _ => "exception",
            },
        }
    }

    fn response(&self) -> HttpResponse {
        match self {
            Failure::Api(error) => {
                let problem: Problem = error.problem();
                let mut diagnostics = problem.title.clone();
                for part in [&problem.detail, &problem.hint].into_iter().flatten() {
                    diagnostics.push_str("; ");
                    diagnostics.push_str(part);
                }
                // `error_response` logs a 5xx once and carries the headers (Retry-After,
                // WWW-Authenticate); only the body changes to an OperationOutcome.
                let outcome = render::plain_outcome(self.issue_code(), &diagnostics);
                with_fhir_body(error.error_response(), &outcome)
            }
            Failure::Fhir(error) => {
                let status = StatusCode::from_u16(error.status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                match error {
                    FhirError::Corrupt(_) => tracing::error!(%error, "FHIR request failed"),
                    FhirError::Unavailable(_) => tracing::warn!(%error, "FHIR request failed"),
                    _ => {}
                }
                let mut builder = HttpResponse::build(status);
                builder.content_type(FHIR_JSON);
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    builder.insert_header(("Retry-After", "1"));
                }
                builder.json(render::error_outcome(error))
            }
        }
    }

    /// A refusal worth giving again to a retry with the same Idempotency-Key (not a
    /// transient one: that retry should run again).
    fn is_final(&self) -> bool {
        match self {
            Failure::Fhir(error) => {
                !matches!(
                    error,
                    FhirError::Conflict { .. } | FhirError::Unavailable(_) | FhirError::Corrupt(_)
                ) && !matches!(error, FhirError::Entry { error, .. } if matches!(**error, FhirError::Conflict { .. } | FhirError::Unavailable(_) | FhirError::Corrupt(_)))
            }
            Failure::Api(_) => false,
        }
    }
}

fn with_fhir_body(response: HttpResponse, body: &Value) -> HttpResponse {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = response.set_body(BoxBody::new(bytes));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

fn not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = HttpResponse::MethodNotAllowed()
        .content_type(FHIR_JSON)
        .json(render::plain_outcome(
            "not-supported",
            &format!("this FHIR route answers {allow} only"),
        ));
    if let Ok(value) = HeaderValue::from_str(allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

async fn unknown(req: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound()
        .content_type(FHIR_JSON)
        .json(render::plain_outcome(
            "not-supported",
            &format!(
                "{} {} is not supported; GET {BASE}/metadata lists what is",
                req.method(),
                req.path()
            ),
        ))
}

fn fhir_ok(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(FHIR_JSON)
        .json(body)
}

/// The CapabilityStatement: what careflow's FHIR endpoint supports. No token needed.
#[utoipa::path(get, path = "/fhir/r4/metadata", tag = "fhir",
    responses((status = 200, description = "A FHIR R4 CapabilityStatement", body = Object, content_type = "application/fhir+json")))]
pub async fn metadata() -> HttpResponse {
    fhir_ok(
        StatusCode::OK,
        &render::capability_statement(env!("CARGO_PKG_VERSION")),
    )
}

macro_rules! create_route {
    ($name:ident, $path:literal, $kind:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "fhir",
            params(("Idempotency-Key" = Option<String>, Header, description = "same key and body: the first answer again")),
            request_body(content = Object, description = "A FHIR R4 resource", content_type = "application/fhir+json"),
            responses(
                (status = 200, description = "Applied; an OperationOutcome lists the commands and events", body = Object, content_type = "application/fhir+json"),
                (status = 201, description = "Created (Patient, Encounter); Location names it", body = Object, content_type = "application/fhir+json"),
                (status = 400, description = "Not JSON, wrong resourceType, or an element of the wrong type", body = Object, content_type = "application/fhir+json"),
                (status = 401, description = "No or invalid bearer token", body = Object, content_type = "application/fhir+json"),
                (status = 403, description = "The token's role may not send commands", body = Object, content_type = "application/fhir+json"),
                (status = 409, description = "A business rule refused it", body = Object, content_type = "application/fhir+json"),
                (status = 422, description = "An element careflow needs is missing or unmappable", body = Object, content_type = "application/fhir+json"),
                (status = 503, description = "Event store unavailable (Retry-After)", body = Object, content_type = "application/fhir+json"),
            ),
            security(("bearer" = [])))]
        pub async fn $name(
            req: HttpRequest,
            caller: Result<Caller, ApiError>,
            payload: web::Payload,
            app: web::Data<AppState>,
        ) -> HttpResponse {
            write(req, caller, payload, app, Some($kind), Method::Create).await
        }
    };
}

create_route!(
    create_patient,
    "/fhir/r4/Patient",
    "Patient",
    "Creates a Patient: RegisterPatient."
);
create_route!(
    create_encounter,
    "/fhir/r4/Encounter",
    "Encounter",
    "An Encounter: the encounter commands that lead to its status, in order."
);
create_route!(
    create_coverage,
    "/fhir/r4/Coverage",
    "Coverage",
    "A Coverage: UpdateDemographics with the account's coverage."
);
create_route!(
    create_charge_item,
    "/fhir/r4/ChargeItem",
    "ChargeItem",
    "A ChargeItem: PostCharge."
);
create_route!(
    create_supply_delivery,
    "/fhir/r4/SupplyDelivery",
    "SupplyDelivery",
    "A SupplyDelivery: ReceiveGoods or RecordSupplyUsage."
);
create_route!(
    create_eligibility_response,
    "/fhir/r4/CoverageEligibilityResponse",
    "CoverageEligibilityResponse",
    "A CoverageEligibilityResponse: RecordEligibility."
);

create_route!(
    create_claim,
    "/fhir/r4/Claim",
    "Claim",
    "A Claim from an upstream billing system: CreateClaim, then SubmitClaim when its status is active."
);
create_route!(
    create_claim_response,
    "/fhir/r4/ClaimResponse",
    "ClaimResponse",
    "A ClaimResponse (a payer's adjudication): RecordClaimResponse on the claim `request` names; 404 when careflow holds no such claim."
);

/// The operation `Parameters` of `POST Patient/$merge`: what [`apply`] recognises it by.
const MERGE_PARAMETERS: &str = "Parameters";

/// Merges two patients (FHIR R5's `$merge`, on R4): `MergePatient {into: target}` to the
/// source account, whose money the `merges` process manager then moves to the target.
#[utoipa::path(post, path = "/fhir/r4/Patient/$merge", tag = "fhir",
    params(("Idempotency-Key" = Option<String>, Header, description = "same key and body: the first answer again")),
    request_body(content = Object, description = "A FHIR Parameters resource: source-patient-identifier and target-patient-identifier (valueIdentifier), or source-patient and target-patient (valueReference)", content_type = "application/fhir+json"),
    responses(
        (status = 200, description = "Merged: a Parameters resource whose `outcome` lists the command and events", body = Object, content_type = "application/fhir+json"),
        (status = 400, description = "Not JSON or not a Parameters resource", body = Object, content_type = "application/fhir+json"),
        (status = 401, description = "No or invalid bearer token", body = Object, content_type = "application/fhir+json"),
        (status = 403, description = "The token's role may not send commands", body = Object, content_type = "application/fhir+json"),
        (status = 409, description = "A business rule refused it (source already merged: account_merged; target not registered, merged or closed)", body = Object, content_type = "application/fhir+json"),
        (status = 422, description = "A patient parameter is missing or not a valid MRN, source and target are the same, or preview was asked", body = Object, content_type = "application/fhir+json"),
        (status = 503, description = "Event store unavailable (Retry-After)", body = Object, content_type = "application/fhir+json"),
    ),
    security(("bearer" = [])))]
pub async fn merge_patients(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    payload: web::Payload,
    app: web::Data<AppState>,
) -> HttpResponse {
    write(
        req,
        caller,
        payload,
        app,
        Some(MERGE_PARAMETERS),
        Method::Create,
    )
    .await
}

/// Updates (or creates) a Patient: UpdateDemographics, RegisterPatient when new.
#[utoipa::path(put, path = "/fhir/r4/Patient/{id}", tag = "fhir",
    params(("id" = String, Path, description = "The MRN"),
        ("Idempotency-Key" = Option<String>, Header, description = "same key and body: the first answer again")),
    request_body(content = Object, description = "A FHIR R4 Patient", content_type = "application/fhir+json"),
    responses(
        (status = 200, description = "Updated", body = Object, content_type = "application/fhir+json"),
        (status = 201, description = "Created", body = Object, content_type = "application/fhir+json"),
        (status = 400, description = "Not JSON or not a Patient", body = Object, content_type = "application/fhir+json"),
        (status = 409, description = "A business rule refused it", body = Object, content_type = "application/fhir+json"),
        (status = 422, description = "An element careflow needs is missing or unmappable, or the resource's id differs from the URL's", body = Object, content_type = "application/fhir+json"),
    ),
    security(("bearer" = [])))]
pub async fn update_patient(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    id: web::Path<String>,
    payload: web::Payload,
    app: web::Data<AppState>,
) -> HttpResponse {
    let method = Method::Update {
        id: id.into_inner(),
    };
    write(req, caller, payload, app, Some("Patient"), method).await
}

/// A transaction Bundle: every entry applied, or none (one bad entry: an OperationOutcome
/// naming `Bundle.entry[i]`, nothing appended).
#[utoipa::path(post, path = "/fhir/r4", tag = "fhir",
    params(("Idempotency-Key" = Option<String>, Header, description = "same key and body: the first answer again")),
    request_body(content = Object, description = "A FHIR R4 Bundle of type transaction", content_type = "application/fhir+json"),
    responses(
        (status = 200, description = "All entries applied: a transaction-response Bundle", body = Object, content_type = "application/fhir+json"),
        (status = 400, description = "Not a transaction Bundle, or an entry that does not parse", body = Object, content_type = "application/fhir+json"),
        (status = 409, description = "An entry refused by a business rule", body = Object, content_type = "application/fhir+json"),
        (status = 422, description = "An entry careflow cannot map", body = Object, content_type = "application/fhir+json"),
    ),
    security(("bearer" = [])))]
pub async fn transaction(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    payload: web::Payload,
    app: web::Data<AppState>,
) -> HttpResponse {
    write(req, caller, payload, app, None, Method::Create).await
}

/// Every write: one message of the `fhir` interface.
async fn write(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    payload: web::Payload,
    app: web::Data<AppState>,
    expected: Option<&'static str>,
    method: Method,
) -> HttpResponse {
    let flight = metrics::interface_received("fhir");
    match write_inner(&req, caller, payload, &app, expected, method).await {
        Ok(response) => {
            flight.acked();
            response
        }
        Err(failure) => {
            flight.nacked(failure.issue_code());
            failure.response()
        }
    }
}

async fn write_inner(
    req: &HttpRequest,
    caller: Result<Caller, ApiError>,
    payload: web::Payload,
    app: &AppState,
    expected: Option<&'static str>,
    method: Method,
) -> Result<HttpResponse, Failure> {
    let caller = caller?;
    let runtime = app.ready()?;
    let value = json::read(req, payload, MAX_FHIR_BODY_BYTES)
        .await
        .map_err(|error| match error {
            ApiError::MalformedJson { detail } => Failure::Fhir(FhirError::Structure {
                detail: format!("the body is not JSON ({detail})"),
            }),
            other => Failure::Api(other),
        })?;
    let idempotency =
        Idempotency::from_request(req, &caller.subject, &*runtime.idempotency, &runtime.clock)?;
    match idempotency.check(req, &value, &REPLAY).await? {
        Check::Answered(response) => return Ok(response),
        // A success is recorded with its body; one without (it did not serialise) runs again
        // like an unanswered claim: the derived command ids append nothing twice.
        Check::Run | Check::Succeeded => {}
    }
    let message = Message {
        base_id: idempotency.command_id(),
        keyed: idempotency.is_keyed(),
        correlation_id: correlation_id(req),
        causation_id: runtime.clock.new_id().to_string(),
        principal: caller.subject.clone(),
        occurred_at: runtime.clock.now(),
    };
    let result = apply(runtime, value, expected, &method, &message).await;
    idempotency
        .record(|| match &result {
            Ok((_, body)) => Some(StoredAnswer::Success {
                body: serde_json::to_string(body).ok(),
            }),
            Err(failure @ Failure::Fhir(error)) if failure.is_final() => {
                serde_json::to_string(&render::error_outcome(error))
                    .ok()
                    .map(|body| StoredAnswer::Problem {
                        status: error.status(),
                        body,
                    })
            }
            Err(_) => None,
        })
        .await;
    let (head, body) = result?;
    let mut response = HttpResponse::build(head.status);
    response.content_type(FHIR_JSON);
    if let Some(location) = head.location {
        response.insert_header((header::LOCATION, location));
    }
    Ok(response.json(body))
}

/// The status line and `Location` of a successful write.
struct Head {
    status: StatusCode,
    location: Option<String>,
}

async fn apply(
    runtime: &Runtime,
    value: Value,
    expected: Option<&'static str>,
    method: &Method,
    message: &Message,
) -> Result<(Head, Value), Failure> {
    let now = runtime.clock.now();
    let Some(expected) = expected else {
        let transaction = Transaction::parse(value, &runtime.fhir)?;
        let entries = transaction.run(&runtime.registry, message, now).await?;
        return Ok((
            Head {
                status: StatusCode::OK,
                location: None,
            },
            render::transaction_response(&entries),
        ));
    };
    if expected == MERGE_PARAMETERS {
        let step = inbound::merge_parameters(&value, &runtime.fhir)?;
        let applied = execute::single(&runtime.registry, &step, message, now).await?;
        return Ok((
            Head {
                status: StatusCode::OK,
                location: None,
            },
            render::merge_result(&value, &applied),
        ));
    }
    let resource = inbound::parse(value, Some(expected))?;
    let step = inbound::plan(&resource, method, &runtime.fhir, &Default::default())?;
    let applied = execute::single(&runtime.registry, &step, message, now).await?;
    let created = applied.iter().any(|a: &Applied| {
        matches!(a.command, "RegisterPatient" | "ScheduleEncounter")
            && !a.outcome.events.is_empty()
            && !a.outcome.duplicate
    });
    let location = applied.last().and_then(|last| {
        execute::location(&step)
            .map(|path| format!("{BASE}/{path}/_history/{}", last.outcome.version))
    });
    Ok((
        Head {
            status: if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            location,
        },
        render::applied_outcome(&applied),
    ))
}

/// Reads a Patient: the patient account as FHIR.
#[utoipa::path(get, path = "/fhir/r4/Patient/{id}", tag = "fhir",
    params(("id" = String, Path, description = "The MRN")),
    responses(
        (status = 200, description = "A FHIR R4 Patient", body = Object, content_type = "application/fhir+json"),
        (status = 401, description = "No or invalid bearer token", body = Object, content_type = "application/fhir+json"),
        (status = 403, description = "The token's role may not read state", body = Object, content_type = "application/fhir+json"),
        (status = 404, description = "No such patient", body = Object, content_type = "application/fhir+json"),
        (status = 422, description = "The id breaks the id rule (an OperationOutcome, code value)", body = Object, content_type = "application/fhir+json"),
    ),
    security(("bearer" = [])))]
pub async fn read_patient(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    id: web::Path<String>,
    app: web::Data<AppState>,
) -> HttpResponse {
    read::<PatientAccount>(&req, caller, &id, &app, |runtime, id, observed| {
        render::patient(id, &observed.state, observed.version, &runtime.fhir)
    })
    .await
    .unwrap_or_else(|failure| failure.response())
}

/// Reads an Encounter: the visit as FHIR.
#[utoipa::path(get, path = "/fhir/r4/Encounter/{id}", tag = "fhir",
    params(("id" = String, Path, description = "The visit number")),
    responses(
        (status = 200, description = "A FHIR R4 Encounter", body = Object, content_type = "application/fhir+json"),
        (status = 401, description = "No or invalid bearer token", body = Object, content_type = "application/fhir+json"),
        (status = 403, description = "The token's role may not read state", body = Object, content_type = "application/fhir+json"),
        (status = 404, description = "No such encounter", body = Object, content_type = "application/fhir+json"),
        (status = 422, description = "The id breaks the id rule (an OperationOutcome, code value)", body = Object, content_type = "application/fhir+json"),
    ),
    security(("bearer" = [])))]
pub async fn read_encounter(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    id: web::Path<String>,
    app: web::Data<AppState>,
) -> HttpResponse {
    read::<Encounter>(&req, caller, &id, &app, |_, id, observed| {
        render::encounter(id, &observed.state, observed.version)
    })
    .await
    .unwrap_or_else(|failure| failure.response())
}

async fn read<A: careflow_aggregates::Aggregate>(
    req: &HttpRequest,
    caller: Result<Caller, ApiError>,
    id: &str,
    app: &AppState,
    render: impl FnOnce(&Runtime, &str, &crate::runtime::actors::Observed<A>) -> Value,
) -> Result<HttpResponse, Failure> {
    let caller = caller?;
    let runtime = app.ready()?;
    let stream =
        StreamId::new(A::KIND, id).map_err(|error| FhirError::value("id", error.to_string()))?;
    let observed = runtime
        .registry
        .observe::<A>(&stream)
        .await
        .map_err(FhirError::from)?;
    if observed.version == 0 {
        return Err(FhirError::NotFound {
            detail: format!("no {} {id}", A::KIND),
        }
        .into());
    }
    // Both are patient data: the read is recorded before it is answered.
    caller
        .record_read(
            runtime.store.as_ref(),
            &runtime.clock,
            Access::State,
            &stream,
            None,
            &correlation_id(req),
        )
        .await?;
    let body = render(runtime, id, &observed);
    let mut response = HttpResponse::Ok();
    response.content_type(FHIR_JSON);
    response.insert_header((header::ETAG, format!("W/\"{}\"", observed.version)));
    Ok(response.json(body))
}
