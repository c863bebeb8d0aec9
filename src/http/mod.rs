//! The HTTP edge (actix-web): routes, wire shapes and status codes live here and only here.
//!
//! So far it serves the operator's endpoints: `/healthz` (the process answers), `/readyz`
//! (the event store is open, so commands would be accepted) and `/metrics`. Everything that
//! is not a route is a problem+json 404.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::json;

use crate::metrics;
use crate::store::EventStore;

pub mod problem;

use problem::Problem;

/// What handlers share. The store arrives after the server is already listening, so that
/// health checks answer while a PostgreSQL server is still being reached.
#[derive(Default)]
pub struct AppState {
    store: OnceLock<Arc<dyn EventStore>>,
}

impl AppState {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Makes the store available; `/readyz` turns 200 from here on.
    pub fn set_store(&self, store: Arc<dyn EventStore>) {
        if self.store.set(store).is_err() {
            tracing::warn!("event store was set twice; keeping the first");
        }
    }

    pub fn store(&self) -> Option<&Arc<dyn EventStore>> {
        self.store.get()
    }
}

/// Binds `listen` (port 0 picks a free port) and returns the server with its bound address.
///
/// # Errors
/// The bind error (address in use, permission).
pub fn bind(
    listen: SocketAddr,
    state: Arc<AppState>,
) -> std::io::Result<(actix_web::dev::Server, SocketAddr)> {
    let data = web::Data::from(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(prometheus_metrics))
            .default_service(web::to(not_found))
    })
    .shutdown_timeout(30)
    .bind(listen)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("server bound no address"))?;
    Ok((server.run(), addr))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.store() {
        Some(store) => HttpResponse::Ok().json(json!({
            "status": "ready",
            "store": store.backend(),
        })),
        None => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "event store is not open yet",
        )
        .hint("retry shortly; the server logs say which store it is waiting for")
        .retry_after(1)
        .response(),
    }
}

async fn prometheus_metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics::global().render())
}

async fn not_found(request: actix_web::HttpRequest) -> HttpResponse {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
        .detail(format!("{} {}", request.method(), request.path()))
        .response()
}
