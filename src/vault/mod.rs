//! The broker's client of Vault or OpenBao: one authenticated connection (`[vault]`) shared by
//! the root key store (KV v2) and the exchange of writs for dynamic secrets.
//!
//! ```text
//! VaultClient::connect(&config)          log in (AppRole) or take the token file's token
//!   .kv_read(mount, path)                KV v2: Some((version, data)) or None
//!   .kv_write(mount, path, &data, cas)   KV v2 write; cas = Some(version) is check-and-set
//!   .read_dynamic(path)                  a leased secret (database/creds/<role>, ...)
//!   .renew_lease(lease_id, increment)    renew (or shorten) a lease; the duration granted
//!   .revoke_lease(lease_id)              revoke a lease now
//!   .is_healthy()                        holds a token believed valid (for /readyz)
//! ```
//!
//! A background task keeps the token alive: it renews it (renew-self) when two thirds of its
//! grant have passed and it is renewable, and logs in again (AppRole) or re-reads the token
//! file when it cannot be renewed or a renewal grants less than half of what it asked for (the
//! token reached its max TTL). Leases die with the token that created them: give the broker a
//! periodic token (or an AppRole role with `token_period`) so that one token outlives every
//! lease it takes; [`VaultClient::token_valid_for`] says how long the current one has.
//!
//! Calls go through vaultrs where it has the endpoint (AppRole login, token lookup and renewal,
//! KV v2). vaultrs 0.8 has no `sys/leases` API and its database `creds` call drops `lease_id`
//! (vaultrs issue #144), so those three calls are sent raw on the same HTTP client (`Conn::raw`):
//! simpler than declaring rustify endpoints (which would need `rustify_derive` and still strip
//! the lease fields through vaultrs' `strip`), and it reads the whole response envelope.
//!
//! The HTTP client is built here, not by vaultrs: vaultrs would read `VAULT_ADDR`,
//! `VAULT_TOKEN`, `VAULT_CACERT`... from the environment and its client follows proxies from the
//! environment and redirects (which would carry `X-Vault-Token` to wherever Vault points). This
//! one takes the address and token given, uses no proxy, follows no redirect, and times every
//! call out after `[vault] timeout`. Tokens, secret ids and secrets are never logged and no type
//! here prints them in `Debug`; response bodies are never logged.

mod error;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

pub use error::VaultError;

use crate::config::{AppRoleConfig, VaultConfig, valid_vault_path};

/// The largest Vault answer read in full (a KV secret holding the key ring is a few KiB).
const MAX_BODY: usize = 1024 * 1024;

/// A connection to Vault, cheap to clone (clones share the token and its renewal). The renewal
/// task ends when the last clone is dropped.
#[derive(Clone)]
pub struct VaultClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultClient")
            .field("address", &self.inner.conn.address)
            .field("namespace", &self.inner.conn.namespace)
            .finish_non_exhaustive()
    }
}

struct Inner {
    conn: Conn,
    session: RwLock<Arc<Session>>,
    /// False once Vault refused the token (revoked) and no new one could be had.
    refused: AtomicBool,
    renewal: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.renewal.lock()
            && let Some(task) = slot.take()
        {
            task.abort();
        }
    }
}

/// What it takes to log in and send calls.
struct Conn {
    address: String,
    namespace: Option<String>,
    timeout: Duration,
    auth: Auth,
    http: reqwest_vault::Client,
}

enum Auth {
    TokenFile(std::path::PathBuf),
    AppRole(AppRoleConfig),
}

/// A token and the vaultrs client carrying it.
struct Session {
    client: vaultrs::client::VaultClient,
    token: Token,
    /// When the token expires; `None` for a token without expiry (a root token).
    expires_at: Option<Instant>,
    /// The last grant, what renewals ask for again.
    grant: Duration,
    renewable: bool,
}

/// A Vault token: never printed.
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A leased secret read from a dynamic secrets engine (such as `database/creds/<role>`).
pub struct DynamicSecret {
    /// What renews or revokes it (`sys/leases/renew`, `sys/leases/revoke`).
    pub lease_id: String,
    /// How long the lease runs from when it was read.
    pub lease_duration: Duration,
    pub renewable: bool,
    /// The secret itself (for a database: `username`, `password`).
    pub data: Map<String, Value>,
}

impl std::fmt::Debug for DynamicSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamicSecret")
            .field("lease_id", &self.lease_id)
            .field("lease_duration", &self.lease_duration)
            .field("renewable", &self.renewable)
            .field(
                "data",
                &format_args!("<{} fields redacted>", self.data.len()),
            )
            .finish()
    }
}

/// Installs the ring rustls provider for the process (reqwest 0.13 panics without one); a
/// provider already installed is kept.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl VaultClient {
    /// Authenticates to Vault and starts keeping the token alive. Fails when a file cannot be
    /// read or is readable by others, when Vault cannot be reached, or when it refuses the login
    /// or the token.
    pub async fn connect(config: &VaultConfig) -> Result<VaultClient, VaultError> {
        config
            .validate()
            .map_err(|e| VaultError::Config(e.to_string()))?;
        install_crypto_provider();
        let auth = match (&config.token_file, &config.approle) {
            (Some(path), None) => Auth::TokenFile(path.clone()),
            (None, Some(approle)) => Auth::AppRole(approle.clone()),
            _ => {
                return Err(VaultError::Config(
                    "set exactly one of token_file and approle".into(),
                ));
            }
        };
        let http = reqwest_vault::Client::builder()
            .tls_backend_rustls()
            .no_proxy()
            .redirect(reqwest_vault::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| VaultError::Config(format!("cannot build the HTTP client: {e}")))?;
        let conn = Conn {
            address: config.address.trim_end_matches('/').to_owned(),
            namespace: config.namespace.clone(),
            timeout: config.timeout,
            auth,
            http,
        };
        let session = conn.login().await?;
        let inner = Arc::new(Inner {
            conn,
            session: RwLock::new(Arc::new(session)),
            refused: AtomicBool::new(false),
            renewal: std::sync::Mutex::new(None),
        });
        let task = tokio::spawn(keep_alive(Arc::downgrade(&inner)));
        if let Ok(mut slot) = inner.renewal.lock() {
            *slot = Some(task.abort_handle());
        }
        Ok(VaultClient { inner })
    }

    /// The server's address, as configured.
    pub fn address(&self) -> &str {
        &self.inner.conn.address
    }

    /// Whether the client holds a token it believes valid: not past its expiry, not refused by
    /// Vault at the last renewal. Says nothing of whether Vault is reachable this instant.
    pub fn is_healthy(&self) -> bool {
        !self.inner.refused.load(Ordering::Relaxed)
            && self
                .inner
                .session()
                .expires_at
                .is_none_or(|at| Instant::now() < at)
    }

    /// How long the current token has before it expires (`None`: it never does). A lease taken
    /// now dies with the token at the latest.
    pub fn token_valid_for(&self) -> Option<Duration> {
        self.inner
            .session()
            .expires_at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Reads the latest version of a KV v2 secret: its version number and data, or `None` when
    /// there is no secret at `path` (or its latest version is deleted).
    pub async fn kv_read(
        &self,
        mount: &str,
        path: &str,
    ) -> Result<Option<(u64, Value)>, VaultError> {
        check_path("mount", mount)?;
        check_path("path", path)?;
        let endpoint = vaultrs::api::kv2::requests::ReadSecretRequest::builder()
            .mount(mount)
            .path(path)
            .build()
            .map_err(|e| VaultError::Config(e.to_string()))?;
        let session = self.inner.session();
        match vaultrs::api::exec_with_result(&session.client, endpoint).await {
            Ok(secret) => Ok(Some((secret.metadata.version, secret.data))),
            Err(error) => match VaultError::from_vaultrs(error, self.inner.conn.timeout) {
                VaultError::NotFound => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Writes a new version of a KV v2 secret and answers its version number. With `cas`, the
    /// write happens only if the secret's current version is `cas` (`Some(0)`: only if there
    /// is none yet); otherwise it fails with [`VaultError::CasConflict`].
    pub async fn kv_write(
        &self,
        mount: &str,
        path: &str,
        data: &Value,
        cas: Option<u64>,
    ) -> Result<u64, VaultError> {
        check_path("mount", mount)?;
        check_path("path", path)?;
        if !data.is_object() {
            return Err(VaultError::Config("a KV v2 secret is a JSON object".into()));
        }
        let session = self.inner.session();
        let written = match cas {
            Some(version) => {
                let cas = u32::try_from(version)
                    .map_err(|_| VaultError::Config(format!("cas {version} is out of range")))?;
                let options = vaultrs::api::kv2::requests::SetSecretRequestOptions { cas };
                vaultrs::kv2::set_with_options(&session.client, mount, path, data, options).await
            }
            None => vaultrs::kv2::set(&session.client, mount, path, data).await,
        };
        written
            .map(|metadata| metadata.version)
            .map_err(|e| VaultError::from_vaultrs(e, self.inner.conn.timeout))
    }

    /// Reads a dynamic secret (a `GET` on `path`, such as `database/creds/orders-readonly`),
    /// with its lease. A secret without a lease is refused as an invalid response.
    pub async fn read_dynamic(&self, path: &str) -> Result<DynamicSecret, VaultError> {
        check_path("path", path)?;
        let answer = self
            .inner
            .conn
            .raw(
                &self.inner.session(),
                reqwest_vault::Method::GET,
                path,
                None,
            )
            .await?;
        let envelope: Envelope = serde_json::from_value(answer)
            .map_err(|_| VaultError::InvalidResponse("the answer lacks the lease fields".into()))?;
        if envelope.lease_id.is_empty() {
            return Err(VaultError::InvalidResponse(format!(
                "{path} answered a secret without a lease"
            )));
        }
        Ok(DynamicSecret {
            lease_id: envelope.lease_id,
            lease_duration: Duration::from_secs(envelope.lease_duration),
            renewable: envelope.renewable,
            data: envelope.data.unwrap_or_default(),
        })
    }

    /// Renews a lease for `increment` from now and answers the duration Vault granted. An
    /// increment shorter than what is left shortens the lease (for a database role, the
    /// password's `VALID UNTIL` moves with it); Vault may grant less than asked (max TTL).
    pub async fn renew_lease(
        &self,
        lease_id: &str,
        increment: Duration,
    ) -> Result<Duration, VaultError> {
        check_lease_id(lease_id)?;
        let body = serde_json::json!({ "lease_id": lease_id, "increment": increment.as_secs() });
        let answer = self
            .inner
            .conn
            .raw(
                &self.inner.session(),
                reqwest_vault::Method::PUT,
                "sys/leases/renew",
                Some(&body),
            )
            .await?;
        let envelope: Envelope = serde_json::from_value(answer).map_err(|_| {
            VaultError::InvalidResponse("the renewal lacks the lease fields".into())
        })?;
        Ok(Duration::from_secs(envelope.lease_duration))
    }

    /// Revokes a lease now (for a database role: runs its revocation statements). Revoking a
    /// lease that no longer exists succeeds.
    pub async fn revoke_lease(&self, lease_id: &str) -> Result<(), VaultError> {
        check_lease_id(lease_id)?;
        let body = serde_json::json!({ "lease_id": lease_id });
        self.inner
            .conn
            .raw(
                &self.inner.session(),
                reqwest_vault::Method::PUT,
                "sys/leases/revoke",
                Some(&body),
            )
            .await
            .map(|_| ())
    }
}

/// The response envelope of a leased secret.
#[derive(serde::Deserialize)]
struct Envelope {
    #[serde(default)]
    lease_id: String,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
    #[serde(default)]
    data: Option<Map<String, Value>>,
}

fn check_path(what: &str, path: &str) -> Result<(), VaultError> {
    if valid_vault_path(path) {
        return Ok(());
    }
    Err(VaultError::Config(format!(
        "{what} {path:?} is not a Vault path (segments of letters, digits, _ - . separated by /)"
    )))
}

fn check_lease_id(lease_id: &str) -> Result<(), VaultError> {
    if !lease_id.is_empty()
        && lease_id.len() <= 512
        && lease_id.chars().all(|c| c.is_ascii_graphic())
    {
        return Ok(());
    }
    Err(VaultError::Config("not a lease id".into()))
}

impl Inner {
    fn session(&self) -> Arc<Session> {
        match self.session.read() {
            Ok(session) => Arc::clone(&session),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn replace_session(&self, session: Session) {
        let session = Arc::new(session);
        match self.session.write() {
            Ok(mut slot) => *slot = session,
            Err(poisoned) => *poisoned.into_inner() = session,
        }
    }
}

impl Conn {
    /// A vaultrs client on this connection's HTTP client, carrying `token` (none when empty).
    fn vaultrs_client(&self, token: &str) -> Result<vaultrs::client::VaultClient, VaultError> {
        let address = reqwest_vault::Url::parse(&self.address)
            .map_err(|_| VaultError::Config(format!("{} is not a URL", self.address)))?;
        // Every field set here: vaultrs' builder would fill the others from VAULT_* variables.
        let settings = vaultrs::client::VaultClientSettings {
            address,
            ca_certs: Vec::new(),
            identity: None,
            timeout: Some(self.timeout),
            token: token.to_owned(),
            verify: true,
            version: 1,
            wrapping: false,
            namespace: self.namespace.clone(),
            proxy: None,
        };
        let middle = vaultrs::api::EndpointMiddleware {
            token: token.to_owned(),
            version: "v1".into(),
            wrap: None,
            namespace: self.namespace.clone(),
        };
        Ok(vaultrs::client::VaultClient {
            http: rustify::clients::reqwest::Client::new(&self.address, self.http.clone()),
            middle,
            settings,
        })
    }

    /// A new token: AppRole login, or the token file read again (and looked up).
    async fn login(&self) -> Result<Session, VaultError> {
        let error = |e| VaultError::from_vaultrs(e, self.timeout);
        match &self.auth {
            Auth::AppRole(approle) => {
                let role_id = read_file(&approle.role_id_file, "approle.role_id_file", false)?;
                let secret_id = read_file(&approle.secret_id_file, "approle.secret_id_file", true)?;
                let anonymous = self.vaultrs_client("")?;
                let auth =
                    vaultrs::auth::approle::login(&anonymous, &approle.mount, &role_id, &secret_id)
                        .await
                        .map_err(error)?;
                let grant = Duration::from_secs(auth.lease_duration);
                Ok(Session {
                    client: self.vaultrs_client(&auth.client_token)?,
                    token: Token(auth.client_token),
                    expires_at: expiry(grant),
                    grant,
                    renewable: auth.renewable,
                })
            }
            Auth::TokenFile(path) => {
                let token = read_file(path, "token_file", true)?;
                let client = self.vaultrs_client(&token)?;
                let lookup = vaultrs::token::lookup_self(&client).await.map_err(error)?;
                let grant = Duration::from_secs(lookup.ttl);
                Ok(Session {
                    client,
                    token: Token(token),
                    expires_at: expiry(grant),
                    grant: Duration::from_secs(lookup.creation_ttl.max(lookup.ttl)),
                    renewable: lookup.renewable.unwrap_or(false),
                })
            }
        }
    }
}

impl Inner {
    /// Renews the token, or gets a new one when it cannot be renewed (enough).
    async fn refresh(&self) -> Result<(), VaultError> {
        let conn = &self.conn;
        let session = self.session();
        if session.renewable {
            let increment = format!("{}s", session.grant.as_secs().max(1));
            match vaultrs::token::renew_self(&session.client, Some(&increment)).await {
                Ok(auth) => {
                    let granted = Duration::from_secs(auth.lease_duration);
                    // Less than half of what was asked: the token nears its max TTL.
                    if granted >= session.grant / 2 {
                        self.replace_session(Session {
                            client: conn.vaultrs_client(&session.token.0)?,
                            token: Token(session.token.0.clone()),
                            expires_at: expiry(granted),
                            grant: session.grant,
                            renewable: auth.renewable,
                        });
                        tracing::debug!(ttl = granted.as_secs(), "Vault token renewed");
                        return Ok(());
                    }
                    tracing::info!(
                        ttl = granted.as_secs(),
                        "the Vault token nears its max TTL; getting a new one"
                    );
                }
                Err(error) => {
                    let error = VaultError::from_vaultrs(error, conn.timeout);
                    if error.is_unavailable() {
                        return Err(error);
                    }
                    tracing::warn!(%error, "the Vault token could not be renewed; getting a new one");
                }
            }
        }
        let session = conn.login().await?;
        tracing::info!(ttl = session.grant.as_secs(), "new Vault token");
        self.replace_session(session);
        Ok(())
    }
}

impl Conn {
    /// Sends one call the typed API lacks and answers the JSON envelope (`null` for 204).
    async fn raw(
        &self,
        session: &Session,
        method: reqwest_vault::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, VaultError> {
        let url = format!("{}/v1/{path}", self.address);
        let mut request = self
            .http
            .request(method, &url)
            .header("X-Vault-Request", "true")
            .header("X-Vault-Token", session.token.0.as_str());
        if let Some(namespace) = &self.namespace {
            request = request.header("X-Vault-Namespace", namespace.as_str());
        }
        if let Some(body) = body {
            let bytes = serde_json::to_vec(body)
                .map_err(|e| VaultError::Config(format!("cannot encode the request: {e}")))?;
            request = request
                .header("Content-Type", "application/json")
                .body(bytes);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| VaultError::from_http(&e, self.timeout))?;
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| VaultError::from_http(&e, self.timeout))?
        {
            if bytes.len() + chunk.len() > MAX_BODY {
                return Err(VaultError::InvalidResponse(format!(
                    "the answer is larger than {MAX_BODY} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !(200..300).contains(&status) {
            #[derive(serde::Deserialize)]
            struct Errors {
                #[serde(default)]
                errors: Vec<String>,
            }
            let errors = serde_json::from_slice::<Errors>(&bytes)
                .map(|e| e.errors)
                .unwrap_or_default();
            return Err(VaultError::from_status(status, &errors));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|_| VaultError::InvalidResponse("the answer is not JSON".into()))
    }
}

/// When the token's grant runs out (`None`: a grant of 0 is a token that never expires).
fn expiry(grant: Duration) -> Option<Instant> {
    if grant.is_zero() {
        return None;
    }
    Instant::now().checked_add(grant)
}

/// How long to wait before refreshing `session`: until a third of its grant is left, or a
/// short pause after a failed attempt. `None` for a token that never expires.
fn next_refresh(session: &Session, failed: bool) -> Option<Duration> {
    let at = session.expires_at?;
    let remaining = at.saturating_duration_since(Instant::now());
    let due = remaining.saturating_sub(session.grant / 3);
    let wait = if failed {
        due.max(Duration::from_secs(2))
    } else {
        due
    };
    Some(wait.clamp(Duration::from_millis(500), Duration::from_secs(24 * 3600)))
}

/// Keeps the token of the client behind `inner` alive until that client is dropped.
async fn keep_alive(inner: Weak<Inner>) {
    let mut failed = false;
    loop {
        let wait = match inner.upgrade() {
            Some(inner) => next_refresh(&inner.session(), failed),
            None => return,
        };
        let Some(wait) = wait else {
            tracing::debug!("the Vault token does not expire; nothing to renew");
            return;
        };
        tokio::time::sleep(wait).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match inner.refresh().await {
            Ok(()) => {
                failed = false;
                inner.refused.store(false, Ordering::Relaxed);
            }
            Err(error) => {
                failed = true;
                if !error.is_unavailable() {
                    inner.refused.store(true, Ordering::Relaxed);
                }
                tracing::error!(%error, "the Vault token could not be renewed or replaced; retrying");
            }
        }
    }
}

/// The trimmed contents of a token, role id or secret id file (at most 4 KiB). `private`:
/// refused when group or others may read it.
fn read_file(path: &Path, setting: &str, private: bool) -> Result<String, VaultError> {
    let fail = |m: String| VaultError::Config(format!("vault.{setting} {}: {m}", path.display()));
    if private {
        crate::keys::check_private_file(path)
            .map_err(|e| VaultError::Config(format!("vault.{setting}: {e}")))?;
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let value = text.trim();
    if value.is_empty() {
        return Err(fail("the file is empty".into()));
    }
    if value.len() > 4096 || value.chars().any(|c| !c.is_ascii_graphic()) {
        return Err(fail("the file does not hold one token or id".into()));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let secret = DynamicSecret {
            lease_id: "database/creds/ro/abc".into(),
            lease_duration: Duration::from_secs(60),
            renewable: true,
            data: serde_json::json!({"username": "v-ro-1", "password": "hunter2-secret"})
                .as_object()
                .cloned()
                .unwrap(),
        };
        let shown = format!("{secret:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("v-ro-1"), "{shown}");
        assert!(shown.contains("database/creds/ro/abc"), "{shown}");
        assert_eq!(
            format!("{:?}", Token("s.abcdef".into())),
            "Token(<redacted>)"
        );
    }

    #[test]
    fn token_files_must_be_private_and_hold_a_token() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s.token\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = read_file(&path, "token_file", true)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("vault.token_file") && error.contains("chmod 600"),
            "{error}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_file(&path, "token_file", true).unwrap(), "s.token");
        std::fs::write(&path, "  \n").unwrap();
        let error = read_file(&path, "token_file", true)
            .unwrap_err()
            .to_string();
        assert!(error.contains("empty"), "{error}");
        let missing = read_file(&dir.path().join("nope"), "token_file", true).unwrap_err();
        assert!(
            missing.to_string().contains("vault.token_file"),
            "{missing}"
        );
    }
}
