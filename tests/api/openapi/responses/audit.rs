//! `GET /v1/audit` (pages, an export whose chain links, filters; 400) and
//! `GET /v1/audit/checkpoints` (once the first is signed): 200, 400.

use std::time::Duration;

use super::Context;

pub(super) async fn cases(cx: &mut Context) {
    events(cx).await;
    queries(cx).await;
    checkpoints(cx).await;
}

/// A page from the start, an export whose hash chain links, a filtered page.
async fn events(cx: &mut Context) {
    let page = cx.as_auditor("GET", "/v1/audit", 200, "").await;
    assert_eq!(page["events"][0]["seq"], 1);
    let export = cx
        .as_auditor("GET", "/v1/audit?format=jsonl", 200, "")
        .await;
    let export = export.as_array().unwrap();
    assert!(export.len() > 20, "{}", export.len());
    for (previous, event) in export.iter().zip(&export[1..]) {
        assert_eq!(
            event["seq"].as_u64(),
            Some(previous["seq"].as_u64().unwrap() + 1)
        );
        assert_eq!(event["prev_hash"], previous["hash"]);
    }
    let revocations = cx
        .as_auditor(
            "GET",
            "/v1/audit?action=revocation.created&limit=2&since=2020-01-01T00:00:00Z&until=2100-01-01T00:00:00Z",
            200,
            "",
        )
        .await;
    assert_eq!(revocations["events"].as_array().unwrap().len(), 2);
    assert_eq!(revocations["more"], true);
}

/// GET and HEAD, with queries that are accepted (200) and refused (400).
async fn queries(cx: &mut Context) {
    for method in ["GET", "HEAD"] {
        for query in [
            "",
            "?format=jsonl",
            "?agent=k8s:orders/report-bot&format=json",
        ] {
            cx.as_auditor(method, &format!("/v1/audit{query}"), 200, "")
                .await;
        }
        for query in [
            "?limit=0",
            "?limit=1001",
            "?after=x",
            "?format=xml",
            "?since=yesterday",
            "?until=2026-01-01T00:00:00%2B02:00",
            "?colour=blue",
        ] {
            let path = format!("/v1/audit{query}");
            cx.as_auditor(method, &path, 400, "invalid_request").await;
        }
    }
}

/// Checkpoints, once the first is signed.
async fn checkpoints(cx: &mut Context) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = cx.as_auditor("GET", "/v1/audit/checkpoints", 200, "").await;
        if !list["checkpoints"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint signed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    cx.as_auditor("HEAD", "/v1/audit/checkpoints", 200, "")
        .await;
}
