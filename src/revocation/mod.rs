//! Revocation: what an admin can revoke (a writ, a task, an agent), the durable entries that
//! record it, and the broker's in-memory view of the live entries, which serves the feed and
//! stream that verifiers follow and answers "is this agent suspended?" on the issuance path.
//!
//! An entry covers writs by rule rather than by listing them: "agent X, issued at or before T"
//! also covers a writ that was being minted while the revocation committed. Revoking an agent
//! leaves the rule open-ended (every writ of the agent, whenever issued) until an admin lifts
//! the suspension; lifting closes the rule at the lift time.

mod registry;

use std::time::{Duration, SystemTime};

pub use registry::Registry;
use writ_verify::revocation::{RevocationEntry, RevocationTarget};

use crate::keys::unix;

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
    /// The longest a writ can live (maximum TTL plus clock skew): how long after its cut-off a
    /// task or agent entry must still be served.
    pub writ_lifetime: Duration,
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
    #[error(transparent)]
    Storage(#[from] crate::store::StoreError),
}

/// A fresh revocation id: `rv_` and 128 random bits in hex.
pub fn new_revocation_id() -> Result<String, crate::mint::MintError> {
    crate::mint::random_id("rv_")
}

/// RFC 3339 for a stored unix time (a negative one, which the broker never stores, as 1970).
pub fn rfc3339(unix_seconds: i64) -> String {
    crate::keys::rfc3339(u64::try_from(unix_seconds).unwrap_or_default())
}

pub fn unix_seconds(time: SystemTime) -> i64 {
    unix(time) as i64
}
