//! The one place where errors become HTTP: every error answers `application/problem+json`
//! (RFC 9457) with a stable `type` (`urn:writ:problem:<code>`), and [`status`] is the one match
//! from an error's kind to its status. Server-side failures log their cause and answer a
//! generic detail; nothing secret is echoed.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::error::{DomainError, ErrorCode, ErrorKind, codes};

/// An error as the HTTP layer answers it.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    detail: String,
    extension: Option<Map<String, Value>>,
    /// Seconds after which a retry may succeed (`Retry-After`).
    retry_after: Option<u32>,
}

impl ApiError {
    /// An answer with `code` and a detail for people.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            code,
            detail: detail.into(),
            extension: None,
            retry_after: None,
        }
    }

    /// Tells the client when a retry may succeed.
    pub fn retry_after(mut self, seconds: u32) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    /// `400 invalid_request`.
    pub fn invalid(detail: impl Into<String>) -> ApiError {
        ApiError::new(codes::INVALID_REQUEST, detail)
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl<E: DomainError> From<E> for ApiError {
    fn from(error: E) -> Self {
        let code = error.code();
        if code.kind.is_server_side() {
            tracing::error!(code = code.name, %error, "request failed");
        }
        ApiError {
            code,
            detail: error.public_detail(),
            extension: error.extension(),
            retry_after: None,
        }
    }
}

/// The status of every kind of error.
pub fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::BadGateway => StatusCode::BAD_GATEWAY,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status(self.code.kind);
        let mut body = Map::new();
        body.insert(
            "type".into(),
            json!(format!("urn:writ:problem:{}", self.code)),
        );
        body.insert("title".into(), json!(self.code.title));
        body.insert("status".into(), json!(status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        for (member, value) in self.extension.into_iter().flatten() {
            body.entry(member).or_insert(value);
        }
        let mut response = (status, Json(Value::Object(body))).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
