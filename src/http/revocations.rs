//! Revocation routes: admins revoke and lift suspensions; verifiers read the feed and follow
//! the stream (both public: entries carry ids and cut-offs, never reasons or who revoked).

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::response::sse::{Event, Sse};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use writ_verify::revocation::{FeedHeartbeat, RevocationEntry};

use super::AppState;
use super::admin::authorize;
use super::body::json_body;
use super::error::ApiError;
use crate::admin::Role;
use crate::audit::actions;
use crate::broker::RevokeRequest;
use crate::revocation::{Registry, Revocation, rfc3339};

/// The most entries one feed page carries.
pub const MAX_PAGE: usize = 1000;

/// Entries a stream reads from the view at a time: a slow reader holds at most this many.
const STREAM_PAGE: usize = 200;

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
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = authorize(&state, &headers, Role::Admin, actions::REVOCATION_CREATED).await?;
    let request: RevokeRequest = json_body(&headers, body)?;
    let outcome = state.broker.revoke(&admin, &request).await?;
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
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = authorize(&state, &headers, Role::Admin, actions::SUSPENSION_LIFTED).await?;
    let request: LiftRequest = json_body(&headers, body)?;
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
    query: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(MAX_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::InvalidRequest(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    if !state.broker.revocations.is_current() {
        return Err(stale_view());
    }
    let page = state
        .broker
        .revocations
        .page(query.after, limit, SystemTime::now());
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(page)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    #[serde(default)]
    pub after: Option<u64>,
}

/// The push stream: the backlog after the cursor (`Last-Event-ID` wins over `after`), then a
/// heartbeat, then live entries as they are committed, and a heartbeat whenever nothing else was
/// sent for the heartbeat interval. A heartbeat promises that every live entry up to its `head`
/// has been sent.
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query?;
    let after = match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError::InvalidRequest("Last-Event-ID must be a number".into()))?,
        None => query.after.unwrap_or(0),
    };
    if !state.broker.revocations.is_current() {
        return Err(stale_view());
    }
    let events = revocation_events(
        std::sync::Arc::clone(&state.broker.revocations),
        after,
        state.revocation_heartbeat,
        state.shutdown.clone(),
    );
    Ok(([(header::CACHE_CONTROL, "no-store")], Sse::new(events)))
}

struct Follower {
    registry: std::sync::Arc<Registry>,
    changes: tokio::sync::watch::Receiver<u64>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    cursor: u64,
    heartbeat: Duration,
    pending: std::collections::VecDeque<Event>,
    /// When the last heartbeat went out (`None`: not yet).
    last_heartbeat: Option<tokio::time::Instant>,
}

fn revocation_events(
    registry: std::sync::Arc<Registry>,
    after: u64,
    heartbeat: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let changes = registry.subscribe();
    let follower = Follower {
        registry,
        changes,
        shutdown,
        cursor: after,
        heartbeat,
        pending: Default::default(),
        last_heartbeat: None,
    };
    futures_util::stream::unfold(follower, |mut follower| async move {
        let event = follower.next().await?;
        Some((Ok(event), follower))
    })
}

impl Follower {
    /// The next event to send; `None` ends the stream (the broker is shutting down, and
    /// a verifier reconnects to another replica or after the restart).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if *self.shutdown.borrow() {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            // Mark the change seen before reading, so one committed meanwhile wakes us again.
            self.changes.borrow_and_update();
            if self.read_page() {
                continue;
            }
            // Nothing unsent as of this read. A heartbeat at least once per interval, even
            // while entries keep coming: it is what tells a verifier its view is complete.
            let heartbeat_due = self
                .last_heartbeat
                .is_none_or(|sent| sent.elapsed() >= self.heartbeat);
            if heartbeat_due {
                if !self.registry.is_current() {
                    // This broker cannot read revocations: end the stream rather than vouch
                    // for a view it cannot keep (the verifier polls, or tries another replica).
                    return None;
                }
                return Some(self.heartbeat_event());
            }
            let wait = self.last_heartbeat.map_or(Duration::ZERO, |sent| {
                self.heartbeat.saturating_sub(sent.elapsed())
            });
            tokio::select! {
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = self.shutdown.changed() => return None,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Queues the next page of live entries after the cursor; false when there is none.
    fn read_page(&mut self) -> bool {
        let head = self.registry.head();
        let page = self
            .registry
            .page(self.cursor, STREAM_PAGE, SystemTime::now());
        let last_sent = page.entries.last().map_or(0, |entry| entry.seq);
        // A full page leaves the rest for the next read; otherwise everything up to the head
        // read before the page has been queued.
        self.cursor = if page.more {
            last_sent
        } else {
            self.cursor.max(head).max(last_sent)
        };
        self.pending.extend(page.entries.iter().map(entry_event));
        !page.entries.is_empty()
    }

    fn heartbeat_event(&mut self) -> Event {
        self.last_heartbeat = Some(tokio::time::Instant::now());
        let data = serde_json::to_string(&FeedHeartbeat { head: self.cursor }).unwrap_or_default();
        Event::default().event("heartbeat").data(data)
    }
}

/// The broker cannot read revocations from its database, so it cannot vouch for any view.
pub fn stale_view() -> ApiError {
    ApiError::NotReady(
        "the broker's revocation view is not current: its database cannot be read".into(),
    )
}

fn entry_event(entry: &RevocationEntry) -> Event {
    Event::default()
        .event("revocation")
        .id(entry.seq.to_string())
        .data(serde_json::to_string(entry).unwrap_or_default())
}
