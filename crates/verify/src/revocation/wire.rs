//! The revocation feed as it travels: `GET /v1/revocations?after=N` answers a
//! [`RevocationPage`]; `GET /v1/revocations/stream` sends each [`RevocationEntry`] as a
//! server-sent event (`event: revocation`, `id: <seq>`) and a [`FeedHeartbeat`]
//! (`event: heartbeat`, no id) at a fixed interval.
//!
//! An entry is identified by `id`; a later entry with the same `id` and a higher `seq` replaces
//! the earlier one (a suspension that was lifted gains an `issued_until`). Times are RFC 3339
//! in whole seconds, like every time in the writ format.

use serde::{Deserialize, Serialize};

/// What a revocation covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "snake_case")]
pub enum RevocationTarget {
    /// One writ and every attenuation of it: refuse a writ whose `writ_id` matches, or any of
    /// whose block revocation ids matches `revocation_id` (hex, the authority block's).
    Writ {
        /// The revoked writ's `writ_id`.
        writ_id: String,
        /// The revocation id of the writ's authority block, hex.
        revocation_id: String,
    },
    /// Every writ for this task name (any agent) issued at or before `issued_until`.
    Task {
        /// The task name, as in the writs' `task(..)`.
        task: String,
    },
    /// Every writ of this agent issued at or before `issued_until`; every writ of the agent,
    /// whenever issued, while `issued_until` is absent (the agent is suspended).
    Agent {
        /// The agent, as in the writs' `agent(..)`.
        agent: String,
    },
}

/// One revocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEntry {
    /// Position in the feed, increasing with every change.
    pub seq: u64,
    /// The revocation's stable id (`rv_...`).
    pub id: String,
    /// What the entry revokes (flattened: `"target": "writ" | "task" | "agent"` and its fields).
    #[serde(flatten)]
    pub target: RevocationTarget,
    /// For task and agent targets: writs whose `issued_at` is at or before this instant are
    /// revoked. Absent for an agent target while the agent is suspended (every writ of it is
    /// revoked), and for writ targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_until: Option<String>,
    /// After this instant no writ the entry covers can still be valid, so a verifier may forget
    /// the entry; absent while the entry is open-ended (a suspended agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// One page of the feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationPage {
    /// Entries with `seq > after`, in increasing `seq`, leaving out those already expired.
    pub entries: Vec<RevocationEntry>,
    /// The cursor for the next request (`after=`): the highest seq this page covers.
    pub next_after: u64,
    /// Whether more entries follow at once (ask again with `next_after`).
    pub more: bool,
}

/// Sent on the stream when nothing else is: the broker's latest seq, so a verifier knows its
/// view is complete as of now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedHeartbeat {
    /// The highest `seq` in the feed when the heartbeat was sent.
    pub head: u64,
}
