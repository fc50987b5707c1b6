//! The cost of one policy decision (`PolicySet::decide`) at fleet size: 1,000 policies from three
//! issuers, as a platform team would write them. Mostly literal claims (a policy per Kubernetes
//! namespace, per GitHub repository, per SPIFFE workload), some with prefix matchers (a SPIFFE
//! namespace, a GitHub organization's release branches), about 10% templated (rights drawn from the
//! identity's claims), and approval policies for deletes. The goal is a median under 20 µs.
//!
//! Cases:
//! - `end-of-file`: a request a policy near the end of the file permits directly;
//! - `no-match`: an identity no policy matches (every policy has to be ruled out);
//! - `approval`: a delete only an approval policy permits, asked on the approval channel;
//! - `templated`: a request a templated policy permits once rendered for the identity;
//! - `denied`: a request one of the 20 deny rules refuses.
//!
//! ```text
//! cargo bench --bench policy
//! ```
//!
//! Criterion's median for each case is in `target/criterion/decide/<case>/new/estimates.json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use writ::policy::{Channel, PolicySet, RawRight, RawWritRequest, Subject, WritRequest, reasons};

const NAMESPACES: usize = 350;
const NAMESPACE_DELETES: usize = 50;
const REPOSITORIES: usize = 300;
const RELEASE_ORGS: usize = 20;
const TEMPLATED: usize = 100;
const WORKLOADS: usize = 170;
const SPIFFE_NAMESPACES: usize = 10;
/// Deny rules, checked before every decision: half for every issuer, half for one.
const DENIES: usize = 20;

/// The policy file: 1,000 policies in the order a team would grow them.
fn policies() -> String {
    let mut text = String::new();
    let mut add = |policy: String| text.push_str(&policy);
    for i in 0..NAMESPACES {
        add(format!(
            r#"
[[policy]]
name = "ns-{i}-agents"
issuer = "kubernetes"
claims = {{ "kubernetes.io" = {{ namespace = "ns-{i}", serviceaccount = {{ name = "agent" }} }} }}
resources = ["tenants/ns-{i}/*"]
operations = ["read", "write"]
services = ["ns-{i}-api"]
max_ttl = "15m"
default_ttl = "5m"
"#
        ));
    }
    for i in 0..NAMESPACE_DELETES {
        add(format!(
            r#"
[[policy]]
name = "ns-{i}-deletes"
issuer = "kubernetes"
claims = {{ "kubernetes.io" = {{ namespace = "ns-{i}", serviceaccount = {{ name = "agent" }} }} }}
resources = ["tenants/ns-{i}/*"]
operations = ["delete"]
services = ["ns-{i}-api"]
max_ttl = "15m"
[policy.approval]
approvers = ["role:approver"]
"#
        ));
    }
    for i in 0..REPOSITORIES {
        add(format!(
            r#"
[[policy]]
name = "repo-{i}-deploy"
issuer = "github"
claims = {{ repository = "acme/repo-{i}", workflow = "deploy", ref = "refs/heads/main" }}
resources = ["deployments/repo-{i}", "deployments/repo-{i}/*"]
operations = ["read", "write"]
services = ["deploy-api"]
max_ttl = "15m"
"#
        ));
    }
    for i in 0..RELEASE_ORGS {
        add(format!(
            r#"
[[policy]]
name = "org-{i}-releases"
issuer = "github"
claims = {{ repository_owner = "org-{i}", ref = "refs/heads/release-*" }}
resources = ["artifacts/org-{i}/*"]
operations = ["write"]
services = ["artifacts-api"]
max_ttl = "10m"
"#
        ));
    }
    for i in 0..TEMPLATED {
        add(templated(i));
    }
    for i in 0..SPIFFE_NAMESPACES {
        add(format!(
            r#"
[[policy]]
name = "spiffe-ns-{i}"
issuer = "spire"
claims = {{ sub = "spiffe://acme.org/ns/team-{i}/*" }}
resources = ["teams/team-{i}/*"]
operations = ["read"]
services = ["team-{i}-api"]
max_ttl = "5m"
"#
        ));
    }
    for i in 0..WORKLOADS {
        add(format!(
            r#"
[[policy]]
name = "workload-{i}"
issuer = "spire"
claims = {{ sub = "spiffe://acme.org/ns/team-{}/sa/workload-{i}" }}
resources = ["workloads/workload-{i}/*"]
operations = ["read", "write"]
services = ["workload-{i}-api"]
max_ttl = "10m"
"#,
            i % SPIFFE_NAMESPACES
        ));
    }
    for i in 0..DENIES {
        add(if i % 2 == 0 {
            format!(
                "\n[[deny]]\nname = \"no-writes-in-prod-{i}\"\nresources = [\"prod-{i}/*\"]\n\
                 operations = [\"write\", \"delete\"]\n"
            )
        } else {
            format!(
                "\n[[deny]]\nname = \"compromised-{i}\"\nissuer = \"kubernetes\"\n\
                 claims = {{ \"kubernetes.io\" = {{ namespace = \"ns-{i}-old\" }} }}\n"
            )
        });
    }
    text
}

/// A templated policy: half of them give each namespace's platform bots its own tenant data,
/// half give each GitHub organization's CI its own artifacts.
fn templated(i: usize) -> String {
    let mut text = String::new();
    if i.is_multiple_of(2) {
        let resource = "tenants/{kubernetes.io/namespace}/bot-{i}/*".replace("{i}", &i.to_string());
        let service = "{kubernetes.io/namespace}-api";
        write!(
            text,
            r#"
[[policy]]
name = "bot-{i}-tenant-data"
issuer = "kubernetes"
claims = {{ "kubernetes.io" = {{ serviceaccount = {{ name = "bot-{i}" }} }} }}
resources = ["{resource}"]
operations = ["read"]
services = ["{service}"]
max_ttl = "5m"
"#
        )
        .unwrap();
    } else {
        let resource = "artifacts/{repository_owner}/ci-{i}/*".replace("{i}", &i.to_string());
        let service = "{repository_owner}-ci";
        write!(
            text,
            r#"
[[policy]]
name = "ci-{i}-artifacts"
issuer = "github"
claims = {{ workflow = "ci-{i}", ref = "refs/heads/main" }}
resources = ["{resource}"]
operations = ["read", "write"]
services = ["{service}"]
max_ttl = "5m"
"#
        )
        .unwrap();
    }
    text
}

fn kubernetes(namespace: &str) -> Map<String, Value> {
    kubernetes_account(namespace, "agent")
}

fn kubernetes_account(namespace: &str, account: &str) -> Map<String, Value> {
    claims(json!({
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": format!("system:serviceaccount:{namespace}:agent"),
        "aud": ["writ"],
        "exp": 1_900_000_000, "iat": 1_899_999_400, "nbf": 1_899_999_400,
        "kubernetes.io": {
            "namespace": namespace,
            "pod": { "name": "agent-7d9f8b6c5-x2x7k", "uid": "0f6d6a1e-6a47-4d2b-9a51-1d2c4b8e9f00" },
            "serviceaccount": { "name": account, "uid": "5b1f3c2e-8f0a-4c7d-b3e6-2a9d8c7e6f51" },
        },
    }))
}

fn spiffe(sub: &str) -> Map<String, Value> {
    claims(json!({ "sub": sub, "aud": ["writ"], "exp": 1_900_000_000, "iat": 1_899_999_400 }))
}

fn claims(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn request(resource: &str, operation: &str, service: &str) -> WritRequest {
    WritRequest::parse(&RawWritRequest {
        task: "bench".into(),
        rights: vec![RawRight {
            resource: resource.into(),
            operations: vec![operation.into()],
        }],
        services: vec![service.into()],
        ttl: None,
    })
    .unwrap()
}

struct Case {
    name: &'static str,
    issuer: &'static str,
    claims: Map<String, Value>,
    request: WritRequest,
    channel: Channel,
    /// The policy that permits it, or the refusal reason.
    expect: Result<String, &'static str>,
}

fn cases() -> Vec<Case> {
    let last = WORKLOADS - 2;
    vec![
        Case {
            name: "end-of-file",
            issuer: "spire",
            claims: spiffe(&format!(
                "spiffe://acme.org/ns/team-{}/sa/workload-{last}",
                last % SPIFFE_NAMESPACES
            )),
            request: request(
                &format!("workloads/workload-{last}/reports"),
                "write",
                &format!("workload-{last}-api"),
            ),
            channel: Channel::Direct,
            expect: Ok(format!("workload-{last}")),
        },
        Case {
            name: "templated",
            issuer: "kubernetes",
            claims: kubernetes_account("ns-7", "bot-40"),
            request: request("tenants/ns-7/bot-40/x", "read", "ns-7-api"),
            channel: Channel::Direct,
            expect: Ok("bot-40-tenant-data".to_owned()),
        },
        Case {
            name: "denied",
            issuer: "kubernetes",
            claims: kubernetes("ns-3"),
            request: request("prod-2/db", "write", "ns-3-api"),
            channel: Channel::Direct,
            expect: Err(reasons::DENIED),
        },
        Case {
            name: "no-match",
            issuer: "kubernetes",
            claims: kubernetes("ns-unknown"),
            request: request("tenants/ns-unknown/data", "read", "ns-unknown-api"),
            channel: Channel::Direct,
            expect: Err(reasons::NO_MATCHING_POLICY),
        },
        Case {
            name: "approval",
            issuer: "kubernetes",
            claims: kubernetes("ns-42"),
            request: request("tenants/ns-42/orders/7", "delete", "ns-42-api"),
            channel: Channel::Approval,
            expect: Ok("ns-42-deletes".to_owned()),
        },
    ]
}

fn decide(c: &mut Criterion) {
    let text = policies();
    let set = PolicySet::parse(Path::new("fleet.toml"), &text, Duration::from_secs(3600))
        .expect("the generated policies load");
    assert_eq!(set.policies().len(), 1000);
    assert_eq!(set.denies().len(), DENIES);
    // A Monday noon, inside every window.
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_040_000);
    let mut group = c.benchmark_group("decide");
    for case in cases() {
        let subject = Subject {
            issuer: case.issuer,
            claims: &case.claims,
        };
        // Measure only decisions that come out as intended.
        let outcome = set.decide(subject, &case.request, case.channel, at);
        let got = outcome
            .as_ref()
            .map(|permit| permit.policy.clone())
            .map_err(|refusal| refusal.reason);
        assert_eq!(got, case.expect, "{}", case.name);
        group.bench_function(case.name, |b| {
            b.iter(|| {
                set.decide(
                    black_box(subject),
                    black_box(&case.request),
                    case.channel,
                    at,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
