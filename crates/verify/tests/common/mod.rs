//! Shared test helpers: minting writs exactly as the broker does (authority block built from
//! parameters only), fixed times, and verifiers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use biscuit_auth::builder::Term;
use biscuit_auth::{Biscuit, KeyPair};
use writ_verify::Verifier;

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

/// Mints `spec` with `root` under key id `kid`, in the writ format.
pub fn mint_with(root: &KeyPair, kid: u32, spec: &WritSpec) -> String {
    let none = HashMap::new;
    let mut builder = Biscuit::builder()
        .code_with_params(
            "writ({v}); writ_id({id}); agent({agent}); task({task}); \
             issued_at({iat}); expires_at({exp});",
            params(&[
                ("v", Term::Integer(spec.version)),
                ("id", s(&spec.writ_id)),
                ("agent", s(&spec.agent)),
                ("task", s(&spec.task)),
                ("iat", Term::from(spec.issued_at)),
                ("exp", Term::from(spec.expires_at)),
            ]),
            none(),
        )
        .unwrap();
    for service in &spec.services {
        builder = builder
            .code_with_params("service({s});", params(&[("s", s(service))]), none())
            .unwrap();
    }
    for (resource, op) in &spec.exact {
        builder = builder
            .code_with_params(
                "right({r}, {op});",
                params(&[("r", s(resource)), ("op", s(op))]),
                none(),
            )
            .unwrap();
    }
    for (prefix, op) in &spec.prefixes {
        builder = builder
            .code_with_params(
                "right($r, {op}) <- resource($r), $r.starts_with({p});",
                params(&[("p", s(prefix)), ("op", s(op))]),
                none(),
            )
            .unwrap();
    }
    builder
        .code_with_params(
            "check if time($t), $t <= {exp}; check if audience($a), service($a);",
            params(&[("exp", Term::from(spec.expires_at))]),
            none(),
        )
        .unwrap()
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
        .build()
        .await
        .unwrap()
}

/// Appends a block of raw Datalog (test-only: lets tests forge what a hostile holder could).
pub fn append_raw(writ: &str, code: &str) -> String {
    let token = biscuit_auth::UnverifiedBiscuit::from_base64(writ).unwrap();
    let block = biscuit_auth::builder::BlockBuilder::new()
        .code(code)
        .unwrap();
    token.append(block).unwrap().to_base64().unwrap()
}
