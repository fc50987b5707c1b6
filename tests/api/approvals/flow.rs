//! The approval flow over HTTP, on SQLite and PostgreSQL.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::helpers::{Backend, problem_type};

async fn approve_then_collect_once(backend: Backend) {
    let broker = broker_on(backend).await;
    let identity = broker.orders_identity();
    let approver = broker.admin_token("alice", &["approver"]).await;
    let id = open_pending(&broker, &identity, &delete_order_request()).await;

    let listed = broker.admin_get_json("/v1/approvals", &approver).await;
    let entry = &listed["approvals"][0];
    assert_eq!(entry["id"], id);
    assert_eq!(entry["may_decide"], true);
    assert_eq!(entry["agent"], "k8s:orders/report-bot");
    assert_eq!(
        entry["justification"],
        delete_order_request()["justification"]
    );

    let (status, pending) = poll(&broker, &identity, &id, Duration::ZERO).await;
    assert_eq!((status, pending["status"].as_str()), (200, Some("pending")));
    assert!(pending.get("writ").is_none());

    let (status, decided) = decide(&broker, &approver, &id, approve("duplicate confirmed")).await;
    assert_eq!(status, 200, "{decided:#}");
    assert_eq!(decided["status"], "approved");
    assert_eq!(decided["may_decide"], false);

    let (_, collected) = poll(&broker, &identity, &id, Duration::ZERO).await;
    assert_eq!(collected["status"], "approved");
    let writ = collected["writ"].as_str().expect("the writ is handed over");
    assert!(collected["writ_id"].as_str().unwrap().starts_with("wr_"));
    let inspected = writ_verify::inspect(writ).unwrap();
    assert_eq!(inspected.blocks.len(), 2, "authority and approval evidence");

    let (_, again) = poll(&broker, &identity, &id, Duration::ZERO).await;
    assert_eq!(again["status"], "approved");
    assert!(again.get("writ").is_none(), "a writ is handed over once");
    assert_eq!(again["writ_id"], collected["writ_id"]);

    let issued = broker
        .admin_get_json(
            &format!(
                "/v1/audit?writ_id={}",
                collected["writ_id"].as_str().unwrap()
            ),
            &broker.admin_token("auditor", &["auditor"]).await,
        )
        .await;
    let event = &issued["events"][0];
    assert_eq!(event["action"], "writ.issued");
    let details = details(event);
    assert_eq!(details["approval"]["approval_id"], id);
    assert_eq!(details["approval"]["approvers"][0]["approver"], "alice");
    broker.stop().await;
}

#[tokio::test]
async fn an_approved_request_hands_its_writ_over_once_on_sqlite() {
    approve_then_collect_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_approved_request_hands_its_writ_over_once_on_postgres() {
    approve_then_collect_once(Backend::Postgres).await;
}

#[tokio::test]
async fn rights_are_routed_to_the_channel_their_policy_serves() {
    let broker = broker_on(Backend::Sqlite).await;
    let identity = broker.orders_identity();
    // Deleting is granted only with approval: a direct request says where to ask.
    let mut direct = delete_order_request();
    direct.as_object_mut().unwrap().remove("justification");
    let (status, kind) = problem_type(broker.request(&identity, &direct).await).await;
    assert_eq!(
        (status, kind.as_str()),
        (403, "urn:writ:problem:approval_required")
    );
    // Reading is granted directly: an approval request for it is refused.
    let mut read = delete_order_request();
    read["rights"] = json!([{"resource": "orders/42", "operations": ["read"]}]);
    let (status, answer) = open(&broker, &identity, &read).await;
    assert_eq!(status, 400);
    assert_eq!(answer["type"], "urn:writ:problem:approval_not_needed");
    assert_eq!(answer["policy"], "orders-reader");
    // Nothing grants writing, with approval or without: refused by name at once.
    let mut write = delete_order_request();
    write["rights"] = json!([{"resource": "orders/42", "operations": ["write"]}]);
    let (status, answer) = open(&broker, &identity, &write).await;
    assert_eq!(status, 403);
    assert_eq!(answer["type"], "urn:writ:problem:policy_refused");
    assert_eq!(answer["refused_rights"][0]["operation"], "write");
    // No justification, or one with invisible characters: refused.
    let mut bare = delete_order_request();
    bare["justification"] = json!("  ");
    assert_eq!(open(&broker, &identity, &bare).await.0, 400);
    bare["justification"] = json!("approve \u{202e}eteled");
    assert_eq!(open(&broker, &identity, &bare).await.0, 400);
    bare["justification"] = json!("x".repeat(2049));
    assert_eq!(open(&broker, &identity, &bare).await.0, 400);
    broker.stop().await;
}

#[tokio::test]
async fn a_denial_is_final_and_says_why() {
    let broker = broker_on(Backend::Sqlite).await;
    let identity = broker.orders_identity();
    let alice = broker.admin_token("alice", &["approver"]).await;
    let bob = broker.admin_token("bob", &["approver"]).await;
    let id = open_pending(&broker, &identity, &delete_order_request()).await;
    let (status, _) = decide(&broker, &alice, &id, deny("not during the freeze")).await;
    assert_eq!(status, 200);
    let (_, read) = poll(&broker, &identity, &id, Duration::ZERO).await;
    assert_eq!(read["status"], "denied");
    assert_eq!(read["decisions"][0]["reason"], "not during the freeze");
    assert!(read.get("writ").is_none());
    let (status, closed) = decide(&broker, &bob, &id, approve("overrule")).await;
    assert_eq!(
        (status, closed["type"].as_str()),
        (409, Some("urn:writ:problem:approval_closed"))
    );
    broker.stop().await;
}

#[tokio::test]
async fn a_quorum_of_two_counts_distinct_approvers_only() {
    let broker = broker_on(Backend::Sqlite).await;
    let identity = broker.orders_identity();
    let alice = broker.admin_token("alice", &["approver"]).await;
    let alice_again = broker.admin_token("alice", &["approver"]).await;
    let bob = broker.admin_token("bob", &["approver"]).await;
    let mallory = broker.admin_token("mallory", &["approver"]).await;
    let id = open_pending(&broker, &identity, &wipe_archive_request()).await;

    let (_, first) = decide(&broker, &alice, &id, approve("ok")).await;
    assert_eq!(
        (first["status"].as_str(), first["approvals"].as_u64()),
        (Some("pending"), Some(1))
    );
    // The same person with a second credential is still one approver.
    let (status, twice) = decide(&broker, &alice_again, &id, approve("ok again")).await;
    assert_eq!(
        (status, twice["type"].as_str()),
        (409, Some("urn:writ:problem:already_decided"))
    );
    // An approver the policy does not name cannot count.
    let (status, outsider) = decide(&broker, &mallory, &id, approve("me too")).await;
    assert_eq!(
        (status, outsider["type"].as_str()),
        (403, Some("urn:writ:problem:approver_not_allowed"))
    );
    assert_eq!(
        poll(&broker, &identity, &id, Duration::ZERO).await.1["status"],
        "pending"
    );
    let (_, second) = decide(&broker, &bob, &id, approve("ok")).await;
    assert_eq!(second["status"], "approved");
    let (_, collected) = poll(&broker, &identity, &id, Duration::ZERO).await;
    assert!(collected["writ"].is_string());
    broker.stop().await;
}

#[tokio::test]
async fn concurrent_approvers_reach_quorum_exactly_once() {
    let broker = broker_on(Backend::Sqlite).await;
    let identity = broker.orders_identity();
    let tokens = [
        broker.admin_token("alice", &["approver"]).await,
        broker.admin_token("bob", &["approver"]).await,
        broker.admin_token("carol", &["approver"]).await,
    ];
    let id = open_pending(&broker, &identity, &wipe_archive_request()).await;
    let decisions = futures_util::future::join_all(
        tokens
            .iter()
            .map(|token| decide(&broker, token, &id, approve("go"))),
    )
    .await;
    let statuses: Vec<u16> = decisions.iter().map(|(status, _)| *status).collect();
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        accepted, 2,
        "two approvals close a quorum of two: {decisions:#?}"
    );
    assert!(statuses.contains(&409), "{statuses:?}");
    let approved = decisions
        .iter()
        .filter(|(_, body)| body["status"] == "approved" && body["approvals"] == 2)
        .count();
    assert!(approved >= 1);
    // Two fetches at once: one writ.
    let (a, b) = tokio::join!(
        poll(&broker, &identity, &id, Duration::ZERO),
        poll(&broker, &identity, &id, Duration::ZERO)
    );
    let writs = [a.1, b.1]
        .iter()
        .filter(|body| body["writ"].is_string())
        .count();
    assert_eq!(writs, 1);
    broker.stop().await;
}

#[tokio::test]
async fn nobody_approves_their_own_request_or_anothers_agents() {
    let broker = broker_on(Backend::Sqlite).await;
    let identity = broker.orders_identity();
    let id = open_pending(&broker, &identity, &delete_order_request()).await;
    // An approver credential naming the agent's own subject is the agent.
    let itself = broker
        .admin_token("system:serviceaccount:orders:report-bot", &["approver"])
        .await;
    let (status, refused) = decide(&broker, &itself, &id, approve("trust me")).await;
    assert_eq!(
        (status, refused["type"].as_str()),
        (403, Some("urn:writ:problem:self_approval"))
    );
    // Another agent cannot read the request (it does not exist for it).
    let other = broker.kubernetes.kubernetes_token(
        writ_testkit::Alg::Rs256,
        "orders",
        "other-bot",
        crate::helpers::AUDIENCE,
        Duration::from_secs(600),
    );
    let (status, unknown) = poll(&broker, &other, &id, Duration::ZERO).await;
    assert_eq!(
        (status, unknown["type"].as_str()),
        (404, Some("urn:writ:problem:approval_unknown"))
    );
    // An auditor or admin without the approver role decides nothing.
    let admin = broker.admin_token("root", &["admin", "auditor"]).await;
    let (status, missing) = decide(&broker, &admin, &id, approve("I am admin")).await;
    assert_eq!(
        (status, missing["type"].as_str()),
        (403, Some("urn:writ:problem:admin_role_missing"))
    );
    let audit = broker
        .admin_get_json("/v1/audit?action=approval.decision_refused", &admin)
        .await;
    assert_eq!(audit["events"][0]["reason"], "self_approval");
    broker.stop().await;
}

#[tokio::test]
async fn narrowing_shrinks_what_the_writ_carries_and_never_widens() {
    let broker = broker_on(Backend::Sqlite).await;
    let identity = broker.orders_identity();
    let alice = broker.admin_token("alice", &["approver"]).await;
    let mut request = delete_order_request();
    request["rights"] = json!([{"resource": "orders/*", "operations": ["delete", "read"]}]);
    let id = open_pending(&broker, &identity, &request).await;
    let widen = json!({"decision": "approve", "reason": "r",
        "rights": [{"resource": "invoices/1", "operations": ["delete"]}]});
    let (status, widened) = decide(&broker, &alice, &id, widen).await;
    assert_eq!(
        (status, widened["type"].as_str()),
        (400, Some("urn:writ:problem:narrowing_invalid"))
    );
    let longer = json!({"decision": "approve", "reason": "r", "ttl": 3600});
    assert_eq!(decide(&broker, &alice, &id, longer).await.0, 400);
    let narrow = json!({"decision": "approve", "reason": "only 42, briefly",
        "rights": [{"resource": "orders/42", "operations": ["delete"]}], "ttl": 60});
    let (status, narrowed) = decide(&broker, &alice, &id, narrow).await;
    assert_eq!(status, 200, "{narrowed:#}");
    assert_eq!(
        narrowed["rights"],
        json!([{"resource": "orders/42", "operations": ["delete"]}])
    );
    assert_eq!(narrowed["requested_rights"], request["rights"]);
    let (_, collected) = poll(&broker, &identity, &id, Duration::ZERO).await;
    let writ = collected["writ"].as_str().unwrap();
    let inspected = writ_verify::inspect(writ).unwrap();
    let authority = inspected.blocks[0].clone();
    assert!(authority.contains("\"orders/42\""), "{authority}");
    assert!(
        !authority.contains("starts_with"),
        "no prefix grant survives: {authority}"
    );
    let expires = humantime::parse_rfc3339(collected["writ_expires_at"].as_str().unwrap()).unwrap();
    let left = expires
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(left <= Duration::from_secs(60), "{left:?}");
    broker.stop().await;
}

#[tokio::test]
async fn a_waiting_agent_wakes_when_approved_and_an_undecided_request_expires() {
    let broker = broker_on(Backend::Sqlite).await;
    let identity = broker.orders_identity();
    let alice = broker.admin_token("alice", &["approver"]).await;
    let id = open_pending(&broker, &identity, &delete_order_request()).await;
    let started = Instant::now();
    let (waited, _) = tokio::join!(
        poll(&broker, &identity, &id, Duration::from_secs(20)),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            decide(&broker, &alice, &id, approve("ok")).await
        }
    );
    assert_eq!(waited.1["status"], "approved");
    assert!(waited.1["writ"].is_string());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // The archive policy waits 3 s for its quorum; nobody decides.
    let id = open_pending(&broker, &identity, &wipe_archive_request()).await;
    let (_, expired) = poll(&broker, &identity, &id, Duration::from_secs(8)).await;
    assert_eq!(expired["status"], "expired");
    let (status, late) = decide(&broker, &alice, &id, approve("too late")).await;
    assert_eq!(
        (status, late["type"].as_str()),
        (409, Some("urn:writ:problem:approval_closed"))
    );
    // The sweeper records the expiry in the audit log.
    let auditor = broker.admin_token("auditor", &["auditor"]).await;
    let mut recorded = Value::Null;
    for _ in 0..50 {
        recorded = broker
            .admin_get_json("/v1/audit?action=approval.expired", &auditor)
            .await;
        if recorded["events"].as_array().is_some_and(|e| !e.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(details(&recorded["events"][0])["approval_id"], id);
    // A wait beyond the bound is refused rather than silently shortened.
    let response = client()
        .get(format!("{}/v1/approvals/{id}?wait=31s", broker.url))
        .bearer_auth(&identity)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    broker.stop().await;
}

#[tokio::test]
async fn an_agent_has_a_bounded_number_of_pending_requests() {
    let broker = broker_on(Backend::Sqlite).await;
    let identity = broker.orders_identity();
    for _ in 0..16 {
        open_pending(&broker, &identity, &delete_order_request()).await;
    }
    let (status, answer) = open(&broker, &identity, &delete_order_request()).await;
    assert_eq!(
        (status, answer["type"].as_str()),
        (429, Some("urn:writ:problem:too_many_pending"))
    );
    broker.stop().await;
}

#[tokio::test]
async fn only_the_identity_that_asked_reads_or_collects_and_head_never_collects() {
    let broker = broker_on(Backend::Sqlite).await;
    let identity = broker.orders_identity();
    let alice = broker.admin_token("alice", &["approver"]).await;
    let id = open_pending(&broker, &identity, &delete_order_request()).await;
    // The same rendered agent name from another subject (another token whose template renders
    // `k8s:orders/report-bot`) is not the requester.
    let same_name = broker.kubernetes.sign(
        writ_testkit::Alg::Rs256,
        &broker.orders_claims(|claims| {
            claims["sub"] = json!("system:serviceaccount:orders:impostor");
            claims["kubernetes.io"]["serviceaccount"]["name"] = json!("report-bot");
        }),
    );
    assert_eq!(decide(&broker, &alice, &id, approve("ok")).await.0, 200);
    let (status, _) = poll(&broker, &same_name, &id, Duration::ZERO).await;
    assert_eq!(status, 404);
    // A HEAD (a monitor, a proxy) answers the status but never consumes the handover.
    let head = client()
        .head(format!("{}/v1/approvals/{id}", broker.url))
        .bearer_auth(&identity)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let (_, collected) = poll(&broker, &identity, &id, Duration::ZERO).await;
    assert!(collected["writ"].is_string(), "{collected:#}");
    broker.stop().await;
}

#[tokio::test]
async fn approvers_see_who_decided_and_one_agent_cannot_take_every_wait_slot() {
    let broker = broker_on(Backend::Sqlite).await;
    let identity = broker.orders_identity();
    let alice = broker.admin_token("Alice", &["approver"]).await;
    let id = open_pending(&broker, &identity, &wipe_archive_request()).await;
    assert_eq!(decide(&broker, &alice, &id, approve("ok")).await.0, 200);
    let listed = broker.admin_get_json("/v1/approvals", &alice).await;
    let entry = &listed["approvals"][0];
    assert_eq!(entry["approvals"], 1);
    assert_eq!(entry["decisions"][0]["approver"], "alice");
    assert_eq!(entry["may_decide"], false);
    // The same person in another case does not make a quorum of two.
    let shouting = broker.admin_token("ALICE", &["approver"]).await;
    let (status, _) = decide(&broker, &shouting, &id, approve("again")).await;
    assert_eq!(status, 409);

    // Four long-polls of one agent hold its slots; a fifth is answered at once, with when to
    // ask again.
    let waiting: Vec<_> = (0..4)
        .map(|_| poll(&broker, &identity, &id, Duration::from_secs(3)))
        .collect();
    let fifth = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        let response = client()
            .get(format!("{}/v1/approvals/{id}?wait=3s", broker.url))
            .bearer_auth(&identity)
            .send()
            .await
            .unwrap();
        (
            response.headers().get("retry-after").cloned(),
            started.elapsed(),
        )
    };
    let (_, (retry_after, took)) = tokio::join!(futures_util::future::join_all(waiting), fifth);
    assert_eq!(retry_after.unwrap(), "2");
    assert!(took < Duration::from_secs(2), "{took:?}");
    broker.stop().await;
}
