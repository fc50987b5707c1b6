//! Audit routes for auditors: events filtered and paged, or exported as JSON lines (one chained
//! event per line, exactly as stored, so an export can be verified offline with
//! `writ audit verify --export`), and the signed checkpoints.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::extract::{AdminCaller, AuditorRole, QueryParams};
use crate::admin::AdminCredential;
use crate::audit::{ChainedEvent, Checkpoint};
use crate::store::AuditQuery;

/// Events per page by default, and the most a page may ask for.
pub const DEFAULT_PAGE: u32 = 100;
pub const MAX_PAGE: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    #[serde(default)]
    after: u64,
    limit: Option<u32>,
    agent: Option<String>,
    task: Option<String>,
    writ_id: Option<String>,
    action: Option<String>,
    /// RFC 3339, inclusive.
    since: Option<String>,
    /// RFC 3339, exclusive.
    until: Option<String>,
    /// `json` (default, one page) or `jsonl` (every matching event, as JSON lines).
    format: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AuditPage {
    pub events: Vec<ChainedEvent>,
    /// The cursor for the next page (`after=`).
    pub next_after: u64,
    pub more: bool,
}

pub async fn events(
    State(state): State<AppState>,
    AdminCaller(auditor, _): AdminCaller<AuditorRole>,
    QueryParams(params): QueryParams<AuditParams>,
) -> Result<Response, ApiError> {
    let export = match params.format.as_deref() {
        None | Some("json") => false,
        Some("jsonl") => true,
        Some(_) => {
            return Err(ApiError::invalid("format must be json or jsonl"));
        }
    };
    let mut query = to_query(params)?;
    if export {
        return export_lines(state, auditor, query).await;
    }
    // One more than asked tells whether another page follows.
    let page_size = query.limit;
    query.limit = page_size + 1;
    let mut events = state.broker.read_audit(&auditor, &query).await?;
    let more = events.len() > page_size as usize;
    events.truncate(page_size as usize);
    let next_after = events.last().map_or(query.after, |event| event.seq);
    Ok(Json(AuditPage {
        events,
        next_after,
        more,
    })
    .into_response())
}

/// Streams every matching event as JSON lines, a page at a time.
async fn export_lines(
    state: AppState,
    auditor: AdminCredential,
    mut query: AuditQuery,
) -> Result<Response, ApiError> {
    query.limit = MAX_PAGE;
    let first = state.broker.read_audit(&auditor, &query).await?;
    let (lines, body) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut page = first;
        loop {
            let Some(last) = page.last().map(|event| event.seq) else {
                return;
            };
            let mut text = String::new();
            for event in &page {
                match serde_json::to_string(event) {
                    Ok(line) => {
                        text.push_str(&line);
                        text.push('\n');
                    }
                    Err(error) => {
                        let _ = lines.send(Err(std::io::Error::other(error))).await;
                        return;
                    }
                }
            }
            if lines.send(Ok(text)).await.is_err() || page.len() < MAX_PAGE as usize {
                return;
            }
            query.after = last;
            page = match state.broker.continue_audit_read(&query).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::error!(%error, "audit export interrupted");
                    let _ = lines
                        .send(Err(std::io::Error::other("audit export interrupted")))
                        .await;
                    return;
                }
            };
        }
    });
    let stream = futures_util::stream::unfold(body, |mut body| async move {
        body.recv().await.map(|line| (line, body))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/jsonl")],
        Body::from_stream(stream),
    )
        .into_response())
}

fn to_query(params: AuditParams) -> Result<AuditQuery, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    if params.after > i64::MAX as u64 {
        return Err(ApiError::invalid("after is too large"));
    }
    if let Some(action) = &params.action
        && !is_action_name(action)
    {
        return Err(ApiError::invalid(
            "action must be dotted lowercase words, like writ.issued",
        ));
    }
    Ok(AuditQuery {
        after: params.after,
        limit,
        agent: params.agent,
        task: params.task,
        writ_id: params.writ_id,
        action: params.action,
        since_ms: params.since.as_deref().map(parse_time).transpose()?,
        until_ms: params.until.as_deref().map(parse_time).transpose()?,
    })
}

/// `^[a-z_]+(\.[a-z_]+)*$`: the shape of every action name.
fn is_action_name(text: &str) -> bool {
    text.split('.')
        .all(|word| !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
}

fn parse_time(text: &str) -> Result<i64, ApiError> {
    let time = humantime::parse_rfc3339(text)
        .map_err(|_| ApiError::invalid(format!("{text:?} is not an RFC 3339 time")))?;
    Ok(crate::time::unix_ms(time))
}

#[derive(Debug, Serialize)]
pub struct CheckpointList {
    pub checkpoints: Vec<Checkpoint>,
}

pub async fn checkpoints(
    State(state): State<AppState>,
    AdminCaller(auditor, _): AdminCaller<AuditorRole>,
) -> Result<impl IntoResponse, ApiError> {
    let checkpoints = state.broker.checkpoints(&auditor).await?;
    Ok(Json(CheckpointList { checkpoints }))
}
