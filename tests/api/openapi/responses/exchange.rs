//! `POST /v1/exchange/vault/{name}` and `POST /v1/exchange/aws`, against a real OpenBao (the
//! database secrets engine on PostgreSQL) and a real moto (STS and IAM): 200 for both (and again
//! for a repeated call), 401 (missing, malformed, a writ that does not verify), 403, 404, 409
//! (a lease that ended before its writ; the same writ for other rights), 400, 413 and 415 for the AWS body, 502 (a Vault path Vault
//! does not have; STS refusing the broker's own key while moto enforces authentication), and,
//! last, 503 with OpenBao and moto stopped.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use writ::config::{Config, ExchangeConfig};
use writ::exchange::aws::{AwsExchangeConfig, AwsRoleConfig, ROLE_POLICY_NAME};
use writ_testkit::{Alg, Moto};
use writ_verify::ResourcePattern;

use super::{Context, bearer};
use crate::exchange_vault::{VaultFixture, private_file, vault_settings};
use crate::helpers::{AUDIENCE, client};
use crate::openapi::Request;

/// The policy of the `exchange` namespace's agents, beside the usual ones (another namespace, so
/// that the other sections' refusals and explanations stay as they are).
pub(super) const EXCHANGE_POLICY: &str = r#"
[[policy]]
name = "exchange"
issuer = "kubernetes"
claims = { "kubernetes.io" = { namespace = "exchange" } }
resources = ["vault:database/orders", "vault:database/missing", "aws:s3/reports-bucket/*"]
operations = ["read", "list"]
services = ["writ-exchange", "orders-api"]
max_ttl = "10m"
default_ttl = "5m"
"#;

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/writ/writ-reports";
const ROLE_NAME: &str = "writ-reports";
const VAULT: &str = "/v1/exchange/vault";
const AWS: &str = "/v1/exchange/aws";

/// OpenBao with the `orders-readonly` database role, and moto with the `writ-reports` role.
pub(super) struct Upstreams {
    vault: VaultFixture,
    moto: Option<Moto>,
}

impl Upstreams {
    pub(super) async fn start() -> Upstreams {
        let (vault, moto) = tokio::join!(VaultFixture::start(), Moto::start());
        moto.create_role("/writ/", ROLE_NAME).await;
        Upstreams {
            vault,
            moto: Some(moto),
        }
    }

    /// Sets the broker's `[vault]` and `[exchange]`: Vault roles `orders-db` (a path Vault
    /// has) and `missing` (one it does not), AWS role `reports` serving
    /// `aws:s3/reports-bucket/2026/*`. The Vault token and the broker's AWS keys are in 0600
    /// files beside the key directory.
    pub(super) fn configure(&self) -> impl FnOnce(&mut Config) + Send + 'static {
        let address = self.vault.bao.address().to_owned();
        let token = self.vault.bao.root_token().to_owned();
        let endpoint = self.moto().endpoint();
        move |config| {
            let token_file = private_file(config, "vault-token", &token);
            let aws_keys =
                json!({"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": "broker-secret"});
            let credentials_file =
                private_file(config, "aws-credentials.json", &aws_keys.to_string());
            let (vault, vault_exchange) = vault_settings(address, token_file);
            config.vault = Some(vault);
            config.exchange = ExchangeConfig {
                vault: Some(vault_exchange),
                aws: Some(AwsExchangeConfig {
                    region: "us-east-1".into(),
                    endpoint: Some(endpoint),
                    credentials_file: Some(credentials_file),
                    roles: vec![AwsRoleConfig {
                        name: "reports".into(),
                        role_arn: ROLE_ARN.into(),
                        resources: vec![
                            ResourcePattern::parse("aws:s3/reports-bucket/2026/*").unwrap(),
                        ],
                        max_session: Duration::from_secs(3600),
                    }],
                }),
                ..ExchangeConfig::default()
            };
        }
    }

    fn moto(&self) -> &Moto {
        self.moto.as_ref().expect("moto still runs")
    }

    /// Turns moto's authentication on or off: on, it refuses every request signed with keys
    /// it did not issue (the broker's), as AWS refuses unknown keys.
    async fn moto_authenticates(&self, on: bool) {
        let count = if on { "0" } else { "inf" };
        let answer = client()
            .post(format!("{}/moto-api/reset-auth", self.moto().endpoint()))
            .body(count)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{answer:?}");
    }

    /// The deny policy on the role as stored in moto, if any.
    async fn denies(&self) -> Option<String> {
        let answer = self
            .moto()
            .iam()
            .get_role_policy()
            .role_name(ROLE_NAME)
            .policy_name(ROLE_POLICY_NAME)
            .send()
            .await
            .ok()?;
        let text = percent_encoding::percent_decode_str(&answer.policy_document)
            .decode_utf8()
            .unwrap()
            .into_owned();
        Some(text)
    }
}

pub(super) async fn cases(cx: &mut Context) {
    let identity = cx.broker.kubernetes.kubernetes_token(
        Alg::Rs256,
        "exchange",
        "bot",
        AUDIENCE,
        Duration::from_secs(600),
    );
    unauthenticated(cx).await;
    unknown_roles(cx).await;
    not_granted(cx, &identity).await;
    aws_bodies(cx, &identity).await;
    vault_issued(cx, &identity).await;
    aws_issued(cx, &identity).await;
    refused_upstream(cx, &identity).await;
    unavailable_upstream(cx, &identity).await;
}

/// A writ of the `exchange` namespace's bot for `rights`, listing the exchange service.
async fn writ(cx: &Context, identity: &str, rights: Value) -> Value {
    let body = json!({"task": "quarterly export", "rights": rights, "services": ["writ-exchange"]});
    cx.broker.issue(identity, &body).await
}

fn reports_rights() -> Value {
    json!([{"resource": "aws:s3/reports-bucket/2026/*", "operations": ["read", "list"]}])
}

fn orders_db_rights() -> Value {
    json!([{"resource": "vault:database/orders", "operations": ["read"]}])
}

/// A request to the AWS route with this `Authorization` and body.
fn aws_request(authorization: Option<String>, body: &Value) -> Request {
    Request {
        authorization,
        content_type: Some("application/json"),
        body: Some(body.to_string().into_bytes()),
        ..Request::default()
    }
}

/// 401 on both routes: no `Authorization`, one that is not a bearer token, a token too long to
/// be a writ, and tokens that are not writs (garbage, a workload identity token).
async fn unauthenticated(cx: &mut Context) {
    let reports = json!({"role": "reports"});
    let too_long = "A".repeat(17 * 1024);
    let cases = [
        (None, "credential_missing"),
        (
            Some("Basic b3JkZXJzOmJvdA==".to_owned()),
            "credential_malformed",
        ),
        (bearer(&too_long), "credential_malformed"),
        (bearer("not-a-writ"), "writ_refused"),
        (bearer(&cx.identity), "writ_refused"),
    ];
    for (authorization, expected) in cases {
        let vault = Request {
            authorization: authorization.clone(),
            ..Request::default()
        };
        let path = format!("{VAULT}/orders-db");
        let body = cx
            .probe
            .expect_at("POST", &path, vault, 401, expected)
            .await;
        assert_eq!(cx.probe.headers["www-authenticate"], "Bearer", "{body:#}");
        if expected == "writ_refused" {
            assert!(body["denial"].is_string(), "{body:#}");
        }
        let aws = aws_request(authorization, &reports);
        cx.probe.expect_at("POST", AWS, aws, 401, expected).await;
    }
}

/// 404: roles that are not configured.
async fn unknown_roles(cx: &mut Context) {
    let vault = Request::bearer("not-a-writ");
    cx.probe
        .expect_at(
            "POST",
            &format!("{VAULT}/reports"),
            vault,
            404,
            "exchange_role_unknown",
        )
        .await;
    let aws = aws_request(bearer("not-a-writ"), &json!({"role": "orders-db"}));
    cx.probe
        .expect_at("POST", AWS, aws, 404, "exchange_role_unknown")
        .await;
}

/// 403: a writ that does not list the exchange service, and one without the role's right.
async fn not_granted(cx: &mut Context, identity: &str) {
    let other_service = json!({"task": "quarterly export", "rights": orders_db_rights(), "services": ["orders-api"]});
    let (other_service, _) = cx.broker.issue_writ(identity, &other_service).await;
    let path = format!("{VAULT}/orders-db");
    let body = cx
        .probe
        .expect_at(
            "POST",
            &path,
            Request::bearer(&other_service),
            403,
            "exchange_not_granted",
        )
        .await;
    assert_eq!(body["denial"], "wrong_audience", "{body:#}");
    // A writ for the database only: nothing of the AWS role's, by default or asked.
    let vault_only = writ(cx, identity, orders_db_rights()).await;
    let vault_only = vault_only["writ"].as_str().unwrap();
    let asked = json!({"role": "reports", "rights": reports_rights()});
    for body in [json!({"role": "reports"}), asked] {
        let request = aws_request(bearer(vault_only), &body);
        let body = cx
            .probe
            .expect_at("POST", AWS, request, 403, "exchange_not_granted")
            .await;
        assert_eq!(body["denial"], "not_permitted", "{body:#}");
    }
    let aws_only = writ(cx, identity, reports_rights()).await;
    let request = Request::bearer(aws_only["writ"].as_str().unwrap());
    let body = cx
        .probe
        .expect_at("POST", &path, request, 403, "exchange_not_granted")
        .await;
    assert_eq!(body["denial"], "not_permitted", "{body:#}");
}

/// The AWS route's body: 400 (`invalid_request`, `exchange_scope_invalid`), 413 and 415.
async fn aws_bodies(cx: &mut Context, identity: &str) {
    let issued = writ(cx, identity, reports_rights()).await;
    let token = issued["writ"].as_str().unwrap();
    let right = |resource: &str| json!({"resource": resource, "operations": ["read"]});
    for body in [
        json!({}),
        json!({"role": "reports", "ttl": 60}),
        json!({"role": 7}),
        json!({"role": "reports", "rights": {"resource": "aws:s3/reports-bucket/2026/a"}}),
        json!({"role": "reports", "rights": [{"resource": "aws:s3/reports-bucket/2026/a"}]}),
        json!({"role": "reports", "rights": [{"resource": "aws:s3/reports-bucket/2026/a", "operations": ["read"], "ttl": 60}]}),
    ] {
        let request = aws_request(bearer(token), &body);
        cx.probe
            .expect_at("POST", AWS, request, 400, "invalid_request")
            .await;
    }
    let not_json = Request {
        body: Some(b"{\"role\":".to_vec()),
        ..aws_request(bearer(token), &Value::Null)
    };
    cx.probe
        .expect_at("POST", AWS, not_json, 400, "invalid_request")
        .await;
    let many: Vec<Value> = (0..33)
        .map(|i| right(&format!("aws:s3/reports-bucket/2026/{i}")))
        .collect();
    for rights in [
        json!([]),
        json!([{"resource": "aws:s3/reports-bucket/2026/*", "operations": []}]),
        json!([right("aws:s3/other-bucket/2026/a")]),
        json!([right("aws:s3/reports-bucket/2025/a")]),
        json!([right("aws:s3/reports-bucket/2026/../a")]),
        json!(many),
    ] {
        let body = json!({"role": "reports", "rights": rights});
        let request = aws_request(bearer(token), &body);
        cx.probe
            .expect_at("POST", AWS, request, 400, "exchange_scope_invalid")
            .await;
    }
    let huge = json!({"role": "reports", "pad": "x".repeat(70 * 1024)});
    cx.probe
        .expect_at(
            "POST",
            AWS,
            aws_request(bearer(token), &huge),
            413,
            "payload_too_large",
        )
        .await;
    let text = Request {
        content_type: Some("text/plain"),
        ..aws_request(bearer(token), &json!({"role": "reports"}))
    };
    cx.probe
        .expect_at("POST", AWS, text, 415, "unsupported_media_type")
        .await;
}

/// 200: a database login from Vault, answered again for the same writ.
async fn vault_issued(cx: &mut Context, identity: &str) {
    let issued = writ(cx, identity, orders_db_rights()).await;
    let token = issued["writ"].as_str().unwrap();
    let path = format!("{VAULT}/orders-db");
    let credential = cx
        .probe
        .expect_at("POST", &path, Request::bearer(token), 200, "")
        .await;
    let exchange_id = cx.probe.headers["writ-exchange-id"].clone();
    assert_eq!(credential["exchange_id"], exchange_id.to_str().unwrap());
    assert!(credential["data"]["username"].is_string(), "{credential:#}");
    assert!(credential["expires_at"].as_str().unwrap() <= issued["expires_at"].as_str().unwrap());
    let again = cx
        .probe
        .expect_at("POST", &path, Request::bearer(token), 200, "")
        .await;
    assert_eq!(cx.probe.headers["writ-exchange-id"], exchange_id);
    assert_eq!(again, credential);
    // 409: a lease shorter than its writ (the mount's leases cut to 2 seconds) has ended when
    // it is asked for again; one exchange per writ and role.
    let bao = &cx.upstreams.vault.bao;
    let tune = |ttl: &str| json!({"max_lease_ttl": ttl});
    bao.api("POST", "sys/mounts/database/tune", Some(tune("2s")))
        .await;
    let brief = writ(cx, identity, orders_db_rights()).await;
    let token = brief["writ"].as_str().unwrap();
    let credential = cx
        .probe
        .expect_at("POST", &path, Request::bearer(token), 200, "")
        .await;
    assert!(
        credential["lease_duration"].as_i64().unwrap() <= 2,
        "{credential:#}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    cx.probe
        .expect_at(
            "POST",
            &path,
            Request::bearer(token),
            409,
            "exchange_conflict",
        )
        .await;
    let bao = &cx.upstreams.vault.bao;
    bao.api("POST", "sys/mounts/database/tune", Some(tune("system")))
        .await;
}

/// 200: AWS credentials for the writ's rights within the role, answered again; 409 for other
/// rights; revoking the writ puts a deny statement for it on the role.
async fn aws_issued(cx: &mut Context, identity: &str) {
    let issued = writ(cx, identity, reports_rights()).await;
    let token = issued["writ"].as_str().unwrap();
    let everything = aws_request(bearer(token), &json!({"role": "reports"}));
    let credential = cx.probe.expect_at("POST", AWS, everything, 200, "").await;
    let exchange_id = cx.probe.headers["writ-exchange-id"].clone();
    assert_eq!(credential["Version"], 1);
    // The writ's expiry (STS's session lasts 15 minutes at least).
    assert_eq!(
        credential["Expiration"], issued["expires_at"],
        "{credential:#}"
    );
    let recorded = cx.upstreams.moto().recorded_action("AssumeRole").await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].field("RoleArn").as_deref(), Some(ROLE_ARN));
    assert_eq!(recorded[0].field("DurationSeconds").as_deref(), Some("900"));
    let policy = recorded[0].field("Policy").unwrap();
    assert!(policy.contains("aws:CurrentTime"), "{policy}");
    // The same rights asked by name: the same credentials.
    let asked = aws_request(
        bearer(token),
        &json!({"role": "reports", "rights": reports_rights()}),
    );
    let again = cx.probe.expect_at("POST", AWS, asked, 200, "").await;
    assert_eq!(again, credential);
    assert_eq!(cx.probe.headers["writ-exchange-id"], exchange_id);
    // Other rights of the same writ: one exchange per writ and role.
    let fewer = json!([{"resource": "aws:s3/reports-bucket/2026/*", "operations": ["read"]}]);
    let request = aws_request(bearer(token), &json!({"role": "reports", "rights": fewer}));
    cx.probe
        .expect_at("POST", AWS, request, 409, "exchange_conflict")
        .await;
    // Revoked: the role denies the writ's sessions within seconds, and the writ is refused.
    let writ_id = issued["writ_id"].as_str().unwrap();
    let revoke = json!({"writ_id": writ_id, "reason": "exchanged by mistake"});
    cx.as_admin("/v1/revocations", &revoke, 201, "").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(denies) = cx.upstreams.denies().await
            && denies.contains(writ_id)
        {
            break;
        }
        assert!(Instant::now() < deadline, "no deny statement for {writ_id}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let request = aws_request(bearer(token), &json!({"role": "reports"}));
    let body = cx
        .probe
        .expect_at("POST", AWS, request, 401, "writ_refused")
        .await;
    assert_eq!(body["denial"], "revoked", "{body:#}");
}

/// 502: Vault has no such path; STS refuses the broker's keys.
async fn refused_upstream(cx: &mut Context, identity: &str) {
    let rights = json!([{"resource": "vault:database/missing", "operations": ["read"]}]);
    let issued = writ(cx, identity, rights).await;
    let request = Request::bearer(issued["writ"].as_str().unwrap());
    let path = format!("{VAULT}/missing");
    let body = cx
        .probe
        .expect_at("POST", &path, request, 502, "exchange_upstream_refused")
        .await;
    assert!(!body.to_string().contains("database/creds"), "{body:#}");
    let issued = writ(cx, identity, reports_rights()).await;
    let token = issued["writ"].as_str().unwrap();
    cx.upstreams.moto_authenticates(true).await;
    let request = aws_request(bearer(token), &json!({"role": "reports"}));
    let body = cx
        .probe
        .expect_at("POST", AWS, request, 502, "exchange_upstream_refused")
        .await;
    assert!(
        !body.to_string().contains("InvalidClientTokenId"),
        "{body:#}"
    );
    cx.upstreams.moto_authenticates(false).await;
    // Nothing was recorded: the same writ is exchanged once STS accepts the keys again.
    let request = aws_request(bearer(token), &json!({"role": "reports"}));
    cx.probe.expect_at("POST", AWS, request, 200, "").await;
}

/// 503: OpenBao and moto stopped (last: nothing after this section reaches them).
async fn unavailable_upstream(cx: &mut Context, identity: &str) {
    let vault = writ(cx, identity, orders_db_rights()).await;
    let aws = writ(cx, identity, reports_rights()).await;
    // The database users made above are dropped first: PostgreSQL's roles are the cluster's.
    let bao = &cx.upstreams.vault.bao;
    bao.api("PUT", "sys/leases/revoke-prefix/database/creds", None)
        .await;
    cx.upstreams.vault.bao.kill();
    drop(cx.upstreams.moto.take());
    let path = format!("{VAULT}/orders-db");
    let request = Request::bearer(vault["writ"].as_str().unwrap());
    cx.probe
        .expect_at("POST", &path, request, 503, "exchange_upstream_unavailable")
        .await;
    let request = aws_request(
        bearer(aws["writ"].as_str().unwrap()),
        &json!({"role": "reports"}),
    );
    cx.probe
        .expect_at("POST", AWS, request, 503, "exchange_upstream_unavailable")
        .await;
}
