//! `POST /v1/admin/writs`: 201 (an admin writ that is then honoured), 400.

use serde_json::json;

use super::Context;
use crate::openapi::Request;

pub(super) async fn cases(cx: &mut Context) {
    let order = json!({"principal": "ci-deployer", "roles": ["auditor", "admin"], "ttl": 600});
    cx.deployer = cx.as_admin("/v1/admin/writs", &order, 201, "").await;
    assert_eq!(cx.deployer["roles"], json!(["admin", "auditor"]));
    let deployer_writ = cx.deployer["writ"].as_str().unwrap();
    cx.probe
        .expect_at(
            "GET",
            "/v1/audit/checkpoints",
            Request::bearer(deployer_writ),
            200,
            "",
        )
        .await;
    for body in [
        json!({"principal": "ci deployer", "roles": ["admin"]}),
        json!({"principal": "ci-deployer", "roles": []}),
        json!({"principal": "ci-deployer", "roles": ["root"]}),
        json!({"principal": "ci-deployer", "roles": ["admin"], "ttl": 0}),
        json!({"principal": "ci-deployer", "roles": ["admin"], "ttl": 86_401}),
        json!({"principal": "ci-deployer"}),
    ] {
        cx.as_admin("/v1/admin/writs", &body, 400, "invalid_request")
            .await;
    }
}
