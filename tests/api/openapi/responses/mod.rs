//! Every documented status, provoked for real (on PostgreSQL, so that storage can be broken
//! underneath the broker) and checked against the document. One broker answers the sections in
//! order, a file for each route; later sections use what earlier ones made (admin writs,
//! revocations, audit events), and the last ones break the database. Then every documented
//! response must have been seen.

mod admin_refusals;
mod admin_writs;
mod approvals;
mod audit;
mod exchange;
mod fallbacks;
mod feed;
mod health;
mod policy;
mod revocations;
mod unavailable;
mod writs;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use writ_testkit::{IssuerOptions, TestIssuer};

use super::{Probe, Request, SPEC, spec_methods, spec_paths};
use crate::approvals::APPROVAL_POLICIES;
use crate::helpers::{Backend, POLICIES, Setup, TestBroker, orders_request};

/// Documented responses this test does not provoke: `internal` and `mint_failed` need minting
/// itself (the system's random source, or building a Biscuit token) to fail, and so do the 500s
/// of opening an approval request (its id) and of collecting an elevated writ; the feed's and
/// the stream's 503 need the database gone for seconds, which
/// `revocation::a_broker_that_cannot_read_revocations_does_not_vouch_for_them` does.
const UNPROVOKED: [(&str, &str, &str); 7] = [
    ("POST", "/v1/writs", "500"),
    ("POST", "/v1/revocations", "500"),
    ("POST", "/v1/admin/writs", "500"),
    ("POST", "/v1/approvals", "500"),
    ("GET", "/v1/approvals/{id}", "500"),
    ("GET", "/v1/revocations", "503"),
    ("GET", "/v1/revocations/stream", "503"),
];

/// Documented problem types no test can provoke, for the reasons of [`UNPROVOKED`].
const UNPROVOKED_PROBLEMS: [&str; 2] =
    ["urn:writ:problem:internal", "urn:writ:problem:mint_failed"];

/// Revocation streams the broker under test holds at once.
const STREAMS: usize = 4;

/// What the sections share. The admin writs and the orders bot's writ are made by
/// [`Context::sign_in`], after the writ sections; `deployer` by [`admin_writs`]; the approval
/// requests by [`approvals`].
struct Context {
    broker: TestBroker,
    probe: Probe,
    /// An issuer the broker is configured with whose discovery document names another issuer:
    /// its keys are never fetched.
    impostor: TestIssuer,
    /// The orders bot's identity, which the policies grant the canonical request.
    identity: String,
    /// An admin writ with the admin role, one with the auditor role, one with the approver
    /// role, and one that has expired.
    admin: String,
    auditor: String,
    approver: String,
    expired: String,
    /// A writ issued to the orders bot, and its agent.
    agent_writ: Value,
    agent: String,
    /// An admin writ issued through `POST /v1/admin/writs`, revoked by [`revocations`].
    deployer: Value,
    /// Approval requests of the orders bot that [`unavailable`] decides and collects while
    /// storage is broken: one pending, one approved and not yet collected.
    pending_approval: String,
    approved_approval: String,
    /// The OpenBao and the moto the exchange routes reach ([`exchange`] stops them).
    upstreams: exchange::Upstreams,
}

impl Context {
    async fn start() -> Context {
        let impostor = TestIssuer::start_with(IssuerOptions {
            discovery_issuer_override: Some("https://evil.example".into()),
            ..IssuerOptions::default()
        })
        .await;
        let impostor_url = impostor.issuer();
        let upstreams = exchange::Upstreams::start().await;
        let configure_exchange = upstreams.configure();
        let mut setup = Setup::new(Backend::Postgres);
        setup.policies = format!(
            "{POLICIES}\n{APPROVAL_POLICIES}\n{}",
            exchange::EXCHANGE_POLICY
        );
        setup.tweak = Box::new(move |config| {
            configure_exchange(config);
            // Short enough for the slow-client probe, long enough for everything else.
            config.request_timeout = Duration::from_secs(3);
            config.audit_checkpoint_interval = Duration::from_secs(1);
            config.connections.max_revocation_streams = STREAMS;
            let mut issuer = config.issuers[0].clone();
            issuer.name = "impostor".into();
            issuer.issuer = impostor_url;
            config.issuers.push(issuer);
        });
        let broker = TestBroker::start_with(setup).await;
        Context {
            probe: Probe::new(&broker),
            identity: broker.orders_identity(),
            broker,
            impostor,
            admin: String::new(),
            auditor: String::new(),
            approver: String::new(),
            expired: String::new(),
            agent_writ: Value::Null,
            agent: String::new(),
            deployer: Value::Null,
            pending_approval: String::new(),
            approved_approval: String::new(),
            upstreams,
        }
    }

    /// Makes the admin writs (as `writ admin bootstrap` does) and has the orders bot issued a
    /// writ.
    async fn sign_in(&mut self) {
        self.admin = self.broker.admin_token("root", &["admin"]).await;
        self.auditor = self.broker.admin_token("eve", &["auditor"]).await;
        self.approver = self.broker.admin_token("alice", &["approver"]).await;
        self.expired = self.broker.expired_admin_token();
        self.agent_writ = self.order(201, "").await;
        self.agent = self.agent_writ["agent"].as_str().unwrap().to_owned();
    }

    /// Requests the canonical writ as the orders bot and asserts the status and problem code.
    async fn order(&mut self, status: u16, code: &str) -> Value {
        let request = Request::writ(&self.identity, &orders_request());
        self.probe.expect(request, status, code).await
    }

    /// Posts `body` to an admin route with the admin writ and asserts the status and problem
    /// code.
    async fn as_admin(&mut self, path: &str, body: &Value, status: u16, code: &str) -> Value {
        let request = Request::admin(&self.admin, body);
        self.probe
            .expect_at("POST", path, request, status, code)
            .await
    }

    /// Sends a request with the auditor's writ and asserts the status and problem code.
    async fn as_auditor(&mut self, method: &str, path: &str, status: u16, code: &str) -> Value {
        let request = Request::bearer(&self.auditor);
        self.probe
            .expect_at(method, path, request, status, code)
            .await
    }
}

/// An `Authorization` value for a bearer token.
fn bearer(token: impl std::fmt::Display) -> Option<String> {
    Some(format!("Bearer {token}"))
}

/// Provokes every documented status for real and checks each answer against the document.
#[tokio::test]
async fn every_documented_response_is_answered_as_documented() {
    let mut cx = Context::start().await;
    health::cases(&mut cx).await;
    writs::cases(&mut cx).await;
    cx.sign_in().await;
    admin_writs::cases(&mut cx).await;
    // Revokes the deployer's admin writ, which the refusals then expect refused.
    revocations::cases(&mut cx).await;
    admin_refusals::cases(&mut cx).await;
    // The feed lists the revocations made above; the audit log, everything so far.
    feed::cases(&mut cx).await;
    audit::cases(&mut cx).await;
    policy::cases(&mut cx).await;
    policy::explain_cases(&mut cx).await;
    // Suspends an agent of its own; the feed and the audit log were read above.
    approvals::cases(&mut cx).await;
    // Both exchange routes against OpenBao and moto, which it stops at the end.
    exchange::cases(&mut cx).await;
    // Breaks storage and then drops the database.
    unavailable::cases(&mut cx).await;
    fallbacks::cases(&mut cx).await;
    let Context { broker, probe, .. } = cx;
    broker.stop().await;
    assert_every_response_seen(&probe);
}

/// Every documented response was seen, and every documented problem type, but the
/// [`UNPROVOKED`] ones.
fn assert_every_response_seen(probe: &Probe) {
    let mut documented = BTreeSet::new();
    for path in spec_paths() {
        for method in spec_methods(&path) {
            let responses = SPEC["paths"][&path][method.to_lowercase()]["responses"]
                .as_object()
                .unwrap();
            for status in responses.keys() {
                documented.insert((method.clone(), path.clone(), status.clone()));
            }
        }
    }
    documented.insert(("GET".into(), "*".into(), "404".into()));
    documented.insert(("GET".into(), "/v1/writs".into(), "405".into()));
    for (method, path, status) in UNPROVOKED {
        assert!(documented.remove(&(method.into(), path.into(), status.into())));
    }
    let unseen: Vec<_> = documented.difference(&probe.seen).collect();
    assert!(
        unseen.is_empty(),
        "documented but never answered: {unseen:?}"
    );
    let unseen_problems: Vec<_> = SPEC["components"]["schemas"]["ProblemType"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .filter(|t| !probe.problems.contains(*t) && !UNPROVOKED_PROBLEMS.contains(t))
        .collect();
    assert!(
        unseen_problems.is_empty(),
        "problem types never answered: {unseen_problems:?}"
    );
}
