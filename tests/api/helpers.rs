//! The test kit for broker tests: a real broker on 127.0.0.1:0 with a fresh database (a SQLite
//! file in a temporary directory, or a new PostgreSQL database), real identity issuers on
//! loopback, and policies written to disk like an operator would.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use writ::app::Application;
use writ::config::{Config, IssuerConfig};
use writ_testkit::{Alg, TestIssuer};

/// A PostgreSQL URL where the tests may create databases (`WRIT_TEST_POSTGRES_URL`).
pub fn postgres_admin_url() -> String {
    std::env::var("WRIT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The URL of database `name` on the same server.
pub fn postgres_url(name: &str) -> String {
    let admin = postgres_admin_url();
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

/// The broker's audience in test identity tokens.
pub const AUDIENCE: &str = "writ";

pub const POLICIES: &str = r#"
[[policy]]
name = "orders-reader"
issuer = "kubernetes"
claims = { "kubernetes.io" = { namespace = "orders" } }
resources = ["orders/*"]
operations = ["read"]
services = ["orders-api"]
max_ttl = "10m"
default_ttl = "5m"

[[policy]]
name = "deploy"
issuer = "github"
claims = { repository = "acme/orders", workflow = "deploy", ref = "refs/heads/main" }
resources = ["deployments/orders", "reports/2026/*"]
operations = ["read", "write"]
services = ["deploy-api", "reports-api"]
max_ttl = "15m"
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestBroker {
    pub url: String,
    pub kubernetes: TestIssuer,
    pub github: TestIssuer,
    pub data: TempDir,
    pub database_url: String,
    postgres_db: Option<String>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

pub struct Setup {
    pub backend: Backend,
    pub policies: String,
    pub tweak: Box<dyn FnOnce(&mut Config) + Send>,
}

impl Setup {
    pub fn new(backend: Backend) -> Setup {
        Setup {
            backend,
            policies: POLICIES.to_owned(),
            tweak: Box::new(|_| {}),
        }
    }
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        TestBroker::start_with(Setup::new(Backend::Sqlite)).await
    }

    pub async fn start_on(backend: Backend) -> TestBroker {
        TestBroker::start_with(Setup::new(backend)).await
    }

    pub async fn start_with(setup: Setup) -> TestBroker {
        let kubernetes = TestIssuer::start().await;
        let github = TestIssuer::start().await;
        let data = tempfile::tempdir().unwrap();
        let policy_dir = data.path().join("policies");
        std::fs::create_dir_all(&policy_dir).unwrap();
        std::fs::write(policy_dir.join("test.toml"), &setup.policies).unwrap();
        let (database_url, postgres_db) = match setup.backend {
            Backend::Sqlite => (
                format!("sqlite://{}", data.path().join("writ.db").display()),
                None,
            ),
            Backend::Postgres => {
                let name = fresh_postgres_database().await;
                (postgres_url(&name), Some(name))
            }
        };
        let mut config = Config::default_embedded();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.database_url = database_url.clone();
        config.key_dir = data.path().join("keys");
        config.policy_dir = Some(policy_dir);
        config.issuers = vec![
            issuer_config(
                "kubernetes",
                &kubernetes,
                "k8s:{kubernetes.io/namespace}/{kubernetes.io/serviceaccount/name}",
            ),
            issuer_config("github", &github, "github:{repository}@{workflow}"),
        ];
        (setup.tweak)(&mut config);
        let app = Application::build(config).await.expect("the broker starts");
        let addr = app.local_addr().unwrap();
        let (shutdown, stopped) = oneshot::channel();
        let server = tokio::spawn(app.run(async {
            let _ = stopped.await;
        }));
        TestBroker {
            url: format!("http://{addr}"),
            kubernetes,
            github,
            data,
            database_url,
            postgres_db,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    pub fn key_dir(&self) -> PathBuf {
        self.data.path().join("keys")
    }

    /// An admin writ with `roles`, made as `writ admin bootstrap` makes one.
    pub async fn admin_token(&self, principal: &str, roles: &[&str]) -> String {
        let ring = writ::keys::KeyDir::open(&self.key_dir())
            .unwrap()
            .load()
            .unwrap();
        let store = writ::store::connect(&self.database_url).await.unwrap();
        let roles = roles.iter().map(|role| role.parse().unwrap()).collect();
        let principal = writ::admin::Principal::parse(principal).unwrap();
        writ::broker::issue_admin_writ(
            &ring,
            &store,
            &writ::broker::AdminWritOrder {
                principal: &principal,
                roles: &roles,
                ttl: std::time::Duration::from_secs(600),
                issued_by: "test",
                parent_writ_id: None,
                action: writ::audit::actions::ADMIN_BOOTSTRAP,
            },
        )
        .await
        .unwrap()
        .token
    }

    /// POSTs JSON to an admin route with `token`.
    pub async fn admin_post(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        client()
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// GETs an admin route with `token`.
    pub async fn admin_get(&self, path_and_query: &str, token: &str) -> reqwest::Response {
        client()
            .get(format!("{}{path_and_query}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// A Kubernetes identity in the `orders` namespace (allowed to read orders).
    pub fn orders_identity(&self) -> String {
        self.kubernetes.kubernetes_token(
            Alg::Rs256,
            "orders",
            "report-bot",
            AUDIENCE,
            Duration::from_secs(600),
        )
    }

    /// Kubernetes-shaped claims for the `orders` namespace, with `edit` applied.
    pub fn orders_claims(&self, edit: impl FnOnce(&mut Value)) -> Value {
        let mut claims = writ_testkit::claims_base(
            &self.kubernetes.issuer(),
            "system:serviceaccount:orders:bot",
            AUDIENCE,
            Duration::from_secs(600),
        );
        claims["kubernetes.io"] = json!({"namespace": "orders", "serviceaccount": {"name": "bot"}});
        edit(&mut claims);
        claims
    }

    /// Drops the broker's PostgreSQL database under its feet (the broker keeps running).
    pub async fn drop_postgres_database(&self) {
        let name = self.postgres_db.as_deref().expect("a PostgreSQL broker");
        drop_postgres_database(name).await;
    }

    pub async fn request(&self, identity: &str, body: &Value) -> reqwest::Response {
        client()
            .post(format!("{}/v1/writs", self.url))
            .bearer_auth(identity)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Requests a writ and expects it granted; answers the broker's JSON.
    pub async fn issue(&self, identity: &str, body: &Value) -> Value {
        let response = self.request(identity, body).await;
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "{answer:#}");
        answer
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
        if let Some(name) = self.postgres_db.take() {
            drop_postgres_database(&name).await;
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// The canonical read-an-order request.
pub fn orders_request() -> Value {
    json!({"task": "nightly report", "rights": [{"resource": "orders/42", "operations": ["read"]}], "services": ["orders-api"]})
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn issuer_config(name: &str, issuer: &TestIssuer, agent: &str) -> IssuerConfig {
    IssuerConfig {
        name: name.into(),
        issuer: issuer.issuer(),
        jwks: None,
        audience: AUDIENCE.into(),
        algorithms: vec!["RS256".into(), "ES256".into()],
        agent: agent.into(),
        jwks_refresh: Duration::from_secs(600),
        jwks_min_refetch_interval: Duration::from_secs(10),
    }
}

/// Creates an empty database. Fails the test when PostgreSQL is unreachable: the PostgreSQL
/// suite must never be skipped silently.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .expect("PostgreSQL must be reachable (WRIT_TEST_POSTGRES_URL) for the PostgreSQL suite");
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).unwrap();
    let name = format!("writ_test_{}", hex::encode(bytes));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    name
}

async fn drop_postgres_database(name: &str) {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}

/// Runs an async test body once per storage backend.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    };
}
