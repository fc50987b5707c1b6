//! The approval dance from the command line: an agent's `writ request --approval` waits while an
//! approver lists and approves (or denies) with `writ approvals`.

use std::process::Stdio;
use std::time::Duration;

use super::*;
use crate::helpers::{Backend, writ_command};

fn agent_request(broker: &TestBroker, identity: &str) -> tokio::process::Command {
    let mut command: tokio::process::Command = writ_command(broker.data.path()).into();
    command
        .args(["request", "--broker", &broker.url, "--approval"])
        .args(["--task", "remove duplicate order 42"])
        .args(["--right", "orders/*:delete", "--service", "orders-api"])
        .args(["--justification", "order 42 was entered twice"])
        .args(["--wait", "1m"])
        .env("WRIT_IDENTITY_TOKEN", identity)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// `writ approvals ARGS` as the approver (run without blocking the broker in this process).
async fn approvals(broker: &TestBroker, token: &str, args: &[&str]) -> std::process::Output {
    let mut command: tokio::process::Command = writ_command(broker.data.path()).into();
    command
        .arg("approvals")
        .args(args)
        .args(["--broker", &broker.url])
        .env("WRIT_ADMIN_TOKEN", token)
        .output()
        .await
        .unwrap()
}

async fn pending_id(broker: &TestBroker, token: &str) -> String {
    for _ in 0..100 {
        let listed = broker.admin_get_json("/v1/approvals", token).await;
        if let Some(id) = listed["approvals"][0]["id"].as_str() {
            return id.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no request was opened");
}

#[tokio::test]
async fn an_agent_waits_on_the_cli_while_an_approver_narrows_and_approves() {
    let broker = broker_on(Backend::Sqlite).await;
    let approver = broker.admin_token("alice", &["approver"]).await;
    let agent = agent_request(&broker, &broker.orders_identity())
        .spawn()
        .unwrap();
    let id = pending_id(&broker, &approver).await;

    let listed = approvals(&broker, &approver, &["list"]).await;
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{listed:?}");
    assert!(
        text.contains(&id) && text.contains("order 42 was entered twice"),
        "{text}"
    );
    assert!(text.contains("you may decide"), "{text}");

    let widened = approvals(
        &broker,
        &approver,
        &[
            "approve",
            &id,
            "--reason",
            "ok",
            "--right",
            "invoices/1:delete",
        ],
    )
    .await;
    assert!(!widened.status.success());
    assert!(
        String::from_utf8_lossy(&widened.stderr).contains("narrowing_invalid"),
        "{widened:?}"
    );
    let approved = approvals(
        &broker,
        &approver,
        &[
            "approve",
            &id,
            "--reason",
            "only 42",
            "--right",
            "orders/42:delete",
        ],
    )
    .await;
    assert!(approved.status.success(), "{approved:?}");

    let output = tokio::time::timeout(Duration::from_secs(30), agent.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let writ = String::from_utf8(output.stdout).unwrap();
    let inspected = writ_verify::inspect(writ.trim()).unwrap();
    assert_eq!(inspected.blocks.len(), 2);
    assert!(inspected.blocks[0].contains("\"orders/42\""));
    broker.stop().await;
}

#[tokio::test]
async fn a_denial_ends_the_agents_wait_with_the_reason() {
    let broker = broker_on(Backend::Sqlite).await;
    let approver = broker.admin_token("alice", &["approver"]).await;
    let agent = agent_request(&broker, &broker.orders_identity())
        .spawn()
        .unwrap();
    let id = pending_id(&broker, &approver).await;
    let denied = approvals(
        &broker,
        &approver,
        &["deny", &id, "--reason", "freeze week"],
    )
    .await;
    assert!(denied.status.success(), "{denied:?}");
    let output = tokio::time::timeout(Duration::from_secs(30), agent.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "no writ is printed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("denied") && stderr.contains("freeze week"),
        "{stderr}"
    );
    // Without the approver role, the CLI is refused with the problem's type.
    let auditor = broker.admin_token("auditor", &["auditor"]).await;
    let refused = approvals(&broker, &auditor, &["list"]).await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("admin_role_missing"));
    broker.stop().await;
}
