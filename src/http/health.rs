//! Liveness and readiness. Ready means a writ could be issued now (see
//! `Broker::readiness`); the answer also says which policy set it would be issued under, and
//! when a reload was refused (the broker stays ready: the running set still decides). These
//! routes answer anyone, so they name the set by hash only: the files and the refusal's message
//! (which quote policy text) are for admins and auditors, in `GET /v1/policy`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::policy::PolicyStatusBody;

pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.broker.readiness().await?;
    let status = PolicyStatusBody::from(state.broker.policy_status());
    let mut policy = json!({"hash": status.hash, "loaded_at": status.loaded_at});
    if let Some(error) = status.last_error {
        policy["reload_refused"] = json!({"at": error.at, "hash": error.hash});
    }
    Ok(Json(json!({"status": "ready", "policy": policy})))
}
