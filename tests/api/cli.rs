//! The `writ` command, run as a user would: the dev-mode quickstart end to end, policy tests,
//! key rotation, and every subcommand's help.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::helpers::{
    ServeProcess, TestBroker, WRIT, orders_request, problem_type, writ_command as command,
    writ_with_input as writ_stdin,
};

fn writ(dir: &Path, args: &[&str]) -> Output {
    command(dir).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn the_dev_quickstart_works_end_to_end() {
    let (dir, server, writ_text) = dev_broker_with_a_writ();

    let verify = |writ_text: &str, resource: &str, operation: &str| {
        writ_stdin(
            dir.path(),
            &[
                "verify",
                "--broker",
                &server.url,
                "--audience",
                "orders-api",
                "--resource",
                resource,
                "--operation",
                operation,
                "-",
            ],
            writ_text,
        )
    };
    let granted = verify(&writ_text, "orders/42", "read");
    assert!(granted.status.success(), "{granted:?}");
    assert!(stdout(&granted).contains("dev:demo-agent"));
    let denied = verify(&writ_text, "orders/42", "write");
    assert_eq!(denied.status.code(), Some(1));
    assert!(
        stdout(&denied).contains("not_permitted"),
        "{}",
        stdout(&denied)
    );

    let inspected = writ_stdin(dir.path(), &["inspect", "-"], &writ_text);
    let text = stdout(&inspected);
    assert!(text.starts_with("NOT VERIFIED"));
    assert!(
        text.contains("\"dev:demo-agent\"")
            && text.contains("orders-api")
            && text.contains("read \"orders/*\""),
        "{text}"
    );

    let narrower = writ_stdin(
        dir.path(),
        &[
            "attenuate",
            "--resource",
            "orders/7",
            "--expires-in",
            "1m",
            "-",
        ],
        &writ_text,
    );
    assert!(narrower.status.success(), "{narrower:?}");
    let narrower = stdout(&narrower);
    assert!(verify(&narrower, "orders/7", "read").status.success());
    let refused = verify(&narrower, "orders/42", "read");
    assert!(
        stdout(&refused).contains("restricted_by_attenuation"),
        "{}",
        stdout(&refused)
    );

    let rotated = writ(dir.path(), &["keys", "rotate"]);
    assert!(
        stdout(&rotated).contains("key 2 is now active"),
        "{rotated:?}"
    );
    let listed = stdout(&writ(dir.path(), &["keys", "list"]));
    assert!(
        listed.contains("1\tretired") && listed.contains("2\tactive"),
        "{listed}"
    );
    // The old writ still verifies: key 1 stays published until its writs have expired.
    assert!(verify(&writ_text, "orders/42", "read").status.success());
}

#[test]
fn dev_mode_refuses_to_listen_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let output = writ(dir.path(), &["serve", "--dev", "--listen", "0.0.0.0:0"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("loopback"));
}

#[test]
fn dev_mode_can_be_set_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(WRIT)
        .current_dir(dir.path())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env("WRIT_DEV", "1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("dev mode"));
}

#[test]
fn serve_without_policies_outside_dev_mode_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = writ(dir.path(), &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("policy_dir is required"));
}

#[tokio::test]
async fn a_broker_outside_dev_mode_refuses_dev_identities() {
    let broker = TestBroker::start().await;
    let dev = writ::identity::DevIssuer::open_or_init(&broker.key_dir()).unwrap();
    let token = dev
        .token("demo-agent", Duration::from_secs(60), SystemTime::now())
        .unwrap();
    let response = broker.request(&token, &orders_request()).await;
    assert_eq!(
        problem_type(response).await,
        (401, "urn:writ:problem:identity_issuer_unknown".to_owned())
    );
    broker.stop().await;
}

const POLICY: &str = r#"
[[policy]]
name = "reader"
issuer = "kubernetes"
claims = { "kubernetes.io" = { namespace = "orders" } }
resources = ["orders/*"]
operations = ["read"]
services = ["orders-api"]
max_ttl = "10m"
"#;

const TESTS: &str = r#"
[[case]]
name = "reads orders"
issuer = "kubernetes"
claims = { "kubernetes.io" = { namespace = "orders" } }
request = { task = "t", rights = [{ resource = "orders/42", operations = ["read"] }], services = ["orders-api"] }
expect = "allow"

[[case]]
name = "may not write"
issuer = "kubernetes"
claims = { "kubernetes.io" = { namespace = "orders" } }
request = { task = "t", rights = [{ resource = "orders/42", operations = ["read", "write"] }], services = ["orders-api"] }
expect = "deny"
refused_rights = ["orders/42:write"]
"#;

#[test]
fn policy_tests_pass_and_fail_with_the_right_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orders.toml"), POLICY).unwrap();
    std::fs::write(dir.path().join("orders.test.toml"), TESTS).unwrap();
    let passing = writ(dir.path(), &["policy", "test", "."]);
    assert!(passing.status.success(), "{}", stdout(&passing));
    assert!(stdout(&passing).ends_with("2 passed, 0 failed"));

    std::fs::write(
        dir.path().join("orders.test.toml"),
        TESTS.replace("expect = \"allow\"", "expect = \"deny\""),
    )
    .unwrap();
    let failing = writ(dir.path(), &["policy", "test", "."]);
    assert_eq!(failing.status.code(), Some(1));
    assert!(
        stdout(&failing).contains("FAIL ./orders.test.toml :: reads orders"),
        "{}",
        stdout(&failing)
    );

    std::fs::write(
        dir.path().join("orders.toml"),
        POLICY.replace("\"10m\"", "\"3h\""),
    )
    .unwrap();
    let invalid = writ(dir.path(), &["policy", "check", "."]);
    assert_eq!(invalid.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&invalid.stderr).contains("./orders.toml:9:11"),
        "{invalid:?}"
    );
}

const DENY: &str = r#"
[[deny]]
name = "no-order-writes"
issuer = "kubernetes"
resources = ["orders/*"]
operations = ["write"]

[[deny]]
name = "never-fires"
issuer = "kubernetes"
claims = { "kubernetes.io" = { namespace = "nobody" } }
"#;

#[test]
fn policy_explain_names_the_rule_that_decided_and_tests_report_unexercised_rules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orders.toml"), format!("{POLICY}{DENY}")).unwrap();
    let denied_case = |rule: &str| {
        format!(
            "{TESTS}\n[[case]]\nname = \"writes are denied\"\nissuer = \"kubernetes\"\n\
             claims = {{ \"kubernetes.io\" = {{ namespace = \"orders\" }} }}\n\
             request = {{ task = \"t\", rights = [{{ resource = \"orders/1\", operations = [\"write\"] }}], services = [\"orders-api\"] }}\n\
             expect = \"deny\"\ndenied_by = \"{rule}\"\n"
        )
    };
    std::fs::write(
        dir.path().join("orders.test.toml"),
        denied_case("no-order-writes"),
    )
    .unwrap();
    let claims = r#"{"kubernetes.io": {"namespace": "orders"}}"#;
    let writes = r#"{"task": "t", "rights": [{"resource": "orders/1", "operations": ["write"]}], "services": ["orders-api"]}"#;
    let explain = |claims: &str, request: &str, extra: &[&str]| {
        let mut args = vec![
            "policy",
            "explain",
            ".",
            "--issuer",
            "kubernetes",
            "--claims",
            claims,
            "--request",
            request,
        ];
        args.extend_from_slice(extra);
        writ(dir.path(), &args)
    };
    let denied = explain(claims, writes, &[]);
    assert_eq!(denied.status.code(), Some(1), "{denied:?}");
    let text = stdout(&denied);
    assert!(text.starts_with("refused (denied): deny rule"), "{text}");
    assert!(
        text.contains("no-order-writes (./orders.toml:11): FIRES on write orders/1"),
        "{text}"
    );
    assert!(text.contains("reader (./orders.toml:2): refuses"), "{text}");

    let reads = writes.replace("write", "read");
    let allowed = explain(claims, &reads, &["--json"]);
    assert!(allowed.status.success(), "{allowed:?}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&allowed)).unwrap();
    assert_eq!(json["decision"], "allow");
    assert_eq!(json["policy"], "reader");

    let other_ns = r#"{"kubernetes.io": {"namespace": "billing"}}"#;
    let unmatched = explain(other_ns, &reads, &[]);
    assert!(
        stdout(&unmatched).contains("claim \"kubernetes.io/namespace\" does not match"),
        "{}",
        stdout(&unmatched)
    );
    let malformed = explain("[1]", &reads, &[]);
    assert_eq!(malformed.status.code(), Some(2), "{malformed:?}");
    let bad_instant = explain(claims, &reads, &["--at", "yesterday"]);
    assert_eq!(bad_instant.status.code(), Some(2), "{bad_instant:?}");
    assert!(
        String::from_utf8_lossy(&bad_instant.stderr).contains("is not an RFC 3339 instant"),
        "{bad_instant:?}"
    );

    // The tests pass, but the deny rule that never fires is reported, and fails the run when
    // coverage is required.
    let run = writ(dir.path(), &["policy", "test", "."]);
    assert!(run.status.success(), "{}", stdout(&run));
    assert!(
        stdout(&run).contains("not exercised by any case: never-fires (./orders.toml:"),
        "{}",
        stdout(&run)
    );
    assert!(!stdout(&run).contains("not exercised by any case: reader"));
    let strict = writ(dir.path(), &["policy", "test", ".", "--require-coverage"]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(!stdout(&run).contains("not exercised by any case: no-order-writes"));

    std::fs::write(
        dir.path().join("orders.test.toml"),
        denied_case("never-fires"),
    )
    .unwrap();
    let wrong_rule = writ(dir.path(), &["policy", "test", "."]);
    assert_eq!(wrong_rule.status.code(), Some(1));
    assert!(
        stdout(&wrong_rule).contains(
            "expected deny rule \"never-fires\" to refuse it, but it is refused (denied by \"no-order-writes\")"
        ),
        "{}",
        stdout(&wrong_rule)
    );

    // A failing case prints the explanation of its decision.
    std::fs::write(
        dir.path().join("orders.test.toml"),
        TESTS.replace("expect = \"allow\"", "expect = \"deny\""),
    )
    .unwrap();
    let failing = writ(dir.path(), &["policy", "test", "."]);
    assert!(
        stdout(&failing).contains("reader (./orders.toml:2): grants all of it"),
        "{}",
        stdout(&failing)
    );
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for command in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["request", "--help"],
        vec!["inspect", "--help"],
        vec!["attenuate", "--help"],
        vec!["verify", "--help"],
        vec!["aws-credentials", "--help"],
        vec!["exchange", "vault", "--help"],
        vec!["exchange", "aws", "--help"],
        vec!["keys", "rotate", "--help"],
        vec!["keys", "list", "--help"],
        vec!["policy", "test", "--help"],
        vec!["policy", "check", "--help"],
        vec!["policy", "explain", "--help"],
        vec!["policy", "status", "--help"],
        vec!["dev", "token", "--help"],
        vec!["admin", "bootstrap", "--help"],
        vec!["admin", "revoke", "--help"],
        vec!["admin", "lift", "--help"],
        vec!["admin", "grant", "--help"],
        vec!["audit", "verify", "--help"],
    ] {
        let output = writ(dir.path(), &command);
        assert!(output.status.success(), "{command:?}");
        assert!(stdout(&output).contains("Usage: writ"), "{command:?}");
    }
}

/// The admin commands against a running broker: bootstrap from the key directory and database,
/// grant an auditor, suspend and lift an agent, rotate keys (audited), verify the chain.
// Several threads: the commands block this test's thread while the broker answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_and_audit_commands_work_against_a_running_broker() {
    let broker = TestBroker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_dir = broker.key_dir();
    let key_dir = key_dir.to_str().unwrap();
    let files = [
        "--database-url",
        broker.database_url.as_str(),
        "--key-dir",
        key_dir,
    ];

    let refused = writ(
        dir.path(),
        &[
            &["admin", "bootstrap", "--principal", "bad name"][..],
            &files,
        ]
        .concat(),
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--principal"));
    let bootstrap = writ(
        dir.path(),
        &[
            &["admin", "bootstrap", "--principal", "alice@example.com"][..],
            &files,
        ]
        .concat(),
    );
    assert!(bootstrap.status.success(), "{bootstrap:?}");
    let admin = stdout(&bootstrap).trim().to_owned();
    assert!(String::from_utf8_lossy(&bootstrap.stderr).contains("recorded in the audit log"));

    let call = |args: &[&str], token: &str| {
        Command::new(WRIT)
            .current_dir(dir.path())
            .args(args)
            .args(["--broker", &broker.url])
            .env("WRIT_ADMIN_TOKEN", token)
            .output()
            .unwrap()
    };
    let grant = call(
        &["admin", "grant", "--principal", "eve", "--role", "auditor"],
        &admin,
    );
    assert!(grant.status.success(), "{grant:?}");
    let auditor = stdout(&grant).trim().to_owned();
    let not_admin = call(
        &[
            "admin",
            "revoke",
            "--agent",
            "k8s:orders/report-bot",
            "--reason",
            "r",
        ],
        &auditor,
    );
    assert!(!not_admin.status.success());
    assert!(String::from_utf8_lossy(&not_admin.stderr).contains("admin_role_missing"));

    let suspend = call(
        &[
            "admin",
            "revoke",
            "--agent",
            "k8s:orders/report-bot",
            "--reason",
            "suspected",
        ],
        &admin,
    );
    assert!(suspend.status.success(), "{suspend:?}");
    let answer: Value = serde_json::from_str(&stdout(&suspend)).unwrap();
    assert_eq!(answer["suspended"], true);
    let refused = broker
        .request(&broker.orders_identity(), &orders_request())
        .await;
    assert_eq!(refused.status(), 403);
    let lift = call(
        &[
            "admin",
            "lift",
            "--agent",
            "k8s:orders/report-bot",
            "--reason",
            "ok",
        ],
        &admin,
    );
    assert!(lift.status.success(), "{lift:?}");
    assert_eq!(
        broker
            .request(&broker.orders_identity(), &orders_request())
            .await
            .status(),
        201
    );

    let rotated = writ(
        dir.path(),
        &[
            "keys",
            "rotate",
            "--key-dir",
            key_dir,
            "--database-url",
            &broker.database_url,
        ],
    );
    assert!(rotated.status.success(), "{rotated:?}");
    let rotations = broker
        .admin_get_json("/v1/audit?action=keys.rotated", &auditor)
        .await;
    assert_eq!(
        rotations["events"][0]["details"]
            .as_str()
            .map(|d| d.contains("\"kid\":2")),
        Some(true)
    );

    let verified = writ(dir.path(), &[&["audit", "verify"][..], &files].concat());
    assert!(verified.status.success(), "{verified:?}");
    assert!(stdout(&verified).contains("audit chain intact"));
    broker.stop().await;
}

/// The commands that read the broker's database never create one: a mistyped path is an error,
/// not a new empty database.
#[test]
fn admin_and_audit_commands_refuse_a_database_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let database_url = format!("sqlite://{}", missing.display());
    let key_dir = dir.path().join("keys");
    let key_dir = key_dir.to_str().unwrap();
    let bootstrap = writ(
        dir.path(),
        &[
            "admin",
            "bootstrap",
            "--principal",
            "p",
            "--database-url",
            &database_url,
            "--key-dir",
            key_dir,
        ],
    );
    let verify = writ(
        dir.path(),
        &["audit", "verify", "--database-url", &database_url],
    );
    for output in [bootstrap, verify] {
        assert!(!output.status.success(), "{output:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("database"),
            "{output:?}"
        );
    }
    assert!(!missing.exists(), "no database was created");
    assert!(
        !dir.path().join("keys").exists(),
        "no key directory was created"
    );
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

/// A dev broker in a fresh directory, with one writ for `orders/*` read (answers the directory,
/// the broker and the writ).
/// A refusal asked for with `--json` is the broker's problem document on stdout, as a writ is.
#[test]
fn a_json_request_prints_its_refusal_as_json() {
    let (dir, server, _) = dev_broker_with_a_writ();
    let refused = writ(
        dir.path(),
        &[
            "request",
            "--broker",
            &server.url,
            "--identity-file",
            "identity.jwt",
            "--task",
            "demo",
            "--right",
            "billing/1:read",
            "--service",
            "orders-api",
            "--json",
        ],
    );
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let problem: serde_json::Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(problem["type"], "urn:writ:problem:policy_refused");
    assert_eq!(problem["refused_rights"][0]["resource"], "billing/1");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refused (403"));
}

fn dev_broker_with_a_writ() -> (tempfile::TempDir, ServeProcess, String) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(dir.path(), "serve", &["--dev", "--listen", "127.0.0.1:0"]);
    let token = writ(dir.path(), &["dev", "token", "--subject", "demo-agent"]);
    assert!(token.status.success(), "{token:?}");
    std::fs::write(dir.path().join("identity.jwt"), &token.stdout).unwrap();
    let request = writ(
        dir.path(),
        &[
            "request",
            "--broker",
            &server.url,
            "--identity-file",
            "identity.jwt",
            "--task",
            "demo",
            "--right",
            "orders/*:read",
            "--service",
            "orders-api",
        ],
    );
    assert!(request.status.success(), "{request:?}");
    let writ_text = stdout(&request);
    (dir, server, writ_text)
}

fn verify_read(dir: &Path, broker: &str, writ_text: &str, extra: &[&str]) -> Output {
    let args = [
        &[
            "verify",
            "--broker",
            broker,
            "--audience",
            "orders-api",
            "--resource",
            "orders/42",
            "--operation",
            "read",
        ][..],
        extra,
        &["-"],
    ]
    .concat();
    writ_stdin(dir, &args, writ_text)
}

/// `writ verify` follows the broker's revocation feed unless told not to, and says which.
#[test]
fn verify_refuses_a_revoked_writ_and_says_whether_it_checked() {
    let (dir, server, writ_text) = dev_broker_with_a_writ();
    let granted = verify_read(dir.path(), &server.url, &writ_text, &[]);
    assert!(granted.status.success(), "{granted:?}");
    assert!(
        stdout(&granted).contains(&format!(
            "revocation: checked against the feed of {}",
            server.url
        )),
        "{}",
        stdout(&granted)
    );

    let admin = writ(dir.path(), &["admin", "bootstrap", "--principal", "alice"]);
    assert!(admin.status.success(), "{admin:?}");
    let revoke = command(dir.path())
        .args([
            "admin",
            "revoke",
            "--broker",
            &server.url,
            "--writ",
            "-",
            "--reason",
            "leaked",
        ])
        .env("WRIT_ADMIN_TOKEN", stdout(&admin))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let revoke = {
        let mut revoke = revoke;
        revoke
            .stdin
            .take()
            .unwrap()
            .write_all(writ_text.as_bytes())
            .unwrap();
        revoke.wait_with_output().unwrap()
    };
    assert!(revoke.status.success(), "{revoke:?}");

    let denied = verify_read(dir.path(), &server.url, &writ_text, &[]);
    assert_eq!(denied.status.code(), Some(1), "{denied:?}");
    assert!(
        stdout(&denied).starts_with("denied (revoked)"),
        "{}",
        stdout(&denied)
    );
    let unchecked = verify_read(dir.path(), &server.url, &writ_text, &["--no-revocation"]);
    assert!(unchecked.status.success(), "{unchecked:?}");
    assert!(
        stdout(&unchecked).contains("revocation: NOT checked"),
        "{}",
        stdout(&unchecked)
    );
}

/// No broker at the URL: the cause is kept, and the way out is named.
#[test]
fn commands_name_the_cause_when_no_broker_answers() {
    let dir = tempfile::tempdir().unwrap();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    std::fs::write(dir.path().join("identity.jwt"), "x.y.z").unwrap();
    let request = writ(
        dir.path(),
        &[
            "request",
            "--broker",
            &closed,
            "--identity-file",
            "identity.jwt",
            "--task",
            "t",
            "--right",
            "orders/1:read",
            "--service",
            "orders-api",
        ],
    );
    let verify = verify_read(dir.path(), &closed, "writ", &["--no-revocation"]);
    let revoke = command(dir.path())
        .args([
            "admin", "revoke", "--broker", &closed, "--task", "t", "--reason", "r",
        ])
        .env("WRIT_ADMIN_TOKEN", "token")
        .output()
        .unwrap();
    std::fs::write(dir.path().join("writ"), "writ").unwrap();
    let aws = writ(
        dir.path(),
        &[
            "aws-credentials",
            "--broker",
            &closed,
            "--role",
            "reports",
            "--writ-file",
            "writ",
        ],
    );
    let vault = writ(
        dir.path(),
        &[
            "exchange",
            "vault",
            "orders-db",
            "--broker",
            &closed,
            "--writ-file",
            "writ",
        ],
    );
    for output in [request, verify, revoke, aws, vault] {
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        assert!(output.stdout.is_empty(), "{output:?}");
        let text = stderr(&output);
        assert!(text.contains("Connection refused"), "{text}");
        assert!(
            text.contains("writ serve") && text.contains("--broker"),
            "{text}"
        );
    }
}

#[test]
fn admin_calls_say_when_the_admin_writ_is_missing_or_empty() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["admin", "revoke", "--task", "t", "--reason", "r"];
    let missing = writ(dir.path(), &args);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("WRIT_ADMIN_TOKEN"),
        "{}",
        stderr(&missing)
    );
    // What `export WRIT_ADMIN_TOKEN=$(writ admin bootstrap …)` leaves when the bootstrap failed.
    let empty = command(dir.path())
        .args(args)
        .env("WRIT_ADMIN_TOKEN", "")
        .output()
        .unwrap();
    assert_eq!(empty.status.code(), Some(1));
    assert!(stderr(&empty).contains("is empty"), "{}", stderr(&empty));
    assert!(!stderr(&empty).contains("Bearer"), "{}", stderr(&empty));
}

/// A dev token made outside a broker's key directory would carry a key no broker knows.
#[test]
fn dev_token_refuses_to_make_a_key_outside_a_broker_key_directory() {
    let dir = tempfile::tempdir().unwrap();
    let output = writ(dir.path(), &["dev", "token", "--subject", "demo-agent"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("writ-data/keys")
            && text.contains("writ serve --dev")
            && text.contains("--key-dir"),
        "{text}"
    );
    assert!(!dir.path().join("writ-data").exists(), "no key was made");
}

#[test]
fn serve_names_the_way_to_another_port_when_its_own_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = writ(dir.path(), &["serve", "--dev", "--listen", &address]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains(&address)
            && text.contains("--listen")
            && text.contains("WRIT_LISTEN")
            && text.contains("WRIT_BROKER_URL"),
        "{text}"
    );
}

#[test]
fn a_duration_written_as_a_number_is_answered_with_its_spelling() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("writ.toml"), "dev = true\nmax_ttl = 600\n").unwrap();
    let output = writ(dir.path(), &["serve", "--config", "writ.toml"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("write \"10m\""),
        "{}",
        stderr(&output)
    );
}

#[test]
fn policy_check_of_a_directory_without_policies_fails() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["check", "test"] {
        let output = writ(dir.path(), &["policy", command, "."]);
        assert_eq!(output.status.code(), Some(1), "{command}");
        assert!(
            stderr(&output).contains("no policies in ."),
            "{}",
            stderr(&output)
        );
    }
    let no_directory = writ(dir.path(), &["policy", "check"]);
    assert_eq!(no_directory.status.code(), Some(1));
    assert!(
        stderr(&no_directory).contains("WRIT_POLICY_DIR"),
        "{}",
        stderr(&no_directory)
    );
}

/// Attenuating to what the writ never granted would make a writ that grants nothing.
#[test]
fn attenuate_refuses_a_result_that_grants_nothing() {
    let (dir, _server, writ_text) = dev_broker_with_a_writ();
    for (args, says) in [
        (&["--resource", "billing/1"][..], "would grant nothing"),
        (&["--operation", "write"][..], "would grant nothing"),
        (
            &["--resource", "orders/4*", "--operation", "write"][..],
            "would grant nothing",
        ),
        (&["--service", "billing-api"][..], "accepted nowhere"),
    ] {
        let output = writ_stdin(
            dir.path(),
            &[&["attenuate"][..], args, &["-"]].concat(),
            &writ_text,
        );
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&output).contains(says),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    for args in [
        &["--resource", "orders/4*"][..],
        &["--resource", "orders/42", "--operation", "read"],
    ] {
        let output = writ_stdin(
            dir.path(),
            &[&["attenuate"][..], args, &["-"]].concat(),
            &writ_text,
        );
        assert!(output.status.success(), "{args:?}: {output:?}");
    }
}

/// Output piped into a reader that has gone (`writ … | head -1`) ends the command quietly with
/// status 141, as SIGPIPE would, rather than a panic and its backtrace.
#[test]
fn a_closed_output_pipe_ends_a_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orders.toml"), POLICY).unwrap();
    let mut child = command(dir.path())
        .args(["policy", "check", "."])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reading end closes before the command has started, so its first print fails.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(141), "{stderr}");
}
