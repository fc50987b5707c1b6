//! `GET /v1/revocations`, the feed (public, paged, never a reason), and
//! `GET /v1/revocations/stream` (the backlog, then heartbeats, and a cap): 200, 400, 503.

use serde_json::{Value, json};

use super::{Context, STREAMS};
use crate::helpers::client;
use crate::openapi::{Probe, Request};

pub(super) async fn cases(cx: &mut Context) {
    let (entries, head) = feed(&mut cx.probe).await;
    stream(&mut cx.probe, &entries, head).await;
    streams_past_the_cap(cx).await;
}

/// With every stream slot held, one more stream is answered `over_capacity`.
async fn streams_past_the_cap(cx: &mut Context) {
    let mut held = Vec::new();
    for _ in 0..STREAMS {
        let stream = client()
            .get(format!("{}/v1/revocations/stream", cx.broker.url))
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        held.push(stream);
    }
    cx.probe
        .expect_at(
            "GET",
            "/v1/revocations/stream",
            Request::default(),
            503,
            "over_capacity",
        )
        .await;
}

/// The feed lists the revocations made so far, paged; answers its entries and its head.
async fn feed(probe: &mut Probe) -> (Vec<Value>, u64) {
    let (_, feed) = probe
        .send("GET", "/v1/revocations", Request::default())
        .await;
    let entries = feed["entries"].as_array().unwrap();
    let targets: Vec<_> = entries
        .iter()
        .map(|entry| entry["target"].clone())
        .collect();
    assert_eq!(
        targets,
        json!(["writ", "writ", "task", "agent", "agent"])
            .as_array()
            .unwrap()
            .clone(),
        "{feed:#}"
    );
    assert!(entries.iter().all(|entry| entry.get("reason").is_none()));
    assert_eq!(feed["more"], false);
    let head = feed["next_after"].as_u64().unwrap();
    let (_, page) = probe
        .send("GET", "/v1/revocations?after=0&limit=1", Request::default())
        .await;
    assert_eq!(page["more"], true);
    assert_eq!(page["next_after"], entries[0]["seq"]);
    for method in ["GET", "HEAD"] {
        probe
            .expect_at(method, "/v1/revocations", Request::default(), 200, "")
            .await;
        for query in [
            "?limit=0",
            "?limit=1001",
            "?after=-1",
            "?after=x",
            "?since=1",
        ] {
            probe
                .expect_at(
                    method,
                    &format!("/v1/revocations{query}"),
                    Request::default(),
                    400,
                    "invalid_request",
                )
                .await;
        }
    }
    (entries.clone(), head)
}

/// The stream sends the feed's `entries`, then a heartbeat whose head is the feed's; it resumes
/// after `Last-Event-ID` or `after`.
async fn stream(probe: &mut Probe, entries: &[Value], head: u64) {
    let events = probe
        .expect_at("GET", "/v1/revocations/stream", Request::default(), 200, "")
        .await;
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), entries.len() + 1, "{events:#?}");
    assert_eq!(events.last().unwrap()["data"], json!({"head": head}));
    let resumed = probe
        .expect_at(
            "GET",
            "/v1/revocations/stream?after=0",
            Request::default().header("Last-Event-ID", &entries[3]["seq"].to_string()),
            200,
            "",
        )
        .await;
    assert_eq!(resumed.as_array().unwrap().len(), 2, "{resumed:#}");
    for method in ["GET", "HEAD"] {
        probe
            .expect_at(
                method,
                "/v1/revocations/stream?after=2",
                Request::default(),
                200,
                "",
            )
            .await;
        probe
            .expect_at(
                method,
                "/v1/revocations/stream",
                Request::default().header("Last-Event-ID", "yesterday"),
                400,
                "invalid_request",
            )
            .await;
        probe
            .expect_at(
                method,
                "/v1/revocations/stream?after=x",
                Request::default(),
                400,
                "invalid_request",
            )
            .await;
    }
}
