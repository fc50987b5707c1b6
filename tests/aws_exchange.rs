//! The AWS exchange against a real moto server on loopback (STS and IAM): what reaches STS,
//! that the issued keys work, deny statements written and pruned, and STS out of reach.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use writ::exchange::aws::{
    AssumeRequest, AwsExchange, AwsExchangeConfig, AwsExchangeError, BrokerAwsCredentials,
    DenyDocument, ROLE_POLICY_NAME, ScopeError, names,
};
use writ_testkit::Moto;
use writ_verify::ResourcePattern;

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/writ/writ-reports";
const ROLE_NAME: &str = "writ-reports";

fn config(endpoint: &str) -> AwsExchangeConfig {
    let config: AwsExchangeConfig = toml::from_str(&format!(
        r#"
        region = "us-east-1"
        endpoint = "{endpoint}"
        [[roles]]
        name = "reports"
        role_arn = "{ROLE_ARN}"
        resources = ["aws:s3/reports-bucket/2026/*", "aws:s3/logs-bucket/app.log"]
        "#
    ))
    .unwrap();
    config.validate().unwrap();
    config
}

fn broker_credentials() -> BrokerAwsCredentials {
    BrokerAwsCredentials::new("AKIAIOSFODNN7EXAMPLE", "broker-secret-key", None)
}

/// moto with the role created.
async fn moto_with_role() -> Moto {
    let moto = Moto::start().await;
    moto.create_role("/writ/", ROLE_NAME).await;
    moto
}

fn right(resource: &str, operation: &str) -> (ResourcePattern, String) {
    (
        ResourcePattern::parse(resource).unwrap(),
        operation.to_owned(),
    )
}

/// A writ's expiry `seconds` from now, in whole seconds as writs carry it.
fn expires_in(seconds: u64) -> SystemTime {
    let now = writ::time::unix(SystemTime::now());
    SystemTime::UNIX_EPOCH + Duration::from_secs(now + seconds)
}

fn request(task: &str, agent: &str, expires_at: SystemTime) -> AssumeRequest {
    AssumeRequest {
        writ_id: "wr_01JTESTWRIT".into(),
        task: task.into(),
        agent: agent.into(),
        rights: vec![
            right("aws:s3/reports-bucket/2026/*", "read"),
            right("aws:s3/reports-bucket/*", "list"),
            right("aws:s3/logs-bucket/*", "read"),
            right("orders/42", "write"),
        ],
        writ_expires_at: expires_at,
    }
}

/// The deny policy as stored in moto (percent-decoded), or `None`.
async fn stored_denies(moto: &Moto) -> Option<Value> {
    match moto
        .iam()
        .get_role_policy()
        .role_name(ROLE_NAME)
        .policy_name(ROLE_POLICY_NAME)
        .send()
        .await
    {
        Ok(answer) => {
            let text = percent_encoding::percent_decode_str(&answer.policy_document)
                .decode_utf8()
                .unwrap()
                .into_owned();
            Some(serde_json::from_str(&text).unwrap())
        }
        Err(error) => {
            assert!(
                error
                    .as_service_error()
                    .is_some_and(|e| e.is_no_such_entity_exception()),
                "{error:?}"
            );
            None
        }
    }
}

#[tokio::test]
async fn assume_role_sends_exactly_the_scoped_request_and_the_keys_work() {
    let moto = moto_with_role().await;
    let exchange = AwsExchange::new(&config(&moto.endpoint()), broker_credentials());
    let expires_at = expires_in(300);
    let task = "nightly report\n🦀 for ${aws:username}";
    let agent = "spiffe://prod/ns/reports/sa/agent";
    let issued = exchange
        .assume("reports", &request(task, agent, expires_at))
        .await
        .unwrap();

    let until = writ::time::rfc3339(writ::time::unix_seconds(expires_at));
    let expected_policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                "Resource": ["arn:aws:s3:::logs-bucket/app.log", "arn:aws:s3:::reports-bucket/2026/*"],
                "Condition": { "DateLessThan": { "aws:CurrentTime": until } },
            },
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": ["arn:aws:s3:::reports-bucket"],
                "Condition": {
                    "DateLessThan": { "aws:CurrentTime": until },
                    "StringLike": { "s3:prefix": ["2026/*"] },
                },
            },
        ]
    });
    let session_name = names::role_session_name(task);
    let source_identity = names::source_identity(agent);
    assert!(
        session_name.starts_with("nightly_report__"),
        "{session_name}"
    );
    assert_eq!(source_identity, names::source_identity(agent));

    let recorded = moto.recorded_action("AssumeRole").await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let form: BTreeMap<String, String> = recorded[0].form().into_iter().collect();
    let sent_policy: Value = serde_json::from_str(&form["Policy"]).unwrap();
    assert_eq!(sent_policy, expected_policy);
    let expected: BTreeMap<String, String> = [
        ("Action", "AssumeRole".to_owned()),
        ("Version", "2011-06-15".to_owned()),
        ("RoleArn", ROLE_ARN.to_owned()),
        ("RoleSessionName", session_name.clone()),
        ("Policy", form["Policy"].clone()),
        ("DurationSeconds", "900".to_owned()),
        ("SourceIdentity", source_identity.clone()),
        ("Tags.member.1.Key", "writ-id".to_owned()),
        ("Tags.member.1.Value", "wr_01JTESTWRIT".to_owned()),
        ("Tags.member.2.Key", "writ-task".to_owned()),
        ("Tags.member.2.Value", names::tag_value(task)),
        ("Tags.member.3.Key", "writ-agent".to_owned()),
        ("Tags.member.3.Value", agent.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(form, expected);
    assert_eq!(form["Policy"], issued.session_policy.as_json());
    assert!(!names::tag_value(task).contains('\n'));

    // What the caller is told: the writ's expiry; STS's own is 15 minutes out.
    assert_eq!(issued.expiration, expires_at);
    assert!(issued.sts_expiration >= expires_in(890));
    assert_eq!(issued.role_session_name, session_name);
    assert_eq!(
        issued.granted,
        vec![
            right("aws:s3/logs-bucket/app.log", "read"),
            right("aws:s3/reports-bucket/2026/*", "list"),
            right("aws:s3/reports-bucket/2026/*", "read"),
        ]
    );
    let shown = format!("{issued:?}");
    assert!(!shown.contains(&issued.secret_access_key) && !shown.contains(&issued.session_token));

    // The keys work, as the assumed role.
    let arn = moto
        .caller_arn(&json!({
            "AccessKeyId": issued.access_key_id,
            "SecretAccessKey": issued.secret_access_key,
            "SessionToken": issued.session_token,
        }))
        .await;
    let arn = arn.as_str();
    assert_eq!(
        arn,
        format!("arn:aws:sts::123456789012:assumed-role/{ROLE_NAME}/{session_name}")
    );
    assert_eq!(Some(arn), issued.assumed_role_arn.as_deref());
}

#[tokio::test]
async fn a_longer_writ_asks_for_its_remaining_life_up_to_max_session() {
    let moto = moto_with_role().await;
    let exchange = AwsExchange::new(&config(&moto.endpoint()), broker_credentials());
    exchange
        .assume("reports", &request("t1", "agent-1", expires_in(50 * 60)))
        .await
        .unwrap();
    exchange
        .assume("reports", &request("t2", "agent-1", expires_in(13 * 3600)))
        .await
        .unwrap();
    let durations: Vec<u64> = moto
        .recorded_action("AssumeRole")
        .await
        .iter()
        .map(|r| r.field("DurationSeconds").unwrap().parse().unwrap())
        .collect();
    assert_eq!(durations.len(), 2);
    assert!((2995..=3000).contains(&durations[0]), "{durations:?}");
    assert_eq!(durations[1], 3600);
}

#[tokio::test]
async fn scope_refusals_and_unknown_roles_never_reach_sts() {
    let moto = moto_with_role().await;
    let exchange = AwsExchange::new(&config(&moto.endpoint()), broker_credentials());
    let mut outside = request("t", "a", expires_in(300));
    outside.rights = vec![
        right("aws:s3/other-bucket/*", "read"),
        right("orders/1", "read"),
    ];
    let mut admin = request("t", "a", expires_in(300));
    admin.rights = vec![right("aws:s3/reports-bucket/2026/x", "admin")];
    let mut expired = request("t", "a", expires_in(300));
    expired.writ_expires_at = SystemTime::now() - Duration::from_secs(1);
    for (request, expected) in [
        (outside, ScopeError::NoRights),
        (admin, ScopeError::UnknownOperation("admin".into())),
        (expired, ScopeError::Expired),
    ] {
        match exchange.assume("reports", &request).await {
            Err(AwsExchangeError::Scope(scope)) => assert_eq!(scope, expected),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        exchange
            .assume("billing", &request("t", "a", expires_in(300)))
            .await,
        Err(AwsExchangeError::UnknownRole(name)) if name == "billing"
    ));
    assert!(moto.recorded_action("AssumeRole").await.is_empty());
}

#[tokio::test]
async fn aws_refusing_is_the_refused_variant() {
    let moto = Moto::start().await; // no role created
    let exchange = AwsExchange::new(&config(&moto.endpoint()), broker_credentials());
    // moto assumes any role, but IAM refuses a policy change on a role that does not exist.
    match exchange.deny_writ("reports", "wr_x", expires_in(900)).await {
        Err(AwsExchangeError::Refused { service, code, .. }) => {
            assert_eq!((service, code.as_str()), ("iam", "NoSuchEntity"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn deny_writ_writes_a_statement_and_prune_removes_it_after_expiry() {
    let moto = moto_with_role().await;
    let exchange = AwsExchange::new(&config(&moto.endpoint()), broker_credentials());
    let now = SystemTime::now();
    let soon = expires_in(60);
    let later = expires_in(3600);
    exchange.deny_writ("reports", "wr_one", soon).await.unwrap();
    exchange
        .deny_writ("reports", "wr_two", later)
        .await
        .unwrap();
    exchange
        .deny_writ("reports", "wr_two", later)
        .await
        .unwrap();

    let stored = stored_denies(&moto).await.unwrap();
    let statements = stored["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 2, "{stored}");
    assert_eq!(
        statements[0]["Condition"],
        json!({ "StringEquals": { "aws:PrincipalTag/writ-id": "wr_one" } })
    );
    assert_eq!(statements[0]["Effect"], "Deny");
    assert_eq!(statements[0]["Action"], "*");
    assert_eq!(statements[0]["Resource"], "*");
    let sid = statements[0]["Sid"].as_str().unwrap();
    assert!(
        sid.starts_with(&format!("WritRevoked{}W", writ::time::unix(soon))),
        "{sid}"
    );
    let document = DenyDocument::parse(&stored.to_string()).unwrap();
    assert!(document.denies("wr_one") && document.denies("wr_two"));

    // Nothing has expired yet: pruning changes nothing.
    exchange.prune_denies("reports", now).await.unwrap();
    assert_eq!(stored_denies(&moto).await.unwrap(), stored);
    // wr_one's credentials have expired: its statement goes.
    exchange
        .prune_denies("reports", soon + Duration::from_secs(1))
        .await
        .unwrap();
    let pruned = DenyDocument::parse(&stored_denies(&moto).await.unwrap().to_string()).unwrap();
    assert!(!pruned.denies("wr_one") && pruned.denies("wr_two"));
    // Everything has expired: the policy is deleted.
    exchange
        .prune_denies("reports", later + Duration::from_secs(1))
        .await
        .unwrap();
    assert!(stored_denies(&moto).await.is_none());
    // Pruning a role without the policy is fine.
    exchange
        .prune_denies("reports", later + Duration::from_secs(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_full_deny_policy_falls_back_to_denying_every_earlier_session() {
    let moto = moto_with_role().await;
    let exchange = AwsExchange::new(&config(&moto.endpoint()), broker_credentials());
    let until = expires_in(900);
    let mut i = 0;
    loop {
        exchange
            .deny_writ("reports", &format!("wr_{i:026}"), until)
            .await
            .unwrap();
        i += 1;
        let stored = stored_denies(&moto).await.unwrap();
        assert!(stored.to_string().len() <= 10_240);
        let statements = stored["Statement"].as_array().unwrap().clone();
        if statements.len() == 1 && i > 1 {
            let condition = &statements[0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"];
            assert!(condition.is_string(), "{stored}");
            break;
        }
        assert!(i < 200, "no fallback after {i} denies");
    }
    let document = DenyDocument::parse(&stored_denies(&moto).await.unwrap().to_string()).unwrap();
    assert!((0..i).all(|n| document.denies(&format!("wr_{n:026}"))));
}

#[tokio::test]
async fn sts_and_iam_out_of_reach_are_the_unavailable_variant_promptly() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let exchange = AwsExchange::new(
        &config(&format!("http://127.0.0.1:{closed}")),
        broker_credentials(),
    );
    let started = Instant::now();
    match exchange
        .assume("reports", &request("t", "a", expires_in(300)))
        .await
    {
        Err(AwsExchangeError::Unavailable { service, .. }) => assert_eq!(service, "sts"),
        other => panic!("{other:?}"),
    }
    match exchange.deny_writ("reports", "wr_x", expires_in(900)).await {
        Err(AwsExchangeError::Unavailable { service, .. }) => assert_eq!(service, "iam"),
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}
