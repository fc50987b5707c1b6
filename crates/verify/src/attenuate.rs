//! Attenuation: a holder narrows a writ offline, without keys, by appending a block of checks.
//!
//! A block can only add checks, and a check can only refuse, so whatever the result grants is a
//! subset of what the input granted. Values enter the Datalog only as parameters (the Datalog
//! text below holds parameter names this module makes up, never caller text).

use std::collections::{BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use biscuit_auth::UnverifiedBiscuit;
use biscuit_auth::builder::{BlockBuilder, Check, Term};

use crate::ResourcePattern;

/// How to narrow a writ. Each `Some` adds one check; `None` leaves that dimension as it was.
///
/// ```
/// use writ_verify::{Attenuation, ResourcePattern};
/// let narrower = Attenuation {
///     resources: Some(vec![ResourcePattern::parse("orders/42").unwrap()]),
///     operations: Some(vec!["read".into()]),
///     ..Attenuation::default()
/// };
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attenuation {
    /// Only these resources (exact or prefix patterns).
    pub resources: Option<Vec<ResourcePattern>>,
    /// Only these operations.
    pub operations: Option<Vec<String>>,
    /// Only when presented to one of these services.
    pub services: Option<Vec<String>>,
    /// Not after this time (seconds precision; an earlier limit than the writ's own).
    pub expires_at: Option<SystemTime>,
}

/// Why a writ could not be attenuated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttenuateError {
    /// Every field of the attenuation is `None`: it would not narrow anything.
    #[error("the attenuation restricts nothing")]
    Empty,
    /// A list is empty; that would make the writ useless (drop the writ instead).
    #[error("the {0} list is empty")]
    EmptyList(&'static str),
    /// An operation or service name is empty or holds control characters.
    #[error("an entry of the {0} list is empty or holds control characters")]
    InvalidName(&'static str),
    /// The expiry is before 1970.
    #[error("the expiry is before 1970")]
    InvalidExpiry,
    /// The input is not a Biscuit token.
    #[error("not a writ: {0}")]
    Malformed(String),
    /// biscuit-auth refused to append the block (e.g. a sealed token).
    #[error("cannot append the block: {0}")]
    Append(String),
}

/// Appends a block narrowing `writ` as `attenuation` says, and returns the new writ (base64).
///
/// Works offline: the signature is not checked here (a verifier will), and the new block is
/// signed with a fresh ephemeral key as Biscuit requires.
pub fn attenuate(writ: &str, attenuation: &Attenuation) -> Result<String, AttenuateError> {
    let block = attenuation_block(attenuation)?;
    let token = UnverifiedBiscuit::from_base64(writ.trim())
        .map_err(|e| AttenuateError::Malformed(e.to_string()))?;
    token
        .append(block)
        .and_then(|t| t.to_base64())
        .map_err(|e| AttenuateError::Append(e.to_string()))
}

/// The block of checks for `attenuation`.
pub(crate) fn attenuation_block(attenuation: &Attenuation) -> Result<BlockBuilder, AttenuateError> {
    let Attenuation {
        resources,
        operations,
        services,
        expires_at,
    } = attenuation;
    if resources.is_none() && operations.is_none() && services.is_none() && expires_at.is_none() {
        return Err(AttenuateError::Empty);
    }
    let mut block = BlockBuilder::new();
    if let Some(patterns) = resources {
        block = with_check(block, resource_check(patterns)?)?;
    }
    if let Some(operations) = operations {
        block = with_check(block, operations_check(operations)?)?;
    }
    if let Some(services) = services {
        block = with_check(block, services_check(services)?)?;
    }
    if let Some(expires_at) = expires_at {
        let secs = expires_at
            .duration_since(UNIX_EPOCH)
            .map_err(|_| AttenuateError::InvalidExpiry)?
            .as_secs();
        block = with_check(block, time_check(secs))?;
    }
    Ok(block)
}

/// The Datalog of one check, and the values of its parameters.
pub(crate) type CheckSource = (String, HashMap<String, Term>);

/// The one check of `source`, exactly as [`attenuate`] puts it in a block: what the prefix
/// proof ([`crate::prefix`]) compares a decoded check with.
pub(crate) fn built_check(source: CheckSource) -> Result<Check, AttenuateError> {
    let mut block = with_check(BlockBuilder::new(), source)?;
    match (block.checks.pop(), block.checks.is_empty()) {
        (Some(check), true) => Ok(check),
        _ => Err(AttenuateError::Append("not one check".to_owned())),
    }
}

fn with_check(
    block: BlockBuilder,
    (code, params): CheckSource,
) -> Result<BlockBuilder, AttenuateError> {
    block
        .code_with_params(code, params, HashMap::new())
        .map_err(|e| AttenuateError::Append(e.to_string()))
}

/// `check if resource($r), {exact}.contains($r) or resource($r), $r.starts_with({p0}) or ...`
/// (the exact set only when there are exact patterns; prefixes deduplicated, in order).
pub(crate) fn resource_check(patterns: &[ResourcePattern]) -> Result<CheckSource, AttenuateError> {
    if patterns.is_empty() {
        return Err(AttenuateError::EmptyList("resources"));
    }
    let mut exact = BTreeSet::new();
    let mut prefixes = BTreeSet::new();
    for pattern in patterns {
        match (pattern.exact(), pattern.prefix()) {
            (Some(resource), _) => exact.insert(Term::Str(resource.to_owned())),
            (_, Some(prefix)) => prefixes.insert(prefix.to_owned()),
            (None, None) => false,
        };
    }
    let mut alternatives = Vec::new();
    let mut params = HashMap::new();
    if !exact.is_empty() {
        alternatives.push("resource($r), {exact}.contains($r)".to_owned());
        params.insert("exact".to_owned(), Term::Set(exact));
    }
    for (i, prefix) in prefixes.into_iter().enumerate() {
        alternatives.push(format!("resource($r), $r.starts_with({{p{i}}})"));
        params.insert(format!("p{i}"), Term::Str(prefix));
    }
    Ok((format!("check if {}", alternatives.join(" or ")), params))
}

/// `check if operation($op), {ops}.contains($op)`.
pub(crate) fn operations_check(operations: &[String]) -> Result<CheckSource, AttenuateError> {
    let ops = name_set(operations, "operations")?;
    let code = "check if operation($op), {ops}.contains($op)".to_owned();
    Ok((code, HashMap::from([("ops".to_owned(), ops)])))
}

/// `check if audience($a), {svcs}.contains($a)`.
pub(crate) fn services_check(services: &[String]) -> Result<CheckSource, AttenuateError> {
    let svcs = name_set(services, "services")?;
    let code = "check if audience($a), {svcs}.contains($a)".to_owned();
    Ok((code, HashMap::from([("svcs".to_owned(), svcs)])))
}

/// `check if time($t), $t <= {exp}`, `secs` seconds after the epoch.
pub(crate) fn time_check(secs: u64) -> CheckSource {
    let code = "check if time($t), $t <= {exp}".to_owned();
    (code, HashMap::from([("exp".to_owned(), Term::Date(secs))]))
}

fn name_set(names: &[String], what: &'static str) -> Result<Term, AttenuateError> {
    if names.is_empty() {
        return Err(AttenuateError::EmptyList(what));
    }
    if names
        .iter()
        .any(|n| n.is_empty() || n.chars().any(char::is_control))
    {
        return Err(AttenuateError::InvalidName(what));
    }
    Ok(Term::Set(
        names.iter().map(|n| Term::Str(n.clone())).collect(),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pattern(text: &str) -> ResourcePattern {
        ResourcePattern::parse(text).unwrap()
    }

    #[test]
    fn empty_attenuations_are_errors() {
        assert_eq!(
            attenuation_block(&Attenuation::default()).unwrap_err(),
            AttenuateError::Empty
        );
        let empty_ops = Attenuation {
            operations: Some(vec![]),
            ..Attenuation::default()
        };
        assert_eq!(
            attenuation_block(&empty_ops).unwrap_err(),
            AttenuateError::EmptyList("operations")
        );
        let bad_name = Attenuation {
            services: Some(vec!["a\nb".into()]),
            ..Attenuation::default()
        };
        assert_eq!(
            attenuation_block(&bad_name).unwrap_err(),
            AttenuateError::InvalidName("services")
        );
    }

    #[test]
    fn block_holds_only_parameterised_checks() {
        let hostile = "x\"); right(\"y\", \"write\"); //";
        let block = attenuation_block(&Attenuation {
            resources: Some(vec![
                pattern("orders/42"),
                pattern("reports/*"),
                // Canonical resources carry no raw quotes, but `)`, `;` and `,` are allowed.
                pattern("x%22);right(%22y%22,%22write%22);"),
            ]),
            operations: Some(vec!["read".into(), hostile.into()]),
            services: Some(vec!["orders-api".into()]),
            expires_at: Some(UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000)),
        })
        .unwrap();
        assert!(block.facts.is_empty());
        assert!(block.rules.is_empty());
        assert_eq!(block.checks.len(), 4);
        // Four alternatives would mean the hostile text became Datalog; it is one set element.
        assert_eq!(block.checks[0].queries.len(), 2);
    }

    #[test]
    fn malformed_writs_are_refused() {
        let only_ops = Attenuation {
            operations: Some(vec!["read".into()]),
            ..Attenuation::default()
        };
        assert!(matches!(
            attenuate("not a writ", &only_ops),
            Err(AttenuateError::Malformed(_))
        ));
    }
}
