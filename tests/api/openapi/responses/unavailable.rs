//! 503s from storage, last since they break the database: `storage_unavailable` on the admin
//! routes, the audit log and `POST /v1/writs`, then `not_ready` from `/readyz`.

use serde_json::json;

use super::Context;
use crate::helpers::{break_writs_table, execute_sql, make_audit_inserts_fail};
use crate::openapi::{Request, code};

pub(super) async fn cases(cx: &mut Context) {
    audit_unwritable(cx).await;
    // The checkpoints cannot be read.
    execute_sql(
        &cx.broker.database_url,
        &["ALTER TABLE audit_checkpoints RENAME TO audit_checkpoints_gone"],
    )
    .await;
    for method in ["GET", "HEAD"] {
        cx.as_auditor(method, "/v1/audit/checkpoints", 503, "storage_unavailable")
            .await;
    }
    // The writs table is gone while the database answers.
    break_writs_table(&cx.broker.database_url).await;
    cx.order(503, "storage_unavailable").await;
    // The database itself is gone.
    cx.broker.drop_postgres_database().await;
    for method in ["GET", "HEAD"] {
        let (status, body) = cx.probe.send(method, "/readyz", Request::default()).await;
        assert_eq!(status, 503, "{method} /readyz");
        if method == "GET" {
            assert_eq!(code(&body), "not_ready");
        }
    }
}

/// The audit log refuses new events, so no change (and no audited read) can be recorded.
async fn audit_unwritable(cx: &mut Context) {
    make_audit_inserts_fail(&cx.broker.database_url).await;
    let unrecordable = [
        (
            "/v1/revocations",
            json!({"task": "weekly report", "reason": "bad prompt"}),
        ),
        (
            "/v1/suspensions/lift",
            json!({"agent": "k8s:ops/cleaner", "reason": "tamed"}),
        ),
        (
            "/v1/admin/writs",
            json!({"principal": "late", "roles": ["auditor"]}),
        ),
    ];
    for (path, body) in unrecordable {
        cx.as_admin(path, &body, 503, "storage_unavailable").await;
    }
    for method in ["GET", "HEAD"] {
        cx.as_auditor(method, "/v1/audit", 503, "storage_unavailable")
            .await;
    }
}
