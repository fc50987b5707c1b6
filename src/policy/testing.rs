//! Policy tests, kept beside the policies (`*.test.toml`) and run by `writ policy test`, like
//! `opa test`: identity claims and a request in, the expected decision out.
//!
//! ```toml
//! [[case]]
//! name = "the report bot reads orders"
//! issuer = "kubernetes"
//! claims = { "kubernetes.io" = { namespace = "orders", serviceaccount = { name = "report-bot" } } }
//! request = { task = "nightly", rights = [{ resource = "orders/42", operations = ["read"] }], services = ["orders-api"] }
//! expect = "allow"
//!
//! [[case]]
//! name = "but may not write"
//! # ...
//! expect = "deny"
//! refused_rights = ["orders/42:write"]   # optional: exactly these are refused
//! # denied_by = "no-prod-writes"         # optional: the deny rule that must refuse it
//! # refused_ttl_max = 120                # optional: the lifetime is refused above 120 s
//! # at = "2026-11-30T10:00:00Z"          # optional: decide at this instant (time windows)
//!
//! [[case]]
//! name = "deleting needs a human"
//! # ...
//! expect = "approval_required"          # refused directly; POST /v1/approvals would open a request
//! ```

use std::path::Path;
use std::time::SystemTime;

use serde::Deserialize;

use super::{
    Channel, Explanation, Outcome, PolicyError, PolicySet, RawWritRequest, Subject, WritRequest,
    policy_files, reasons,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    issuer: String,
    #[serde(default)]
    claims: toml::Table,
    request: RawWritRequest,
    /// The instant of the request (RFC 3339), for policies with time windows; default now.
    #[serde(default)]
    at: Option<String>,
    expect: Expect,
    #[serde(default)]
    refused_rights: Option<Vec<String>>,
    #[serde(default)]
    refused_services: Option<Vec<String>>,
    /// For `expect = "deny"`: the deny rule that must refuse it.
    #[serde(default)]
    denied_by: Option<String>,
    /// For `expect = "deny"`: the lifetime is refused, and this is the longest allowed, in
    /// seconds.
    #[serde(default)]
    refused_ttl_max: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Expect {
    Allow,
    Deny,
    /// Refused directly, but a policy grants it with human approval.
    ApprovalRequired,
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub file: String,
    pub name: String,
    /// `None` when the case passed, otherwise why it failed, with the explanation of the
    /// decision.
    pub failure: Option<String>,
}

/// The outcome of a test run: each case, and the rules no case exercised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    pub cases: Vec<CaseResult>,
    /// `name (file:line)` of each policy whose identity no case matched, and of each deny rule
    /// no case made fire.
    pub unexercised: Vec<String>,
}

/// Runs every case in the `*.test.toml` files of `dir` against `policies`.
pub fn run_dir(dir: &Path, policies: &PolicySet) -> Result<TestRun, PolicyError> {
    let mut results = Vec::new();
    let mut exercised = std::collections::HashSet::new();
    for path in policy_files(dir, true)? {
        let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::io(&path, e))?;
        let file: CaseFile = toml::from_str(&text).map_err(|error| {
            PolicyError::at(
                &path,
                &text,
                error.span().unwrap_or(0..0),
                error.message().to_owned(),
            )
        })?;
        for case in file.case {
            let failure = match Prepared::new(&case) {
                Ok(prepared) => {
                    let explanation = prepared.explain(policies);
                    exercised.extend(exercised_by(&explanation));
                    run_case(&case, &prepared, policies)
                        .err()
                        .map(|why| format!("{why}\n{explanation}"))
                }
                Err(why) => Some(why),
            };
            results.push(CaseResult {
                file: path.display().to_string(),
                name: case.name.clone(),
                failure,
            });
        }
    }
    let policies_left = policies.policies.iter().map(|p| (&p.name, &p.origin));
    let denies_left = policies.denies.iter().map(|d| (&d.name, &d.origin));
    let unexercised = policies_left
        .chain(denies_left)
        .filter(|(name, _)| !exercised.contains(name.as_str()))
        .map(|(name, origin)| format!("{name} ({origin})"))
        .collect();
    Ok(TestRun {
        cases: results,
        unexercised,
    })
}

/// The rules a case exercised: the policies whose identity it matched (templates included),
/// and the deny rules that fired.
fn exercised_by(explanation: &Explanation) -> Vec<String> {
    let policies = explanation.policies.iter().filter(|trace| {
        matches!(
            trace.outcome,
            Outcome::Grants { .. } | Outcome::Refuses { .. } | Outcome::OutsideWindow { .. }
        )
    });
    let denies = explanation
        .denies
        .iter()
        .filter(|trace| matches!(trace.outcome, Outcome::Fired { .. }));
    policies.chain(denies).map(|t| t.name.clone()).collect()
}

/// A case's identity, request and instant, parsed.
struct Prepared {
    issuer: String,
    claims: serde_json::Map<String, serde_json::Value>,
    request: WritRequest,
    at: SystemTime,
}

impl Prepared {
    fn new(case: &Case) -> Result<Prepared, String> {
        let claims = serde_json::to_value(&case.claims)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        let request =
            WritRequest::parse(&case.request).map_err(|e| format!("invalid request: {e}"))?;
        let at = match &case.at {
            None => SystemTime::now(),
            Some(text) => crate::time::parse_rfc3339(text).map_err(|e| format!("at: {e}"))?,
        };
        Ok(Prepared {
            issuer: case.issuer.clone(),
            claims,
            request,
            at,
        })
    }

    fn subject(&self) -> Subject<'_> {
        Subject {
            issuer: &self.issuer,
            claims: &self.claims,
        }
    }

    fn explain(&self, policies: &PolicySet) -> Explanation {
        policies.explain(self.subject(), &self.request, Channel::Direct, self.at)
    }
}

fn run_case(case: &Case, prepared: &Prepared, policies: &PolicySet) -> Result<(), String> {
    match (
        policies.decide(
            prepared.subject(),
            &prepared.request,
            Channel::Direct,
            prepared.at,
        ),
        case.expect,
    ) {
        (Ok(_), Expect::Allow) => Ok(()),
        (Ok(permit), Expect::Deny | Expect::ApprovalRequired) => Err(format!(
            "expected {}, but policy {:?} allows it",
            case.expect.name(),
            permit.policy
        )),
        (Err(refusal), Expect::ApprovalRequired)
            if refusal.reason == reasons::APPROVAL_REQUIRED =>
        {
            Ok(())
        }
        (Err(refusal), Expect::Deny) if refusal.reason == reasons::APPROVAL_REQUIRED => {
            Err(format!(
                "expected deny, but policy {:?} grants it with approval",
                refusal.policy.unwrap_or_default()
            ))
        }
        (Err(refusal), Expect::ApprovalRequired) => Err(format!(
            "expected approval_required, but it is refused ({}): {}",
            refusal.reason,
            serde_json::to_string(&refusal).unwrap_or_default()
        )),
        (Err(refusal), Expect::Allow) => Err(format!(
            "expected allow, but it is refused ({}): {}",
            refusal.reason,
            serde_json::to_string(&refusal).unwrap_or_default()
        )),
        (Err(refusal), Expect::Deny) => {
            if let Some(rule) = case
                .denied_by
                .as_ref()
                .filter(|r| refusal.deny.as_ref() != Some(r))
            {
                let by = refusal.deny.as_ref().map(|d| format!(" by {d:?}"));
                return Err(format!(
                    "expected deny rule {rule:?} to refuse it, but it is refused ({}{})",
                    refusal.reason,
                    by.unwrap_or_default()
                ));
            }
            if let Some(max) = case.refused_ttl_max {
                let got = refusal.refused_ttl.as_ref().map(|ttl| ttl.max);
                if got != Some(max) {
                    return Err(format!(
                        "refused_ttl_max: expected the lifetime refused above {max}s, got {}",
                        got.map_or("no lifetime refused".to_owned(), |m| format!("{m}s"))
                    ));
                }
            }
            let rights: Vec<String> = refusal
                .refused_rights
                .iter()
                .map(|r| format!("{}:{}", r.resource, r.operation))
                .collect();
            same_set("refused_rights", case.refused_rights.as_deref(), &rights)?;
            same_set(
                "refused_services",
                case.refused_services.as_deref(),
                &refusal.refused_services,
            )
        }
    }
}

impl Expect {
    fn name(self) -> &'static str {
        match self {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
            Expect::ApprovalRequired => "approval_required",
        }
    }
}

fn same_set(what: &str, expected: Option<&[String]>, actual: &[String]) -> Result<(), String> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let mut expected = expected.to_vec();
    let mut actual = actual.to_vec();
    expected.sort();
    actual.sort();
    if expected == actual {
        Ok(())
    } else {
        Err(format!("{what}: expected {expected:?}, got {actual:?}"))
    }
}
