//! `POST /v1/writs`: 201, 400, 401 (one of every code), 403, 413, 415 and 503 (a slow client, an
//! issuer that cannot be trusted; broken storage is in [`super::unavailable`]).

use std::time::Duration;

use serde_json::{Value, json};
use writ_testkit::{Alg, TestIssuer, now_unix};

use super::{Context, bearer};
use crate::helpers::{AUDIENCE, orders_request};
use crate::openapi::Request;

pub(super) async fn cases(cx: &mut Context) {
    created(cx).await;
    invalid(cx).await;
    for (authorization, expected) in unauthenticated(cx).await {
        let request = Request {
            authorization,
            ..Request::writ(&cx.identity, &orders_request())
        };
        cx.probe.expect(request, 401, expected).await;
    }
    refused(cx).await;
    too_large_or_unsupported(cx).await;
    // 503 timeout: a client that announces a body and never finishes sending it.
    cx.probe.slow_body(&cx.identity).await;
    issuer_unavailable(cx).await;
}

/// 201, with and without a ttl.
async fn created(cx: &mut Context) {
    let writ = cx.order(201, "").await;
    assert_eq!(writ["ttl"], 300);
    let mut with_ttl = orders_request();
    with_ttl["ttl"] = json!(60);
    let writ = cx
        .probe
        .expect(Request::writ(&cx.identity, &with_ttl), 201, "")
        .await;
    assert_eq!(writ["ttl"], 60);
}

/// 400: a body that is not JSON, and one with an unknown member.
async fn invalid(cx: &mut Context) {
    let not_json = Request {
        body: Some(b"{not json".to_vec()),
        ..Request::writ(&cx.identity, &Value::Null)
    };
    cx.probe.expect(not_json, 400, "invalid_request").await;
    let mut unknown = orders_request();
    unknown["admin"] = json!(true);
    cx.probe
        .expect(
            Request::writ(&cx.identity, &unknown),
            400,
            "invalid_request",
        )
        .await;
}

/// An `Authorization` for every 401 code, and the code.
async fn unauthenticated(cx: &Context) -> Vec<(Option<String>, &'static str)> {
    let broker = &cx.broker;
    let now = now_unix() as i64;
    let sign = |edit: &dyn Fn(&mut Value)| {
        bearer(
            broker
                .kubernetes
                .sign(Alg::Rs256, &broker.orders_claims(|c| edit(c))),
        )
    };
    let stranger = TestIssuer::start().await;
    let claims = broker.orders_claims(|_| {});
    vec![
        (None, "credential_missing"),
        (
            Some("Basic b3JkZXJzOmJvdA==".to_owned()),
            "credential_malformed",
        ),
        (Some("Bearer".to_owned()), "credential_malformed"),
        (bearer("not-a-jwt"), "identity_malformed"),
        (
            bearer(bot_token(&stranger, "orders")),
            "identity_issuer_unknown",
        ),
        (
            bearer(broker.kubernetes.forge_alg_none(&claims)),
            "identity_algorithm_refused",
        ),
        (
            bearer(broker.kubernetes.forge_unknown_kid(&claims)),
            "identity_key_unknown",
        ),
        (
            bearer(TestIssuer::tamper(&cx.identity)),
            "identity_signature_invalid",
        ),
        (sign(&|c| c["exp"] = json!(now - 120)), "identity_expired"),
        (
            sign(&|c| c["nbf"] = json!(now + 120)),
            "identity_not_yet_valid",
        ),
        (
            sign(&|c| c["iat"] = json!(now + 120)),
            "identity_issued_in_future",
        ),
        (
            sign(&|c| c["aud"] = json!("someone-else")),
            "identity_audience_invalid",
        ),
        (
            sign(&|c| {
                c.as_object_mut().unwrap().remove("kubernetes.io");
            }),
            "identity_claim_missing",
        ),
        (
            sign(&|c| c["kubernetes.io"]["namespace"] = json!("orders\nadmin")),
            "identity_claim_invalid",
        ),
    ]
}

/// 403: a policy matches but refuses; no policy matches.
async fn refused(cx: &mut Context) {
    let mut too_much = orders_request();
    too_much["rights"] = json!([
        {"resource": "orders/42", "operations": ["read", "write"]},
        {"resource": "invoices/*", "operations": ["read"]},
    ]);
    too_much["services"] = json!(["orders-api", "billing-api"]);
    too_much["ttl"] = json!(86_400);
    let refusal = cx
        .probe
        .expect(
            Request::writ(&cx.identity, &too_much),
            403,
            "policy_refused",
        )
        .await;
    assert_eq!(refusal["reason"], "not_allowed");
    assert_eq!(
        refusal["refused_ttl"],
        json!({"requested": 86_400, "max": 600})
    );
    let billing = bot_token(&cx.broker.kubernetes, "billing");
    let refusal = cx
        .probe
        .expect(
            Request::writ(&billing, &orders_request()),
            403,
            "policy_refused",
        )
        .await;
    assert_eq!(refusal["reason"], "no_matching_policy");
    assert_eq!(refusal["refused_ttl"], Value::Null);
}

/// 413; 415, though a JSON media type in other letters, with parameters, is accepted.
async fn too_large_or_unsupported(cx: &mut Context) {
    let huge = Request {
        body: Some(format!(r#"{{"task":"{}"}}"#, "a".repeat(70_000)).into_bytes()),
        ..Request::writ(&cx.identity, &Value::Null)
    };
    cx.probe.expect(huge, 413, "payload_too_large").await;
    for content_type in [Some("text/plain"), Some("application/jsonx"), None] {
        let request = Request {
            content_type,
            ..Request::writ(&cx.identity, &orders_request())
        };
        cx.probe
            .expect(request, 415, "unsupported_media_type")
            .await;
    }
    let charset = Request {
        content_type: Some("Application/JSON; charset=utf-8"),
        ..Request::writ(&cx.identity, &orders_request())
    };
    cx.probe.expect(charset, 201, "").await;
}

/// 503 identity_issuer_unavailable: the impostor's keys are never fetched.
async fn issuer_unavailable(cx: &mut Context) {
    let impostor_token = bot_token(&cx.impostor, "orders");
    cx.probe
        .expect(
            Request::writ(&impostor_token, &orders_request()),
            503,
            "identity_issuer_unavailable",
        )
        .await;
}

/// A Kubernetes identity from `issuer` for the `bot` service account in `namespace`.
fn bot_token(issuer: &TestIssuer, namespace: &str) -> String {
    issuer.kubernetes_token(
        Alg::Rs256,
        namespace,
        "bot",
        AUDIENCE,
        Duration::from_secs(600),
    )
}
