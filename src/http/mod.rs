//! The HTTP surface (axum only): routes, the middleware stack, and the mapping of errors to
//! problem+json. Handlers are thin: they extract, call the domain, and map the result.

mod admin;
mod admin_writs;
mod audit;
mod body;
mod error;
mod health;
mod keys;
mod revocations;
mod writs;

use std::sync::Arc;
use std::time::Duration;

use axum::BoxError;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

use crate::broker::Broker;

/// Request bodies larger than this are refused before they are read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub broker: Arc<Broker>,
    /// How often the revocation stream sends a heartbeat.
    pub revocation_heartbeat: Duration,
    /// Turns true when the broker starts shutting down: long-lived streams end, so the
    /// graceful shutdown does not wait on them forever.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

pub fn router(state: AppState, request_timeout: Duration) -> Router {
    Router::new()
        .route("/v1/writs", post(writs::issue))
        .route(
            "/v1/revocations",
            post(revocations::revoke).get(revocations::feed),
        )
        .route("/v1/revocations/stream", get(revocations::stream))
        .route("/v1/suspensions/lift", post(revocations::lift))
        .route("/v1/admin/writs", post(admin_writs::issue))
        .route("/v1/audit", get(audit::events))
        .route("/v1/audit/checkpoints", get(audit::checkpoints))
        .route("/.well-known/writ-keys", get(keys::key_set))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        // Outermost last: the trace span covers everything (it records method, path and status,
        // never headers, which carry credentials); the timeout bounds a slow client or issuer;
        // the body limit stops reading oversized bodies (handlers answer 413 problem+json).
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: BoxError| async {
                    ApiError::Timeout
                }))
                .layer(TimeoutLayer::new(request_timeout)),
        )
        .layer(TraceLayer::new_for_http())
}
