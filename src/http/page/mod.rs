//! The approval page: server-rendered HTML under `/approvals` where people, logged in through
//! the configured OpenID Provider, read pending requests and approve or deny them. Served only
//! when `[approvals.login]` is configured (otherwise its paths answer 404 `not_found` like any
//! unknown path). Not part of the JSON API's route table: the OpenAPI document describes the
//! API, not these pages.
//!
//! | route | |
//! | --- | --- |
//! | `GET /approvals` | pending requests (or a sign-in link; or, for a login without the approver role, a page saying so) |
//! | `GET /approvals/history` | decided and expired requests, newest first, paged |
//! | `GET /approvals/{id}` | one request, its decisions, and the forms to decide it |
//! | `POST /approvals/{id}/decision` | a decision (form), then `303` back to the request |
//! | `GET /approvals/login` | starts a login at the provider |
//! | `GET /approvals/callback` | the provider's redirect back |
//! | `POST /approvals/logout` | ends the session |
//! | `GET /approvals/static/style.css` | the stylesheet |
//!
//! Every answer carries a strict Content-Security-Policy (no script at all), `nosniff`,
//! `no-referrer`, `no-store` and `DENY` framing. Handlers are thin: who is looking
//! ([`session::Visitor`]), then one broker call, then a view ([`views`]).

mod approvals;
mod login;
mod session;
mod views;

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::Markup;

use super::AppState;
use views::{Frame, Nav};

/// The Content-Security-Policy of every page: nothing but the page's own stylesheet and
/// images, forms only to itself, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The page's routes, each under the broker's request timeout.
pub fn routes(request_timeout: Duration) -> Router<AppState> {
    let timeout = || super::timeout_layer(request_timeout);
    Router::new()
        .route("/approvals", get(approvals::pending).layer(timeout()))
        .route(
            "/approvals/history",
            get(approvals::history).layer(timeout()),
        )
        .route("/approvals/login", get(login::start).layer(timeout()))
        .route("/approvals/callback", get(login::callback).layer(timeout()))
        .route("/approvals/logout", post(login::logout).layer(timeout()))
        .route("/approvals/static/style.css", get(stylesheet))
        .route("/approvals/{id}", get(approvals::detail).layer(timeout()))
        .route(
            "/approvals/{id}/decision",
            post(approvals::decide).layer(timeout()),
        )
        .layer(axum::middleware::map_response(security_headers))
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        views::STYLESHEET,
    )
}

/// The headers of every page.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// An HTML answer: a status, the page, and any cookies to set.
pub struct Html {
    status: StatusCode,
    body: Markup,
    cookies: Vec<String>,
}

impl Html {
    pub fn new(status: StatusCode, body: Markup) -> Html {
        Html {
            status,
            body,
            cookies: Vec::new(),
        }
    }

    pub fn ok(body: Markup) -> Html {
        Html::new(StatusCode::OK, body)
    }

    pub fn cookie(mut self, set_cookie: String) -> Html {
        self.cookies.push(set_cookie);
        self
    }
}

impl IntoResponse for Html {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            self.body.into_string(),
        )
            .into_response();
        set_cookies(&mut response, &self.cookies);
        response
    }
}

/// A `303 See Other` to `location` (a path of the page, or the provider's URL), with cookies.
pub fn see_other(location: &str, cookies: &[String]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    set_cookies(&mut response, cookies);
    response
}

fn set_cookies(response: &mut Response, cookies: &[String]) {
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            response
                .headers_mut()
                .append(HeaderName::from_static("set-cookie"), value);
        }
    }
}

/// A page that says what went wrong (and, for a broker refusal, its problem code).
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    title: &'static str,
    message: String,
    code: Option<&'static str>,
    link: Option<(&'static str, &'static str)>,
    cookies: Vec<String>,
}

impl PageError {
    pub fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> PageError {
        PageError {
            status,
            title,
            message: message.into(),
            code: None,
            link: Some(("/approvals", "Back to the approval page")),
            cookies: Vec::new(),
        }
    }

    pub fn unavailable() -> PageError {
        PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "The approval page cannot read its records right now. Try again in a moment.",
        )
    }

    pub fn with_code(mut self, code: &'static str) -> PageError {
        self.code = Some(code);
        self
    }

    pub fn with_link(mut self, href: &'static str, text: &'static str) -> PageError {
        self.link = Some((href, text));
        self
    }

    pub fn cookie(mut self, set_cookie: String) -> PageError {
        self.cookies.push(set_cookie);
        self
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let frame = Frame {
            session: None,
            nav: Nav::Other,
        };
        let body = views::document(
            self.title,
            &frame,
            views::error(self.title, &self.message, self.code, self.link),
        );
        let mut html = Html::new(self.status, body);
        html.cookies = self.cookies;
        html.into_response()
    }
}
