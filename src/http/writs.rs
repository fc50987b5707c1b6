//! `POST /v1/writs`: a workload identity token and a request in, a writ out.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;

use super::AppState;
use super::body::json_body;
use super::error::ApiError;
use crate::broker::IssueError;
use crate::policy::RawWritRequest;

pub async fn issue(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    // Authenticate before looking at the body: an unauthenticated caller learns only "no".
    let identity = state
        .broker
        .authenticate(bearer(&headers)?)
        .await
        .inspect_err(log_refusal)?;
    let request: RawWritRequest = json_body(&headers, body)?;
    let issued = state
        .broker
        .issue(identity, &request)
        .await
        .inspect_err(log_refusal)?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(issued),
    ))
}

fn log_refusal(error: &IssueError) {
    tracing::info!(code = error.code(), "writ refused");
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::MissingCredential)?;
    let value = value.to_str().map_err(|_| ApiError::MalformedCredential)?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::MalformedCredential)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::MalformedCredential);
    }
    Ok(token)
}
