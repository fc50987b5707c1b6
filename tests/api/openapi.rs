//! `openapi.yaml` is the broker's HTTP contract, and these tests hold the running broker to it:
//! every route the router serves is documented and every documented operation is served (other
//! methods answer 405); real responses of every documented status validate against the schema,
//! media type and required headers the document declares; requests the request schema refuses
//! are exactly the ones the broker answers 400; and every problem the broker can answer is
//! documented.

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::Duration;

use axum::response::IntoResponse;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};
use writ::http::ApiError;
use writ::identity::IdentityError;
use writ::policy::{Refusal, RefusedRight, RefusedTtl};
use writ_testkit::{Alg, IssuerOptions, TestIssuer, now_unix};

use crate::helpers::{AUDIENCE, Backend, Setup, TestBroker, client, orders_request};

/// The document, read as JSON.
static SPEC: LazyLock<Value> = LazyLock::new(|| {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    let text = std::fs::read_to_string(path).expect("openapi.yaml at the repository root");
    serde_yaml::from_str(&text).expect("openapi.yaml is YAML")
});

/// Every method a test sends, the methods of OpenAPI's operations; CONNECT is left out (clients
/// treat it as tunnelling).
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
];

/// Documented responses no test can provoke: `internal` needs minting itself to fail.
const UNPROVOKED: [(&str, &str, &str); 1] = [("POST", "/v1/writs", "500")];

// ---- Reading the document -------------------------------------------------------------------

/// Follows a local `$ref` (`#/components/...`), if `value` is one.
fn resolve(value: &Value) -> &Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local $refs are supported: {reference}"));
            resolve(
                SPEC.pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {reference}")),
            )
        }
        None => value,
    }
}

fn spec_paths() -> Vec<String> {
    SPEC["paths"].as_object().unwrap().keys().cloned().collect()
}

/// The documented methods of `path`, upper case.
fn spec_methods(path: &str) -> BTreeSet<String> {
    SPEC["paths"][path]
        .as_object()
        .map(|item| {
            item.keys()
                .map(|key| key.to_uppercase())
                .filter(|method| METHODS.contains(&method.as_str()))
                .collect()
        })
        .unwrap_or_default()
}

/// Where the response for `method path status` is documented (for messages) and the response
/// object. Requests that match no operation take the document's fallback responses: 405 for a
/// documented path, 404 for any other. Panics when the status is not documented.
fn documented_response(method: &str, path: &str, status: u16) -> (String, &'static Value) {
    let status = status.to_string();
    let fallback = |only: &str| {
        (status == only)
            .then(|| SPEC["x-writ-fallback-responses"].get(&status))
            .flatten()
    };
    let item = SPEC["paths"].get(path);
    let operation = item.and_then(|item| item.get(method.to_lowercase()));
    let (place, response) = match (item, operation) {
        (_, Some(operation)) => (
            format!("{method} {path}"),
            operation["responses"].get(&status),
        ),
        (Some(_), None) => (
            format!("{method} {path} (method not documented)"),
            fallback("405"),
        ),
        (None, None) => (
            format!("{method} {path} (path not documented)"),
            fallback("404"),
        ),
    };
    let response = response.unwrap_or_else(|| {
        panic!("{place} answered {status}, which openapi.yaml does not document there")
    });
    (place, resolve(response))
}

/// A validator for `schema` (a schema object from the document, `$ref`s included).
fn validator(schema: &Value) -> jsonschema::Validator {
    let root = json!({
        "$schema": SPEC["jsonSchemaDialect"],
        "allOf": [schema],
        "components": SPEC["components"],
    });
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("openapi.yaml has an invalid schema: {e}\n{schema:#}"))
}

fn schema_errors(schema: &Value, instance: &Value) -> Vec<String> {
    validator(schema)
        .iter_errors(instance)
        .map(|error| format!("at {:?}: {error}", error.instance_path().as_str()))
        .collect()
}

/// The media type of a `Content-Type` value, without parameters, lower case.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Asserts that `status` is documented for `method path`, that the body's media type is one the
/// document declares for it, and that the body validates against that media type's schema.
/// Responses documented without content (and every HEAD response) must have an empty body.
pub fn assert_matches_spec(
    method: &str,
    path: &str,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) {
    let (place, response) = documented_response(method, path, status);
    let content = response.get("content").filter(|_| method != "HEAD");
    let Some(content) = content else {
        assert!(
            body.is_empty(),
            "{place} {status} is documented without a body, but one came"
        );
        return;
    };
    let content_type = content_type
        .map(essence)
        .unwrap_or_else(|| panic!("{place} {status} came without a Content-Type"));
    let media = content.get(&content_type).unwrap_or_else(|| {
        panic!("{place} {status} answered {content_type}, which openapi.yaml does not declare")
    });
    let instance: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{place} {status} answered a body that is not JSON: {e}"));
    let errors = schema_errors(&media["schema"], &instance);
    assert!(
        errors.is_empty(),
        "{place} {status}: the body does not match openapi.yaml:\n  {}\nbody: {instance:#}",
        errors.join("\n  ")
    );
}

/// Asserts that every header the documented response requires is present and matches its schema.
fn assert_headers_match_spec(method: &str, path: &str, status: u16, headers: &HeaderMap) {
    let (place, response) = documented_response(method, path, status);
    let Some(documented) = response.get("headers").and_then(Value::as_object) else {
        return;
    };
    for (name, header) in documented {
        let header = resolve(header);
        let Some(value) = headers.get(name.as_str()) else {
            assert!(
                header["required"] != json!(true),
                "{place} {status} lacks the required header {name}"
            );
            continue;
        };
        let value = json!(value.to_str().unwrap());
        let errors = schema_errors(&header["schema"], &value);
        assert!(
            errors.is_empty(),
            "{place} {status}: header {name}: {value} does not match openapi.yaml: {errors:?}"
        );
    }
}

// ---- Talking to a broker, keeping score -------------------------------------------------------

/// One broker under test and every (method, documented path or `*`, status) it was seen to
/// answer, and every problem type.
struct Probe {
    url: String,
    seen: BTreeSet<(String, String, String)>,
    problems: BTreeSet<String>,
}

/// What a request looks like beyond method and path.
#[derive(Default)]
struct Request {
    authorization: Option<String>,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
}

impl Request {
    /// A JSON request for a writ with this identity.
    fn writ(identity: &str, body: &Value) -> Request {
        Request {
            authorization: Some(format!("Bearer {identity}")),
            content_type: Some("application/json"),
            body: Some(body.to_string().into_bytes()),
        }
    }
}

impl Probe {
    fn new(broker: &TestBroker) -> Probe {
        Probe {
            url: broker.url.clone(),
            seen: BTreeSet::new(),
            problems: BTreeSet::new(),
        }
    }

    /// Sends the request, checks the response against the document, and answers its status and
    /// JSON body (`null` when there is none).
    async fn send(&mut self, method: &str, path: &str, request: Request) -> (u16, Value) {
        let verb = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut builder = client().request(verb, format!("{}{path}", self.url));
        if let Some(authorization) = request.authorization {
            builder = builder.header(AUTHORIZATION, authorization);
        }
        if let Some(content_type) = request.content_type {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let response = builder.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap();
        let content_type = headers
            .get(CONTENT_TYPE)
            .map(|value| value.to_str().unwrap());
        assert_matches_spec(method, path, status, content_type, &body);
        assert_headers_match_spec(method, path, status, &headers);
        let spec_path = if SPEC["paths"].get(path).is_some() {
            path
        } else {
            "*"
        };
        self.seen
            .insert((method.into(), spec_path.into(), status.to_string()));
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        };
        if let Some(problem) = body.get("type").and_then(Value::as_str) {
            self.problems.insert(problem.to_owned());
        }
        (status, body)
    }

    /// Sends a writ request whose body never arrives in full, on a raw connection, and expects
    /// the broker to cut it off with `503 timeout` after its `request_timeout`.
    async fn slow_body(&mut self, identity: &str) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = self.url.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST /v1/writs HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {identity}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{\"task\""
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
            .await
            .expect("the broker cuts a slow client off")
            .unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert!(
            head.to_lowercase()
                .contains("content-type: application/problem+json"),
            "{head}"
        );
        let body = body.as_bytes();
        assert_matches_spec(
            "POST",
            "/v1/writs",
            503,
            Some("application/problem+json"),
            body,
        );
        let body: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(body["type"], "urn:writ:problem:timeout");
        self.seen
            .insert(("POST".into(), "/v1/writs".into(), "503".into()));
        self.problems.insert("urn:writ:problem:timeout".into());
    }

    /// Sends a writ request and asserts the status and, for problems, the problem code.
    async fn expect(&mut self, request: Request, status: u16, code: &str) -> Value {
        let (got, body) = self.send("POST", "/v1/writs", request).await;
        assert_eq!(got, status, "{body:#}");
        if !code.is_empty() {
            assert_eq!(body["type"], format!("urn:writ:problem:{code}"), "{body:#}");
        }
        body
    }
}

/// The code of a problem body (`type` without `urn:writ:problem:`).
fn code(body: &Value) -> &str {
    body["type"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("urn:writ:problem:")
}

// ---- Routes -----------------------------------------------------------------------------------

/// The routes `src/http/mod.rs` declares, as (path, methods). The router cannot be listed at run
/// time, so its source is read: `.route("<path>", get(..).post(..))` calls.
fn router_routes() -> Vec<(String, BTreeSet<String>)> {
    let source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/mod.rs")).unwrap();
    for unsupported in [".nest(", ".merge(", ".route_service(", ".nest_service("] {
        assert!(
            !source.contains(unsupported),
            "the router uses {unsupported}: teach tests/api/openapi.rs to read it"
        );
    }
    let mut routes = Vec::new();
    for call in source.split(".route(").skip(1) {
        let call = call.trim_start();
        let path = call
            .strip_prefix('"')
            .and_then(|rest| rest.split('"').next())
            .expect(".route( starts with a string literal path");
        // The method router runs to the `)` that closes `.route(`.
        let mut depth = 1;
        let end = call
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map(|(i, _)| i)
            .unwrap();
        let method_router = &call[..end];
        let mut methods = BTreeSet::new();
        for method in [
            "get", "head", "post", "put", "patch", "delete", "options", "trace", "connect", "any",
        ] {
            // `get(` but not `forget(` or `some_get(`.
            let called = method_router
                .match_indices(&format!("{method}("))
                .any(|(i, _)| {
                    let before = method_router.as_bytes().get(i.wrapping_sub(1));
                    !before.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
                });
            if called {
                assert_ne!(method, "any", "{path}: any() routes need no method list");
                methods.insert(method.to_uppercase());
                if method == "get" {
                    // axum answers HEAD with the GET handler, without the body.
                    methods.insert("HEAD".into());
                }
            }
        }
        assert!(!methods.is_empty(), "no method found for route {path}");
        routes.push((path.to_owned(), methods));
    }
    assert!(
        !routes.is_empty(),
        "no .route( calls found in src/http/mod.rs"
    );
    routes
}

#[test]
fn the_router_and_the_document_list_the_same_routes() {
    let served: Vec<(String, BTreeSet<String>)> = router_routes();
    let documented: Vec<(String, BTreeSet<String>)> = spec_paths()
        .into_iter()
        .map(|path| {
            let methods = spec_methods(&path);
            (path, methods)
        })
        .collect();
    let sorted = |mut routes: Vec<(String, BTreeSet<String>)>| {
        routes.sort();
        routes
    };
    assert_eq!(sorted(served), sorted(documented));
}

#[tokio::test]
async fn documented_operations_are_served_and_other_methods_refused() {
    let broker = TestBroker::start().await;
    let mut probe = Probe::new(&broker);
    for path in spec_paths() {
        assert!(
            !path.contains('{'),
            "{path}: teach this test to fill in path parameters"
        );
        let documented = spec_methods(&path);
        for method in METHODS {
            // No credential: every documented operation still answers something documented.
            let (status, body) = probe.send(method, &path, Request::default()).await;
            if documented.contains(method) {
                assert!(
                    status != 404 && status != 405,
                    "{method} {path} is documented but answered {status}: {body}"
                );
            } else {
                assert_eq!(status, 405, "{method} {path} is not documented: {body}");
            }
        }
        // The Allow header of a 405 lists exactly the documented methods.
        let refused = METHODS
            .into_iter()
            .find(|method| !documented.contains(*method))
            .unwrap();
        let response = client()
            .request(
                reqwest::Method::from_bytes(refused.as_bytes()).unwrap(),
                format!("{}{path}", broker.url),
            )
            .send()
            .await
            .unwrap();
        let allow: BTreeSet<String> = response.headers()["allow"]
            .to_str()
            .unwrap()
            .split(',')
            .map(|method| method.trim().to_owned())
            .collect();
        assert_eq!(allow, documented, "Allow of {path}");
    }
    for path in [
        "/",
        "/v1/writs/",
        "/v1/writ",
        "/v2/writs",
        "/v1/writs/wr_00",
        "/.well-known/writ-keys/1",
        "/healthz/",
        "/openapi.yaml",
    ] {
        for method in ["GET", "POST", "DELETE", "HEAD"] {
            let (status, _) = probe.send(method, path, Request::default()).await;
            assert_eq!(status, 404, "{method} {path}");
        }
    }
    broker.stop().await;
}

// ---- Responses --------------------------------------------------------------------------------

/// Provokes every documented status for real (on PostgreSQL, so that storage can be broken
/// underneath the broker) and checks each answer against the document.
#[tokio::test]
async fn every_documented_response_is_answered_as_documented() {
    // An issuer whose discovery document names another issuer: its keys are never fetched.
    let impostor = TestIssuer::start_with(IssuerOptions {
        discovery_issuer_override: Some("https://evil.example".into()),
        ..IssuerOptions::default()
    })
    .await;
    let impostor_url = impostor.issuer();
    let mut setup = Setup::new(Backend::Postgres);
    setup.tweak = Box::new(move |config| {
        // Short enough for the slow-client probe below, long enough for everything else.
        config.request_timeout = Duration::from_secs(3);
        let mut issuer = config.issuers[0].clone();
        issuer.name = "impostor".into();
        issuer.issuer = impostor_url;
        config.issuers.push(issuer);
    });
    let broker = TestBroker::start_with(setup).await;
    let mut probe = Probe::new(&broker);
    let identity = broker.orders_identity();

    // 200s.
    for path in ["/.well-known/writ-keys", "/healthz", "/readyz"] {
        for method in ["GET", "HEAD"] {
            let (status, _) = probe.send(method, path, Request::default()).await;
            assert_eq!(status, 200, "{method} {path}");
        }
    }

    // 201, with and without a ttl.
    let writ = probe
        .expect(Request::writ(&identity, &orders_request()), 201, "")
        .await;
    assert_eq!(writ["ttl"], 300);
    let mut with_ttl = orders_request();
    with_ttl["ttl"] = json!(60);
    let writ = probe
        .expect(Request::writ(&identity, &with_ttl), 201, "")
        .await;
    assert_eq!(writ["ttl"], 60);

    // 400.
    let not_json = Request {
        body: Some(b"{not json".to_vec()),
        ..Request::writ(&identity, &Value::Null)
    };
    probe.expect(not_json, 400, "invalid_request").await;
    let mut unknown = orders_request();
    unknown["admin"] = json!(true);
    probe
        .expect(Request::writ(&identity, &unknown), 400, "invalid_request")
        .await;

    // 401, one of every code.
    let now = now_unix() as i64;
    let sign = |edit: &dyn Fn(&mut Value)| {
        broker
            .kubernetes
            .sign(Alg::Rs256, &broker.orders_claims(|c| edit(c)))
    };
    let stranger = TestIssuer::start().await;
    let unauthenticated = [
        (None, "credential_missing"),
        (
            Some("Basic b3JkZXJzOmJvdA==".to_owned()),
            "credential_malformed",
        ),
        (Some("Bearer".to_owned()), "credential_malformed"),
        (Some("Bearer not-a-jwt".to_owned()), "identity_malformed"),
        (
            Some(format!(
                "Bearer {}",
                stranger.kubernetes_token(
                    Alg::Rs256,
                    "orders",
                    "bot",
                    AUDIENCE,
                    Duration::from_secs(600)
                )
            )),
            "identity_issuer_unknown",
        ),
        (
            Some(format!(
                "Bearer {}",
                broker
                    .kubernetes
                    .forge_alg_none(&broker.orders_claims(|_| {}))
            )),
            "identity_algorithm_refused",
        ),
        (
            Some(format!(
                "Bearer {}",
                broker
                    .kubernetes
                    .forge_unknown_kid(&broker.orders_claims(|_| {}))
            )),
            "identity_key_unknown",
        ),
        (
            Some(format!("Bearer {}", TestIssuer::tamper(&identity))),
            "identity_signature_invalid",
        ),
        (
            Some(format!("Bearer {}", sign(&|c| c["exp"] = json!(now - 120)))),
            "identity_expired",
        ),
        (
            Some(format!("Bearer {}", sign(&|c| c["nbf"] = json!(now + 120)))),
            "identity_not_yet_valid",
        ),
        (
            Some(format!("Bearer {}", sign(&|c| c["iat"] = json!(now + 120)))),
            "identity_issued_in_future",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(&|c| c["aud"] = json!("someone-else"))
            )),
            "identity_audience_invalid",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(&|c| {
                    c.as_object_mut().unwrap().remove("kubernetes.io");
                })
            )),
            "identity_claim_missing",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(&|c| c["kubernetes.io"]["namespace"] = json!("orders\nadmin"))
            )),
            "identity_claim_invalid",
        ),
    ];
    for (authorization, expected) in &unauthenticated {
        let request = Request {
            authorization: authorization.clone(),
            ..Request::writ(&identity, &orders_request())
        };
        probe.expect(request, 401, expected).await;
    }

    // 403: a policy matches but refuses; no policy matches.
    let mut too_much = orders_request();
    too_much["rights"] = json!([
        {"resource": "orders/42", "operations": ["read", "write"]},
        {"resource": "invoices/*", "operations": ["read"]},
    ]);
    too_much["services"] = json!(["orders-api", "billing-api"]);
    too_much["ttl"] = json!(86_400);
    let refusal = probe
        .expect(Request::writ(&identity, &too_much), 403, "policy_refused")
        .await;
    assert_eq!(refusal["reason"], "not_allowed");
    assert_eq!(
        refusal["refused_ttl"],
        json!({"requested": 86_400, "max": 600})
    );
    let billing = broker.kubernetes.kubernetes_token(
        Alg::Rs256,
        "billing",
        "bot",
        AUDIENCE,
        Duration::from_secs(600),
    );
    let refusal = probe
        .expect(
            Request::writ(&billing, &orders_request()),
            403,
            "policy_refused",
        )
        .await;
    assert_eq!(refusal["reason"], "no_matching_policy");
    assert_eq!(refusal["refused_ttl"], Value::Null);

    // 413.
    let huge = Request {
        body: Some(format!(r#"{{"task":"{}"}}"#, "a".repeat(70_000)).into_bytes()),
        ..Request::writ(&identity, &Value::Null)
    };
    probe.expect(huge, 413, "payload_too_large").await;

    // 415.
    for content_type in [Some("text/plain"), Some("application/jsonx"), None] {
        let request = Request {
            content_type,
            ..Request::writ(&identity, &orders_request())
        };
        probe.expect(request, 415, "unsupported_media_type").await;
    }
    let charset = Request {
        content_type: Some("Application/JSON; charset=utf-8"),
        ..Request::writ(&identity, &orders_request())
    };
    probe.expect(charset, 201, "").await;

    // 503 timeout: a client that announces a body and never finishes sending it.
    probe.slow_body(&identity).await;

    // 503 identity_issuer_unavailable.
    let impostor_token = impostor.kubernetes_token(
        Alg::Rs256,
        "orders",
        "bot",
        AUDIENCE,
        Duration::from_secs(600),
    );
    probe
        .expect(
            Request::writ(&impostor_token, &orders_request()),
            503,
            "identity_issuer_unavailable",
        )
        .await;

    // 503 storage_unavailable: the writs table is gone while the database answers.
    {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(&broker.database_url)
            .await
            .unwrap();
        sqlx::query("ALTER TABLE writs RENAME TO writs_gone")
            .execute(&mut connection)
            .await
            .unwrap();
    }
    probe
        .expect(
            Request::writ(&identity, &orders_request()),
            503,
            "storage_unavailable",
        )
        .await;

    // 503 not_ready: the database itself is gone.
    broker.drop_postgres_database().await;
    for method in ["GET", "HEAD"] {
        let (status, body) = probe.send(method, "/readyz", Request::default()).await;
        assert_eq!(status, 503, "{method} /readyz");
        if method == "GET" {
            assert_eq!(code(&body), "not_ready");
        }
    }

    // 404 and 405.
    let (status, _) = probe.send("GET", "/v2/writs", Request::default()).await;
    assert_eq!(status, 404);
    let (status, _) = probe.send("GET", "/v1/writs", Request::default()).await;
    assert_eq!(status, 405);
    broker.stop().await;

    // Every documented response was seen, and every documented problem type.
    let mut documented = BTreeSet::new();
    for path in spec_paths() {
        for method in spec_methods(&path) {
            let responses = SPEC["paths"][&path][method.to_lowercase()]["responses"]
                .as_object()
                .unwrap();
            for status in responses.keys() {
                documented.insert((method.clone(), path.clone(), status.clone()));
            }
        }
    }
    documented.insert(("GET".into(), "*".into(), "404".into()));
    documented.insert(("GET".into(), "/v1/writs".into(), "405".into()));
    for (method, path, status) in UNPROVOKED {
        assert!(documented.remove(&(method.into(), path.into(), status.into())));
    }
    let unseen: Vec<_> = documented.difference(&probe.seen).collect();
    assert!(
        unseen.is_empty(),
        "documented but never answered: {unseen:?}"
    );
    let unseen_problems: Vec<_> = SPEC["components"]["schemas"]["ProblemType"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .filter(|t| !probe.problems.contains(*t) && *t != "urn:writ:problem:internal")
        .collect();
    assert!(
        unseen_problems.is_empty(),
        "problem types never answered: {unseen_problems:?}"
    );
}

// ---- Requests ---------------------------------------------------------------------------------

/// Requests built around the canonical one, each with one change.
fn requests() -> Vec<(&'static str, Value)> {
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut request = orders_request();
        edit(&mut request);
        request
    };
    let right = |resource: &str| json!({"resource": resource, "operations": ["read"]});
    let repeat = |item: Value, n: usize| Value::Array(vec![item; n]);
    let names = |prefix: &str, n: usize| {
        Value::Array((0..n).map(|i| json!(format!("{prefix}{i}"))).collect())
    };
    vec![
        ("canonical", orders_request()),
        ("ttl", with(&|r| r["ttl"] = json!(60))),
        ("ttl null", with(&|r| r["ttl"] = Value::Null)),
        (
            "ttl above the policy",
            with(&|r| r["ttl"] = json!(99_999_999)),
        ),
        ("ttl 0", with(&|r| r["ttl"] = json!(0))),
        ("ttl negative", with(&|r| r["ttl"] = json!(-1))),
        ("ttl fractional", with(&|r| r["ttl"] = json!(1.5))),
        ("ttl a string", with(&|r| r["ttl"] = json!("300"))),
        ("ttl beyond u64", with(&|r| r["ttl"] = json!(1e20))),
        ("task empty", with(&|r| r["task"] = json!(""))),
        ("task 200", with(&|r| r["task"] = json!("a".repeat(200)))),
        ("task 201", with(&|r| r["task"] = json!("a".repeat(201)))),
        (
            "task punctuation",
            with(&|r| r["task"] = json!(r#"x"); right("*", "admin") // (y)"#)),
        ),
        (
            "task newline",
            with(&|r| r["task"] = json!("nightly\nreport")),
        ),
        ("task DEL", with(&|r| r["task"] = json!("nightly\u{7f}"))),
        (
            "task C1 control",
            with(&|r| r["task"] = json!("nightly\u{85}")),
        ),
        ("task not a string", with(&|r| r["task"] = json!(1))),
        (
            "no task",
            with(&|r| {
                r.as_object_mut().unwrap().remove("task");
            }),
        ),
        ("no rights", with(&|r| r["rights"] = json!([]))),
        (
            "32 rights",
            with(&|r| r["rights"] = repeat(right("orders/42"), 32)),
        ),
        (
            "33 rights",
            with(&|r| r["rights"] = repeat(right("orders/42"), 33)),
        ),
        (
            "rights missing",
            with(&|r| {
                r.as_object_mut().unwrap().remove("rights");
            }),
        ),
        (
            "right with an unknown member",
            with(&|r| r["rights"][0]["admin"] = json!(true)),
        ),
        (
            "no operations",
            with(&|r| r["rights"][0]["operations"] = json!([])),
        ),
        (
            "16 operations",
            with(&|r| r["rights"][0]["operations"] = names("op", 16)),
        ),
        (
            "17 operations",
            with(&|r| r["rights"][0]["operations"] = names("op", 17)),
        ),
        (
            "duplicate operations",
            with(&|r| r["rights"][0]["operations"] = json!(["read", "read"])),
        ),
        (
            "operation 64",
            with(&|r| r["rights"][0]["operations"] = json!(["a".repeat(64)])),
        ),
        (
            "operation 65",
            with(&|r| r["rights"][0]["operations"] = json!(["a".repeat(65)])),
        ),
        (
            "operation with a space",
            with(&|r| r["rights"][0]["operations"] = json!(["read all"])),
        ),
        (
            "operation with a quote",
            with(&|r| r["rights"][0]["operations"] = json!(["re\"ad"])),
        ),
        (
            "operation empty",
            with(&|r| r["rights"][0]["operations"] = json!([""])),
        ),
        (
            "resource prefix",
            with(&|r| r["rights"] = json!([right("orders/*")])),
        ),
        (
            "resource everything",
            with(&|r| r["rights"] = json!([right("*")])),
        ),
        (
            "resource inner star",
            with(&|r| r["rights"] = json!([right("orders/*/items")])),
        ),
        (
            "resource double star",
            with(&|r| r["rights"] = json!([right("orders/**")])),
        ),
        (
            "resource empty",
            with(&|r| r["rights"] = json!([right("")])),
        ),
        (
            "resource 512",
            with(&|r| r["rights"] = json!([right(&format!("orders/{}", "a".repeat(505)))])),
        ),
        (
            "resource 513",
            with(&|r| r["rights"] = json!([right(&format!("orders/{}", "a".repeat(506)))])),
        ),
        (
            "resource newline",
            with(&|r| r["rights"] = json!([right("orders/4\n2")])),
        ),
        (
            "resource quotes",
            with(&|r| r["rights"] = json!([right(r#"x"), right("orders/1", "admin") //"#)])),
        ),
        ("no services", with(&|r| r["services"] = json!([]))),
        ("16 services", with(&|r| r["services"] = names("svc-", 16))),
        ("17 services", with(&|r| r["services"] = names("svc-", 17))),
        (
            "duplicate services",
            with(&|r| r["services"] = json!(["orders-api", "orders-api"])),
        ),
        (
            "service 128",
            with(&|r| r["services"] = json!(["s".repeat(128)])),
        ),
        (
            "service 129",
            with(&|r| r["services"] = json!(["s".repeat(129)])),
        ),
        (
            "service with a slash",
            with(&|r| r["services"] = json!(["orders/api"])),
        ),
        (
            "services a string",
            with(&|r| r["services"] = json!("orders-api")),
        ),
        ("unknown member", with(&|r| r["admin"] = json!(true))),
        ("an array", json!([orders_request()])),
        ("a string", json!("orders/42")),
        ("null", Value::Null),
    ]
}

/// The request schema and the broker agree: a request is answered 400 exactly when the schema
/// refuses it (otherwise 201 or, where policy says no, 403).
#[tokio::test]
async fn the_request_schema_refuses_exactly_what_the_broker_refuses() {
    let broker = TestBroker::start().await;
    let mut probe = Probe::new(&broker);
    let identity = broker.orders_identity();
    let operation = &SPEC["paths"]["/v1/writs"]["post"];
    let schema = &resolve(&operation["requestBody"])["content"]["application/json"]["schema"];
    let request_schema = validator(schema);
    for (name, body) in requests() {
        let valid = request_schema.is_valid(&body);
        let (status, answer) = probe
            .send("POST", "/v1/writs", Request::writ(&identity, &body))
            .await;
        assert_eq!(
            status == 400,
            !valid,
            "{name}: the schema {} it, the broker answered {status} {answer}",
            if valid { "accepts" } else { "refuses" }
        );
        if valid {
            assert!(status == 201 || status == 403, "{name}: {status} {answer}");
        }
    }
    // What JSON Schema cannot say, the document says in prose: lengths are in UTF-8 bytes, and
    // `ttl` must be written as an integer literal.
    let unsayable = [
        (
            "task of 200 characters, 400 bytes",
            json!("é".repeat(200)),
            "task",
        ),
        ("ttl with a fraction of zero", json!(300.0), "ttl"),
    ];
    for (name, value, member) in unsayable {
        let mut body = orders_request();
        body[member] = value;
        assert!(request_schema.is_valid(&body), "{name}");
        let (status, _) = probe
            .send("POST", "/v1/writs", Request::writ(&identity, &body))
            .await;
        assert_eq!(status, 400, "{name}: openapi.yaml says it is refused");
    }
    // The document's example request is valid and granted.
    let example = &resolve(&operation["requestBody"])["content"]["application/json"]["example"];
    assert!(request_schema.is_valid(example));
    let (status, answer) = probe
        .send("POST", "/v1/writs", Request::writ(&identity, example))
        .await;
    assert_eq!(status, 201, "{answer}");
    broker.stop().await;
}

// ---- Problems ---------------------------------------------------------------------------------

/// One of every identity error. The match fails to compile when a variant is added.
fn identity_errors() -> Vec<IdentityError> {
    let all = vec![
        IdentityError::Malformed("a part is not base64url"),
        IdentityError::UnknownIssuer,
        IdentityError::AlgorithmRefused,
        IdentityError::UnknownKey,
        IdentityError::BadSignature,
        IdentityError::Expired,
        IdentityError::NotYetValid,
        IdentityError::IssuedInFuture,
        IdentityError::WrongAudience,
        IdentityError::ClaimMissing("sub".into()),
        IdentityError::ClaimInvalid("sub".into()),
        IdentityError::IssuerUnavailable,
    ];
    for error in &all {
        match error {
            IdentityError::Malformed(_)
            | IdentityError::UnknownIssuer
            | IdentityError::AlgorithmRefused
            | IdentityError::UnknownKey
            | IdentityError::BadSignature
            | IdentityError::Expired
            | IdentityError::NotYetValid
            | IdentityError::IssuedInFuture
            | IdentityError::WrongAudience
            | IdentityError::ClaimMissing(_)
            | IdentityError::ClaimInvalid(_)
            | IdentityError::IssuerUnavailable => {}
        }
    }
    all
}

/// One of every error the HTTP layer answers (several refusals). The match fails to compile when
/// a variant is added.
fn api_errors() -> Vec<ApiError> {
    let refusal = |reason, ttl| Refusal {
        reason,
        refused_rights: vec![RefusedRight {
            resource: "orders/*".into(),
            operation: "write".into(),
        }],
        refused_services: vec!["billing-api".into()],
        refused_ttl: ttl,
    };
    let mut all = vec![
        ApiError::MissingCredential,
        ApiError::MalformedCredential,
        ApiError::InvalidRequest("body: expected value at line 1 column 1".into()),
        ApiError::UnsupportedMediaType,
        ApiError::PayloadTooLarge,
        ApiError::Refused(refusal("no_matching_policy", None)),
        ApiError::Refused(refusal(
            "not_allowed",
            Some(RefusedTtl {
                requested: 3600,
                max: 600,
            }),
        )),
        ApiError::NotFound,
        ApiError::MethodNotAllowed,
        ApiError::StorageUnavailable,
        ApiError::NotReady("storage is unavailable".into()),
        ApiError::Timeout,
        ApiError::Internal,
    ];
    all.extend(identity_errors().into_iter().map(ApiError::Identity));
    for error in &all {
        match error {
            ApiError::MissingCredential
            | ApiError::MalformedCredential
            | ApiError::Identity(_)
            | ApiError::InvalidRequest(_)
            | ApiError::UnsupportedMediaType
            | ApiError::PayloadTooLarge
            | ApiError::Refused(_)
            | ApiError::NotFound
            | ApiError::MethodNotAllowed
            | ApiError::StorageUnavailable
            | ApiError::NotReady(_)
            | ApiError::Timeout
            | ApiError::Internal => {}
        }
    }
    all
}

/// Every documented response with this status: (where, response), fallbacks included.
fn responses_with_status(status: &str) -> Vec<(String, &'static Value)> {
    let mut found = Vec::new();
    for path in spec_paths() {
        for method in spec_methods(&path) {
            if let Some(response) =
                SPEC["paths"][&path][method.to_lowercase()]["responses"].get(status)
            {
                found.push((format!("{method} {path}"), resolve(response)));
            }
        }
    }
    if let Some(response) = SPEC["x-writ-fallback-responses"].get(status) {
        found.push(("fallback".to_owned(), resolve(response)));
    }
    found
}

/// Every problem the broker can answer is documented with its status and validates against a
/// documented schema for it; every problem type the document lists is one the broker answers.
#[tokio::test]
async fn every_problem_the_broker_answers_is_documented() {
    let mut answered = BTreeSet::new();
    for error in api_errors() {
        let label = format!("{error:?}");
        let response = error.into_response();
        let status = response.status().as_u16();
        let content_type = response.headers()[CONTENT_TYPE.as_str()]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        let candidates = responses_with_status(&status.to_string());
        assert!(
            !candidates.is_empty(),
            "{label} answers {status}, which openapi.yaml documents nowhere"
        );
        let matches = candidates.iter().any(|(_, response)| {
            response["content"]
                .get(essence(&content_type))
                .is_some_and(|media| schema_errors(&media["schema"], &body).is_empty())
        });
        assert!(
            matches,
            "{label} answers {status} {content_type} {body:#}, which no documented {status} \
             response ({:?}) describes",
            candidates
                .iter()
                .map(|(place, _)| place)
                .collect::<Vec<_>>()
        );
        answered.insert(body["type"].as_str().unwrap().to_owned());
    }
    let listed: BTreeSet<String> = SPEC["components"]["schemas"]["ProblemType"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        listed, answered,
        "ProblemType lists exactly the types the broker answers"
    );
}
