//! `POST /v1/revocations` (201, then 200 when repeated; 404; 400) and `POST /v1/suspensions/lift`
//! (200, 404, 400): revoking an agent suspends it until the suspension is lifted.

use serde_json::json;

use super::Context;

pub(super) async fn cases(cx: &mut Context) {
    revoke(cx).await;
    suspend_and_lift(cx).await;
    // Another agent stays suspended (its lift fails on storage in `unavailable`).
    let cleaner = json!({"agent": "k8s:ops/cleaner", "reason": "runs amok"});
    cx.as_admin("/v1/revocations", &cleaner, 201, "").await;
}

/// 201, then 200 (idempotent); 404; 400. The deployer's admin writ is revoked, and refused from
/// then on.
async fn revoke(cx: &mut Context) {
    let revoke_deployer = json!({"writ_id": cx.deployer["writ_id"], "reason": "rotated"});
    let created = cx
        .as_admin("/v1/revocations", &revoke_deployer, 201, "")
        .await;
    let again = cx
        .as_admin("/v1/revocations", &revoke_deployer, 200, "")
        .await;
    assert_eq!(created["id"], again["id"]);
    for body in [
        json!({"writ_id": cx.agent_writ["writ_id"], "reason": "leaked in a log"}),
        json!({"task": "nightly report", "reason": "bad prompt"}),
    ] {
        cx.as_admin("/v1/revocations", &body, 201, "").await;
    }
    let unknown = json!({"writ_id": format!("wr_{}", "0".repeat(32)), "reason": "a typo"});
    cx.as_admin("/v1/revocations", &unknown, 404, "writ_unknown")
        .await;
    let agent = &cx.agent;
    for body in [
        json!({"reason": "no target"}),
        json!({"task": "nightly report", "agent": agent, "reason": "two targets"}),
        json!({"writ_id": "wr_42", "reason": "not an id"}),
        json!({"agent": agent, "reason": " \n "}),
        json!({"agent": agent, "reason": "r", "admin": true}),
    ] {
        cx.as_admin("/v1/revocations", &body, 400, "invalid_request")
            .await;
    }
}

/// Revoking the agent suspends it: no writ until the suspension is lifted (200, then 404); 400.
async fn suspend_and_lift(cx: &mut Context) {
    let suspend = json!({"agent": &cx.agent, "reason": "runner compromised"});
    let suspension = cx.as_admin("/v1/revocations", &suspend, 201, "").await;
    assert_eq!(suspension["suspended"], true);
    cx.order(403, "agent_suspended").await;
    cx.as_admin("/v1/revocations", &suspend, 200, "").await;
    let lift = json!({"agent": &cx.agent, "reason": "runner rebuilt"});
    let lifted = cx.as_admin("/v1/suspensions/lift", &lift, 200, "").await;
    assert_eq!(lifted["id"], suspension["id"]);
    assert_eq!(lifted["lifted_by"], "root");
    cx.as_admin("/v1/suspensions/lift", &lift, 404, "agent_not_suspended")
        .await;
    cx.order(201, "").await;
    for body in [
        json!({"agent": &cx.agent}),
        json!({"agent": "", "reason": "r"}),
        json!({"agent": &cx.agent, "reason": "r", "task": "nightly report"}),
    ] {
        cx.as_admin("/v1/suspensions/lift", &body, 400, "invalid_request")
            .await;
    }
}
