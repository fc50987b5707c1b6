//! The verifier SDK against elevated writs from a real broker: evidence required for chosen
//! operations, checked offline with the broker's published approval key, and revocation as for
//! any writ.

use std::time::Duration;

use serde_json::json;
use writ_verify::{Denial, Verifier};

use super::*;
use crate::helpers::{Backend, POLICIES, Setup};

async fn verifier(broker: &TestBroker, require: &[&str]) -> Verifier {
    Verifier::builder("orders-api")
        .key_set_url(format!("{}/.well-known/writ-keys", broker.url))
        .revocation_feed(&broker.url)
        .require_approval_for(require.iter().copied())
        .build()
        .await
        .unwrap()
}

async fn elevated_writ(broker: &TestBroker, approver: &str) -> String {
    let identity = broker.orders_identity();
    let id = open_pending(broker, &identity, &delete_order_request()).await;
    let token = broker.admin_token(approver, &["approver"]).await;
    assert_eq!(decide(broker, &token, &id, approve("ok")).await.0, 200);
    let (_, collected) = poll(broker, &identity, &id, Duration::ZERO).await;
    collected["writ"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_service_requiring_approval_accepts_the_elevated_writ_with_its_evidence() {
    let broker = broker_on(Backend::Sqlite).await;
    let writ = elevated_writ(&broker, "alice").await;
    let verifier = verifier(&broker, &["delete"]).await;
    let grant = verifier.authorize(&writ, "orders/42", "delete").unwrap();
    let evidence = grant.approval.expect("the evidence is read");
    assert!(evidence.request_id.starts_with("ap_"));
    assert_eq!(evidence.approvals[0].principal, "alice");
    assert_eq!(grant.attenuation_depth, 0);
    // Evidence covers what was approved only.
    assert!(verifier.authorize(&writ, "orders/43", "delete").is_err());
    // An attenuation keeps the evidence and can only narrow.
    let narrower = writ_verify::attenuate(
        &writ,
        &writ_verify::Attenuation {
            services: Some(vec!["orders-api".into()]),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(verifier.authorize(&narrower, "orders/42", "delete").is_ok());
    broker.stop().await;
}

#[tokio::test]
async fn revoking_the_task_revokes_the_elevated_writ() {
    let broker = broker_on(Backend::Sqlite).await;
    let writ = elevated_writ(&broker, "alice").await;
    let verifier = verifier(&broker, &["delete"]).await;
    assert!(verifier.authorize(&writ, "orders/42", "delete").is_ok());
    let admin = broker.admin_token("root", &["admin"]).await;
    let response = broker
        .admin_post(
            "/v1/revocations",
            &admin,
            &json!({"task": "remove duplicate order 42", "reason": "wrong order"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    verifier.sync_revocations_now().await.unwrap();
    assert_eq!(
        verifier.authorize(&writ, "orders/42", "delete"),
        Err(Denial::Revoked)
    );
    broker.stop().await;
}

/// A policy that (wrongly) grants `delete` without approval: the root key signs the writ, yet a
/// service requiring approval for `delete` refuses it.
const MISCONFIGURED: &str = r#"
[[policy]]
name = "orders-delete-by-mistake"
issuer = "kubernetes"
claims = { "kubernetes.io" = { namespace = "orders" } }
resources = ["orders/*"]
operations = ["delete"]
services = ["orders-api"]
max_ttl = "10m"
"#;

#[tokio::test]
async fn a_writ_a_misconfigured_policy_granted_lacks_the_evidence_and_is_refused() {
    let mut setup = Setup::new(Backend::Sqlite);
    setup.policies = format!("{POLICIES}\n{MISCONFIGURED}");
    let broker = TestBroker::start_with(setup).await;
    let (writ, _) = broker
        .issue_writ(
            &broker.orders_identity(),
            &json!({"task": "cleanup", "services": ["orders-api"],
                "rights": [{"resource": "orders/42", "operations": ["delete"]}]}),
        )
        .await;
    let strict = verifier(&broker, &["delete"]).await;
    assert_eq!(
        strict.authorize(&writ, "orders/42", "delete"),
        Err(Denial::ApprovalRequired {
            operation: "delete".into()
        })
    );
    // A service that requires nothing accepts it, as the policy said.
    let lenient = verifier(&broker, &[]).await;
    assert!(lenient.authorize(&writ, "orders/42", "delete").is_ok());
    broker.stop().await;
}

#[tokio::test]
async fn a_task_revoked_after_the_approval_covers_a_writ_collected_later() {
    let broker = broker_on(Backend::Sqlite).await;
    let identity = broker.orders_identity();
    let id = open_pending(&broker, &identity, &delete_order_request()).await;
    let alice = broker.admin_token("alice", &["approver"]).await;
    assert_eq!(decide(&broker, &alice, &id, approve("ok")).await.0, 200);
    let admin = broker.admin_token("root", &["admin"]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = broker
        .admin_post(
            "/v1/revocations",
            &admin,
            &json!({"task": "remove duplicate order 42", "reason": "changed our mind"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, collected) = poll(&broker, &identity, &id, Duration::ZERO).await;
    let writ = collected["writ"].as_str().unwrap();
    let verifier = verifier(&broker, &["delete"]).await;
    assert_eq!(
        verifier.authorize(writ, "orders/42", "delete"),
        Err(Denial::Revoked)
    );
    broker.stop().await;
}
