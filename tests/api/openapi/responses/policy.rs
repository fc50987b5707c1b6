//! `GET` and `HEAD /v1/policy`: 200 for an admin and for an auditor (401 and 403 are in
//! [`super::admin_refusals`]).

use super::Context;
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
