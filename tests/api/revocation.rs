//! Revocation through the HTTP API: admin authentication on every admin route, revoking writs,
//! tasks and agents (idempotently), suspension and its lifting, the feed and the stream.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::helpers::{Backend, TestBroker, client, orders_request, problem_type};
use crate::on_both_backends;

const AGENT: &str = "k8s:orders/report-bot";

fn revoke_writ(writ_id: &str) -> Value {
    json!({ "writ_id": writ_id, "reason": "leaked in a log" })
}

#[tokio::test]
async fn every_admin_route_refuses_what_is_not_the_right_admin_credential() {
    let broker = TestBroker::start().await;
    let (agent_writ, _) = broker
        .issue_writ(&broker.orders_identity(), &orders_request())
        .await;
    let admin = broker.admin_token("root", &["admin"]).await;
    let auditor = broker.admin_token("eve", &["auditor"]).await;
    let approver = broker.admin_token("ann", &["approver"]).await;
    let revoked = broker.admin_token("gone", &["admin", "auditor"]).await;
    let expired = broker.expired_admin_token();

    // Revoke the "gone" admin writ through its own audit record.
    let events = broker
        .admin_get_json("/v1/audit?action=admin.bootstrap&limit=1000", &auditor)
        .await;
    let gone_id = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["details"].as_str().unwrap().contains("\"gone\""))
        .unwrap()["writ_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked_answer = broker
        .admin_post("/v1/revocations", &admin, &revoke_writ(&gone_id))
        .await;
    assert_eq!(revoked_answer.status(), 201);

    let routes: [(&str, &str, &str); 7] = [
        ("POST", "/v1/revocations", "admin"),
        ("POST", "/v1/suspensions/lift", "admin"),
        ("POST", "/v1/admin/writs", "admin"),
        ("GET", "/v1/audit", "auditor"),
        ("GET", "/v1/audit/checkpoints", "auditor"),
        ("GET", "/v1/approvals", "approver"),
        (
            "POST",
            "/v1/approvals/ap_00000000000000000000000000000000/decision",
            "approver",
        ),
    ];
    for (method, path, role) in routes {
        let wrong_role = match role {
            "admin" | "approver" => &auditor,
            _ => &approver,
        };
        let cases: [(Option<&str>, u16, &str); 6] = [
            (None, 401, "credential_missing"),
            (Some("not-a-biscuit"), 401, "admin_credential_malformed"),
            (Some(&agent_writ), 401, "admin_credential_invalid"),
            (Some(&expired), 401, "admin_credential_expired"),
            (Some(&revoked), 401, "admin_credential_revoked"),
            (Some(wrong_role), 403, "admin_role_missing"),
        ];
        for (token, status, code) in cases {
            let mut request = match method {
                "POST" => client()
                    .post(format!("{}{path}", broker.url))
                    .json(&json!({})),
                _ => client().get(format!("{}{path}", broker.url)),
            };
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let (got_status, got_type) = problem_type(request.send().await.unwrap()).await;
            assert_eq!(
                (got_status, got_type.as_str()),
                (status, format!("urn:writ:problem:{code}").as_str()),
                "{method} {path} with {code}"
            );
        }
    }
    broker.stop().await;
}

#[tokio::test]
async fn an_attenuated_agent_writ_claiming_admin_roles_is_refused() {
    let broker = TestBroker::start().await;
    let (writ, _) = broker
        .issue_writ(&broker.orders_identity(), &orders_request())
        .await;
    let token = biscuit_auth::UnverifiedBiscuit::from_base64(&writ).unwrap();
    let block = biscuit_auth::builder::BlockBuilder::new()
        .code(r#"writ_admin(1); principal("mallory"); role("admin");"#)
        .unwrap();
    let forged = token.append(block).unwrap().to_base64().unwrap();
    let response = broker
        .admin_post(
            "/v1/revocations",
            &forged,
            &json!({"agent": "x", "reason": "r"}),
        )
        .await;
    assert_eq!(
        problem_type(response).await,
        (401, "urn:writ:problem:admin_credential_invalid".to_owned())
    );
    broker.stop().await;
}

async fn revoking_a_writ_is_idempotent_and_reaches_the_feed(backend: Backend) {
    let broker = TestBroker::start_on(backend).await;
    let admin = broker.admin_token("root", &["admin"]).await;
    let issued = broker
        .issue(&broker.orders_identity(), &orders_request())
        .await;
    let writ_id = issued["writ_id"].as_str().unwrap();

    let first = broker
        .admin_post("/v1/revocations", &admin, &revoke_writ(writ_id))
        .await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["target"], "writ");
    assert_eq!(first["writ_id"], writ_id);
    assert_eq!(first["created"], true);
    assert_eq!(first["live_writs"], 1);
    assert_eq!(first["revoked_by"], "root");
    // Served until the writ's expiry plus the largest skew a verifier's clock may have.
    assert!(first["expires_at"].as_str().unwrap() > issued["expires_at"].as_str().unwrap());
    let inspected = writ_verify::inspect(issued["writ"].as_str().unwrap()).unwrap();
    assert_eq!(
        first["revocation_id"].as_str().unwrap().len(),
        128,
        "{inspected:?}"
    );

    let again = broker
        .admin_post("/v1/revocations", &admin, &revoke_writ(writ_id))
        .await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["created"], false);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["seq"], first["seq"]);

    let feed = broker.get_json("/v1/revocations?after=0").await;
    let entries = feed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["writ_id"], writ_id);
    assert!(
        entries[0].get("reason").is_none(),
        "the feed carries no reasons"
    );
    assert_eq!(feed["next_after"], first["seq"]);
    assert_eq!(feed["more"], false);
    broker.stop().await;
}
on_both_backends!(revoking_a_writ_is_idempotent_and_reaches_the_feed);

async fn revoking_an_agent_suspends_it_until_lifted(backend: Backend) {
    let broker = TestBroker::start_on(backend).await;
    let admin = broker.admin_token("root", &["admin"]).await;
    let identity = broker.orders_identity();
    broker.issue(&identity, &orders_request()).await;
    broker.issue(&identity, &orders_request()).await;

    let suspend = json!({ "agent": AGENT, "reason": "prompt injection suspected" });
    let revoked = broker.admin_post("/v1/revocations", &admin, &suspend).await;
    assert_eq!(revoked.status(), 201);
    let revoked: Value = revoked.json().await.unwrap();
    assert_eq!(revoked["suspended"], true);
    assert_eq!(revoked["live_writs"], 2);
    assert!(revoked.get("issued_until").is_none(), "{revoked}");
    assert!(revoked.get("expires_at").is_none(), "{revoked}");

    let refused = broker.request(&identity, &orders_request()).await;
    assert_eq!(
        problem_type(refused).await,
        (403, "urn:writ:problem:agent_suspended".to_owned())
    );
    let again: Value = broker
        .admin_post("/v1/revocations", &admin, &suspend)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["created"], false);
    assert_eq!(again["id"], revoked["id"]);

    let lift = json!({ "agent": AGENT, "reason": "cleared" });
    let lifted = broker
        .admin_post("/v1/suspensions/lift", &admin, &lift)
        .await;
    assert_eq!(lifted.status(), 200);
    let lifted: Value = lifted.json().await.unwrap();
    assert_eq!(lifted["id"], revoked["id"]);
    assert_eq!(lifted["suspended"], false);
    assert_eq!(lifted["lifted_by"], "root");
    assert!(lifted["issued_until"].is_string());
    assert!(lifted["seq"].as_u64() > revoked["seq"].as_u64());

    let issued = broker.request(&identity, &orders_request()).await;
    assert_eq!(issued.status(), 201, "issuance resumes after the lift");
    let twice = broker
        .admin_post("/v1/suspensions/lift", &admin, &lift)
        .await;
    assert_eq!(
        problem_type(twice).await,
        (404, "urn:writ:problem:agent_not_suspended".to_owned())
    );

    let feed = broker.get_json("/v1/revocations").await;
    let entries = feed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "the lift replaced the entry: {feed}");
    assert_eq!(entries[0]["issued_until"], lifted["issued_until"]);
    broker.stop().await;
}
on_both_backends!(revoking_an_agent_suspends_it_until_lifted);

#[tokio::test]
async fn revoking_a_task_covers_its_writs_and_a_later_one_needs_a_new_revocation() {
    let broker = TestBroker::start().await;
    let admin = broker.admin_token("root", &["admin"]).await;
    let identity = broker.orders_identity();
    let mut other_task = orders_request();
    other_task["task"] = json!("other task");
    broker.issue(&identity, &orders_request()).await;
    broker.issue(&identity, &orders_request()).await;
    broker.issue(&identity, &other_task).await;

    let by_task = json!({ "task": "nightly report", "reason": "bad input data" });
    let first: Value = broker
        .admin_post("/v1/revocations", &admin, &by_task)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["target"], "task");
    assert_eq!(first["live_writs"], 2);
    assert_eq!(first["created"], true);
    let again: Value = broker
        .admin_post("/v1/revocations", &admin, &by_task)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (again["created"].clone(), again["id"].clone()),
        (json!(false), first["id"].clone())
    );

    // Task revocation does not suspend: a new writ for the task can be issued, and revoking
    // the task again then makes a new entry that covers it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    broker.issue(&identity, &orders_request()).await;
    let later: Value = broker
        .admin_post("/v1/revocations", &admin, &by_task)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(later["created"], true);
    assert_ne!(later["id"], first["id"]);
    broker.stop().await;
}

#[tokio::test]
async fn malformed_revocations_are_refused_by_name() {
    let broker = TestBroker::start().await;
    let admin = broker.admin_token("root", &["admin"]).await;
    let cases = [
        (json!({ "reason": "no target" }), 400, "invalid_request"),
        (
            json!({ "writ_id": "wr_00000000000000000000000000000000", "agent": "a", "reason": "two" }),
            400,
            "invalid_request",
        ),
        (
            json!({ "writ_id": "wr_0000", "reason": "short id" }),
            400,
            "invalid_request",
        ),
        (
            json!({ "writ_id": "wr_0000000000000000000000000000000Z", "reason": "not hex" }),
            400,
            "invalid_request",
        ),
        (
            json!({ "agent": "a", "reason": "" }),
            400,
            "invalid_request",
        ),
        (
            json!({ "agent": "a", "reason": "x".repeat(501) }),
            400,
            "invalid_request",
        ),
        (
            json!({ "agent": "a\u{7}b", "reason": "bell" }),
            400,
            "invalid_request",
        ),
        (
            json!({ "task": "", "reason": "empty task" }),
            400,
            "invalid_request",
        ),
        (
            json!({ "agent": "a", "reason": "r", "extra": 1 }),
            400,
            "invalid_request",
        ),
        (
            json!({ "writ_id": "wr_00000000000000000000000000000000", "reason": "never issued" }),
            404,
            "writ_unknown",
        ),
    ];
    for (body, status, code) in cases {
        let response = broker.admin_post("/v1/revocations", &admin, &body).await;
        assert_eq!(
            problem_type(response).await,
            (status, format!("urn:writ:problem:{code}")),
            "{body}"
        );
    }
    let not_json = client()
        .post(format!("{}/v1/revocations", broker.url))
        .bearer_auth(&admin)
        .body("agent=a")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);
    let bad_limit = broker.get("/v1/revocations?limit=0").await;
    assert_eq!(bad_limit.status(), 400);
    broker.stop().await;
}

#[tokio::test]
async fn the_feed_pages_by_seq() {
    let broker = TestBroker::start().await;
    let admin = broker.admin_token("root", &["admin"]).await;
    let identity = broker.orders_identity();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (_, writ_id) = broker.issue_writ(&identity, &orders_request()).await;
        broker
            .admin_post("/v1/revocations", &admin, &revoke_writ(&writ_id))
            .await;
        ids.push(writ_id);
    }
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let page = broker
            .get_json(&format!("/v1/revocations?after={after}&limit=2"))
            .await;
        for entry in page["entries"].as_array().unwrap() {
            seen.push(entry["writ_id"].as_str().unwrap().to_owned());
        }
        after = page["next_after"].as_u64().unwrap();
        if page["more"] == false {
            break;
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(after, 5);
    broker.stop().await;
}

/// Reads server-sent events until `until` returns true or the deadline passes.
async fn read_events(
    response: &mut reqwest::Response,
    deadline: Duration,
    mut until: impl FnMut(&[(String, String, Option<String>)]) -> bool,
) -> Vec<(String, String, Option<String>)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let stop = tokio::time::Instant::now() + deadline;
    while !until(&events) {
        let chunk = tokio::time::timeout_at(stop, response.chunk())
            .await
            .expect("the expected events arrive in time")
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut kind, mut data, mut id) = (String::new(), String::new(), None);
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    kind = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim());
                } else if let Some(value) = line.strip_prefix("id:") {
                    id = Some(value.trim().to_owned());
                }
            }
            if !kind.is_empty() {
                events.push((kind, data, id));
            }
        }
    }
    events
}

#[tokio::test]
async fn the_stream_sends_the_backlog_a_heartbeat_then_live_entries_and_resumes() {
    let broker = TestBroker::start_with({
        let mut setup = crate::helpers::Setup::new(Backend::Sqlite);
        setup.tweak = Box::new(|config| config.revocation_heartbeat = Duration::from_millis(300));
        setup
    })
    .await;
    let admin = broker.admin_token("root", &["admin"]).await;
    let identity = broker.orders_identity();
    let (_, first) = broker.issue_writ(&identity, &orders_request()).await;
    broker
        .admin_post("/v1/revocations", &admin, &revoke_writ(&first))
        .await;

    let mut stream = broker.get("/v1/revocations/stream").await;
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let backlog = read_events(&mut stream, Duration::from_secs(5), |events| {
        events.iter().any(|(kind, _, _)| kind == "heartbeat")
    })
    .await;
    assert_eq!(backlog[0].0, "revocation");
    assert!(backlog[0].1.contains(&first));
    assert_eq!(backlog[0].2.as_deref(), Some("1"));
    assert_eq!(
        backlog[1],
        ("heartbeat".into(), r#"{"head":1}"#.into(), None)
    );

    let (_, second) = broker.issue_writ(&identity, &orders_request()).await;
    broker
        .admin_post("/v1/revocations", &admin, &revoke_writ(&second))
        .await;
    let live = read_events(&mut stream, Duration::from_secs(2), |events| {
        events
            .iter()
            .any(|(kind, data, _)| kind == "revocation" && data.contains(&second))
    })
    .await;
    assert!(live.iter().any(|(_, _, id)| id.as_deref() == Some("2")));
    // Heartbeats keep coming while nothing happens.
    let idle = read_events(&mut stream, Duration::from_secs(2), |events| {
        events
            .iter()
            .filter(|(kind, _, _)| kind == "heartbeat")
            .count()
            >= 2
    })
    .await;
    assert!(idle.iter().all(|(kind, _, _)| kind == "heartbeat"));
    drop(stream);

    let mut resumed = client()
        .get(format!("{}/v1/revocations/stream", broker.url))
        .header("Last-Event-ID", "1")
        .send()
        .await
        .unwrap();
    let events = read_events(&mut resumed, Duration::from_secs(5), |events| {
        events.iter().any(|(kind, _, _)| kind == "heartbeat")
    })
    .await;
    assert_eq!(
        events.len(),
        2,
        "only the entry after 1, then a heartbeat: {events:?}"
    );
    assert!(events[0].1.contains(&second));
    let bad = client()
        .get(format!("{}/v1/revocations/stream", broker.url))
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    broker.stop().await;
}

/// A broker that cannot read revocations any more stops vouching for them: the feed and the
/// stream answer 503, readiness fails, and a following verifier's view ages until it refuses.
#[tokio::test]
async fn a_broker_that_cannot_read_revocations_does_not_vouch_for_them() {
    let broker = TestBroker::start_on(Backend::Postgres).await;
    assert_eq!(broker.get("/v1/revocations").await.status(), 200);
    broker.drop_postgres_database().await;
    let mut answered = 0;
    for _ in 0..100 {
        answered = broker.get("/v1/revocations").await.status().as_u16();
        if answered == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        answered, 503,
        "the feed stops once the view is older than a few polls"
    );
    let problem = broker.get_json("/v1/revocations").await;
    assert_eq!(problem["type"], "urn:writ:problem:not_ready");
    let stream = broker.get("/v1/revocations/stream").await;
    assert_eq!(
        problem_type(stream).await,
        (503, "urn:writ:problem:not_ready".to_owned())
    );
    let ready = broker.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    broker.stop().await;
}

#[tokio::test]
async fn an_admin_writ_never_outlives_the_one_it_was_issued_with() {
    let broker = TestBroker::start().await;
    let admin = broker.admin_token("root", &["admin"]).await; // ten minutes
    let response = broker
        .admin_post(
            "/v1/admin/writs",
            &admin,
            &json!({ "principal": "svc:ci", "roles": ["auditor"], "ttl": 7200 }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let granted: Value = response.json().await.unwrap();
    let expires = humantime::parse_rfc3339(granted["expires_at"].as_str().unwrap()).unwrap();
    assert!(
        expires <= SystemTime::now() + Duration::from_secs(600),
        "{granted}"
    );

    let auditor = granted["writ"].as_str().unwrap();
    let page = broker
        .admin_get_json("/v1/audit?action=admin.writ.issued", auditor)
        .await;
    let details: Value =
        serde_json::from_str(page["events"][0]["details"].as_str().unwrap()).unwrap();
    assert!(
        details["parent_writ_id"]
            .as_str()
            .unwrap()
            .starts_with("ad_"),
        "{details}"
    );
    broker.stop().await;
}
