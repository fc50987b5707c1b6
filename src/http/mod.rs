//! The HTTP surface (axum only): the route table, the middleware stack, extractors for who is
//! calling, and the mapping of errors to problem+json. Handlers are thin: they extract, call one
//! [`Broker`] operation, and map the result; request and response bodies live next to their
//! routes.

mod admin_writs;
mod approvals;
mod audit;
mod error;
mod exchange;
mod extract;
mod health;
mod keys;
mod page;
mod policy;
mod revocations;
mod serve;
mod writs;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use axum::BoxError;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::response::IntoResponse;
use axum::routing::MethodRouter;
use tower::ServiceBuilder;
use tower::timeout::TimeoutLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use error::{ApiError, status};
pub use serve::serve;

use crate::broker::Broker;
use crate::error::codes;

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
    /// One permit per revocation stream that may be open.
    pub streams: Arc<tokio::sync::Semaphore>,
}

/// Every route the broker serves. The router is built from this table, and the OpenAPI test
/// holds the document to it.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new("/v1/writs").post(writs::issue),
        Route::new("/v1/revocations")
            .post(revocations::revoke)
            .get(revocations::feed),
        Route::new("/v1/revocations/stream").get(revocations::stream),
        Route::new("/v1/suspensions/lift").post(revocations::lift),
        Route::new("/v1/admin/writs").post(admin_writs::issue),
        Route::new("/v1/approvals")
            .post(approvals::open)
            .get(approvals::list),
        Route::new("/v1/approvals/{id}")
            .get(approvals::read)
            .long_poll(),
        Route::new("/v1/approvals/{id}/decision").post(approvals::decide),
        Route::new("/v1/audit").get(audit::events),
        Route::new("/v1/audit/checkpoints").get(audit::checkpoints),
        Route::new("/v1/exchange/aws").post(exchange::aws),
        Route::new("/v1/exchange/vault/{name}").post(exchange::vault),
        Route::new("/v1/policy").get(policy::status),
        Route::new("/v1/policy/explain").post(policy::explain),
        Route::new("/.well-known/writ-keys").get(keys::key_set),
        Route::new("/healthz").get(health::live),
        Route::new("/readyz").get(health::ready),
    ]
}

pub fn router(state: AppState, request_timeout: Duration) -> Router {
    let api = routes().into_iter().fold(Router::new(), |router, route| {
        // A long-poll waits up to `MAX_WAIT` on top of the usual budget.
        let timeout = match route.long_poll {
            true => request_timeout + crate::broker::MAX_WAIT,
            false => request_timeout,
        };
        router.route(route.path, route.handlers.layer(timeout_layer(timeout)))
    });
    // The approval page, when approvers can log in to it (`[approvals.login]`).
    let served = match state.broker.login_settings() {
        Some(_) => api.merge(page::routes(request_timeout)),
        None => api,
    };
    served
        .fallback(|| async { ApiError::new(codes::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                codes::METHOD_NOT_ALLOWED,
                "this route does not accept that method",
            )
        })
        .with_state(state)
        // Outermost last: the trace span covers everything (it records method, path and status,
        // never headers, which carry credentials, nor query strings); the timeout bounds a slow client or issuer;
        // a panic answers 500 rather than dropping the connection; the body limit stops
        // reading oversized bodies (handlers answer 413 problem+json).
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(|_: Box<dyn Any + Send>| {
            ApiError::new(
                codes::INTERNAL,
                "the broker failed; the cause is in its log",
            )
            .into_response()
        }))
        .layer(TraceLayer::new_for_http().make_span_with(
            |request: &axum::extract::Request| {
                // The path only: query strings can carry secrets (a login's code and state).
                tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
            },
        ))
}

/// Cuts a request off after `timeout` (a slow client or a stuck dependency) with `503 timeout`.
fn timeout_layer<S>(
    timeout: Duration,
) -> impl tower::Layer<
    S,
    Service = impl tower::Service<
        axum::extract::Request,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone
              + Send
              + Sync
              + 'static,
> + Clone
+ Send
+ Sync
+ 'static
where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|_: BoxError| async {
            ApiError::new(
                codes::TIMEOUT,
                "the request took too long and was cut off; retry later",
            )
        }))
        .layer(TimeoutLayer::new(timeout))
}

/// One path and the methods it serves.
pub struct Route {
    pub path: &'static str,
    /// The methods served, HEAD included wherever GET is (axum answers it with the GET
    /// handler, without the body).
    pub methods: Vec<Method>,
    handlers: MethodRouter<AppState>,
    /// Whether its GET may wait (a long-poll): it gets a longer time limit.
    pub long_poll: bool,
}

impl Route {
    fn new(path: &'static str) -> Route {
        Route {
            path,
            methods: Vec::new(),
            handlers: MethodRouter::new(),
            long_poll: false,
        }
    }

    fn get<H: Handler<T, AppState>, T: 'static>(mut self, handler: H) -> Route {
        self.methods.extend([Method::GET, Method::HEAD]);
        self.handlers = self.handlers.get(handler);
        self
    }

    fn long_poll(mut self) -> Route {
        self.long_poll = true;
        self
    }

    fn post<H: Handler<T, AppState>, T: 'static>(mut self, handler: H) -> Route {
        self.methods.push(Method::POST);
        self.handlers = self.handlers.post(handler);
        self
    }
}
