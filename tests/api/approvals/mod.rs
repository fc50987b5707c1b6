//! Human approval through the HTTP API: agents ask, approvers decide, agents collect an
//! elevated writ exactly once. The CLI, the SDK, the webhook and the page have their own files.

mod cli;
mod flow;
mod sdk;
mod webhook;

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, POLICIES, Setup, TestBroker, client};

/// Deleting orders needs one approver; wiping the archive needs two from the `sre` group or
/// alice by name.
pub const APPROVAL_POLICIES: &str = r#"
[[policy]]
name = "orders-cleanup"
issuer = "kubernetes"
claims = { "kubernetes.io" = { namespace = "orders" } }
resources = ["orders/*"]
operations = ["delete", "read"]
services = ["orders-api"]
max_ttl = "10m"
[policy.approval]
wait = "10m"
ttl = "5m"

[[policy]]
name = "archive-wipe"
issuer = "kubernetes"
claims = { "kubernetes.io" = { namespace = "orders" } }
resources = ["archive/*"]
operations = ["delete"]
services = ["archive-api"]
max_ttl = "10m"
[policy.approval]
approvers = ["principal:alice", "principal:bob", "principal:carol"]
quorum = 2
wait = "3s"
"#;

/// A broker with the approval policies beside the usual ones.
pub async fn broker_on(backend: Backend) -> TestBroker {
    let mut setup = Setup::new(backend);
    setup.policies = format!("{POLICIES}\n{APPROVAL_POLICIES}");
    TestBroker::start_with(setup).await
}

pub fn delete_order_request() -> Value {
    json!({
        "task": "remove duplicate order 42",
        "rights": [{"resource": "orders/42", "operations": ["delete"]}],
        "services": ["orders-api"],
        "justification": "order 42 was entered twice; the customer asked for one",
    })
}

pub fn wipe_archive_request() -> Value {
    json!({
        "task": "wipe 2019 archive",
        "rights": [{"resource": "archive/2019/*", "operations": ["delete"]}],
        "services": ["archive-api"],
        "justification": "retention period is over",
    })
}

/// POSTs an approval request; answers status and body.
pub async fn open(broker: &TestBroker, identity: &str, body: &Value) -> (u16, Value) {
    let response = client()
        .post(format!("{}/v1/approvals", broker.url))
        .bearer_auth(identity)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Opens a request and expects it pending; answers its id.
pub async fn open_pending(broker: &TestBroker, identity: &str, body: &Value) -> String {
    let (status, answer) = open(broker, identity, body).await;
    assert_eq!(status, 202, "{answer:#}");
    assert_eq!(answer["status"], "pending");
    answer["id"].as_str().unwrap().to_owned()
}

/// The agent's reading of its request, waiting up to `wait`.
pub async fn poll(broker: &TestBroker, identity: &str, id: &str, wait: Duration) -> (u16, Value) {
    let response = client()
        .get(format!(
            "{}/v1/approvals/{id}?wait={}s",
            broker.url,
            wait.as_secs()
        ))
        .bearer_auth(identity)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// An approver's decision; answers status and body.
pub async fn decide(broker: &TestBroker, token: &str, id: &str, body: Value) -> (u16, Value) {
    let response = broker
        .admin_post(&format!("/v1/approvals/{id}/decision"), token, &body)
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

pub fn approve(reason: &str) -> Value {
    json!({ "decision": "approve", "reason": reason })
}

pub fn deny(reason: &str) -> Value {
    json!({ "decision": "deny", "reason": reason })
}

/// An audit event's details (the log keeps them as the text that was hashed).
pub fn details(event: &Value) -> Value {
    serde_json::from_str(event["details"].as_str().unwrap()).unwrap()
}
