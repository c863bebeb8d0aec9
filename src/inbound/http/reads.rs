//! Reads: an aggregate's state (now or as of a time), its history, and the global log.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use super::commands::path_stream;
use super::error::ApiError;
use super::views::{EventsPage, HistoryPage, Resource};
use super::{AppState, Caller, correlation_id};
use crate::operations::audit::access_log::Access;
use crate::runtime::actors::{history, state_as_of};

/// Most events one history or log page returns.
pub const MAX_PAGE: usize = 1_000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StateQuery {
    /// RFC 3339: the state rebuilt from the events recorded at or before this instant
    /// (`metadata.recorded_at`).
    pub as_of: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// First stream version to return (default 1).
    pub from: Option<u64>,
    /// Most events to return (default and maximum 1000).
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// First global position to return (default 1).
    pub from: Option<u64>,
    /// Most events to return (default 100, maximum 1000).
    pub limit: Option<usize>,
}

/// A page size: `default` when absent, at most [`MAX_PAGE`]; 0 is refused rather than
/// silently read as 1 (a client asking for nothing has a bug worth hearing about).
pub(super) fn page_limit(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match limit {
        Some(0) => Err(ApiError::bad_request(
            "invalid_query",
            "query string is not valid",
            "limit must be at least 1",
            "limit is a whole number from 1 to 1000",
        )),
        Some(limit) => Ok(limit.min(MAX_PAGE)),
        None => Ok(default),
    }
}

fn not_found<A: Resource>(id: &str) -> ApiError {
    ApiError::NotFound {
        title: format!("no such {}", A::NOUN),
        detail: format!("{} {id} has no events", A::NOUN),
    }
}

/// `GET /v1/{kind}/{id}`.
///
/// # Errors
/// 401/403/429, 400 (id, as_of), 404 (no events, or none by `as_of`), 503.
pub async fn state<A: Resource>(
    req: HttpRequest,
    caller: Caller,
    id: String,
    query: StateQuery,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let runtime = app.ready()?;
    let stream = path_stream::<A>(&id)?;
    let (state, version) = match query.as_of {
        Some(as_of) => match state_as_of::<A>(runtime.store.as_ref(), &stream, as_of).await? {
            Some((state, version, _position)) => (state, version),
            None => return Err(not_found::<A>(&id)),
        },
        None => {
            let observed = runtime.registry.observe::<A>(&stream).await?;
            if observed.version == 0 {
                return Err(not_found::<A>(&id));
            }
            (observed.state, observed.version)
        }
    };
    if A::PERSONAL {
        caller
            .record_read(
                runtime.store.as_ref(),
                &runtime.clock,
                Access::State,
                &stream,
                query.as_of,
                &correlation_id(&req),
            )
            .await?;
    }
    Ok(HttpResponse::Ok().json(A::view(stream.id(), &state, version)))
}

/// `GET /v1/{kind}/{id}/history`.
///
/// # Errors
/// 401/403/429, 400 (id, query), 404 (no events), 503.
pub async fn stream_history<A: Resource>(
    req: HttpRequest,
    caller: Caller,
    id: String,
    query: HistoryQuery,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let runtime = app.ready()?;
    let stream = path_stream::<A>(&id)?;
    let from = query.from.unwrap_or(1).max(1);
    let limit = page_limit(query.limit, MAX_PAGE)?;
    let events = history(runtime.store.as_ref(), &stream, from, limit).await?;
    if events.is_empty() && from == 1 {
        return Err(not_found::<A>(&id));
    }
    if A::PERSONAL {
        caller
            .record_read(
                runtime.store.as_ref(),
                &runtime.clock,
                Access::History,
                &stream,
                None,
                &correlation_id(&req),
            )
            .await?;
    }
    let next_version = (events.len() == limit)
        .then(|| events.last().map(|e| e.version + 1))
        .flatten();
    Ok(HttpResponse::Ok().json(HistoryPage {
        stream: stream.to_string(),
        events,
        next_version,
    }))
}

/// The global log in position order.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(EventsQuery),
    responses(
        (status = 200, description = "A page of the global log", body = EventsPage),
        (status = 400, description = "Malformed query", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid token", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role lacks the right (auditor, admin)", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn events(
    _caller: Caller,
    query: web::Query<EventsQuery>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let runtime = app.ready()?;
    let from = query.from.unwrap_or(1).max(1);
    let limit = page_limit(query.limit, 100)?;
    let events = runtime.store.read_all(from, limit).await?;
    let next = events.last().map_or(from, |e| e.position + 1);
    Ok(HttpResponse::Ok().json(EventsPage { events, next }))
}
