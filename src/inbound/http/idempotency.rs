//! The `Idempotency-Key` protocol of every write endpoint (`POST /v1/{kind}/{id}/commands`
//! and the FHIR writes), written once so both answer a retry alike.
//!
//! A keyed request runs under a command id derived from the caller and the key, so the event
//! store already refuses to append it twice. Around that, this module parses the header (400
//! `invalid_idempotency_key`), claims the key with the request's fingerprint before the
//! command runs (422 `idempotency_key_reused` for the same key with another method, path or
//! body), gives a recorded answer again, and records the answer once the command has run.
//! What an endpoint records, and how it rebuilds an answer recorded without a body, stay with
//! the endpoint. The records themselves are `crate::store::idempotency`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use uuid::Uuid;

use crate::clock::Clock;

use super::error::ApiError;
use crate::store::idempotency::{self, Claim, IdempotencyStore, StoredAnswer};

/// The request header of idempotent retries.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The longest `Idempotency-Key` accepted, in bytes (each one visible ASCII, `!` to `~`).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The key's rule as a JSON Schema pattern, for the OpenAPI document: visible ASCII only.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]+$";

/// How an endpoint gives a recorded answer again.
pub struct Replay {
    /// The media type of a recorded success body.
    pub success: &'static str,
    /// The media type of a recorded refusal body.
    pub problem: &'static str,
    /// The status of a recorded refusal whose status is not a valid code (an edited record).
    pub fallback: StatusCode,
}

/// What the records say about a request.
pub enum Check {
    /// Run the command: no key, a new key, or a key claimed before but never answered (a
    /// crash, or a concurrent twin). The derived command id keeps what was already appended
    /// from being appended twice.
    Run,
    /// The first answer, recorded whole: give it again.
    Answered(HttpResponse),
    /// The first run succeeded but only its status was recorded (no personal data is copied
    /// into the records): rebuild the answer from the event store, or run again.
    Succeeded,
}

/// One write's part in the protocol: the command id it runs under and, when a key binds it,
/// the records that remember it.
pub struct Idempotency<'a> {
    command_id: Uuid,
    records: Option<&'a dyn IdempotencyStore>,
}

impl<'a> Idempotency<'a> {
    /// Reads the `Idempotency-Key` header (1-255 visible ASCII characters) of a request sent
    /// by `principal`: a key derives the command id, no key gets a fresh one from `clock`.
    ///
    /// # Errors
    /// [`ApiError::BadRequest`] (`invalid_idempotency_key`) for a malformed key.
    pub fn from_request(
        req: &HttpRequest,
        principal: &str,
        records: &'a dyn IdempotencyStore,
        clock: &Clock,
    ) -> Result<Self, ApiError> {
        let Some(value) = req.headers().get(IDEMPOTENCY_HEADER) else {
            return Ok(Self {
                command_id: clock.new_id(),
                records: None,
            });
        };
        let text = value.to_str().unwrap_or_default();
        if text.is_empty()
            || text.len() > MAX_IDEMPOTENCY_KEY_LEN
            || !text.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ApiError::bad_request(
                "invalid_idempotency_key",
                "idempotency key is not valid",
                "the key must be 1 to 255 visible ASCII characters",
                "use a UUID per logical request",
            ));
        }
        Ok(Self {
            command_id: idempotency::command_id_for(principal, text),
            records: Some(records),
        })
    }

    /// The id the command runs under.
    pub fn command_id(&self) -> Uuid {
        self.command_id
    }

    /// Whether a key binds the request (the actor then looks the command id up first).
    pub fn is_keyed(&self) -> bool {
        self.records.is_some()
    }

    /// Claims the key with the request's fingerprint (method, path, `body`), or says how it
    /// was answered before.
    ///
    /// # Errors
    /// [`ApiError::IdempotencyKeyReused`] when the key came with another request;
    /// [`ApiError::Unavailable`] when the records cannot be read or written.
    pub async fn check(
        &self,
        req: &HttpRequest,
        body: &serde_json::Value,
        replay: &Replay,
    ) -> Result<Check, ApiError> {
        let Some(records) = self.records else {
            return Ok(Check::Run);
        };
        let fingerprint = idempotency::fingerprint(req.method().as_str(), req.path(), body);
        let claim = records
            .claim(self.command_id, &fingerprint)
            .await
            .map_err(ApiError::unavailable)?;
        let Claim::Seen {
            fingerprint: first,
            answer,
        } = claim
        else {
            return Ok(Check::Run);
        };
        if first != fingerprint {
            return Err(ApiError::IdempotencyKeyReused);
        }
        Ok(match answer {
            None => Check::Run,
            Some(StoredAnswer::Success { body: None }) => Check::Succeeded,
            Some(StoredAnswer::Success { body: Some(body) }) => {
                Check::Answered(HttpResponse::Ok().content_type(replay.success).body(body))
            }
            Some(StoredAnswer::Problem { status, body }) => {
                let status = StatusCode::from_u16(status).unwrap_or(replay.fallback);
                Check::Answered(
                    HttpResponse::build(status)
                        .content_type(replay.problem)
                        .body(body),
                )
            }
        })
    }

    /// Records how a keyed command was answered; `answer` is only built for a keyed request,
    /// and `None` records nothing (a refusal a retry should run again).
    pub async fn record(&self, answer: impl FnOnce() -> Option<StoredAnswer>) {
        let Some(records) = self.records else {
            return;
        };
        let Some(answer) = answer() else {
            return;
        };
        if let Err(error) = records.complete(self.command_id, answer).await {
            // The events are durable; only the body comparison of a later retry is weakened.
            tracing::warn!(%error, command_id = %self.command_id, "idempotency record not completed");
        }
    }
}
