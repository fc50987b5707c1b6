//! `openapi.yaml` is the broker's HTTP contract, and these tests hold the running broker to it:
//! every route the router serves is documented and every documented operation is served (other
//! methods answer 405); real responses of every documented status validate against the schema,
//! media type and required headers the document declares (JSON lines line by line; an event
//! stream event by event, read up to its first heartbeat since it never ends); requests the
//! request schemas refuse are exactly the ones the broker answers 400; and every problem the
//! broker can answer is documented.

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::Duration;

use axum::response::IntoResponse;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};
use writ::broker::IssueError;
use writ::error::codes;
use writ::http::ApiError;
use writ::policy::{Refusal, RefusedRight, RefusedTtl};
use writ_testkit::{Alg, IssuerOptions, TestIssuer, now_unix};

use crate::helpers::{
    AUDIENCE, Backend, Setup, TestBroker, break_writs_table, client, execute_sql,
    make_audit_inserts_fail, orders_request,
};

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

/// Documented responses this test does not provoke: `internal` and `mint_failed` need minting
/// itself (the system's random source, or building a Biscuit token) to fail; the feed's and the
/// stream's 503 need the database gone for seconds, which
/// `revocation::a_broker_that_cannot_read_revocations_does_not_vouch_for_them` does.
const UNPROVOKED: [(&str, &str, &str); 5] = [
    ("POST", "/v1/writs", "500"),
    ("POST", "/v1/revocations", "500"),
    ("POST", "/v1/admin/writs", "500"),
    ("GET", "/v1/revocations", "503"),
    ("GET", "/v1/revocations/stream", "503"),
];

/// Documented problem types no test can provoke, for the reasons of [`UNPROVOKED`].
const UNPROVOKED_PROBLEMS: [&str; 2] =
    ["urn:writ:problem:internal", "urn:writ:problem:mint_failed"];

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
    if let Some(events) = media.get("x-writ-events") {
        assert_events_match_spec(&place, status, events, body);
        return;
    }
    if let Some(line_schema) = media.get("x-writ-line-schema") {
        let text = std::str::from_utf8(body)
            .unwrap_or_else(|e| panic!("{place} {status} answered lines that are not UTF-8: {e}"));
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{place} {status}: the last line does not end in a newline"
        );
        for (number, line) in text.lines().enumerate() {
            let instance: Value = serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("{place} {status}: line {} is not JSON: {e}", number + 1)
            });
            let errors = schema_errors(line_schema, &instance);
            assert!(
                errors.is_empty(),
                "{place} {status}: line {} does not match openapi.yaml:\n  {}\nline: {instance:#}",
                number + 1,
                errors.join("\n  ")
            );
        }
        return;
    }
    let instance: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{place} {status} answered a body that is not JSON: {e}"));
    let errors = schema_errors(&media["schema"], &instance);
    assert!(
        errors.is_empty(),
        "{place} {status}: the body does not match openapi.yaml:\n  {}\nbody: {instance:#}",
        errors.join("\n  ")
    );
}

/// One server-sent event: its type (`message` when it names none), id and data.
#[derive(Debug)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: String,
}

/// The complete events of an event-stream text (an unfinished last event is left out).
fn parse_events(text: &str) -> Vec<SseEvent> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let complete = text.rfind("\n\n").map_or("", |end| &text[..end]);
    let mut events = Vec::new();
    for block in complete.split("\n\n") {
        let (mut event, mut id, mut data) = (None, None, Vec::new());
        for line in block.lines().filter(|line| !line.starts_with(':')) {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event = Some(value.to_owned()),
                "id" => id = Some(value.to_owned()),
                "data" => data.push(value),
                _ => {}
            }
        }
        if event.is_some() || !data.is_empty() {
            events.push(SseEvent {
                event: event.unwrap_or_else(|| "message".into()),
                id,
                data: data.join("\n"),
            });
        }
    }
    events
}

/// Asserts that every event of `body` (a prefix of an event stream) is of a type `x-writ-events`
/// documents, that its data validates against that type's schema, and that it carries an id
/// exactly when documented, equal to the documented member of its data.
fn assert_events_match_spec(place: &str, status: u16, documented: &Value, body: &[u8]) {
    let text = std::str::from_utf8(body)
        .unwrap_or_else(|e| panic!("{place} {status} sent events that are not UTF-8: {e}"));
    for event in parse_events(text) {
        let spec = documented.get(&event.event).unwrap_or_else(|| {
            panic!(
                "{place} {status} sent a {:?} event, which openapi.yaml does not document",
                event.event
            )
        });
        let data: Value = serde_json::from_str(&event.data).unwrap_or_else(|e| {
            panic!(
                "{place} {status}: the data of a {} event is not JSON: {e}",
                event.event
            )
        });
        let errors = schema_errors(&spec["schema"], &data);
        assert!(
            errors.is_empty(),
            "{place} {status}: a {} event does not match openapi.yaml:\n  {}\ndata: {data:#}",
            event.event,
            errors.join("\n  ")
        );
        let expected_id = spec
            .get("id")
            .and_then(Value::as_str)
            .map(|member| data[member].to_string());
        assert_eq!(
            event.id, expected_id,
            "{place} {status}: the id of a {} event",
            event.event
        );
    }
}

/// Reads an event stream until a complete `heartbeat` event has arrived (a stream never ends),
/// and answers what was read (which may end in part of the next event).
async fn read_until_heartbeat(response: &mut reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&body);
        if parse_events(&text)
            .iter()
            .any(|event| event.event == "heartbeat")
        {
            return body;
        }
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("a heartbeat arrives within 10 seconds")
            .unwrap()
            .expect("the stream stays open");
        body.extend_from_slice(&chunk);
    }
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
    headers: Vec<(&'static str, String)>,
}

impl Request {
    /// A JSON request for a writ with this identity.
    fn writ(identity: &str, body: &Value) -> Request {
        Request {
            authorization: Some(format!("Bearer {identity}")),
            content_type: Some("application/json"),
            body: Some(body.to_string().into_bytes()),
            ..Request::default()
        }
    }

    /// A JSON request to an admin route with this admin writ.
    fn admin(token: &str, body: &Value) -> Request {
        Request::writ(token, body)
    }

    /// A request without a body, with this admin writ.
    fn bearer(token: &str) -> Request {
        Request {
            authorization: Some(format!("Bearer {token}")),
            ..Request::default()
        }
    }

    /// The same request with one more header.
    fn header(mut self, name: &'static str, value: &str) -> Request {
        self.headers.push((name, value.to_owned()));
        self
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

    /// Sends the request (`path` may carry a query), checks the response against the document,
    /// and answers its status and JSON body (`null` when there is none; an array of the lines of
    /// JSON lines; of `{event, id, data}` for an event stream, read up to its first heartbeat).
    async fn send(&mut self, method: &str, path_and_query: &str, request: Request) -> (u16, Value) {
        let path = path_and_query.split('?').next().unwrap();
        let verb = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut builder = client().request(verb, format!("{}{path_and_query}", self.url));
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        if let Some(authorization) = request.authorization {
            builder = builder.header(AUTHORIZATION, authorization);
        }
        if let Some(content_type) = request.content_type {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let mut response = builder.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_type = headers
            .get(CONTENT_TYPE)
            .map(|value| value.to_str().unwrap());
        let media_type = content_type.map(essence).unwrap_or_default();
        let body = if method != "HEAD" && media_type == "text/event-stream" {
            let body = read_until_heartbeat(&mut response).await;
            drop(response);
            body
        } else {
            response.bytes().await.unwrap().to_vec()
        };
        assert_matches_spec(method, path, status, content_type, &body);
        assert_headers_match_spec(method, path, status, &headers);
        let spec_path = if SPEC["paths"].get(path).is_some() {
            path
        } else {
            "*"
        };
        self.seen
            .insert((method.into(), spec_path.into(), status.to_string()));
        let body: Value = if body.is_empty() || method == "HEAD" {
            Value::Null
        } else if media_type == "text/event-stream" {
            let text = String::from_utf8(body).unwrap();
            parse_events(&text)
                .into_iter()
                .map(|event| {
                    let data: Value = serde_json::from_str(&event.data).unwrap();
                    json!({"event": event.event, "id": event.id, "data": data})
                })
                .collect()
        } else if media_type == "application/jsonl" {
            let text = String::from_utf8(body).unwrap();
            text.lines()
                .map(|line| serde_json::from_str::<Value>(line).unwrap())
                .collect()
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
        self.expect_at("POST", "/v1/writs", request, status, code)
            .await
    }

    /// Sends a request and asserts the status and, for problems, the problem code (HEAD
    /// answers have no body to tell it).
    async fn expect_at(
        &mut self,
        method: &str,
        path_and_query: &str,
        request: Request,
        status: u16,
        code: &str,
    ) -> Value {
        let (got, body) = self.send(method, path_and_query, request).await;
        assert_eq!(got, status, "{method} {path_and_query}: {body:#}");
        if !code.is_empty() && method != "HEAD" {
            assert_eq!(
                body["type"],
                format!("urn:writ:problem:{code}"),
                "{method} {path_and_query}: {body:#}"
            );
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

/// The routes the router serves, as (path, methods), from the table it is built from.
fn router_routes() -> Vec<(String, BTreeSet<String>)> {
    writ::http::routes()
        .into_iter()
        .map(|route| {
            let methods = route.methods.iter().map(ToString::to_string).collect();
            (route.path.to_owned(), methods)
        })
        .collect()
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
        "/v1/revocations/",
        "/v1/revocations/rv_00",
        "/v1/suspensions",
        "/v1/admin/writs/ad_00",
        "/v1/audit/checkpoints/1",
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
        config.audit_checkpoint_interval = Duration::from_secs(1);
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

    // ---- Admin writs, revocations and suspensions, the feed and the stream, the audit log.
    let admin = broker.admin_token("root", &["admin"]).await;
    let auditor = broker.admin_token("eve", &["auditor"]).await;
    let expired = broker.expired_admin_token();
    let agent_writ = probe
        .expect(Request::writ(&identity, &orders_request()), 201, "")
        .await;
    let agent = agent_writ["agent"].as_str().unwrap().to_owned();

    // POST /v1/admin/writs: 201, 400.
    let deployer = probe
        .expect_at(
            "POST",
            "/v1/admin/writs",
            Request::admin(
                &admin,
                &json!({"principal": "ci-deployer", "roles": ["auditor", "admin"], "ttl": 600}),
            ),
            201,
            "",
        )
        .await;
    assert_eq!(deployer["roles"], json!(["admin", "auditor"]));
    let deployer_writ = deployer["writ"].as_str().unwrap().to_owned();
    probe
        .expect_at(
            "GET",
            "/v1/audit/checkpoints",
            Request::bearer(&deployer_writ),
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
        probe
            .expect_at(
                "POST",
                "/v1/admin/writs",
                Request::admin(&admin, &body),
                400,
                "invalid_request",
            )
            .await;
    }

    // POST /v1/revocations: 201, then 200 (idempotent); 404; 400. A revoked admin writ is
    // refused from then on.
    let revoke_deployer = json!({"writ_id": deployer["writ_id"], "reason": "rotated"});
    let created = probe
        .expect_at(
            "POST",
            "/v1/revocations",
            Request::admin(&admin, &revoke_deployer),
            201,
            "",
        )
        .await;
    let again = probe
        .expect_at(
            "POST",
            "/v1/revocations",
            Request::admin(&admin, &revoke_deployer),
            200,
            "",
        )
        .await;
    assert_eq!(created["id"], again["id"]);
    for body in [
        json!({"writ_id": agent_writ["writ_id"], "reason": "leaked in a log"}),
        json!({"task": "nightly report", "reason": "bad prompt"}),
    ] {
        probe
            .expect_at(
                "POST",
                "/v1/revocations",
                Request::admin(&admin, &body),
                201,
                "",
            )
            .await;
    }
    let unknown = json!({"writ_id": format!("wr_{}", "0".repeat(32)), "reason": "a typo"});
    probe
        .expect_at(
            "POST",
            "/v1/revocations",
            Request::admin(&admin, &unknown),
            404,
            "writ_unknown",
        )
        .await;
    for body in [
        json!({"reason": "no target"}),
        json!({"task": "nightly report", "agent": &agent, "reason": "two targets"}),
        json!({"writ_id": "wr_42", "reason": "not an id"}),
        json!({"agent": &agent, "reason": " \n "}),
        json!({"agent": &agent, "reason": "r", "admin": true}),
    ] {
        probe
            .expect_at(
                "POST",
                "/v1/revocations",
                Request::admin(&admin, &body),
                400,
                "invalid_request",
            )
            .await;
    }

    // Revoking the agent suspends it: no writ until the suspension is lifted (200, then 404).
    let suspend = json!({"agent": &agent, "reason": "runner compromised"});
    let suspension = probe
        .expect_at(
            "POST",
            "/v1/revocations",
            Request::admin(&admin, &suspend),
            201,
            "",
        )
        .await;
    assert_eq!(suspension["suspended"], true);
    probe
        .expect(
            Request::writ(&identity, &orders_request()),
            403,
            "agent_suspended",
        )
        .await;
    probe
        .expect_at(
            "POST",
            "/v1/revocations",
            Request::admin(&admin, &suspend),
            200,
            "",
        )
        .await;
    let lift = json!({"agent": &agent, "reason": "runner rebuilt"});
    let lifted = probe
        .expect_at(
            "POST",
            "/v1/suspensions/lift",
            Request::admin(&admin, &lift),
            200,
            "",
        )
        .await;
    assert_eq!(lifted["id"], suspension["id"]);
    assert_eq!(lifted["lifted_by"], "root");
    probe
        .expect_at(
            "POST",
            "/v1/suspensions/lift",
            Request::admin(&admin, &lift),
            404,
            "agent_not_suspended",
        )
        .await;
    probe
        .expect(Request::writ(&identity, &orders_request()), 201, "")
        .await;
    for body in [
        json!({"agent": &agent}),
        json!({"agent": "", "reason": "r"}),
        json!({"agent": &agent, "reason": "r", "task": "nightly report"}),
    ] {
        probe
            .expect_at(
                "POST",
                "/v1/suspensions/lift",
                Request::admin(&admin, &body),
                400,
                "invalid_request",
            )
            .await;
    }
    // Another agent stays suspended (its lift fails on storage below).
    let cleaner = json!({"agent": "k8s:ops/cleaner", "reason": "runs amok"});
    probe
        .expect_at(
            "POST",
            "/v1/revocations",
            Request::admin(&admin, &cleaner),
            201,
            "",
        )
        .await;

    // 401 (one of every code), 403, 413 and 415 on every admin route.
    let refused = [
        (None, 401, "credential_missing"),
        (
            Some("Basic cm9vdDpyb290".to_owned()),
            401,
            "credential_malformed",
        ),
        (
            Some("Bearer not-a-biscuit".to_owned()),
            401,
            "admin_credential_malformed",
        ),
        (
            Some(format!("Bearer {}", agent_writ["writ"].as_str().unwrap())),
            401,
            "admin_credential_invalid",
        ),
        (
            Some(format!("Bearer {identity}")),
            401,
            "admin_credential_malformed",
        ),
        (
            Some(format!("Bearer {expired}")),
            401,
            "admin_credential_expired",
        ),
        (
            Some(format!("Bearer {deployer_writ}")),
            401,
            "admin_credential_revoked",
        ),
    ];
    let admin_routes = [
        ("POST", "/v1/revocations", "admin"),
        ("POST", "/v1/suspensions/lift", "admin"),
        ("POST", "/v1/admin/writs", "admin"),
        ("GET", "/v1/audit", "auditor"),
        ("HEAD", "/v1/audit", "auditor"),
        ("GET", "/v1/audit/checkpoints", "auditor"),
        ("HEAD", "/v1/audit/checkpoints", "auditor"),
    ];
    for (method, path, role) in admin_routes {
        let with = |authorization: Option<String>| Request {
            authorization,
            ..if method == "POST" {
                Request::admin("", &json!({}))
            } else {
                Request::default()
            }
        };
        for (authorization, status, code) in &refused {
            probe
                .expect_at(method, path, with(authorization.clone()), *status, code)
                .await;
        }
        let wrong_role = if role == "admin" { &auditor } else { &admin };
        probe
            .expect_at(
                method,
                path,
                with(Some(format!("Bearer {wrong_role}"))),
                403,
                "admin_role_missing",
            )
            .await;
        if method == "POST" {
            let huge = Request {
                body: Some(format!(r#"{{"reason":"{}"}}"#, "a".repeat(70_000)).into_bytes()),
                ..Request::admin(&admin, &Value::Null)
            };
            probe
                .expect_at(method, path, huge, 413, "payload_too_large")
                .await;
            for content_type in [Some("text/plain"), None] {
                let request = Request {
                    content_type,
                    ..Request::admin(&admin, &json!({}))
                };
                probe
                    .expect_at(method, path, request, 415, "unsupported_media_type")
                    .await;
            }
        }
    }

    // The feed: public, paged, never a reason.
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

    // The stream: the backlog, then a heartbeat whose head is the feed's.
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

    // The audit log: pages, an export whose chain links, filters; 400.
    let page = probe
        .expect_at("GET", "/v1/audit", Request::bearer(&auditor), 200, "")
        .await;
    assert_eq!(page["events"][0]["seq"], 1);
    let export = probe
        .expect_at(
            "GET",
            "/v1/audit?format=jsonl",
            Request::bearer(&auditor),
            200,
            "",
        )
        .await;
    let export = export.as_array().unwrap();
    assert!(export.len() > 50, "{}", export.len());
    for (previous, event) in export.iter().zip(&export[1..]) {
        assert_eq!(
            event["seq"].as_u64(),
            Some(previous["seq"].as_u64().unwrap() + 1)
        );
        assert_eq!(event["prev_hash"], previous["hash"]);
    }
    let revocations = probe
        .expect_at(
            "GET",
            "/v1/audit?action=revocation.created&limit=2&since=2020-01-01T00:00:00Z&until=2100-01-01%2000:00:00",
            Request::bearer(&auditor),
            200,
            "",
        )
        .await;
    assert_eq!(revocations["events"].as_array().unwrap().len(), 2);
    assert_eq!(revocations["more"], true);
    for method in ["GET", "HEAD"] {
        for query in [
            "",
            "?format=jsonl",
            "?agent=k8s:orders/report-bot&format=json",
        ] {
            probe
                .expect_at(
                    method,
                    &format!("/v1/audit{query}"),
                    Request::bearer(&auditor),
                    200,
                    "",
                )
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
            probe
                .expect_at(
                    method,
                    &format!("/v1/audit{query}"),
                    Request::bearer(&auditor),
                    400,
                    "invalid_request",
                )
                .await;
        }
    }

    // Checkpoints, once the first is signed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = probe
            .expect_at(
                "GET",
                "/v1/audit/checkpoints",
                Request::bearer(&auditor),
                200,
                "",
            )
            .await;
        if !list["checkpoints"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint signed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    probe
        .expect_at(
            "HEAD",
            "/v1/audit/checkpoints",
            Request::bearer(&auditor),
            200,
            "",
        )
        .await;

    // 503 storage_unavailable on admin routes: the audit log refuses new events, so no change
    // (and no audited read) can be recorded; then the checkpoints cannot be read.
    make_audit_inserts_fail(&broker.database_url).await;
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
        probe
            .expect_at(
                "POST",
                path,
                Request::admin(&admin, &body),
                503,
                "storage_unavailable",
            )
            .await;
    }
    for method in ["GET", "HEAD"] {
        probe
            .expect_at(
                method,
                "/v1/audit",
                Request::bearer(&auditor),
                503,
                "storage_unavailable",
            )
            .await;
    }
    execute_sql(
        &broker.database_url,
        &["ALTER TABLE audit_checkpoints RENAME TO audit_checkpoints_gone"],
    )
    .await;
    for method in ["GET", "HEAD"] {
        probe
            .expect_at(
                method,
                "/v1/audit/checkpoints",
                Request::bearer(&auditor),
                503,
                "storage_unavailable",
            )
            .await;
    }

    // 503 storage_unavailable: the writs table is gone while the database answers.
    break_writs_table(&broker.database_url).await;
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
        .filter(|t| !probe.problems.contains(*t) && !UNPROVOKED_PROBLEMS.contains(t))
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

/// Named request bodies.
type Cases = Vec<(&'static str, Value)>;

/// `base` with one change.
fn edited(base: &Value, edit: &dyn Fn(&mut Value)) -> Value {
    let mut body = base.clone();
    edit(&mut body);
    body
}

fn remove(body: &mut Value, member: &str) {
    body.as_object_mut().unwrap().remove(member);
}

/// Revocation requests around a task revocation, each with one change; `writ_id` is a writ the
/// broker issued.
fn revoke_requests(writ_id: &str) -> Cases {
    let base = json!({"task": "nightly report", "reason": "compromised runner"});
    let with = |edit: &dyn Fn(&mut Value)| edited(&base, edit);
    let target = |member: &str, value: Value| {
        edited(&base, &|r| {
            remove(r, "task");
            r[member] = value.clone();
        })
    };
    let reason = |value: Value| with(&|r| r["reason"] = value.clone());
    vec![
        ("canonical", base.clone()),
        ("writ_id issued", target("writ_id", json!(writ_id))),
        (
            "writ_id unknown",
            target("writ_id", json!(format!("wr_{}", "0".repeat(32)))),
        ),
        (
            "writ_id of an admin writ",
            target("writ_id", json!(format!("ad_{}", "a".repeat(32)))),
        ),
        (
            "writ_id upper case",
            target("writ_id", json!(writ_id.to_uppercase())),
        ),
        ("writ_id short", target("writ_id", json!(&writ_id[..34]))),
        (
            "writ_id prefix",
            target("writ_id", json!(format!("rv_{}", "0".repeat(32)))),
        ),
        ("writ_id a number", target("writ_id", json!(42))),
        ("agent", target("agent", json!("k8s:ops/cleaner"))),
        ("agent 512", target("agent", json!("a".repeat(512)))),
        ("agent 513", target("agent", json!("a".repeat(513)))),
        ("agent empty", target("agent", json!(""))),
        ("agent newline", target("agent", json!("k8s:ops/clea\nner"))),
        ("agent DEL", target("agent", json!("k8s:ops/cleaner\u{7f}"))),
        (
            "agent punctuation",
            target("agent", json!(r#"k8s:"ops"/(cleaner)"#)),
        ),
        ("task empty", with(&|r| r["task"] = json!(""))),
        ("task 200", with(&|r| r["task"] = json!("t".repeat(200)))),
        ("task 201", with(&|r| r["task"] = json!("t".repeat(201)))),
        (
            "task newline",
            with(&|r| r["task"] = json!("nightly\nreport")),
        ),
        (
            "task not a string",
            with(&|r| r["task"] = json!(["nightly report"])),
        ),
        ("writ_id and task", with(&|r| r["writ_id"] = json!(writ_id))),
        (
            "task and agent",
            with(&|r| r["agent"] = json!("k8s:ops/cleaner")),
        ),
        (
            "all three",
            with(&|r| {
                r["writ_id"] = json!(writ_id);
                r["agent"] = json!("k8s:ops/cleaner");
            }),
        ),
        ("no target", with(&|r| remove(r, "task"))),
        (
            "other targets null",
            with(&|r| {
                r["writ_id"] = Value::Null;
                r["agent"] = Value::Null;
            }),
        ),
        (
            "every target null",
            with(&|r| {
                r["task"] = Value::Null;
                r["writ_id"] = Value::Null;
            }),
        ),
        ("reason missing", with(&|r| remove(r, "reason"))),
        ("reason null", reason(Value::Null)),
        ("reason empty", reason(json!(""))),
        ("reason white space", reason(json!(" \t\n\u{a0}\u{3000}"))),
        (
            "reason padded",
            reason(json!("\n\t compromised runner \r\n")),
        ),
        (
            "reason NEL-padded",
            reason(json!("\u{85}compromised runner\u{85}")),
        ),
        (
            "reason newline inside",
            reason(json!("compromised\nrunner")),
        ),
        ("reason C1 inside", reason(json!("compromised\u{85}runner"))),
        ("reason 500", reason(json!("r".repeat(500)))),
        ("reason 501", reason(json!("r".repeat(501)))),
        (
            "reason 500 padded",
            reason(json!(format!("  {}\n", "r".repeat(500)))),
        ),
        (
            "reason punctuation",
            reason(json!(r#"x"); revoke("*") // (y) é ✓"#)),
        ),
        ("reason a number", reason(json!(7))),
        ("unknown member", with(&|r| r["admin"] = json!(true))),
        ("an array", json!([base.clone()])),
        ("a string", json!("nightly report")),
        ("null", Value::Null),
    ]
}

/// Lift requests, each with one change.
fn lift_requests() -> Cases {
    let base = json!({"agent": "k8s:ops/cleaner", "reason": "investigated"});
    let with = |edit: &dyn Fn(&mut Value)| edited(&base, edit);
    vec![
        ("canonical", base.clone()),
        (
            "not suspended",
            with(&|r| r["agent"] = json!("k8s:ops/never")),
        ),
        ("agent missing", with(&|r| remove(r, "agent"))),
        ("agent null", with(&|r| r["agent"] = Value::Null)),
        ("agent empty", with(&|r| r["agent"] = json!(""))),
        ("agent 512", with(&|r| r["agent"] = json!("a".repeat(512)))),
        ("agent 513", with(&|r| r["agent"] = json!("a".repeat(513)))),
        (
            "agent tab",
            with(&|r| r["agent"] = json!("k8s:ops/\tcleaner")),
        ),
        ("reason missing", with(&|r| remove(r, "reason"))),
        ("reason blank", with(&|r| r["reason"] = json!("   "))),
        (
            "reason padded",
            with(&|r| r["reason"] = json!(" investigated\n")),
        ),
        (
            "reason 501",
            with(&|r| r["reason"] = json!("r".repeat(501))),
        ),
        (
            "writ_id member",
            with(&|r| r["writ_id"] = json!(format!("wr_{}", "0".repeat(32)))),
        ),
        ("an array", json!([base.clone()])),
    ]
}

/// Admin writ requests, each with one change.
fn admin_writ_requests() -> Cases {
    let base = json!({"principal": "ci-deployer", "roles": ["admin"]});
    let with = |edit: &dyn Fn(&mut Value)| edited(&base, edit);
    let ttl = |value: Value| with(&|r| r["ttl"] = value.clone());
    let principal = |value: Value| with(&|r| r["principal"] = value.clone());
    let roles = |value: Value| with(&|r| r["roles"] = value.clone());
    vec![
        ("canonical", base.clone()),
        ("ttl", ttl(json!(60))),
        ("ttl null", ttl(Value::Null)),
        ("ttl 1", ttl(json!(1))),
        ("ttl 0", ttl(json!(0))),
        ("ttl a day", ttl(json!(86_400))),
        ("ttl over a day", ttl(json!(86_401))),
        ("ttl negative", ttl(json!(-1))),
        ("ttl fractional", ttl(json!(1.5))),
        ("ttl a string", ttl(json!("60"))),
        ("principal email", principal(json!("bob+ops@example.co.uk"))),
        ("principal service", principal(json!("svc:deployer"))),
        ("principal 128", principal(json!("p".repeat(128)))),
        ("principal 129", principal(json!("p".repeat(129)))),
        ("principal empty", principal(json!(""))),
        ("principal space", principal(json!("ci deployer"))),
        ("principal slash", principal(json!("ci/deployer"))),
        ("principal quote", principal(json!(r#"x"); role("admin"#))),
        ("principal non-ASCII", principal(json!("ålice"))),
        ("principal null", principal(Value::Null)),
        ("principal missing", with(&|r| remove(r, "principal"))),
        ("every role", roles(json!(["auditor", "approver", "admin"]))),
        ("duplicate roles", roles(json!(["admin", "admin"]))),
        ("no roles", roles(json!([]))),
        ("unknown role", roles(json!(["root"]))),
        ("role capitalised", roles(json!(["Admin"]))),
        ("roles a string", roles(json!("admin"))),
        ("roles missing", with(&|r| remove(r, "roles"))),
        ("unknown member", with(&|r| r["issued_by"] = json!("root"))),
        ("an array", json!([base.clone()])),
        ("null", Value::Null),
    ]
}

/// The admin request schemas and the broker agree: a request is answered 400 exactly when the
/// schema refuses it (otherwise with a status the operation documents for an accepted request).
#[tokio::test]
async fn the_admin_request_schemas_refuse_exactly_what_the_broker_refuses() {
    let broker = TestBroker::start().await;
    let mut probe = Probe::new(&broker);
    let admin = broker.admin_token("root", &["admin"]).await;
    let issued = broker
        .issue(&broker.orders_identity(), &orders_request())
        .await;
    let writ_id = issued["writ_id"].as_str().unwrap();
    let operations: [(&str, Cases, &[u16]); 3] = [
        (
            "/v1/revocations",
            revoke_requests(writ_id),
            &[200, 201, 404],
        ),
        ("/v1/suspensions/lift", lift_requests(), &[200, 404]),
        ("/v1/admin/writs", admin_writ_requests(), &[201]),
    ];
    for (path, requests, accepted) in operations {
        let media =
            &resolve(&SPEC["paths"][path]["post"]["requestBody"])["content"]["application/json"];
        let request_schema = validator(&media["schema"]);
        for (name, body) in requests {
            let valid = request_schema.is_valid(&body);
            let (status, answer) = probe
                .send("POST", path, Request::admin(&admin, &body))
                .await;
            assert_eq!(
                status == 400,
                !valid,
                "{path} {name}: the schema {} it, the broker answered {status} {answer}",
                if valid { "accepts" } else { "refuses" }
            );
            if valid {
                assert!(
                    accepted.contains(&status),
                    "{path} {name}: {status} {answer}"
                );
            }
        }
        // The document's example request is valid and accepted.
        let example = &media["example"];
        assert!(request_schema.is_valid(example), "{path}: the example");
        let (status, answer) = probe
            .send("POST", path, Request::admin(&admin, example))
            .await;
        assert!(
            accepted.contains(&status),
            "{path} example: {status} {answer}"
        );
    }
    // What JSON Schema cannot say, the document says in prose: lengths are in UTF-8 bytes, and
    // `ttl` must be written as an integer literal.
    let unsayable = [
        (
            "/v1/revocations",
            "reason of 500 characters, 1000 bytes",
            json!({"task": "nightly report", "reason": "é".repeat(500)}),
        ),
        (
            "/v1/revocations",
            "agent of 512 characters, 1024 bytes",
            json!({"agent": "é".repeat(512), "reason": "compromised runner"}),
        ),
        (
            "/v1/revocations",
            "task of 200 characters, 400 bytes",
            json!({"task": "é".repeat(200), "reason": "compromised runner"}),
        ),
        (
            "/v1/suspensions/lift",
            "reason of 500 characters, 1000 bytes",
            json!({"agent": "k8s:ops/cleaner", "reason": "é".repeat(500)}),
        ),
        (
            "/v1/admin/writs",
            "ttl with a fraction of zero",
            json!({"principal": "ci-deployer", "roles": ["admin"], "ttl": 600.0}),
        ),
    ];
    for (path, name, body) in unsayable {
        let media =
            &resolve(&SPEC["paths"][path]["post"]["requestBody"])["content"]["application/json"];
        assert!(validator(&media["schema"]).is_valid(&body), "{path} {name}");
        let (status, _) = probe
            .send("POST", path, Request::admin(&admin, &body))
            .await;
        assert_eq!(
            status, 400,
            "{path} {name}: openapi.yaml says it is refused"
        );
    }
    broker.stop().await;
}

// ---- Problems ---------------------------------------------------------------------------------

/// One answer for every code the broker declares, and a policy refusal in each of its shapes
/// (the only problem with extension members), built the way the broker builds it.
fn answers() -> Vec<ApiError> {
    let refusal = |reason, ttl| Refusal {
        reason,
        refused_rights: vec![RefusedRight {
            resource: "orders/*".into(),
            operation: "write".into(),
        }],
        refused_services: vec!["billing-api".into()],
        refused_ttl: ttl,
    };
    let mut all: Vec<ApiError> = codes::ALL
        .iter()
        .filter(|code| **code != codes::POLICY_REFUSED)
        .map(|code| ApiError::new(*code, "what went wrong"))
        .collect();
    all.push(IssueError::Refused(refusal("no_matching_policy", None)).into());
    all.push(
        IssueError::Refused(refusal(
            "not_allowed",
            Some(RefusedTtl {
                requested: 3600,
                max: 600,
            }),
        ))
        .into(),
    );
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
    for error in answers() {
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
