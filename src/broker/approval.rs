//! Human approval: agents open requests, approvers decide, agents collect their elevated writ.
//! Every step is audited; the rules are in `approval::rules`, run inside the store's
//! transactions so that concurrent decisions and fetches are ordered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::Broker;
use super::issue::refusal_code;
use crate::approval::notify::{DeliveryReport, Notification, Notifier};
use crate::approval::rules::{self, DecisionError, DecisionInput, check_text};
use crate::approval::{ApprovalRequest, Approver, MAX_JUSTIFICATION_BYTES, Status, Verdict};
use crate::audit::{AuditEvent, Outcome, actions};
use crate::error::{DomainError, ErrorCode, codes};
use crate::id::{self, RandomSourceFailed};
use crate::identity::Identity;
use crate::keys::KeyRing;
use crate::mint::{self, Evidence, MintError, WritContents};
use crate::policy::{
    ApproverRef, Channel, Permit, PolicySet, RawRight, RawWritRequest, Refusal, RequestError,
    RightRecord, Subject, TaskName, WritRequest, parse_rights, reasons,
};
use crate::store::{
    ApprovalChange, ApprovalQuery, IssuedWrit, ListedApproval, NotifyStatus, StoreError,
};
use crate::time::{unix_ms, unix_seconds};

/// Pending requests one agent may have open at once.
pub const MAX_PENDING_PER_AGENT: u64 = 16;
/// The longest an agent's long-poll waits.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Long-polls waiting at once, across agents; one more answers at once with the status.
pub const MAX_WAITERS: usize = 256;
/// Long-polls one agent may hold at once, so that one agent cannot take every slot.
pub const MAX_WAITERS_PER_AGENT: usize = 4;
/// Seconds a caller answered without waiting (no slot free) is told to wait before asking again.
pub const RETRY_AFTER_NO_SLOT: u32 = 2;
/// A waiting agent re-reads its request at least this often (another replica may decide it).
const REREAD_EVERY: Duration = Duration::from_secs(1);
/// The id prefix of approval requests.
pub const APPROVAL_PREFIX: &str = "ap_";

/// Approval state shared by requests: the webhook and the signal that wakes waiting agents.
pub struct Approvals {
    notifier: Option<Notifier>,
    /// Where approvers decide (the page's URL), for the webhook's link.
    page_url: Option<String>,
    changed: watch::Sender<u64>,
    waiters: Arc<Semaphore>,
    /// Long-polls held per agent.
    waiting: Mutex<HashMap<String, usize>>,
    /// How approvers log in to the approval page, when it is served.
    pub(super) login: Option<Arc<crate::login::LoginProvider>>,
}

impl Approvals {
    pub fn new(notifier: Option<Notifier>, page_url: Option<String>) -> Approvals {
        Approvals {
            notifier,
            page_url,
            changed: watch::channel(0).0,
            waiters: Arc::new(Semaphore::new(MAX_WAITERS)),
            waiting: Mutex::new(HashMap::new()),
            login: None,
        }
    }

    /// Serves the approval page, whose approvers log in through `provider`.
    pub fn with_login(mut self, provider: Arc<crate::login::LoginProvider>) -> Approvals {
        self.login = Some(provider);
        self
    }

    /// A slot to wait in for `agent`, if one is free (globally and for this agent).
    fn wait_slot(&self, agent: &str) -> Option<WaitSlot<'_>> {
        let global = Arc::clone(&self.waiters).try_acquire_owned().ok()?;
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let held = waiting.entry(agent.to_owned()).or_default();
        if *held >= MAX_WAITERS_PER_AGENT {
            return None;
        }
        *held += 1;
        Some(WaitSlot {
            waiting: &self.waiting,
            agent: agent.to_owned(),
            _global: global,
        })
    }
}

/// A long-poll's place; given back when dropped.
struct WaitSlot<'a> {
    waiting: &'a Mutex<HashMap<String, usize>>,
    agent: String,
    _global: OwnedSemaphorePermit,
}

impl Drop for WaitSlot<'_> {
    fn drop(&mut self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = waiting.get_mut(&self.agent) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                waiting.remove(&self.agent);
            }
        }
    }
}

/// A request for approval as the agent sends it: a writ request and why.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprovalRequest {
    pub task: String,
    pub rights: Vec<RawRight>,
    pub services: Vec<String>,
    #[serde(default, with = "crate::time::whole_seconds")]
    pub ttl: Option<u64>,
    pub justification: String,
}

/// An approver's decision as sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDecision {
    pub decision: String,
    pub reason: String,
    /// Approve only: the rights to approve (a subset of those requested).
    #[serde(default)]
    pub rights: Option<Vec<RawRight>>,
    /// Approve only: a shorter lifetime, seconds.
    #[serde(default, with = "crate::time::whole_seconds")]
    pub ttl: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApprovalCallError {
    #[error("an admin suspended this agent; nothing is approved for it until that is lifted")]
    Suspended,
    #[error("{0}")]
    Request(#[from] RequestError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Refused(Box<Refusal>),
    #[error("this agent already has {MAX_PENDING_PER_AGENT} requests waiting; wait for a decision")]
    TooManyPending,
    #[error("no such approval request")]
    Unknown,
    #[error(transparent)]
    Decision(#[from] DecisionError),
    #[error(transparent)]
    Mint(#[from] MintError),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

impl From<RandomSourceFailed> for ApprovalCallError {
    fn from(error: RandomSourceFailed) -> Self {
        ApprovalCallError::Mint(error.into())
    }
}

impl DomainError for ApprovalCallError {
    fn code(&self) -> ErrorCode {
        match self {
            ApprovalCallError::Suspended => codes::AGENT_SUSPENDED,
            ApprovalCallError::Request(_) | ApprovalCallError::Invalid(_) => codes::INVALID_REQUEST,
            ApprovalCallError::Refused(refusal) => refusal_code(refusal),
            ApprovalCallError::TooManyPending => codes::TOO_MANY_PENDING,
            ApprovalCallError::Unknown => codes::APPROVAL_UNKNOWN,
            ApprovalCallError::Decision(error) => error.code(),
            ApprovalCallError::Mint(error) => error.code(),
            ApprovalCallError::Storage(error) => error.code(),
        }
    }

    fn public_detail(&self) -> String {
        match self {
            ApprovalCallError::Mint(error) => error.public_detail(),
            ApprovalCallError::Storage(error) => error.public_detail(),
            error => error.to_string(),
        }
    }

    fn extension(&self) -> Option<Map<String, Value>> {
        match self {
            ApprovalCallError::Refused(refusal) => match json!(refusal.summary()) {
                Value::Object(members) => Some(members),
                _ => None,
            },
            _ => None,
        }
    }
}

/// What the requesting agent reads of its request: the request, and the elevated writ when
/// this read collected it (exactly once).
#[derive(Debug)]
pub struct AgentView {
    pub request: ApprovalRequest,
    /// The status as of now (a pending request past its deadline reads expired).
    pub status: Status,
    pub writ: Option<ElevatedWrit>,
    /// Set when the caller asked to wait but no slot was free: ask again after this many
    /// seconds rather than at once.
    pub retry_after: Option<u32>,
}

/// An elevated writ, handed over once.
#[derive(Debug)]
pub struct ElevatedWrit {
    /// The writ itself: a bearer credential, never stored or logged.
    pub token: String,
    pub record: IssuedWrit,
}

/// A request as an approver lists it: whether this approver may decide it.
#[derive(Debug)]
pub struct ApproverView {
    pub listed: ListedApproval,
    pub status: Status,
    pub may_decide: bool,
}

impl Broker {
    /// Opens a request for approval of `raw` by `identity`'s agent. Only a policy with an
    /// approval rule can admit it; one that grants it without approval is answered
    /// `approval_not_needed`, one that grants nothing `policy_refused`.
    pub async fn request_approval(
        &self,
        identity: Identity,
        raw: &RawApprovalRequest,
    ) -> Result<ApprovalRequest, ApprovalCallError> {
        let now = SystemTime::now();
        let result = self.try_request_approval(&identity, raw, now).await;
        match &result {
            Ok(request) => self.notify_approvers(request),
            Err(error) => {
                let mut details = json!({ "issuer": identity.issuer, "subject": identity.subject });
                if let ApprovalCallError::Refused(refusal) = error {
                    details["refusal"] = json!(refusal.summary());
                }
                let mut refused = AuditEvent::new(
                    actions::APPROVAL_REFUSED,
                    Outcome::of(error.code()),
                    &identity.agent,
                )
                .at(unix_ms(now))
                .with_agent(&identity.agent)
                .with_reason(error.code().name)
                .with_details(details);
                refused.task = TaskName::parse(&raw.task).ok().map(|t| t.to_string());
                self.audit_best_effort(refused).await;
            }
        }
        result
    }

    async fn try_request_approval(
        &self,
        identity: &Identity,
        raw: &RawApprovalRequest,
        now: SystemTime,
    ) -> Result<ApprovalRequest, ApprovalCallError> {
        if self.revocations.is_suspended(&identity.agent) {
            return Err(ApprovalCallError::Suspended);
        }
        if raw.justification.trim().is_empty() {
            return Err(ApprovalCallError::Invalid(
                "justification: say why the agent needs this (approvers read it)".into(),
            ));
        }
        check_text(
            "justification",
            &raw.justification,
            MAX_JUSTIFICATION_BYTES,
            true,
        )
        .map_err(ApprovalCallError::Invalid)?;
        let request = WritRequest::parse(&RawWritRequest {
            task: raw.task.clone(),
            rights: raw.rights.clone(),
            services: raw.services.clone(),
            ttl: raw.ttl,
        })?;
        let subject = Subject {
            issuer: &identity.issuer,
            claims: &identity.claims,
        };
        // One snapshot decides and is recorded, whatever a reload swaps in meanwhile.
        let policies = self.policies.current();
        let permit = policies
            .set
            .decide(subject, &request, Channel::Approval, now)
            .map_err(ApprovalCallError::Refused)?;
        let Some(rule) = permit.approval else {
            return Err(ApprovalCallError::Invalid(
                "the policy has no approval rule".into(),
            ));
        };
        let created_at = unix_seconds(now);
        let rights: Vec<RightRecord> = request.rights.iter().map(RightRecord::from).collect();
        let approval = ApprovalRequest {
            id: id::new_id(APPROVAL_PREFIX)?,
            agent: identity.agent.clone(),
            issuer: identity.issuer.clone(),
            subject: identity.subject.clone(),
            task: request.task.to_string(),
            requested_rights: rights.clone(),
            rights,
            services: request.services.iter().map(ToString::to_string).collect(),
            ttl: permit.ttl.as_secs(),
            justification: raw.justification.clone(),
            policy: permit.policy.clone(),
            policy_hash: Some(policies.set.source.hash.clone()),
            approvers: rule.approvers.clone(),
            quorum: rule.quorum,
            created_at,
            expires_at: created_at.saturating_add(rule.wait.as_secs() as i64),
            status: Status::Pending,
            decided_at: None,
            decisions: Vec::new(),
            writ_id: None,
        };
        let event = AuditEvent::new(
            actions::APPROVAL_REQUESTED,
            Outcome::Success,
            &identity.agent,
        )
        .at(unix_ms(now))
        .with_task(&approval.task)
        .with_agent(&approval.agent)
        .with_details(json!({
            "approval_id": approval.id,
            "issuer": approval.issuer,
            "subject": approval.subject,
            "policy": approval.policy,
            "policy_hash": approval.policy_hash,
            "rights": approval.rights,
            "services": approval.services,
            "ttl": approval.ttl,
            "justification": approval.justification,
            "quorum": approval.quorum,
            "approvers": approval.approvers,
            "expires_at": approval.expires_at,
        }));
        let notify = if self.approvals.notifier.is_some() {
            NotifyStatus::Pending
        } else {
            NotifyStatus::None
        };
        let admit = |pending: u64| {
            if pending >= MAX_PENDING_PER_AGENT {
                Err(ApprovalCallError::TooManyPending)
            } else {
                Ok(())
            }
        };
        self.store
            .open_approval(&approval, notify, admit, event)
            .await?;
        tracing::info!(approval_id = %approval.id, agent = ?approval.agent, task = ?approval.task,
            policy = %approval.policy, "approval requested");
        Ok(approval)
    }

    fn notify_approvers(&self, request: &ApprovalRequest) {
        let Some(notifier) = &self.approvals.notifier else {
            return;
        };
        let link = self
            .approvals
            .page_url
            .as_ref()
            .map(|base| format!("{}/{}", base.trim_end_matches('/'), request.id));
        let body = json!({
            "type": "approval.requested",
            "id": request.id,
            "agent": request.agent,
            "task": request.task,
            "rights": request.rights,
            "services": request.services,
            "ttl": request.ttl,
            "justification": request.justification,
            "policy": request.policy,
            "quorum": request.quorum,
            "created_at": crate::time::rfc3339(request.created_at),
            "expires_at": crate::time::rfc3339(request.expires_at),
            "url": link,
        });
        notifier.notify(Notification {
            request_id: request.id.clone(),
            body: body.to_string().into_bytes(),
            give_up_at: request.expires_at,
        });
    }

    /// Records one webhook delivery attempt (its state shows in listings; each attempt is an
    /// audit event).
    pub async fn record_delivery(&self, report: DeliveryReport) {
        let status = match (report.delivered, report.last) {
            (true, _) => NotifyStatus::Delivered,
            (false, true) => NotifyStatus::Failed,
            (false, false) => NotifyStatus::Pending,
        };
        if !report.delivered {
            tracing::warn!(approval_id = %report.request_id, attempt = report.attempt,
                error = ?report.error, "approval webhook not delivered");
        }
        let outcome = if report.delivered {
            Outcome::Success
        } else {
            Outcome::Failed
        };
        let event = AuditEvent::new(actions::APPROVAL_NOTIFIED, outcome, "broker")
            .at(unix_ms(SystemTime::now()))
            .with_details(json!({
                "approval_id": report.request_id,
                "attempt": report.attempt,
                "status": report.status,
                "error": report.error,
                "last": report.last,
            }));
        if let Err(error) = self
            .store
            .record_notification(&report.request_id, status, report.attempt, event)
            .await
        {
            tracing::error!(%error, "webhook delivery could not be recorded");
        }
    }

    /// The request `id` as its agent reads it, waiting up to `wait` (at most [`MAX_WAIT`]) while
    /// it is pending. An approved request hands over its elevated writ on the first read after
    /// approval and never again. Another agent's request reads as unknown.
    /// `collect` false only reads (for `HEAD`, which must never consume the one handover).
    pub async fn approval_for_agent(
        &self,
        identity: &Identity,
        id: &str,
        wait: Duration,
        collect: bool,
    ) -> Result<AgentView, ApprovalCallError> {
        if !id::is_id(id, APPROVAL_PREFIX) {
            return Err(ApprovalCallError::Unknown);
        }
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        // A slot to wait in; without one the status is answered at once, with when to retry.
        let slot = if wait.is_zero() {
            None
        } else {
            self.approvals.wait_slot(&identity.agent)
        };
        let mut changed = self.approvals.changed.subscribe();
        loop {
            let mut view = self.read_for_agent(identity, id, collect).await?;
            let pending = view.status == Status::Pending;
            if pending && slot.is_none() && !wait.is_zero() {
                view.retry_after = Some(RETRY_AFTER_NO_SLOT);
            }
            if !pending || slot.is_none() || tokio::time::Instant::now() >= deadline {
                return Ok(view);
            }
            let next = (tokio::time::Instant::now() + REREAD_EVERY).min(deadline);
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    }

    async fn read_for_agent(
        &self,
        identity: &Identity,
        id: &str,
        collect: bool,
    ) -> Result<AgentView, ApprovalCallError> {
        let listed = self
            .store
            .approval(id)
            .await?
            .filter(|listed| belongs_to(&listed.request, identity))
            .ok_or(ApprovalCallError::Unknown)?;
        let request = listed.request;
        let now = unix_seconds(SystemTime::now());
        let status = request.status_at(now);
        let collectable = collect
            && status == Status::Approved
            && request.writ_id.is_none()
            && request.writ_expires_at().is_some_and(|end| end > now);
        if !collectable {
            return Ok(AgentView {
                request,
                status,
                writ: None,
                retry_after: None,
            });
        }
        self.collect(identity, id).await
    }

    /// Mints and records the elevated writ of an approved request, once: the check that it is
    /// still uncollected and the record of its collection are one transaction.
    async fn collect(&self, identity: &Identity, id: &str) -> Result<AgentView, ApprovalCallError> {
        if self.revocations.is_suspended(&identity.agent) {
            return Err(ApprovalCallError::Suspended);
        }
        let ring = self.keys.current();
        let owner = identity.clone();
        let now = SystemTime::now();
        // One snapshot asks policy again and is recorded with the writ.
        let policies = self.policies.current();
        let view = self
            .store
            .change_approval(id, move |current| {
                collect_rule(current, &owner, &ring, &policies.set, now)
            })
            .await?;
        if let Some(writ) = &view.writ {
            tracing::info!(writ_id = %writ.record.writ_id, approval_id = %id,
                agent = ?writ.record.agent, "elevated writ issued");
        }
        Ok(view)
    }

    /// Records `approver`'s decision on request `id`. Refusals are audited too.
    pub async fn decide_approval(
        &self,
        approver: &Approver,
        id: &str,
        raw: &RawDecision,
    ) -> Result<ApprovalRequest, ApprovalCallError> {
        let now = SystemTime::now();
        let result = self.try_decide(approver, id, raw, now).await;
        match &result {
            Ok(_) => {
                self.approvals
                    .changed
                    .send_modify(|n| *n = n.wrapping_add(1));
            }
            Err(error) => self.refuse_decision(approver, id, error.code()).await,
        }
        result
    }

    async fn try_decide(
        &self,
        approver: &Approver,
        id: &str,
        raw: &RawDecision,
        now: SystemTime,
    ) -> Result<ApprovalRequest, ApprovalCallError> {
        if !id::is_id(id, APPROVAL_PREFIX) {
            return Err(ApprovalCallError::Unknown);
        }
        let input = decision_input(raw)?;
        let approver = approver.clone();
        let issuer_urls: Vec<(String, String)> = self.identities.issuer_urls();
        let at = unix_seconds(now);
        self.store
            .change_approval(id, move |current| {
                let mut request = current.ok_or(ApprovalCallError::Unknown)?;
                let agent_issuer = issuer_urls
                    .iter()
                    .find(|(name, _)| *name == request.issuer)
                    .map(|(_, url)| url.as_str());
                let decided = rules::decide(&request, agent_issuer, &approver, input, at)?;
                let event = decided_event(&request, &decided, at);
                request.status = decided.status;
                request.rights = decided.rights.clone();
                request.ttl = decided.ttl;
                request.decided_at = decided.decided_at;
                request.decisions.push(decided.record.clone());
                Ok::<_, ApprovalCallError>(ApprovalChange {
                    request: Some(request.clone()),
                    decision: Some(decided.record),
                    writ: None,
                    events: vec![event],
                    value: request,
                })
            })
            .await
    }

    /// Requests for an approver, newest first, each saying whether this approver may decide it.
    pub async fn approvals_for_approver(
        &self,
        approver: &Approver,
        query: &ApprovalQuery,
    ) -> Result<Vec<ApproverView>, ApprovalCallError> {
        let now = unix_seconds(SystemTime::now());
        let listed = self.store.approvals(query).await?;
        Ok(listed
            .into_iter()
            .map(|listed| self.approver_view(approver, listed, now))
            .collect())
    }

    /// One request with its decisions, for an approver.
    pub async fn approval_for_approver(
        &self,
        approver: &Approver,
        id: &str,
    ) -> Result<ApproverView, ApprovalCallError> {
        if !id::is_id(id, APPROVAL_PREFIX) {
            return Err(ApprovalCallError::Unknown);
        }
        let listed = self
            .store
            .approval(id)
            .await?
            .ok_or(ApprovalCallError::Unknown)?;
        Ok(self.approver_view(approver, listed, unix_seconds(SystemTime::now())))
    }

    fn approver_view(&self, approver: &Approver, listed: ListedApproval, now: i64) -> ApproverView {
        let request = &listed.request;
        let status = request.status_at(now);
        let who = ApproverRef {
            principal: &approver.principal,
            groups: &approver.groups,
        };
        let may_decide = status == Status::Pending
            && request.approvers.iter().any(|spec| spec.admits(&who))
            && !request
                .decisions
                .iter()
                .any(|d| d.approver == rules::approver_key(approver.principal.as_str()));
        ApproverView {
            listed,
            status,
            may_decide,
        }
    }

    /// Records every pending request past its deadline as expired (audited); returns how many.
    pub async fn expire_approvals(&self) -> Result<usize, StoreError> {
        let now = SystemTime::now();
        let at = unix_ms(now);
        let expired = self
            .store
            .expire_approvals(unix_seconds(now), 100, |request| {
                AuditEvent::new(actions::APPROVAL_EXPIRED, Outcome::Success, "broker")
                    .at(at)
                    .with_task(&request.task)
                    .with_agent(&request.agent)
                    .with_details(json!({
                        "approval_id": request.id,
                        "approvals": request.approvals(),
                        "quorum": request.quorum,
                    }))
            })
            .await?;
        if !expired.is_empty() {
            self.approvals
                .changed
                .send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(expired.len())
    }
}

fn decision_input(raw: &RawDecision) -> Result<DecisionInput, ApprovalCallError> {
    let verdict: Verdict = raw.decision.parse().map_err(|_| {
        ApprovalCallError::Invalid("decision must be \"approve\" or \"deny\"".into())
    })?;
    if raw.reason.trim().is_empty() {
        return Err(ApprovalCallError::Invalid(
            "reason: say why (it is recorded and shown to the agent)".into(),
        ));
    }
    let narrow_to = raw.rights.as_deref().map(parse_rights).transpose()?;
    let ttl = match raw.ttl {
        Some(0) => {
            return Err(ApprovalCallError::Invalid(
                "ttl must be at least 1 second".into(),
            ));
        }
        other => other.map(Duration::from_secs),
    };
    Ok(DecisionInput {
        verdict,
        reason: raw.reason.clone(),
        narrow_to,
        ttl,
    })
}

fn decided_event(request: &ApprovalRequest, decided: &rules::Decided, at: i64) -> AuditEvent {
    let record = &decided.record;
    let outcome = Outcome::Success;
    AuditEvent::new(actions::APPROVAL_DECIDED, outcome, &record.approver)
        .at(at.saturating_mul(1000))
        .with_task(&request.task)
        .with_agent(&request.agent)
        .with_reason(record.verdict.as_str())
        .with_details(json!({
            "approval_id": request.id,
            "approver": record.approver,
            "via": rules::via_name(record.via),
            "decision": record.verdict.as_str(),
            "reason": record.reason,
            "narrowed_to": record.narrowed_to,
            "ttl": decided.ttl,
            "status": decided.status.as_str(),
            "approvals": request.approvals() + usize::from(record.verdict == Verdict::Approve),
            "quorum": request.quorum,
        }))
}

/// The collect rule: an approved, uncollected request of this agent whose approval still holds
/// becomes an elevated writ; anything else is answered as it stands.
fn collect_rule(
    current: Option<ApprovalRequest>,
    owner: &Identity,
    ring: &KeyRing,
    policies: &PolicySet,
    now: SystemTime,
) -> Result<ApprovalChange<AgentView>, ApprovalCallError> {
    let mut request = current
        .filter(|request| belongs_to(request, owner))
        .ok_or(ApprovalCallError::Unknown)?;
    let at = unix_seconds(now);
    let status = request.status_at(at);
    let expires_at = request.writ_expires_at().unwrap_or(0);
    if status != Status::Approved || request.writ_id.is_some() || expires_at <= at {
        return Ok(unchanged(request, status));
    }
    let rights = request
        .rights
        .iter()
        .map(RightRecord::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let services = request
        .services
        .iter()
        .map(|s| crate::policy::ServiceName::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(RequestError::from)?;
    // Policy is asked again as the writ is minted: a deny rule added, a policy withdrawn or a
    // window closed while humans deliberated refuses the writ they approved; a rule tightened
    // since (more approvers, other approvers) wants a new request; a shorter lifetime, a cap or
    // a window's end shortens the writ.
    let asked = WritRequest {
        task: TaskName::parse(&request.task).map_err(RequestError::from)?,
        rights: rights.clone(),
        services: services.iter().cloned().collect(),
        ttl: None,
    };
    let subject = Subject {
        issuer: &owner.issuer,
        claims: &owner.claims,
    };
    let permit = policies
        .decide(subject, &asked, Channel::Approval, now)
        .map_err(ApprovalCallError::Refused)?;
    if !still_approved(&request, &permit) {
        return Err(ApprovalCallError::Refused(Box::new(Refusal {
            policy: Some(permit.policy),
            ..Refusal::new(reasons::APPROVAL_REQUIRED)
        })));
    }
    let expires_at = expires_at.min(at.saturating_add(permit.ttl.as_secs() as i64));
    let writ_id = mint::new_writ_id()?;
    // Issued as of the decision, not the collection: a task or agent revocation made after the
    // humans approved ("issued up to T") covers the writ however late it is collected.
    let decided_at = request.decided_at.unwrap_or(at);
    let issued_at = SystemTime::UNIX_EPOCH + Duration::from_secs(decided_at.max(0) as u64);
    let expires = SystemTime::UNIX_EPOCH + Duration::from_secs(expires_at.max(0) as u64);
    let approvals: Vec<(&str, SystemTime)> = request
        .approved_by()
        .map(|d| {
            (
                d.approver.as_str(),
                SystemTime::UNIX_EPOCH + Duration::from_secs(d.decided_at.max(0) as u64),
            )
        })
        .collect();
    let minted = mint::mint_elevated(
        &ring.active,
        &ring.approval,
        &WritContents {
            writ_id: &writ_id,
            agent: &request.agent,
            task: &request.task,
            rights: &rights,
            services: &services,
            issued_at,
            expires_at: expires,
        },
        &Evidence {
            request_id: &request.id,
            approvals,
        },
    )?;
    let record = IssuedWrit {
        writ_id: writ_id.clone(),
        agent: request.agent.clone(),
        task: request.task.clone(),
        issuer: request.issuer.clone(),
        subject: request.subject.clone(),
        rights: request.rights.clone(),
        services: request.services.clone(),
        root_key_id: minted.root_key_id,
        revocation_id: minted.revocation_id,
        issued_at: decided_at,
        expires_at,
        // The set asked last, as the writ is minted (the request keeps the one that admitted
        // it).
        policy_hash: Some(policies.source.hash.clone()),
    };
    let approvers: Vec<Value> = request
        .approved_by()
        .map(|d| json!({ "approver": d.approver, "decided_at": d.decided_at }))
        .collect();
    let event = AuditEvent::new(actions::WRIT_ISSUED, Outcome::Success, &request.agent)
        .at(unix_ms(now))
        .with_writ(&writ_id)
        .with_task(&request.task)
        .with_agent(&request.agent)
        .with_details(json!({
            "issuer": record.issuer,
            "subject": record.subject,
            "policy": request.policy,
            "policy_hash": record.policy_hash,
            "rights": record.rights,
            "services": record.services,
            "ttl": expires_at - decided_at,
            "collected_at": at,
            "root_key_id": record.root_key_id,
            "expires_at": expires_at,
            "approval": {
                "approval_id": request.id,
                "approvers": approvers,
                "policy_hash": request.policy_hash,
            },
        }));
    request.writ_id = Some(writ_id);
    Ok(ApprovalChange {
        request: Some(request.clone()),
        decision: None,
        writ: Some(record.clone()),
        events: vec![event],
        value: AgentView {
            request,
            status: Status::Approved,
            writ: Some(ElevatedWrit {
                token: minted.token,
                record,
            }),
            retry_after: None,
        },
    })
}

/// Whether `identity` is the one that opened `request`: the same issuer and subject, not merely an
/// identity whose template renders the same agent name (two issuers, or two workflows of one
/// repository, can render the same name).
/// Whether the approvals a request holds satisfy the approval rule in force now: no more
/// approvers needed than it was decided with, and the same people allowed to decide.
fn still_approved(request: &ApprovalRequest, permit: &Permit) -> bool {
    let Some(rule) = &permit.approval else {
        return false;
    };
    let same_approvers = rule.approvers.len() == request.approvers.len()
        && rule.approvers.iter().all(|a| request.approvers.contains(a));
    same_approvers && request.approved_by().count() >= rule.quorum as usize
}

fn belongs_to(request: &ApprovalRequest, identity: &Identity) -> bool {
    request.agent == identity.agent
        && request.issuer == identity.issuer
        && request.subject == identity.subject
}

fn unchanged(request: ApprovalRequest, status: Status) -> ApprovalChange<AgentView> {
    ApprovalChange {
        request: None,
        decision: None,
        writ: None,
        events: Vec::new(),
        value: AgentView {
            request,
            status,
            writ: None,
            retry_after: None,
        },
    }
}
