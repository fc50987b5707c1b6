//! Reading policy files. Every error names the file and the line, whether TOML syntax, an unknown
//! field, a malformed resource, or a lifetime above the broker's cap.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::approval::RawApproval;
use super::condition::RawWindow;
use super::deny::DenyRule;
use super::template::Template;
use super::{ClaimMatcher, Operation, Policy, ResourcePattern, ServiceName};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct PolicyError {
    /// `path:line:column`, or just the path when no position applies.
    pub location: String,
    pub message: String,
}

impl PolicyError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> PolicyError {
        PolicyError {
            location: path.display().to_string(),
            message: error.to_string(),
        }
    }

    pub(crate) fn at(
        path: &Path,
        text: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> PolicyError {
        let (line, column) = line_column(text, span.start);
        PolicyError {
            location: format!("{}:{line}:{column}", path.display()),
            message: message.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    policy: Vec<Spanned<RawPolicy>>,
    #[serde(default)]
    deny: Vec<Spanned<RawDeny>>,
}

/// What one file defines.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    pub policies: Vec<Policy>,
    pub denies: Vec<DenyRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: Spanned<String>,
    issuer: Spanned<String>,
    #[serde(default)]
    claims: Option<Spanned<toml::Table>>,
    resources: Spanned<Vec<Spanned<String>>>,
    operations: Spanned<Vec<Spanned<String>>>,
    services: Spanned<Vec<Spanned<String>>>,
    max_ttl: Spanned<String>,
    default_ttl: Option<Spanned<String>>,
    #[serde(default)]
    ttl_caps: Option<Spanned<std::collections::BTreeMap<String, Spanned<String>>>>,
    #[serde(default)]
    when: Option<Spanned<RawWindow>>,
    #[serde(default)]
    approval: Option<Spanned<RawApproval>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeny {
    name: Spanned<String>,
    issuer: Option<Spanned<String>>,
    #[serde(default)]
    claims: Option<Spanned<toml::Table>>,
    resources: Option<Spanned<Vec<Spanned<String>>>>,
    operations: Option<Spanned<Vec<Spanned<String>>>>,
    services: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    when: Option<Spanned<RawWindow>>,
}

pub(super) fn parse(path: &Path, text: &str, cap: Duration) -> Result<Parsed, PolicyError> {
    let file: PolicyFile = toml::from_str(text).map_err(|error| {
        let span = error.span().unwrap_or(0..0);
        PolicyError::at(path, text, span, error.message().to_owned())
    })?;
    // Names identify rules in refusals and records: one name, one rule, of either kind.
    let mut names = std::collections::HashSet::new();
    let mut unique = |name: &str, span: Range<usize>| {
        if names.insert(name.to_owned()) {
            Ok(())
        } else {
            Err(PolicyError::at(
                path,
                text,
                span,
                format!("{name:?} is defined twice"),
            ))
        }
    };
    let mut parsed = Parsed::default();
    for raw in &file.policy {
        let policy = compile(path, text, raw, cap)?;
        unique(&policy.name, raw.span())?;
        parsed.policies.push(policy);
    }
    for raw in &file.deny {
        let deny = compile_deny(path, text, raw)?;
        unique(&deny.name, raw.span())?;
        parsed.denies.push(deny);
    }
    Ok(parsed)
}

fn compile(
    path: &Path,
    text: &str,
    spanned: &Spanned<RawPolicy>,
    cap: Duration,
) -> Result<Policy, PolicyError> {
    let raw = spanned.get_ref();
    let at = |span: Range<usize>, message: String| PolicyError::at(path, text, span, message);
    if raw.name.get_ref().trim().is_empty() {
        return Err(at(raw.name.span(), "policy name is empty".into()));
    }
    let resources = each(&raw.resources, Template::<ResourcePattern>::parse, &at)?;
    let operations = each(&raw.operations, operation, &at)?;
    let services = each(&raw.services, Template::<ServiceName>::parse, &at)?;
    let max_ttl = ttl(&raw.max_ttl, (cap, BROKER_CAP), &at)?;
    let default_ttl = match &raw.default_ttl {
        Some(value) => ttl(value, (max_ttl, POLICY_CAP), &at)?,
        None => max_ttl,
    };
    let claims = claims(&raw.claims, &at)?;
    let mut ttl_caps = Vec::new();
    if let Some(caps) = &raw.ttl_caps {
        for (name, value) in caps.get_ref() {
            let op = operation(name).map_err(|m| at(caps.span(), m))?;
            if !operations.contains(&op) {
                return Err(at(
                    caps.span(),
                    format!("ttl_caps: {name:?} is not one of the policy's operations"),
                ));
            }
            ttl_caps.push((op, ttl(value, (max_ttl, POLICY_CAP), &at)?));
        }
    }
    let window = window(&raw.when, &at)?;
    let approval = match &raw.approval {
        Some(rule) => Some(
            rule.get_ref()
                .compile(max_ttl)
                .map_err(|m| at(rule.span(), m))?,
        ),
        None => None,
    };
    let (line, _) = line_column(text, spanned.span().start);
    Ok(Policy {
        name: raw.name.get_ref().clone(),
        origin: format!("{}:{line}", path.display()),
        issuer: raw.issuer.get_ref().clone(),
        claims,
        resources,
        operations,
        services,
        max_ttl,
        default_ttl,
        ttl_caps,
        window,
        approval,
    })
}

fn compile_deny(
    path: &Path,
    text: &str,
    spanned: &Spanned<RawDeny>,
) -> Result<DenyRule, PolicyError> {
    let raw = spanned.get_ref();
    let at = |span: Range<usize>, message: String| PolicyError::at(path, text, span, message);
    if raw.name.get_ref().trim().is_empty() {
        return Err(at(raw.name.span(), "deny rule name is empty".into()));
    }
    let literal_resource = |s: &str| {
        if s.contains('{') {
            return Err("deny rules name literal resources: no claim templates".to_owned());
        }
        ResourcePattern::parse(s).map_err(|e| e.to_string())
    };
    let service = |s: &str| ServiceName::parse(s).map_err(|e| e.to_string());
    let (line, _) = line_column(text, spanned.span().start);
    Ok(DenyRule {
        name: raw.name.get_ref().clone(),
        origin: format!("{}:{line}", path.display()),
        issuer: raw.issuer.as_ref().map(|i| i.get_ref().clone()),
        claims: claims(&raw.claims, &at)?,
        resources: raw
            .resources
            .as_ref()
            .map(|l| each(l, literal_resource, &at))
            .transpose()?,
        operations: raw
            .operations
            .as_ref()
            .map(|l| each(l, operation, &at))
            .transpose()?,
        services: raw
            .services
            .as_ref()
            .map(|l| each(l, service, &at))
            .transpose()?,
        window: window(&raw.when, &at)?,
    })
}

fn operation(text: &str) -> Result<Operation, String> {
    Operation::parse(text).map_err(|e| e.to_string())
}

fn claims(
    table: &Option<Spanned<toml::Table>>,
    at: &impl Fn(Range<usize>, String) -> PolicyError,
) -> Result<ClaimMatcher, PolicyError> {
    match table {
        Some(table) => ClaimMatcher::from_table(table.get_ref()).map_err(|m| at(table.span(), m)),
        None => Ok(ClaimMatcher::everything()),
    }
}

fn window(
    raw: &Option<Spanned<RawWindow>>,
    at: &impl Fn(Range<usize>, String) -> PolicyError,
) -> Result<Option<super::condition::TimeWindow>, PolicyError> {
    raw.as_ref()
        .map(|w| w.get_ref().compile().map_err(|m| at(w.span(), m)))
        .transpose()
}

/// Parses every item of a non-empty list, pointing at the first bad one.
fn each<T>(
    list: &Spanned<Vec<Spanned<String>>>,
    parse: impl Fn(&str) -> Result<T, String>,
    at: &impl Fn(Range<usize>, String) -> PolicyError,
) -> Result<Vec<T>, PolicyError> {
    if list.get_ref().is_empty() {
        return Err(at(list.span(), "the list is empty".into()));
    }
    list.get_ref()
        .iter()
        .map(|item| parse(item.get_ref()).map_err(|m| at(item.span(), m)))
        .collect()
}

/// What bounds a lifetime from above, as an error names it.
const BROKER_CAP: &str = "the broker's max_ttl (for `writ policy`: --max-ttl)";
const POLICY_CAP: &str = "this policy's max_ttl";

fn ttl(
    value: &Spanned<String>,
    (ceiling, named): (Duration, &str),
    at: &impl Fn(Range<usize>, String) -> PolicyError,
) -> Result<Duration, PolicyError> {
    let duration = humantime::parse_duration(value.get_ref()).map_err(|e| {
        at(
            value.span(),
            format!("invalid duration {:?}: {e}", value.get_ref()),
        )
    })?;
    if duration < Duration::from_secs(1) || duration > ceiling {
        return Err(at(
            value.span(),
            format!(
                "{} is outside 1s to {}, {named}",
                value.get_ref(),
                humantime::format_duration(ceiling)
            ),
        ));
    }
    Ok(duration)
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CAP: Duration = Duration::from_secs(900);

    fn error(text: &str) -> PolicyError {
        parse(Path::new("p.toml"), text, CAP).unwrap_err()
    }

    const GOOD: &str = r#"
[[policy]]
name = "reader"
issuer = "kubernetes"
claims = { "kubernetes.io" = { namespace = "orders" } }
resources = ["orders/*"]
operations = ["read"]
services = ["orders-api"]
max_ttl = "10m"
default_ttl = "5m"
"#;

    #[test]
    fn a_good_file_compiles() {
        let policies = parse(Path::new("p.toml"), GOOD, CAP).unwrap().policies;
        assert_eq!(policies[0].name, "reader");
        assert_eq!(policies[0].origin, "p.toml:2");
        assert_eq!(policies[0].default_ttl, Duration::from_secs(300));
    }

    #[test]
    fn errors_point_at_the_line() {
        let bad_resource = GOOD.replace("\"orders/*\"", "\"orders/*/x\"");
        assert_eq!(error(&bad_resource).location, "p.toml:6:14");
        let over_cap = GOOD.replace("\"10m\"", "\"2h\"");
        let e = error(&over_cap);
        assert_eq!(e.location, "p.toml:9:11");
        assert!(e.message.contains("outside"), "{e}");
        let unknown = GOOD.replace("max_ttl", "max_tll");
        assert!(
            error(&unknown).location.starts_with("p.toml:"),
            "{}",
            error(&unknown)
        );
        let syntax = "[[policy]\nname = 1";
        assert_eq!(error(syntax).location, "p.toml:1:10");
        let bad_op = GOOD.replace("[\"read\"]", "[\"read\", \"re ad\"]");
        assert_eq!(error(&bad_op).location, "p.toml:7:23");
    }

    #[test]
    fn default_ttl_above_max_and_duplicates_are_refused() {
        let text = GOOD.replace("\"5m\"", "\"11m\"");
        assert_eq!(error(&text).location, "p.toml:10:15");
        let twice = format!("{GOOD}{GOOD}");
        assert!(error(&twice).message.contains("defined twice"));
        let empty = GOOD.replace("[\"orders-api\"]", "[]");
        assert!(error(&empty).message.contains("empty"));
    }
}
