//! `POST /v1/patient-accounts/{id}/erase`: the right to erasure over HTTP (role `admin`).
//!
//! This is the only way `ErasePersonalData` reaches an account from outside: the command
//! endpoint cannot carry it (the command is `skip_deserializing`), so an upstream system with
//! the `system` role cannot erase anyone. The work is `personal_data::erase`, which
//! `careflow erase` runs as well.

use actix_web::{HttpRequest, HttpResponse, web};
use careflow_aggregates::{PatientAccount, Rejection};
use serde::Deserialize;
use utoipa::ToSchema;

use super::commands::path_stream;
use super::error::ApiError;
use super::problem::Problem;
use super::views::CommandAnswer;
use super::{AppState, Caller, correlation_id};
use crate::operations::personal_data;
use crate::runtime::actors::CommandContext;

/// Why the patient's personal data is erased. Stored in clear in the `PersonalDataErased`
/// event for the auditors: a request reference, never personal data itself.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseBody {
    /// 1-2000 characters, e.g. "GDPR art. 17 request 2026-118".
    pub reason: String,
}

/// Erases a patient's personal data: destroys the patient's data key, appends
/// `PersonalDataErased` (principal: the admin), deletes the account's snapshot and passivates
/// its actor. Afterwards every personal field reads as `null` in state, history, replays and
/// exports; charges, payments and balances stay, and the hash chains still verify. Repeating
/// it appends nothing.
#[utoipa::path(post, path = "/v1/patient-accounts/{id}/erase", tag = "patient accounts",
    params(("id" = String, Path, description = "The MRN")),
    request_body(content = EraseBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Erased: the appended PersonalDataErased event (none when it was erased before)", body = CommandAnswer),
        (status = 400, description = "Malformed JSON or id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role is not admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No such patient (not registered)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown field, or a blank or too long reason", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited (Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Event store or key store unavailable (Retry-After)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn erase(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    payload: web::Payload,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = super::json::read(&req, payload, super::error::MAX_BODY_BYTES).await?;
    let runtime = app.ready()?;
    let stream = path_stream::<PatientAccount>(&id)?;
    let body: EraseBody = serde_json::from_value(body).map_err(|error| {
        ApiError::Rejected(Rejection::InvalidCommand {
            detail: error.to_string(),
        })
    })?;
    let context = CommandContext {
        command_id: runtime.clock.new_id(),
        correlation_id: correlation_id(&req),
        causation_id: runtime.clock.new_id().to_string(),
        principal: caller.subject.clone(),
        source: "http".into(),
        occurred_at: runtime.clock.now(),
        check_duplicate: false,
    };
    let outcome = personal_data::erase(
        &runtime.registry,
        &runtime.personal,
        runtime.stored.as_ref(),
        stream.id(),
        &body.reason,
        context,
    )
    .await?;
    Ok(HttpResponse::Ok().json(CommandAnswer {
        stream: outcome.stream_id.to_string(),
        version: outcome.version,
        position: outcome.position,
        events: outcome.events,
    }))
}
