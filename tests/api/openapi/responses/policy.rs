//! `GET` and `HEAD /v1/policy`: 200 for an admin and for an auditor; `POST /v1/policy/explain`:
//! 200 (allowed, refused) and 400 (401, 403, 413 and 415 are in [`super::admin_refusals`]).

use serde_json::json;

use super::Context;
use crate::helpers::orders_request;
use crate::openapi::Request;

pub(super) async fn cases(cx: &mut Context) {
    for token in [cx.admin.clone(), cx.auditor.clone()] {
        for method in ["GET", "HEAD"] {
            let status = cx
                .probe
                .expect_at(method, "/v1/policy", Request::bearer(&token), 200, "")
                .await;
            if method == "GET" {
                assert_eq!(status["files"][0]["name"], "test.toml", "{status:#}");
                assert_eq!(status["hash"], cx.agent_writ["policy_hash"], "{status:#}");
                assert!(status.get("last_error").is_none(), "{status:#}");
            }
        }
    }
}

/// The explanation of an allowed and a refused request, and malformed questions.
pub(super) async fn explain_cases(cx: &mut Context) {
    let claims = json!({"kubernetes.io": {"namespace": "orders"}});
    let ask = |request| json!({"issuer": "kubernetes", "claims": claims, "request": request});
    let allowed = cx
        .probe
        .expect_at(
            "POST",
            "/v1/policy/explain",
            Request::admin(&cx.auditor, &ask(orders_request())),
            200,
            "",
        )
        .await;
    assert_eq!(allowed["decision"], "allow", "{allowed:#}");
    assert_eq!(allowed["policy"], "orders-reader", "{allowed:#}");
    assert_eq!(allowed["policy_hash"], cx.agent_writ["policy_hash"]);
    let mut writes = orders_request();
    writes["rights"][0]["operations"] = json!(["write"]);
    let refused = cx
        .probe
        .expect_at(
            "POST",
            "/v1/policy/explain",
            Request::admin(&cx.admin, &ask(writes)),
            200,
            "",
        )
        .await;
    assert_eq!(refused["decision"], "not_allowed", "{refused:#}");
    assert_eq!(refused["policies"][0]["outcome"], "refuses", "{refused:#}");
    // Named relative to the policy directory, as `GET /v1/policy` names files.
    assert_eq!(
        refused["policies"][0]["origin"], "test.toml:2",
        "{refused:#}"
    );
    let mut wide = ask(orders_request());
    wide["claims"] = (0..65).map(|i| (format!("c{i}"), json!(i))).collect();
    for bad in [
        json!({"issuer": "kubernetes", "claims": {}}),
        json!({"issuer": "kubernetes", "claims": [], "request": orders_request()}),
        {
            let mut at = ask(orders_request());
            at["at"] = json!("yesterday");
            at
        },
        ask(json!({"task": "t", "rights": [], "services": ["orders-api"]})),
        wide,
    ] {
        cx.probe
            .expect_at(
                "POST",
                "/v1/policy/explain",
                Request::admin(&cx.admin, &bad),
                400,
                "invalid_request",
            )
            .await;
    }
}
