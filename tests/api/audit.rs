//! The audit log through the HTTP API and the CLI: every decision is an event, none carries a
//! token, the chain verifies and names the first altered or removed event, checkpoints hold
//! the log to what it said, and no writ is returned when its audit event cannot be written.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    Backend, Setup, TestBroker, WRIT, count, execute_sql, make_audit_inserts_fail, orders_request,
    sql_fails,
};
use crate::on_both_backends;

fn audit_verify(broker: &TestBroker, extra: &[&str]) -> Output {
    std::process::Command::new(WRIT)
        .args(["audit", "verify", "--database-url", &broker.database_url])
        .arg("--key-dir")
        .arg(broker.key_dir())
        .args(extra)
        .env_remove("WRIT_CONFIG")
        .output()
        .unwrap()
}

/// `writ audit verify --export <path>`.
fn verify_export(path: &Path) -> Output {
    std::process::Command::new(WRIT)
        .args(["audit", "verify", "--export"])
        .arg(path)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn events(broker: &TestBroker, auditor: &str, query: &str) -> Vec<Value> {
    let page = broker
        .admin_get_json(&format!("/v1/audit?limit=1000&{query}"), auditor)
        .await;
    page["events"].as_array().unwrap().clone()
}

/// What a database owner could do that the broker never does: lift the append-only guard.
async fn allow_tampering(url: &str) {
    if url.starts_with("sqlite:") {
        execute_sql(
            url,
            &[
                "DROP TRIGGER audit_events_no_update",
                "DROP TRIGGER audit_events_no_delete",
            ],
        )
        .await;
    } else {
        execute_sql(
            url,
            &["DROP TRIGGER audit_events_no_change ON audit_events"],
        )
        .await;
    }
}

#[tokio::test]
async fn every_decision_is_an_event_and_no_event_carries_a_token() {
    let mut setup = Setup::new(Backend::Sqlite);
    setup.tweak = Box::new(|config| config.audit_refusal_window = Duration::from_secs(1));
    let broker = TestBroker::start_with(setup).await;
    let admin = broker.admin_token("root", &["admin"]).await;
    let auditor = broker.admin_token("eve", &["auditor"]).await;
    let identity = broker.orders_identity();

    let forged = writ_testkit::TestIssuer::tamper(&identity);
    assert_eq!(
        broker.request(&forged, &orders_request()).await.status(),
        401
    );
    let issued = broker.issue(&identity, &orders_request()).await;
    let writ_id = issued["writ_id"].as_str().unwrap();
    let mut too_much = orders_request();
    too_much["rights"] = json!([{ "resource": "orders/42", "operations": ["delete"] }]);
    assert_eq!(broker.request(&identity, &too_much).await.status(), 403);
    let agent_writ = issued["writ"].as_str().unwrap();
    let refused = broker
        .admin_post("/v1/revocations", agent_writ, &json!({}))
        .await;
    assert_eq!(refused.status(), 401);
    broker
        .admin_post(
            "/v1/revocations",
            &admin,
            &json!({ "writ_id": writ_id, "reason": "test" }),
        )
        .await;

    // Refusals of tokens whose signature never verified are written as counts, per window.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = events(&broker, &auditor, "").await;
    let find = |action: &str| {
        all.iter()
            .find(|event| event["event"]["action"] == action || event["action"] == action)
            .unwrap_or_else(|| panic!("no {action} event in {all:?}"))
            .clone()
    };
    let field = |event: &Value, name: &str| {
        event
            .get(name)
            .or_else(|| event["event"].get(name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let refused_identity = find("identity.refused");
    assert_eq!(field(&refused_identity, "outcome"), "refused");
    assert_eq!(
        field(&refused_identity, "reason"),
        "identity_signature_invalid"
    );
    let counted: Value =
        serde_json::from_str(field(&refused_identity, "details").as_str().unwrap()).unwrap();
    assert_eq!(counted["count"], 1, "{counted}");
    let issued_event = find("writ.issued");
    assert_eq!(field(&issued_event, "writ_id"), writ_id);
    assert_eq!(field(&issued_event, "agent"), "k8s:orders/report-bot");
    assert_eq!(field(&issued_event, "task"), "nightly report");
    let details: Value =
        serde_json::from_str(field(&issued_event, "details").as_str().unwrap()).unwrap();
    assert_eq!(details["ttl"], 300);
    assert_eq!(details["root_key_id"], 1);
    assert_eq!(details["rights"][0]["resource"], "orders/42");
    let refused_writ = find("writ.refused");
    assert_eq!(field(&refused_writ, "reason"), "policy_refused");
    assert_eq!(
        field(&find("admin.refused"), "reason"),
        "admin_credential_invalid"
    );
    let revoked = find("revocation.created");
    assert_eq!(field(&revoked, "actor"), "root");
    assert_eq!(field(&revoked, "writ_id"), writ_id);
    assert_eq!(field(&find("admin.bootstrap"), "outcome"), "success");

    // The export holds every event; none holds a credential.
    let export = broker
        .admin_get("/v1/audit?format=jsonl", &auditor)
        .await
        .text()
        .await
        .unwrap();
    for secret in [
        identity.as_str(),
        forged.as_str(),
        agent_writ,
        admin.as_str(),
        auditor.as_str(),
    ] {
        let signature_part = &secret[secret.len() - 40..];
        assert!(
            !export.contains(signature_part),
            "a credential leaked into the audit log"
        );
    }
    let read_back = events(&broker, &auditor, "action=audit.read").await;
    assert!(!read_back.is_empty(), "reading the audit log is audited");
    broker.stop().await;
}

#[tokio::test]
async fn the_audit_log_filters_and_pages() {
    let broker = TestBroker::start().await;
    let auditor = broker.admin_token("eve", &["auditor"]).await;
    let identity = broker.orders_identity();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(broker.issue(&identity, &orders_request()).await["writ_id"].clone());
    }
    let one = events(
        &broker,
        &auditor,
        &format!("writ_id={}", ids[1].as_str().unwrap()),
    )
    .await;
    assert_eq!(one.len(), 1);
    let issued = events(&broker, &auditor, "action=writ.issued").await;
    assert_eq!(issued.len(), 3);
    let by_agent = events(
        &broker,
        &auditor,
        "agent=k8s:orders/report-bot&action=writ.issued",
    )
    .await;
    assert_eq!(by_agent.len(), 3);
    let by_task = events(&broker, &auditor, "task=other").await;
    assert!(by_task.is_empty());
    let future = events(&broker, &auditor, "since=2999-01-01T00:00:00Z").await;
    assert!(future.is_empty());
    let past = events(&broker, &auditor, "until=2000-01-01T00:00:00Z").await;
    assert!(past.is_empty());

    let page = broker
        .admin_get_json("/v1/audit?action=writ.issued&limit=2", &auditor)
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["more"], true);
    let next = broker
        .admin_get_json(
            &format!(
                "/v1/audit?action=writ.issued&limit=2&after={}",
                page["next_after"]
            ),
            &auditor,
        )
        .await;
    assert_eq!(next["events"].as_array().unwrap().len(), 1);
    assert_eq!(next["more"], false);

    for bad in [
        "limit=0",
        "limit=1001",
        "since=yesterday",
        "format=xml",
        "colour=red",
        "after=18446744073709551615",
    ] {
        let response = broker
            .admin_get(&format!("/v1/audit?{bad}"), &auditor)
            .await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    broker.stop().await;
}

#[tokio::test]
async fn an_export_verifies_offline_and_names_the_altered_line() {
    let broker = TestBroker::start().await;
    let auditor = broker.admin_token("eve", &["auditor"]).await;
    for _ in 0..3 {
        broker
            .issue(&broker.orders_identity(), &orders_request())
            .await;
    }
    let export = broker
        .admin_get("/v1/audit?format=jsonl", &auditor)
        .await
        .text()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let intact = dir.path().join("intact.jsonl");
    std::fs::write(&intact, &export).unwrap();
    let ok = verify_export(&intact);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("audit chain intact"));

    let altered = export.replacen(
        "\"k8s:orders/report-bot\"",
        "\"k8s:orders/someone-else\"",
        1,
    );
    let altered_seq = altered
        .lines()
        .find(|line| line.contains("someone-else"))
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["seq"].clone())
        .unwrap();
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, altered).unwrap();
    let broken = verify_export(&tampered);
    assert!(!broken.status.success());
    assert!(
        stdout(&broken).contains(&format!("event {altered_seq} was altered")),
        "{}",
        stdout(&broken)
    );

    let mut lines: Vec<&str> = export.lines().collect();
    lines.remove(1);
    let removed = dir.path().join("removed.jsonl");
    std::fs::write(&removed, lines.join("\n")).unwrap();
    let gap = verify_export(&removed);
    assert!(!gap.status.success());
    assert!(stdout(&gap).contains("event 2"), "{}", stdout(&gap));
    broker.stop().await;
}

#[tokio::test]
async fn an_export_with_a_line_that_is_not_json_is_refused_by_line() {
    let broker = TestBroker::start().await;
    let auditor = broker.admin_token("eve", &["auditor"]).await;
    let export = broker
        .admin_get("/v1/audit?format=jsonl", &auditor)
        .await
        .text()
        .await
        .unwrap();
    let first = export.lines().next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let garbled = dir.path().join("garbled.jsonl");
    std::fs::write(&garbled, format!("{first}\n{{\"seq\": 2,\n")).unwrap();
    let refused = verify_export(&garbled);
    assert!(!refused.status.success(), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!("{}:2", garbled.display())),
        "{stderr}"
    );
    broker.stop().await;
}

async fn the_chain_in_the_database_verifies_and_tampering_is_named(backend: Backend) {
    let broker = TestBroker::start_with({
        let mut setup = Setup::new(backend);
        setup.tweak = Box::new(|config| config.audit_checkpoint_interval = Duration::from_secs(1));
        setup
    })
    .await;
    let auditor = broker.admin_token("eve", &["auditor"]).await;
    for _ in 0..4 {
        broker
            .issue(&broker.orders_identity(), &orders_request())
            .await;
    }
    // Wait for a checkpoint covering the events so far.
    let mut checkpoints = Value::Null;
    for _ in 0..50 {
        checkpoints = broker
            .admin_get_json("/v1/audit/checkpoints", &auditor)
            .await;
        if checkpoints["checkpoints"].as_array().is_some_and(|list| {
            list.iter()
                .any(|checkpoint| checkpoint["seq"].as_u64() >= Some(5))
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        checkpoints["checkpoints"][0]["signature"].is_string(),
        "{checkpoints}"
    );

    let ok = audit_verify(&broker, &[]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(
        stdout(&ok).contains("signed checkpoints hold"),
        "{}",
        stdout(&ok)
    );

    // The guard refuses changes; a database owner who lifts it is still caught.
    let url = broker.database_url.clone();
    assert!(
        sql_fails(&url, "UPDATE audit_events SET actor = 'x' WHERE seq = 1").await,
        "audit events are append-only"
    );
    assert!(
        sql_fails(&url, "DELETE FROM audit_checkpoints").await,
        "checkpoints are append-only"
    );
    allow_tampering(&url).await;
    execute_sql(
        &url,
        &["UPDATE audit_events SET actor = 'someone' WHERE seq = 3"],
    )
    .await;
    let altered = audit_verify(&broker, &[]);
    assert!(!altered.status.success());
    assert!(
        stdout(&altered).contains("event 3 was altered"),
        "{}",
        stdout(&altered)
    );

    // Rewriting the whole tail consistently defeats the chain, not the checkpoint.
    execute_sql(&url, &["DELETE FROM audit_events WHERE seq >= 3"]).await;
    let truncated = audit_verify(&broker, &[]);
    assert!(!truncated.status.success());
    assert!(
        stdout(&truncated).contains("checkpoint"),
        "{}",
        stdout(&truncated)
    );
    broker.stop().await;
}
on_both_backends!(the_chain_in_the_database_verifies_and_tampering_is_named);

async fn no_writ_when_its_audit_event_cannot_be_written(backend: Backend) {
    let broker = TestBroker::start_on(backend).await;
    broker
        .issue(&broker.orders_identity(), &orders_request())
        .await;
    let url = broker.database_url.clone();
    make_audit_inserts_fail(&url).await;
    let response = broker
        .request(&broker.orders_identity(), &orders_request())
        .await;
    assert_eq!(response.status(), 503);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:writ:problem:storage_unavailable");
    assert!(problem.get("writ").is_none());
    let store = writ::store::connect(&url).await.unwrap();
    let issued = store
        .audit_events(&writ::store::AuditQuery {
            limit: 1000,
            action: Some("writ.issued".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(issued.len(), 1, "only the first writ was issued");
    let writs = count(&url, "SELECT COUNT(*) FROM writs").await;
    assert_eq!(
        writs, 1,
        "the second writ's record rolled back with its event"
    );
    broker.stop().await;
}
on_both_backends!(no_writ_when_its_audit_event_cannot_be_written);

#[tokio::test]
async fn two_replicas_on_postgres_write_one_chain() {
    let first = TestBroker::start_on(Backend::Postgres).await;
    let shared_url = first.database_url.clone();
    let second = TestBroker::start_with({
        let mut setup = Setup::new(Backend::Postgres);
        setup.tweak = Box::new(move |config| config.database_url = shared_url);
        setup
    })
    .await;
    let identity_a = first.orders_identity();
    let identity_b = second.orders_identity();
    let body = orders_request();
    let through_a = (0..25).map(|_| first.issue(&identity_a, &body));
    let through_b = (0..25).map(|_| second.issue(&identity_b, &body));
    let (a, b) = tokio::join!(
        futures_util::future::join_all(through_a),
        futures_util::future::join_all(through_b)
    );
    assert_eq!(a.len() + b.len(), 50);
    let store = writ::store::connect(&first.database_url).await.unwrap();
    let all = store
        .audit_events(&writ::store::AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let issued = all
        .iter()
        .filter(|e| e.event.action == "writ.issued")
        .count();
    assert_eq!(issued, 50);
    let (head, _) = writ::audit::verify_chain(all.iter()).expect("one unbroken chain");
    assert_eq!(head as usize, all.len());
    second.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn reading_audit_needs_the_auditor_role_and_the_route_answers_json() {
    let broker = TestBroker::start().await;
    let auditor = broker.admin_token("eve", &["auditor"]).await;
    let response = broker.admin_get("/v1/audit", &auditor).await;
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    assert!(page["events"].is_array());
    broker.stop().await;
}
