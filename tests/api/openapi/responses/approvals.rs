//! Human approval: `approval_required` from `POST /v1/writs`; `POST /v1/approvals` (202, 400,
//! 401, 403, 413, 415, 429); `GET` and `HEAD /v1/approvals/{id}` (200 pending, waiting,
//! collecting the elevated writ once, decided, expired; 400, 401, 403, 404); `GET` and
//! `HEAD /v1/approvals` (200 paged, 400); `POST /v1/approvals/{id}/decision` (200 approving,
//! narrowing, denying; 400, 403, 404, 409). The approver routes' 401, 403 (role), 413 and 415
//! are in [`super::admin_refusals`]; every 503 in [`super::unavailable`], on the two requests
//! this leaves in [`Context`].

use std::str::FromStr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use writ_testkit::Alg;

use super::Context;
use crate::approvals::{approve, delete_order_request, deny, wipe_archive_request};
use crate::helpers::{AUDIENCE, orders_request};
use crate::openapi::Request;

pub(super) async fn cases(cx: &mut Context) {
    let identity = cx.identity.clone();
    // The archive policy waits 3 s for its quorum: this request expires while the others run.
    let expiring = open(cx, &identity, &wipe_archive_request()).await;
    wrong_way_in(cx).await;
    invalid(cx).await;
    let pending = opened(cx).await;
    read(cx, &pending).await;
    list(cx, &pending).await;
    collected_once(cx).await;
    narrowed(cx).await;
    quorum_and_refusals(cx).await;
    invalid_decisions(cx, &pending).await;
    denied(cx, &pending).await;
    unknown(cx).await;
    suspended(cx).await;
    too_many(cx).await;
    expired(cx, &expiring).await;
    // Left for the storage failures: a pending request and an approved, uncollected one.
    cx.pending_approval = open(cx, &identity, &delete_order_request()).await;
    let approved = open(cx, &identity, &delete_order_request()).await;
    let approver = cx.approver.clone();
    decide(cx, &approver, &approved, approve("for later"), 200, "").await;
    cx.approved_approval = approved;
}

// ---- Helpers ----------------------------------------------------------------------------------

/// An identity of the `orders` namespace's service account `name` (agent `k8s:orders/<name>`):
/// the approval policies match it like the orders bot.
fn bot(cx: &Context, name: &str) -> String {
    cx.broker.kubernetes.kubernetes_token(
        Alg::Rs256,
        "orders",
        name,
        AUDIENCE,
        Duration::from_secs(600),
    )
}

/// Opens `body` as `identity` and expects it pending at its `Location`; answers its id.
async fn open(cx: &mut Context, identity: &str, body: &Value) -> String {
    let request = Request::writ(identity, body);
    let answer = cx
        .probe
        .expect_at("POST", "/v1/approvals", request, 202, "")
        .await;
    assert_eq!(answer["status"], "pending", "{answer:#}");
    let id = answer["id"].as_str().unwrap().to_owned();
    assert_eq!(cx.probe.headers["location"], format!("/v1/approvals/{id}"));
    id
}

/// Sends an approval request and asserts the status and problem code.
async fn open_refused(
    cx: &mut Context,
    identity: &str,
    body: &Value,
    status: u16,
    code: &str,
) -> Value {
    let request = Request::writ(identity, body);
    cx.probe
        .expect_at("POST", "/v1/approvals", request, status, code)
        .await
}

/// Reads request `id` (with `query`) as `identity` and asserts the status and problem code.
async fn read_as(
    cx: &mut Context,
    method: &str,
    identity: &str,
    id_and_query: &str,
    status: u16,
    code: &str,
) -> Value {
    let path = format!("/v1/approvals/{id_and_query}");
    cx.probe
        .expect_at(method, &path, Request::bearer(identity), status, code)
        .await
}

/// The orders bot reads its request `id` with `GET`.
async fn read_own(cx: &mut Context, id_and_query: &str) -> Value {
    let identity = cx.identity.clone();
    read_as(cx, "GET", &identity, id_and_query, 200, "").await
}

/// `token` decides request `id` with `body`; asserts the status and problem code.
async fn decide(
    cx: &mut Context,
    token: &str,
    id: &str,
    body: Value,
    status: u16,
    code: &str,
) -> Value {
    let path = format!("/v1/approvals/{id}/decision");
    cx.probe
        .expect_at("POST", &path, Request::admin(token, &body), status, code)
        .await
}

/// The canonical deletion with `rights`.
fn deletion(rights: Value) -> Value {
    let mut body = delete_order_request();
    body["rights"] = rights;
    body
}

// ---- Cases ------------------------------------------------------------------------------------

/// Every right has one way in: `approval_required` from `POST /v1/writs`, `approval_not_needed`
/// from `POST /v1/approvals`, each naming the policy of the other way; and `policy_refused`
/// when neither grants it, naming what.
async fn wrong_way_in(cx: &mut Context) {
    let mut direct = delete_order_request();
    direct.as_object_mut().unwrap().remove("justification");
    let refusal = cx
        .probe
        .expect(
            Request::writ(&cx.identity, &direct),
            403,
            "approval_required",
        )
        .await;
    assert_eq!(
        (&refusal["reason"], &refusal["policy"]),
        (&json!("approval_required"), &json!("orders-cleanup"))
    );
    let identity = cx.identity.clone();
    let read = deletion(json!([{"resource": "orders/42", "operations": ["read"]}]));
    let refusal = open_refused(cx, &identity, &read, 400, "approval_not_needed").await;
    assert_eq!(refusal["policy"], "orders-reader");
    let write = deletion(json!([{"resource": "orders/42", "operations": ["write"]}]));
    let refusal = open_refused(cx, &identity, &write, 403, "policy_refused").await;
    assert_eq!(refusal["refused_rights"][0]["operation"], "write");
    let mut too_long = delete_order_request();
    too_long["ttl"] = json!(3600);
    let refusal = open_refused(cx, &identity, &too_long, 403, "policy_refused").await;
    assert_eq!(
        refusal["refused_ttl"],
        json!({"requested": 3600, "max": 600})
    );
}

/// 400 (the body, its justification, its task), 401, 413 and 415.
async fn invalid(cx: &mut Context) {
    let identity = cx.identity.clone();
    let with = |member: &str, value: Value| {
        let mut body = delete_order_request();
        body[member] = value;
        body
    };
    let mut bare = delete_order_request();
    bare.as_object_mut().unwrap().remove("justification");
    for body in [
        bare,
        with("justification", json!(" \n ")),
        with("justification", json!("approve \u{202e}eteled")),
        with("justification", json!("x".repeat(2049))),
        with("task", json!("remove  order 42")),
        with("ttl", json!(0)),
        with("admin", json!(true)),
    ] {
        open_refused(cx, &identity, &body, 400, "invalid_request").await;
    }
    let not_json = Request {
        body: Some(b"{not json".to_vec()),
        ..Request::writ(&identity, &Value::Null)
    };
    cx.probe
        .expect_at("POST", "/v1/approvals", not_json, 400, "invalid_request")
        .await;
    let anonymous = Request {
        authorization: None,
        ..Request::writ(&identity, &delete_order_request())
    };
    cx.probe
        .expect_at(
            "POST",
            "/v1/approvals",
            anonymous,
            401,
            "credential_missing",
        )
        .await;
    let huge = Request {
        body: Some(format!(r#"{{"justification":"{}"}}"#, "a".repeat(70_000)).into_bytes()),
        ..Request::writ(&identity, &Value::Null)
    };
    cx.probe
        .expect_at("POST", "/v1/approvals", huge, 413, "payload_too_large")
        .await;
    let text = Request {
        content_type: Some("text/plain"),
        ..Request::writ(&identity, &delete_order_request())
    };
    cx.probe
        .expect_at("POST", "/v1/approvals", text, 415, "unsupported_media_type")
        .await;
}

/// 202: a request opens pending, its lifetime at most the approval rule's (5 minutes; a longer
/// one is cut to it). Answers the id of a pending request.
async fn opened(cx: &mut Context) -> String {
    let identity = cx.identity.clone();
    let mut longer = delete_order_request();
    longer["ttl"] = json!(600);
    let request = Request::writ(&identity, &longer);
    let answer = cx
        .probe
        .expect_at("POST", "/v1/approvals", request, 202, "")
        .await;
    assert_eq!(answer["ttl"], 300, "{answer:#}");
    assert_eq!(answer["policy"], "orders-cleanup");
    assert_eq!(answer["quorum"], 1);
    open(cx, &identity, &delete_order_request()).await
}

/// `GET` and `HEAD` of a pending request: 200 at once and after waiting; 400, 401, 404.
async fn read(cx: &mut Context, pending: &str) {
    let reading = read_own(cx, pending).await;
    assert_eq!(reading["status"], "pending");
    assert!(reading.get("writ").is_none() && reading.get("writ_expires_at").is_none());
    let started = Instant::now();
    let waited = read_own(cx, &format!("{pending}?wait=1")).await;
    assert_eq!(waited["status"], "pending");
    assert!(started.elapsed() >= Duration::from_millis(900), "waited");
    read_own(cx, &format!("{pending}?wait=0s")).await;
    let identity = cx.identity.clone();
    for method in ["GET", "HEAD"] {
        read_as(cx, method, &identity, pending, 200, "").await;
        for query in [
            "wait=31",
            "wait=31s",
            "wait=soon",
            "wait=-1",
            "wait=1&wait=2",
            "after=1",
        ] {
            let path = format!("{pending}?{query}");
            read_as(cx, method, &identity, &path, 400, "invalid_request").await;
        }
        let anonymous = Request::default();
        let path = format!("/v1/approvals/{pending}");
        cx.probe
            .expect_at(method, &path, anonymous, 401, "credential_missing")
            .await;
    }
}

/// `GET` and `HEAD` of the listing: pages, and 400 for every parameter.
async fn list(cx: &mut Context, pending: &str) {
    let approver = cx.approver.clone();
    let as_approver = || Request::bearer(&approver);
    let page = cx
        .probe
        .expect_at("GET", "/v1/approvals", as_approver(), 200, "")
        .await;
    let listed = page["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|request| request["id"] == pending)
        .expect("the pending request is listed")
        .clone();
    assert_eq!(listed["may_decide"], true);
    assert_eq!(listed["subject"], "system:serviceaccount:orders:report-bot");
    assert_eq!(
        listed["notification"],
        json!({"status": "none", "attempts": 0})
    );
    let first = cx
        .probe
        .expect_at(
            "GET",
            "/v1/approvals?status=all&limit=1",
            as_approver(),
            200,
            "",
        )
        .await;
    let next = first["next"].as_str().expect("a full page has a next");
    let second = cx
        .probe
        .expect_at(
            "GET",
            &format!("/v1/approvals?status=all&limit=1&before={next}"),
            as_approver(),
            200,
            "",
        )
        .await;
    assert_ne!(first["approvals"][0]["id"], second["approvals"][0]["id"]);
    for method in ["GET", "HEAD"] {
        cx.probe
            .expect_at(
                method,
                "/v1/approvals?status=pending&limit=100",
                as_approver(),
                200,
                "",
            )
            .await;
        for query in [
            "status=open",
            "limit=0",
            "limit=101",
            "before=yesterday",
            "before=1.wr_00000000000000000000000000000000",
            "after=1",
        ] {
            let path = format!("/v1/approvals?{query}");
            cx.probe
                .expect_at(method, &path, as_approver(), 400, "invalid_request")
                .await;
        }
    }
}

/// An approval, and the elevated writ handed over once: the first read carries it, with the
/// evidence block signed by the key set's approval key; no later read does.
async fn collected_once(cx: &mut Context) {
    let identity = cx.identity.clone();
    let approver = cx.approver.clone();
    let id = open(cx, &identity, &delete_order_request()).await;
    let decided = decide(cx, &approver, &id, approve("duplicate"), 200, "").await;
    assert_eq!(decided["status"], "approved");
    assert_eq!(decided["approvals"], 1);
    let collected = read_own(cx, &id).await;
    assert_eq!(collected["status"], "approved");
    let writ = collected["writ"].as_str().expect("the first read collects");
    let writ_id = collected["writ_id"].as_str().unwrap().to_owned();
    assert!(collected["writ_expires_at"].is_string());
    assert!(collected["root_key_id"].is_u64());
    assert_evidence(cx, writ, &writ_id, &id).await;
    for method in ["GET", "HEAD"] {
        read_as(cx, method, &identity, &id, 200, "").await;
    }
    let again = read_own(cx, &id).await;
    assert!(again.get("writ").is_none(), "a writ is handed over once");
    assert_eq!(again["writ_id"], writ_id);
    assert_eq!(again["writ_expires_at"], collected["writ_expires_at"]);
}

/// The elevated writ verifies with the root key it names and carries a second block, signed by
/// the approval key the key set publishes, with the approval's facts.
async fn assert_evidence(cx: &mut Context, writ: &str, writ_id: &str, request_id: &str) {
    let keys = cx
        .probe
        .expect_at("GET", "/.well-known/writ-keys", Request::default(), 200, "")
        .await;
    let root_key_id = writ_verify::inspect(writ).unwrap().root_key_id.unwrap();
    let root = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == root_key_id)
        .unwrap();
    let root = biscuit_auth::PublicKey::from_str(root["public_key"].as_str().unwrap()).unwrap();
    let token = biscuit_auth::Biscuit::from_base64(writ, root).unwrap();
    let approval_key = keys["approval_keys"][0]["public_key"].as_str().unwrap();
    let signer = token.external_public_keys()[1].map(|key| key.to_string());
    assert_eq!(signer.as_deref(), Some(approval_key));
    let evidence = token.print_block_source(1).unwrap();
    for fact in [
        format!(r#"approved_writ("{writ_id}")"#),
        format!(r#"approval("{request_id}", "alice""#),
        r#"approved_right("orders/42", "delete")"#.to_owned(),
    ] {
        assert!(evidence.contains(&fact), "{fact} in {evidence}");
    }
}

/// Narrowing: a widening is refused (`narrowing_invalid`), a narrowing replaces the rights and
/// shortens the writ's life.
async fn narrowed(cx: &mut Context) {
    let wide = deletion(json!([{"resource": "orders/*", "operations": ["delete", "read"]}]));
    let identity = cx.identity.clone();
    let id = open(cx, &identity, &wide).await;
    let alice = cx.approver.clone();
    for body in [
        json!({"decision": "approve", "reason": "r",
            "rights": [{"resource": "invoices/1", "operations": ["delete"]}]}),
        json!({"decision": "approve", "reason": "r",
            "rights": [{"resource": "orders/42", "operations": ["write"]}]}),
        json!({"decision": "approve", "reason": "r", "ttl": 301}),
    ] {
        decide(cx, &alice, &id, body, 400, "narrowing_invalid").await;
    }
    let narrow = json!({"decision": "approve", "reason": "only 42, briefly",
        "rights": [{"resource": "orders/42", "operations": ["delete"]}], "ttl": 60});
    let decided = decide(cx, &alice, &id, narrow, 200, "").await;
    assert_eq!(
        decided["rights"],
        json!([{"resource": "orders/42", "operations": ["delete"]}])
    );
    assert_eq!(decided["requested_rights"], wide["rights"]);
    assert_eq!(decided["ttl"], 60);
    assert_eq!(decided["decisions"][0]["narrowed_to"], decided["rights"]);
    let collected = read_own(cx, &id).await;
    assert!(collected["writ"].is_string());
}

/// A quorum of two distinct approvers the policy names; 403 (not named, the agent itself) and
/// 409 (twice, closed) on the way.
async fn quorum_and_refusals(cx: &mut Context) {
    let identity = cx.identity.clone();
    let alice = cx.approver.clone();
    let alice_again = cx.broker.admin_token("alice", &["approver"]).await;
    let bob = cx.broker.admin_token("bob", &["approver"]).await;
    let mallory = cx.broker.admin_token("mallory", &["approver"]).await;
    let itself = cx
        .broker
        .admin_token("system:serviceaccount:orders:report-bot", &["approver"])
        .await;
    // The archive policy waits 3 s: decided at once.
    let id = open(cx, &identity, &wipe_archive_request()).await;
    decide(
        cx,
        &mallory,
        &id,
        approve("me too"),
        403,
        "approver_not_allowed",
    )
    .await;
    decide(cx, &itself, &id, approve("trust me"), 403, "self_approval").await;
    let first = decide(cx, &alice, &id, approve("ok"), 200, "").await;
    assert_eq!(
        (&first["status"], &first["approvals"]),
        (&json!("pending"), &json!(1))
    );
    assert!(first.get("decided_at").is_none());
    decide(
        cx,
        &alice_again,
        &id,
        approve("ok again"),
        409,
        "already_decided",
    )
    .await;
    let second = decide(cx, &bob, &id, approve("ok"), 200, "").await;
    assert_eq!(
        (&second["status"], &second["approvals"]),
        (&json!("approved"), &json!(2))
    );
    decide(cx, &mallory, &id, approve("late"), 409, "approval_closed").await;
    let collected = read_own(cx, &id).await;
    assert!(collected["writ"].is_string());
}

/// 400: decisions that are not valid, on a pending request whose policy admits the approver.
async fn invalid_decisions(cx: &mut Context, pending: &str) {
    let alice = cx.approver.clone();
    for body in [
        json!({"decision": "maybe", "reason": "r"}),
        json!({"decision": "approve", "reason": " \n"}),
        json!({"decision": "approve", "reason": "r", "ttl": 0}),
        json!({"decision": "approve", "reason": "r\tr"}),
        json!({"decision": "approve", "reason": "r".repeat(1025)}),
        json!({"decision": "deny", "reason": "r", "ttl": 60}),
        json!({"decision": "deny", "reason": "r",
            "rights": [{"resource": "orders/42", "operations": ["delete"]}]}),
        json!({"decision": "approve", "reason": "r", "rights": []}),
        json!({"decision": "approve"}),
        json!({"decision": "approve", "reason": "r", "why": "r"}),
    ] {
        decide(cx, &alice, pending, body, 400, "invalid_request").await;
    }
}

/// A denial closes the request (a veto); the agent reads why, and nothing more is decided.
async fn denied(cx: &mut Context, pending: &str) {
    let bob = cx.broker.admin_token("bob", &["approver"]).await;
    let decided = decide(cx, &bob, pending, deny("not during the freeze"), 200, "").await;
    assert_eq!(decided["status"], "denied");
    let reading = read_own(cx, &format!("{pending}?wait=5")).await;
    assert_eq!(reading["status"], "denied");
    assert_eq!(reading["decisions"][0]["reason"], "not during the freeze");
    assert!(reading.get("writ").is_none());
    let alice = cx.approver.clone();
    decide(
        cx,
        &alice,
        pending,
        approve("overrule"),
        409,
        "approval_closed",
    )
    .await;
}

/// 404: an id no request has, text that is no id, another agent's request.
async fn unknown(cx: &mut Context) {
    let nobody = format!("ap_{}", "0".repeat(32));
    let alice = cx.approver.clone();
    let identity = cx.identity.clone();
    for id in [nobody.as_str(), "nope"] {
        decide(cx, &alice, id, approve("r"), 404, "approval_unknown").await;
        for method in ["GET", "HEAD"] {
            read_as(cx, method, &identity, id, 404, "approval_unknown").await;
        }
    }
    let other = bot(cx, "other-bot");
    let theirs = open(cx, &other, &delete_order_request()).await;
    for method in ["GET", "HEAD"] {
        read_as(cx, method, &identity, &theirs, 404, "approval_unknown").await;
    }
}

/// A suspended agent opens nothing, and collects nothing it was approved before (403).
async fn suspended(cx: &mut Context) {
    let held = bot(cx, "held-bot");
    let id = open(cx, &held, &delete_order_request()).await;
    let approver = cx.approver.clone();
    decide(cx, &approver, &id, approve("ok"), 200, "").await;
    let suspend = json!({"agent": "k8s:orders/held-bot", "reason": "runner compromised"});
    cx.as_admin("/v1/revocations", &suspend, 201, "").await;
    read_as(cx, "GET", &held, &id, 403, "agent_suspended").await;
    // HEAD never collects, so it only reads the status.
    read_as(cx, "HEAD", &held, &id, 200, "").await;
    open_refused(cx, &held, &delete_order_request(), 403, "agent_suspended").await;
}

/// 429: an agent's seventeenth pending request.
async fn too_many(cx: &mut Context) {
    let busy = bot(cx, "busy-bot");
    for _ in 0..16 {
        open(cx, &busy, &delete_order_request()).await;
    }
    let refusal = open_refused(cx, &busy, &delete_order_request(), 429, "too_many_pending").await;
    assert!(refusal.get("retry_after").is_none());
    // Another agent is not held back, nor are writs.
    let idle = bot(cx, "idle-bot");
    open(cx, &idle, &delete_order_request()).await;
    cx.probe
        .expect(Request::writ(&busy, &orders_request()), 201, "")
        .await;
}

/// A request nobody decided expires: a waiting read sees it, and it can no longer be decided.
async fn expired(cx: &mut Context, id: &str) {
    let reading = read_own(cx, &format!("{id}?wait=10")).await;
    assert_eq!(reading["status"], "expired", "{reading:#}");
    assert!(reading.get("decided_at").is_none());
    let alice = cx.approver.clone();
    decide(cx, &alice, id, approve("too late"), 409, "approval_closed").await;
}
