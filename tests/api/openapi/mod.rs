//! `openapi.yaml` is the broker's HTTP contract, and these tests hold the running broker to it:
//! every route the router serves is documented and every documented operation is served (other
//! methods answer 405); real responses of every documented status validate against the schema,
//! media type and required headers the document declares (JSON lines line by line; an event
//! stream event by event, read up to its first heartbeat since it never ends); requests the
//! request schemas refuse are exactly the ones the broker answers 400; and every problem the
//! broker can answer is documented.
//!
//! This module reads the document and talks to a broker ([`Probe`]); the tests are in
//! [`routes`], [`responses`] (one file per route), [`requests`] and [`problems`].

mod problems;
mod requests;
mod responses;
mod routes;

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};

use crate::helpers::{TestBroker, client};

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

/// The documented path `path` is an instance of (`/v1/approvals/ap_…` of
/// `/v1/approvals/{id}`: a `{parameter}` stands for one non-empty segment), if any.
fn spec_path(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    spec_paths().into_iter().find(|template| {
        let pattern: Vec<&str> = template.split('/').collect();
        pattern.len() == segments.len()
            && pattern.iter().zip(&segments).all(|(expected, got)| {
                expected == got
                    || (expected.starts_with('{') && expected.ends_with('}') && !got.is_empty())
            })
    })
}

/// Where the response for `method path status` is documented (for messages) and the response
/// object; `path` may be an instance of a documented path with parameters. Requests that match
/// no operation take the document's fallback responses: 405 for a documented path, 404 for any
/// other. Panics when the status is not documented.
fn documented_response(method: &str, path: &str, status: u16) -> (String, &'static Value) {
    let path = spec_path(path).unwrap_or_else(|| path.to_owned());
    let path = path.as_str();
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
    /// The headers of the last answer.
    headers: HeaderMap,
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
            headers: HeaderMap::new(),
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
        self.headers = headers;
        let spec_path = spec_path(path).unwrap_or_else(|| "*".to_owned());
        self.seen
            .insert((method.into(), spec_path, status.to_string()));
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
