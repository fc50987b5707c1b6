//! Policy as code: which identities may ask for which rights. Policies live in TOML files (kept in
//! git), are validated at load with errors that point at the line, and are tested with
//! `writ policy test`. The decision is pure: an identity's issuer and claims plus a request in,
//! an approval or a refusal that names every refused item out. Nothing is silently narrowed.
//!
//! A request is approved when one policy that matches the identity allows all of it: every right
//! (resource and operations), every service and the lifetime, under the policy's conditions
//! ([`condition`]). Rights are never pieced together from several policies, so a writ never
//! combines grants no single policy gives. A deny rule ([`deny`]) that covers any part of the
//! request refuses it, whatever the permits say.

mod approval;
mod claims;
mod condition;
mod deny;
mod explain;
mod file;
mod index;
mod names;
pub mod pattern;
mod request;
mod source;
mod template;
pub mod testing;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

pub use approval::{
    ApprovalRule, ApproverRef, ApproverSpec, DEFAULT_TTL as DEFAULT_APPROVAL_TTL, valid_group,
};
pub use claims::ClaimMatcher;
pub use condition::TimeWindow;
pub use deny::DenyRule;
pub use explain::{Explanation, Outcome, RuleTrace};
pub use file::PolicyError;
pub use index::ClaimIndex;
pub use names::{NameError, Operation, ServiceName, TaskName};
pub use pattern::ResourcePattern;
pub use request::{
    RawRight, RawWritRequest, RequestError, RequestedRight, RightRecord, WritRequest, parse_rights,
};
pub use source::{MAX_POLICY_FILE_BYTES, PolicyFileDigest, PolicyFiles, PolicySource};
pub use template::Template;

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
    /// Literal or templated from the identity's claims.
    pub resources: Vec<Template<ResourcePattern>>,
    pub operations: Vec<Operation>,
    pub services: Vec<Template<ServiceName>>,
    pub max_ttl: Duration,
    pub default_ttl: Duration,
    /// Shorter lifetimes for requests that name an operation.
    pub ttl_caps: Vec<(Operation, Duration)>,
    /// Outside this window the policy grants nothing.
    pub window: Option<TimeWindow>,
    /// Set when the policy's rights are granted only through human approval.
    pub approval: Option<ApprovalRule>,
}

/// All loaded policies and deny rules.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    // Private: the indexes describe exactly these, by position.
    policies: Vec<Policy>,
    denies: Vec<DenyRule>,
    /// The files it was built from, hashed.
    pub source: PolicySource,
    /// Find the policies and deny rules an identity may match, by position; built with them.
    index: ClaimIndex,
    deny_index: ClaimIndex,
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
    /// A deny rule covers part of the request.
    pub const DENIED: &str = "denied";
    /// The policy that would allow it grants nothing at this time.
    pub const OUTSIDE_WINDOW: &str = "outside_window";
}

/// A refused request, naming everything that was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// One of [`reasons`].
    pub reason: &'static str,
    /// For `approval_required` and `approval_not_needed`: the policy that allows the request on
    /// the other path; for `outside_window`, the policy whose window it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// For `denied`: the deny rule that fired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny: Option<String>,
    /// For `outside_window`: when the policy grants, e.g. `mon,tue 09:00-18:00 Europe/Berlin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<&'a str>,
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
            deny: self.deny.as_deref(),
            window: self.window.as_deref(),
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
            reasons::OUTSIDE_WINDOW => {
                let window = self.window.as_deref().unwrap_or_default();
                return write!(f, "policy {policy:?} grants this only during {window}");
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
        let detail = parts.join("; ");
        match &self.deny {
            Some(rule) => write!(f, "deny rule {rule:?} refuses it: {detail}"),
            None => f.write_str(&detail),
        }
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
        PolicySet::from_files(PolicyFiles::read(dir)?, max_ttl)
    }

    /// The set of files read at one moment; its source is theirs.
    pub fn from_files(files: PolicyFiles, max_ttl: Duration) -> Result<PolicySet, PolicyError> {
        let mut set = PolicySet::default();
        for (path, text) in &files.files {
            set.add(file::parse(path, text, max_ttl)?)?;
        }
        set.source = files.source;
        Ok(set.indexed())
    }

    /// One file's policies; `origin`'s file name is the file's name in the set's source.
    pub fn parse(origin: &Path, text: &str, max_ttl: Duration) -> Result<PolicySet, PolicyError> {
        let mut set = PolicySet::default();
        set.add(file::parse(origin, text, max_ttl)?)?;
        set.source = PolicySource::of(&[(source::file_name(origin), text)]);
        Ok(set.indexed())
    }

    /// Adds one file's rules. Names identify rules in answers and records: one name, one rule,
    /// across files and kinds.
    fn add(&mut self, parsed: file::Parsed) -> Result<(), PolicyError> {
        let named = parsed
            .policies
            .iter()
            .map(|p| (&p.name, &p.origin))
            .chain(parsed.denies.iter().map(|d| (&d.name, &d.origin)));
        for (name, origin) in named {
            if let Some(first) = self.origin_of(name) {
                return Err(PolicyError {
                    location: origin.clone(),
                    message: format!("{name:?} is already defined at {first}"),
                });
            }
        }
        self.policies.extend(parsed.policies);
        self.denies.extend(parsed.denies);
        Ok(())
    }

    /// Builds the indexes once every file is added.
    fn indexed(mut self) -> PolicySet {
        self.index = ClaimIndex::build(
            self.policies
                .iter()
                .map(|p| (Some(p.issuer.as_str()), &p.claims)),
        );
        self.deny_index =
            ClaimIndex::build(self.denies.iter().map(|d| (d.issuer.as_deref(), &d.claims)));
        self
    }

    fn origin_of(&self, name: &str) -> Option<&str> {
        let policy = self.policies.iter().find(|p| p.name == name);
        let deny = self.denies.iter().find(|d| d.name == name);
        policy
            .map(|p| p.origin.as_str())
            .or(deny.map(|d| d.origin.as_str()))
    }

    /// The policies that match `subject`'s issuer and claims, in file order. Only the index's
    /// candidates are matched.
    fn matching<'a>(&'a self, subject: Subject<'a>) -> impl Iterator<Item = &'a Policy> {
        self.index
            .candidates(subject.issuer, subject.claims)
            .into_iter()
            .filter_map(|i| self.policies.get(i))
            .filter(move |policy| policy.matches(subject))
    }

    /// The deny rules for `subject`'s issuer and claims, whatever the time, in file order: one
    /// lookup serves both the rules that hold now and those whose window is yet to open.
    fn denies_for<'a>(&'a self, subject: Subject<'a>) -> Vec<&'a DenyRule> {
        self.deny_index
            .candidates(subject.issuer, subject.claims)
            .into_iter()
            .filter_map(|i| self.denies.get(i))
            .filter(|rule| rule.matches_identity(subject))
            .collect()
    }

    /// The policies, in file order.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// The deny rules, in file order.
    pub fn denies(&self) -> &[DenyRule] {
        &self.denies
    }

    /// Every issuer name the policies and deny rules refer to.
    pub fn issuers(&self) -> impl Iterator<Item = (&str, &str)> {
        let policies = self
            .policies
            .iter()
            .map(|policy| (policy.issuer.as_str(), policy.origin.as_str()));
        let denies = self
            .denies
            .iter()
            .filter_map(|deny| Some((deny.issuer.as_deref()?, deny.origin.as_str())));
        policies.chain(denies)
    }

    /// The decision for a request on `channel`, at `at` (time windows are read against it).
    ///
    /// A deny rule that covers any part of the request refuses it first. Otherwise: a request
    /// some policy grants without approval is never routed to humans: on the direct channel it is
    /// permitted, on the approval channel it is refused as `approval_not_needed`. A request only
    /// an approval policy grants is permitted on the approval channel and refused as
    /// `approval_required` directly.
    pub fn decide(
        &self,
        subject: Subject<'_>,
        request: &WritRequest,
        channel: Channel,
        at: SystemTime,
    ) -> Result<Permit, Box<Refusal>> {
        let denies = self.denies_for(subject);
        if let Some(refusal) = denial(&denies, request, at) {
            return Err(Box::new(refusal));
        }
        let permit = self.permit(subject, request, channel, at)?;
        before_coming_denials(&denies, request, at, permit)
    }

    /// The permit for a request no deny rule refuses now.
    fn permit(
        &self,
        subject: Subject<'_>,
        request: &WritRequest,
        channel: Channel,
        at: SystemTime,
    ) -> Result<Permit, Box<Refusal>> {
        let mut closest: Option<Box<Refusal>> = None;
        let mut approved: Option<Permit> = None;
        for policy in self.matching(subject) {
            let Some(grant) = policy.bind(subject) else {
                continue;
            };
            match policy.evaluate(&grant, request, at) {
                // A direct permit decides at once, on either channel: issuance stops at the
                // first policy that grants the request, as it did before approvals existed.
                Ok(permit) if permit.channel() == Channel::Direct => {
                    return match channel {
                        Channel::Direct => Ok(permit),
                        Channel::Approval => Err(Box::new(wrong_channel(
                            reasons::APPROVAL_NOT_NEEDED,
                            permit,
                        ))),
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
                Err(Box::new(wrong_channel(reasons::APPROVAL_REQUIRED, permit)))
            }
            (_, None) => Err(closest.unwrap_or_else(|| Box::new(no_matching_policy(request)))),
        }
    }
}

impl Refusal {
    /// A refusal for `reason` that names nothing yet.
    pub fn new(reason: &'static str) -> Refusal {
        Refusal {
            reason,
            policy: None,
            deny: None,
            window: None,
            refused_rights: Vec::new(),
            refused_services: Vec::new(),
            refused_ttl: None,
        }
    }
}

/// The refusal of a request asked on the channel its policy does not serve.
fn wrong_channel(reason: &'static str, permit: Permit) -> Refusal {
    Refusal {
        policy: Some(permit.policy),
        ..Refusal::new(reason)
    }
}

/// A policy's resources and services as they stand for one identity.
struct Grant<'p> {
    resources: Vec<Cow<'p, ResourcePattern>>,
    services: Vec<Cow<'p, ServiceName>>,
}

impl Policy {
    fn matches(&self, subject: Subject<'_>) -> bool {
        self.issuer == subject.issuer && self.claims.matches(subject.claims)
    }

    /// Renders the policy's templates for the identity; `None` when a claim they name is
    /// missing or unsafe, and the policy then does not match.
    fn bind(&self, subject: Subject<'_>) -> Option<Grant<'_>> {
        fn each<'p, T: template::Rendered + Clone>(
            templates: &'p [Template<T>],
            subject: Subject<'_>,
        ) -> Option<Vec<Cow<'p, T>>> {
            templates
                .iter()
                .map(|t| match t.literal() {
                    Some(literal) => Some(Cow::Borrowed(literal)),
                    None => t.render(subject.claims).map(Cow::Owned),
                })
                .collect()
        }
        Some(Grant {
            resources: each(&self.resources, subject)?,
            services: each(&self.services, subject)?,
        })
    }

    fn evaluate(
        &self,
        grant: &Grant<'_>,
        request: &WritRequest,
        at: SystemTime,
    ) -> Result<Permit, Box<Refusal>> {
        let refused_rights = request
            .rights
            .iter()
            .flat_map(|right| right.operations.iter().map(move |op| (right, op)))
            .filter(|(right, op)| !self.allows(grant, &right.resource, op))
            .map(|(right, op)| RefusedRight {
                resource: right.resource.to_string(),
                operation: op.to_string(),
            })
            .collect();
        let refused_services = request
            .services
            .iter()
            .filter(|service| !grant.services.iter().any(|s| s.as_ref() == *service))
            .map(ToString::to_string)
            .collect();
        let outside = self.window.as_ref().filter(|w| !w.contains(at));
        let max_ttl = self.max_ttl_for(request, at);
        let ttl = request.ttl.unwrap_or(self.default_ttl.min(max_ttl));
        let refused_ttl = (ttl > max_ttl && outside.is_none()).then_some(RefusedTtl {
            requested: ttl.as_secs(),
            max: max_ttl.as_secs(),
        });
        let refusal = Refusal {
            refused_rights,
            refused_services,
            refused_ttl,
            ..Refusal::new(reasons::NOT_ALLOWED)
        };
        if refusal.size() > 0 {
            return Err(Box::new(refusal));
        }
        if let Some(window) = outside {
            return Err(Box::new(Refusal {
                policy: Some(self.name.clone()),
                window: Some(window.to_string()),
                ..Refusal::new(reasons::OUTSIDE_WINDOW)
            }));
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

    /// The longest lifetime this policy grants the request at `at`: its `max_ttl`, capped for
    /// each requested operation with a cap, and by the end of its time window (whole seconds).
    fn max_ttl_for(&self, request: &WritRequest, at: SystemTime) -> Duration {
        let requested = |op: &Operation| request.rights.iter().any(|r| r.operations.contains(op));
        let mut max = self
            .ttl_caps
            .iter()
            .filter(|(op, _)| requested(op))
            .map(|(_, cap)| *cap)
            .fold(self.max_ttl, Duration::min);
        if let Some(left) = self.window.as_ref().and_then(|w| w.remaining(at, max)) {
            max = Duration::from_secs(left.as_secs());
        }
        max
    }

    fn allows(&self, grant: &Grant<'_>, resource: &ResourcePattern, operation: &Operation) -> bool {
        self.operations.contains(operation)
            && grant.resources.iter().any(|p| pattern::covers(p, resource))
    }
}
/// `permit`, with a lifetime that ends before any deny rule that would refuse the request
/// starts to hold (a freeze window opening): a writ never lives into its own refusal. A
/// `ttl` asked beyond that is refused, naming the rule.
fn before_coming_denials(
    denies: &[&DenyRule],
    request: &WritRequest,
    at: SystemTime,
    mut permit: Permit,
) -> Result<Permit, Box<Refusal>> {
    let coming = denies
        .iter()
        .filter_map(|rule| {
            let opens = rule.window.as_ref()?.until_open(at, permit.ttl)?;
            rule.refuse(request)?;
            Some((*rule, Duration::from_secs(opens.as_secs())))
        })
        .min_by_key(|(_, opens)| *opens);
    let Some((rule, opens)) = coming else {
        return Ok(permit);
    };
    if opens.is_zero() {
        // It holds within the second: as good as holding now.
        let denial = rule.refuse(request).unwrap_or(deny::Denial {
            rights: Vec::new(),
            services: Vec::new(),
        });
        return Err(Box::new(Refusal {
            deny: Some(rule.name.clone()),
            refused_rights: denial.rights,
            refused_services: denial.services,
            ..Refusal::new(reasons::DENIED)
        }));
    }
    if let Some(requested) = request.ttl.filter(|ttl| *ttl > opens) {
        return Err(Box::new(Refusal {
            deny: Some(rule.name.clone()),
            refused_ttl: Some(RefusedTtl {
                requested: requested.as_secs(),
                max: opens.as_secs(),
            }),
            ..Refusal::new(reasons::DENIED)
        }));
    }
    permit.ttl = permit.ttl.min(opens);
    Ok(permit)
}

/// The refusal of the first deny rule (in file order) that covers part of the request.
fn denial(denies: &[&DenyRule], request: &WritRequest, at: SystemTime) -> Option<Refusal> {
    denies
        .iter()
        .filter(|rule| rule.holds_at(at))
        .find_map(|rule| {
            let denial = rule.refuse(request)?;
            Some(Refusal {
                deny: Some(rule.name.clone()),
                refused_rights: denial.rights,
                refused_services: denial.services,
                ..Refusal::new(reasons::DENIED)
            })
        })
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
        ..Refusal::new(reasons::NO_MATCHING_POLICY)
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
