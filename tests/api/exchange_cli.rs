//! `writ aws-credentials` and `writ exchange vault` run as an agent would, against a broker with
//! real upstreams: moto for STS and IAM, OpenBao with PostgreSQL for Vault. The credentials they
//! print work; a refusal prints nothing on stdout, the problem on stderr, and exits 1.

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};
use writ::config::ExchangeConfig;
use writ::exchange::aws::AwsExchangeConfig;
use writ_testkit::Moto;

use crate::exchange_vault::{VaultFixture, exchange_writ, logs_in, orders_db_rights, private_file};
use crate::helpers::{Backend, Setup, TestBroker, writ_command, writ_with_input};

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/writ/writ-reports";

const AWS_POLICIES: &str = r#"
[[policy]]
name = "reports-exchange"
issuer = "kubernetes"
claims = { "kubernetes.io" = { namespace = "orders" } }
resources = ["aws:s3/reports-bucket/*", "orders/*"]
operations = ["read"]
services = ["orders-api", "writ-exchange"]
max_ttl = "10m"
default_ttl = "5m"
"#;

fn writ(dir: &Path, args: &[&str]) -> Output {
    writ_command(dir).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// moto with the IAM role `writ/writ-reports`, assumable by the account.
async fn moto_with_role() -> Moto {
    let moto = Moto::start().await;
    moto.create_role("/writ/", "writ-reports").await;
    moto
}

/// A broker whose AWS exchange role `reports` serves `aws:s3/reports-bucket/*` through
/// moto, with its own AWS credentials in a 0600 `credentials_file`.
async fn aws_broker(moto: &Moto) -> TestBroker {
    let endpoint = moto.endpoint();
    let mut setup = Setup::new(Backend::Sqlite);
    setup.policies = AWS_POLICIES.to_owned();
    setup.tweak = Box::new(move |config| {
        let file = private_file(
            config,
            "aws-credentials.json",
            r#"{"AccessKeyId":"AKIAIOSFODNN7EXAMPLE","SecretAccessKey":"broker-secret-key"}"#,
        );
        let aws: AwsExchangeConfig = toml::from_str(&format!(
            r#"
            region = "us-east-1"
            endpoint = "{endpoint}"
            credentials_file = "{file}"
            [[roles]]
            name = "reports"
            role_arn = "{ROLE_ARN}"
            resources = ["aws:s3/reports-bucket/*"]
            "#,
            file = file.display()
        ))
        .unwrap();
        config.exchange = ExchangeConfig {
            aws: Some(aws),
            ..ExchangeConfig::default()
        };
    });
    TestBroker::start_with(setup).await
}

/// A writ for `aws:s3/reports-bucket/2026/*` read, shown to `services`.
async fn reports_writ(broker: &TestBroker, services: &[&str]) -> String {
    let (writ, _) = broker
        .issue_writ(
            &broker.orders_identity(),
            &json!({
                "task": "monthly report",
                "rights": [{"resource": "aws:s3/reports-bucket/2026/*", "operations": ["read"]}],
                "services": services,
                "ttl": 300,
            }),
        )
        .await;
    writ
}

/// The printed answer is the `credential_process` JSON alone and its keys are a session of the
/// role; asked again from stdin, with the broker from `WRIT_BROKER_URL` and the right named, the
/// same session is answered.
// Several threads: the commands block this test's thread while the broker answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_credentials_prints_credential_process_json_whose_keys_work() {
    let moto = moto_with_role().await;
    let broker = aws_broker(&moto).await;
    let writ_text = reports_writ(&broker, &["writ-exchange"]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("writ"), format!("{writ_text}\n")).unwrap();

    let output = writ(
        dir.path(),
        &[
            "aws-credentials",
            "--broker",
            &broker.url,
            "--writ-file",
            "writ",
            "--role",
            "reports",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "", "nothing on stderr");
    let stdout = text(&output.stdout);
    let credentials: Value = serde_json::from_str(&stdout).unwrap();
    let mut keys: Vec<&str> = credentials
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "AccessKeyId",
            "Expiration",
            "SecretAccessKey",
            "SessionToken",
            "Version"
        ]
    );
    assert_eq!(credentials["Version"], 1);
    assert!(
        chrono::DateTime::parse_from_rfc3339(credentials["Expiration"].as_str().unwrap()).is_ok()
    );
    // Exactly the broker's JSON, one line.
    assert_eq!(stdout.trim_end(), credentials.to_string());
    assert_eq!(stdout.lines().count(), 1);

    let arn = moto.caller_arn(&credentials).await;
    assert!(arn.contains(":assumed-role/writ-reports/"), "{arn}");

    let again = writ_command(dir.path())
        .env("WRIT_BROKER_URL", &broker.url)
        .args([
            "aws-credentials",
            "--role",
            "reports",
            "--right",
            "aws:s3/reports-bucket/2026/*:read",
            "--writ-file",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(writ_text.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let repeated: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(repeated["AccessKeyId"], credentials["AccessKeyId"]);
    broker.stop().await;
}

/// A writ not shown to the exchange service, a right it does not grant, a file that cannot be a
/// writ: exit 1, nothing on stdout, the problem (type, detail, denial) on stderr, and neither
/// the writ nor a credential anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_credentials_refused_prints_the_problem_on_stderr_only() {
    let moto = moto_with_role().await;
    let broker = aws_broker(&moto).await;
    let dir = tempfile::tempdir().unwrap();
    let not_for_exchange = reports_writ(&broker, &["orders-api"]).await;
    std::fs::write(dir.path().join("writ"), &not_for_exchange).unwrap();

    let refused = writ(
        dir.path(),
        &[
            "aws-credentials",
            "--broker",
            &broker.url,
            "--writ-file",
            "writ",
            "--role",
            "reports",
        ],
    );
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(refused.stdout.is_empty(), "{}", text(&refused.stdout));
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("refused (403"), "{stderr}");
    assert!(
        stderr.contains("type: urn:writ:problem:exchange_not_granted"),
        "{stderr}"
    );
    assert!(stderr.contains("denial: wrong_audience"), "{stderr}");
    assert!(stderr.contains("writ-exchange"), "{stderr}");
    assert!(!stderr.contains(&not_for_exchange), "{stderr}");

    // A right the writ does not grant, the writ from stdin.
    let granted = reports_writ(&broker, &["writ-exchange"]).await;
    let outside = writ_with_input(
        dir.path(),
        &[
            "aws-credentials",
            "--broker",
            &broker.url,
            "--writ-file",
            "-",
            "--role",
            "reports",
            "--right",
            "aws:s3/reports-bucket/2027/*:read",
        ],
        &granted,
    );
    assert_eq!(outside.status.code(), Some(1), "{outside:?}");
    assert!(outside.stdout.is_empty(), "{}", text(&outside.stdout));
    let stderr = text(&outside.stderr);
    assert!(
        stderr.contains("type: urn:writ:problem:exchange_not_granted"),
        "{stderr}"
    );
    assert!(stderr.contains("denial: not_permitted"), "{stderr}");
    assert!(!stderr.contains(&granted), "{stderr}");

    // Not a writ at all: the broker's 401, then a file too large to be one (not sent).
    std::fs::write(dir.path().join("garbage"), "not-a-writ").unwrap();
    std::fs::write(dir.path().join("large"), "a".repeat(16 * 1024 + 1)).unwrap();
    for (file, expected) in [
        ("garbage", "type: urn:writ:problem:writ_refused"),
        ("large", "more than 16384 bytes"),
    ] {
        let output = writ(
            dir.path(),
            &[
                "aws-credentials",
                "--broker",
                &broker.url,
                "--writ-file",
                file,
                "--role",
                "reports",
            ],
        );
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("aaaaaaaa"), "the file is not echoed");
    }
    // Nothing reached STS.
    assert!(moto.recorded_action("AssumeRole").await.is_empty());
    broker.stop().await;
}

/// `writ exchange vault NAME` with the writ on stdin prints a database login that works; an
/// unknown role is refused with the problem on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_vault_prints_a_working_database_login() {
    let fixture = VaultFixture::start().await;
    let broker = TestBroker::start_with(fixture.setup(Backend::Sqlite)).await;
    let (writ_text, _) = exchange_writ(&broker, orders_db_rights()).await;
    let dir = tempfile::tempdir().unwrap();

    let output = writ_with_input(
        dir.path(),
        &[
            "exchange",
            "vault",
            "orders-db",
            "--broker",
            &broker.url,
            "--writ-file",
            "-",
        ],
        &writ_text,
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let credential: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        credential["exchange_id"]
            .as_str()
            .unwrap()
            .starts_with("ex_")
    );
    assert!(logs_in(&fixture, &credential).await, "the login works");
    let stderr = text(&output.stderr);
    let password = credential["data"]["password"].as_str().unwrap();
    assert!(
        !stderr.contains(password) && !stderr.contains(&writ_text),
        "{stderr}"
    );

    std::fs::write(dir.path().join("writ"), &writ_text).unwrap();
    let unknown = writ(
        dir.path(),
        &[
            "exchange",
            "vault",
            "no-such-role",
            "--broker",
            &broker.url,
            "--writ-file",
            "writ",
        ],
    );
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
    assert!(unknown.stdout.is_empty(), "{}", text(&unknown.stdout));
    let stderr = text(&unknown.stderr);
    assert!(
        stderr.contains("type: urn:writ:problem:exchange_role_unknown"),
        "{stderr}"
    );
    broker.stop().await;
}
