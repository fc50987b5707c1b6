//! Live reload of the policy set against a running broker: a valid change decides within
//! seconds and the writs it allows record its hash; an invalid one (a TOML error, an unknown
//! issuer, an empty directory) is refused and reported while the running set keeps deciding;
//! SIGHUP reloads at once (a `writ serve` process, read back with `writ policy status`); replicas
//! each report the set they run; an elevated writ records the set that admitted its request.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use writ_testkit::TestIssuer;

use crate::approvals::{
    APPROVAL_POLICIES, approve, decide, delete_order_request, details, open_pending, poll,
};
use crate::helpers::{
    Backend, POLICIES, ServeProcess, Setup, TestBroker, WRIT, client, orders_request, problem_type,
    process_config, recorded_policy_hash, writ_command,
};
use crate::on_both_backends;
use crate::openapi::assert_matches_spec;

/// How often the brokers under test read their policy files.
const POLL: Duration = Duration::from_millis(200);
/// How long a change may take to show.
const DEADLINE: Duration = Duration::from_secs(10);

/// [`POLICIES`] with the orders reader allowed to write orders too.
fn with_writes(policies: &str) -> String {
    let changed = policies.replace(
        r#"operations = ["read"]"#,
        r#"operations = ["read", "write"]"#,
    );
    assert_ne!(changed, policies);
    changed
}

fn write_request() -> Value {
    json!({"task": "nightly report", "rights": [{"resource": "orders/42", "operations": ["write"]}], "services": ["orders-api"]})
}

/// The hash a broker reports for the one policy file `name` holding `text`, computed as
/// documented: SHA-256 over `name \0 len \0 bytes`.
fn expected_hash(name: &str, text: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("{name}\0{}\0", text.len()));
    hasher.update(text);
    hex::encode(hasher.finalize())
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text))
}

/// Replaces a policy file as a deploy should: written beside it, then renamed over it, so that
/// no read sees half a file.
fn replace_file(path: &Path, text: &str) {
    let staged = path.with_extension("toml.staged");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

fn policy_file(dir: &Path) -> PathBuf {
    dir.join("policies").join("test.toml")
}

async fn reloading_broker(backend: Backend, policies: String) -> TestBroker {
    let mut setup = Setup::new(backend);
    setup.policies = policies;
    setup.tweak = Box::new(|config| config.policy_reload_interval = POLL);
    TestBroker::start_with(setup).await
}

/// `GET /v1/policy` of the broker at `url` until `done` holds, within [`DEADLINE`].
async fn policy_until(url: &str, token: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let response = client()
            .get(format!("{url}/v1/policy"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let status: Value = response.json().await.unwrap();
        if done(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {DEADLINE:?}: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn audit_events(url: &str, auditor: &str, query: &str) -> Vec<Value> {
    let page: Value = client()
        .get(format!("{url}/v1/audit?{query}"))
        .bearer_auth(auditor)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["events"].as_array().unwrap().clone()
}

/// A request refused before the change is allowed after it, within seconds; the answer, the
/// issuance record and its audit event carry the new set's hash, and the reload is audited.
async fn a_valid_change_decides_within_seconds_and_its_writs_record_its_hash(backend: Backend) {
    let broker = reloading_broker(backend, POLICIES.to_owned()).await;
    let auditor = broker.admin_token("eve", &["auditor"]).await;
    let identity = broker.orders_identity();
    let before = broker.admin_get_json("/v1/policy", &auditor).await;
    let old_hash = expected_hash("test.toml", POLICIES);
    assert_eq!(before["hash"], old_hash);
    assert_eq!(
        before["files"],
        json!([{"name": "test.toml", "sha256": sha256(POLICIES)}])
    );
    let refused = broker.request(&identity, &write_request()).await;
    assert_eq!(
        problem_type(refused).await,
        (403, "urn:writ:problem:policy_refused".to_owned())
    );
    let read = broker.issue(&identity, &orders_request()).await;
    assert_eq!(read["policy_hash"], old_hash);

    let changed = with_writes(POLICIES);
    replace_file(&policy_file(broker.data.path()), &changed);
    let new_hash = expected_hash("test.toml", &changed);
    let after = policy_until(&broker.url, &auditor, "the change runs", |status| {
        status["hash"] == new_hash
    })
    .await;
    assert!(after.get("last_error").is_none(), "{after:#}");
    assert_eq!(
        after["files"],
        json!([{"name": "test.toml", "sha256": sha256(&changed)}])
    );
    assert!(after["loaded_at"].as_str().unwrap() >= before["loaded_at"].as_str().unwrap());

    let written = broker.issue(&identity, &write_request()).await;
    assert_eq!(written["policy_hash"], new_hash);
    let writ_id = written["writ_id"].as_str().unwrap();
    let read_id = read["writ_id"].as_str().unwrap();
    assert_eq!(
        recorded_policy_hash(&broker.database_url, writ_id).await,
        Some(new_hash.clone())
    );
    assert_eq!(
        recorded_policy_hash(&broker.database_url, read_id).await,
        Some(old_hash.clone())
    );
    let issued = audit_events(
        &broker.url,
        &auditor,
        &format!("action=writ.issued&writ_id={writ_id}"),
    )
    .await;
    assert_eq!(details(&issued[0])["policy_hash"], new_hash);

    let reloads = audit_events(&broker.url, &auditor, "action=policy.reloaded").await;
    assert_eq!(reloads.len(), 1, "{reloads:#?}");
    assert_eq!(reloads[0]["actor"], "broker");
    assert_eq!(reloads[0]["outcome"], "success");
    let reload = details(&reloads[0]);
    assert_eq!(reload["old_hash"], old_hash);
    assert_eq!(reload["new_hash"], new_hash);
    assert_eq!(reload["trigger"], "poll");
    assert_eq!(reload["files"], after["files"]);
    assert_eq!(reload["files_total"], 1);

    let ready = broker.get_json("/readyz").await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["policy"]["hash"], new_hash);
    broker.stop().await;
}
on_both_backends!(a_valid_change_decides_within_seconds_and_its_writs_record_its_hash);

/// The number (from 1) of the first line of `text` that is `line`.
fn line_of(text: &str, line: &str) -> usize {
    text.lines().position(|each| each == line).unwrap() + 1
}

/// A TOML error, a policy naming an unknown issuer, and an empty directory are each refused:
/// the running set keeps deciding, `/readyz` (still ready) and `GET /v1/policy` name the file
/// and line, and each is audited once however many polls see it. Put back as it runs, the
/// error clears and nothing reloads.
#[tokio::test]
async fn an_invalid_change_is_refused_and_reported_while_the_running_set_decides() {
    let broker = reloading_broker(Backend::Sqlite, POLICIES.to_owned()).await;
    let admin = broker.admin_token("root", &["admin"]).await;
    let auditor = broker.admin_token("eve", &["auditor"]).await;
    let identity = broker.orders_identity();
    let running = expected_hash("test.toml", POLICIES);
    let path = policy_file(broker.data.path());
    let refused_as = |text: &str| {
        let hash = expected_hash("test.toml", text);
        move |status: &Value| status["last_error"]["hash"] == hash
    };

    // A TOML error.
    let broken = format!("{POLICIES}\n[[policy]\nname = \"half\"\n");
    replace_file(&path, &broken);
    let status = policy_until(&broker.url, &admin, "the TOML error", refused_as(&broken)).await;
    assert_eq!(status["hash"], running);
    let message = status["last_error"]["message"].as_str().unwrap();
    let line = line_of(&broken, "[[policy]");
    assert!(
        message.starts_with(&format!("test.toml:{line}:")),
        "{message}"
    );
    let data_dir = broker.data.path().to_str().unwrap();
    assert!(!message.contains(data_dir), "{message}");
    assert_answer_matches_spec(&broker, "/v1/policy", &admin).await;
    assert_answer_matches_spec(&broker, "/readyz", "").await;
    let ready = broker.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["policy"]["hash"], running);
    // The public answer says when and what was refused, not why (the message quotes policy
    // text): that is for admins and auditors.
    assert_eq!(
        ready["policy"]["reload_refused"]["hash"],
        status["last_error"]["hash"]
    );
    assert_eq!(
        ready["policy"]["reload_refused"]["at"],
        status["last_error"]["at"]
    );
    assert!(ready["policy"].get("files").is_none(), "{ready:#}");
    assert!(!ready.to_string().contains("message"), "{ready:#}");
    let issued = broker.issue(&identity, &orders_request()).await;
    assert_eq!(issued["policy_hash"], running);
    let refusals = audit_events(&broker.url, &auditor, "action=policy.reload_refused").await;
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    assert_eq!(refusals[0]["outcome"], "refused");
    let refusal = details(&refusals[0]);
    assert_eq!(refusal["error"], message);
    assert_eq!(refusal["hash"], expected_hash("test.toml", &broken));
    assert_eq!(refusal["running_hash"], running);
    assert_eq!(refusal["trigger"], "poll");
    assert_eq!(
        refusal["files"],
        json!([{"name": "test.toml", "sha256": sha256(&broken)}])
    );

    // A policy naming an issuer the broker does not trust.
    let unknown = format!(
        "{POLICIES}\n[[policy]]\nname = \"gitlab-ci\"\nissuer = \"gitlab\"\nresources = [\"ci/*\"]\n\
         operations = [\"read\"]\nservices = [\"ci-api\"]\nmax_ttl = \"5m\"\n"
    );
    replace_file(&path, &unknown);
    let status = policy_until(
        &broker.url,
        &admin,
        "the unknown issuer",
        refused_as(&unknown),
    )
    .await;
    assert_eq!(status["hash"], running);
    assert_eq!(
        status["last_error"]["message"],
        format!(
            "test.toml:{}: issuer \"gitlab\" is not a configured issuer (known: kubernetes, github)",
            line_of(&unknown, "name = \"gitlab-ci\"") - 1
        )
    );
    assert_eq!(
        broker.issue(&identity, &orders_request()).await["policy_hash"],
        running
    );

    // No policy file at all: an empty set is refused.
    std::fs::remove_file(&path).unwrap();
    let status = policy_until(&broker.url, &admin, "the empty directory", |status| {
        status["last_error"]["hash"] == sha256("")
    })
    .await;
    let message = status["last_error"]["message"].as_str().unwrap();
    assert!(message.starts_with("policy_dir: no policies"), "{message}");
    assert_eq!(
        broker.issue(&identity, &orders_request()).await["policy_hash"],
        running
    );

    // No directory at all (moved away): unreadable, refused, no hash.
    let dir = path.parent().unwrap();
    let moved = dir.with_extension("gone");
    std::fs::rename(dir, &moved).unwrap();
    let status = policy_until(&broker.url, &admin, "the missing directory", |status| {
        status["last_error"]["hash"].is_null()
    })
    .await;
    let message = status["last_error"]["message"].as_str().unwrap();
    assert!(message.starts_with("policy_dir: "), "{message}");
    assert!(!message.contains(data_dir), "{message}");
    assert_answer_matches_spec(&broker, "/v1/policy", &admin).await;
    assert_eq!(
        broker.issue(&identity, &orders_request()).await["policy_hash"],
        running
    );

    // However many polls see each refused set (several go by here), each is audited once.
    tokio::time::sleep(POLL * 5).await;
    let refusals = audit_events(&broker.url, &auditor, "action=policy.reload_refused").await;
    assert_eq!(refusals.len(), 4, "{refusals:#?}");
    assert!(details(&refusals[3])["hash"].is_null());

    // Back as it runs: nothing is wrong any more, and nothing was reloaded.
    std::fs::rename(&moved, dir).unwrap();
    replace_file(&path, POLICIES);
    let status = policy_until(&broker.url, &admin, "the error clears", |status| {
        status.get("last_error").is_none()
    })
    .await;
    assert_eq!(status["hash"], running);
    let reloads = audit_events(&broker.url, &auditor, "action=policy.reloaded").await;
    assert!(reloads.is_empty(), "{reloads:#?}");
    broker.stop().await;
}

/// Asserts that `GET path` (with `token`, unless empty) answers 200 as `openapi.yaml` says.
async fn assert_answer_matches_spec(broker: &TestBroker, path: &str, token: &str) {
    let mut request = client().get(format!("{}{path}", broker.url));
    if !token.is_empty() {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.bytes().await.unwrap();
    assert_matches_spec("GET", path, status, Some(&content_type), &body);
    assert_eq!(status, 200);
}

/// `writ policy status` against `url`: the output.
fn policy_status(dir: &Path, url: &str, token: &str) -> Output {
    writ_command(dir)
        .args(["policy", "status", "--broker", url])
        .env("WRIT_ADMIN_TOKEN", token)
        .output()
        .unwrap()
}

fn send_sighup(process: &ServeProcess) {
    let status = Command::new("kill")
        .args(["-HUP", &process.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A `writ serve` process whose poll is ten minutes away reloads on SIGHUP at once: a valid
/// change runs (audited as triggered by the signal), an invalid one is refused, and `writ
/// policy status` prints each (exit 1 while a change is refused). The process keeps serving.
#[tokio::test]
async fn sighup_reloads_a_broker_process_at_once() {
    let kubernetes = TestIssuer::start().await;
    let github = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("writ.db").display());
    let config = process_config(dir.path(), &database_url, &kubernetes, &github);
    let config_path = dir.path().join("writ.toml");
    std::fs::write(&config_path, config).unwrap();
    let process = ServeProcess::start(
        dir.path(),
        "broker",
        &[
            "--config",
            config_path.to_str().unwrap(),
            "--policy-reload-interval",
            "10m",
        ],
    );
    let bootstrap = Command::new(WRIT)
        .current_dir(dir.path())
        .args(["admin", "bootstrap", "--principal", "root"])
        .args(["--role", "admin", "--role", "auditor"])
        .args(["--config", config_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(bootstrap.status.success(), "{bootstrap:?}");
    let token = String::from_utf8(bootstrap.stdout)
        .unwrap()
        .trim()
        .to_owned();

    let shown = policy_status(dir.path(), &process.url, &token);
    assert!(shown.status.success(), "{shown:?}");
    let stdout = String::from_utf8(shown.stdout).unwrap();
    let old_hash = expected_hash("test.toml", POLICIES);
    assert!(
        stdout.contains(&format!("policy hash  {old_hash}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{}  test.toml", sha256(POLICIES))),
        "{stdout}"
    );

    // The poll is ten minutes away: only the signal can apply this now.
    let changed = with_writes(POLICIES);
    replace_file(&policy_file(dir.path()), &changed);
    send_sighup(&process);
    let new_hash = expected_hash("test.toml", &changed);
    policy_until(&process.url, &token, "the signal reloads", |status| {
        status["hash"] == new_hash
    })
    .await;
    let shown = policy_status(dir.path(), &process.url, &token);
    assert!(shown.status.success(), "{shown:?}");
    let stdout = String::from_utf8(shown.stdout).unwrap();
    assert!(
        stdout.contains(&format!("policy hash  {new_hash}")),
        "{stdout}"
    );
    let reloads = audit_events(&process.url, &token, "action=policy.reloaded").await;
    assert_eq!(reloads.len(), 1, "{reloads:#?}");
    assert_eq!(details(&reloads[0])["trigger"], "signal");
    assert_eq!(details(&reloads[0])["old_hash"], old_hash);

    // An invalid change on the signal is refused; the status says so and exits 1.
    let broken = format!("{changed}\nmax_ttl = 5\n");
    replace_file(&policy_file(dir.path()), &broken);
    send_sighup(&process);
    let refused_hash = expected_hash("test.toml", &broken);
    policy_until(&process.url, &token, "the signal refuses", |status| {
        status["last_error"]["hash"] == refused_hash
    })
    .await;
    let shown = policy_status(dir.path(), &process.url, &token);
    assert_eq!(shown.status.code(), Some(1), "{shown:?}");
    let stdout = String::from_utf8(shown.stdout).unwrap();
    assert!(
        stdout.contains(&format!("policy hash  {new_hash}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("reload refused at ") && stdout.contains("  test.toml:"),
        "{stdout}"
    );
    let json = writ_command(dir.path())
        .args(["policy", "status", "--json", "--broker", &process.url])
        .env("WRIT_ADMIN_TOKEN", &token)
        .output()
        .unwrap();
    let answer: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(answer["last_error"]["hash"], refused_hash);
    assert_eq!(
        audit_events(&process.url, &token, "action=policy.reload_refused")
            .await
            .len(),
        1
    );
    let ready = client()
        .get(format!("{}/readyz", process.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    drop(process);
    kubernetes.shutdown().await;
    github.shutdown().await;
}

/// Two replicas on one PostgreSQL database, each with its own policy directory: each reports
/// (and its writs record) the set it runs, and the shared audit log the one reload.
#[tokio::test]
async fn replicas_each_report_the_policy_set_they_run() {
    let a = reloading_broker(Backend::Postgres, POLICIES.to_owned()).await;
    let database_url = a.database_url.clone();
    let key_dir = a.key_dir();
    let mut setup = Setup::new(Backend::Sqlite);
    setup.tweak = Box::new(move |config| {
        config.database_url = database_url;
        config.key_dir = key_dir;
        config.policy_reload_interval = POLL;
    });
    let b = TestBroker::start_with(setup).await;
    // One database and one key directory: an admin writ of one replica is one of the other.
    let auditor = a.admin_token("eve", &["auditor"]).await;
    let old_hash = expected_hash("test.toml", POLICIES);

    let changed = with_writes(POLICIES);
    replace_file(&policy_file(b.data.path()), &changed);
    let new_hash = expected_hash("test.toml", &changed);
    policy_until(&b.url, &auditor, "replica B reloads", |status| {
        status["hash"] == new_hash
    })
    .await;
    assert_eq!(
        a.admin_get_json("/v1/policy", &auditor).await["hash"],
        old_hash
    );
    assert_eq!(a.get_json("/readyz").await["policy"]["hash"], old_hash);
    assert_eq!(b.get_json("/readyz").await["policy"]["hash"], new_hash);
    let through_a = a.issue(&a.orders_identity(), &orders_request()).await;
    let through_b = b.issue(&b.orders_identity(), &write_request()).await;
    assert_eq!(through_a["policy_hash"], old_hash);
    assert_eq!(through_b["policy_hash"], new_hash);
    assert_eq!(
        recorded_policy_hash(&a.database_url, through_b["writ_id"].as_str().unwrap()).await,
        Some(new_hash.clone())
    );
    let reloads = audit_events(&a.url, &auditor, "action=policy.reloaded").await;
    assert_eq!(reloads.len(), 1, "{reloads:#?}");
    assert_eq!(details(&reloads[0])["new_hash"], new_hash);
    b.stop().await;
    a.stop().await;
}

/// A request for approval records the set that admitted it; its elevated writ, minted after a
/// reload, records the set that allowed it then (policy is asked again at collection).
#[tokio::test]
async fn an_approval_request_and_its_elevated_writ_record_the_sets_that_allowed_them() {
    let policies = format!("{POLICIES}\n{APPROVAL_POLICIES}");
    let broker = reloading_broker(Backend::Sqlite, policies.clone()).await;
    let auditor = broker.admin_token("eve", &["auditor"]).await;
    let approver = broker.admin_token("alice", &["approver"]).await;
    let identity = broker.orders_identity();
    let admitting = expected_hash("test.toml", &policies);
    let id = open_pending(&broker, &identity, &delete_order_request()).await;
    let (status, _) = decide(&broker, &approver, &id, approve("a duplicate")).await;
    assert_eq!(status, 200);

    let changed = with_writes(&policies);
    replace_file(&policy_file(broker.data.path()), &changed);
    let running = expected_hash("test.toml", &changed);
    policy_until(&broker.url, &auditor, "the change runs", |status| {
        status["hash"] == running
    })
    .await;

    let (status, collected) = poll(&broker, &identity, &id, Duration::ZERO).await;
    assert_eq!(status, 200, "{collected:#}");
    assert!(collected["writ"].is_string(), "{collected:#}");
    assert_eq!(collected["policy_hash"], admitting);
    assert_eq!(collected["writ_policy_hash"], running);
    let writ_id = collected["writ_id"].as_str().unwrap();
    assert_eq!(
        recorded_policy_hash(&broker.database_url, writ_id).await,
        Some(running.clone())
    );
    let issued = audit_events(
        &broker.url,
        &auditor,
        &format!("action=writ.issued&writ_id={writ_id}"),
    )
    .await;
    assert_eq!(details(&issued[0])["policy_hash"], running);
    assert_eq!(details(&issued[0])["approval"]["policy_hash"], admitting);
    let requested = audit_events(&broker.url, &auditor, "action=approval.requested").await;
    assert_eq!(details(&requested[0])["policy_hash"], admitting);
    broker.stop().await;
}

/// An approved request collected after a reload that tightened its policy: a shorter lifetime
/// shortens the elevated writ; a stricter approval rule (more approvers, named ones) refuses it,
/// and the agent must ask again.
#[tokio::test]
async fn a_tightened_policy_holds_for_approved_writs_not_yet_collected() {
    let policies = format!("{POLICIES}\n{APPROVAL_POLICIES}");
    let broker = reloading_broker(Backend::Sqlite, policies.clone()).await;
    let auditor = broker.admin_token("eve", &["auditor"]).await;
    let approver = broker.admin_token("alice", &["approver"]).await;
    let identity = broker.orders_identity();
    let shortened_id = open_pending(&broker, &identity, &delete_order_request()).await;
    let stricter_id = open_pending(&broker, &identity, &delete_order_request()).await;
    for id in [&shortened_id, &stricter_id] {
        let (status, _) = decide(&broker, &approver, id, approve("cleanup")).await;
        assert_eq!(status, 200);
    }
    let original = "max_ttl = \"10m\"\n[policy.approval]\nwait = \"10m\"\nttl = \"5m\"";
    assert!(policies.contains(original));

    let shorter = policies.replacen(
        original,
        "max_ttl = \"10m\"\nttl_caps = { delete = \"30s\" }\n[policy.approval]\nwait = \"10m\"\nttl = \"5m\"",
        1,
    );
    replace_file(&policy_file(broker.data.path()), &shorter);
    let running = expected_hash("test.toml", &shorter);
    policy_until(&broker.url, &auditor, "the shorter lifetime runs", |s| {
        s["hash"] == running
    })
    .await;
    let (status, collected) = poll(&broker, &identity, &shortened_id, Duration::ZERO).await;
    assert_eq!(status, 200, "{collected:#}");
    let expires = collected["writ_expires_at"].as_str().unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(expires).unwrap();
    let left = expires.timestamp() - chrono::Utc::now().timestamp();
    assert!(
        (0..=30).contains(&left),
        "the writ lives {left}s more: {collected:#}"
    );

    let stricter = policies.replacen(
        original,
        "max_ttl = \"10m\"\n[policy.approval]\nwait = \"10m\"\nttl = \"5m\"\n\
         approvers = [\"principal:alice\", \"principal:bob\"]\nquorum = 2",
        1,
    );
    replace_file(&policy_file(broker.data.path()), &stricter);
    let running = expected_hash("test.toml", &stricter);
    policy_until(&broker.url, &auditor, "the stricter rule runs", |s| {
        s["hash"] == running
    })
    .await;
    let (status, refused) = poll(&broker, &identity, &stricter_id, Duration::ZERO).await;
    assert_eq!(status, 403, "{refused:#}");
    assert_eq!(refused["type"], "urn:writ:problem:approval_required");
    assert_eq!(refused["policy"], "orders-cleanup");
    broker.stop().await;
}
