//! Policy as code: which identities may ask for which rights. Policies live in TOML files (kept in
//! git), are validated at load with errors that point at the line, and are tested with
//! `writ policy test`. The decision is pure: an identity's issuer and claims plus a request in,
//! an approval or a refusal that names every refused item out. Nothing is silently narrowed.
//!
//! A request is approved when one policy that matches the identity allows all of it: every right
//! (resource and operations), every service and the lifetime. Rights are never pieced together
//! from several policies, so a writ never combines grants no single policy gives.

mod approval;
mod claims;
mod file;
mod index;
mod names;
pub mod pattern;
mod request;
pub mod testing;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use approval::{
    ApprovalRule, ApproverRef, ApproverSpec, DEFAULT_TTL as DEFAULT_APPROVAL_TTL, valid_group,
};
pub use claims::ClaimMatcher;
pub use file::PolicyError;
pub use index::ClaimIndex;
pub use names::{NameError, Operation, ServiceName, TaskName};
pub use pattern::ResourcePattern;
pub use request::{
    RawRight, RawWritRequest, RequestError, RequestedRight, RightRecord, WritRequest, parse_rights,
};

/// The playground policy used in dev mode when no policy directory is configured.
pub const DEV_POLICY: &str = include_str!("dev-playground.toml");

/// One compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// `file:line` of its definition, for messages.
    pub origin: String,
    pub issuer: String,
    pub claims: ClaimMatcher,
    pub resources: Vec<ResourcePattern>,
    pub operations: Vec<Operation>,
    pub services: Vec<ServiceName>,
    pub max_ttl: Duration,
    pub default_ttl: Duration,
    /// Set when the policy's rights are granted only through human approval.
    pub approval: Option<ApprovalRule>,
}

/// All loaded policies.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub policies: Vec<Policy>,
    /// Finds the policies an identity may match by position in `policies`, built with them.
    index: ClaimIndex,
}

/// Who is asking, as far as policy is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The configured name of the issuer that vouched for the identity.
    pub issuer: &'a str,
    pub claims: &'a serde_json::Map<String, serde_json::Value>,
}

/// A permitted request: the policy that allows it, the lifetime to grant, and the approval rule
/// when humans must approve it first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    pub policy: String,
    pub ttl: Duration,
    pub approval: Option<ApprovalRule>,
}

/// How a request reaches its writ: directly (`POST /v1/writs`), or through human approval
/// (`POST /v1/approvals`). A policy serves exactly one of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Direct,
    Approval,
}

impl Permit {
    pub fn channel(&self) -> Channel {
        if self.approval.is_some() {
            Channel::Approval
        } else {
            Channel::Direct
        }
    }
}

/// Refusal reasons.
pub mod reasons {
    pub const NO_MATCHING_POLICY: &str = "no_matching_policy";
    pub const NOT_ALLOWED: &str = "not_allowed";
    /// Only a policy with an approval rule allows it: ask through `POST /v1/approvals`.
    pub const APPROVAL_REQUIRED: &str = "approval_required";
    /// A policy allows it without approval: ask through `POST /v1/writs`.
    pub const APPROVAL_NOT_NEEDED: &str = "approval_not_needed";
}

/// A refused request, naming everything that was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// One of [`reasons`].
    pub reason: &'static str,
    /// For `approval_required` and `approval_not_needed`: the policy that allows the request on
    /// the other path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    pub refused_rights: Vec<RefusedRight>,
    pub refused_services: Vec<String>,
    /// Set when the requested lifetime exceeds the policy's maximum.
    pub refused_ttl: Option<RefusedTtl>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedRight {
    pub resource: String,
    pub operation: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedTtl {
    pub requested: u64,
    pub max: u64,
}

/// How many refused rights and services a refusal names where it is answered or recorded; the
/// rest are counted. A request can ask for 512 (right, operation) pairs of 1 KiB each, and a
/// refusal must not answer or record all of them.
pub const MAX_NAMED: usize = 8;

/// A refusal as it is answered and recorded: the first [`MAX_NAMED`] refused rights and
/// services, and how many there are in all.
#[derive(Debug, Serialize)]
pub struct RefusalSummary<'a> {
    pub reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<&'a str>,
    pub refused_rights: &'a [RefusedRight],
    pub refused_rights_total: usize,
    pub refused_services: &'a [String],
    pub refused_services_total: usize,
    pub refused_ttl: Option<&'a RefusedTtl>,
}

impl Refusal {
    pub fn summary(&self) -> RefusalSummary<'_> {
        let named = |total: usize| total.min(MAX_NAMED);
        RefusalSummary {
            reason: self.reason,
            policy: self.policy.as_deref(),
            refused_rights: &self.refused_rights[..named(self.refused_rights.len())],
            refused_rights_total: self.refused_rights.len(),
            refused_services: &self.refused_services[..named(self.refused_services.len())],
            refused_services_total: self.refused_services.len(),
            refused_ttl: self.refused_ttl.as_ref(),
        }
    }
}

/// The detail a refused agent reads: what was refused, by name (the first few of each).
impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let policy = self.policy.as_deref().unwrap_or_default();
        match self.reason {
            reasons::NO_MATCHING_POLICY => {
                return f.write_str("no policy allows this identity to request writs");
            }
            reasons::APPROVAL_REQUIRED => {
                return write!(
                    f,
                    "policy {policy:?} grants this only with a human's approval: \
                     ask through POST /v1/approvals"
                );
            }
            reasons::APPROVAL_NOT_NEEDED => {
                return write!(
                    f,
                    "policy {policy:?} grants this without approval: ask through POST /v1/writs"
                );
            }
            _ => {}
        }
        let summary = self.summary();
        let more = |named: usize, total: usize| {
            if total > named {
                format!(" and {} more", total - named)
            } else {
                String::new()
            }
        };
        let mut parts = Vec::new();
        if !summary.refused_rights.is_empty() {
            let rights: Vec<_> = summary
                .refused_rights
                .iter()
                .map(|r| format!("{} {}", r.operation, r.resource))
                .collect();
            parts.push(format!(
                "rights not allowed: {}{}",
                rights.join(", "),
                more(rights.len(), summary.refused_rights_total)
            ));
        }
        if !summary.refused_services.is_empty() {
            parts.push(format!(
                "services not allowed: {}{}",
                summary.refused_services.join(", "),
                more(
                    summary.refused_services.len(),
                    summary.refused_services_total
                )
            ));
        }
        if let Some(ttl) = summary.refused_ttl {
            parts.push(format!(
                "ttl {}s exceeds the maximum {}s",
                ttl.requested, ttl.max
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

impl Refusal {
    fn size(&self) -> usize {
        self.refused_rights.len()
            + self.refused_services.len()
            + usize::from(self.refused_ttl.is_some())
    }
}

impl PolicySet {
    /// Loads every `*.toml` policy file (not `*.test.toml`) in `dir`, in name order.
    pub fn load_dir(dir: &Path, max_ttl: Duration) -> Result<PolicySet, PolicyError> {
        let mut policies: Vec<Policy> = Vec::new();
        for path in policy_files(dir, false)? {
            let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::io(&path, e))?;
            for policy in file::parse(&path, &text, max_ttl)? {
                // Names identify policies in answers and records: one name, one policy.
                if let Some(first) = policies.iter().find(|p| p.name == policy.name) {
                    return Err(PolicyError {
                        location: policy.origin,
                        message: format!(
                            "policy {:?} is already defined at {}",
                            policy.name, first.origin
                        ),
                    });
                }
                policies.push(policy);
            }
        }
        Ok(PolicySet::new(policies))
    }

    pub fn parse(origin: &Path, text: &str, max_ttl: Duration) -> Result<PolicySet, PolicyError> {
        Ok(PolicySet::new(file::parse(origin, text, max_ttl)?))
    }

    fn new(policies: Vec<Policy>) -> PolicySet {
        let index = ClaimIndex::build(
            policies
                .iter()
                .map(|p| (Some(p.issuer.as_str()), &p.claims)),
        );
        PolicySet { policies, index }
    }

    /// The policies that match `subject`, in file order. Only the index's candidates are
    /// matched; should `policies` no longer be what the index was built from, all are.
    fn matching<'a>(&'a self, subject: Subject<'a>) -> impl Iterator<Item = &'a Policy> {
        let candidates = if self.index.entries() == self.policies.len() {
            self.index.candidates(subject.issuer, subject.claims)
        } else {
            (0..self.policies.len()).collect()
        };
        candidates
            .into_iter()
            .filter_map(|i| self.policies.get(i))
            .filter(move |policy| policy.matches(subject))
    }

    /// Every issuer name the policies refer to.
    pub fn issuers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.policies
            .iter()
            .map(|policy| (policy.issuer.as_str(), policy.origin.as_str()))
    }

    /// The decision for a request on `channel`. A request some policy grants without approval
    /// is never routed to humans: on the direct channel it is permitted, on the approval
    /// channel it is refused as `approval_not_needed`. A request only an approval policy grants
    /// is permitted on the approval channel and refused as `approval_required` directly.
    pub fn decide(
        &self,
        subject: Subject<'_>,
        request: &WritRequest,
        channel: Channel,
    ) -> Result<Permit, Refusal> {
        let mut closest: Option<Refusal> = None;
        let mut approved: Option<Permit> = None;
        for policy in self.matching(subject) {
            match policy.evaluate(request) {
                // A direct permit decides at once, on either channel: issuance stops at the
                // first policy that grants the request, as it did before approvals existed.
                Ok(permit) if permit.channel() == Channel::Direct => {
                    return match channel {
                        Channel::Direct => Ok(permit),
                        Channel::Approval => {
                            Err(wrong_channel(reasons::APPROVAL_NOT_NEEDED, permit))
                        }
                    };
                }
                Ok(permit) => {
                    // Of several approval policies granting the request, the strictest rules:
                    // a lax rule on `orders/*` must not override a strict one on `orders/vip/*`.
                    if approved.as_ref().is_none_or(|held| stricter(&permit, held)) {
                        approved = Some(permit);
                    }
                }
                Err(refusal) => {
                    if closest.as_ref().is_none_or(|c| refusal.size() < c.size()) {
                        closest = Some(refusal);
                    }
                }
            }
        }
        match (channel, approved) {
            (Channel::Approval, Some(permit)) => Ok(permit),
            (Channel::Direct, Some(permit)) => {
                Err(wrong_channel(reasons::APPROVAL_REQUIRED, permit))
            }
            (_, None) => Err(closest.unwrap_or_else(|| no_matching_policy(request))),
        }
    }
}

/// The refusal of a request asked on the channel its policy does not serve.
fn wrong_channel(reason: &'static str, permit: Permit) -> Refusal {
    Refusal {
        reason,
        policy: Some(permit.policy),
        refused_rights: Vec::new(),
        refused_services: Vec::new(),
        refused_ttl: None,
    }
}

impl Policy {
    fn matches(&self, subject: Subject<'_>) -> bool {
        self.issuer == subject.issuer && self.claims.matches(subject.claims)
    }

    fn evaluate(&self, request: &WritRequest) -> Result<Permit, Refusal> {
        let refused_rights = request
            .rights
            .iter()
            .flat_map(|right| right.operations.iter().map(move |op| (right, op)))
            .filter(|(right, op)| !self.allows(&right.resource, op))
            .map(|(right, op)| RefusedRight {
                resource: right.resource.to_string(),
                operation: op.to_string(),
            })
            .collect();
        let refused_services = request
            .services
            .iter()
            .filter(|service| !self.services.contains(service))
            .map(ToString::to_string)
            .collect();
        let ttl = request.ttl.unwrap_or(self.default_ttl);
        let refused_ttl = (ttl > self.max_ttl).then_some(RefusedTtl {
            requested: ttl.as_secs(),
            max: self.max_ttl.as_secs(),
        });
        let refusal = Refusal {
            reason: reasons::NOT_ALLOWED,
            policy: None,
            refused_rights,
            refused_services,
            refused_ttl,
        };
        if refusal.size() > 0 {
            return Err(refusal);
        }
        // An elevated writ lives no longer than the approval rule's lifetime.
        let ttl = match &self.approval {
            Some(rule) => ttl.min(rule.ttl),
            None => ttl,
        };
        Ok(Permit {
            policy: self.name.clone(),
            ttl,
            approval: self.approval.clone(),
        })
    }

    fn allows(&self, resource: &ResourcePattern, operation: &Operation) -> bool {
        self.operations.contains(operation)
            && self.resources.iter().any(|p| pattern::covers(p, resource))
    }
}

/// Whether approval permit `a` is stricter than `b`: more approvers, then a shorter wait for the
/// decision, then a shorter-lived writ.
fn stricter(a: &Permit, b: &Permit) -> bool {
    let key = |permit: &Permit| {
        permit.approval.as_ref().map(|rule| {
            (
                rule.quorum,
                std::cmp::Reverse(rule.wait),
                std::cmp::Reverse(permit.ttl),
            )
        })
    };
    key(a) > key(b)
}

fn no_matching_policy(request: &WritRequest) -> Refusal {
    Refusal {
        reason: reasons::NO_MATCHING_POLICY,
        policy: None,
        refused_rights: request
            .rights
            .iter()
            .flat_map(|right| {
                right.operations.iter().map(|op| RefusedRight {
                    resource: right.resource.to_string(),
                    operation: op.to_string(),
                })
            })
            .collect(),
        refused_services: request.services.iter().map(ToString::to_string).collect(),
        refused_ttl: None,
    }
}

/// The policy files (`tests == false`) or policy test files (`tests == true`) in `dir`, sorted.
pub fn policy_files(dir: &Path, tests: bool) -> Result<Vec<PathBuf>, PolicyError> {
    let entries = std::fs::read_dir(dir).map_err(|e| PolicyError::io(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".toml") && name.ends_with(".test.toml") == tests
        })
        .collect();
    files.sort();
    Ok(files)
}
