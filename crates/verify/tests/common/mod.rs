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
