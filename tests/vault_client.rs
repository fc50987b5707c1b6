//! The broker's Vault client against a real OpenBao dev server (`bao server -dev`) and the real
//! PostgreSQL on 127.0.0.1:5432: token and AppRole logins, token upkeep, KV v2 with
//! check-and-set, leased database credentials renewed down and revoked, and the errors a caller
//! tells apart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use sqlx::Connection;
use writ::config::{AppRoleConfig, VaultConfig};
use writ::vault::{VaultClient, VaultError};
use writ_testkit::OpenBao;

fn private_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn token_config(address: &str, token_file: PathBuf) -> VaultConfig {
    VaultConfig {
        address: address.to_owned(),
        token_file: Some(token_file),
        approle: None,
        namespace: None,
        timeout: Duration::from_secs(5),
    }
}

async fn root_client(bao: &OpenBao, dir: &Path) -> VaultClient {
    let token = private_file(dir, "token", bao.root_token());
    VaultClient::connect(&token_config(bao.address(), token))
        .await
        .unwrap()
}

#[tokio::test]
async fn kv_writes_are_check_and_set() {
    let bao = OpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    let vault = root_client(&bao, dir.path()).await;
    assert!(vault.is_healthy());
    assert_eq!(vault.token_valid_for(), None, "a root token never expires");

    assert!(
        vault
            .kv_read("secret", "writ/keys")
            .await
            .unwrap()
            .is_none()
    );
    let first = json!({"n": 1});
    assert_eq!(
        vault
            .kv_write("secret", "writ/keys", &first, Some(0))
            .await
            .unwrap(),
        1
    );
    // A second "create only if absent" loses: the secret exists now.
    let lost = vault
        .kv_write("secret", "writ/keys", &json!({"n": 2}), Some(0))
        .await;
    assert!(matches!(lost, Err(VaultError::CasConflict)), "{lost:?}");
    assert_eq!(
        vault
            .kv_write("secret", "writ/keys", &json!({"n": 2}), Some(1))
            .await
            .unwrap(),
        2
    );
    // A write based on a stale read is refused and changes nothing.
    let stale = vault
        .kv_write("secret", "writ/keys", &json!({"n": 3}), Some(1))
        .await;
    assert!(matches!(stale, Err(VaultError::CasConflict)), "{stale:?}");
    let (version, data) = vault.kv_read("secret", "writ/keys").await.unwrap().unwrap();
    assert_eq!((version, data), (2, json!({"n": 2})));
    // Without cas, the write always lands.
    assert_eq!(
        vault
            .kv_write("secret", "writ/keys", &json!({"n": 4}), None)
            .await
            .unwrap(),
        3
    );
    // Paths that could climb out of the mount are refused before any call.
    let climbing = vault.kv_read("secret", "writ/../../sys/seal").await;
    assert!(
        matches!(climbing, Err(VaultError::Config(_))),
        "{climbing:?}"
    );
}

/// Sets up AppRole with a role whose tokens may only read and write `secret/data/writ/*`, with
/// the given token TTLs, and writes its role id and secret id files.
async fn approle_setup(bao: &OpenBao, dir: &Path, ttl: &str, max_ttl: &str) -> AppRoleConfig {
    bao.api("POST", "sys/auth/approle", Some(json!({"type": "approle"})))
        .await;
    bao.api(
        "PUT",
        "sys/policies/acl/writ",
        Some(json!({"policy": "path \"secret/data/writ/*\" { capabilities = [\"create\", \"read\", \"update\"] }"})),
    )
    .await;
    bao.api(
        "POST",
        "auth/approle/role/broker",
        Some(json!({"token_policies": ["writ"], "token_ttl": ttl, "token_max_ttl": max_ttl})),
    )
    .await;
    let role_id = bao
        .api("GET", "auth/approle/role/broker/role-id", None)
        .await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_id = bao
        .api("POST", "auth/approle/role/broker/secret-id", None)
        .await["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let role_id_file = dir.join("role-id");
    std::fs::write(&role_id_file, role_id).unwrap();
    AppRoleConfig {
        role_id_file,
        secret_id_file: private_file(dir, "secret-id", &secret_id),
        mount: "approle".into(),
    }
}

fn approle_config(address: &str, approle: AppRoleConfig) -> VaultConfig {
    VaultConfig {
        address: address.to_owned(),
        token_file: None,
        approle: Some(approle),
        namespace: None,
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn approle_logins_are_held_to_their_policy() {
    let bao = OpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    let approle = approle_setup(&bao, dir.path(), "1h", "2h").await;
    let vault = VaultClient::connect(&approle_config(bao.address(), approle))
        .await
        .unwrap();
    assert!(vault.is_healthy());
    let valid_for = vault.token_valid_for().unwrap();
    assert!(valid_for > Duration::from_secs(3500), "{valid_for:?}");
    vault
        .kv_write("secret", "writ/keys", &json!({"a": "b"}), Some(0))
        .await
        .unwrap();
    assert_eq!(
        vault.kv_read("secret", "writ/keys").await.unwrap(),
        Some((1, json!({"a": "b"})))
    );
    // Outside its policy, Vault refuses (a 502 for the broker's callers, not a 503).
    let denied = vault.kv_read("secret", "other/thing").await.unwrap_err();
    assert!(
        matches!(denied, VaultError::Refused { status: 403, .. }),
        "{denied:?}"
    );
    assert!(!denied.is_unavailable());
}

#[tokio::test]
async fn a_token_that_cannot_be_renewed_is_replaced_by_a_new_login() {
    let bao = OpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Tokens live 3 s at most: renewal cannot keep one, only a new login can.
    let approle = approle_setup(&bao, dir.path(), "3s", "3s").await;
    let vault = VaultClient::connect(&approle_config(bao.address(), approle))
        .await
        .unwrap();
    vault
        .kv_write("secret", "writ/keys", &json!({"a": "b"}), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(vault.is_healthy());
    assert!(
        vault
            .kv_read("secret", "writ/keys")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_renewable_token_is_kept_alive() {
    let bao = OpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    let created = bao
        .api(
            "POST",
            "auth/token/create",
            Some(json!({"ttl": "3s", "explicit_max_ttl": "1h", "renewable": true})),
        )
        .await;
    let token = created["auth"]["client_token"].as_str().unwrap().to_owned();
    let file = private_file(dir.path(), "token", &token);
    let vault = VaultClient::connect(&token_config(bao.address(), file))
        .await
        .unwrap();
    assert!(vault.token_valid_for().unwrap() <= Duration::from_secs(3));
    tokio::time::sleep(Duration::from_secs(7)).await;
    // Without renewal the token would have died 4 s ago.
    let (status, _) = bao
        .call_with(&token, "GET", "auth/token/lookup-self", None)
        .await;
    assert_eq!(status, 200, "the token was renewed");
    assert!(vault.is_healthy());
    vault
        .kv_write("secret", "writ/x", &json!({"a": "b"}), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn refused_and_unreachable_vaults_are_told_apart() {
    let bao = OpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A token Vault never issued.
    let bogus = private_file(dir.path(), "bogus", "s.not-a-token");
    let refused = VaultClient::connect(&token_config(bao.address(), bogus))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, VaultError::Refused { status: 403, .. }),
        "{refused:?}"
    );
    assert!(!refused.is_unavailable());

    // Nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let token = private_file(dir.path(), "token", bao.root_token());
    let unreachable = VaultClient::connect(&token_config(
        &format!("http://127.0.0.1:{closed}"),
        token.clone(),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(unreachable, VaultError::Unreachable(_)),
        "{unreachable:?}"
    );
    assert!(unreachable.is_unavailable());

    // Something accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let mut config = token_config(&format!("http://127.0.0.1:{silent_port}"), token);
    config.timeout = Duration::from_secs(1);
    let timed_out = VaultClient::connect(&config).await.unwrap_err();
    held.abort();
    assert!(matches!(timed_out, VaultError::Timeout(_)), "{timed_out:?}");
    assert!(timed_out.is_unavailable());

    // A group-readable token file is refused before any call.
    let open_file = dir.path().join("open-token");
    std::fs::write(&open_file, bao.root_token()).unwrap();
    std::fs::set_permissions(&open_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let error = VaultClient::connect(&token_config(bao.address(), open_file))
        .await
        .unwrap_err();
    assert!(matches!(error, VaultError::Config(_)), "{error:?}");
    assert!(error.to_string().contains("chmod 600"), "{error}");
}

fn postgres_admin_url() -> String {
    std::env::var("WRIT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of this test's own on the development PostgreSQL, dropped at the end.
struct Database {
    name: String,
}

impl Database {
    async fn create() -> Database {
        let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
            .await
            .expect("PostgreSQL must be reachable (WRIT_TEST_POSTGRES_URL) for the Vault tests");
        let mut bytes = [0u8; 8];
        getrandom::getrandom(&mut bytes).unwrap();
        let name = format!("writ_vault_{}", hex::encode(bytes));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        Database { name }
    }

    fn url_as(&self, user: &str, password: &str) -> String {
        let admin = postgres_admin_url();
        let rest = admin
            .split_once('@')
            .map_or("127.0.0.1:5432/postgres", |(_, rest)| rest);
        let host = rest.split_once('/').map_or(rest, |(host, _)| host);
        format!("postgres://{user}:{password}@{host}/{}", self.name)
    }

    async fn drop(self) {
        let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

/// Seconds from now until `role`'s password stops working (`VALID UNTIL`).
async fn valid_for(database: &Database, role: &str) -> f64 {
    let mut admin = sqlx::PgConnection::connect(&database.url_as("postgres", "unused"))
        .await
        .unwrap();
    sqlx::query_scalar::<_, f64>(
        "SELECT EXTRACT(EPOCH FROM rolvaliduntil - now())::float8 FROM pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .fetch_one(&mut admin)
    .await
    .unwrap()
}

#[tokio::test]
async fn database_credentials_are_leased_shortened_and_revoked() {
    let bao = OpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    let database = Database::create().await;
    bao.api(
        "POST",
        "sys/mounts/database",
        Some(json!({"type": "database"})),
    )
    .await;
    bao.api(
        "POST",
        "database/config/orders",
        Some(json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": database.url_as("{{username}}", "{{password}}") + "?sslmode=disable",
            "username": "postgres",
            "password": "unused",
            "allowed_roles": ["orders-readonly"],
        })),
    )
    .await;
    bao.api(
        "POST",
        "database/roles/orders-readonly",
        Some(json!({
            "db_name": "orders",
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
    let vault = root_client(&bao, dir.path()).await;

    let secret = vault
        .read_dynamic("database/creds/orders-readonly")
        .await
        .unwrap();
    assert!(
        secret
            .lease_id
            .starts_with("database/creds/orders-readonly/"),
        "{secret:?}"
    );
    assert_eq!(secret.lease_duration, Duration::from_secs(3600));
    assert!(secret.renewable);
    let username = secret.data["username"].as_str().unwrap().to_owned();
    let password = secret.data["password"].as_str().unwrap().to_owned();
    assert!(!format!("{secret:?}").contains(&password));

    // The credential logs in.
    let mut session = sqlx::PgConnection::connect(&database.url_as(&username, &password))
        .await
        .unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut session)
        .await
        .unwrap();
    assert_eq!(one, 1);
    let before = valid_for(&database, &username).await;
    assert!(before > 3000.0, "{before}");

    // Renewing down shortens the lease, and PostgreSQL's VALID UNTIL with it.
    let granted = vault
        .renew_lease(&secret.lease_id, Duration::from_secs(120))
        .await
        .unwrap();
    assert!(granted <= Duration::from_secs(120), "{granted:?}");
    assert!(granted >= Duration::from_secs(100), "{granted:?}");
    let after = valid_for(&database, &username).await;
    assert!((100.0..=125.0).contains(&after), "VALID UNTIL in {after} s");

    // Revoking drops the role and ends its open session.
    vault.revoke_lease(&secret.lease_id).await.unwrap();
    let ended = sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&mut session)
        .await;
    assert!(ended.is_err(), "the open session was terminated");
    let refused = sqlx::PgConnection::connect(&database.url_as(&username, &password)).await;
    assert!(refused.is_err(), "the role is gone");
    // The lease is gone: renewing it is refused (not "unavailable").
    let gone = vault
        .renew_lease(&secret.lease_id, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(gone, VaultError::Refused { status: 400, .. }),
        "{gone:?}"
    );
    // Revoking again is harmless.
    vault.revoke_lease(&secret.lease_id).await.unwrap();
    // A path that is no secret at all.
    let missing = vault
        .read_dynamic("database/creds/nobody")
        .await
        .unwrap_err();
    assert!(!missing.is_unavailable(), "{missing:?}");

    database.drop().await;
}

#[tokio::test]
async fn replicas_starting_at_once_create_the_keys_once() {
    use writ::keys::{KeyStore, Keys, VaultKeys};
    let bao = OpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    let vault = root_client(&bao, dir.path()).await;
    let replicas = (0..4).map(|_| VaultKeys::open_or_init(vault.clone(), "secret", "writ/keys"));
    let mut public_keys = Vec::new();
    for opened in futures_util::future::join_all(replicas).await {
        let keys = Keys::open(KeyStore::Vault(opened.unwrap())).await.unwrap();
        let ring = keys.current();
        assert_eq!(ring.active.kid, 1);
        public_keys.push((
            ring.records[0].public_key.clone(),
            ring.approval_record.public_key.clone(),
        ));
        // Debug output names the secret, never a key.
        let shown = format!(
            "{:?}",
            KeyStore::Vault(
                VaultKeys::open(vault.clone(), "secret", "writ/keys")
                    .await
                    .unwrap()
            )
        );
        assert!(
            shown.contains("secret/writ/keys") && !shown.contains("PRIVATE"),
            "{shown}"
        );
    }
    public_keys.dedup();
    assert_eq!(public_keys.len(), 1, "every replica loaded the same keys");
    let (version, _) = vault.kv_read("secret", "writ/keys").await.unwrap().unwrap();
    assert_eq!(version, 1, "the keys were written once");
    // A command pointed at an empty secret creates nothing.
    let error = VaultKeys::open(vault.clone(), "secret", "writ/other")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("holds no keys"), "{error}");
    assert!(
        vault
            .kv_read("secret", "writ/other")
            .await
            .unwrap()
            .is_none()
    );
}
