//! `GET /v1/policy`: the policy set this broker runs (its hash, when it was loaded, its files'
//! digests) and the last reload it refused, for admins and auditors. Each replica answers for
//! itself, so a rollout can be checked replica by replica; `/readyz` carries the hash.
//! `POST /v1/policy/explain`: how that set decides one request, rule by rule.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use super::extract::{AdminCaller, AdminOrAuditorRole, JsonBody};
use crate::broker::{ExplainAnswer, PolicyStatus, RawExplain, ReloadFailure};
use crate::policy::PolicyFileDigest;
use crate::time::rfc3339;

#[derive(Debug, Serialize)]
pub struct PolicyStatusBody {
    /// SHA-256 over the files (see `policy::source`): what issued writs record.
    pub hash: String,
    pub loaded_at: String,
    pub files: Vec<PolicyFileDigest>,
    /// The last reload refused since this set was loaded, while the files still differ from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ReloadErrorBody>,
}

#[derive(Debug, Serialize)]
pub struct ReloadErrorBody {
    pub message: String,
    pub at: String,
    /// The hash of the files refused; `null` when they could not be read.
    pub hash: Option<String>,
}

impl From<PolicyStatus> for PolicyStatusBody {
    fn from(status: PolicyStatus) -> Self {
        PolicyStatusBody {
            hash: status.hash,
            loaded_at: rfc3339(status.loaded_at),
            files: status.files,
            last_error: status.last_error.map(ReloadErrorBody::from),
        }
    }
}

impl From<ReloadFailure> for ReloadErrorBody {
    fn from(failure: ReloadFailure) -> Self {
        ReloadErrorBody {
            message: failure.message,
            at: rfc3339(failure.at),
            hash: failure.hash,
        }
    }
}

pub async fn status(
    State(state): State<AppState>,
    _caller: AdminCaller<AdminOrAuditorRole>,
) -> Json<PolicyStatusBody> {
    Json(state.broker.policy_status().into())
}

pub async fn explain(
    State(state): State<AppState>,
    _caller: AdminCaller<AdminOrAuditorRole>,
    JsonBody(raw): JsonBody<RawExplain>,
) -> Result<Json<ExplainAnswer>, ApiError> {
    Ok(Json(state.broker.explain_policy(&raw)?))
}
