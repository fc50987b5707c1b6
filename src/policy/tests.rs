//! Decisions over templates, deny rules and conditions, end to end from policy text.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use super::*;

const CAP: Duration = Duration::from_secs(3600);

fn set(text: &str) -> PolicySet {
    PolicySet::parse(Path::new("p.toml"), text, CAP).unwrap()
}

fn request(rights: &[(&str, &str)], services: &[&str], ttl: Option<u64>) -> WritRequest {
    WritRequest::parse(&RawWritRequest {
        task: "t".into(),
        rights: rights
            .iter()
            .map(|(resource, op)| RawRight {
                resource: (*resource).into(),
                operations: vec![(*op).into()],
            })
            .collect(),
        services: services.iter().map(|s| (*s).into()).collect(),
        ttl,
    })
    .unwrap()
}

fn claims(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn at(rfc3339: &str) -> SystemTime {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .into()
}

/// A Monday at noon UTC.
fn monday_noon() -> SystemTime {
    at("2026-11-30T12:00:00Z")
}

fn decide(
    set: &PolicySet,
    claims: &Map<String, Value>,
    request: &WritRequest,
    when: SystemTime,
) -> Result<Permit, Box<Refusal>> {
    let subject = Subject {
        issuer: "k8s",
        claims,
    };
    set.decide(subject, request, Channel::Direct, when)
}

const TENANTS: &str = r#"
[[policy]]
name = "tenant-data"
issuer = "k8s"
resources = ["tenants/{kubernetes.io/namespace}/*"]
operations = ["read", "write"]
services = ["{kubernetes.io/namespace}-api"]
max_ttl = "15m"
"#;

fn namespace(ns: Value) -> Map<String, Value> {
    claims(json!({"kubernetes.io": {"namespace": ns}}))
}

#[test]
fn a_template_grants_each_tenant_its_own_resources() {
    let set = set(TENANTS);
    let own = request(&[("tenants/orders/42", "read")], &["orders-api"], None);
    let permit = decide(&set, &namespace(json!("orders")), &own, monday_noon()).unwrap();
    assert_eq!(permit.policy, "tenant-data");
    let other = request(&[("tenants/billing/1", "read")], &["orders-api"], None);
    let refusal = decide(&set, &namespace(json!("orders")), &other, monday_noon()).unwrap_err();
    assert_eq!(refusal.reason, reasons::NOT_ALLOWED);
    assert_eq!(refusal.refused_rights[0].resource, "tenants/billing/1");
    let other_service = request(&[("tenants/orders/1", "read")], &["billing-api"], None);
    let refusal = decide(
        &set,
        &namespace(json!("orders")),
        &other_service,
        monday_noon(),
    )
    .unwrap_err();
    assert_eq!(refusal.refused_services, ["billing-api"]);
}

#[test]
fn hostile_claims_make_a_template_not_match() {
    let set = set(TENANTS);
    // Each value would, if placed as text, widen the grant or name another tenant's data.
    for hostile in [
        json!("*"),
        json!("orders/../billing"),
        json!(".."),
        json!("orders/*"),
        json!(""),
        json!("a%2Fb"),
        json!("orders\u{200B}"),
        json!(["orders"]),
        json!(7),
        json!(null),
    ] {
        let asks = request(&[("tenants/billing/1", "read")], &["billing-api"], None);
        let refusal = decide(&set, &namespace(hostile.clone()), &asks, monday_noon()).unwrap_err();
        assert_eq!(refusal.reason, reasons::NO_MATCHING_POLICY, "{hostile}");
        let wide = request(&[("tenants/*", "read")], &["orders-api"], None);
        assert!(decide(&set, &namespace(hostile.clone()), &wide, monday_noon()).is_err());
    }
    let absent = claims(json!({"kubernetes.io": {}}));
    let asks = request(&[("tenants/x/1", "read")], &["x-api"], None);
    assert!(decide(&set, &absent, &asks, monday_noon()).is_err());
}

const DENY_PROD: &str = r#"
[[policy]]
name = "ops"
issuer = "k8s"
resources = ["*"]
operations = ["read", "delete"]
services = ["prod-api", "staging-api"]
max_ttl = "15m"

[[policy]]
name = "ops-approved"
issuer = "k8s"
resources = ["vault/*"]
operations = ["purge"]
services = ["prod-api"]
max_ttl = "15m"
[policy.approval]

[[deny]]
name = "no-prod-deletes"
resources = ["prod/*"]
operations = ["delete", "purge"]

[[deny]]
name = "no-vault-purge-in-prod"
resources = ["vault/*"]
services = ["prod-api"]
"#;

#[test]
fn a_deny_overrides_every_permit_and_names_itself() {
    let set = set(DENY_PROD);
    let anyone = claims(json!({}));
    let reads = request(&[("prod/db/1", "read")], &["prod-api"], None);
    assert!(decide(&set, &anyone, &reads, monday_noon()).is_ok());

    let deletes = request(
        &[("prod/db/1", "delete"), ("staging/1", "delete")],
        &["prod-api"],
        None,
    );
    let refusal = decide(&set, &anyone, &deletes, monday_noon()).unwrap_err();
    assert_eq!(refusal.reason, reasons::DENIED);
    assert_eq!(refusal.deny.as_deref(), Some("no-prod-deletes"));
    assert_eq!(refusal.refused_rights.len(), 1, "{refusal:?}");
    assert!(refusal.to_string().contains("no-prod-deletes"), "{refusal}");

    // A wider request overlaps the denied prefix: refused too.
    let wide = request(&[("*", "delete")], &["staging-api"], None);
    assert_eq!(
        decide(&set, &anyone, &wide, monday_noon())
            .unwrap_err()
            .reason,
        reasons::DENIED
    );

    // Approval does not override a deny either.
    let purge = request(&[("vault/keys", "purge")], &["prod-api"], None);
    let subject = Subject {
        issuer: "k8s",
        claims: &anyone,
    };
    let refusal = set
        .decide(subject, &purge, Channel::Approval, monday_noon())
        .unwrap_err();
    assert_eq!(refusal.deny.as_deref(), Some("no-vault-purge-in-prod"));
    assert_eq!(refusal.refused_services, ["prod-api"]);
}

#[test]
fn a_deny_scoped_to_an_identity_leaves_others_alone() {
    let text = format!(
        "{TENANTS}\n[[deny]]\nname = \"compromised\"\nissuer = \"k8s\"\n\
         claims = {{ \"kubernetes.io\" = {{ namespace = \"billing\" }} }}\n"
    );
    let set = set(&text);
    let orders = request(&[("tenants/orders/1", "read")], &["orders-api"], None);
    assert!(decide(&set, &namespace(json!("orders")), &orders, monday_noon()).is_ok());
    let billing = request(&[("tenants/billing/1", "read")], &["billing-api"], None);
    let refusal = decide(&set, &namespace(json!("billing")), &billing, monday_noon()).unwrap_err();
    assert_eq!(refusal.deny.as_deref(), Some("compromised"));
}

const BUSINESS_HOURS: &str = r#"
[[policy]]
name = "business-hours"
issuer = "k8s"
resources = ["orders/*"]
operations = ["read", "delete"]
services = ["orders-api"]
max_ttl = "1h"
default_ttl = "30m"
ttl_caps = { delete = "2m" }
[policy.when]
days = ["mon", "tue", "wed", "thu", "fri"]
hours = "09:00-18:00"
time_zone = "Europe/Berlin"
"#;

#[test]
fn a_window_grants_only_inside_it() {
    let set = set(BUSINESS_HOURS);
    let none = claims(json!({}));
    let reads = request(&[("orders/1", "read")], &["orders-api"], None);
    assert_eq!(
        decide(&set, &none, &reads, monday_noon()).unwrap().ttl,
        Duration::from_secs(1800)
    );
    let sunday = at("2026-11-29T12:00:00Z");
    let refusal = decide(&set, &none, &reads, sunday).unwrap_err();
    assert_eq!(refusal.reason, reasons::OUTSIDE_WINDOW);
    assert_eq!(refusal.policy.as_deref(), Some("business-hours"));
    assert!(
        refusal.to_string().contains("09:00-18:00 Europe/Berlin"),
        "{refusal}"
    );
    // A request for something the policy never grants is refused for that, not the time.
    let writes = request(&[("orders/1", "write")], &["orders-api"], None);
    assert_eq!(
        decide(&set, &none, &writes, sunday).unwrap_err().reason,
        reasons::NOT_ALLOWED
    );
}

#[test]
fn a_writ_does_not_outlive_the_window() {
    let set = set(BUSINESS_HOURS);
    let none = claims(json!({}));
    // 16:50 UTC is 17:50 in Berlin: ten minutes are left.
    let late = at("2026-11-30T16:50:00Z");
    let reads = request(&[("orders/1", "read")], &["orders-api"], None);
    assert_eq!(
        decide(&set, &none, &reads, late).unwrap().ttl,
        Duration::from_secs(600)
    );
    let long = request(&[("orders/1", "read")], &["orders-api"], Some(1200));
    let refusal = decide(&set, &none, &long, late).unwrap_err();
    assert_eq!(refusal.refused_ttl.unwrap().max, 600);
}

#[test]
fn ttl_caps_apply_to_requests_naming_the_operation() {
    let set = set(BUSINESS_HOURS);
    let none = claims(json!({}));
    let deletes = request(&[("orders/1", "delete")], &["orders-api"], None);
    assert_eq!(
        decide(&set, &none, &deletes, monday_noon()).unwrap().ttl,
        Duration::from_secs(120)
    );
    let long = request(&[("orders/1", "delete")], &["orders-api"], Some(600));
    let refusal = decide(&set, &none, &long, monday_noon()).unwrap_err();
    assert_eq!(refusal.reason, reasons::NOT_ALLOWED);
    assert_eq!(refusal.refused_ttl.unwrap().max, 120);
}

#[test]
fn a_deny_window_holds_only_inside_it() {
    let text = r#"
[[policy]]
name = "deploy"
issuer = "k8s"
resources = ["prod/*"]
operations = ["deploy", "read"]
services = ["deployer"]
max_ttl = "15m"

[[deny]]
name = "weekend-freeze"
operations = ["deploy"]
[deny.when]
days = ["sat", "sun"]
"#;
    let set = set(text);
    let none = claims(json!({}));
    let deploy = request(&[("prod/app", "deploy")], &["deployer"], None);
    assert!(decide(&set, &none, &deploy, monday_noon()).is_ok());
    let refusal = decide(&set, &none, &deploy, at("2026-11-29T12:00:00Z")).unwrap_err();
    assert_eq!(refusal.deny.as_deref(), Some("weekend-freeze"));

    // Friday 23:55: the writ ends as the freeze begins, and a longer one is refused.
    let friday = at("2026-12-04T23:55:00Z");
    let permit = decide(&set, &none, &deploy, friday).unwrap();
    assert_eq!(permit.ttl, Duration::from_secs(300));
    let long = request(&[("prod/app", "deploy")], &["deployer"], Some(600));
    let refusal = decide(&set, &none, &long, friday).unwrap_err();
    assert_eq!(refusal.reason, reasons::DENIED);
    assert_eq!(refusal.deny.as_deref(), Some("weekend-freeze"));
    assert_eq!(refusal.refused_ttl.as_ref().unwrap().max, 300);
    // What the freeze does not cover keeps its lifetime.
    let reads = request(&[("prod/app", "read")], &["deployer"], None);
    assert_eq!(
        decide(&set, &none, &reads, friday).unwrap().ttl,
        Duration::from_secs(900)
    );
}

#[test]
fn malformed_rules_are_refused_at_load() {
    let error = |text: &str| PolicySet::parse(Path::new("p.toml"), text, CAP).unwrap_err();
    let templated_deny = "[[deny]]\nname = \"d\"\nresources = [\"t/{ns}/*\"]\n";
    assert!(error(templated_deny).message.contains("literal"));
    let cap_unknown_op = BUSINESS_HOURS.replace("{ delete = \"2m\" }", "{ purge = \"2m\" }");
    assert!(error(&cap_unknown_op).message.contains("purge"));
    let cap_above_max = BUSINESS_HOURS.replace("{ delete = \"2m\" }", "{ delete = \"2h\" }");
    assert!(error(&cap_above_max).message.contains("outside"));
    let bad_zone = BUSINESS_HOURS.replace("Europe/Berlin", "Europe/Atlantis");
    assert!(error(&bad_zone).message.contains("time zone"));
    let same_name = format!("{TENANTS}\n[[deny]]\nname = \"tenant-data\"\n");
    assert!(error(&same_name).message.contains("twice"));
    let claim_in_star = TENANTS.replace(
        "/{kubernetes.io/namespace}/*",
        "/{kubernetes.io/namespace}*",
    );
    assert!(error(&claim_in_star).message.contains("whole path segment"));
}
