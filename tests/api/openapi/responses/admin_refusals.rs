//! 401 (one of every code), 403, 413 and 415 on every admin route.

use serde_json::{Value, json};

use super::{Context, bearer};
use crate::openapi::Request;

/// The admin routes, and the role each requires (the decision route's id names no request: the
/// credential is checked first).
const ADMIN_ROUTES: [(&str, &str, &str); 13] = [
    ("POST", "/v1/revocations", "admin"),
    ("POST", "/v1/suspensions/lift", "admin"),
    ("POST", "/v1/admin/writs", "admin"),
    ("GET", "/v1/audit", "auditor"),
    ("HEAD", "/v1/audit", "auditor"),
    ("GET", "/v1/audit/checkpoints", "auditor"),
    ("HEAD", "/v1/audit/checkpoints", "auditor"),
    ("GET", "/v1/policy", "admin or auditor"),
    ("HEAD", "/v1/policy", "admin or auditor"),
    ("POST", "/v1/policy/explain", "admin or auditor"),
    ("GET", "/v1/approvals", "approver"),
    ("HEAD", "/v1/approvals", "approver"),
    (
        "POST",
        "/v1/approvals/ap_00000000000000000000000000000000/decision",
        "approver",
    ),
];

pub(super) async fn cases(cx: &mut Context) {
    let unauthenticated = unauthenticated(cx);
    for (method, path, role) in ADMIN_ROUTES {
        let with = |authorization: Option<String>| Request {
            authorization,
            ..if method == "POST" {
                Request::admin("", &json!({}))
            } else {
                Request::default()
            }
        };
        for (authorization, code) in &unauthenticated {
            cx.probe
                .expect_at(method, path, with(authorization.clone()), 401, code)
                .await;
        }
        let wrong_role = match role {
            "admin" => &cx.auditor,
            "admin or auditor" => &cx.approver,
            _ => &cx.admin,
        };
        cx.probe
            .expect_at(
                method,
                path,
                with(bearer(wrong_role)),
                403,
                "admin_role_missing",
            )
            .await;
        if method == "POST" {
            let token = match role {
                "admin" | "admin or auditor" => cx.admin.clone(),
                _ => cx.approver.clone(),
            };
            too_large_or_unsupported(cx, path, &token).await;
        }
    }
}

/// An `Authorization` for every 401 code of the admin routes, and the code.
fn unauthenticated(cx: &Context) -> Vec<(Option<String>, &'static str)> {
    vec![
        (None, "credential_missing"),
        (
            Some("Basic cm9vdDpyb290".to_owned()),
            "credential_malformed",
        ),
        (bearer("not-a-biscuit"), "admin_credential_malformed"),
        (
            bearer(cx.agent_writ["writ"].as_str().unwrap()),
            "admin_credential_invalid",
        ),
        (bearer(&cx.identity), "admin_credential_malformed"),
        (bearer(&cx.expired), "admin_credential_expired"),
        (
            bearer(cx.deployer["writ"].as_str().unwrap()),
            "admin_credential_revoked",
        ),
    ]
}

/// 413 and 415 on an admin route that takes a body, with `token`, which carries its role.
async fn too_large_or_unsupported(cx: &mut Context, path: &str, token: &str) {
    let huge = Request {
        body: Some(format!(r#"{{"reason":"{}"}}"#, "a".repeat(70_000)).into_bytes()),
        ..Request::admin(token, &Value::Null)
    };
    cx.probe
        .expect_at("POST", path, huge, 413, "payload_too_large")
        .await;
    for content_type in [Some("text/plain"), None] {
        let request = Request {
            content_type,
            ..Request::admin(token, &json!({}))
        };
        cx.probe
            .expect_at("POST", path, request, 415, "unsupported_media_type")
            .await;
    }
}
