//! Admin routes' authentication: the admin writ in `Authorization: Bearer`, checked for the
//! route's role before anything else of the request is read.

use axum::http::HeaderMap;

use super::AppState;
use super::error::ApiError;
use super::writs::bearer;
use crate::admin::{AdminCredential, Role};

/// The verified admin credential of a request to a route that needs `role`. Refusals are
/// audited by the broker.
pub async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    role: Role,
    action: &str,
) -> Result<AdminCredential, ApiError> {
    let token = bearer(headers).inspect_err(|_| {
        tracing::info!(action, "admin call without a usable credential");
    })?;
    Ok(state.broker.authorize_admin(token, role, action).await?)
}
