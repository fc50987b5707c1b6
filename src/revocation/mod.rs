//! Revocation: what an admin can revoke (a writ, a task, an agent), the durable entries that
//! record it, and the broker's in-memory view of the live entries, which serves the feed and
//! stream that verifiers follow and answers "is this agent suspended?" on the issuance path.
//!
//! An entry covers writs by rule rather than by listing them: "agent X, issued at or before T"
//! also covers a writ that was being minted while the revocation committed. Revoking an agent
//! leaves the rule open-ended (every writ of the agent, whenever issued) until an admin lifts
//! the suspension; lifting closes the rule at the lift time.
//!
//! Pure domain: the rules ([`rules`]) are functions over values, the view ([`RevocationView`])
//! reads entries through [`RevocationSource`], and nothing here knows SQL or HTTP. The store
//! implements the source and runs the rules inside its transactions.

mod follow;
mod rules;
mod view;

use std::time::SystemTime;

pub use follow::{FeedItem, follow};
pub use rules::{Change, Limits, TargetState, decide, lift};
pub use view::{RevocationSource, RevocationView, ViewNotCurrent};
use writ_verify::revocation::{RevocationEntry, RevocationTarget};

use crate::error::{DomainError, ErrorCode, codes};
use crate::time::rfc3339;

/// What a revocation covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Writ(String),
    Task(String),
    Agent(String),
}

impl Target {
    /// The stored kind: `writ`, `task` or `agent`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Writ(_) => "writ",
            Target::Task(_) => "task",
            Target::Agent(_) => "agent",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Target::Writ(value) | Target::Task(value) | Target::Agent(value) => value,
        }
    }

    pub fn from_parts(kind: &str, value: String) -> Option<Target> {
        match kind {
            "writ" => Some(Target::Writ(value)),
            "task" => Some(Target::Task(value)),
            "agent" => Some(Target::Agent(value)),
            _ => None,
        }
    }
}

/// A lifted suspension: who lifted it, when, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lift {
    pub by: String,
    pub at: i64,
    pub reason: String,
}

/// One revocation entry as stored. Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub id: String,
    pub seq: u64,
    pub target: Target,
    /// For writ targets: the authority block's revocation id (hex).
    pub revocation_id: Option<String>,
    /// Writs issued at or before this are revoked; `None` for writs and suspended agents.
    pub issued_until: Option<i64>,
    /// When no writ the entry covers can still be valid; `None` while open-ended.
    pub expires_at: Option<i64>,
    pub reason: String,
    pub revoked_by: String,
    pub revoked_at: i64,
    pub lifted: Option<Lift>,
}

impl Revocation {
    /// Whether the entry still matters at `now` (unix seconds).
    pub fn is_live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|expires_at| expires_at > now)
    }

    /// An agent entry that is still open: the agent is suspended.
    pub fn is_suspension(&self) -> bool {
        matches!(self.target, Target::Agent(_)) && self.issued_until.is_none()
    }

    /// The entry as verifiers read it.
    pub fn to_entry(&self) -> RevocationEntry {
        let target = match &self.target {
            Target::Writ(writ_id) => RevocationTarget::Writ {
                writ_id: writ_id.clone(),
                revocation_id: self.revocation_id.clone().unwrap_or_default(),
            },
            Target::Task(task) => RevocationTarget::Task { task: task.clone() },
            Target::Agent(agent) => RevocationTarget::Agent {
                agent: agent.clone(),
            },
        };
        RevocationEntry {
            seq: self.seq,
            id: self.id.clone(),
            target,
            issued_until: self.issued_until.map(rfc3339),
            expires_at: self.expires_at.map(rfc3339),
        }
    }
}

/// A revocation an admin asked for.
#[derive(Debug, Clone)]
pub struct RevocationRequest {
    pub target: Target,
    pub reason: String,
    pub by: String,
    pub now: SystemTime,
}

/// What a revocation request did.
#[derive(Debug, Clone)]
pub struct RevocationOutcome {
    pub revocation: Revocation,
    /// False when an equivalent revocation was already in force (the request is idempotent).
    pub created: bool,
    /// Writs of the target still unexpired when the revocation was made.
    pub live_writs: u64,
}

/// Why a revocation could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("no writ with this id was issued by this broker")]
    UnknownWrit,
    #[error("this agent is not suspended")]
    NotSuspended,
}

impl DomainError for RevocationError {
    fn code(&self) -> ErrorCode {
        match self {
            RevocationError::UnknownWrit => codes::WRIT_UNKNOWN,
            RevocationError::NotSuspended => codes::AGENT_NOT_SUSPENDED,
        }
    }
}
