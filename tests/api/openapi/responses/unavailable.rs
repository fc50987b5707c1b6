//! 503s from storage, last since they break the database: `storage_unavailable` on the admin
//! routes, the audit log, the approval routes and `POST /v1/writs`, then `not_ready` from
//! `/readyz`.

use serde_json::json;

use super::Context;
use crate::approvals::{approve, delete_order_request};
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
    approvals_unreadable(cx).await;
}

/// Nothing about approvals can be recorded: opening, deciding, collecting an elevated writ
/// (which is then not handed over).
async fn approvals_unrecordable(cx: &mut Context) {
    let open = Request::writ(&cx.identity, &delete_order_request());
    cx.probe
        .expect_at("POST", "/v1/approvals", open, 503, "storage_unavailable")
        .await;
    let decision = format!("/v1/approvals/{}/decision", cx.pending_approval);
    let request = Request::admin(&cx.approver, &approve("while storage is broken"));
    cx.probe
        .expect_at("POST", &decision, request, 503, "storage_unavailable")
        .await;
    let collect = format!("/v1/approvals/{}", cx.approved_approval);
    let request = Request::bearer(&cx.identity);
    cx.probe
        .expect_at("GET", &collect, request, 503, "storage_unavailable")
        .await;
}

/// Nothing about approvals can be read once the database is gone.
async fn approvals_unreadable(cx: &mut Context) {
    let read = format!("/v1/approvals/{}", cx.pending_approval);
    for method in ["GET", "HEAD"] {
        cx.probe
            .expect_at(
                method,
                "/v1/approvals",
                Request::bearer(&cx.approver),
                503,
                "storage_unavailable",
            )
            .await;
        cx.probe
            .expect_at(
                method,
                &read,
                Request::bearer(&cx.identity),
                503,
                "storage_unavailable",
            )
            .await;
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
    approvals_unrecordable(cx).await;
}
