//! Policy as code through the HTTP API: rights templated from the identity, hostile claims
//! against templates, deny rules overriding permits (directly and through approval), time
//! windows and lifetime caps, as `POST /v1/writs` and `POST /v1/approvals` answer them.

use serde_json::{Value, json};
use writ_testkit::Alg;

use chrono::Timelike;

use crate::helpers::{Backend, Setup, TestBroker};

const POLICIES: &str = r#"
[[policy]]
name = "tenant-data"
issuer = "kubernetes"
claims = { "kubernetes.io" = { serviceaccount = { name = "bot" } } }
resources = ["tenants/{tenant}/*"]
operations = ["read", "write", "delete"]
services = ["{tenant}-api"]
max_ttl = "10m"
ttl_caps = { write = "1m" }

[[policy]]
name = "tenant-purge"
issuer = "kubernetes"
resources = ["tenants/{tenant}/*"]
operations = ["purge"]
services = ["{tenant}-api"]
max_ttl = "10m"
[policy.approval]

[[deny]]
name = "no-deletes-in-prod"
resources = ["tenants/prod/*"]
operations = ["delete", "purge"]
"#;

async fn broker() -> TestBroker {
    TestBroker::start_with(Setup {
        policies: format!("{POLICIES}{}", away_window()),
        ..Setup::new(Backend::Sqlite)
    })
    .await
}

/// A policy whose window is the hour twelve hours from now (UTC): never open during a test.
fn away_window() -> String {
    let hour = (chrono::Utc::now().hour() + 12) % 24;
    format!(
        r#"
[[policy]]
name = "another-time"
issuer = "kubernetes"
resources = ["calendar/*"]
operations = ["read"]
services = ["calendar-api"]
max_ttl = "10m"
[policy.when]
hours = "{hour:02}:00-{:02}:00"
"#,
        (hour + 1) % 24
    )
}

fn identity(broker: &TestBroker, tenant: Value) -> String {
    broker.kubernetes.sign(
        Alg::Rs256,
        &broker.orders_claims(|claims| claims["tenant"] = tenant),
    )
}

fn ask(resource: &str, operation: &str, service: &str) -> Value {
    json!({
        "task": "tenant work",
        "rights": [{"resource": resource, "operations": [operation]}],
        "services": [service],
    })
}

#[tokio::test]
async fn each_tenant_gets_its_own_resources_and_service_from_one_template() {
    let broker = broker().await;
    let acme = identity(&broker, json!("acme"));
    let answer = broker
        .issue(&acme, &ask("tenants/acme/orders/1", "read", "acme-api"))
        .await;
    assert_eq!(answer["policy"], "tenant-data");

    let response = broker
        .request(&acme, &ask("tenants/globex/orders/1", "read", "acme-api"))
        .await;
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["reason"], "not_allowed", "{problem:#}");
    assert_eq!(
        problem["refused_rights"][0]["resource"],
        "tenants/globex/orders/1"
    );

    let response = broker
        .request(&acme, &ask("tenants/acme/orders/1", "read", "globex-api"))
        .await;
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["refused_services"], json!(["globex-api"]));

    // A write lives at most a minute here.
    let write = broker
        .issue(&acme, &ask("tenants/acme/orders/1", "write", "acme-api"))
        .await;
    assert_eq!(write["ttl"], 60);
    broker.stop().await;
}

#[tokio::test]
async fn hostile_claims_against_a_template_match_nothing() {
    let broker = broker().await;
    for hostile in [
        json!("*"),
        json!("acme/../globex"),
        json!(".."),
        json!("acme%2Fglobex"),
        json!("acme\u{200B}"),
        json!(""),
        json!(["acme"]),
        json!({"name": "acme"}),
        json!(42),
    ] {
        let token = identity(&broker, hostile.clone());
        for (resource, service) in [
            ("tenants/globex/1", "globex-api"),
            ("tenants/*", "acme-api"),
            ("tenants/acme/1", "acme-api"),
        ] {
            let response = broker
                .request(&token, &ask(resource, "read", service))
                .await;
            let status = response.status();
            let problem: Value = response.json().await.unwrap();
            // Refused whole: the template granted nothing (what answers is the closest
            // refusal, here the calendar policy's, which matches every identity).
            assert_eq!(status, 403, "{hostile}: {problem:#}");
            assert_eq!(
                problem["refused_rights"][0]["resource"], resource,
                "{hostile}"
            );
            assert_eq!(problem["refused_services"], json!([service]), "{hostile}");
        }
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_deny_rule_overrides_direct_and_approval_permits_and_is_named() {
    let broker = broker().await;
    let prod = identity(&broker, json!("prod"));
    let response = broker
        .request(&prod, &ask("tenants/prod/orders/1", "delete", "prod-api"))
        .await;
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:writ:problem:policy_refused");
    assert_eq!(problem["reason"], "denied");
    assert_eq!(problem["deny"], "no-deletes-in-prod");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("no-deletes-in-prod"),
        "{problem:#}"
    );
    // Reading is untouched by the rule; other tenants may delete their own.
    broker
        .issue(&prod, &ask("tenants/prod/orders/1", "read", "prod-api"))
        .await;
    let acme = identity(&broker, json!("acme"));
    broker
        .issue(&acme, &ask("tenants/acme/orders/1", "delete", "acme-api"))
        .await;

    // Approval is no way around it.
    let mut body = ask("tenants/prod/orders/1", "purge", "prod-api");
    body["justification"] = json!("cleanup");
    let response = crate::helpers::client()
        .post(format!("{}/v1/approvals", broker.url))
        .bearer_auth(&prod)
        .json(&body)
        .send()
        .await
        .unwrap();
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["reason"], "denied", "{problem:#}");
    assert_eq!(problem["deny"], "no-deletes-in-prod");

    // The refusal is audited with the rule's name.
    let auditor = broker
        .admin_token("auditor@example.com", &["auditor"])
        .await;
    let events = broker
        .admin_get_json("/v1/audit?action=writ.refused", &auditor)
        .await;
    let denied = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str::<Value>(e["details"].as_str().unwrap()).unwrap())
        .find(|details| details["refusal"]["deny"] == "no-deletes-in-prod");
    assert!(denied.is_some(), "{events:#}");
    broker.stop().await;
}

#[tokio::test]
async fn a_policy_outside_its_window_says_when_it_grants() {
    let broker = broker().await;
    let acme = identity(&broker, json!("acme"));
    let response = broker
        .request(&acme, &ask("calendar/today", "read", "calendar-api"))
        .await;
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:writ:problem:policy_refused");
    assert_eq!(problem["reason"], "outside_window", "{problem:#}");
    assert_eq!(problem["policy"], "another-time");
    assert!(
        problem["window"].as_str().unwrap().ends_with(":00 UTC"),
        "{problem:#}"
    );
    broker.stop().await;
}
