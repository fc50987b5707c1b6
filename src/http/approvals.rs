//! Approval routes. Agents (workload identity) open requests and wait for them; approvers (an
//! admin writ with the `approver` role) list and decide them.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::extract::{AdminCaller, Agent, ApproverRole, JsonBody, QueryParams};
use crate::admin::AdminCredential;
use crate::approval::{ApprovalRequest, Approver, DecisionRecord, Status, Via};
use crate::broker::{AgentView, ApproverView, MAX_WAIT, RawApprovalRequest, RawDecision};
use crate::id;
use crate::store::{ApprovalQuery, RightRecord};
use crate::time::rfc3339;

/// The most requests one listing page carries.
pub const MAX_PAGE: u32 = 100;

/// A request as answered: what was asked, where it stands, who decided what.
#[derive(Debug, Serialize)]
pub struct ApprovalBody {
    pub id: String,
    pub status: Status,
    pub agent: String,
    pub task: String,
    pub requested_rights: Vec<RightRecord>,
    /// What an approval grants (the requested rights, as narrowed).
    pub rights: Vec<RightRecord>,
    pub services: Vec<String>,
    /// Lifetime of the elevated writ, seconds.
    pub ttl: u64,
    pub justification: String,
    pub policy: String,
    /// The hash of the policy set that admitted the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    pub quorum: u32,
    pub approvals: usize,
    pub created_at: String,
    pub expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    pub decisions: Vec<DecisionBody>,
    /// The elevated writ's id once collected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writ_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DecisionBody {
    pub approver: String,
    pub decision: &'static str,
    pub reason: String,
    pub decided_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub narrowed_to: Option<Vec<RightRecord>>,
}

impl From<&DecisionRecord> for DecisionBody {
    fn from(record: &DecisionRecord) -> Self {
        DecisionBody {
            approver: record.approver.clone(),
            decision: record.verdict.as_str(),
            reason: record.reason.clone(),
            decided_at: rfc3339(record.decided_at),
            narrowed_to: record.narrowed_to.clone(),
        }
    }
}

impl ApprovalBody {
    fn new(request: &ApprovalRequest, status: Status) -> ApprovalBody {
        ApprovalBody {
            id: request.id.clone(),
            status,
            agent: request.agent.clone(),
            task: request.task.clone(),
            requested_rights: request.requested_rights.clone(),
            rights: request.rights.clone(),
            services: request.services.clone(),
            ttl: request.ttl,
            justification: request.justification.clone(),
            policy: request.policy.clone(),
            policy_hash: request.policy_hash.clone(),
            quorum: request.quorum,
            approvals: request.approvals(),
            created_at: rfc3339(request.created_at),
            expires_at: rfc3339(request.expires_at),
            decided_at: request.decided_at.map(rfc3339),
            decisions: request.decisions.iter().map(DecisionBody::from).collect(),
            writ_id: request.writ_id.clone(),
        }
    }
}

/// The agent's reading: the request and, exactly once, the elevated writ.
#[derive(Debug, Serialize)]
pub struct AgentApprovalBody {
    #[serde(flatten)]
    pub approval: ApprovalBody,
    /// The elevated writ: present only in the answer that collected it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writ: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writ_expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_key_id: Option<u32>,
    /// The hash of the policy set that allowed the elevated writ as it was minted (with `writ`
    /// only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writ_policy_hash: Option<String>,
}

impl From<AgentView> for AgentApprovalBody {
    fn from(view: AgentView) -> Self {
        let mut approval = ApprovalBody::new(&view.request, view.status);
        let (writ, writ_expires_at, root_key_id, writ_policy_hash) = match view.writ {
            Some(elevated) => {
                approval.writ_id = Some(elevated.record.writ_id.clone());
                (
                    Some(elevated.token),
                    Some(rfc3339(elevated.record.expires_at)),
                    Some(elevated.record.root_key_id),
                    elevated.record.policy_hash,
                )
            }
            None => (
                None,
                view.request.writ_expires_at().map(rfc3339),
                None,
                None,
            ),
        };
        AgentApprovalBody {
            approval,
            writ,
            writ_expires_at,
            root_key_id,
            writ_policy_hash,
        }
    }
}

/// A request as an approver reads it.
#[derive(Debug, Serialize)]
pub struct ApproverApprovalBody {
    #[serde(flatten)]
    pub approval: ApprovalBody,
    pub issuer: String,
    pub subject: String,
    /// Whether the caller may still decide it.
    pub may_decide: bool,
    /// Where the webhook delivery stands: none, pending, delivered or failed.
    pub notification: NotificationBody,
}

#[derive(Debug, Serialize)]
pub struct NotificationBody {
    pub status: String,
    pub attempts: u32,
}

impl From<ApproverView> for ApproverApprovalBody {
    fn from(view: ApproverView) -> Self {
        let request = &view.listed.request;
        ApproverApprovalBody {
            approval: ApprovalBody::new(request, view.status),
            issuer: request.issuer.clone(),
            subject: request.subject.clone(),
            may_decide: view.may_decide,
            notification: NotificationBody {
                status: view.listed.notify_status.clone(),
                attempts: view.listed.notify_attempts,
            },
        }
    }
}

/// `POST /v1/approvals`: opens a request; answers 202 and where to wait.
pub async fn open(
    State(state): State<AppState>,
    Agent(identity): Agent,
    JsonBody(raw): JsonBody<RawApprovalRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let request = state.broker.request_approval(identity, &raw).await?;
    let location = format!("/v1/approvals/{}", request.id);
    Ok((
        StatusCode::ACCEPTED,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Json(ApprovalBody::new(&request, Status::Pending)),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// How long to wait while the request is pending: seconds, or a duration such as `30s`.
    #[serde(default)]
    pub wait: Option<String>,
}

/// `GET /v1/approvals/{id}`: the agent's request, waiting up to `wait` while it is pending.
/// `HEAD` answers the status only: it never waits and never collects the writ (a monitor or a
/// proxy probing the URL must not consume the one handover).
pub async fn read(
    State(state): State<AppState>,
    method: Method,
    Agent(identity): Agent,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<WaitQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let wait = parse_wait(query.wait.as_deref())?;
    let get = method != Method::HEAD;
    let wait = if get { wait } else { Duration::ZERO };
    let view = state
        .broker
        .approval_for_agent(&identity, &id, wait, get)
        .await?;
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(seconds) = view.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    Ok((headers, Json(AgentApprovalBody::from(view))))
}

fn parse_wait(text: Option<&str>) -> Result<Duration, ApiError> {
    let Some(text) = text else {
        return Ok(Duration::ZERO);
    };
    let parsed = match text.parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(text),
    };
    match parsed {
        Ok(wait) if wait <= MAX_WAIT => Ok(wait),
        _ => Err(ApiError::invalid(format!(
            "wait must be a duration of at most {}s (such as 30s)",
            MAX_WAIT.as_secs()
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// pending (default), approved, denied, expired or all.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    #[serde(default)]
    pub before: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ApprovalPage {
    pub approvals: Vec<ApproverApprovalBody>,
    /// Pass as `before` for the next (older) page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `GET /v1/approvals`: requests for approvers, newest first.
pub async fn list(
    State(state): State<AppState>,
    AdminCaller(credential, _): AdminCaller<ApproverRole>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let approver = approver_of(&credential);
    let query = list_query(&query)?;
    let views = state
        .broker
        .approvals_for_approver(&approver, &query)
        .await?;
    let next = next_cursor(&views, query.limit);
    Ok(Json(ApprovalPage {
        approvals: views.into_iter().map(ApproverApprovalBody::from).collect(),
        next,
    }))
}

fn list_query(query: &ListQuery) -> Result<ApprovalQuery, ApiError> {
    let status = match query.status.as_deref().unwrap_or("pending") {
        "all" => None,
        other => Some(other.parse::<Status>().map_err(|_| {
            ApiError::invalid("status must be pending, approved, denied, expired or all")
        })?),
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be 1 to {MAX_PAGE}")));
    }
    let before = match &query.before {
        None => None,
        Some(cursor) => Some(parse_cursor(cursor).ok_or_else(|| {
            ApiError::invalid("before must be the `next` value of a previous page")
        })?),
    };
    Ok(ApprovalQuery {
        status,
        before,
        limit,
    })
}

/// The `before` cursor of a listing: `<created_at>.<id>`.
/// The cursor of the page after `views`, a full page of `limit` (none after a short one).
pub(super) fn next_cursor(views: &[ApproverView], limit: u32) -> Option<String> {
    (views.len() == limit as usize)
        .then(|| views.last())
        .flatten()
        .map(|last| {
            let request = &last.listed.request;
            format!("{}.{}", request.created_at, request.id)
        })
}

pub(super) fn parse_cursor(cursor: &str) -> Option<(i64, String)> {
    let (at, id) = cursor.split_once('.')?;
    let at = at.parse().ok()?;
    id::is_id(id, crate::broker::APPROVAL_PREFIX).then(|| (at, id.to_owned()))
}

/// `POST /v1/approvals/{id}/decision`: an approver approves (possibly narrowing) or denies.
pub async fn decide(
    State(state): State<AppState>,
    AdminCaller(credential, _): AdminCaller<ApproverRole>,
    Path(id): Path<String>,
    JsonBody(raw): JsonBody<RawDecision>,
) -> Result<impl IntoResponse, ApiError> {
    let approver = approver_of(&credential);
    state.broker.decide_approval(&approver, &id, &raw).await?;
    let view = state.broker.approval_for_approver(&approver, &id).await?;
    Ok(Json(ApproverApprovalBody::from(view)))
}

fn approver_of(credential: &AdminCredential) -> Approver {
    Approver {
        principal: credential.principal.clone(),
        groups: Vec::new(),
        login: None,
        via: Via::AdminWrit,
    }
}
