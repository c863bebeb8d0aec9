//! `GET /v1/dead-letters`, `POST /v1/dead-letters/{id}/retry`,
//! `POST /v1/dead-letters/{id}/discard` (role `admin`).
//!
//! The list is operational state (`dead_letters`); what an operator decides about a row is
//! history as well, so a retry request and a discard are also appended to the stream
//! `dead_letters-{source}` (`DeadLetterRetryRequested`, `DeadLetterDiscarded`, with the
//! operator as principal). The consumer that owns the source does the retry itself; this
//! route only asks for it.

use actix_web::{HttpRequest, HttpResponse, web};
use careflow_aggregates::Rejection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::problem::Problem;
use super::{AppState, Caller, Runtime, correlation_id};
use crate::operations::dead_letters::decision::{self, Decision};
use crate::operations::dead_letters::{DeadLetter, DeadLetterError};
use crate::store::internal::Recorder;

/// The stream kind of operators' decisions about dead letters.
pub use crate::operations::dead_letters::decision::STREAM_KIND;

impl From<DeadLetterError> for ApiError {
    fn from(error: DeadLetterError) -> Self {
        match error {
            DeadLetterError::Unavailable(cause) => ApiError::Unavailable { cause },
            DeadLetterError::NotFound(id) => ApiError::NotFound {
                title: "no such dead letter".to_owned(),
                detail: format!("dead letter {id} does not exist"),
            },
            DeadLetterError::NotOpen { id, status } => ApiError::Closed {
                detail: format!(
                    "dead letter {id} is {status}; only dead or parked ones can be retried or discarded"
                ),
            },
            corrupt @ DeadLetterError::Corrupt { .. } => ApiError::Internal {
                cause: corrupt.to_string(),
            },
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Only this source (`odoo`, `webhook`, ...).
    pub source: Option<String>,
    /// Also resolved and discarded rows.
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLettersView {
    pub dead_letters: Vec<DeadLetter>,
}

/// Dead letters, oldest first: open ones (dead, parked, retry requested), or every row with
/// `?all=true`.
#[utoipa::path(get, path = "/v1/dead-letters", tag = "dead letters",
    params(
        ("source" = Option<String>, Query, description = "Only this source: odoo, webhook, ..."),
        ("all" = Option<bool>, Query, description = "Include resolved and discarded rows"),
    ),
    responses(
        (status = 200, description = "The dead letters", body = DeadLettersView),
        (status = 401, description = "No or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role is not admin", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The dead-letter table is unavailable (Retry-After)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list(
    _caller: Caller,
    query: web::Query<ListQuery>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let runtime = app.ready()?;
    let dead_letters = runtime
        .dead_letters
        .list(query.source.as_deref(), query.all)
        .await?;
    Ok(HttpResponse::Ok().json(DeadLettersView { dead_letters }))
}

/// Asks the owning consumer to try a dead or parked row again. It reports the outcome in the
/// row: `resolved`, or `dead` again with one more attempt.
#[utoipa::path(post, path = "/v1/dead-letters/{id}/retry", tag = "dead letters",
    params(("id" = i64, Path, description = "The dead letter's id")),
    responses(
        (status = 202, description = "Retry requested; the row now reads retry_requested", body = DeadLetter),
        (status = 401, description = "No or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role is not admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dead letter", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The row is already resolved or discarded", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable (Retry-After)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn retry(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<i64>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let runtime = app.ready()?;
    let row = runtime.dead_letters.request_retry(id.into_inner()).await?;
    record_decision(runtime, &req, &caller, Decision::RetryRequested, &row, None).await?;
    Ok(HttpResponse::Accepted().json(row))
}

/// Why an operator gives a dead letter up.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscardBody {
    /// 1-2000 characters, e.g. "duplicate of INV/2026/00042, fixed by hand".
    pub reason: String,
}

/// Gives a dead or parked row up, with a reason; the consumer then runs what was parked behind
/// it.
#[utoipa::path(post, path = "/v1/dead-letters/{id}/discard", tag = "dead letters",
    params(("id" = i64, Path, description = "The dead letter's id")),
    request_body(content = DiscardBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Discarded", body = DeadLetter),
        (status = 401, description = "No or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role is not admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dead letter", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The row is already resolved or discarded", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No, a blank or a too long reason", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable (Retry-After)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn discard(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<i64>,
    payload: web::Payload,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = super::json::read(&req, payload, super::error::MAX_BODY_BYTES).await?;
    let runtime = app.ready()?;
    let body: DiscardBody = serde_json::from_value(body).map_err(|error| {
        ApiError::Rejected(Rejection::InvalidCommand {
            detail: error.to_string(),
        })
    })?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > 2000 {
        return Err(ApiError::Rejected(Rejection::InvalidCommand {
            detail: "reason must be 1-2000 characters".to_owned(),
        }));
    }
    let id = id.into_inner();
    // Fail before recording a decision about a row that cannot take it.
    let current = runtime
        .dead_letters
        .get(id)
        .await?
        .ok_or(DeadLetterError::NotFound(id))?;
    if !current.status.is_open() {
        return Err(DeadLetterError::NotOpen {
            id,
            status: current.status,
        }
        .into());
    }
    // The event first: a discard that is not in the history must not happen.
    record_decision(
        runtime,
        &req,
        &caller,
        Decision::Discarded,
        &current,
        Some(reason),
    )
    .await?;
    let row = runtime.dead_letters.discard(id, reason).await?;
    Ok(HttpResponse::Ok().json(row))
}

/// Appends the operator's decision to `dead_letters-{source}` (`dead_letters::decision`).
async fn record_decision(
    runtime: &Runtime,
    req: &HttpRequest,
    caller: &Caller,
    decision: Decision,
    row: &DeadLetter,
    reason: Option<&str>,
) -> Result<(), ApiError> {
    let by = Recorder {
        principal: caller.subject.clone(),
        source: "http".to_owned(),
        correlation_id: correlation_id(req),
        causation_id: row.event_id.to_string(),
        occurred_at: runtime.clock.now(),
    };
    let command_id = runtime.clock.new_id();
    decision::record(
        runtime.store.as_ref(),
        command_id,
        row,
        decision,
        reason,
        &by,
    )
    .await
    .map_err(ApiError::unavailable)
}

pub fn register(cfg: &mut web::ServiceConfig) {
    use super::{get_only, post_only};
    cfg.service(get_only("/v1/dead-letters").route(web::get().to(list)))
        .service(post_only("/v1/dead-letters/{id}/retry").route(web::post().to(retry)))
        .service(post_only("/v1/dead-letters/{id}/discard").route(web::post().to(discard)));
}
