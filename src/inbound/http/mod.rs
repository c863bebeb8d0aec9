//! The HTTP edge (actix-web): routes, wire shapes and status codes live here and only here.
//!
//! - `POST /v1/{kind}/{id}/commands` runs a command on the aggregate's actor ([`commands`]);
//! - `GET /v1/{kind}/{id}` (optionally `?as_of=`), `GET /v1/{kind}/{id}/history` and
//!   `GET /v1/events` read state and events ([`reads`]); reads of patient data are written
//!   to the access log ([`access_log`]);
//! - `GET /v1/audit/verify?stream=` checks one stream's hash chain ([`audit`]);
//! - `POST /v1/patient-accounts/{id}/erase` erases a patient's personal data ([`erasure`]);
//! - `/healthz`, `/readyz`, `/metrics` and `/openapi.json` need no token.
//!
//! Every error is RFC 9457 problem+json: handlers return [`error::ApiError`], extractor
//! failures are routed to it by their configs, and a last middleware rewrites any other error
//! actix itself produces (405, an unmatched route) into the same shape. docs/http-api.md
//! documents the routes, roles, idempotency and errors.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{App, FromRequest, HttpMessage, HttpRequest, HttpResponse, HttpServer, web};
use futures_util::future::{Ready, ready};
use serde_json::json;

use crate::app::Runtime;
use crate::clock::Clock;
use crate::operations::audit::access_log::{self, Access};
use crate::operations::metrics;
use crate::store::EventStore;

pub mod audit;
pub mod auth;
pub mod commands;
pub mod dead_letters;
pub mod erasure;
pub mod error;
pub mod fhir;
pub mod idempotency;
pub mod json;
pub mod openapi;
pub mod problem;
pub mod process_managers;
pub mod projections;
pub mod rate_limit;
pub mod reads;
pub mod views;
pub mod webhooks;

use auth::{Right, Role, Route, TokenKeys};
use error::ApiError;
use problem::{PROBLEM_JSON, Problem};
use rate_limit::RateLimiter;

/// The request and response header carrying the correlation id.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// What handlers share. The runtime arrives after the server is already listening, so that
/// health checks answer while a PostgreSQL server is still being reached.
pub struct AppState {
    runtime: OnceLock<Runtime>,
    keys: TokenKeys,
    limiter: RateLimiter,
    /// The process's clock (the runtime's too): request ids, correlation ids, default dates.
    clock: Clock,
}

impl AppState {
    pub fn new(keys: TokenKeys, limiter: RateLimiter, clock: Clock) -> Arc<Self> {
        Arc::new(Self {
            runtime: OnceLock::new(),
            keys,
            limiter,
            clock,
        })
    }

    /// Where handlers take the time and new ids from.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Makes the store and actors available; `/readyz` turns 200 from here on.
    pub fn set_runtime(&self, runtime: Runtime) {
        if self.runtime.set(runtime).is_err() {
            tracing::warn!("runtime was set twice; keeping the first");
        }
    }

    pub fn runtime(&self) -> Option<&Runtime> {
        self.runtime.get()
    }

    pub fn store(&self) -> Option<&Arc<dyn EventStore>> {
        self.runtime.get().map(|r| &r.store)
    }

    /// The runtime, or a 503 while the store is still being opened.
    ///
    /// # Errors
    /// [`ApiError::Unavailable`].
    pub fn ready(&self) -> Result<&Runtime, ApiError> {
        self.runtime
            .get()
            .ok_or_else(|| ApiError::unavailable("the event store is not open yet"))
    }
}

/// The authenticated caller of a request. Extracting it is the guard of every route that
/// takes a token: it checks the token, the rate limit and the right the route table
/// (`openapi::ROUTES`) asks for, so a handler that needs nothing else of the caller still
/// takes it (as `_caller`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub`: the events' `principal`.
    pub subject: String,
    pub role: Role,
}

impl Caller {
    /// Records this caller's read of a patient's data in the access log, before it is
    /// answered (`operations::audit::access_log`).
    ///
    /// # Errors
    /// [`ApiError::Unavailable`] when the record cannot be written: the read is refused.
    pub async fn record_read(
        &self,
        store: &dyn EventStore,
        clock: &Clock,
        access: Access,
        target: &careflow_aggregates::StreamId,
        as_of: Option<chrono::DateTime<chrono::Utc>>,
        correlation_id: &str,
    ) -> Result<(), ApiError> {
        access_log::AccessLog { store, clock }
            .record_read(
                &self.subject,
                self.role.as_str(),
                access,
                target,
                as_of,
                correlation_id,
            )
            .await
            .map_err(ApiError::from)
    }

    /// # Errors
    /// [`ApiError::Forbidden`] when the role lacks `right`.
    pub fn require(&self, right: Right) -> Result<(), ApiError> {
        if self.role.allows(right) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                role: self.role,
                right,
            })
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut actix_web::dev::Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

fn authenticate(req: &HttpRequest) -> Result<Caller, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal {
            cause: "application state missing".into(),
        })?;
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(ApiError::Unauthorized {
            detail: "the request has no Authorization header".into(),
        });
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or_else(|| ApiError::Unauthorized {
            detail: "the Authorization header is not a Bearer token".into(),
        })?;
    let claims = state
        .keys
        .verify(token)
        .map_err(|error| ApiError::Unauthorized {
            detail: error.to_string(),
        })?;
    tracing::Span::current().record("principal", claims.sub.as_str());
    state
        .limiter
        .check(&claims.sub, Instant::now())
        .map_err(|retry_after| ApiError::RateLimited {
            retry_after,
            per_second: state.limiter.per_second(),
        })?;
    let caller = Caller {
        subject: claims.sub,
        role: claims.role,
    };
    // The guard of every route: the right the route table asks for, checked once here, so
    // the table, the OpenAPI document and the authorization matrix cannot disagree with what
    // is enforced. A route missing from the table is refused (fail closed).
    let pattern = req.match_pattern();
    match pattern
        .as_deref()
        .and_then(|pattern| Route::find(req.method().as_str(), pattern))
    {
        Some(Route {
            access: auth::Access::Token(right),
            ..
        }) => caller.require(*right)?,
        Some(Route {
            access: auth::Access::Public,
            ..
        }) => {}
        None => {
            return Err(ApiError::Internal {
                cause: format!(
                    "{} {} is not in the route table (openapi::ROUTES)",
                    req.method(),
                    pattern.as_deref().unwrap_or("(unmatched)")
                ),
            });
        }
    }
    Ok(caller)
}

/// The request's correlation id, as the correlation middleware settled it.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

/// The correlation id of `req` (generated by the middleware when absent).
pub fn correlation_id(req: &HttpRequest) -> String {
    if let Some(settled) = req.extensions().get::<CorrelationId>() {
        return settled.0.clone();
    }
    req.app_data::<web::Data<AppState>>()
        .map_or_else(Clock::system, |state| state.clock().clone())
        .new_id()
        .to_string()
}

/// A caller's correlation id is kept when it is 1-128 characters of `[A-Za-z0-9._:-]` (it is
/// stored in every event and echoed in a header); anything else is replaced by a new UUID.
fn accepted_correlation_id(value: Option<&HeaderValue>) -> Option<String> {
    let text = value?.to_str().ok()?;
    careflow_aggregates::stream_id::validate_id(text)
        .is_ok()
        .then(|| text.to_owned())
}

/// Binds `listen` (port 0 picks a free port) and returns the server with its bound address.
///
/// # Errors
/// The bind error (address in use, permission).
pub fn bind(
    listen: SocketAddr,
    state: Arc<AppState>,
) -> std::io::Result<(actix_web::dev::Server, SocketAddr)> {
    let data = web::Data::from(state);
    let server = HttpServer::new(move || {
        let clock = data.clock().clone();
        App::new()
            .app_data(data.clone())
            .app_data(web::PathConfig::default().error_handler(|error, _req| {
                ApiError::bad_request(
                    "invalid_path",
                    "path is not valid",
                    error.to_string(),
                    "check the route in /openapi.json",
                )
                .into()
            }))
            .app_data(web::QueryConfig::default().error_handler(|error, _req| {
                ApiError::bad_request(
                    "invalid_query",
                    "query string is not valid",
                    error.to_string(),
                    "as_of is an RFC 3339 time such as 2026-01-31T12:00:00Z; from and limit are whole numbers",
                )
                .into()
            }))
            .wrap(
                ErrorHandlers::new()
                    .default_handler(as_problem)
                    .handler(StatusCode::NOT_FOUND, as_problem),
            )
            .wrap_fn(move |req: ServiceRequest, srv| {
                use actix_web::dev::Service;
                use tracing::Instrument;
                let cid = accepted_correlation_id(req.headers().get(CORRELATION_HEADER))
                    .unwrap_or_else(|| clock.new_id().to_string());
                req.extensions_mut().insert(CorrelationId(cid.clone()));
                // The root span of the request: every log line of it carries the correlation
                // id, and the principal once the token is verified (see `authenticate`).
                let span = tracing::info_span!(
                    "request",
                    method = %req.method(),
                    correlation_id = %cid,
                    principal = tracing::field::Empty,
                );
                let response = {
                    let _entered = span.enter();
                    srv.call(req)
                };
                async move {
                    let mut response = response.await?;
                    if let Ok(value) = HeaderValue::from_str(&cid) {
                        response
                            .headers_mut()
                            .insert(HeaderName::from_static(CORRELATION_HEADER), value);
                    }
                    let route = route_label(
                        response.request().method().as_str(),
                        response.request().match_pattern().as_deref(),
                    );
                    metrics::http_request(route, response.status().as_u16());
                    Ok(response)
                }
                .instrument(span)
            })
            .configure(routes)
            .default_service(web::to(not_found))
    })
    .shutdown_timeout(30)
    .bind(listen)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("server bound no address"))?;
    Ok((server.run(), addr))
}

/// The route template of a matched request, from the bounded set [`openapi::ROUTES`] (a
/// metric label must never be a concrete path, which holds ids).
fn route_label(method: &str, pattern: Option<&str>) -> &'static str {
    pattern
        .and_then(|pattern| auth::Route::find(method, pattern).map(|route| route.path))
        .unwrap_or("unmatched")
}

/// Every route of the service; `openapi::ROUTES` lists the same set with each one's right.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_only("/healthz").route(web::get().to(healthz)))
        .service(get_only("/readyz").route(web::get().to(readyz)))
        .service(get_only("/metrics").route(web::get().to(prometheus_metrics)))
        .service(get_only("/openapi.json").route(web::get().to(openapi::serve)))
        .service(get_only("/v1/events").route(web::get().to(reads::events)))
        .service(get_only("/v1/audit/verify").route(web::get().to(audit::verify)));
    openapi::patient_accounts::register(cfg);
    cfg.service(post_only("/v1/patient-accounts/{id}/erase").route(web::post().to(erasure::erase)));
    openapi::encounters::register(cfg);
    openapi::inventory_items::register(cfg);
    openapi::purchases::register(cfg);
    openapi::claims::register(cfg);
    openapi::rosters::register(cfg);
    projections::register(cfg);
    process_managers::register(cfg);
    webhooks::register_routes(cfg);
    dead_letters::register(cfg);
    fhir::register(cfg);
}

/// A resource answering other methods than GET with 405 and `Allow: GET`.
pub(crate) fn get_only(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|| async { method_not_allowed("GET") }))
}

/// A resource answering other methods than POST with 405 and `Allow: POST`.
pub(crate) fn post_only(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|| async { method_not_allowed("POST") }))
}

fn method_not_allowed(allow: &'static str) -> HttpResponse {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method is not allowed on this route",
    )
    .detail(format!("this route answers {allow} only"))
    .header("Allow", allow)
    .response()
}

/// Rewrites an error response that is not problem+json yet (actix's own 404/405, a payload
/// error) into one, keeping its status.
fn as_problem<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .response()
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with(PROBLEM_JSON) || v.starts_with(crate::inbound::fhir::render::FHIR_JSON)
        });
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (code, title) = match status.as_u16() {
        404 => ("not_found", "no such resource"),
        405 => ("method_not_allowed", "method is not allowed on this route"),
        413 => ("payload_too_large", "request body is too large"),
        400..=499 => ("bad_request", "request is not valid"),
        _ => ("internal", "internal error"),
    };
    let (req, _) = res.into_parts();
    let detail = format!("{} {}", req.method(), req.path());
    let response = Problem::new(status, code, title).detail(detail).response();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, response).map_into_right_body(),
    ))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process answers", body = Object)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: the event store is open, so commands would be accepted, and every consumer of
/// the log keeps up: none is stuck at an event, none has been failing for longer than
/// `consumers::FAILING_AFTER`. A 503 names the consumers (what is acknowledged is not
/// reaching them) with their last error.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Object),
        (status = 503, description = "The store is not open yet, or a consumer of the log is stuck or failing (named in `consumers`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.runtime() {
        Some(runtime) => {
            if let Some(reason) = store_unavailable(runtime).await {
                return Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "dependency_unavailable",
                    "the event store does not answer",
                )
                .detail(format!(
                    "event_store ({}): {reason}",
                    runtime.store.backend()
                ))
                .hint("commands are answered 503 meanwhile; the server reconnects by itself")
                .extension(
                    "dependencies",
                    json!([{
                        "name": "event_store",
                        "backend": runtime.store.backend(),
                        "error": reason,
                    }]),
                )
                .retry_after(1)
                .response();
            }
            let failing = runtime.health.failing();
            if failing.is_empty() {
                return HttpResponse::Ok().json(json!({
                    "status": "ready",
                    "store": runtime.store.backend(),
                }));
            }
            let names: Vec<&str> = failing.iter().map(|c| c.name).collect();
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "consumer_failing",
                "a consumer of the log is stuck or failing",
            )
            .detail(format!("not keeping up: {}", names.join(", ")))
            .hint("see each consumer's last_error; GET /v1/projections, /v1/process-managers and the dead letters say more")
            .extension("consumers", json!(failing))
            .response()
        }
        None => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "event store is not open yet",
        )
        .hint("retry shortly; the server logs say which store it is waiting for")
        .retry_after(1)
        .response(),
    }
}

/// Why the event store is not answering, if it is not: its head cannot be read now (on
/// PostgreSQL and KurrentDB a round trip; bounded, so a hung server makes readyz slow by at
/// most that), or an append or read failed for want of the store recently
/// (`store::availability`).
async fn store_unavailable(runtime: &Runtime) -> Option<String> {
    const PROBE: std::time::Duration = std::time::Duration::from_secs(2);
    match tokio::time::timeout(PROBE, runtime.store.head_position()).await {
        Err(_) => Some(format!("no answer within {} s", PROBE.as_secs())),
        Ok(Err(error)) => Some(error.to_string()),
        Ok(Ok(_)) => runtime.store_availability.unavailable(),
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn prometheus_metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics::global().render())
}

async fn not_found(request: HttpRequest) -> HttpResponse {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
        .detail(format!("{} {}", request.method(), request.path()))
        .response()
}
