//! Extractors: who is calling, and the request's JSON body and query, each refusing with a
//! problem+json answer. Callers are [`FromRequestParts`] extractors, so they run before any body
//! extractor: a caller that cannot prove who it is is refused before its body is read.

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::admin::{AdminCredential, Role};
use crate::audit::actions;
use crate::error::{DomainError, codes};
use crate::identity::Identity;

/// An agent, authenticated by the workload identity token in `Authorization: Bearer`.
pub struct Agent(pub Identity);

impl FromRequestParts<AppState> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).inspect_err(|error| {
            state
                .broker
                .count_unauthenticated(actions::IDENTITY_REFUSED, error.code())
        })?;
        match state.broker.authenticate(token).await {
            Ok(identity) => Ok(Agent(identity)),
            Err(error) => {
                tracing::debug!(code = error.code().name, "identity refused");
                Err(error.into())
            }
        }
    }
}

/// A writ presented in `Authorization: Bearer` to be exchanged; verified by the broker's
/// exchange operation, which also knows what it must grant.
pub struct PresentedWrit(pub String);

impl FromRequestParts<AppState> for PresentedWrit {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let counted = |error: ApiError| {
            state
                .broker
                .count_unauthenticated(actions::EXCHANGE_REFUSED, error.code());
            error
        };
        let token = bearer(&parts.headers).map_err(counted)?;
        if token.len() > crate::exchange::MAX_WRIT_BYTES {
            return Err(counted(ApiError::new(
                codes::CREDENTIAL_MALFORMED,
                "the writ is larger than any writ the broker issues",
            )));
        }
        Ok(PresentedWrit(token.to_owned()))
    }
}

/// The roles an admin route admits: one of them is enough.
pub trait RequiredRole: Send + Sync {
    const ROLES: &'static [Role];
}

/// Routes for admins.
pub struct AdminRole;
/// Routes for auditors.
pub struct AuditorRole;
/// Routes for approvers.
pub struct ApproverRole;
/// Routes for admins and auditors alike (what the broker runs: its policy set).
pub struct AdminOrAuditorRole;

impl RequiredRole for ApproverRole {
    const ROLES: &'static [Role] = &[Role::Approver];
}

impl RequiredRole for AdminRole {
    const ROLES: &'static [Role] = &[Role::Admin];
}

impl RequiredRole for AuditorRole {
    const ROLES: &'static [Role] = &[Role::Auditor];
}

impl RequiredRole for AdminOrAuditorRole {
    const ROLES: &'static [Role] = &[Role::Admin, Role::Auditor];
}

/// A principal whose admin writ (in `Authorization: Bearer`) verified, is not revoked and
/// carries one of the roles of `R`. Refusals are audited by the broker, naming the route.
pub struct AdminCaller<R>(pub AdminCredential, pub PhantomData<R>);

impl<R: RequiredRole> FromRequestParts<AppState> for AdminCaller<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let route = format!(
            "{} {}",
            parts.method,
            parts
                .extensions
                .get::<MatchedPath>()
                .map_or(parts.uri.path(), MatchedPath::as_str)
        );
        let token = bearer(&parts.headers).inspect_err(|error| {
            tracing::debug!(%route, "admin call without a usable credential");
            state
                .broker
                .count_unauthenticated(actions::ADMIN_REFUSED, error.code());
        })?;
        let credential = state
            .broker
            .authorize_admin(token, R::ROLES, &route)
            .await?;
        Ok(AdminCaller(credential, PhantomData))
    }
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let malformed = || {
        ApiError::new(
            codes::CREDENTIAL_MALFORMED,
            "the Authorization header must be Bearer <token>",
        )
    };
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::new(
            codes::CREDENTIAL_MISSING,
            "send Authorization: Bearer <token>: the workload identity token, an admin writ on admin routes, or the writ to exchange on exchange routes",
        )
    })?;
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(malformed());
    }
    Ok(token)
}

/// A JSON body: the content type must say JSON, the size limit answers 413, and anything that
/// does not parse answers 400 with serde's reason.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        require_json(request.headers())?;
        // A body announced larger than the limit is refused before any of it is read.
        let announced = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse::<u64>().ok());
        if announced.is_some_and(|length| length > super::MAX_BODY_BYTES as u64) {
            return Err(too_large());
        }
        let body =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                        codes::PAYLOAD_TOO_LARGE,
                        format!(
                            "request bodies are limited to {} bytes",
                            super::MAX_BODY_BYTES
                        ),
                    ),
                    _ => ApiError::invalid("the body could not be read"),
                })?;
        serde_json::from_slice(&body)
            .map(JsonBody)
            .map_err(|error| ApiError::invalid(format!("body: {error}")))
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        codes::PAYLOAD_TOO_LARGE,
        format!(
            "request bodies are limited to {} bytes",
            super::MAX_BODY_BYTES
        ),
    )
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::new(
            codes::UNSUPPORTED_MEDIA_TYPE,
            "send application/json",
        ))
    }
}

/// Query parameters; anything that does not parse answers 400 with the reason.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(query) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
        Ok(QueryParams(query))
    }
}
