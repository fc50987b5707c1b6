//! Approval rules: a policy whose rights are granted only when humans approve each request.
//!
//! ```toml
//! [[policy]]
//! name = "orders-cleanup"
//! # issuer, claims, resources, operations, services, max_ttl as any policy
//! [policy.approval]
//! approvers = ["group:sre", "principal:alice@example.com"]   # default: ["role:approver"]
//! quorum = 2        # distinct approvers (default 1)
//! wait = "15m"      # how long a request waits for its decision (default 15m)
//! ttl = "5m"        # lifetime of the elevated writ (default 5m, capped by max_ttl)
//! ```
//!
//! Whoever decides must hold the approver role (an admin writ with `approver`, or a login the
//! broker maps to it) and match one of `approvers`: `role:approver` is anyone with the role,
//! `principal:<name>` one principal, `group:<name>` members of an identity-provider group.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::admin::Principal;

/// Most distinct approvers a rule may require.
pub const MAX_QUORUM: u32 = 10;
/// The range of `wait`.
pub const WAIT_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(24 * 3600));
pub const DEFAULT_WAIT: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);

/// How requests under one policy are approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRule {
    pub approvers: Vec<ApproverSpec>,
    pub quorum: u32,
    pub wait: Duration,
    pub ttl: Duration,
}

/// Who may decide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ApproverSpec {
    /// Anyone holding the approver role.
    AnyApprover,
    Principal(Principal),
    Group(String),
}

/// Longest group name accepted in a rule or from a login.
pub const MAX_GROUP_LEN: usize = 128;

impl ApproverSpec {
    pub fn parse(text: &str) -> Result<ApproverSpec, String> {
        match text.split_once(':') {
            Some(("role", "approver")) => Ok(ApproverSpec::AnyApprover),
            Some(("principal", name)) => Principal::parse(name)
                .map(ApproverSpec::Principal)
                .map_err(|e| format!("approver {text:?}: {e}")),
            Some(("group", name)) if valid_group(name) => Ok(ApproverSpec::Group(name.to_owned())),
            Some(("group", _)) => Err(format!(
                "approver {text:?}: a group name is 1 to {MAX_GROUP_LEN} printable characters"
            )),
            _ => Err(format!(
                "approver {text:?} must be role:approver, principal:<name> or group:<name>"
            )),
        }
    }

    /// Whether `approver` is one of those this entry names.
    pub fn admits(&self, approver: &ApproverRef<'_>) -> bool {
        match self {
            ApproverSpec::AnyApprover => true,
            ApproverSpec::Principal(principal) => principal
                .as_str()
                .eq_ignore_ascii_case(approver.principal.as_str()),
            ApproverSpec::Group(group) => approver.groups.iter().any(|g| g == group),
        }
    }
}

/// Whether a group name is acceptable, in a rule or from an identity provider's claims.
pub fn valid_group(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_GROUP_LEN && !name.chars().any(char::is_control)
}

impl TryFrom<String> for ApproverSpec {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        ApproverSpec::parse(&value)
    }
}

impl From<ApproverSpec> for String {
    fn from(value: ApproverSpec) -> String {
        value.to_string()
    }
}

impl fmt::Display for ApproverSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApproverSpec::AnyApprover => f.write_str("role:approver"),
            ApproverSpec::Principal(p) => write!(f, "principal:{p}"),
            ApproverSpec::Group(g) => write!(f, "group:{g}"),
        }
    }
}

/// The approver as policy sees them: a principal and the groups their login carried.
#[derive(Debug, Clone, Copy)]
pub struct ApproverRef<'a> {
    pub principal: &'a Principal,
    pub groups: &'a [String],
}

impl ApprovalRule {
    pub fn admits(&self, approver: &ApproverRef<'_>) -> bool {
        self.approvers.iter().any(|spec| spec.admits(approver))
    }
}

/// `[policy.approval]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApproval {
    #[serde(default)]
    pub approvers: Option<Vec<String>>,
    #[serde(default)]
    pub quorum: Option<u32>,
    #[serde(default)]
    pub wait: Option<String>,
    #[serde(default)]
    pub ttl: Option<String>,
}

impl RawApproval {
    /// The rule, or the message of the first problem. `max_ttl` is the policy's.
    pub(super) fn compile(&self, max_ttl: Duration) -> Result<ApprovalRule, String> {
        let approvers = match &self.approvers {
            None => vec![ApproverSpec::AnyApprover],
            Some(list) if list.is_empty() => {
                return Err("approvers is empty: omit it to admit every approver".into());
            }
            Some(list) => list
                .iter()
                .map(|s| ApproverSpec::parse(s))
                .collect::<Result<_, _>>()?,
        };
        let quorum = self.quorum.unwrap_or(1);
        if !(1..=MAX_QUORUM).contains(&quorum) {
            return Err(format!("quorum {quorum} is outside 1..={MAX_QUORUM}"));
        }
        let wait = duration("wait", self.wait.as_deref(), DEFAULT_WAIT)?;
        if wait < WAIT_RANGE.0 || wait > WAIT_RANGE.1 {
            return Err("wait is outside 1s..=24h".into());
        }
        let ttl = duration("ttl", self.ttl.as_deref(), DEFAULT_TTL.min(max_ttl))?;
        if ttl < Duration::from_secs(1) || ttl > max_ttl {
            return Err(format!(
                "ttl is outside 1s..={} (the policy's max_ttl)",
                humantime::format_duration(max_ttl)
            ));
        }
        Ok(ApprovalRule {
            approvers,
            quorum,
            wait,
            ttl,
        })
    }
}

fn duration(what: &str, text: Option<&str>, default: Duration) -> Result<Duration, String> {
    match text {
        None => Ok(default),
        Some(text) => {
            humantime::parse_duration(text).map_err(|e| format!("invalid {what} {text:?}: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for text in ["role:approver", "principal:alice@example.com", "group:sre"] {
            assert_eq!(ApproverSpec::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "alice",
            "role:admin",
            "principal:has space",
            "group:",
            "group:a\nb",
        ] {
            assert!(ApproverSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn admits_by_principal_group_or_role() {
        let alice = Principal::parse("alice").unwrap();
        let groups = vec!["sre".to_owned()];
        let who = ApproverRef {
            principal: &alice,
            groups: &groups,
        };
        assert!(ApproverSpec::AnyApprover.admits(&who));
        assert!(ApproverSpec::parse("group:sre").unwrap().admits(&who));
        assert!(!ApproverSpec::parse("group:dev").unwrap().admits(&who));
        assert!(ApproverSpec::parse("principal:alice").unwrap().admits(&who));
        assert!(!ApproverSpec::parse("principal:bob").unwrap().admits(&who));
    }

    #[test]
    fn defaults_and_bounds() {
        let raw = RawApproval {
            approvers: None,
            quorum: None,
            wait: None,
            ttl: None,
        };
        let rule = raw.compile(Duration::from_secs(120)).unwrap();
        assert_eq!(rule.quorum, 1);
        assert_eq!(rule.wait, DEFAULT_WAIT);
        assert_eq!(rule.ttl, Duration::from_secs(120), "capped by max_ttl");
        let over = RawApproval {
            quorum: Some(11),
            ..raw
        };
        assert!(over.compile(Duration::from_secs(600)).is_err());
    }
}
