//! `POST /v1/writs`: a workload identity token and a request in, a writ out.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use super::extract::{Agent, JsonBody};
use crate::broker::Issued;
use crate::error::DomainError;
use crate::policy::RawWritRequest;
use crate::store::RightRecord;
use crate::time::rfc3339;

/// An issued writ and what it grants.
#[derive(Debug, Serialize)]
pub struct IssuedWritResponse {
    pub writ: String,
    pub writ_id: String,
    pub root_key_id: u32,
    pub agent: String,
    pub task: String,
    pub issued_at: String,
    pub expires_at: String,
    pub ttl: u64,
    pub rights: Vec<RightRecord>,
    pub services: Vec<String>,
    pub policy: String,
    /// The hash of the policy set that allowed it (`GET /v1/policy` answers the running one).
    pub policy_hash: String,
}

impl From<Issued> for IssuedWritResponse {
    fn from(issued: Issued) -> Self {
        let record = issued.record;
        IssuedWritResponse {
            writ: issued.writ,
            writ_id: record.writ_id,
            root_key_id: record.root_key_id,
            agent: record.agent,
            task: record.task,
            issued_at: rfc3339(record.issued_at),
            expires_at: rfc3339(record.expires_at),
            ttl: issued.ttl.as_secs(),
            rights: record.rights,
            services: record.services,
            policy: issued.policy,
            policy_hash: issued.policy_hash,
        }
    }
}

pub async fn issue(
    State(state): State<AppState>,
    Agent(identity): Agent,
    JsonBody(request): JsonBody<RawWritRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let issued = state
        .broker
        .issue(identity, &request)
        .await
        .inspect_err(|error| tracing::info!(code = error.code().name, "writ refused"))?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(IssuedWritResponse::from(issued)),
    ))
}
