//! `POST /v1/webhooks`, `GET /v1/webhooks`, `DELETE /v1/webhooks/{id}` (admin): webhook
//! registrations. Deliveries, signatures and retries live in `crate::outbound::webhooks`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::problem::Problem;
use super::{AppState, Caller, correlation_id};
use crate::outbound::webhooks::{NewWebhook, Webhook, WebhookError};

/// `POST /v1/webhooks`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterWebhookBody {
    /// Absolute http(s) URL the events are POSTed to.
    pub url: String,
    /// Event type names (`ChargePosted`, ...) or `"*"` for every event.
    pub event_types: Vec<String>,
    /// `whsec_` + base64 of 24 to 64 random bytes; generated (and answered once) when absent.
    #[serde(default)]
    pub secret: Option<String>,
}

/// A registration's answer: the only time the secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisteredView {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The signing secret (`whsec_...`). Keep it: it is not shown again.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhooksView {
    pub webhooks: Vec<WebhookView>,
}

/// A webhook as `GET /v1/webhooks` shows it: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub registered_at: DateTime<Utc>,
    /// Who registered it (the token's subject).
    pub registered_by: String,
    /// The position of its registration: it receives events committed after it.
    pub registered_position: u64,
    /// Every matching event up to this position has been delivered or dead-lettered.
    pub delivered_through: u64,
}

impl From<Webhook> for WebhookView {
    fn from(w: Webhook) -> Self {
        Self {
            id: w.id,
            url: w.url,
            event_types: w.event_types,
            registered_at: w.registered_at,
            registered_by: w.registered_by,
            registered_position: w.registered_position,
            delivered_through: w.delivered_through,
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::NotFound(id) => ApiError::NotFound {
                title: "no such webhook".into(),
                detail: format!("no webhook has id {id}; GET /v1/webhooks lists them"),
            },
            WebhookError::Unavailable(cause) => ApiError::Unavailable { cause },
            corrupt @ WebhookError::CorruptCheckpoint(_) => ApiError::Unavailable {
                cause: crate::error_chain::error_chain(&corrupt),
            },
            invalid => ApiError::Internal {
                cause: format!("unmapped webhook error: {invalid}"),
            },
        }
    }
}

/// A refused registration: 422 with what to fix; nothing appended.
fn unprocessable(code: &str, title: String, hint: &str) -> HttpResponse {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, title)
        .detail("the webhook was not registered; nothing was appended")
        .hint(hint)
        .response()
}

/// Registers a webhook. Role `admin`. It receives every event committed after the
/// registration whose type it names, signed per the Standard Webhooks spec.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks",
    request_body(content = RegisterWebhookBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered; the secret is in this answer only", body = RegisteredView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role lacks the right (admin)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid url, event_types or secret, or an unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn register(
    req: HttpRequest,
    caller: Caller,
    payload: web::Payload,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = super::json::read(&req, payload, super::error::MAX_BODY_BYTES).await?;
    let body: RegisterWebhookBody = match serde_json::from_value(body) {
        Ok(body) => body,
        Err(error) => {
            return Ok(unprocessable(
                "invalid_webhook",
                format!("webhook registration is not valid: {error}"),
                "send {\"url\": \"https://...\", \"event_types\": [\"ChargePosted\"], \"secret\": \"whsec_...\"} (secret optional)",
            ));
        }
    };
    let outbound = &app.ready()?.outbound;
    let registered = outbound
        .webhooks
        .register(
            NewWebhook {
                url: body.url,
                event_types: body.event_types,
                secret: body.secret,
            },
            &caller.subject,
            &correlation_id(&req),
        )
        .await;
    match registered {
        Ok(registered) => Ok(HttpResponse::Created()
            .insert_header(("Location", format!("/v1/webhooks/{}", registered.view.id)))
            .json(RegisteredView {
                webhook: registered.view.into(),
                secret: registered.secret,
            })),
        Err(error @ WebhookError::InvalidUrl(_)) => Ok(unprocessable(
            "invalid_webhook_url",
            error.to_string(),
            "use an absolute http or https URL with a host",
        )),
        Err(error @ WebhookError::InvalidEventTypes(_)) => Ok(unprocessable(
            "invalid_webhook_event_types",
            error.to_string(),
            "list event type names such as ChargePosted, or [\"*\"] for every event",
        )),
        Err(error @ WebhookError::InvalidSecret(_)) => Ok(unprocessable(
            "invalid_webhook_secret",
            error.to_string(),
            "leave secret out to have one generated, or send whsec_ + base64 of 24 to 64 random bytes",
        )),
        Err(error) => Err(error.into()),
    }
}

/// The registered webhooks, without their secrets. Role `admin`.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    responses(
        (status = 200, description = "The webhooks", body = WebhooksView),
        (status = 403, description = "Role lacks the right (admin)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list(_caller: Caller, app: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let webhooks = app.ready()?.outbound.webhooks.list().await?;
    let webhooks = webhooks.into_iter().map(WebhookView::from).collect();
    Ok(HttpResponse::Ok().json(WebhooksView { webhooks }))
}

/// Removes a webhook: nothing more is sent to it. Role `admin`.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Role lacks the right (admin)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn remove(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    app.ready()?
        .outbound
        .webhooks
        .remove(&id, &caller.subject, &correlation_id(&req))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub fn register_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/webhooks")
            .route(web::post().to(register))
            .route(web::get().to(list)),
    )
    .service(web::resource("/v1/webhooks/{id}").route(web::delete().to(remove)));
}
