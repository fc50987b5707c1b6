//! `POST /v1/admin/writs`: an admin issues an admin writ to another principal (automation, an
//! auditor, an approver). The first admin writ comes from `writ admin bootstrap`.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::extract::{AdminCaller, AdminRole, JsonBody};
use crate::admin::{DEFAULT_ADMIN_TTL, Role};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminWritRequest {
    pub principal: String,
    pub roles: BTreeSet<Role>,
    /// Seconds; one hour when absent.
    #[serde(default, with = "crate::time::whole_seconds")]
    pub ttl: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct AdminWritResponse {
    pub writ: String,
    pub writ_id: String,
    pub principal: String,
    pub roles: BTreeSet<Role>,
    pub root_key_id: u32,
    pub expires_at: String,
}

pub async fn issue(
    State(state): State<AppState>,
    AdminCaller(admin, _): AdminCaller<AdminRole>,
    JsonBody(request): JsonBody<AdminWritRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let ttl = request.ttl.map_or(DEFAULT_ADMIN_TTL, Duration::from_secs);
    let minted = state
        .broker
        .grant_admin_writ(&admin, &request.principal, &request.roles, ttl)
        .await?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(AdminWritResponse {
            writ: minted.token,
            writ_id: minted.writ_id,
            principal: request.principal,
            roles: request.roles,
            root_key_id: minted.root_key_id,
            expires_at: humantime::format_rfc3339_seconds(minted.expires_at).to_string(),
        }),
    ))
}
