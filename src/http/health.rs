//! Liveness and readiness. Ready means a writ could be issued now (see
//! `Broker::readiness`).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;

pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.broker.readiness().await?;
    Ok(Json(json!({"status": "ready"})))
}
