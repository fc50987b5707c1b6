//! The tower layer and the axum extractor, driven as a service would be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use biscuit_auth::KeyPair;
use common::*;
use http::{Request, Response, StatusCode};
use tower::{ServiceBuilder, ServiceExt};
use writ_verify::{Grant, Verifier, WritLayer};

fn live_writ(root: &KeyPair) -> String {
    let wall = SystemTime::now();
    mint(
        root,
        &WritSpec {
            issued_at: wall,
            expires_at: wall + Duration::from_secs(600),
            ..WritSpec::default()
        },
    )
}

fn map(parts: &http::request::Parts) -> (String, String) {
    // Exactly one leading `/` goes: `//x` stays non-canonical instead of becoming `x`.
    let path = parts.uri.path();
    let resource = path.strip_prefix('/').unwrap_or(path).to_owned();
    let op = if parts.method == http::Method::GET {
        "read"
    } else {
        "write"
    };
    (resource, op.to_owned())
}

async fn call(verifier: &Arc<Verifier>, request: Request<String>) -> Response<String> {
    let service = ServiceBuilder::new()
        .layer(WritLayer::new(Arc::clone(verifier), map))
        .service_fn(|request: Request<String>| async move {
            let grant = request.extensions().get::<Grant>().cloned();
            let body = grant.map_or("no grant".to_owned(), |g| format!("hello {}", g.agent));
            Ok::<_, Infallible>(Response::new(body))
        });
    service.oneshot(request).await.unwrap()
}

fn request(method: &str, path: &str, authorization: Option<&str>) -> Request<String> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(value) = authorization {
        builder = builder.header(http::header::AUTHORIZATION, value);
    }
    builder.body(String::new()).unwrap()
}

fn problem(response: &Response<String>) -> serde_json::Value {
    assert_eq!(
        response.headers()[http::header::CONTENT_TYPE],
        "application/problem+json"
    );
    serde_json::from_str(response.body()).unwrap()
}

#[tokio::test]
async fn grants_reach_the_inner_service() {
    let root = KeyPair::new();
    let verifier = Arc::new(verifier("orders-api", &root).await);
    let writ = live_writ(&root);
    let response = call(
        &verifier,
        request("GET", "/orders/42", Some(&format!("Bearer {writ}"))),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), "hello agent-7");
}

#[tokio::test]
async fn refusals_are_problems_that_never_echo_the_token() {
    let root = KeyPair::new();
    let verifier = Arc::new(verifier("orders-api", &root).await);
    let writ = live_writ(&root);
    let bearer = format!("Bearer {writ}");
    let wall = SystemTime::now();
    let expired = mint(
        &root,
        &WritSpec {
            issued_at: wall - Duration::from_secs(900),
            expires_at: wall - Duration::from_secs(60),
            ..WritSpec::default()
        },
    );
    let other_audience = mint(
        &root,
        &WritSpec {
            issued_at: wall,
            expires_at: wall + Duration::from_secs(600),
            services: vec!["billing-api".into()],
            ..WritSpec::default()
        },
    );
    let cases = [
        (
            request("GET", "/orders/42", None),
            401,
            "missing_credential",
        ),
        (
            request("GET", "/orders/42", Some("Basic dXNlcjpwYXNz")),
            401,
            "missing_credential",
        ),
        (
            request("GET", "/orders/42", Some("Bearer not-a-writ")),
            401,
            "malformed",
        ),
        (
            request("GET", "/orders/42", Some(&format!("Bearer {expired}"))),
            401,
            "expired",
        ),
        (
            request(
                "GET",
                "/orders/42",
                Some(&format!("Bearer {other_audience}")),
            ),
            403,
            "wrong_audience",
        ),
        (
            request("POST", "/orders/42", Some(&bearer)),
            403,
            "not_permitted",
        ),
        (
            request("GET", "/orders/43", Some(&bearer)),
            403,
            "not_permitted",
        ),
        (
            request("GET", "/orders/42/..", Some(&bearer)),
            400,
            "non_canonical_resource",
        ),
        (
            request("GET", "/orders/%2E%2E/admin", Some(&bearer)),
            400,
            "non_canonical_resource",
        ),
        (
            request("GET", "/orders/..%2Fadmin", Some(&bearer)),
            400,
            "non_canonical_resource",
        ),
        (
            request("GET", "/orders//42", Some(&bearer)),
            400,
            "non_canonical_resource",
        ),
    ];
    for (req, status, code) in cases {
        let sent = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let response = call(&verifier, req).await;
        assert_eq!(response.status().as_u16(), status, "{code}");
        assert!(
            response
                .headers()
                .contains_key(http::header::WWW_AUTHENTICATE)
        );
        let body = problem(&response);
        assert_eq!(body["type"], format!("urn:writ:problem:{code}"));
        assert_eq!(body["status"], status);
        if let Some(sent) = sent {
            let token = sent.split_once(' ').map_or(sent.as_str(), |(_, t)| t);
            assert!(!response.body().contains(token), "{code} echoed the token");
        }
    }
}

#[tokio::test]
async fn paths_that_could_resolve_outside_a_prefix_grant_never_reach_the_service() {
    let root = KeyPair::new();
    let verifier = Arc::new(verifier("orders-api", &root).await);
    let wall = SystemTime::now();
    let orders = mint(
        &root,
        &WritSpec {
            issued_at: wall,
            expires_at: wall + Duration::from_secs(600),
            exact: vec![],
            prefixes: vec![("orders/".into(), "read".into())],
            ..WritSpec::default()
        },
    );
    let bearer = format!("Bearer {orders}");
    let ok = call(&verifier, request("GET", "/orders/7", Some(&bearer))).await;
    assert_eq!(ok.status(), StatusCode::OK);
    for path in [
        "/orders/../admin",
        "/orders/%2E%2E/admin",
        "/orders/..%2Fadmin",
        "/orders/%252E%252E/admin",
        "/orders/..;/admin",
        "/orders/..%5Cadmin",
        "/orders/%EF%BC%8E%EF%BC%8E/admin",
        "/orders/.%E2%80%8B./admin",
    ] {
        let response = call(&verifier, request("GET", path, Some(&bearer))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(
            problem(&response)["type"],
            "urn:writ:problem:non_canonical_resource"
        );
        assert_eq!(
            response.headers()[http::header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_request\""
        );
    }
}

#[cfg(feature = "axum")]
mod with_axum {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use writ_verify::WritGrant;

    async fn handler(WritGrant(grant): WritGrant) -> String {
        format!("{} for {}", grant.agent, grant.task)
    }

    fn app(verifier: Arc<Verifier>) -> Router {
        let protected = Router::new()
            .route("/orders/{id}", get(handler))
            .route_layer(WritLayer::new(verifier, map));
        // A route that forgot the layer: the extractor must refuse, not pass.
        protected.route("/unguarded", get(handler))
    }

    async fn send(app: Router, path: &str, bearer: Option<&str>) -> (StatusCode, String) {
        let mut builder = Request::builder().uri(path);
        if let Some(writ) = bearer {
            builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {writ}"));
        }
        let response = app
            .oneshot(builder.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn extractor_reads_the_grant() {
        let root = KeyPair::new();
        let verifier = Arc::new(verifier("orders-api", &root).await);
        let writ = live_writ(&root);
        let (status, body) = send(app(verifier.clone()), "/orders/42", Some(&writ)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "agent-7 for refund-42");

        let (status, body) = send(app(verifier.clone()), "/orders/43", Some(&writ)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("urn:writ:problem:not_permitted"));

        let (status, body) = send(app(verifier), "/unguarded", Some(&writ)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("urn:writ:problem:missing_credential"));
    }
}

#[tokio::test]
async fn operations_needing_approval_answer_approval_required_or_the_evidence() {
    let root = KeyPair::new();
    let approval = KeyPair::new();
    let verifier = Arc::new(
        Verifier::builder("orders-api")
            .static_keys([(KID, root.public())])
            .approval_keys([approval.public()])
            .require_approval_for(["write"])
            .no_revocation()
            .build()
            .await
            .unwrap(),
    );
    let wall = SystemTime::now();
    let writ = mint(
        &root,
        &WritSpec {
            issued_at: wall,
            expires_at: wall + Duration::from_secs(600),
            exact: vec![
                ("orders/42".into(), "read".into()),
                ("orders/42".into(), "write".into()),
            ],
            ..WritSpec::default()
        },
    );
    let response = call(
        &verifier,
        request("POST", "/orders/42", Some(&format!("Bearer {writ}"))),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()[http::header::WWW_AUTHENTICATE],
        "Bearer error=\"insufficient_scope\""
    );
    let body = problem(&response);
    assert_eq!(body["type"], "urn:writ:problem:approval_required");
    assert_eq!(body["status"], 403);

    let elevated = elevate(
        &writ,
        &root,
        &approval,
        &EvidenceSpec {
            exact: vec![("orders/42".into(), "write".into())],
            ..EvidenceSpec::default()
        },
    );
    let bearer = format!("Bearer {elevated}");
    let response = call(&verifier, request("POST", "/orders/42", Some(&bearer))).await;
    assert_eq!(response.status(), StatusCode::OK);
    // The inner service sees the evidence in the grant.
    let service = ServiceBuilder::new()
        .layer(WritLayer::new(Arc::clone(&verifier), map))
        .service_fn(|request: Request<String>| async move {
            let grant = request.extensions().get::<Grant>().cloned().unwrap();
            let approver = grant.approval.unwrap().approvals[0].principal.clone();
            Ok::<_, Infallible>(Response::new(approver))
        });
    let response = service
        .oneshot(request("POST", "/orders/42", Some(&bearer)))
        .await
        .unwrap();
    assert_eq!(response.body(), "alice@example.com");
}
