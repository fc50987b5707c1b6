//! Approval evidence: what an elevated writ carries when humans approved its request.
//!
//! An elevated writ is a writ (its authority block signed by a root key, unchanged) followed, as
//! block 1, by a Biscuit third-party block signed by one of the broker's **approval keys**. That
//! block holds only facts:
//!
//! ```text
//! approval("ap_<32 hex>", "<approver>", 2026-11-29T10:00:00Z); // per approving human
//! approved_writ("wr_<32 hex>");           // the writ id of the authority block
//! approved_right("orders/42", "delete");  // an exact grant
//! approved_prefix("reports/", "delete");  // a prefix grant (the writ's right "reports/*")
//! ```
//!
//! Scoping does the security work. Facts of a block are visible to the verifier's Datalog only
//! where a rule trusts their origin: the policy trusts the authority block only, so nothing in
//! block 1 can grant; the approval check trusts only blocks signed by a trusted approval key
//! (`trusting {k}`), so evidence written in an attenuation block, in a third-party block signed
//! by any other key, or even in the authority block (the key that mints writs must not be able
//! to approve them) never satisfies it. The writ id the evidence must name is the verified
//! authority block's, passed as a parameter.
//!
//! Nothing here formats Datalog with values: the writ id and the keys are parameters; only
//! parameter names (`{k0}`, `{k1}`, ...) are formatted.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use biscuit_auth::builder::{AuthorizerBuilder, Rule, Term};
use biscuit_auth::error::Token;
use biscuit_auth::{AuthorizerLimits, Biscuit, PublicKey};

use crate::Denial;
use crate::refusal::run_failure;

/// The block index of an elevated writ's approval evidence (right after the authority block).
pub(crate) const APPROVAL_BLOCK: usize = 1;

/// Human approval of the request a writ was issued for, as the broker's approval key signed it.
///
/// Found in [`Grant::approval`](crate::Grant::approval) when the verifier
/// [required approval](crate::VerifierBuilder::require_approval_for) for the request's operation:
/// the evidence then names this writ and covers this exact resource and operation.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApprovalEvidence {
    /// The approval request's id (`ap_...`).
    pub request_id: String,
    /// Every human who approved it (at least one), earliest decision first.
    pub approvals: Vec<Approver>,
}

/// One human's approval.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Approver {
    /// The approver's principal, as the broker knows it.
    pub principal: String,
    /// When the approver decided (seconds precision).
    pub decided_at: SystemTime,
}

/// The key of the third-party block at [`APPROVAL_BLOCK`], if there is one; a third-party block
/// anywhere else (the authority block cannot be one) is not a writ.
pub(crate) fn approval_block_key(
    external_keys: &[Option<PublicKey>],
) -> Result<Option<PublicKey>, Denial> {
    let elsewhere = external_keys
        .iter()
        .enumerate()
        .any(|(index, key)| key.is_some() && index != APPROVAL_BLOCK);
    if elsewhere {
        return Err(Denial::UnsupportedFormat {
            reason: "a third-party block is allowed only right after the authority block",
        });
    }
    Ok(external_keys.get(APPROVAL_BLOCK).copied().flatten())
}

/// Adds to `builder` the check that approval evidence covers this request: signed by one of
/// `keys`, naming `writ_id`, with at least one approval, and granting the request's resource
/// (exactly or by prefix) and operation. One `or` branch per key and grant kind, each trusting
/// only that key, so all the evidence of a branch comes from blocks that key signed. Without
/// keys the check fails whatever the writ holds (fail closed).
///
/// For a request for every resource under `prefix` (`Some`), the evidence must approve a prefix
/// that `prefix` itself starts with (`approved_prefix($p, $op), {prefix}.starts_with($p)`): an
/// approval of one resource, or of a narrower prefix, does not cover the whole prefix, whatever
/// resource the request's authorizer run names.
pub(crate) fn add_check(
    builder: AuthorizerBuilder,
    writ_id: &str,
    keys: &[PublicKey],
    prefix: Option<&str>,
) -> Result<AuthorizerBuilder, Token> {
    if keys.is_empty() {
        return builder.code("check if false");
    }
    let mut branches = Vec::with_capacity(2 * keys.len());
    let mut scope_params = HashMap::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        // Only the parameter's name is formatted; the key enters as a `PublicKey` parameter.
        let k = format!("k{i}");
        if prefix.is_some() {
            branches.push(format!(
                "approved_writ({{writ}}), approval($id, $who, $at), operation($op), \
                 approved_prefix($p, $op), {{prefix}}.starts_with($p) trusting {{{k}}}"
            ));
        } else {
            branches.push(format!(
                "approved_writ({{writ}}), approval($id, $who, $at), resource($r), \
                 operation($op), approved_right($r, $op) trusting {{{k}}}"
            ));
            branches.push(format!(
                "approved_writ({{writ}}), approval($id, $who, $at), resource($r), \
                 operation($op), approved_prefix($p, $op), $r.starts_with($p) trusting {{{k}}}"
            ));
        }
        scope_params.insert(k, *key);
    }
    let code = format!("check if {}", branches.join(" or "));
    let mut params = HashMap::from([("writ".to_owned(), Term::Str(writ_id.to_owned()))]);
    if let Some(prefix) = prefix {
        params.insert("prefix".to_owned(), Term::Str(prefix.to_owned()));
    }
    builder.code_with_params(code, params, scope_params)
}

/// Reads the approval evidence of a verified writ whose block [`APPROVAL_BLOCK`] is signed by the
/// trusted approval key `key`: the `approval` facts of blocks that key signed, provided they name
/// `writ_id` there too. `None` when there is none (or it names another writ). Evidence of the
/// wrong shape (value types, dates out of range, several request ids) is not evidence the broker
/// makes: the writ is refused.
pub(crate) fn read_evidence(
    token: &Biscuit,
    writ_id: &str,
    key: PublicKey,
    limits: AuthorizerLimits,
) -> Result<Option<ApprovalEvidence>, Denial> {
    let internal = |_| Denial::Internal {
        reason: "cannot prepare the approval query",
    };
    let mut rule: Rule = "approval($id, $who, $at) <- approval($id, $who, $at), \
                          approved_writ({writ}) trusting {key}"
        .try_into()
        .map_err(internal)?;
    rule.set("writ", Term::Str(writ_id.to_owned()))
        .map_err(internal)?;
    rule.set_scope("key", key).map_err(internal)?;
    // biscuit panics on a scope parameter left unset when it converts the rule.
    rule.validate_parameters().map_err(internal)?;

    // `query` (not `query_all`) with an explicit scope: only facts of blocks `key` signed (and
    // of this empty authorizer) are read, never an attenuation block's.
    let found: Vec<(Value, Value, Value)> = AuthorizerBuilder::new()
        // On the builder: biscuit-auth 6.0.0 ignores limits given later (#311).
        .set_limits(limits)
        .build(token)
        .map_err(|_| Denial::UnsupportedFormat {
            reason: "a block cannot be loaded",
        })?
        .query(rule)
        .map_err(|error| {
            run_failure(&error).unwrap_or(Denial::Internal {
                reason: "the approval evidence could not be read",
            })
        })?;

    let mut request_id: Option<String> = None;
    let mut approvals = Vec::with_capacity(found.len());
    for (Value(id), Value(who), Value(at)) in found {
        let (Term::Str(id), Term::Str(principal), Term::Date(secs)) = (id, who, at) else {
            return Err(evidence_error("an approval fact has the wrong types"));
        };
        let decided_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .ok_or_else(|| evidence_error("an approval date is out of range"))?;
        match &request_id {
            None => request_id = Some(id),
            Some(first) if *first == id => {}
            Some(_) => return Err(evidence_error("the approvals name several requests")),
        }
        approvals.push(Approver {
            principal,
            decided_at,
        });
    }
    // Datalog answers a set, in no particular order.
    approvals.sort_by(|a, b| (a.decided_at, &a.principal).cmp(&(b.decided_at, &b.principal)));
    Ok(request_id.map(|request_id| ApprovalEvidence {
        request_id,
        approvals,
    }))
}

fn evidence_error(reason: &'static str) -> Denial {
    Denial::UnsupportedFormat { reason }
}

/// A term of any type, read as is (biscuit's own `SystemTime` conversion panics on dates past
/// what `SystemTime` holds).
struct Value(Term);

impl TryFrom<Term> for Value {
    type Error = Token;
    fn try_from(term: Term) -> Result<Value, Token> {
        Ok(Value(term))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use biscuit_auth::KeyPair;

    #[test]
    fn third_party_blocks_only_at_index_one() {
        let key = KeyPair::new().public();
        assert_eq!(approval_block_key(&[None]), Ok(None));
        assert_eq!(approval_block_key(&[None, None, None]), Ok(None));
        assert_eq!(approval_block_key(&[None, Some(key), None]), Ok(Some(key)));
        for keys in [
            vec![Some(key)],
            vec![None, None, Some(key)],
            vec![None, Some(key), Some(key)],
        ] {
            assert!(matches!(
                approval_block_key(&keys),
                Err(Denial::UnsupportedFormat { .. })
            ));
        }
    }

    #[test]
    fn the_check_has_two_branches_per_key_and_none_without_keys() {
        let keys = [KeyPair::new().public(), KeyPair::new().public()];
        let hostile = r#"wr_1"), approved_right("x", "y"#;
        let authorizer = add_check(AuthorizerBuilder::new(), hostile, &keys, None)
            .unwrap()
            .build_unauthenticated()
            .unwrap();
        let (_, _, checks, _) = authorizer.dump();
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].queries.len(), 4);
        let printed = checks[0].to_string();
        assert!(printed.contains(&keys[1].to_string()), "{printed}");

        let for_prefix = add_check(AuthorizerBuilder::new(), "wr_1", &keys, Some("reports/"))
            .unwrap()
            .build_unauthenticated()
            .unwrap();
        let (_, _, checks, _) = for_prefix.dump();
        assert_eq!(checks[0].queries.len(), 2, "one prefix branch per key");

        let closed = add_check(AuthorizerBuilder::new(), "wr_1", &[], None)
            .unwrap()
            .build_unauthenticated()
            .unwrap();
        let (_, _, checks, _) = closed.dump();
        assert_eq!(checks[0].to_string(), "check if false");
    }
}
