//! The request schemas and the broker agree: a request is answered `invalid_request` exactly
//! when the schema of its operation refuses it, and what JSON Schema cannot say, the document
//! says in prose and the broker refuses too.

use std::time::Duration;

use serde_json::{Value, json};
use writ_testkit::Alg;

use super::{Probe, Request, SPEC, code, resolve, validator};
use crate::approvals::{broker_on, delete_order_request};
use crate::helpers::{AUDIENCE, Backend, TestBroker, orders_request};

/// Named request bodies.
type Cases = Vec<(&'static str, Value)>;

/// One operation's request schema, who sends it, and the statuses it may answer a request the
/// schema accepts with.
struct Operation<'a> {
    /// The documented path, and the path requests go to (its parameters filled in).
    path: &'a str,
    target: String,
    token: &'a str,
    accepted: &'a [u16],
    media: &'static Value,
    schema: jsonschema::Validator,
}

impl<'a> Operation<'a> {
    /// `POST path`, sent with `token` (an identity or an admin writ).
    fn new(path: &'a str, token: &'a str, accepted: &'a [u16]) -> Operation<'a> {
        Operation::at(path, path.to_owned(), token, accepted)
    }

    /// `POST path` of a documented path with parameters, sent to `target`, an instance of it.
    fn at(path: &'a str, target: String, token: &'a str, accepted: &'a [u16]) -> Operation<'a> {
        let media =
            &resolve(&SPEC["paths"][path]["post"]["requestBody"])["content"]["application/json"];
        Operation {
            path,
            target,
            token,
            accepted,
            media,
            schema: validator(&media["schema"]),
        }
    }

    async fn send(&self, probe: &mut Probe, body: &Value) -> (u16, Value) {
        probe
            .send("POST", &self.target, Request::writ(self.token, body))
            .await
    }

    /// Asserts that the broker answers `body` `400 invalid_request` exactly when the schema
    /// refuses it, and otherwise with an accepted status (which may be a 400 of another type,
    /// such as `approval_not_needed`).
    async fn assert_agrees(&self, probe: &mut Probe, name: &str, body: &Value) {
        let valid = self.schema.is_valid(body);
        let (status, answer) = self.send(probe, body).await;
        let path = self.path;
        let refused = status == 400 && code(&answer) == "invalid_request";
        assert_eq!(
            refused,
            !valid,
            "{path} {name}: the schema {} it, the broker answered {status} {answer}",
            if valid { "accepts" } else { "refuses" }
        );
        if valid {
            assert!(
                self.accepted.contains(&status),
                "{path} {name}: {status} {answer}"
            );
        }
    }

    /// Asserts that the schema accepts `body` and the broker answers it 400, as the document
    /// says in prose.
    async fn assert_refused_in_prose(&self, probe: &mut Probe, name: &str, body: &Value) {
        let path = self.path;
        assert!(self.schema.is_valid(body), "{path} {name}");
        let (status, answer) = self.send(probe, body).await;
        assert_eq!(
            (status, code(&answer)),
            (400, "invalid_request"),
            "{path} {name}: openapi.yaml says it is refused"
        );
    }

    /// Asserts that the document's example request is valid, sends it and answers the answer.
    async fn send_example(&self, probe: &mut Probe) -> (u16, Value) {
        let example = &self.media["example"];
        assert!(self.schema.is_valid(example), "{}: the example", self.path);
        self.send(probe, example).await
    }
}

/// `base` with one change.
fn edited(base: &Value, edit: &dyn Fn(&mut Value)) -> Value {
    let mut body = base.clone();
    edit(&mut body);
    body
}

fn remove(body: &mut Value, member: &str) {
    body.as_object_mut().unwrap().remove(member);
}

/// The canonical writ request with one change.
fn order(edit: &dyn Fn(&mut Value)) -> Value {
    edited(&orders_request(), edit)
}

/// `n` distinct names.
fn names(prefix: &str, n: usize) -> Value {
    Value::Array((0..n).map(|i| json!(format!("{prefix}{i}"))).collect())
}

// ---- Writ requests ----------------------------------------------------------------------------

/// Requests built around the canonical one, each with one change.
fn requests() -> Cases {
    [
        ttl_and_task_requests(),
        rights_requests(),
        services_and_shape_requests(),
    ]
    .concat()
}

fn ttl_and_task_requests() -> Cases {
    let ttl = |value: Value| order(&|r| r["ttl"] = value.clone());
    let task = |value: Value| order(&|r| r["task"] = value.clone());
    vec![
        ("canonical", orders_request()),
        ("ttl", ttl(json!(60))),
        ("ttl null", ttl(Value::Null)),
        ("ttl above the policy", ttl(json!(99_999_999))),
        ("ttl 0", ttl(json!(0))),
        ("ttl negative", ttl(json!(-1))),
        ("ttl fractional", ttl(json!(1.5))),
        ("ttl with a fraction of zero", ttl(json!(300.0))),
        ("ttl a string", ttl(json!("300"))),
        ("ttl beyond u64", ttl(json!(1e20))),
        ("task empty", task(json!(""))),
        ("task 200", task(json!("a".repeat(200)))),
        ("task 201", task(json!("a".repeat(201)))),
        (
            "task punctuation",
            task(json!(r#"x"); right("*", "admin") // (y)"#)),
        ),
        ("task newline", task(json!("nightly\nreport"))),
        ("task DEL", task(json!("nightly\u{7f}"))),
        ("task C1 control", task(json!("nightly\u{85}"))),
        ("task leading space", task(json!(" nightly report"))),
        ("task trailing space", task(json!("nightly report "))),
        ("task two spaces", task(json!("nightly  report"))),
        ("task space", task(json!(" "))),
        ("task no-break space", task(json!("nightly\u{a0}report"))),
        (
            "task ideographic space",
            task(json!("nightly\u{3000}report")),
        ),
        ("task zero-width space", task(json!("night\u{200b}ly"))),
        ("task bidi override", task(json!("nightly \u{202e}troper"))),
        ("task soft hyphen", task(json!("night\u{ad}ly"))),
        ("task variation selector", task(json!("nightly\u{fe0f}"))),
        ("task blank Braille", task(json!("nightly\u{2800}"))),
        ("task private use", task(json!("nightly\u{e000}"))),
        (
            "task Latin-1 letters",
            task(json!("nächtlicher Bericht, ½ Seite")),
        ),
        ("task other scripts", task(json!("夜間レポート 📈"))),
        ("task not a string", task(json!(1))),
        ("no task", order(&|r| remove(r, "task"))),
    ]
}

fn rights_requests() -> Cases {
    let right = |resource: &str| json!({"resource": resource, "operations": ["read"]});
    let rights = |value: Value| order(&|r| r["rights"] = value.clone());
    let resource = |resource: &str| rights(json!([right(resource)]));
    let operations = |value: Value| order(&|r| r["rights"][0]["operations"] = value.clone());
    vec![
        ("no rights", rights(json!([]))),
        (
            "32 rights",
            rights(Value::Array(vec![right("orders/42"); 32])),
        ),
        (
            "33 rights",
            rights(Value::Array(vec![right("orders/42"); 33])),
        ),
        ("rights missing", order(&|r| remove(r, "rights"))),
        (
            "right with an unknown member",
            order(&|r| r["rights"][0]["admin"] = json!(true)),
        ),
        ("no operations", operations(json!([]))),
        ("16 operations", operations(names("op", 16))),
        ("17 operations", operations(names("op", 17))),
        ("duplicate operations", operations(json!(["read", "read"]))),
        ("operation 64", operations(json!(["a".repeat(64)]))),
        ("operation 65", operations(json!(["a".repeat(65)]))),
        ("operation with a space", operations(json!(["read all"]))),
        ("operation with a quote", operations(json!(["re\"ad"]))),
        ("operation empty", operations(json!([""]))),
        ("resource prefix", resource("orders/*")),
        ("resource everything", resource("*")),
        ("resource inner star", resource("orders/*/items")),
        ("resource double star", resource("orders/**")),
        ("resource empty", resource("")),
        (
            "resource 512",
            resource(&format!("orders/{}", "a".repeat(505))),
        ),
        (
            "resource 513",
            resource(&format!("orders/{}", "a".repeat(506))),
        ),
        ("resource newline", resource("orders/4\n2")),
        (
            "resource quotes",
            resource(r#"x"), right("orders/1", "admin") //"#),
        ),
    ]
}

fn services_and_shape_requests() -> Cases {
    let services = |value: Value| order(&|r| r["services"] = value.clone());
    vec![
        ("no services", services(json!([]))),
        ("16 services", services(names("svc-", 16))),
        ("17 services", services(names("svc-", 17))),
        (
            "duplicate services",
            services(json!(["orders-api", "orders-api"])),
        ),
        ("service 128", services(json!(["s".repeat(128)]))),
        ("service 129", services(json!(["s".repeat(129)]))),
        ("service with a slash", services(json!(["orders/api"]))),
        ("services a string", services(json!("orders-api"))),
        ("unknown member", order(&|r| r["admin"] = json!(true))),
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
    let writs = Operation::new("/v1/writs", &identity, &[201, 403]);
    for (name, body) in requests() {
        writs.assert_agrees(&mut probe, name, &body).await;
    }
    // What JSON Schema cannot say, the document says in prose: lengths are in UTF-8 bytes, and
    // unassigned code points, characters beyond the Basic Multilingual Plane that are not
    // printable, and text not in NFC are refused.
    let unsayable = [
        (
            "task of 200 characters, 400 bytes",
            json!("é".repeat(200)),
            "task",
        ),
        ("task unassigned", json!("nightly\u{378}"), "task"),
        ("task plane 4", json!("nightly\u{40000}"), "task"),
        ("task tag character", json!("nightly\u{e0041}"), "task"),
        ("task not NFC", json!("nightly re\u{301}port"), "task"),
    ];
    for (name, value, member) in unsayable {
        let mut body = orders_request();
        body[member] = value;
        writs.assert_refused_in_prose(&mut probe, name, &body).await;
    }
    // The document's example request is valid and granted.
    let (status, answer) = writs.send_example(&mut probe).await;
    assert_eq!(status, 201, "{answer}");
    broker.stop().await;
}

// ---- Admin requests ---------------------------------------------------------------------------

/// A task revocation, the base of the revocation requests.
fn task_revocation() -> Value {
    json!({"task": "nightly report", "reason": "compromised runner"})
}

/// Revocation requests around a task revocation, each with one change; `writ_id` is a writ the
/// broker issued.
fn revoke_requests(writ_id: &str) -> Cases {
    [revoke_target_requests(writ_id), revoke_reason_requests()].concat()
}

/// Changes to what is revoked.
fn revoke_target_requests(writ_id: &str) -> Cases {
    let base = task_revocation();
    let with = |edit: &dyn Fn(&mut Value)| edited(&base, edit);
    let target = |member: &str, value: Value| {
        with(&|r| {
            remove(r, "task");
            r[member] = value.clone();
        })
    };
    let writ = |value: Value| target("writ_id", value);
    let agent = |value: Value| target("agent", value);
    let task = |value: Value| with(&|r| r["task"] = value.clone());
    vec![
        ("canonical", base.clone()),
        ("writ_id issued", writ(json!(writ_id))),
        (
            "writ_id unknown",
            writ(json!(format!("wr_{}", "0".repeat(32)))),
        ),
        (
            "writ_id of an admin writ",
            writ(json!(format!("ad_{}", "a".repeat(32)))),
        ),
        ("writ_id upper case", writ(json!(writ_id.to_uppercase()))),
        ("writ_id short", writ(json!(&writ_id[..34]))),
        (
            "writ_id prefix",
            writ(json!(format!("rv_{}", "0".repeat(32)))),
        ),
        ("writ_id a number", writ(json!(42))),
        ("agent", agent(json!("k8s:ops/cleaner"))),
        ("agent 512", agent(json!("a".repeat(512)))),
        ("agent 513", agent(json!("a".repeat(513)))),
        ("agent empty", agent(json!(""))),
        ("agent newline", agent(json!("k8s:ops/clea\nner"))),
        ("agent DEL", agent(json!("k8s:ops/cleaner\u{7f}"))),
        ("agent punctuation", agent(json!(r#"k8s:"ops"/(cleaner)"#))),
        ("task empty", task(json!(""))),
        ("task 200", task(json!("t".repeat(200)))),
        ("task 201", task(json!("t".repeat(201)))),
        ("task newline", task(json!("nightly\nreport"))),
        ("task not a string", task(json!(["nightly report"]))),
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
    ]
}

/// Changes to the reason, and to the shape of the request.
fn revoke_reason_requests() -> Cases {
    let base = task_revocation();
    let with = |edit: &dyn Fn(&mut Value)| edited(&base, edit);
    let reason = |value: Value| with(&|r| r["reason"] = value.clone());
    vec![
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
        ("ttl with a fraction of zero", ttl(json!(600.0))),
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

/// Admin requests the schemas accept and the document refuses in prose: lengths are in UTF-8
/// bytes, and `ttl` must be written as an integer literal.
fn admin_requests_refused_in_prose() -> [(&'static str, &'static str, Value); 4] {
    [
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
        let operation = Operation::new(path, &admin, accepted);
        for (name, body) in requests {
            operation.assert_agrees(&mut probe, name, &body).await;
        }
        // The document's example request is valid and accepted.
        let (status, answer) = operation.send_example(&mut probe).await;
        assert!(
            accepted.contains(&status),
            "{path} example: {status} {answer}"
        );
    }
    for (path, name, body) in admin_requests_refused_in_prose() {
        Operation::new(path, &admin, &[])
            .assert_refused_in_prose(&mut probe, name, &body)
            .await;
    }
    broker.stop().await;
}

// ---- Exchange requests -------------------------------------------------------------------------

/// AWS exchange requests around one for a role, each with one change.
fn aws_exchange_requests() -> Cases {
    let base = json!({"role": "reports"});
    let with_rights = |rights: Value| edited(&base, &|body| body["rights"] = rights.clone());
    let right = json!({"resource": "aws:s3/reports-bucket/2026/*", "operations": ["read"]});
    vec![
        ("role only", base.clone()),
        ("any role name", json!({"role": ""})),
        ("rights null", with_rights(Value::Null)),
        ("no rights", with_rights(json!([]))),
        ("one right", with_rights(json!([right]))),
        (
            "no operations",
            with_rights(json!([{"resource": "x", "operations": []}])),
        ),
        ("no role", json!({"rights": [right]})),
        ("role null", json!({"role": null})),
        ("role a number", json!({"role": 7})),
        (
            "unknown member",
            edited(&base, &|body| body["ttl"] = json!(60)),
        ),
        ("rights an object", with_rights(right.clone())),
        (
            "right without operations",
            with_rights(json!([{"resource": "x"}])),
        ),
        (
            "right without resource",
            with_rights(json!([{"operations": ["read"]}])),
        ),
        (
            "right with an unknown member",
            with_rights(json!([edited(&right, &|r| r["ttl"] = json!(60))])),
        ),
        (
            "operation a number",
            with_rights(json!([{"resource": "x", "operations": [7]}])),
        ),
        ("not an object", json!([base])),
        ("null", Value::Null),
    ]
}

/// The AWS exchange's request schema and the broker agree, on a broker without exchanges: a
/// request is answered `invalid_request` exactly when the schema refuses it, and otherwise
/// `exchange_role_unknown` (the body is read before the role is looked up).
#[tokio::test]
async fn the_aws_exchange_schema_refuses_exactly_what_the_broker_refuses() {
    let broker = TestBroker::start().await;
    let mut probe = Probe::new(&broker);
    let operation = Operation::new("/v1/exchange/aws", "not-a-writ", &[404]);
    for (name, body) in aws_exchange_requests() {
        operation.assert_agrees(&mut probe, name, &body).await;
    }
    let (status, answer) = operation.send_example(&mut probe).await;
    assert_eq!(
        (status, code(&answer)),
        (404, "exchange_role_unknown"),
        "{answer}"
    );
    broker.stop().await;
}

// ---- Approval requests and decisions ----------------------------------------------------------

/// Approval requests around the canonical deletion, each with one change.
fn approval_requests() -> Cases {
    let base = delete_order_request();
    let with = |edit: &dyn Fn(&mut Value)| edited(&base, edit);
    let justification = |value: Value| with(&|r| r["justification"] = value.clone());
    let ttl = |value: Value| with(&|r| r["ttl"] = value.clone());
    vec![
        ("canonical", base.clone()),
        ("ttl", ttl(json!(60))),
        ("ttl null", ttl(Value::Null)),
        ("ttl above the rule", ttl(json!(600))),
        ("ttl above the policy", ttl(json!(3600))),
        ("ttl 0", ttl(json!(0))),
        ("ttl fractional", ttl(json!(1.5))),
        ("ttl a string", ttl(json!("60"))),
        (
            "rights read",
            with(&|r| r["rights"] = json!([{"resource": "orders/42", "operations": ["read"]}])),
        ),
        ("rights empty", with(&|r| r["rights"] = json!([]))),
        (
            "task two spaces",
            with(&|r| r["task"] = json!("remove  it")),
        ),
        ("services empty", with(&|r| r["services"] = json!([]))),
        (
            "justification missing",
            with(&|r| remove(r, "justification")),
        ),
        ("justification null", justification(Value::Null)),
        ("justification empty", justification(json!(""))),
        ("justification spaces", justification(json!("   "))),
        ("justification newlines", justification(json!("\n \n"))),
        (
            "justification lines",
            justification(json!("entered twice:\n  once by hand,\n  once by import")),
        ),
        ("justification padded", justification(json!("  twice  "))),
        ("justification tab", justification(json!("entered\ttwice"))),
        (
            "justification carriage return",
            justification(json!("twice\r\n")),
        ),
        ("justification 2048", justification(json!("j".repeat(2048)))),
        ("justification 2049", justification(json!("j".repeat(2049)))),
        (
            "justification bidi override",
            justification(json!("approve \u{202e}eteled")),
        ),
        (
            "justification line separator",
            justification(json!("a\u{2028}b")),
        ),
        (
            "justification no-break space",
            justification(json!("a\u{a0}b")),
        ),
        (
            "justification punctuation",
            justification(json!(r#"x"); é ✓ (y)"#)),
        ),
        ("justification a number", justification(json!(42))),
        ("unknown member", with(&|r| r["approvers"] = json!(["me"]))),
        ("an array", json!([base.clone()])),
        ("null", Value::Null),
    ]
}

/// Decisions around an approval, each with one change.
fn decisions() -> Cases {
    let base = json!({"decision": "approve", "reason": "duplicate confirmed"});
    let with = |edit: &dyn Fn(&mut Value)| edited(&base, edit);
    let reason = |value: Value| with(&|r| r["reason"] = value.clone());
    let deny = |edit: &dyn Fn(&mut Value)| {
        with(&|r| {
            r["decision"] = json!("deny");
            edit(r);
        })
    };
    let narrow = json!([{"resource": "orders/42", "operations": ["delete"]}]);
    vec![
        ("canonical", base.clone()),
        ("deny", deny(&|_| {})),
        (
            "deny with nulls",
            deny(&|r| {
                r["rights"] = Value::Null;
                r["ttl"] = Value::Null;
            }),
        ),
        ("deny with rights", deny(&|r| r["rights"] = narrow.clone())),
        ("deny with ttl", deny(&|r| r["ttl"] = json!(60))),
        (
            "decision unknown",
            with(&|r| r["decision"] = json!("maybe")),
        ),
        (
            "decision capitalised",
            with(&|r| r["decision"] = json!("Approve")),
        ),
        ("decision missing", with(&|r| remove(r, "decision"))),
        ("reason missing", with(&|r| remove(r, "reason"))),
        ("reason empty", reason(json!(""))),
        ("reason blank", reason(json!(" \n "))),
        ("reason lines", reason(json!("confirmed:\nby phone"))),
        ("reason 1024", reason(json!("r".repeat(1024)))),
        ("reason 1025", reason(json!("r".repeat(1025)))),
        ("reason tab", reason(json!("con\tfirmed"))),
        (
            "reason zero-width joiner",
            reason(json!("con\u{200d}firmed")),
        ),
        ("reason a number", reason(json!(1))),
        ("narrowed", with(&|r| r["rights"] = narrow.clone())),
        ("rights null", with(&|r| r["rights"] = Value::Null)),
        ("rights empty", with(&|r| r["rights"] = json!([]))),
        (
            "rights widened",
            with(&|r| r["rights"] = json!([{"resource": "orders/*", "operations": ["delete"]}])),
        ),
        (
            "rights malformed",
            with(&|r| r["rights"] = json!([{"resource": "orders//42", "operations": ["delete"]}])),
        ),
        ("ttl", with(&|r| r["ttl"] = json!(60))),
        ("ttl null", with(&|r| r["ttl"] = Value::Null)),
        ("ttl longer", with(&|r| r["ttl"] = json!(301))),
        ("ttl 0", with(&|r| r["ttl"] = json!(0))),
        ("ttl fractional", with(&|r| r["ttl"] = json!(1.5))),
        ("unknown member", with(&|r| r["approver"] = json!("root"))),
        ("an array", json!([base.clone()])),
        ("null", Value::Null),
    ]
}

/// The approval request and decision schemas and the broker agree: a request is answered
/// `invalid_request` exactly when the schema refuses it (otherwise `202`, `429` past the
/// pending limit, or a policy's refusal; a decision `200`, or `narrowing_invalid`).
#[tokio::test]
async fn the_approval_schemas_refuse_exactly_what_the_broker_refuses() {
    let broker = broker_on(Backend::Sqlite).await;
    let mut probe = Probe::new(&broker);
    // Each case from an agent of its own, so that none waits on another's pending requests.
    let agent = |n: usize| {
        broker.kubernetes.kubernetes_token(
            Alg::Rs256,
            "orders",
            &format!("bot-{n}"),
            AUDIENCE,
            Duration::from_secs(600),
        )
    };
    for (n, (name, body)) in approval_requests().into_iter().enumerate() {
        let identity = agent(n);
        let opening = Operation::new("/v1/approvals", &identity, &[202, 400, 403]);
        opening.assert_agrees(&mut probe, name, &body).await;
    }
    let identity = agent(1000);
    let opening = Operation::new("/v1/approvals", &identity, &[202]);
    let (status, answer) = opening.send_example(&mut probe).await;
    assert_eq!(status, 202, "{answer}");
    let unsayable = [
        (
            "justification of 2048 characters, 4096 bytes",
            "é".repeat(2048),
        ),
        ("justification not NFC", "entered twice\u{301}".to_owned()),
        (
            "justification unassigned",
            "entered twice\u{378}".to_owned(),
        ),
    ];
    for (name, text) in unsayable {
        let mut body = delete_order_request();
        body["justification"] = json!(text);
        opening
            .assert_refused_in_prose(&mut probe, name, &body)
            .await;
    }

    // Each decision on a pending request of its own.
    let approver = broker.admin_token("alice", &["approver"]).await;
    let mut pending = Vec::new();
    for n in 0..=decisions().len() {
        let identity = agent(2000 + n);
        let (status, answer) = Operation::new("/v1/approvals", &identity, &[])
            .send(&mut probe, &delete_order_request())
            .await;
        assert_eq!(status, 202, "{answer}");
        pending.push(answer["id"].as_str().unwrap().to_owned());
    }
    let path = "/v1/approvals/{id}/decision";
    for ((name, body), id) in decisions().into_iter().zip(&pending) {
        let target = format!("/v1/approvals/{id}/decision");
        let deciding = Operation::at(path, target, &approver, &[200, 400]);
        deciding.assert_agrees(&mut probe, name, &body).await;
    }
    let target = format!("/v1/approvals/{}/decision", pending.last().unwrap());
    let deciding = Operation::at(path, target, &approver, &[200]);
    let (status, answer) = deciding.send_example(&mut probe).await;
    assert_eq!(status, 200, "{answer}");
    broker.stop().await;
}
