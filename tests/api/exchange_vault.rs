//! `POST /v1/exchange/vault/{name}` against a real OpenBao dev server with the database secrets
//! engine on the real PostgreSQL: the agent gets a database login that works and dies with its
//! writ; a writ without the right, an expired, revoked or attenuated-away writ gets nothing;
//! Vault refusing or unreachable answers 502 or 503 with nothing recorded.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use sqlx::Connection;
use writ::config::{Config, ExchangeConfig, VaultConfig, VaultExchangeConfig};
use writ::exchange::VaultRole;
use writ_testkit::OpenBao;
use writ_verify::{Attenuation, ResourcePattern, attenuate};

use crate::helpers::{
    Backend, PostgresDatabase, Setup, TestBroker, client, postgres_admin_url, problem_type,
};
use crate::on_both_backends;

pub const POLICIES: &str = r#"
[[policy]]
name = "orders-exchange"
issuer = "kubernetes"
claims = { "kubernetes.io" = { namespace = "orders" } }
resources = ["orders/*", "vault:database/orders", "vault:database/missing"]
operations = ["read"]
services = ["orders-api", "writ-exchange"]
max_ttl = "10m"
default_ttl = "5m"
"#;

/// OpenBao with a database role on a PostgreSQL database of the test's own.
pub struct VaultFixture {
    pub bao: OpenBao,
    pub database: PostgresDatabase,
}

impl VaultFixture {
    pub async fn start() -> VaultFixture {
        let bao = OpenBao::start().await;
        let database = PostgresDatabase::create().await;
        bao.postgres_secrets(
            &database_url(&database, "{{username}}", "{{password}}"),
            "orders-readonly",
        )
        .await;
        VaultFixture { bao, database }
    }

    /// The broker's `[vault]` and `[exchange]` settings for this server: role `orders-db`
    /// serves `vault:database/orders` (read), role `missing` a path Vault does not have.
    pub fn setup(&self, backend: Backend) -> Setup {
        let address = self.bao.address().to_owned();
        let token = self.bao.root_token().to_owned();
        let mut setup = Setup::new(backend);
        setup.policies = POLICIES.to_owned();
        setup.tweak = Box::new(move |config| {
            let token_file = private_file(config, "vault-token", &token);
            let (vault, exchange) = vault_settings(address, token_file);
            config.vault = Some(vault);
            config.exchange = ExchangeConfig {
                vault: Some(exchange),
                ..ExchangeConfig::default()
            };
        });
        setup
    }
}

/// Writes `content` to a file beside the broker's key directory, mode 0600 (as the broker
/// requires of its secret files), and answers its path.
pub fn private_file(config: &Config, name: &str, content: &str) -> PathBuf {
    let path = config.key_dir.with_file_name(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `[vault]` for the server at `address` with the token in `token_file`, and the Vault exchange
/// roles: `orders-db` serves `vault:database/orders` (read), `missing` a path Vault lacks.
pub fn vault_settings(address: String, token_file: PathBuf) -> (VaultConfig, VaultExchangeConfig) {
    let vault = VaultConfig {
        address,
        token_file: Some(token_file),
        approle: None,
        namespace: None,
        timeout: Duration::from_secs(2),
    };
    let roles = vec![
        vault_role(
            "orders-db",
            "database/creds/orders-readonly",
            "vault:database/orders",
        ),
        vault_role(
            "missing",
            "database/creds/missing",
            "vault:database/missing",
        ),
    ];
    (vault, VaultExchangeConfig { roles })
}

fn vault_role(name: &str, path: &str, resource: &str) -> VaultRole {
    VaultRole {
        name: name.into(),
        path: path.into(),
        resource: resource.into(),
        operation: "read".into(),
    }
}

fn database_url(database: &PostgresDatabase, user: &str, password: &str) -> String {
    let admin = postgres_admin_url();
    let rest = admin
        .split_once('@')
        .map_or("127.0.0.1:5432/postgres", |(_, rest)| rest);
    let host = rest.split_once('/').map_or(rest, |(host, _)| host);
    format!(
        "postgres://{user}:{password}@{host}/{}?sslmode=disable",
        database.name
    )
}

/// A writ for `rights`, listing the exchange service.
pub async fn exchange_writ(broker: &TestBroker, rights: Value) -> (String, String) {
    broker
        .issue_writ(
            &broker.orders_identity(),
            &json!({"task": "orders export", "rights": rights, "services": ["writ-exchange"], "ttl": 300}),
        )
        .await
}

pub fn orders_db_rights() -> Value {
    json!([{"resource": "vault:database/orders", "operations": ["read"]}])
}

pub async fn exchange(broker: &TestBroker, role: &str, writ: &str) -> reqwest::Response {
    client()
        .post(format!("{}/v1/exchange/vault/{role}", broker.url))
        .bearer_auth(writ)
        .send()
        .await
        .unwrap()
}

pub async fn logs_in(fixture: &VaultFixture, credential: &Value) -> bool {
    let user = credential["data"]["username"].as_str().unwrap();
    let password = credential["data"]["password"].as_str().unwrap();
    sqlx::PgConnection::connect(&database_url(&fixture.database, user, password))
        .await
        .is_ok()
}

async fn audit_actions(broker: &TestBroker, writ_id: &str) -> Vec<(String, String)> {
    let auditor = broker
        .admin_token("auditor@example.com", &["auditor"])
        .await;
    let events = broker
        .admin_get_json(&format!("/v1/audit?writ_id={writ_id}&limit=100"), &auditor)
        .await;
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["action"].as_str().unwrap().to_owned(),
                event["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn a_writ_becomes_a_database_login_that_dies_with_it(backend: Backend) {
    let fixture = VaultFixture::start().await;
    let broker = TestBroker::start_with(fixture.setup(backend)).await;
    let (writ, writ_id) = exchange_writ(&broker, orders_db_rights()).await;

    let response = exchange(&broker, "orders-db", &writ).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let exchange_id = response.headers()["writ-exchange-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let credential: Value = response.json().await.unwrap();
    assert_eq!(credential["exchange_id"], exchange_id.as_str());
    // The lease was shortened to the writ's remaining life (5 minutes), not Vault's hour.
    let lease = credential["lease_duration"].as_i64().unwrap();
    assert!((240..=300).contains(&lease), "lease of {lease} s");
    assert!(logs_in(&fixture, &credential).await, "the login works");
    assert_eq!(leases(&fixture).await, 1);

    // Asked again, the same credential: no second database user.
    let again = exchange(&broker, "orders-db", &writ).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["writ-exchange-id"], exchange_id.as_str());
    let repeated: Value = again.json().await.unwrap();
    assert_eq!(repeated["data"], credential["data"]);
    // A copy attenuated to end sooner does not get the credential made for the longer writ.
    let sooner = attenuate(
        &writ,
        &Attenuation {
            expires_at: Some(SystemTime::now() + Duration::from_secs(60)),
            ..Attenuation::default()
        },
    )
    .unwrap();
    assert_eq!(
        problem_type(exchange(&broker, "orders-db", &sooner).await).await,
        (409, "urn:writ:problem:exchange_conflict".to_owned())
    );

    // Revoking the writ drops the database user within seconds.
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
    while logs_in(&fixture, &credential).await {
        assert!(
            Instant::now() < deadline,
            "the login still works after revocation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let actions = audit_actions(&broker, &writ_id).await;
    for expected in ["exchange.issued", "exchange.withdrawn"] {
        assert!(
            actions.iter().any(|(action, _)| action == expected),
            "{expected} in {actions:?}"
        );
    }
    // The revoked writ is refused, and its exchange is not answered again.
    let (status, problem) = problem_type(exchange(&broker, "orders-db", &writ).await).await;
    assert_eq!(
        (status, problem.as_str()),
        (401, "urn:writ:problem:writ_refused")
    );
    broker.stop().await;
}
on_both_backends!(a_writ_becomes_a_database_login_that_dies_with_it);

#[tokio::test]
async fn revoking_the_task_or_the_agent_takes_the_login_back_too() {
    let fixture = VaultFixture::start().await;
    let broker = TestBroker::start_with(fixture.setup(Backend::Sqlite)).await;
    let admin = broker.admin_token("admin@example.com", &["admin"]).await;
    for target in [
        json!({"task": "orders export", "reason": "task done"}),
        json!({"agent": "k8s:orders/report-bot", "reason": "compromised"}),
    ] {
        let (writ, _) = exchange_writ(&broker, orders_db_rights()).await;
        let credential: Value = exchange(&broker, "orders-db", &writ)
            .await
            .json()
            .await
            .unwrap();
        assert!(logs_in(&fixture, &credential).await);
        let revoked = broker.admin_post("/v1/revocations", &admin, &target).await;
        assert_eq!(revoked.status(), 201, "{target}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while logs_in(&fixture, &credential).await {
            assert!(Instant::now() < deadline, "{target}: the login still works");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if target.get("agent").is_some() {
            break;
        }
        // A new task name: the task revocation covers writs issued before it only.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    broker.stop().await;
}

#[tokio::test]
async fn writs_that_do_not_grant_the_role_get_nothing() {
    let fixture = VaultFixture::start().await;
    let broker = TestBroker::start_with(fixture.setup(Backend::Sqlite)).await;
    let identity = broker.orders_identity();
    let refused = |status: u16, problem: &str| (status, format!("urn:writ:problem:{problem}"));

    // A writ for another resource.
    let (other, _) = exchange_writ(
        &broker,
        json!([{"resource": "orders/42", "operations": ["read"]}]),
    )
    .await;
    let response = exchange(&broker, "orders-db", &other).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "urn:writ:problem:exchange_not_granted");
    assert_eq!(body["status"], 403);
    assert_eq!(body["denial"], "not_permitted");

    // A writ with the right that does not list the exchange service.
    let (not_for_exchange, _) = broker
        .issue_writ(
            &identity,
            &json!({"task": "t", "rights": orders_db_rights(), "services": ["orders-api"]}),
        )
        .await;
    let body: Value = exchange(&broker, "orders-db", &not_for_exchange)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["type"], "urn:writ:problem:exchange_not_granted");
    assert_eq!(body["denial"], "wrong_audience");

    // A writ with the right, attenuated to orders only.
    let (writ, writ_id) = exchange_writ(
        &broker,
        json!([
            {"resource": "vault:database/orders", "operations": ["read"]},
            {"resource": "orders/*", "operations": ["read"]},
        ]),
    )
    .await;
    let narrowed = attenuate(
        &writ,
        &Attenuation {
            resources: Some(vec![ResourcePattern::parse("orders/*").unwrap()]),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let body: Value = exchange(&broker, "orders-db", &narrowed)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["type"], "urn:writ:problem:exchange_not_granted");
    assert_eq!(body["denial"], "restricted_by_attenuation");

    // Expired (by an attenuation's time limit), forged, and not a writ at all.
    let expired = attenuate(
        &writ,
        &Attenuation {
            expires_at: Some(SystemTime::now() - Duration::from_secs(60)),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let body: Value = exchange(&broker, "orders-db", &expired)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["type"], "urn:writ:problem:writ_refused");
    assert_eq!(body["denial"], "expired");
    let mut forged = writ.clone().into_bytes();
    let middle = forged.len() / 2;
    forged[middle] = if forged[middle] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(
        problem_type(exchange(&broker, "orders-db", &forged).await).await,
        refused(401, "writ_refused")
    );
    assert_eq!(
        problem_type(exchange(&broker, "orders-db", &identity).await).await,
        refused(401, "writ_refused"),
        "a workload identity token is not a writ"
    );
    let missing = client()
        .post(format!("{}/v1/exchange/vault/orders-db", broker.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        problem_type(missing).await,
        refused(401, "credential_missing")
    );
    let huge = "A".repeat(17 * 1024);
    assert_eq!(
        problem_type(exchange(&broker, "orders-db", &huge).await).await,
        refused(401, "credential_malformed")
    );

    // An unknown role.
    assert_eq!(
        problem_type(exchange(&broker, "no-such-role", &writ).await).await,
        refused(404, "exchange_role_unknown")
    );

    // None of these made a database user or an exchange; the verified refusals are audited.
    let actions = audit_actions(&broker, &writ_id).await;
    assert!(
        actions.iter().any(
            |(action, reason)| action == "exchange.refused" && reason == "exchange_not_granted"
        ),
        "{actions:?}"
    );
    assert!(
        !actions
            .iter()
            .any(|(action, _)| action == "exchange.issued")
    );
    assert_eq!(leases(&fixture).await, 0, "no database credential was made");
    broker.stop().await;
}

/// Leases Vault holds for the `orders-readonly` database role.
async fn leases(fixture: &VaultFixture) -> usize {
    let (status, answer) = fixture
        .bao
        .try_api(
            "LIST",
            "sys/leases/lookup/database/creds/orders-readonly",
            None,
        )
        .await;
    match status {
        404 => 0,
        200 => answer["data"]["keys"].as_array().map_or(0, Vec::len),
        other => panic!("listing leases: {other} {answer}"),
    }
}

#[tokio::test]
async fn vault_refusing_or_unreachable_answers_502_or_503_and_records_nothing() {
    let mut fixture = VaultFixture::start().await;
    let broker = TestBroker::start_with(fixture.setup(Backend::Sqlite)).await;
    let (writ, writ_id) = exchange_writ(
        &broker,
        json!([{"resource": "vault:database/missing", "operations": ["read"]}, {"resource": "vault:database/orders", "operations": ["read"]}]),
    )
    .await;

    // Vault answers, and refuses: a path it does not have.
    let response = exchange(&broker, "missing", &writ).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "urn:writ:problem:exchange_upstream_refused");
    assert_eq!(body["status"], 502);
    assert!(!body.to_string().contains("database/creds"), "{body}");

    // Vault is gone.
    fixture.bao.kill();
    let started = Instant::now();
    let response = exchange(&broker, "orders-db", &writ).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["type"],
        "urn:writ:problem:exchange_upstream_unavailable"
    );
    assert_eq!(body["status"], 503);
    assert!(started.elapsed() < Duration::from_secs(10));

    // Both failures audited; no exchange recorded, so a later call may try again.
    let actions = audit_actions(&broker, &writ_id).await;
    let failed: Vec<_> = actions
        .iter()
        .filter(|(action, _)| action == "exchange.failed")
        .map(|(_, reason)| reason.as_str())
        .collect();
    assert_eq!(
        failed,
        ["exchange_upstream_refused", "exchange_upstream_unavailable"]
    );
    let recorded = crate::helpers::count(
        &broker.database_url,
        "SELECT COUNT(*) AS count FROM exchanges",
    )
    .await;
    assert_eq!(recorded, 0);
    broker.stop().await;
}

/// An exchange the broker never finished (it stopped between Vault's answer and the record)
/// is found by its reservation: the lease it recorded is revoked, and the failure audited.
#[tokio::test]
async fn an_unfinished_exchange_has_its_lease_revoked() {
    let fixture = VaultFixture::start().await;
    let broker = TestBroker::start_with(fixture.setup(Backend::Sqlite)).await;
    let secret = fixture
        .bao
        .api("GET", "database/creds/orders-readonly", None)
        .await;
    let lease = secret["lease_id"].as_str().unwrap().to_owned();
    assert_eq!(leases(&fixture).await, 1);
    let long_ago = writ::time::unix_seconds(SystemTime::now()) - 600;
    let insert = format!(
        "INSERT INTO exchanges (id, writ_id, agent, task, kind, target, scope, state, handle, \
         created_at, expires_at, writ_expires_at) VALUES ('ex_{:032x}', 'wr_unfinished', \
         'k8s:orders/report-bot', 'orders export', 'vault', 'orders-db', 's', 'pending', \
         '{lease}', {long_ago}, {long_ago}, {long_ago})",
        1
    );
    crate::helpers::execute_sql(&broker.database_url, &[&insert]).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    while leases(&fixture).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the lease of the unfinished exchange lives on"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let actions = audit_actions(&broker, "wr_unfinished").await;
    assert_eq!(
        actions,
        [(
            "exchange.failed".to_owned(),
            "exchange_abandoned".to_owned()
        )]
    );
    let left = crate::helpers::count(
        &broker.database_url,
        "SELECT COUNT(*) AS count FROM exchanges",
    )
    .await;
    assert_eq!(
        left, 0,
        "the reservation is dropped: the writ may be exchanged again"
    );
    broker.stop().await;
}
