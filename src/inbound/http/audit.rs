//! `GET /v1/audit/verify?stream=S`: the one-stream tamper check, for auditors.
//!
//! It runs `audit::verify::verify_stream`, the same check as `careflow audit verify --stream`,
//! through the server's own store. The whole-log check (positions, signed checkpoints) stays
//! on the command line: it reads the entire log, which is not a request's work.

use actix_web::{HttpResponse, web};
use careflow_aggregates::StreamId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::{AppState, Caller};
use crate::operations::audit::verify::verify_stream;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VerifyQuery {
    /// The stream to check, e.g. `patient_account-CF-1001`. Required; an `Option` only so
    /// that a missing one is answered after the role check (403 before 400).
    #[param(required = true)]
    pub stream: Option<String>,
}

/// One broken link of the stream.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BreakView {
    pub version: u64,
    pub position: u64,
    /// What is wrong, e.g. "stored hash does not match the event's content".
    pub problem: String,
}

/// The outcome of checking one stream's hash chain.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StreamVerifyView {
    pub stream: String,
    /// Events checked.
    pub events: u64,
    /// True when every link holds.
    pub intact: bool,
    pub breaks: Vec<BreakView>,
}

/// Checks one stream's hash chain: each event's hash against its content, each `prev_hash`
/// against the previous event, versions without gaps. Deleting a stream's newest events is
/// only caught by `careflow audit verify` (the whole log and its signed checkpoints).
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    params(VerifyQuery),
    responses(
        (status = 200, description = "The check ran; `intact` says whether the chain holds", body = StreamVerifyView),
        (status = 400, description = "Malformed or missing stream", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid token", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role lacks the right (auditor)", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "The stream has no events", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn verify(
    _caller: Caller,
    query: web::Query<VerifyQuery>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let runtime = app.ready()?;
    let stream = StreamId::parse(query.stream.as_deref().unwrap_or_default()).map_err(|error| {
        ApiError::bad_request(
            "invalid_stream",
            "stream is not valid",
            error.to_string(),
            "a stream is {kind}-{id}, e.g. patient_account-CF-1001",
        )
    })?;
    // The stored bytes: the hashes cover the personal data's ciphertext, not its plaintext.
    let report = verify_stream(runtime.stored.as_ref(), &stream).await?;
    if report.events == 0 && report.intact {
        return Err(ApiError::NotFound {
            title: "no such stream".into(),
            detail: format!("{stream} has no events"),
        });
    }
    Ok(HttpResponse::Ok().json(StreamVerifyView {
        stream: report.stream,
        events: report.events,
        intact: report.intact,
        breaks: report
            .breaks
            .into_iter()
            .map(|b| BreakView {
                version: b.version,
                position: b.position,
                problem: b.problem,
            })
            .collect(),
    }))
}
