//! `POST /v1/{kind}/{id}/commands`: a command body in, the appended events out.
//!
//! The order of checks: token (401/429), role (403), store ready (503), path id (400), body
//! size (413), JSON (400), command shape (422), Idempotency-Key (400 malformed, 422 reused with
//! another request, or the first answer again), then the aggregate's actor (409/422 rejection,
//! 409 exhausted conflicts, 503 store unavailable). Every refusal appends nothing.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use careflow_aggregates::StreamId;
use uuid::Uuid;

use super::error::{ApiError, MAX_BODY_BYTES};
use super::idempotency::{Check, Idempotency, Replay};
use super::json;
use super::problem::PROBLEM_JSON;
use super::views::{CommandAnswer, Resource};
use super::{AppState, Caller, Runtime, correlation_id};
use crate::runtime::actors::{CommandContext, CommandError, CommandOutcome};
use crate::store::idempotency::StoredAnswer;

/// How a recorded answer is given again: JSON, or problem+json for a domain rejection.
const REPLAY: Replay = Replay {
    success: "application/json",
    problem: PROBLEM_JSON,
    fallback: StatusCode::UNPROCESSABLE_ENTITY,
};

/// The stream `{kind}-{id}` of a path id.
///
/// # Errors
/// [`ApiError::BadRequest`] (`invalid_id`) when `id` breaks the id rule.
pub fn path_stream<A: Resource>(id: &str) -> Result<StreamId, ApiError> {
    let stream = StreamId::new(A::KIND, id).map_err(|error| {
        ApiError::bad_request(
            "invalid_id",
            "id in the path is not valid",
            error.to_string(),
            "ids are 1-128 characters of A-Z, a-z, 0-9 and . _ : -",
        )
    })?;
    A::check_id(id).map_err(|rule| {
        ApiError::bad_request("invalid_id", "id in the path is not valid", rule, rule)
    })?;
    Ok(stream)
}

/// The handler behind every `POST /v1/{kind}/{id}/commands`.
///
/// # Errors
/// Every [`ApiError`] class but 404; see the module docs for the order.
pub async fn handle<A: Resource>(
    req: HttpRequest,
    caller: Caller,
    id: String,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let runtime = state.ready()?;
    let stream = path_stream::<A>(&id)?;
    let value = json::read(&req, payload, MAX_BODY_BYTES).await?;
    let parsed = A::parse_command(value.clone()).map_err(ApiError::Rejected)?;
    let correlation_id = correlation_id(&req);
    let idempotency =
        Idempotency::from_request(&req, &caller.subject, &*runtime.idempotency, &runtime.clock)?;
    let command_id = idempotency.command_id();
    match idempotency.check(&req, &value, &REPLAY).await? {
        Check::Run => {}
        Check::Answered(response) => return Ok(response),
        Check::Succeeded => {
            if let Some(response) = rebuild_answer(runtime, &stream, command_id).await? {
                return Ok(response);
            }
        }
    }

    let request_id = runtime.clock.new_id();
    let context = CommandContext {
        command_id,
        correlation_id,
        causation_id: request_id.to_string(),
        principal: caller.subject.clone(),
        source: "http".into(),
        occurred_at: parsed.occurred_at.unwrap_or_else(|| runtime.clock.now()),
        check_duplicate: idempotency.is_keyed(),
    };
    let result = runtime
        .registry
        .execute::<A>(&stream, parsed.command, context)
        .await;
    match result {
        Ok(outcome) => {
            let answer = to_answer(outcome);
            // A no-op appended nothing the store could find again: its body is kept instead.
            idempotency
                .record(|| {
                    let body = answer
                        .events
                        .is_empty()
                        .then(|| serde_json::to_string(&answer).ok())
                        .flatten();
                    Some(StoredAnswer::Success { body })
                })
                .await;
            Ok(HttpResponse::Ok().json(answer))
        }
        Err(CommandError::Rejected(rejection)) => {
            let error = ApiError::Rejected(rejection);
            idempotency
                .record(|| {
                    let problem = error.problem();
                    let body = serde_json::to_string(&problem).ok()?;
                    Some(StoredAnswer::Problem {
                        status: problem.status,
                        body,
                    })
                })
                .await;
            Err(error)
        }
        Err(error) => Err(error.into()),
    }
}

fn to_answer(outcome: CommandOutcome) -> CommandAnswer {
    CommandAnswer {
        stream: outcome.stream_id.to_string(),
        version: outcome.version,
        position: outcome.position,
        events: outcome.events,
    }
}

/// The first answer of a keyed command that appended events, rebuilt from the store; `None`
/// when the store does not hold the command (it never got that far: run it).
async fn rebuild_answer(
    runtime: &Runtime,
    stream: &StreamId,
    command_id: Uuid,
) -> Result<Option<HttpResponse>, ApiError> {
    let Some(appended) = runtime.store.find_command(stream, command_id).await? else {
        return Ok(None);
    };
    Ok(Some(HttpResponse::Ok().json(to_answer(CommandOutcome {
        stream_id: appended.stream_id,
        version: appended.version,
        position: appended.position,
        events: appended.events,
        duplicate: true,
    }))))
}
