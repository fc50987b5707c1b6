//! Issuance: the one path by which a writ leaves the broker. Identity first (the HTTP layer calls
//! [`Broker::authenticate`] before it reads the body, so an unauthenticated caller learns nothing
//! beyond "no"), then suspension, the request's shape, policy, minting, and finally the durable
//! record together with its audit event. The writ is returned only after both are committed;
//! any failure on the way returns an error and no writ, and is itself audited.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use super::Broker;
use crate::audit::{ANONYMOUS, AuditEvent, Outcome, UNKNOWN_ISSUER, actions};
use crate::error::{DomainError, ErrorCode, codes};
use crate::identity::{Identity, IdentityError};
use crate::keys::KeyRing;
use crate::mint::{self, MintError, WritContents};
use crate::policy::{
    Channel, RawWritRequest, Refusal, RequestError, Subject, TaskName, WritRequest, reasons,
};
use crate::store::{IssuedWrit, RightRecord, StoreError};
use crate::time::{unix, unix_ms};

/// Why no writ was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(
        "an admin suspended this agent; no writ is issued to it until the suspension is lifted"
    )]
    Suspended,
    #[error("{0}")]
    Request(#[from] RequestError),
    #[error("{0}")]
    Refused(Box<Refusal>),
    #[error(transparent)]
    Mint(#[from] MintError),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

impl DomainError for IssueError {
    fn code(&self) -> ErrorCode {
        match self {
            IssueError::Identity(error) => error.code(),
            IssueError::Suspended => codes::AGENT_SUSPENDED,
            IssueError::Request(_) => codes::INVALID_REQUEST,
            IssueError::Refused(refusal) => refusal_code(refusal),
            IssueError::Mint(error) => error.code(),
            IssueError::Storage(error) => error.code(),
        }
    }

    fn public_detail(&self) -> String {
        match self {
            IssueError::Identity(error) => error.public_detail(),
            IssueError::Storage(_) => {
                "the issuance could not be recorded, so no writ was issued; retry later".into()
            }
            IssueError::Mint(error) => error.public_detail(),
            error => error.to_string(),
        }
    }

    fn extension(&self) -> Option<Map<String, Value>> {
        match self {
            IssueError::Refused(refusal) => match json!(refusal.summary()) {
                Value::Object(members) => Some(members),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The code of a policy refusal: the approval reasons have their own.
pub(super) fn refusal_code(refusal: &Refusal) -> ErrorCode {
    match refusal.reason {
        reasons::APPROVAL_REQUIRED => codes::APPROVAL_REQUIRED,
        reasons::APPROVAL_NOT_NEEDED => codes::APPROVAL_NOT_NEEDED,
        _ => codes::POLICY_REFUSED,
    }
}

/// An issued writ and what it grants.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The writ itself: a bearer credential, returned to its agent and never stored or logged.
    pub writ: String,
    /// What was recorded of it.
    pub record: IssuedWrit,
    /// The policy that allowed it.
    pub policy: String,
    /// The hash of the policy set that allowed it.
    pub policy_hash: String,
    pub ttl: Duration,
}

impl Broker {
    /// Verifies the caller's workload identity token. Call this before reading anything else the
    /// caller sent. A refusal is audited (with its code, never the token): one event each when
    /// the signature verified, counted into the refusal tally otherwise.
    pub async fn authenticate(&self, identity_token: &str) -> Result<Identity, IssueError> {
        let now = SystemTime::now();
        match self.identities.verify(identity_token, now).await {
            Ok(identity) => Ok(identity),
            Err(error) if error.after_signature() => {
                let refused =
                    AuditEvent::new(actions::IDENTITY_REFUSED, Outcome::Refused, ANONYMOUS)
                        .at(unix_ms(now))
                        .with_reason(error.code().name);
                self.audit_best_effort(refused).await;
                Err(error.into())
            }
            Err(error) => {
                let issuer = self
                    .identities
                    .claimed_issuer(identity_token)
                    .unwrap_or(UNKNOWN_ISSUER);
                self.refusals.count(
                    actions::IDENTITY_REFUSED,
                    issuer,
                    error.code().name,
                    unix_ms(now),
                );
                Err(error.into())
            }
        }
    }

    /// Issues a writ to an authenticated identity.
    pub async fn issue(
        &self,
        identity: Identity,
        raw: &RawWritRequest,
    ) -> Result<Issued, IssueError> {
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
    ) -> Result<Issued, IssueError> {
        if self.revocations.is_suspended(&identity.agent) {
            return Err(IssueError::Suspended);
        }
        let request = WritRequest::parse(raw)?;
        let subject = Subject {
            issuer: &identity.issuer,
            claims: &identity.claims,
        };
        // One snapshot decides and is recorded, whatever a reload swaps in meanwhile.
        let policies = self.policies.current();
        let policy_hash = &policies.set.source.hash;
        let permit = policies
            .set
            .decide(subject, &request, Channel::Direct, now)
            .map_err(IssueError::Refused)?;
        // Whole seconds: the writ and its record must name the same instant.
        let issued_at = SystemTime::UNIX_EPOCH + Duration::from_secs(unix(now));
        let expires_at = issued_at + permit.ttl;
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
            writ_id,
            agent: identity.agent.clone(),
            task: request.task.to_string(),
            issuer: identity.issuer.clone(),
            subject: identity.subject.clone(),
            rights,
            services: services.iter().map(ToString::to_string).collect(),
            root_key_id: minted.root_key_id,
            revocation_id: minted.revocation_id,
            issued_at: unix(issued_at) as i64,
            expires_at: unix(expires_at) as i64,
            policy_hash: Some(policy_hash.clone()),
        };
        let issued_event = issued_event(&record, &permit.policy, permit.ttl, now);
        self.store.record_issued(&record, issued_event).await?;
        tracing::info!(
            writ_id = %record.writ_id, agent = ?identity.agent, task = ?record.task,
            policy = %permit.policy, ttl = permit.ttl.as_secs(), kid = minted.root_key_id,
            "writ issued"
        );
        Ok(Issued {
            writ: minted.token,
            record,
            policy: permit.policy,
            policy_hash: policy_hash.clone(),
            ttl: permit.ttl,
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
        "policy_hash": record.policy_hash,
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
    let outcome = Outcome::of(error.code());
    let mut details = json!({ "issuer": identity.issuer, "subject": identity.subject });
    if let IssueError::Refused(refusal) = error {
        details["refusal"] = json!(refusal.summary());
    }
    let mut refused = AuditEvent::new(actions::WRIT_REFUSED, outcome, &identity.agent)
        .at(unix_ms(now))
        .with_agent(&identity.agent)
        .with_reason(error.code().name)
        .with_details(details);
    refused.task = TaskName::parse(&raw.task).ok().map(|task| task.to_string());
    refused
}
