//! `GET /v1/process-managers`: what each process-manager runner is doing (admin).

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Right;
use super::error::ApiError;
use super::{AppState, Caller};
use crate::runtime::process_managers::ProcessManagerStatus;

#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessManagersView {
    pub process_managers: Vec<ProcessManagerStatus>,
}

/// Every process manager: its checkpoint, lag, status, counters and (eligibility) the payer's
/// circuit breaker.
#[utoipa::path(get, path = "/v1/process-managers", tag = "process-managers",
    responses(
        (status = 200, description = "Process-manager status", body = ProcessManagersView),
        (status = 403, description = "Role lacks the right (admin)", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list(caller: Caller, app: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require(Right::Rebuild)?;
    let process_managers = app.ready()?.process_managers.statuses().await;
    Ok(HttpResponse::Ok().json(ProcessManagersView { process_managers }))
}

pub fn register(cfg: &mut web::ServiceConfig) {
    cfg.service(super::get_only("/v1/process-managers").route(web::get().to(list)));
}
