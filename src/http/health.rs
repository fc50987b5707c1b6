//! Liveness and readiness. Ready means a writ could be issued now: the database answers and the
//! active root key signs.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;

pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let ping = tokio::time::timeout(Duration::from_secs(2), state.broker.store.ping()).await;
    match ping {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "not ready: storage");
            return Err(ApiError::NotReady("storage is unavailable".into()));
        }
        Err(_) => return Err(ApiError::NotReady("storage did not answer in time".into())),
    }
    if !state.broker.revocations.is_current() {
        return Err(super::revocations::stale_view());
    }
    if !state.broker.keys.usable() {
        return Err(ApiError::NotReady("the root key cannot sign".into()));
    }
    Ok(Json(json!({"status": "ready"})))
}
