//! `GET /.well-known/writ-keys`: the public key set verifiers use, with ids and validity windows.

use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;

pub async fn key_set(State(state): State<AppState>) -> impl IntoResponse {
    // Short caching: verifiers also refetch when they meet an unknown key id.
    (
        [(header::CACHE_CONTROL, "public, max-age=60")],
        Json(state.broker.key_set(SystemTime::now())),
    )
}
