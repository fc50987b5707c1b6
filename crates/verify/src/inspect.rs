//! Inspection: decoding a writ to look at it, **without verifying anything**.
//!
//! Nothing an inspection shows is trustworthy: anyone can make a token that decodes to any
//! values. Use it to debug and to show a holder what it holds, never to decide access (that is
//! [`Verifier::authorize`](crate::Verifier::authorize)).
//!
//! The values are decoded from the authority block's terms, not by re-parsing the printed
//! source: biscuit prints strings without escaping, so printed Datalog of a hostile token is
//! ambiguous (`agent("x"); right("y", "write")` could be one string).
//!
//! The approval evidence of an elevated writ (a third-party block) is shown as its block says it,
//! with the key that claims to have signed it: whether that key is trusted, and whether the
//! signature holds, is for a verifier to decide.

use std::time::SystemTime;

use biscuit_auth::builder::{Binary, Convert, Fact, Op, Rule, Term};
use biscuit_auth::format::{convert::proto_block_to_token_block, schema};
use biscuit_auth::{PublicKey, UnverifiedBiscuit};
use prost::Message;

use crate::time_limit;

/// What a writ says about itself. **Unverified**: see the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inspection {
    /// The root key id the token names.
    pub root_key_id: Option<u32>,
    /// Each block's Datalog as biscuit prints it (authority first). Strings are printed
    /// unescaped, so this text is for humans only.
    pub blocks: Vec<String>,
    /// The `writ(..)` format version.
    pub version: Option<i64>,
    /// `writ_id(..)` of the authority block.
    pub writ_id: Option<String>,
    /// `agent(..)` of the authority block.
    pub agent: Option<String>,
    /// `task(..)` of the authority block.
    pub task: Option<String>,
    /// `issued_at(..)` of the authority block.
    pub issued_at: Option<SystemTime>,
    /// `expires_at(..)` of the authority block.
    pub expires_at: Option<SystemTime>,
    /// When the writ stops being valid, as a verifier decides it: the earliest of `expires_at`
    /// and every time limit the blocks set (`check if time($t), $t <= ..`, as the authority
    /// block and [`attenuate`](crate::attenuate) write them). A verifier refuses the writ as
    /// `expired` after it.
    pub effective_expires_at: Option<SystemTime>,
    /// The block whose time limit is [`effective_expires_at`](Self::effective_expires_at)
    /// (0 = authority), when a block's limit is earlier than `expires_at`.
    pub expiry_block: Option<usize>,
    /// Every `service(..)` of the authority block.
    pub services: Vec<String>,
    /// The rights the authority block grants, exact facts and prefix rules.
    pub rights: Vec<InspectedRight>,
    /// What every third-party block says as approval evidence (an elevated writ has one, block
    /// 1; a verifier refuses third-party blocks anywhere else). **Unverified**, like the rest:
    /// neither the signature nor the trust in its key is checked.
    pub approvals: Vec<InspectedApproval>,
}

/// The approval evidence of one third-party block, as the block states it. **Unverified.**
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InspectedApproval {
    /// The block's index (1 in an elevated writ).
    pub block: usize,
    /// The key the block names as its signer (`ed25519/<hex>` when printed); not checked here.
    pub signed_by: PublicKey,
    /// Every well-typed `approval(request id, approver, date)` fact.
    pub approvals: Vec<InspectedApprover>,
    /// Every `approved_writ(..)`: the writ ids the evidence says it approves.
    pub approved_writs: Vec<String>,
    /// Every `approved_right(resource, operation)` (exact) and
    /// `approved_prefix(prefix, operation)` (prefix).
    pub rights: Vec<InspectedRight>,
}

/// One `approval(..)` fact of a third-party block. **Unverified.**
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InspectedApprover {
    /// The approval request's id (`ap_...`).
    pub request_id: String,
    /// Who approved.
    pub principal: String,
    /// When they decided.
    pub decided_at: SystemTime,
}

/// One right: granted by the authority block, or approved by approval evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InspectedRight {
    /// The resource or resource prefix.
    pub resource: RightResource,
    /// The operation.
    pub operation: String,
}

/// The resource part of a right.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RightResource {
    /// `right("orders/42", op)`.
    Exact(String),
    /// `right($r, op) <- resource($r), $r.starts_with("orders/")`: the prefix.
    Prefix(String),
}

/// Why a token could not be decoded at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode the token: {0}")]
pub struct InspectError(String);

/// Decodes `writ` for display. **Does not verify signatures, expiry or anything else.**
pub fn inspect(writ: &str) -> Result<Inspection, InspectError> {
    let error = |e: &dyn std::fmt::Display| InspectError(e.to_string());
    let token = UnverifiedBiscuit::from_base64(writ.trim()).map_err(|e| error(&e))?;
    let mut inspection = Inspection {
        root_key_id: token.root_key_id(),
        ..Inspection::default()
    };
    for index in 0..token.block_count() {
        inspection
            .blocks
            .push(token.print_block_source(index).map_err(|e| error(&e))?);
    }

    // The authority block's own terms: decode the container again (biscuit keeps them private).
    let bytes = token.to_vec().map_err(|e| error(&e))?;
    let container = schema::Biscuit::decode(bytes.as_slice()).map_err(|e| error(&e))?;
    let proto_block =
        schema::Block::decode(container.authority.block.as_slice()).map_err(|e| error(&e))?;
    let block = proto_block_to_token_block(&proto_block, None).map_err(|e| error(&e))?;
    for fact in &block.facts {
        let fact = Fact::convert_from(fact, &block.symbols).map_err(|e| error(&e))?;
        read_fact(&mut inspection, fact);
    }
    for rule in &block.rules {
        let rule = Rule::convert_from(rule, &block.symbols).map_err(|e| error(&e))?;
        if let Some(right) = prefix_right(&rule) {
            inspection.rights.push(right);
        }
    }
    for (index, key) in token.external_public_keys().into_iter().enumerate() {
        let (Some(signed_by), Some(signed)) = (
            key,
            index.checked_sub(1).and_then(|i| container.blocks.get(i)),
        ) else {
            continue;
        };
        let proto_block = schema::Block::decode(signed.block.as_slice()).map_err(|e| error(&e))?;
        // A third-party block has symbols of its own: its terms decode without the others'.
        let block =
            proto_block_to_token_block(&proto_block, Some(signed_by)).map_err(|e| error(&e))?;
        let mut approval = InspectedApproval {
            block: index,
            signed_by,
            approvals: Vec::new(),
            approved_writs: Vec::new(),
            rights: Vec::new(),
        };
        for fact in &block.facts {
            let fact = Fact::convert_from(fact, &block.symbols).map_err(|e| error(&e))?;
            read_approval_fact(&mut approval, fact);
        }
        inspection.approvals.push(approval);
    }
    inspection.effective_expires_at = inspection.expires_at;
    let limit =
        time_limit::earliest(&container).and_then(|limit| Some((date(limit.at)?, limit.block)));
    if let Some((at, block)) = limit
        && inspection.expires_at.is_none_or(|expires| at < expires)
    {
        inspection.effective_expires_at = Some(at);
        inspection.expiry_block = Some(block);
    }
    Ok(inspection)
}

fn read_fact(inspection: &mut Inspection, fact: Fact) {
    let name = fact.predicate.name.as_str();
    match (name, fact.predicate.terms.as_slice()) {
        ("writ", [Term::Integer(v)]) => set_once(&mut inspection.version, *v),
        ("writ_id", [Term::Str(s)]) => set_once(&mut inspection.writ_id, s.clone()),
        ("agent", [Term::Str(s)]) => set_once(&mut inspection.agent, s.clone()),
        ("task", [Term::Str(s)]) => set_once(&mut inspection.task, s.clone()),
        ("issued_at", [Term::Date(d)]) => {
            if let Some(at) = date(*d) {
                set_once(&mut inspection.issued_at, at);
            }
        }
        ("expires_at", [Term::Date(d)]) => {
            if let Some(at) = date(*d) {
                set_once(&mut inspection.expires_at, at);
            }
        }
        ("service", [Term::Str(s)]) => inspection.services.push(s.clone()),
        ("right", [Term::Str(resource), Term::Str(operation)]) => {
            inspection.rights.push(InspectedRight {
                resource: RightResource::Exact(resource.clone()),
                operation: operation.clone(),
            });
        }
        _ => {}
    }
}

fn read_approval_fact(approval: &mut InspectedApproval, fact: Fact) {
    let name = fact.predicate.name.as_str();
    match (name, fact.predicate.terms.as_slice()) {
        ("approval", [Term::Str(request_id), Term::Str(principal), Term::Date(d)]) => {
            if let Some(decided_at) = date(*d) {
                approval.approvals.push(InspectedApprover {
                    request_id: request_id.clone(),
                    principal: principal.clone(),
                    decided_at,
                });
            }
        }
        ("approved_writ", [Term::Str(writ_id)]) => approval.approved_writs.push(writ_id.clone()),
        ("approved_right", [Term::Str(resource), Term::Str(operation)]) => {
            approval.rights.push(InspectedRight {
                resource: RightResource::Exact(resource.clone()),
                operation: operation.clone(),
            });
        }
        ("approved_prefix", [Term::Str(prefix), Term::Str(operation)]) => {
            approval.rights.push(InspectedRight {
                resource: RightResource::Prefix(prefix.clone()),
                operation: operation.clone(),
            });
        }
        _ => {}
    }
}

/// Keeps the first value: a repeated fact is visible in the printed block.
fn set_once<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// The time `secs` after the epoch; `None` past what `SystemTime` holds (`+` would panic), so
/// such a date is shown only in the printed block.
fn date(secs: u64) -> Option<SystemTime> {
    SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs))
}

/// Recognises `right($r, "op") <- resource($r), $r.starts_with("prefix")`.
fn prefix_right(rule: &Rule) -> Option<InspectedRight> {
    let [Term::Variable(head_var), Term::Str(operation)] = rule.head.terms.as_slice() else {
        return None;
    };
    let [body] = rule.body.as_slice() else {
        return None;
    };
    let [expression] = rule.expressions.as_slice() else {
        return None;
    };
    let is_prefix_test = matches!(
        expression.ops.as_slice(),
        [Op::Value(Term::Variable(v)), Op::Value(Term::Str(_)), Op::Binary(Binary::Prefix)]
            if v == head_var
    );
    let body_binds_resource =
        body.name == "resource" && body.terms == [Term::Variable(head_var.clone())];
    if rule.head.name != "right" || !is_prefix_test || !body_binds_resource {
        return None;
    }
    let Some(Op::Value(Term::Str(prefix))) = expression.ops.get(1) else {
        return None;
    };
    Some(InspectedRight {
        resource: RightResource::Prefix(prefix.clone()),
        operation: operation.clone(),
    })
}
