//! Issuance: the one path by which a writ leaves the broker. Identity first (the HTTP layer calls
//! [`Broker::authenticate`] before it reads the body, so an unauthenticated caller learns nothing
//! beyond "no"), then suspension, the request's shape, policy, minting, and finally the durable
//! record together with its audit event. The writ is returned only after both are committed;
//! any failure on the way returns an error and no writ, and is itself audited.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::json;

use super::Broker;
use crate::audit::{ANONYMOUS, AuditEvent, Outcome, actions, unix_ms};
use crate::identity::{Identity, IdentityError};
use crate::keys::{KeyRing, unix};
use crate::mint::{self, MintError, WritContents};
use crate::policy::{RawWritRequest, Refusal, RequestError, Subject, TaskName, WritRequest};
use crate::store::{IssuedWrit, RightRecord, StoreError};

/// Why no writ was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("the agent is suspended")]
    Suspended,
    #[error("invalid request: {0}")]
    Request(#[from] RequestError),
    #[error("refused by policy")]
    Refused(Refusal),
    #[error(transparent)]
    Mint(#[from] MintError),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

impl IssueError {
    /// A stable code for logs and audit records.
    pub fn code(&self) -> &'static str {
        match self {
            IssueError::Identity(error) => error.code(),
            IssueError::Suspended => "agent_suspended",
            IssueError::Request(_) => "invalid_request",
            IssueError::Refused(_) => "policy_refused",
            IssueError::Mint(_) => "mint_failed",
            IssueError::Storage(_) => "storage_unavailable",
        }
    }
}

/// An issued writ and what it grants.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedWritResponse {
    pub writ: String,
    pub writ_id: String,
    pub root_key_id: u32,
    pub agent: String,
    pub task: String,
    pub issued_at: String,
    pub expires_at: String,
    pub ttl: u64,
    pub rights: Vec<RightRecord>,
    pub services: Vec<String>,
    pub policy: String,
}

impl Broker {
    /// Verifies the caller's workload identity token. Call this before reading anything else the
    /// caller sent. A refusal is audited (with its code, never the token).
    pub async fn authenticate(&self, identity_token: &str) -> Result<Identity, IssueError> {
        let now = SystemTime::now();
        match self.identities.verify(identity_token, now).await {
            Ok(identity) => Ok(identity),
            Err(error) => {
                let refused =
                    AuditEvent::new(actions::IDENTITY_REFUSED, Outcome::Refused, ANONYMOUS)
                        .at(unix_ms(now))
                        .with_reason(error.code());
                self.audit_best_effort(refused).await;
                Err(error.into())
            }
        }
    }

    /// Issues a writ to an authenticated identity.
    pub async fn issue(
        &self,
        identity: Identity,
        raw: &RawWritRequest,
    ) -> Result<IssuedWritResponse, IssueError> {
        let now = SystemTime::now();
        let result = self.try_issue(&identity, raw, now).await;
        if let Err(error) = &result {
            self.audit_best_effort(refusal_event(&identity, raw, error, now))
                .await;
        }
        result
    }

    async fn try_issue(
        &self,
        identity: &Identity,
        raw: &RawWritRequest,
        now: SystemTime,
    ) -> Result<IssuedWritResponse, IssueError> {
        if self.revocations.is_suspended(&identity.agent) {
            return Err(IssueError::Suspended);
        }
        let request = WritRequest::parse(raw)?;
        let subject = Subject {
            issuer: &identity.issuer,
            claims: &identity.claims,
        };
        let approval = self
            .policies
            .decide(subject, &request)
            .map_err(IssueError::Refused)?;
        // Whole seconds: the writ and its record must name the same instant.
        let issued_at = SystemTime::UNIX_EPOCH + Duration::from_secs(unix(now));
        let expires_at = issued_at + approval.ttl;
        let services: Vec<_> = request.services.iter().cloned().collect();
        let writ_id = mint::new_writ_id()?;
        let ring: Arc<KeyRing> = self.keys.current();
        let minted = mint::mint(
            &ring.active,
            &WritContents {
                writ_id: &writ_id,
                agent: &identity.agent,
                task: request.task.as_str(),
                rights: &request.rights,
                services: &services,
                issued_at,
                expires_at,
            },
        )?;
        let rights: Vec<RightRecord> = request
            .rights
            .iter()
            .map(|right| RightRecord {
                resource: right.resource.to_string(),
                operations: right.operations.iter().map(ToString::to_string).collect(),
            })
            .collect();
        let record = IssuedWrit {
            writ_id: writ_id.clone(),
            agent: identity.agent.clone(),
            task: request.task.to_string(),
            issuer: identity.issuer.clone(),
            subject: identity.subject.clone(),
            rights: rights.clone(),
            services: services.iter().map(ToString::to_string).collect(),
            root_key_id: minted.root_key_id,
            revocation_id: minted.revocation_id,
            issued_at: unix(issued_at) as i64,
            expires_at: unix(expires_at) as i64,
        };
        let issued_event = issued_event(&record, &approval.policy, approval.ttl, now);
        self.store.record_issued(&record, issued_event).await?;
        tracing::info!(
            writ_id = %writ_id, agent = ?identity.agent, task = ?record.task,
            policy = %approval.policy, ttl = approval.ttl.as_secs(), kid = minted.root_key_id,
            "writ issued"
        );
        Ok(IssuedWritResponse {
            writ: minted.token,
            writ_id,
            root_key_id: minted.root_key_id,
            agent: identity.agent.clone(),
            task: record.task,
            issued_at: humantime::format_rfc3339_seconds(issued_at).to_string(),
            expires_at: humantime::format_rfc3339_seconds(expires_at).to_string(),
            ttl: approval.ttl.as_secs(),
            rights,
            services: record.services,
            policy: approval.policy,
        })
    }
}

fn issued_event(record: &IssuedWrit, policy: &str, ttl: Duration, now: SystemTime) -> AuditEvent {
    AuditEvent::new(actions::WRIT_ISSUED, Outcome::Success, &record.agent)
        .at(unix_ms(now))
        .with_writ(&record.writ_id)
        .with_task(&record.task)
        .with_agent(&record.agent)
        .with_details(json!({
        "issuer": record.issuer,
        "subject": record.subject,
        "policy": policy,
        "rights": record.rights,
        "services": record.services,
        "ttl": ttl.as_secs(),
        "root_key_id": record.root_key_id,
        "expires_at": record.expires_at,
        }))
}

/// The audit event of a refused issuance: the accepted identity, what was asked (the task only
/// when it is a valid name) and why it was refused.
fn refusal_event(
    identity: &Identity,
    raw: &RawWritRequest,
    error: &IssueError,
    now: SystemTime,
) -> AuditEvent {
    let outcome = match error {
        IssueError::Mint(_) | IssueError::Storage(_) => Outcome::Failed,
        _ => Outcome::Refused,
    };
    let mut details = json!({ "issuer": identity.issuer, "subject": identity.subject });
    if let IssueError::Refused(refusal) = error {
        details["refusal"] = json!(refusal);
    }
    let mut refused = AuditEvent::new(actions::WRIT_REFUSED, outcome, &identity.agent)
        .at(unix_ms(now))
        .with_agent(&identity.agent)
        .with_reason(error.code())
        .with_details(details);
    refused.task = TaskName::parse(&raw.task).ok().map(|task| task.to_string());
    refused
}
