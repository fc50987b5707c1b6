//! The one place where errors become HTTP: every error answers `application/problem+json`
//! (RFC 9457) with a stable `type` (`urn:writ:problem:<code>`). Server-side failures log their
//! cause and answer a generic body; nothing secret is echoed.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::admin::CredentialError;
use crate::broker::{AdminCallError, IssueError};
use crate::identity::IdentityError;
use crate::policy::Refusal;
use crate::revocation::RevocationError;

#[derive(Debug)]
pub enum ApiError {
    MissingCredential,
    MalformedCredential,
    Identity(IdentityError),
    InvalidRequest(String),
    UnsupportedMediaType,
    PayloadTooLarge,
    Refused(Refusal),
    Suspended,
    Admin(AdminCallError),
    NotFound,
    MethodNotAllowed,
    StorageUnavailable,
    NotReady(String),
    Timeout,
    Internal,
}

impl From<IssueError> for ApiError {
    fn from(error: IssueError) -> Self {
        match error {
            IssueError::Identity(error) => ApiError::Identity(error),
            IssueError::Request(error) => ApiError::InvalidRequest(error.to_string()),
            IssueError::Refused(refusal) => ApiError::Refused(refusal),
            IssueError::Suspended => ApiError::Suspended,
            IssueError::Storage(error) => {
                tracing::error!(%error, "issuance record could not be stored; no writ returned");
                ApiError::StorageUnavailable
            }
            IssueError::Mint(error) => {
                tracing::error!(%error, "minting failed");
                ApiError::Internal
            }
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::InvalidRequest(rejection.body_text())
    }
}

impl From<AdminCallError> for ApiError {
    fn from(error: AdminCallError) -> Self {
        match error {
            AdminCallError::InvalidRequest(detail) => ApiError::InvalidRequest(detail),
            AdminCallError::Storage(error)
            | AdminCallError::Revocation(RevocationError::Storage(error)) => {
                tracing::error!(%error, "admin call could not be recorded");
                ApiError::Admin(AdminCallError::Storage(error))
            }
            error => ApiError::Admin(error),
        }
    }
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        use ApiError::*;
        match self {
            Suspended => (
                StatusCode::FORBIDDEN,
                "agent_suspended",
                "Agent suspended",
                "an admin suspended this agent; no writ is issued to it until the suspension is lifted"
                    .into(),
            ),
            Admin(error) => admin_parts(error),
            MissingCredential => (
                StatusCode::UNAUTHORIZED,
                "credential_missing",
                "Credential missing",
                "send Authorization: Bearer <token>: the workload identity token, or an admin writ on admin routes".into(),
            ),
            MalformedCredential => (
                StatusCode::UNAUTHORIZED,
                "credential_malformed",
                "Credential malformed",
                "the Authorization header must be Bearer <token>".into(),
            ),
            Identity(IdentityError::IssuerUnavailable) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "identity_issuer_unavailable",
                "Identity issuer unavailable",
                IdentityError::IssuerUnavailable.to_string(),
            ),
            Identity(error) => (
                StatusCode::UNAUTHORIZED,
                error.code(),
                "Identity refused",
                error.to_string(),
            ),
            InvalidRequest(detail) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Invalid request",
                detail.clone(),
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                "send application/json".into(),
            ),
            PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
                format!(
                    "request bodies are limited to {} bytes",
                    super::MAX_BODY_BYTES
                ),
            ),
            Refused(refusal) => (
                StatusCode::FORBIDDEN,
                "policy_refused",
                "Refused by policy",
                refusal_detail(refusal),
            ),
            NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "Not found",
                "no such route".into(),
            ),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
                "this route does not accept that method".into(),
            ),
            StorageUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "Storage unavailable",
                "the issuance could not be recorded, so no writ was issued; retry later".into(),
            ),
            NotReady(detail) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "Not ready",
                detail.clone(),
            ),
            Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "Timeout",
                "the request took too long and was cut off; retry later".into(),
            ),
            Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "the broker failed; the cause is in its log".into(),
            ),
        }
    }
}

fn admin_parts(error: &AdminCallError) -> (StatusCode, &'static str, &'static str, String) {
    let status = match error {
        AdminCallError::Credential(CredentialError::RoleMissing { .. }) => StatusCode::FORBIDDEN,
        AdminCallError::Credential(_) | AdminCallError::CredentialRevoked => {
            StatusCode::UNAUTHORIZED
        }
        AdminCallError::Revocation(
            RevocationError::UnknownWrit | RevocationError::NotSuspended,
        ) => StatusCode::NOT_FOUND,
        AdminCallError::Revocation(RevocationError::Storage(_)) | AdminCallError::Storage(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        AdminCallError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        AdminCallError::Mint(
            crate::admin::AdminError::Build(_) | crate::admin::AdminError::Random,
        ) => StatusCode::INTERNAL_SERVER_ERROR,
        AdminCallError::Mint(_) => StatusCode::BAD_REQUEST,
    };
    let title = match status {
        StatusCode::UNAUTHORIZED => "Admin credential refused",
        StatusCode::FORBIDDEN => "Role missing",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::SERVICE_UNAVAILABLE => "Storage unavailable",
        StatusCode::BAD_REQUEST => "Invalid request",
        _ => "Internal error",
    };
    let detail = match error {
        AdminCallError::Revocation(RevocationError::Storage(_)) | AdminCallError::Storage(_) => {
            "the change could not be recorded, so it was not made; retry later".to_owned()
        }
        AdminCallError::Mint(
            crate::admin::AdminError::Build(_) | crate::admin::AdminError::Random,
        ) => "the broker failed; the cause is in its log".to_owned(),
        error => error.to_string(),
    };
    (status, error.code(), title, detail)
}

fn refusal_detail(refusal: &Refusal) -> String {
    if refusal.reason == "no_matching_policy" {
        return "no policy allows this identity to request writs".into();
    }
    let mut parts = Vec::new();
    if !refusal.refused_rights.is_empty() {
        let rights: Vec<_> = refusal
            .refused_rights
            .iter()
            .map(|r| format!("{} {}", r.operation, r.resource))
            .collect();
        parts.push(format!("rights not allowed: {}", rights.join(", ")));
    }
    if !refusal.refused_services.is_empty() {
        parts.push(format!(
            "services not allowed: {}",
            refusal.refused_services.join(", ")
        ));
    }
    if let Some(ttl) = &refusal.refused_ttl {
        parts.push(format!(
            "ttl {}s exceeds the maximum {}s",
            ttl.requested, ttl.max
        ));
    }
    parts.join("; ")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title, detail) = self.parts();
        let mut body = json!({
            "type": format!("urn:writ:problem:{code}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
        });
        if let (ApiError::Refused(refusal), Value::Object(map)) = (&self, &mut body) {
            map.insert("reason".into(), json!(refusal.reason));
            map.insert("refused_rights".into(), json!(refusal.refused_rights));
            map.insert("refused_services".into(), json!(refusal.refused_services));
            map.insert("refused_ttl".into(), json!(refusal.refused_ttl));
        }
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
