//! [`ApiError`]: the single mapping from everything that can go wrong in a request to an RFC
//! 9457 problem+json answer.
//!
//! Client errors are answered in detail and not logged as errors; a 5xx answer is generic and
//! its cause is logged once, here. No message carries personal data: domain rejections hold
//! ids and amounts only, and request bodies are never quoted.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use careflow_aggregates::Rejection;

use super::auth::{Right, Role};
use super::problem::Problem;
use crate::runtime::actors::CommandError;
use crate::store::StoreError;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Occurs when the body is not JSON. HTTP 400.
    #[error("request body is not valid JSON")]
    MalformedJson { detail: String },
    /// Occurs when a path segment, query parameter or header breaks its rule. HTTP 400.
    #[error("{title}")]
    BadRequest {
        code: &'static str,
        title: String,
        detail: String,
        hint: &'static str,
    },
    /// Occurs without a bearer token, or with one that does not verify. HTTP 401.
    #[error("authentication required")]
    Unauthorized { detail: String },
    /// Occurs when the token's role lacks the route's right. HTTP 403.
    #[error("role {} may not {}", role.as_str(), right.describe())]
    Forbidden { role: Role, right: Right },
    /// Occurs when the aggregate or route does not exist. HTTP 404.
    #[error("{title}")]
    NotFound { title: String, detail: String },
    /// Occurs when the domain refuses the command. HTTP 409 or 422.
    #[error(transparent)]
    Rejected(Rejection),
    /// Occurs when the stream kept changing through every retry. HTTP 409.
    #[error("stream kept changing while the command was decided")]
    Conflict { attempts: u32 },
    /// Occurs when the work asked for is already under way (a projection rebuild). HTTP 409.
    #[error("already under way")]
    AlreadyRunning { detail: String },
    /// Occurs when a dead letter is already resolved or discarded. HTTP 409.
    #[error("the dead letter is closed")]
    Closed { detail: String },
    /// Occurs when the body exceeds its route's limit ([`MAX_BODY_BYTES`], FHIR four times
    /// that). HTTP 413.
    #[error("request body is too large")]
    PayloadTooLarge { max: usize },
    /// Occurs when a body is not declared as JSON (Content-Type). HTTP 415.
    #[error("request body must be JSON")]
    UnsupportedMediaType { accepted: &'static str },
    /// Occurs when an Idempotency-Key is reused with another request. HTTP 422.
    #[error("idempotency key was already used for a different request")]
    IdempotencyKeyReused,
    /// Occurs when a token makes more requests than its rate limit. HTTP 429.
    #[error("too many requests")]
    RateLimited { retry_after: u32, per_second: u32 },
    /// Occurs when the event store (or a side table) cannot be reached. HTTP 503.
    #[error("service temporarily unavailable")]
    Unavailable { cause: String },
    /// Occurs when a view has not caught up with `min_position` in time. HTTP 503.
    #[error("the view has not caught up yet")]
    NotCaughtUp { detail: String },
    /// Occurs on a broken invariant (undecodable stored events). HTTP 500.
    #[error("internal error")]
    Internal { cause: String },
}

impl ApiError {
    pub fn bad_request(
        code: &'static str,
        title: impl Into<String>,
        detail: impl Into<String>,
        hint: &'static str,
    ) -> Self {
        ApiError::BadRequest {
            code,
            title: title.into(),
            detail: detail.into(),
            hint,
        }
    }

    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        ApiError::Unavailable {
            cause: cause.to_string(),
        }
    }

    /// The problem+json body of this error.
    pub fn problem(&self) -> Problem {
        let title = self.to_string();
        match self {
            ApiError::MalformedJson { detail } => {
                Problem::new(StatusCode::BAD_REQUEST, "malformed_json", title)
                    .detail(detail.clone())
                    .hint("send a JSON object such as {\"type\": \"RegisterPatient\", ...}")
            }
            ApiError::BadRequest {
                code, detail, hint, ..
            } => Problem::new(StatusCode::BAD_REQUEST, code, title)
                .detail(detail.clone())
                .hint(*hint),
            ApiError::Unauthorized { detail } => {
                Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", title)
                    .detail(detail.clone())
                    .hint("send Authorization: Bearer <token>; `careflow token issue` makes one")
                    .header("WWW-Authenticate", "Bearer realm=\"careflow\"")
            }
            ApiError::Forbidden { right, .. } => {
                Problem::new(StatusCode::FORBIDDEN, "forbidden", title).hint(format!(
                    "use a token whose role is one of: {}",
                    right.roles().join(", ")
                ))
            }
            ApiError::NotFound { detail, .. } => {
                Problem::new(StatusCode::NOT_FOUND, "not_found", title).detail(detail.clone())
            }
            ApiError::Rejected(rejection) => {
                let status = StatusCode::from_u16(rejection.status())
                    .unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
                let mut problem = Problem::new(status, rejection.code(), title)
                    .detail("the command was refused; nothing was appended");
                if let Rejection::AccountMerged { into } = rejection {
                    // The pinned contract: a merged MRN's refusal names the survivor.
                    problem = problem
                        .detail(format!(
                            "the account was merged into {into}; nothing was appended"
                        ))
                        .extension("merged_into", serde_json::Value::from(into.clone()));
                }
                match rejection.hint() {
                    Some(hint) => problem.hint(hint),
                    None => problem,
                }
            }
            ApiError::Conflict { attempts } => {
                Problem::new(StatusCode::CONFLICT, "concurrent_modification", title)
                    .detail(format!(
                        "other writers appended to the stream during all {attempts} attempts; nothing was appended"
                    ))
                    .hint("retry the request with the same Idempotency-Key")
            }
            ApiError::AlreadyRunning { detail } => {
                Problem::new(StatusCode::CONFLICT, "already_running", title)
                    .detail(detail.clone())
                    .hint("follow it in GET /v1/projections")
            }
            ApiError::Closed { detail } => {
                Problem::new(StatusCode::CONFLICT, "dead_letter_closed", title)
                    .detail(detail.clone())
                    .hint("GET /v1/dead-letters?all=true shows every row with its status")
            }
            ApiError::PayloadTooLarge { max } => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", title)
                    .detail(format!("the limit is {max} bytes"))
                    .hint("split the work into several commands")
            }
            ApiError::UnsupportedMediaType { accepted } => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                title,
            )
            .detail(format!("the Content-Type must be {accepted}"))
            .hint("send Content-Type: application/json with a JSON body"),
            ApiError::IdempotencyKeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                title,
            )
            .detail("the key was first used with another path or body; nothing was appended")
            .hint("use a new Idempotency-Key for a different command"),
            ApiError::RateLimited {
                retry_after,
                per_second,
            } => Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", title)
                .detail(format!(
                    "this token may make {per_second} requests per second on average"
                ))
                .hint("retry after the number of seconds in Retry-After")
                .retry_after(*retry_after),
            ApiError::Unavailable { .. } => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", title)
                    .detail("the event store cannot be reached; nothing was appended")
                    .hint("retry after the number of seconds in Retry-After, with the same Idempotency-Key")
                    .retry_after(1)
            }
            ApiError::NotCaughtUp { detail } => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "view_behind", title)
                    .detail(detail.clone())
                    .hint("retry after the number of seconds in Retry-After; GET /v1/projections shows the lag")
                    .retry_after(1)
            }
            ApiError::Internal { .. } => {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", title)
                    .detail("the server logs hold the cause")
            }
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.problem().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Unavailable { cause } => {
                tracing::warn!(error = %cause, "request failed: unavailable")
            }
            ApiError::Internal { cause } => tracing::error!(error = %cause, "request failed"),
            _ => {}
        }
        self.problem().response()
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Rejected(rejection) => ApiError::Rejected(rejection),
            CommandError::Conflict { attempts } => ApiError::Conflict { attempts },
            CommandError::Unavailable(cause) => ApiError::Unavailable { cause },
            CommandError::Corrupt(cause) => ApiError::Internal { cause },
            CommandError::NotSupported(detail) => ApiError::BadRequest {
                code: "not_supported",
                title: "not supported by this event store".into(),
                detail,
                hint: "see docs/event-store.md, choosing a backend",
            },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        CommandError::from(error).into()
    }
}
