//! Liveness and readiness. Ready means a writ could be issued now (see
//! `Broker::readiness`); the answer also says which policy set it would be issued under, and a
//! reload that was refused (the broker stays ready: the running set still decides).

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
    let policy = PolicyStatusBody::from(state.broker.policy_status());
    Ok(Json(json!({"status": "ready", "policy": policy})))
}
