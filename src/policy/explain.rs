//! Why a decision came out as it did: which deny rules and policies looked at the identity, and
//! for each what matched, which rule or condition refused which item, and which deny fired. Read
//! by `writ policy explain`, by `writ policy test` on a failed case, and by operators through
//! `POST /v1/policy/explain` against the running set.
//!
//! The decision itself is [`PolicySet::decide`]'s; the traces are built with the same steps
//! (identity match, template rendering, evaluation), so they cannot tell a different story.

use std::fmt;
use std::time::SystemTime;

use serde::Serialize;

use super::{Channel, MAX_NAMED, PolicySet, Refusal, RefusedRight, Subject, WritRequest, reasons};

/// The decision and how each rule took part in it.
#[derive(Debug, Serialize)]
pub struct Explanation {
    /// `allow`, `approval` (granted once humans approve) or the refusal's reason.
    pub decision: String,
    /// The policy that grants the request, when one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "summarized_option"
    )]
    pub refusal: Option<Refusal>,
    pub denies: Vec<RuleTrace>,
    /// The policies of the identity's issuer, in file order.
    pub policies: Vec<RuleTrace>,
    /// Policies for other issuers, not looked at.
    pub other_issuers: usize,
}

/// One rule's part.
#[derive(Debug, Serialize)]
pub struct RuleTrace {
    pub name: String,
    pub origin: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The rule is for another issuer (deny rules only; policies of other issuers are counted).
    OtherIssuer,
    /// The identity's claims do not match: the first claim that does not.
    ClaimMismatch { claim: String },
    /// A template names a claim that is missing or unsafe, so the policy does not match.
    TemplateUnusable { template: String },
    /// The rule's time window does not hold now.
    OutsideWindow { window: String },
    /// A deny rule that matches the identity but covers nothing requested.
    NotApplicable,
    /// A deny rule that refuses these items (the first [`MAX_NAMED`] of each, and how many).
    Fired {
        refused_rights: Vec<RefusedRight>,
        refused_rights_total: usize,
        refused_services: Vec<String>,
        refused_services_total: usize,
    },
    /// A policy that grants everything asked (`approval`: through human approval).
    Grants { ttl: u64, approval: bool },
    /// A policy that matches the identity but refuses these items (named as answers name
    /// them: the first [`MAX_NAMED`] of each, and how many).
    Refuses {
        #[serde(serialize_with = "summarized")]
        refusal: Box<Refusal>,
    },
}

// An explanation lists every rule, so each names at most what an answer would: a request of 512
// (right, operation) pairs explained against 1,000 policies stays a bounded answer.
fn summarized<S: serde::Serializer>(refusal: &Refusal, serializer: S) -> Result<S::Ok, S::Error> {
    refusal.summary().serialize(serializer)
}

fn summarized_option<S: serde::Serializer>(
    refusal: &Option<Refusal>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    refusal.as_ref().map(Refusal::summary).serialize(serializer)
}

impl PolicySet {
    pub fn explain(
        &self,
        subject: Subject<'_>,
        request: &WritRequest,
        channel: Channel,
        at: SystemTime,
    ) -> Explanation {
        let (decision, policy, refusal) = match self.decide(subject, request, channel, at) {
            Ok(permit) if permit.approval.is_some() => {
                ("approval".into(), Some(permit.policy), None)
            }
            Ok(permit) => ("allow".into(), Some(permit.policy), None),
            Err(refusal) => (refusal.reason.to_owned(), None, Some(*refusal)),
        };
        let denies = self
            .denies
            .iter()
            .map(|rule| RuleTrace {
                name: rule.name.clone(),
                origin: rule.origin.clone(),
                outcome: deny_outcome(rule, subject, request, at),
            })
            .collect();
        let (mine, others): (Vec<_>, Vec<_>) = self
            .policies
            .iter()
            .partition(|p| p.issuer == subject.issuer);
        let policies = mine
            .into_iter()
            .map(|policy| RuleTrace {
                name: policy.name.clone(),
                origin: policy.origin.clone(),
                outcome: policy_outcome(policy, subject, request, at),
            })
            .collect();
        Explanation {
            decision,
            policy,
            refusal,
            denies,
            policies,
            other_issuers: others.len(),
        }
    }
}

fn deny_outcome(
    rule: &super::DenyRule,
    subject: Subject<'_>,
    request: &WritRequest,
    at: SystemTime,
) -> Outcome {
    if rule.issuer.as_deref().is_some_and(|i| i != subject.issuer) {
        return Outcome::OtherIssuer;
    }
    if let Some(claim) = rule.claims.mismatch(subject.claims) {
        return Outcome::ClaimMismatch { claim };
    }
    if let Some(window) = rule.window.as_ref().filter(|_| !rule.holds_at(at)) {
        return Outcome::OutsideWindow {
            window: window.to_string(),
        };
    }
    match rule.refuse(request) {
        Some(mut denial) => {
            let (rights, services) = (denial.rights.len(), denial.services.len());
            denial.rights.truncate(MAX_NAMED);
            denial.services.truncate(MAX_NAMED);
            Outcome::Fired {
                refused_rights: denial.rights,
                refused_rights_total: rights,
                refused_services: denial.services,
                refused_services_total: services,
            }
        }
        None => Outcome::NotApplicable,
    }
}

fn policy_outcome(
    policy: &super::Policy,
    subject: Subject<'_>,
    request: &WritRequest,
    at: SystemTime,
) -> Outcome {
    if let Some(claim) = policy.claims.mismatch(subject.claims) {
        return Outcome::ClaimMismatch { claim };
    }
    let Some(grant) = policy.bind(subject) else {
        let template = policy
            .resources
            .iter()
            .map(|t| {
                (
                    t.source(),
                    t.literal().is_some() || t.render(subject.claims).is_some(),
                )
            })
            .chain(policy.services.iter().map(|t| {
                (
                    t.source(),
                    t.literal().is_some() || t.render(subject.claims).is_some(),
                )
            }))
            .find(|(_, usable)| !usable)
            .map(|(source, _)| source.to_owned())
            .unwrap_or_default();
        return Outcome::TemplateUnusable { template };
    };
    match policy.evaluate(&grant, request, at) {
        Ok(permit) => Outcome::Grants {
            ttl: permit.ttl.as_secs(),
            approval: permit.approval.is_some(),
        },
        Err(refusal) if refusal.reason == reasons::OUTSIDE_WINDOW => Outcome::OutsideWindow {
            window: refusal.window.unwrap_or_default(),
        },
        Err(refusal) => Outcome::Refuses { refusal },
    }
}

/// The explanation as people read it, one line per rule.
impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.policy, &self.refusal) {
            (Some(policy), _) if self.decision == "approval" => {
                writeln!(f, "granted with human approval, by policy {policy:?}")?
            }
            (Some(policy), _) => writeln!(f, "allowed by policy {policy:?}")?,
            (None, Some(refusal)) => writeln!(f, "refused ({}): {refusal}", refusal.reason)?,
            (None, None) => writeln!(f, "{}", self.decision)?,
        }
        if !self.denies.is_empty() {
            writeln!(f, "deny rules:")?;
            for trace in &self.denies {
                writeln!(f, "  {trace}")?;
            }
        }
        writeln!(f, "policies for this issuer:")?;
        if self.policies.is_empty() {
            writeln!(f, "  none")?;
        }
        for trace in &self.policies {
            writeln!(f, "  {trace}")?;
        }
        if self.other_issuers > 0 {
            writeln!(
                f,
                "({} policies for other issuers not shown)",
                self.other_issuers
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for RuleTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): ", self.name, self.origin)?;
        match &self.outcome {
            Outcome::OtherIssuer => f.write_str("for another issuer"),
            Outcome::ClaimMismatch { claim } => write!(f, "claim {claim:?} does not match"),
            Outcome::TemplateUnusable { template } => write!(
                f,
                "template {template:?} names a claim that is missing or not a plain value"
            ),
            Outcome::OutsideWindow { window } => write!(f, "outside its window ({window})"),
            Outcome::NotApplicable => f.write_str("matches the identity, covers nothing asked"),
            Outcome::Fired {
                refused_rights,
                refused_services,
                ..
            } => {
                let mut items: Vec<String> = refused_rights
                    .iter()
                    .map(|r| format!("{} {}", r.operation, r.resource))
                    .collect();
                items.extend(refused_services.iter().map(|s| format!("service {s}")));
                write!(f, "FIRES on {}", items.join(", "))
            }
            Outcome::Grants { ttl, approval } => {
                let how = if *approval { " with approval" } else { "" };
                write!(f, "grants all of it{how} (ttl {ttl}s)")
            }
            Outcome::Refuses { refusal } => write!(f, "refuses: {refusal}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::policy::{RawRight, RawWritRequest};

    const POLICIES: &str = r#"
[[policy]]
name = "tenant-data"
issuer = "k8s"
claims = { role = "agent" }
resources = ["tenants/{ns}/*"]
operations = ["read", "delete"]
services = ["api"]
max_ttl = "15m"

[[policy]]
name = "auditors"
issuer = "k8s"
claims = { role = "auditor" }
resources = ["*"]
operations = ["read"]
services = ["api"]
max_ttl = "15m"

[[policy]]
name = "elsewhere"
issuer = "github"
resources = ["*"]
operations = ["read"]
services = ["api"]
max_ttl = "15m"

[[deny]]
name = "no-deletes"
operations = ["delete"]

[[deny]]
name = "github-freeze"
issuer = "github"
"#;

    fn explain(claims: serde_json::Value, op: &str) -> Explanation {
        explain_many(claims, op, 1)
    }

    fn explain_many(claims: serde_json::Value, op: &str, rights: usize) -> Explanation {
        let set =
            PolicySet::parse(Path::new("p.toml"), POLICIES, Duration::from_secs(900)).unwrap();
        let request = WritRequest::parse(&RawWritRequest {
            task: "t".into(),
            rights: (0..rights)
                .map(|i| RawRight {
                    resource: if i == 0 {
                        "tenants/a/1".into()
                    } else {
                        format!("tenants/a/{i}")
                    },
                    operations: vec![op.into()],
                })
                .collect(),
            services: vec!["api".into()],
            ttl: None,
        })
        .unwrap();
        let claims = claims.as_object().unwrap().clone();
        let subject = Subject {
            issuer: "k8s",
            claims: &claims,
        };
        set.explain(subject, &request, Channel::Direct, SystemTime::now())
    }

    #[test]
    fn names_the_policy_that_grants_and_why_the_others_do_not() {
        let explained = explain(json!({"role": "agent", "ns": "a"}), "read");
        assert_eq!(explained.decision, "allow");
        assert_eq!(explained.policy.as_deref(), Some("tenant-data"));
        let text = explained.to_string();
        assert!(
            text.contains("tenant-data (p.toml:2): grants all of it"),
            "{text}"
        );
        assert!(
            text.contains("auditors (p.toml:11): claim \"role\" does not match"),
            "{text}"
        );
        assert!(
            text.contains("github-freeze (p.toml:32): for another issuer"),
            "{text}"
        );
        assert!(text.contains("1 policies for other issuers"), "{text}");
    }

    #[test]
    fn names_the_deny_that_fired_and_unusable_templates() {
        let explained = explain(json!({"role": "agent", "ns": "a"}), "delete");
        assert_eq!(explained.decision, "denied");
        assert!(
            explained
                .to_string()
                .contains("no-deletes (p.toml:28): FIRES on delete tenants/a/1")
        );
        let hostile = explain(json!({"role": "agent", "ns": "a/../b"}), "read");
        assert_eq!(hostile.decision, "no_matching_policy");
        let text = hostile.to_string();
        assert!(text.contains("template \"tenants/{ns}/*\""), "{text}");
        let json = serde_json::to_value(&hostile).unwrap();
        assert_eq!(json["policies"][0]["outcome"], "template_unusable");
    }

    #[test]
    fn each_rule_names_at_most_what_an_answer_names() {
        let explained = explain_many(json!({"role": "agent", "ns": "a"}), "delete", 20);
        let json = serde_json::to_value(&explained).unwrap();
        let fired = &json["denies"][0];
        assert_eq!(fired["outcome"], "fired", "{json:#}");
        assert_eq!(fired["refused_rights"].as_array().unwrap().len(), MAX_NAMED);
        assert_eq!(fired["refused_rights_total"], 20);
        assert_eq!(json["refusal"]["refused_rights_total"], 20);
        assert_eq!(
            json["refusal"]["refused_rights"].as_array().unwrap().len(),
            MAX_NAMED
        );
        let writes = explain_many(json!({"role": "agent", "ns": "b"}), "write", 20);
        let json = serde_json::to_value(&writes).unwrap();
        let refuses = &json["policies"][0]["refusal"];
        assert_eq!(refuses["refused_rights_total"], 20, "{json:#}");
        assert_eq!(
            refuses["refused_rights"].as_array().unwrap().len(),
            MAX_NAMED
        );
    }
}
