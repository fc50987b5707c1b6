//! Shared test helpers: minting writs exactly as the broker does (authority block built from
//! parameters only), fixed times, and verifiers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use biscuit_auth::builder::{BiscuitBuilder, Term};
use biscuit_auth::{Biscuit, KeyPair};
use writ_verify::{Denial, Grant, Verifier};

pub const KID: u32 = 1;

/// 2026-11-22T10:00:00Z: when test writs are issued.
pub fn issued() -> SystemTime {
    humantime::parse_rfc3339("2026-11-22T10:00:00Z").unwrap()
}

/// Five minutes into the writs' fifteen-minute life.
pub fn now() -> SystemTime {
    issued() + Duration::from_secs(300)
}

pub fn expires() -> SystemTime {
    issued() + Duration::from_secs(900)
}

/// What the broker puts in a writ.
#[derive(Clone, Debug)]
pub struct WritSpec {
    pub version: i64,
    pub writ_id: String,
    pub agent: String,
    pub task: String,
    pub issued_at: SystemTime,
    pub expires_at: SystemTime,
    pub services: Vec<String>,
    /// (resource, operation)
    pub exact: Vec<(String, String)>,
    /// (prefix without '*', operation)
    pub prefixes: Vec<(String, String)>,
}

impl Default for WritSpec {
    fn default() -> Self {
        WritSpec {
            version: 1,
            writ_id: "wr_01".into(),
            agent: "agent-7".into(),
            task: "refund-42".into(),
            issued_at: issued(),
            expires_at: expires(),
            services: vec!["orders-api".into()],
            exact: vec![("orders/42".into(), "read".into())],
            prefixes: vec![],
        }
    }
}

fn params(pairs: &[(&str, Term)]) -> HashMap<String, Term> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn s(text: &str) -> Term {
    Term::Str(text.to_owned())
}

/// Adds `code` with the parameters `pairs` to the authority block being built.
fn with_code(builder: BiscuitBuilder, code: &str, pairs: &[(&str, Term)]) -> BiscuitBuilder {
    builder
        .code_with_params(code, params(pairs), HashMap::new())
        .unwrap()
}

/// Mints `spec` with `root` under key id `kid`, in the writ format.
pub fn mint_with(root: &KeyPair, kid: u32, spec: &WritSpec) -> String {
    let mut builder = with_code(
        Biscuit::builder(),
        "writ({v}); writ_id({id}); agent({agent}); task({task}); \
         issued_at({iat}); expires_at({exp});",
        &[
            ("v", Term::Integer(spec.version)),
            ("id", s(&spec.writ_id)),
            ("agent", s(&spec.agent)),
            ("task", s(&spec.task)),
            ("iat", Term::from(spec.issued_at)),
            ("exp", Term::from(spec.expires_at)),
        ],
    );
    for service in &spec.services {
        builder = with_code(builder, "service({s});", &[("s", s(service))]);
    }
    for (resource, op) in &spec.exact {
        builder = with_code(
            builder,
            "right({r}, {op});",
            &[("r", s(resource)), ("op", s(op))],
        );
    }
    for (prefix, op) in &spec.prefixes {
        builder = with_code(
            builder,
            "right($r, {op}) <- resource($r), $r.starts_with({p});",
            &[("p", s(prefix)), ("op", s(op))],
        );
    }
    with_code(
        builder,
        "check if time($t), $t <= {exp}; check if audience($a), service($a);",
        &[("exp", Term::from(spec.expires_at))],
    )
    .root_key_id(kid)
    .build(root)
    .unwrap()
    .to_base64()
    .unwrap()
}

pub fn mint(root: &KeyPair, spec: &WritSpec) -> String {
    mint_with(root, KID, spec)
}

pub async fn verifier(service: &str, root: &KeyPair) -> Verifier {
    Verifier::builder(service)
        .static_keys([(KID, root.public())])
        .no_revocation()
        .build()
        .await
        .unwrap()
}

/// `verifier`'s answer to reading `orders/42` with `writ` at `at`.
pub fn read_at(verifier: &Verifier, writ: &str, at: SystemTime) -> Result<Grant, Denial> {
    verifier.authorize_at(writ, "orders/42", "read", at)
}

/// Appends a block of raw Datalog (test-only: lets tests forge what a hostile holder could).
pub fn append_raw(writ: &str, code: &str) -> String {
    let token = biscuit_auth::UnverifiedBiscuit::from_base64(writ).unwrap();
    let block = biscuit_auth::builder::BlockBuilder::new()
        .code(code)
        .unwrap();
    token.append(block).unwrap().to_base64().unwrap()
}

/// When the test approvals were decided: just before the writs were issued.
pub fn decided() -> SystemTime {
    issued() - Duration::from_secs(60)
}

pub const REQUEST_ID: &str = "ap_0123456789abcdef0123456789abcdef";

/// What the broker puts in an elevated writ's approval block (block 1, a third-party block signed
/// by an approval key).
#[derive(Clone, Debug)]
pub struct EvidenceSpec {
    /// (request id, approver, decision time): one `approval(..)` per approving human.
    pub approvals: Vec<(String, String, SystemTime)>,
    /// `approved_writ(..)` facts.
    pub writ_ids: Vec<String>,
    /// (resource, operation)
    pub exact: Vec<(String, String)>,
    /// (prefix without '*', operation)
    pub prefixes: Vec<(String, String)>,
}

impl Default for EvidenceSpec {
    fn default() -> Self {
        EvidenceSpec {
            approvals: vec![(REQUEST_ID.into(), "alice@example.com".into(), decided())],
            writ_ids: vec!["wr_01".into()],
            exact: vec![("orders/42".into(), "delete".into())],
            prefixes: vec![],
        }
    }
}

/// The approval block's facts, every value a parameter, as the broker builds them.
pub fn evidence_block(spec: &EvidenceSpec) -> biscuit_auth::builder::BlockBuilder {
    fn add(
        block: biscuit_auth::builder::BlockBuilder,
        code: &str,
        pairs: &[(&str, Term)],
    ) -> biscuit_auth::builder::BlockBuilder {
        block
            .code_with_params(code, params(pairs), HashMap::new())
            .unwrap()
    }
    let mut block = biscuit_auth::builder::BlockBuilder::new();
    for (request, approver, at) in &spec.approvals {
        block = add(
            block,
            "approval({id}, {who}, {at});",
            &[
                ("id", s(request)),
                ("who", s(approver)),
                ("at", Term::from(*at)),
            ],
        );
    }
    for writ_id in &spec.writ_ids {
        block = add(block, "approved_writ({w});", &[("w", s(writ_id))]);
    }
    for (resource, op) in &spec.exact {
        block = add(
            block,
            "approved_right({r}, {op});",
            &[("r", s(resource)), ("op", s(op))],
        );
    }
    for (prefix, op) in &spec.prefixes {
        block = add(
            block,
            "approved_prefix({p}, {op});",
            &[("p", s(prefix)), ("op", s(op))],
        );
    }
    block
}

/// Appends `block` to `writ` (signed by `root`) as a third-party block signed by `signer`.
pub fn append_third_party(
    writ: &str,
    root: &KeyPair,
    signer: &KeyPair,
    block: biscuit_auth::builder::BlockBuilder,
) -> String {
    let token = Biscuit::from_base64(writ, root.public()).unwrap();
    let signed = token
        .third_party_request()
        .unwrap()
        .create_block(&signer.private(), block)
        .unwrap();
    token
        .append_third_party(signer.public(), signed)
        .unwrap()
        .to_base64()
        .unwrap()
}

/// Makes `writ` an elevated writ: appends the approval block of `spec` signed by `approval`.
pub fn elevate(writ: &str, root: &KeyPair, approval: &KeyPair, spec: &EvidenceSpec) -> String {
    append_third_party(writ, root, approval, evidence_block(spec))
}
