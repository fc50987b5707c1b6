//! The test kit for broker tests: a real broker on 127.0.0.1:0 with a fresh database (a SQLite
//! file in a temporary directory, or a new PostgreSQL database), real identity issuers on
//! loopback, and policies written to disk like an operator would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use writ::app::Application;
use writ::config::{Config, IssuerConfig};
use writ_testkit::{Alg, TestIssuer};

/// The `writ` command built for these tests.
pub const WRIT: &str = env!("CARGO_BIN_EXE_writ");

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
    server: Option<JoinHandle<()>>,
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

    /// An admin writ (admin and auditor) signed by the broker's root key that expired an hour
    /// ago.
    pub fn expired_admin_token(&self) -> String {
        let ring = writ::keys::KeyDir::open(&self.key_dir())
            .unwrap()
            .load()
            .unwrap();
        let roles = [writ::admin::Role::Admin, writ::admin::Role::Auditor].into();
        let principal = writ::admin::Principal::parse("old-admin").unwrap();
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        writ::admin::mint_admin_writ(
            &ring.active,
            &principal,
            &roles,
            two_hours_ago,
            Duration::from_secs(3600),
        )
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

    /// GETs an admin route with `token` and answers its JSON body.
    pub async fn admin_get_json(&self, path_and_query: &str, token: &str) -> Value {
        self.admin_get(path_and_query, token)
            .await
            .json()
            .await
            .unwrap()
    }

    /// GETs a public route, without credentials.
    pub async fn get(&self, path_and_query: &str) -> reqwest::Response {
        client()
            .get(format!("{}{path_and_query}", self.url))
            .send()
            .await
            .unwrap()
    }

    /// GETs a public route, without credentials, and answers its JSON body.
    pub async fn get_json(&self, path_and_query: &str) -> Value {
        self.get(path_and_query).await.json().await.unwrap()
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

    /// Requests a writ and expects it granted; answers the writ and its id.
    pub async fn issue_writ(&self, identity: &str, body: &Value) -> (String, String) {
        let answer = self.issue(identity, body).await;
        let text = |member: &str| answer[member].as_str().unwrap().to_owned();
        (text("writ"), text("writ_id"))
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
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
        // A test that failed before `stop` leaves no database behind either.
        if let Some(name) = self.postgres_db.take() {
            drop_postgres_database_blocking(&name);
        }
    }
}

/// A PostgreSQL database made for one test, dropped with this guard (also when the test fails).
pub struct PostgresDatabase {
    pub name: String,
}

impl PostgresDatabase {
    pub async fn create() -> PostgresDatabase {
        PostgresDatabase {
            name: fresh_postgres_database().await,
        }
    }

    pub fn url(&self) -> String {
        postgres_url(&self.name)
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        drop_postgres_database_blocking(&self.name);
    }
}

/// Drops a database from synchronous code (a `Drop`), inside a Tokio runtime or not: on a
/// thread of its own with its own runtime.
fn drop_postgres_database_blocking(name: &str) {
    let name = name.to_owned();
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(drop_postgres_database(&name));
    })
    .join();
    if dropped.is_err() && !std::thread::panicking() {
        panic!("the test database could not be dropped");
    }
}

/// The canonical read-an-order request.
pub fn orders_request() -> Value {
    json!({"task": "nightly report", "rights": [{"resource": "orders/42", "operations": ["read"]}], "services": ["orders-api"]})
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A problem answer's status and `type`.
pub async fn problem_type(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["type"].as_str().unwrap_or_default().to_owned())
}

/// The configuration of a broker process in `dir` on `database_url`, trusting `kubernetes` and
/// `github` the way [`TestBroker`] does, with [`POLICIES`] written to `<dir>/policies`.
pub fn process_config(
    dir: &Path,
    database_url: &str,
    kubernetes: &TestIssuer,
    github: &TestIssuer,
) -> String {
    let policy_dir = dir.join("policies");
    std::fs::create_dir_all(&policy_dir).unwrap();
    std::fs::write(policy_dir.join("test.toml"), POLICIES).unwrap();
    format!(
        r#"
listen = "127.0.0.1:0"
database_url = "{database_url}"
key_dir = "{key_dir}"
policy_dir = "{policy_dir}"
[[issuer]]
name = "kubernetes"
issuer = "{kubernetes}"
audience = "{AUDIENCE}"
agent = "k8s:{{kubernetes.io/namespace}}/{{kubernetes.io/serviceaccount/name}}"
[[issuer]]
name = "github"
issuer = "{github}"
audience = "{AUDIENCE}"
agent = "github:{{repository}}"
"#,
        key_dir = dir.join("keys").display(),
        policy_dir = policy_dir.display(),
        kubernetes = kubernetes.issuer(),
        github = github.issuer(),
    )
}

/// `writ` in `dir`, without the settings a developer's environment may hold.
pub fn writ_command(dir: &Path) -> Command {
    let mut command = Command::new(WRIT);
    command.current_dir(dir);
    for variable in [
        "WRIT_KEY_DIR",
        "WRIT_BROKER_URL",
        "WRIT_ADMIN_TOKEN",
        "WRIT_CONFIG",
        "WRIT_DATABASE_URL",
        "WRIT_POLICY_DIR",
        "WRIT_POLICY_RELOAD_INTERVAL",
        "WRIT_LISTEN",
    ] {
        command.env_remove(variable);
    }
    command
}

/// Runs `writ args` in `dir` with `input` on its standard input.
pub fn writ_with_input(dir: &Path, args: &[&str], input: &str) -> Output {
    let mut child = writ_command(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A `writ serve` process, killed on drop.
pub struct ServeProcess {
    child: Child,
    pub url: String,
}

impl ServeProcess {
    /// Runs `writ serve <args>` in `dir` (without the broker's environment variables), logging
    /// JSON to `<dir>/<name>.log`, and waits until it announces the address it listens on.
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> ServeProcess {
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(WRIT)
            .current_dir(dir)
            .arg("serve")
            .args(args)
            .env("WRIT_LOG_FORMAT", "json")
            .env_remove("WRIT_DATABASE_URL")
            .env_remove("WRIT_KEY_DIR")
            .stderr(log)
            .spawn()
            .unwrap();
        // Owned by the guard from here on, so the process is killed even if the test panics.
        let mut process = ServeProcess {
            child,
            url: String::new(),
        };
        for _ in 0..400 {
            let text = std::fs::read_to_string(&log_path).unwrap();
            let announced = text
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|event| event["fields"]["message"] == "writ is listening");
            if let Some(event) = announced {
                process.url = format!("http://{}", event["fields"]["addr"].as_str().unwrap());
                return process;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{name} did not announce its address:\n{}",
            std::fs::read_to_string(&log_path).unwrap()
        );
    }
}

impl ServeProcess {
    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown, no flush, as a crash or an OOM kill would stop it.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `$body` with `$connection` bound to a new connection to the SQLite or PostgreSQL
/// database at `$url`.
macro_rules! with_connection {
    ($url:expr, |$connection:ident| $body:expr) => {{
        use sqlx::Connection;
        if $url.starts_with("sqlite:") {
            let mut $connection = sqlx::SqliteConnection::connect($url).await.unwrap();
            $body
        } else {
            let mut $connection = sqlx::PgConnection::connect($url).await.unwrap();
            $body
        }
    }};
}

/// Runs SQL statements on a broker's database, underneath the broker.
pub async fn execute_sql(url: &str, statements: &[&str]) {
    with_connection!(url, |connection| {
        for statement in statements {
            // Fixed statements of the tests, nothing from outside.
            sqlx::raw_sql(sqlx::AssertSqlSafe(*statement))
                .execute(&mut connection)
                .await
                .unwrap();
        }
    })
}

/// Whether the database refuses `statement`.
pub async fn sql_fails(url: &str, statement: &'static str) -> bool {
    with_connection!(url, |connection| {
        sqlx::query(statement)
            .execute(&mut connection)
            .await
            .is_err()
    })
}

/// The single number `query` answers (a `SELECT COUNT(*) ...`).
pub async fn count(url: &str, query: &'static str) -> i64 {
    use sqlx::Row;
    with_connection!(url, |connection| {
        sqlx::query(query)
            .fetch_one(&mut connection)
            .await
            .unwrap()
            .get(0)
    })
}

/// The policy hash recorded with writ `writ_id` (`None` when none was).
pub async fn recorded_policy_hash(url: &str, writ_id: &str) -> Option<String> {
    use sqlx::Row;
    with_connection!(url, |connection| {
        sqlx::query("SELECT policy_hash FROM writs WHERE writ_id = $1")
            .bind(writ_id)
            .fetch_one(&mut connection)
            .await
            .unwrap()
            .get(0)
    })
}

/// Makes every writ record fail to insert, as a full disk or a lost table would, while the
/// database answers: renames the `writs` table to `writs_gone`.
pub async fn break_writs_table(url: &str) {
    execute_sql(url, &["ALTER TABLE writs RENAME TO writs_gone"]).await;
}

/// Makes every audit insert fail, as a full disk would, while the database answers.
pub async fn make_audit_inserts_fail(url: &str) {
    if url.starts_with("sqlite:") {
        execute_sql(
            url,
            &["CREATE TRIGGER audit_full BEFORE INSERT ON audit_events \
               BEGIN SELECT RAISE(ABORT, 'audit disk full'); END"],
        )
        .await;
    } else {
        execute_sql(
            url,
            &[
                "CREATE FUNCTION audit_full() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'audit disk full'; END; $$",
                "CREATE TRIGGER audit_full BEFORE INSERT ON audit_events \
                 FOR EACH ROW EXECUTE FUNCTION audit_full()",
            ],
        )
        .await;
    }
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

pub async fn drop_postgres_database(name: &str) {
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
