//! Proving that a writ grants an operation on **every** resource under a prefix
//! ([`Verifier::authorize_pattern`](crate::Verifier::authorize_pattern) with `P*`).
//!
//! A Datalog run answers for one request: one `resource(..)` fact. A service that hands out
//! access to a whole prefix (the broker exchanging a writ for cloud credentials scoped to
//! `s3/bucket/reports/*`) needs more: that the writ would grant the operation for *each*
//! resource under the prefix, including those a holder excluded with a check such as
//! `check if resource($r), $r != "reports/secret"`. Datalog cannot say "for all", so the
//! verifier proves it from the writ's shape and runs biscuit for one resource under the prefix.
//!
//! # What is required
//!
//! A prefix request for `P*` and operation `op` is granted only if:
//!
//! 1. biscuit grants the ordinary request for `resource_under(P)` (`P` followed by `x`, a
//!    canonical resource under `P`) and `op`, with everything [`authorize`] does around it:
//!    signatures, size and depth limits, trusted values, revocation view, the time, the
//!    verifier's audience, and for an operation that requires approval the approval check in
//!    its prefix form (evidence approving a prefix `Q` with `P` starting with `Q`;
//!    [`approval::add_check`](crate::approval::add_check));
//! 2. the authority block (signed by a broker root key) holds, besides facts, only rules of the
//!    prefix grant form `right($r, OP) <- resource($r), $r.starts_with(R)` and only the checks
//!    `check if time($t), $t <= DATE` and `check if audience($a), service($a)`, has no scope
//!    annotation, and one of its prefix grants has `OP = op` and `R` a prefix of `P` (an exact
//!    `right(..)` fact never counts, whatever its text);
//! 3. the approval evidence block of an elevated writ (the third-party block at index 1, see
//!    [`approval`](crate::approval)) holds facts only: no rules, no checks, no scope;
//! 4. every other block (an attenuation) holds no facts, no rules, no scope annotation, and
//!    only checks of the four forms [`attenuate`](crate::attenuate()) writes, each recognised
//!    by decoding it from the signed bytes, taking its constants, building the check again
//!    with `attenuate`'s own code from them and comparing the two for equality:
//!    - `check if resource($r), {exact}.contains($r) or resource($r), $r.starts_with(p0) or ..`
//!      with at least one `p_i` that is a prefix of `P` (an exact entry never covers a prefix);
//!    - `check if operation($op), {ops}.contains($op)` with `op` in `ops`;
//!    - `check if audience($a), {svcs}.contains($a)` with the verifier's service in `svcs`;
//!    - `check if time($t), $t <= DATE` (evaluated by the run like any check).
//!
//! Anything else (a `reject if`, a `check all`, an extra predicate or comparison, a different
//! variable, a scope, a rule, a fact, an alternative in another order) makes the prefix
//! unprovable: [`Denial::PrefixNotProvable`](crate::Denial::PrefixNotProvable). Checks are never
//! recognised from printed Datalog, which is ambiguous (biscuit prints strings unescaped).
//!
//! # Why that is sound
//!
//! Claim: if the prefix request is granted at time `t`, then for every canonical resource `r`
//! starting with `P`, `authorize(writ, r, op)` at `t` grants too (with the same keys and
//! revocation view). Everything `authorize` does before the Datalog run (signatures, limits,
//! trusted values, revocation) does not depend on the resource, and was done for (1). The run
//! for `r` differs from the run for `r0 = resource_under(P)` in one authorizer fact only,
//! `resource(r)` instead of `resource(r0)`. Datalog has no negation, and biscuit checks and
//! policies are evaluated over the facts visible to them, so it suffices to look at what can
//! see that fact and change its answer:
//!
//! - **The allow policy** `allow if resource($r), operation($op), right($r, $op)` sees the
//!   authority block and the authorizer. The authority prefix grant of (2) derives
//!   `right(r, op)` from `resource(r)` because `r` starts with `P`, which starts with `R`: the
//!   policy matches for every `r`. No deny policy exists.
//! - **Authority checks** are only the time limit and the audience check of (2). They read
//!   `time`, `audience` and `service`, which no authority rule derives (its rules derive only
//!   `right`), so their answer is the same for every `r`; it was "pass" for `r0`.
//! - **The approval block** (3) adds only facts. Facts of a block are seen only by rules and
//!   checks that trust the block: its own (none), and those trusting its signing key, which is
//!   only the verifier's approval check. That check, in its prefix form, requires
//!   `approved_prefix(Q, op)` with `P` starting with `Q` from a trusted key; for any `r` under
//!   `P`, `r` starts with `Q`, so the ordinary check's prefix branch holds for `r`.
//! - **Attenuation blocks** (4) add no facts or rules, so they change no one else's view; their
//!   checks, with the default scope (the authority block, the authorizer, the block itself),
//!   see the constant facts of the authority block and the authorizer's facts. The operation,
//!   audience and time checks do not read `resource`: same answer for every `r` as for `r0`,
//!   where the run found them passing. A resource check holds when any of its alternatives
//!   holds; one of them is `$r.starts_with(p)` with `P` starting with `p`, so it holds for
//!   `resource(r)` whatever `r` is under `P`. (Biscuit's `starts_with` on strings is the plain
//!   text prefix test used here.)
//!
//! So every check passes and the allow policy matches for every such `r`. Run limits are the
//! only thing that could differ, and they only ever refuse. The converse does not hold, and is
//! not wanted: a writ that grants every resource under `P` by other means (an exact-set check
//! listing them, a check this module does not recognise) is refused as not provable.
//!
//! The run of (1) is what biscuit decides; this proof is only ever a further reason to refuse,
//! never a reason to grant.
//!
//! [`authorize`]: crate::Verifier::authorize

use std::collections::HashMap;

use biscuit_auth::Biscuit;
use biscuit_auth::builder::{BlockBuilder, Check, Convert, Op, Rule, Term};
use biscuit_auth::datalog::SymbolTable;
use biscuit_auth::format::{convert::proto_block_to_token_block, schema};
use prost::Message;

use crate::ResourcePattern;
use crate::approval::APPROVAL_BLOCK;
use crate::attenuate::{self, CheckSource};
use crate::canonical::check_canonical_resource;

/// The prefix grant rule of the writ format, as the broker writes it (src/mint).
const PREFIX_RULE: &str = "right($r, {operation}) <- resource($r), $r.starts_with({prefix})";

/// The authority block's audience check.
const AUDIENCE_CHECK: &str = "check if audience($a), service($a)";

/// The resource the Datalog run of a prefix request names: `prefix` followed by `x`, a
/// canonical resource under `prefix` when the prefix is canonical (empty, a canonical resource,
/// or one followed by `/`). `None` otherwise.
pub(crate) fn resource_under(prefix: &str) -> Option<String> {
    let resource = format!("{prefix}x");
    check_canonical_resource(&resource).ok().map(|()| resource)
}

/// Whether the shape of `token` proves that whatever grants `operation` on
/// [`resource_under(prefix)`](resource_under) grants it on every resource under `prefix` for
/// the verifier of `service` (see the module docs); otherwise why not, in fixed words.
pub(crate) fn prove(
    token: &Biscuit,
    prefix: &str,
    operation: &str,
    service: &str,
) -> Result<(), &'static str> {
    let container = token.container().to_proto();
    // Symbols accumulate over the authority block and every block a holder appended; a
    // third-party block has a table of its own (as biscuit decodes them).
    let mut symbols = SymbolTable::new();

    let authority = decode(&container.authority, &mut symbols)?;
    if authority.scoped {
        return Err("the authority block has a scope annotation");
    }
    if !authority.checks.iter().all(is_authority_check) {
        return Err("the authority block holds a check other than its time limit and audience");
    }
    let mut covered = false;
    for rule in &authority.rules {
        let (granted_operation, granted_prefix) = prefix_grant(rule)
            .ok_or("the authority block holds a rule other than a prefix grant")?;
        covered |= granted_operation == operation && prefix.starts_with(granted_prefix.as_str());
    }
    if !covered {
        return Err("no prefix right of the authority block covers the prefix for the operation");
    }

    for (offset, signed) in container.blocks.iter().enumerate() {
        let index = offset + 1;
        if signed.external_signature.is_some() {
            if index != APPROVAL_BLOCK {
                return Err("a third-party block is allowed only right after the authority block");
            }
            let block = schema::Block::decode(signed.block.as_slice())
                .map_err(|_| "a block cannot be decoded")?;
            if !(block.rules.is_empty() && block.checks.is_empty() && block.scope.is_empty()) {
                return Err("the approval block holds more than facts");
            }
            continue;
        }
        let block = decode(signed, &mut symbols)?;
        if block.facts > 0 || !block.rules.is_empty() {
            return Err("an attenuation block holds facts or rules");
        }
        if block.scoped {
            return Err("an attenuation block has a scope annotation");
        }
        for check in &block.checks {
            match recognize(check) {
                None => return Err("an attenuation block holds a check attenuate does not write"),
                Some(Form::Resources { prefixes }) => {
                    if !prefixes.iter().any(|p| prefix.starts_with(p.as_str())) {
                        return Err("an attenuation block's resource check does not cover the \
                                    whole prefix");
                    }
                }
                Some(Form::Operations(operations)) => {
                    if !operations.iter().any(|o| o == operation) {
                        return Err(
                            "an attenuation block's operation check excludes the operation",
                        );
                    }
                }
                Some(Form::Services(services)) => {
                    if !services.iter().any(|s| s == service) {
                        return Err("an attenuation block's audience check excludes this service");
                    }
                }
                Some(Form::TimeLimit) => {}
            }
        }
    }
    Ok(())
}

/// A block's contents, its terms decoded.
struct Decoded {
    facts: usize,
    rules: Vec<Rule>,
    checks: Vec<Check>,
    scoped: bool,
}

/// Decodes the (first-party) block `signed`, adding its symbols to `symbols` first.
fn decode(
    signed: &schema::SignedBlock,
    symbols: &mut SymbolTable,
) -> Result<Decoded, &'static str> {
    const UNDECODABLE: &str = "a block cannot be decoded";
    let proto = schema::Block::decode(signed.block.as_slice()).map_err(|_| UNDECODABLE)?;
    let block = proto_block_to_token_block(&proto, None).map_err(|_| UNDECODABLE)?;
    symbols.extend(&block.symbols).map_err(|_| UNDECODABLE)?;
    let rules = block
        .rules
        .iter()
        .map(|rule| Rule::convert_from(rule, symbols))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| UNDECODABLE)?;
    let checks = block
        .checks
        .iter()
        .map(|check| Check::convert_from(check, symbols))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| UNDECODABLE)?;
    Ok(Decoded {
        facts: block.facts.len(),
        rules,
        checks,
        scoped: !block.scopes.is_empty(),
    })
}

/// A recognised attenuation check, with what the proof needs of it.
enum Form {
    /// The resource check; its prefixes (its exact resources never cover a prefix).
    Resources { prefixes: Vec<String> },
    /// The operation check's operations.
    Operations(Vec<String>),
    /// The audience check's services.
    Services(Vec<String>),
    /// A time limit.
    TimeLimit,
}

/// The form of `check` if it is exactly what [`attenuate`](crate::attenuate()) writes for the
/// constants it holds.
fn recognize(check: &Check) -> Option<Form> {
    let first = check.queries.first()?.body.first()?.name.as_str();
    let (source, form) = match first {
        "resource" => {
            let mut patterns = Vec::new();
            for query in &check.queries {
                match constants(query).as_slice() {
                    [Term::Set(resources)] => {
                        for resource in resources {
                            let Term::Str(resource) = resource else {
                                return None;
                            };
                            let pattern = ResourcePattern::parse(resource).ok()?;
                            pattern.exact()?;
                            patterns.push(pattern);
                        }
                    }
                    [Term::Str(prefix)] => {
                        let pattern = ResourcePattern::parse(&format!("{prefix}*")).ok()?;
                        pattern.prefix()?;
                        patterns.push(pattern);
                    }
                    _ => return None,
                }
            }
            let prefixes = patterns
                .iter()
                .filter_map(|pattern| pattern.prefix().map(str::to_owned))
                .collect();
            let source = attenuate::resource_check(&patterns).ok()?;
            (source, Form::Resources { prefixes })
        }
        "operation" => {
            let operations = string_set(check)?;
            let source = attenuate::operations_check(&operations).ok()?;
            (source, Form::Operations(operations))
        }
        "audience" => {
            let services = string_set(check)?;
            let source = attenuate::services_check(&services).ok()?;
            (source, Form::Services(services))
        }
        "time" => {
            let [query] = check.queries.as_slice() else {
                return None;
            };
            let [Term::Date(secs)] = constants(query).as_slice() else {
                return None;
            };
            (attenuate::time_check(*secs), Form::TimeLimit)
        }
        _ => return None,
    };
    (rebuilt_check(source)? == *check).then_some(form)
}

/// The authority block's time limit or audience check, exactly.
fn is_authority_check(check: &Check) -> bool {
    let source = match check.queries.as_slice() {
        [query] => match constants(query).as_slice() {
            [Term::Date(secs)] => attenuate::time_check(*secs),
            [] => (AUDIENCE_CHECK.to_owned(), HashMap::new()),
            _ => return false,
        },
        _ => return false,
    };
    rebuilt_check(source).is_some_and(|rebuilt| rebuilt == *check)
}

/// `(operation, prefix)` if `rule` is exactly the broker's prefix grant rule for them.
fn prefix_grant(rule: &Rule) -> Option<(String, String)> {
    // The head's operation comes first, then the prefix of the expression.
    let [Term::Str(operation), Term::Str(prefix)] = constants(rule).as_slice() else {
        return None;
    };
    let params = HashMap::from([
        ("operation".to_owned(), Term::Str(operation.clone())),
        ("prefix".to_owned(), Term::Str(prefix.clone())),
    ]);
    let mut block = BlockBuilder::new()
        .code_with_params(PREFIX_RULE, params, HashMap::new())
        .ok()?;
    let rebuilt = normalized_rule(block.rules.pop()?)?;
    (rebuilt == *rule).then(|| (operation.clone(), prefix.clone()))
}

/// The strings of a one-query check whose only constant is a set of strings.
fn string_set(check: &Check) -> Option<Vec<String>> {
    let [query] = check.queries.as_slice() else {
        return None;
    };
    let [Term::Set(set)] = constants(query).as_slice() else {
        return None;
    };
    set.iter()
        .map(|term| match term {
            Term::Str(text) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// Every constant of `rule` (not variables), in order: head, body, then expressions.
fn constants(rule: &Rule) -> Vec<&Term> {
    let values = rule
        .expressions
        .iter()
        .flat_map(|expression| &expression.ops)
        .filter_map(|op| match op {
            Op::Value(term) => Some(term),
            _ => None,
        });
    rule.head
        .terms
        .iter()
        .chain(rule.body.iter().flat_map(|predicate| &predicate.terms))
        .chain(values)
        .filter(|term| !matches!(term, Term::Variable(_)))
        .collect()
}

/// The check `attenuate` builds from `source`, in the form a decoded check has (parameters
/// applied).
fn rebuilt_check(source: CheckSource) -> Option<Check> {
    let check = attenuate::built_check(source).ok()?;
    for query in &check.queries {
        query.validate_parameters().ok()?;
    }
    let mut symbols = SymbolTable::new();
    let datalog = check.convert(&mut symbols);
    Check::convert_from(&datalog, &symbols).ok()
}

/// `rule` in the form a decoded rule has (parameters applied).
fn normalized_rule(rule: Rule) -> Option<Rule> {
    rule.validate_parameters().ok()?;
    let mut symbols = SymbolTable::new();
    let datalog = rule.convert(&mut symbols);
    Rule::convert_from(&datalog, &symbols).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Attenuation;
    use biscuit_auth::KeyPair;

    #[test]
    fn resources_under_prefixes_are_canonical() {
        assert_eq!(resource_under("").as_deref(), Some("x"));
        assert_eq!(resource_under("reports/").as_deref(), Some("reports/x"));
        assert_eq!(resource_under("reports").as_deref(), Some("reportsx"));
        assert_eq!(resource_under("reports/../"), None);
    }

    fn authority() -> Biscuit {
        Biscuit::builder()
            .code(
                r#"writ(1); right($r, "read") <- resource($r), $r.starts_with("reports/");
                   check if time($t), $t <= 2030-01-01T00:00:00Z;
                   check if audience($a), service($a);"#,
            )
            .unwrap()
            .build(&KeyPair::new())
            .unwrap()
    }

    #[test]
    fn every_form_attenuate_writes_is_recognised() {
        let token = authority();
        let writ = token.to_base64().unwrap();
        let narrowed = attenuate::attenuate(
            &writ,
            &Attenuation {
                resources: Some(vec![
                    ResourcePattern::parse("reports/a/*").unwrap(),
                    ResourcePattern::parse("reports/b").unwrap(),
                    ResourcePattern::parse("reports/*").unwrap(),
                ]),
                operations: Some(vec!["read".into(), "list".into()]),
                services: Some(vec!["svc".into()]),
                expires_at: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1 << 31)),
            },
        )
        .unwrap();
        let token = biscuit_auth::UnverifiedBiscuit::from_base64(&narrowed).unwrap();
        let container = schema::Biscuit::decode(token.to_vec().unwrap().as_slice()).unwrap();
        let mut symbols = SymbolTable::new();
        decode(&container.authority, &mut symbols).unwrap();
        let block = decode(&container.blocks[0], &mut symbols).unwrap();
        let forms: Vec<_> = block.checks.iter().map(recognize).collect();
        assert!(matches!(&forms[0], Some(Form::Resources { prefixes })
            if prefixes == &["reports/", "reports/a/"]));
        assert!(matches!(&forms[1], Some(Form::Operations(ops)) if ops == &["list", "read"]));
        assert!(matches!(&forms[2], Some(Form::Services(s)) if s == &["svc"]));
        assert!(matches!(&forms[3], Some(Form::TimeLimit)));
    }

    #[test]
    fn the_authority_prefix_grant_is_recognised() {
        let token = authority();
        let container = token.container().to_proto();
        let block = decode(&container.authority, &mut SymbolTable::new()).unwrap();
        assert_eq!(
            prefix_grant(&block.rules[0]),
            Some(("read".to_owned(), "reports/".to_owned()))
        );
        assert!(block.checks.iter().all(is_authority_check));
        assert_eq!(prove(&token, "reports/2026/", "read", "svc"), Ok(()));
        assert!(prove(&token, "reports", "read", "svc").is_err());
        assert!(prove(&token, "reports/", "write", "svc").is_err());
    }
}
