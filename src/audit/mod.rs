//! The audit log's domain: what the broker records about each decision, the hash chain that
//! makes the stored log tamper-evident, and signed checkpoints that pin its head. Storage keeps
//! these values in columns and calls these functions; this module knows nothing of SQL or HTTP.
//!
//! Every decision becomes an [`AuditEvent`]. Appended to the log at position `seq` (1, 2, 3, …
//! without gaps) it becomes a [`ChainedEvent`] whose hash covers the previous event's hash, so
//! altering, removing, inserting or reordering stored events is found by a [`ChainVerifier`] at
//! the first event touched. Removing the newest events, or rewriting the log from some event on,
//! leaves a sound chain; a [`Checkpoint`] (the head, signed with the root key) kept elsewhere
//! catches those.
//!
//! # Event hash (version 1)
//!
//! An outside party can recompute every hash from an export. For event `seq` with predecessor
//! hash `prev` (32 zero bytes for event 1), `hash = SHA-256(encoding)`, where `encoding` is the
//! concatenation of:
//!
//! | bytes | content |
//! |---|---|
//! | 14 | the ASCII text `writ-audit-v1` followed by one zero byte |
//! | 32 | `prev`, raw bytes |
//! | 8 | `seq`, unsigned, big-endian |
//! | 8 | `at_ms` (unix milliseconds), signed two's complement, big-endian |
//! | str | `action` |
//! | str | `outcome`: `success`, `refused` or `failed` |
//! | str | `actor` |
//! | opt | `writ_id` |
//! | opt | `task` |
//! | opt | `agent` |
//! | opt | `reason` |
//! | str | `details`: the JSON text exactly as stored, not re-serialised |
//!
//! - *str*: the UTF-8 byte length as a 4-byte unsigned big-endian integer, then the bytes.
//! - *opt*: one byte `0x00` if absent (SQL `NULL`, JSON `null` or missing); otherwise one byte
//!   `0x01` followed by the value as *str*. An absent value and an empty string differ.
//!
//! Hashes are written as 64 lowercase hex digits.
//!
//! # Checkpoint signature (version 1)
//!
//! A checkpoint `{seq, hash, at_ms, root_key_id, signature}` signs the message
//!
//! | bytes | content |
//! |---|---|
//! | 25 | the ASCII text `writ-audit-checkpoint-v1` followed by one zero byte |
//! | 8 | `seq`, unsigned, big-endian |
//! | 32 | `hash` (the hash of event `seq`), raw bytes |
//! | 8 | `at_ms`, when it was signed, signed two's complement, big-endian |
//! | 4 | `root_key_id`, unsigned, big-endian |
//!
//! with the Ed25519 root key `root_key_id` (the key set the broker publishes for writs);
//! `signature` is the 64-byte Ed25519 signature in lowercase hex.
//!
//! Events never carry tokens, keys or other secrets; see [`AuditEvent`].

mod chain;
mod checkpoint;
mod event;
mod tally;

pub use chain::{
    ChainBreak, ChainHash, ChainVerifier, ChainedEvent, EVENT_DOMAIN, link, verify_chain,
};
pub use checkpoint::{CHECKPOINT_DOMAIN, Checkpoint, CheckpointError};
pub use event::{ANONYMOUS, AuditEvent, EMPTY_DETAILS, MAX_DETAILS_BYTES, Outcome};
pub use tally::{RefusalTally, UNKNOWN_ISSUER, WindowCounts};

/// A stored value that is not what the audit log writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown audit outcome {0:?}; expected success, refused or failed")]
    Outcome(String),
    #[error("a chain hash is 64 hex digits")]
    Hash,
}

/// The stable names of the actions the broker records. Filters and reports match on them, so
/// they never change once released.
pub mod actions {
    /// A workload identity token was refused.
    pub const IDENTITY_REFUSED: &str = "identity.refused";
    /// A writ was issued to an agent.
    pub const WRIT_ISSUED: &str = "writ.issued";
    /// A writ request was refused (by policy, a suspension, or its shape) or failed.
    pub const WRIT_REFUSED: &str = "writ.refused";
    /// A writ, task or agent was revoked (an agent: suspended).
    pub const REVOCATION_CREATED: &str = "revocation.created";
    /// An agent's suspension was lifted.
    pub const SUSPENSION_LIFTED: &str = "suspension.lifted";
    /// The first admin credential was created.
    pub const ADMIN_BOOTSTRAP: &str = "admin.bootstrap";
    /// An admin writ was issued.
    pub const ADMIN_WRIT_ISSUED: &str = "admin.writ.issued";
    /// An admin request was refused.
    pub const ADMIN_REFUSED: &str = "admin.refused";
    /// The root signing key was rotated.
    pub const KEYS_ROTATED: &str = "keys.rotated";
    /// The audit log was read or exported.
    pub const AUDIT_READ: &str = "audit.read";
    /// An agent asked for human approval.
    pub const APPROVAL_REQUESTED: &str = "approval.requested";
    /// A request for approval was refused (by policy, its shape, a limit) or failed.
    pub const APPROVAL_REFUSED: &str = "approval.refused";
    /// A webhook delivery attempt about a request (success or failure).
    pub const APPROVAL_NOTIFIED: &str = "approval.notified";
    /// An approver approved or denied (details say which, the reason, any narrowing).
    pub const APPROVAL_DECIDED: &str = "approval.decided";
    /// An approver's decision was refused (self-approval, twice, closed, not an approver...).
    pub const APPROVAL_DECISION_REFUSED: &str = "approval.decision_refused";
    /// A pending request expired undecided.
    pub const APPROVAL_EXPIRED: &str = "approval.expired";
    /// An approver logged in to, or out of, the approval page.
    pub const APPROVER_LOGIN: &str = "approver.login";
    /// The broker runs a changed policy set (details: the old and new hash, the files' hashes).
    pub const POLICY_RELOADED: &str = "policy.reloaded";
    /// A changed policy set was refused; the running one stays (details: why, the files' hashes).
    pub const POLICY_RELOAD_REFUSED: &str = "policy.reload_refused";
    /// A writ was exchanged for a native credential.
    pub const EXCHANGE_ISSUED: &str = "exchange.issued";
    /// A verified writ's exchange was refused (not granted, conflict, unknown role).
    pub const EXCHANGE_REFUSED: &str = "exchange.refused";
    /// The upstream (STS, Vault) failed or refused; nothing was issued.
    pub const EXCHANGE_FAILED: &str = "exchange.failed";
    /// Revocation took an exchanged credential back upstream.
    pub const EXCHANGE_WITHDRAWN: &str = "exchange.withdrawn";
    /// Taking a revoked writ's credential back failed; it is retried until it works.
    pub const EXCHANGE_WITHDRAW_FAILED: &str = "exchange.withdraw_failed";

    /// Every action, for validating filters.
    pub const ALL: &[&str] = &[
        IDENTITY_REFUSED,
        WRIT_ISSUED,
        WRIT_REFUSED,
        REVOCATION_CREATED,
        SUSPENSION_LIFTED,
        ADMIN_BOOTSTRAP,
        ADMIN_WRIT_ISSUED,
        ADMIN_REFUSED,
        KEYS_ROTATED,
        AUDIT_READ,
        APPROVAL_REQUESTED,
        APPROVAL_REFUSED,
        APPROVAL_NOTIFIED,
        APPROVAL_DECIDED,
        APPROVAL_DECISION_REFUSED,
        APPROVAL_EXPIRED,
        APPROVER_LOGIN,
        POLICY_RELOADED,
        POLICY_RELOAD_REFUSED,
    ];
}
