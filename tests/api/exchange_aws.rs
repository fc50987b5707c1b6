//! `POST /v1/exchange/aws` against a real STS and IAM emulator (moto) on loopback: what reaches
//! STS is the writ's scope and nothing more, the keys work, one exchange per writ and role, a
//! revocation writes the deny statement on the role, and STS out of reach answers 503.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use writ::exchange::aws::AwsExchangeConfig;
use writ_testkit::Moto;
use writ_verify::{Attenuation, ResourcePattern, attenuate};

use crate::exchange_vault::private_file;
use crate::helpers::{Backend, Setup, TestBroker, client, problem_type};

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/writ/writ-reports";
const ROLE_NAME: &str = "writ-reports";

const POLICIES: &str = r#"
[[policy]]
name = "reports"
issuer = "kubernetes"
claims = { "kubernetes.io" = { namespace = "orders" } }
resources = ["aws:s3/reports-bucket/*", "orders/*"]
operations = ["read", "list"]
services = ["writ-exchange", "orders-api"]
max_ttl = "10m"
default_ttl = "5m"
"#;

/// moto with the role the broker assumes.
async fn moto_with_role() -> Moto {
    let moto = Moto::start().await;
    moto.create_role("/writ/", ROLE_NAME).await;
    moto
}

fn setup(moto: &Moto) -> Setup {
    let endpoint = moto.endpoint();
    let mut setup = Setup::new(Backend::Sqlite);
    setup.policies = POLICIES.to_owned();
    setup.tweak = Box::new(move |config| {
        let credentials = private_file(
            config,
            "aws-credentials.json",
            r#"{"Version": 1, "AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": "broker-secret"}"#,
        );
        let aws: AwsExchangeConfig = toml::from_str(&format!(
            r#"
            region = "us-east-1"
            endpoint = "{endpoint}"
            credentials_file = "{}"
            [[roles]]
            name = "reports"
            role_arn = "{ROLE_ARN}"
            resources = ["aws:s3/reports-bucket/*"]
            "#,
            credentials.display()
        ))
        .unwrap();
        config.exchange.aws = Some(aws);
    });
    setup
}

async fn writ_for(broker: &TestBroker, rights: Value) -> (String, String, Value) {
    let answer = broker
        .issue(
            &broker.orders_identity(),
            &json!({"task": "quarterly report", "rights": rights, "services": ["writ-exchange"], "ttl": 300}),
        )
        .await;
    let text = |member: &str| answer[member].as_str().unwrap().to_owned();
    (text("writ"), text("writ_id"), answer)
}

async fn exchange(broker: &TestBroker, writ: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/v1/exchange/aws", broker.url))
        .bearer_auth(writ)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_writ_becomes_an_sts_session_scoped_to_it() {
    let moto = moto_with_role().await;
    let broker = TestBroker::start_with(setup(&moto)).await;
    let (writ, writ_id, issued) = writ_for(
        &broker,
        json!([{"resource": "aws:s3/reports-bucket/2026/*", "operations": ["read", "list"]},
               {"resource": "orders/42", "operations": ["read"]}]),
    )
    .await;

    let response = exchange(&broker, &writ, &json!({"role": "reports"})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let credential: Value = response.json().await.unwrap();
    let members: Vec<&String> = credential.as_object().unwrap().keys().collect();
    assert_eq!(
        members,
        [
            "AccessKeyId",
            "Expiration",
            "SecretAccessKey",
            "SessionToken",
            "Version"
        ]
    );
    assert_eq!(credential["Version"], 1);
    // The agent is told the writ's end, not STS's 15 minutes.
    assert_eq!(credential["Expiration"], issued["expires_at"]);
    assert!(
        moto.caller_arn(&credential)
            .await
            .starts_with("arn:aws:sts::123456789012:assumed-role/writ-reports/"),
    );

    // What reached STS: the writ's rights within the role, until the writ's end.
    let assumed = moto.recorded_action("AssumeRole").await;
    assert_eq!(assumed.len(), 1);
    let call = &assumed[0];
    assert_eq!(call.field("RoleArn").unwrap(), ROLE_ARN);
    assert_eq!(call.field("DurationSeconds").unwrap(), "900");
    let session_name = call.field("RoleSessionName").unwrap();
    assert!(
        session_name.starts_with("quarterly_report-h"),
        "{session_name}"
    );
    let source = call.field("SourceIdentity").unwrap();
    assert!(source.starts_with("k8s_orders_report-bot-h"), "{source}");
    let tags: Vec<(String, String)> = (1..=3)
        .map(|i| {
            (
                call.field(&format!("Tags.member.{i}.Key")).unwrap(),
                call.field(&format!("Tags.member.{i}.Value")).unwrap(),
            )
        })
        .collect();
    assert!(
        tags.contains(&("writ-id".into(), writ_id.clone())),
        "{tags:?}"
    );
    let policy: Value = serde_json::from_str(&call.field("Policy").unwrap()).unwrap();
    let text = policy.to_string();
    assert!(
        text.contains("arn:aws:s3:::reports-bucket/2026/*"),
        "{text}"
    );
    assert!(text.contains("s3:ListBucket"), "{text}");
    assert!(
        !text.contains("orders"),
        "rights outside the role stay out: {text}"
    );
    for statement in policy["Statement"].as_array().unwrap() {
        assert_eq!(
            statement["Condition"]["DateLessThan"]["aws:CurrentTime"], issued["expires_at"],
            "{statement}"
        );
    }

    // Asked again: the same session, STS not called again.
    let again: Value = exchange(&broker, &writ, &json!({"role": "reports"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["AccessKeyId"], credential["AccessKeyId"]);
    assert_eq!(moto.recorded_action("AssumeRole").await.len(), 1);
    // Another scope for the same writ and role: refused, one exchange per writ and role.
    let narrower = json!({"role": "reports", "rights": [{"resource": "aws:s3/reports-bucket/2026/q1/*", "operations": ["read"]}]});
    assert_eq!(
        problem_type(exchange(&broker, &writ, &narrower).await).await,
        (409, "urn:writ:problem:exchange_conflict".into())
    );

    // Revoking the writ denies its sessions on the role, keyed on the writ-id tag.
    let admin = broker.admin_token("admin@example.com", &["admin"]).await;
    let revoked = broker
        .admin_post(
            "/v1/revocations",
            &admin,
            &json!({"writ_id": writ_id, "reason": "leaked"}),
        )
        .await;
    assert_eq!(revoked.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(10);
    let statement = loop {
        let put = moto.recorded_action("PutRolePolicy").await;
        if let Some(call) = put.last() {
            break call.clone();
        }
        assert!(Instant::now() < deadline, "no deny statement was written");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(statement.field("RoleName").unwrap(), ROLE_NAME);
    assert_eq!(
        statement.field("PolicyName").unwrap(),
        "writ-revoked-sessions"
    );
    let document: Value =
        serde_json::from_str(&statement.field("PolicyDocument").unwrap()).unwrap();
    let deny = &document["Statement"][0];
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(
        deny["Condition"]["StringEquals"]["aws:PrincipalTag/writ-id"],
        writ_id.as_str()
    );
    broker.stop().await;
}

#[tokio::test]
async fn only_what_the_writ_still_grants_is_exchanged() {
    let moto = moto_with_role().await;
    let broker = TestBroker::start_with(setup(&moto)).await;
    let (writ, _, _) = writ_for(
        &broker,
        json!([{"resource": "aws:s3/reports-bucket/*", "operations": ["read"]}]),
    )
    .await;

    // An attenuation to one prefix: the session policy names only it.
    let narrowed = attenuate(
        &writ,
        &Attenuation {
            resources: Some(vec![
                ResourcePattern::parse("aws:s3/reports-bucket/2026/q1/*").unwrap(),
            ]),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let asked = json!({"role": "reports", "rights": [{"resource": "aws:s3/reports-bucket/2026/q1/*", "operations": ["read"]}]});
    let response = exchange(&broker, &narrowed, &asked).await;
    assert_eq!(response.status(), 200);
    let call = moto.recorded_action("AssumeRole").await.pop().unwrap();
    let policy = call.field("Policy").unwrap();
    assert!(policy.contains("reports-bucket/2026/q1/*"), "{policy}");
    assert!(!policy.contains("reports-bucket/*\""), "{policy}");

    // Wider than the attenuation, an operation the writ lacks, outside the role: refused.
    let (fresh, _, _) = writ_for(
        &broker,
        json!([{"resource": "aws:s3/reports-bucket/2026/*", "operations": ["read"]}, {"resource": "orders/42", "operations": ["read"]}]),
    )
    .await;
    for (body, status, problem) in [
        (
            json!({"role": "reports", "rights": [{"resource": "aws:s3/reports-bucket/*", "operations": ["read"]}]}),
            403,
            "exchange_not_granted",
        ),
        (
            json!({"role": "reports", "rights": [{"resource": "aws:s3/reports-bucket/2026/*", "operations": ["list"]}]}),
            403,
            "exchange_not_granted",
        ),
        (
            json!({"role": "reports", "rights": [{"resource": "orders/42", "operations": ["read"]}]}),
            400,
            "exchange_scope_invalid",
        ),
        (json!({"role": "nope"}), 404, "exchange_role_unknown"),
        (
            json!({"role": "reports", "extra": 1}),
            400,
            "invalid_request",
        ),
    ] {
        assert_eq!(
            problem_type(exchange(&broker, &fresh, &body).await).await,
            (status, format!("urn:writ:problem:{problem}")),
            "{body}"
        );
    }
    // A writ with nothing for the role.
    let (orders_only, _, _) = writ_for(
        &broker,
        json!([{"resource": "orders/42", "operations": ["read"]}]),
    )
    .await;
    assert_eq!(
        problem_type(exchange(&broker, &orders_only, &json!({"role": "reports"})).await).await,
        (403, "urn:writ:problem:exchange_not_granted".into())
    );
    // Only the one granted exchange reached STS.
    assert_eq!(moto.recorded_action("AssumeRole").await.len(), 1);
    broker.stop().await;
}

#[tokio::test]
async fn sts_out_of_reach_answers_503_and_records_nothing() {
    let mut moto = moto_with_role().await;
    let broker = TestBroker::start_with(setup(&moto)).await;
    let (writ, _, _) = writ_for(
        &broker,
        json!([{"resource": "aws:s3/reports-bucket/2026/*", "operations": ["read"]}]),
    )
    .await;
    moto.kill();
    let started = Instant::now();
    assert_eq!(
        problem_type(exchange(&broker, &writ, &json!({"role": "reports"})).await).await,
        (503, "urn:writ:problem:exchange_upstream_unavailable".into())
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    let recorded = crate::helpers::count(
        &broker.database_url,
        "SELECT COUNT(*) AS count FROM exchanges",
    )
    .await;
    assert_eq!(recorded, 0);
    broker.stop().await;
}

/// A token of anyone's making that decodes like a writ names nobody in the audit log, whatever
/// refuses it (here the scope, checked before the writ is verified): such refusals are counted.
#[tokio::test]
async fn a_forged_writ_never_names_an_agent_in_the_audit_log() {
    let moto = moto_with_role().await;
    let broker = TestBroker::start_with(setup(&moto)).await;
    let forger = writ_verify::biscuit_auth::KeyPair::new();
    let forged = writ_verify::biscuit_auth::Biscuit::builder()
        .code(
            r#"writ(1); writ_id("wr_forged"); agent("k8s:prod/payments-admin");
               task("exfiltrate"); service("writ-exchange");"#,
        )
        .unwrap()
        .root_key_id(1)
        .build(&forger)
        .unwrap()
        .to_base64()
        .unwrap();
    for body in [
        json!({"role": "reports", "rights": [{"resource": "aws:s3/other-bucket/x", "operations": ["read"]}]}),
        json!({"role": "reports"}),
        json!({"role": "nope"}),
    ] {
        let (status, _) = problem_type(exchange(&broker, &forged, &body).await).await;
        assert!([400, 401, 404].contains(&status), "{body}: {status}");
    }
    let auditor = broker
        .admin_token("auditor@example.com", &["auditor"])
        .await;
    let named = broker
        .admin_get_json("/v1/audit?writ_id=wr_forged", &auditor)
        .await;
    assert_eq!(named["events"].as_array().unwrap().len(), 0, "{named:#}");
    let by_agent = broker
        .admin_get_json("/v1/audit?agent=k8s:prod/payments-admin", &auditor)
        .await;
    assert_eq!(
        by_agent["events"].as_array().unwrap().len(),
        0,
        "{by_agent:#}"
    );
    broker.stop().await;
}
