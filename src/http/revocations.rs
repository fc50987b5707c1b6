//! Revocation routes: admins revoke and lift suspensions; verifiers read the feed and follow
//! the stream (both public: entries carry ids and cut-offs, never reasons or who revoked).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::response::sse::{Event, Sse};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use writ_verify::revocation::RevocationEntry;

use super::AppState;
use super::error::ApiError;
use super::extract::{AdminCaller, AdminRole, JsonBody, QueryParams};
use crate::broker::RevokeOrder;
use crate::error::codes;
use crate::revocation::{FeedItem, Revocation};
use crate::time::rfc3339;

/// The most entries one feed page carries.
pub const MAX_PAGE: usize = 1000;

/// Seconds a client refused a stream at the cap is told to wait.
const STREAM_RETRY_AFTER: u32 = 5;

/// A revocation as admins see it: the feed entry and who, when and why.
#[derive(Debug, Serialize)]
pub struct RevocationRecord {
    #[serde(flatten)]
    pub entry: RevocationEntry,
    pub reason: String,
    pub revoked_by: String,
    pub revoked_at: String,
    pub suspended: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifted_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifted_at: Option<String>,
}

impl From<&Revocation> for RevocationRecord {
    fn from(revocation: &Revocation) -> Self {
        RevocationRecord {
            entry: revocation.to_entry(),
            reason: revocation.reason.clone(),
            revoked_by: revocation.revoked_by.clone(),
            revoked_at: rfc3339(revocation.revoked_at),
            suspended: revocation.is_suspension(),
            lifted_by: revocation.lifted.as_ref().map(|lift| lift.by.clone()),
            lifted_at: revocation.lifted.as_ref().map(|lift| rfc3339(lift.at)),
        }
    }
}

/// `POST /v1/revocations`: exactly one of `writ_id`, `task`, `agent`, and a reason.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    #[serde(default)]
    pub writ_id: Option<String>,
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub agent: Option<String>,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct RevokeResponse {
    #[serde(flatten)]
    pub revocation: RevocationRecord,
    /// False when an equivalent revocation was already in force.
    pub created: bool,
    /// Writs of the target that had not yet expired.
    pub live_writs: u64,
}

pub async fn revoke(
    State(state): State<AppState>,
    AdminCaller(admin, _): AdminCaller<AdminRole>,
    JsonBody(request): JsonBody<RevokeRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let order = RevokeOrder {
        writ_id: request.writ_id.as_deref(),
        task: request.task.as_deref(),
        agent: request.agent.as_deref(),
        reason: &request.reason,
    };
    let outcome = state.broker.revoke(&admin, order).await?;
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(RevokeResponse {
            revocation: RevocationRecord::from(&outcome.revocation),
            created: outcome.created,
            live_writs: outcome.live_writs,
        }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiftRequest {
    pub agent: String,
    pub reason: String,
}

pub async fn lift(
    State(state): State<AppState>,
    AdminCaller(admin, _): AdminCaller<AdminRole>,
    JsonBody(request): JsonBody<LiftRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let lifted = state
        .broker
        .lift_suspension(&admin, &request.agent, &request.reason)
        .await?;
    Ok(Json(RevocationRecord::from(&lifted)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    #[serde(default)]
    pub after: u64,
    #[serde(default)]
    pub limit: Option<usize>,
}

pub async fn feed(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<FeedQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = query.limit.unwrap_or(MAX_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let page = state.broker.revocation_page(query.after, limit)?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(page)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    #[serde(default)]
    pub after: Option<u64>,
}

/// The push stream (see `revocation::follow`), framed as server-sent events. The cursor is
/// `Last-Event-ID` when the client sends one (a reconnect), else `after`.
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<StreamQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let after = match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|text| {
                (1..=19).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
            })
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| ApiError::invalid("Last-Event-ID must be a number of 1 to 19 digits"))?,
        None => query.after.unwrap_or(0),
    };
    let Ok(permit) = Arc::clone(&state.streams).try_acquire_owned() else {
        tracing::debug!("revocation stream refused: at the stream cap");
        return Err(ApiError::new(
            codes::OVER_CAPACITY,
            "too many revocation streams are open; retry, or poll GET /v1/revocations",
        )
        .retry_after(STREAM_RETRY_AFTER));
    };
    let items = state.broker.follow_revocations(
        after,
        state.revocation_heartbeat,
        state.shutdown.clone(),
    )?;
    // The permit lives as long as the stream: it is released when the client goes away.
    let events = items.map(move |item| {
        let _held = &permit;
        Ok::<_, Infallible>(sse_event(&item))
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], Sse::new(events)))
}

fn sse_event(item: &FeedItem) -> Event {
    match item {
        FeedItem::Entry(entry) => Event::default()
            .event("revocation")
            .id(entry.seq.to_string())
            .data(serde_json::to_string(entry).unwrap_or_default()),
        FeedItem::Heartbeat(heartbeat) => Event::default()
            .event("heartbeat")
            .data(serde_json::to_string(heartbeat).unwrap_or_default()),
    }
}
