//! The approvers' webhook against a real receiver on loopback: signed over timestamp and body,
//! retried with backoff while the receiver fails, every attempt audited and the outcome visible
//! in the listing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::*;
use crate::helpers::{Backend, POLICIES, Setup};

const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!";

/// What the receiver saw: each delivery's signature header and body.
type Deliveries = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A receiver answering 500 to the first `failures` deliveries, then 204.
async fn receiver(failures: usize) -> (String, Deliveries, tokio::task::JoinHandle<()>) {
    let seen: Deliveries = Arc::default();
    let recorded = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let recorded = Arc::clone(&recorded);
            async move {
                let signature = headers
                    .get("writ-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let mut all = recorded.lock().unwrap();
                all.push((signature, body.to_vec()));
                if all.len() <= failures {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, seen, server)
}

async fn broker_with_webhook(url: String, attempts: u32) -> (TestBroker, tempfile::TempDir) {
    let secret_dir = tempfile::tempdir().unwrap();
    let secret_file = secret_dir.path().join("webhook.secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    std::fs::set_permissions(
        &secret_file,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    let mut setup = Setup::new(Backend::Sqlite);
    setup.policies = format!("{POLICIES}\n{APPROVAL_POLICIES}");
    setup.tweak = Box::new(move |config| {
        config.approvals.page_url = Some("https://writ.example/approvals".into());
        config.approvals.webhook = Some(writ::config::WebhookConfig {
            url,
            secret_file,
            attempts,
            retry_base: Duration::from_millis(200),
        });
    });
    (TestBroker::start_with(setup).await, secret_dir)
}

/// The receiver's check: HMAC-SHA256 over "<t>.<body>", compared in constant time.
fn signature_valid(header: &str, body: &[u8]) -> bool {
    let Some((t, v1)) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&hex::decode(v1).unwrap_or_default())
        .is_ok()
}

async fn audit_of(broker: &TestBroker, action: &str, at_least: usize) -> Vec<Value> {
    let auditor = broker.admin_token("auditor", &["auditor"]).await;
    for _ in 0..100 {
        let page = broker
            .admin_get_json(&format!("/v1/audit?action={action}"), &auditor)
            .await;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if events.len() >= at_least {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {at_least} {action} events");
}

#[tokio::test]
async fn approvers_are_told_by_a_signed_webhook_retried_until_delivered() {
    let (url, seen, server) = receiver(2).await;
    let (broker, _secret) = broker_with_webhook(url, 5).await;
    let identity = broker.orders_identity();
    let id = open_pending(&broker, &identity, &delete_order_request()).await;

    let events = audit_of(&broker, "approval.notified", 3).await;
    let outcomes: Vec<&str> = events
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failed", "failed", "success"]);
    assert_eq!(details(&events[0])["status"], 500);
    assert_eq!(details(&events[2])["attempt"], 3);

    let deliveries = seen.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 3);
    for (signature, body) in &deliveries {
        assert!(signature_valid(signature, body), "{signature}");
        let mut tampered = body.clone();
        tampered.push(b' ');
        assert!(!signature_valid(signature, &tampered));
    }
    let body: Value = serde_json::from_slice(&deliveries[0].1).unwrap();
    assert_eq!(body["type"], "approval.requested");
    assert_eq!(body["id"], id);
    assert_eq!(body["task"], "remove duplicate order 42");
    assert_eq!(body["url"], format!("https://writ.example/approvals/{id}"));
    assert!(!String::from_utf8_lossy(&deliveries[0].1).contains(SECRET));

    let approver = broker.admin_token("alice", &["approver"]).await;
    let listed = broker.admin_get_json("/v1/approvals", &approver).await;
    assert_eq!(
        listed["approvals"][0]["notification"]["status"],
        "delivered"
    );
    assert_eq!(listed["approvals"][0]["notification"]["attempts"], 3);
    broker.stop().await;
    server.abort();
}

#[tokio::test]
async fn an_undeliverable_webhook_is_audited_and_shown_and_the_request_still_waits() {
    let (url, seen, server) = receiver(usize::MAX).await;
    let (broker, _secret) = broker_with_webhook(url, 2).await;
    let identity = broker.orders_identity();
    let id = open_pending(&broker, &identity, &delete_order_request()).await;
    let events = audit_of(&broker, "approval.notified", 2).await;
    assert!(events.iter().all(|e| e["outcome"] == "failed"));
    assert_eq!(details(&events[1])["last"], true);
    assert_eq!(seen.lock().unwrap().len(), 2, "attempts are bounded");
    let approver = broker.admin_token("alice", &["approver"]).await;
    let listed = broker.admin_get_json("/v1/approvals", &approver).await;
    assert_eq!(listed["approvals"][0]["id"], id);
    assert_eq!(listed["approvals"][0]["notification"]["status"], "failed");
    // The request can still be decided from the list.
    let (status, _) = decide(&broker, &approver, &id, approve("seen in the list")).await;
    assert_eq!(status, 200);
    broker.stop().await;
    server.abort();
}
