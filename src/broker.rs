//! Issuance: the one path by which a writ leaves the broker. Identity first (the HTTP layer calls
//! [`Broker::authenticate`] before it reads the body, so an unauthenticated caller learns nothing
//! beyond "no"), then the request's shape, then policy, then minting, then the durable record. The writ is returned only after the record is committed; any failure on
//! the way returns an error and no writ.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::identity::{Identity, IdentityError, IdentityVerifier};
use crate::keys::{KeyRing, Keys, unix};
use crate::mint::{self, MintError, WritContents};
use crate::policy::{PolicySet, RawWritRequest, Refusal, RequestError, Subject, WritRequest};
use crate::store::{IssuedWrit, RightRecord, Store, StoreError};

/// Everything issuance needs, shared by every request.
pub struct Broker {
    pub identities: IdentityVerifier,
    pub policies: PolicySet,
    pub keys: Arc<Keys>,
    pub store: Arc<dyn Store>,
}

/// Why no writ was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
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
    /// caller sent.
    pub async fn authenticate(&self, identity_token: &str) -> Result<Identity, IssueError> {
        Ok(self
            .identities
            .verify(identity_token, SystemTime::now())
            .await?)
    }

    /// Issues a writ to an authenticated identity.
    pub async fn issue(
        &self,
        identity: Identity,
        raw: &RawWritRequest,
    ) -> Result<IssuedWritResponse, IssueError> {
        let now = SystemTime::now();
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
        self.store.record_issued(&record).await?;
        tracing::info!(
            writ_id = %writ_id, agent = ?identity.agent, task = ?record.task,
            policy = %approval.policy, ttl = approval.ttl.as_secs(), kid = minted.root_key_id,
            "writ issued"
        );
        Ok(IssuedWritResponse {
            writ: minted.token,
            writ_id,
            root_key_id: minted.root_key_id,
            agent: identity.agent,
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
