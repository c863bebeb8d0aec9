//! `GET /v1/process-managers`: what each process-manager runner is doing (admin).

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::{AppState, Caller};
use crate::runtime::process_managers::ProcessManagerStatus;

#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessManagersView {
    pub process_managers: Vec<ProcessManagerView>,
}

/// One process manager in `GET /v1/process-managers`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessManagerView {
    pub name: &'static str,
    /// `running` (this node acts), `standby` (another node holds the lease), `retrying`
    /// (the store or the checkpoint table failed; starting over), `starting`, `stopped`,
    /// `disabled` (`process_managers = false`).
    pub status: &'static str,
    /// The checkpoint: every event up to it has been acted on.
    pub position: u64,
    /// Events committed to the store after the checkpoint.
    pub lag: u64,
    /// Commands sent by this node since it started.
    pub commands_sent: u64,
    /// Refused commands, poison events, store and payer failures on this node.
    pub failures: u64,
    pub timers_pending: usize,
    /// Payer checks waiting for an answer (eligibility only).
    pub checks_in_flight: usize,
    /// The payer's circuit breaker (`closed`, `half_open`, `open`), for the eligibility
    /// manager; `not_configured` without `payer_url`.
    pub breaker: Option<&'static str>,
    pub last_error: Option<String>,
}

impl From<ProcessManagerStatus> for ProcessManagerView {
    fn from(s: ProcessManagerStatus) -> Self {
        Self {
            name: s.name,
            status: s.status,
            position: s.position,
            lag: s.lag,
            commands_sent: s.commands_sent,
            failures: s.failures,
            timers_pending: s.timers_pending,
            checks_in_flight: s.checks_in_flight,
            breaker: s.breaker,
            last_error: s.last_error,
        }
    }
}

/// Every process manager: its checkpoint, lag, status, counters and (eligibility) the payer's
/// circuit breaker.
#[utoipa::path(get, path = "/v1/process-managers", tag = "process-managers",
    responses(
        (status = 200, description = "Process-manager status", body = ProcessManagersView),
        (status = 403, description = "Role lacks the right (admin)", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list(_caller: Caller, app: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let statuses = app.ready()?.process_managers.statuses().await;
    let process_managers = statuses.into_iter().map(ProcessManagerView::from).collect();
    Ok(HttpResponse::Ok().json(ProcessManagersView { process_managers }))
}

pub fn register(cfg: &mut web::ServiceConfig) {
    cfg.service(super::get_only("/v1/process-managers").route(web::get().to(list)));
}
