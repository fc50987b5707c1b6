//! Human approval of high-risk requests. A policy with an approval rule grants its rights only
//! through a request that humans decide: the agent opens it, approvers are told (webhook, page),
//! each approver approves (possibly narrowing the rights) or denies, and once the quorum of
//! distinct approvers is reached the agent collects an **elevated writ**, exactly once.
//!
//! This module holds the values and the pure rules ([`rules`]); the broker runs them inside the
//! store's transactions, and the webhook ([`notify`]) tells approvers.
//!
//! Rules of a decision, each tested in [`rules`]:
//! - only a pending request that has not expired can be decided;
//! - the approver must match the policy's `approvers`, and must not be the requesting agent
//!   (compared by identity: principal against the agent and its subject, a login's issuer and
//!   subject against the workload identity's);
//! - one decision per approver: approving twice never counts twice;
//! - one deny closes the request (a veto); approvals close it once `quorum` distinct approvers
//!   approved;
//! - narrowing only removes: every narrowed right must be covered by the rights as they stand,
//!   and the lifetime only shortens. What a later approver approves is what the writ carries.

pub mod notify;
pub mod rules;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::admin::Principal;
use crate::policy::{ApproverSpec, RightRecord};

/// Longest justification an agent may give, in bytes.
pub const MAX_JUSTIFICATION_BYTES: usize = 2048;
/// Longest reason an approver may give, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
        }
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(value: &str) -> Result<Status, String> {
        [
            Status::Pending,
            Status::Approved,
            Status::Denied,
            Status::Expired,
        ]
        .into_iter()
        .find(|status| status.as_str() == value)
        .ok_or_else(|| format!("unknown approval status {value:?}"))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an approver decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
        }
    }
}

impl FromStr for Verdict {
    type Err = String;
    fn from_str(value: &str) -> Result<Verdict, String> {
        match value {
            "approve" => Ok(Verdict::Approve),
            "deny" => Ok(Verdict::Deny),
            _ => Err(format!("unknown decision {value:?}")),
        }
    }
}

/// How an approver proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// An admin writ carrying the approver role (API and CLI).
    AdminWrit,
    /// A login through the approval page's OpenID Provider.
    Login,
}

/// A human deciding, as authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    pub principal: Principal,
    /// Identity-provider groups (logins only).
    pub groups: Vec<String>,
    /// For logins: the provider's issuer URL and the subject, the identity compared against
    /// the requesting agent's.
    pub login: Option<(String, String)>,
    pub via: Via,
}

/// One approver's recorded decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub approver: String,
    pub via: Via,
    pub verdict: Verdict,
    pub reason: String,
    /// The rights this approver narrowed the request to, if they narrowed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub narrowed_to: Option<Vec<RightRecord>>,
    /// Unix seconds.
    pub decided_at: i64,
}

/// A request for approval, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    pub id: String,
    pub agent: String,
    /// The configured name of the issuer that vouched for the agent.
    pub issuer: String,
    pub subject: String,
    pub task: String,
    /// As the agent asked.
    pub requested_rights: Vec<RightRecord>,
    /// As they stand after any narrowing: what an approval grants.
    pub rights: Vec<RightRecord>,
    pub services: Vec<String>,
    /// Lifetime of the elevated writ, seconds (only ever shortened by narrowing).
    pub ttl: u64,
    pub justification: String,
    pub policy: String,
    /// The hash of the policy set that admitted the request, which its elevated writ records
    /// (`None` for requests recorded before it was).
    pub policy_hash: Option<String>,
    pub approvers: Vec<ApproverSpec>,
    pub quorum: u32,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds: a pending request expires then.
    pub expires_at: i64,
    pub status: Status,
    /// Unix seconds, once decided.
    pub decided_at: Option<i64>,
    pub decisions: Vec<DecisionRecord>,
    /// The elevated writ's id, once collected.
    pub writ_id: Option<String>,
}

impl ApprovalRequest {
    /// The status as of `now`: a pending request past its deadline is expired even before the
    /// sweeper records it.
    pub fn status_at(&self, now: i64) -> Status {
        if self.status == Status::Pending && now >= self.expires_at {
            Status::Expired
        } else {
            self.status
        }
    }

    /// Distinct approvers who approved.
    pub fn approvals(&self) -> usize {
        self.decisions
            .iter()
            .filter(|d| d.verdict == Verdict::Approve)
            .count()
    }

    /// Until when an approved request's writ can be collected, and when that writ expires:
    /// the approval holds for the writ's lifetime from the decision, not from the collection.
    pub fn writ_expires_at(&self) -> Option<i64> {
        let decided = self.decided_at?;
        Some(decided.saturating_add(i64::try_from(self.ttl).unwrap_or(i64::MAX)))
    }

    /// The approvers who approved, with their decision times (the writ's evidence).
    pub fn approved_by(&self) -> impl Iterator<Item = &DecisionRecord> {
        self.decisions
            .iter()
            .filter(|d| d.verdict == Verdict::Approve)
    }
}
