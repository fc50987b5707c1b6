//! Typed broker configuration: a TOML file, then `WRIT_*` environment variables and command-line
//! flags on top (applied by the CLI). Unknown fields are errors, so a typo never silently falls
//! back to a default. Durations are written the human way ("5m", "30s").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The longest lifetime any writ may ever have, whatever a policy or the config says. Writs live
/// minutes; a broker configured for more is refused at start.
pub const ABSOLUTE_MAX_TTL: Duration = Duration::from_secs(60 * 60);

/// The largest clock skew tolerated on workload tokens.
pub const ABSOLUTE_MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// The longest any writ can be honoured: the lifetime cap plus the largest skew a verifier may
/// allow. A task or agent revocation is served this long after its cut-off.
pub const WRIT_LIFETIME_BOUND: Duration = Duration::from_secs(65 * 60);

/// The name of the development identity issuer, trusted only in dev mode.
pub const DEV_ISSUER_NAME: &str = "writ-dev";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `sqlite://path` (embedded default) or `postgres://...` (replicas).
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// Directory of the broker's Ed25519 root keys (0700; key files 0600).
    #[serde(default = "default_key_dir")]
    pub key_dir: PathBuf,
    /// Directory of policy files (`*.toml`; `*.test.toml` are policy tests). Required outside dev
    /// mode; in dev mode the built-in playground policy is used when unset.
    #[serde(default)]
    pub policy_dir: Option<PathBuf>,
    /// How often the policy files are read for a change (also on SIGHUP). A changed set runs
    /// once it is checked in full; an invalid one is refused and the running set stays.
    #[serde(default = "default_policy_reload_interval", with = "humantime_serde")]
    pub policy_reload_interval: Duration,
    /// Development mode: trusts the built-in development identity issuer. Loopback only.
    #[serde(default)]
    pub dev: bool,
    /// Hard cap on any writ's lifetime; every policy's `max_ttl` must fit under it.
    #[serde(default = "default_max_ttl", with = "humantime_serde")]
    pub max_ttl: Duration,
    /// Tolerated clock difference with identity issuers for `exp`, `nbf` and `iat`.
    #[serde(default = "default_clock_skew", with = "humantime_serde")]
    pub clock_skew: Duration,
    /// A request taking longer than this in all is cut off with `503 timeout` (a slow client or
    /// a stuck dependency; issuers and the database have shorter timeouts of their own).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How often the revocation view is re-read from the database even without a
    /// notification (PostgreSQL notifies replicas at once; this catches a lost notification).
    #[serde(default = "default_revocation_poll", with = "humantime_serde")]
    pub revocation_poll: Duration,
    /// How often the revocation stream sends a heartbeat, which is what keeps a verifier's view
    /// fresh while nothing is revoked: keep it well under verifiers' staleness bound.
    #[serde(default = "default_revocation_heartbeat", with = "humantime_serde")]
    pub revocation_heartbeat: Duration,
    /// How often the audit chain's head is signed into a checkpoint (when it moved).
    #[serde(
        default = "default_audit_checkpoint_interval",
        with = "humantime_serde"
    )]
    pub audit_checkpoint_interval: Duration,
    /// Refusals of credentials that never verified are counted and written as one audit event
    /// per action, issuer and code per window of this length.
    #[serde(default = "default_audit_refusal_window", with = "humantime_serde")]
    pub audit_refusal_window: Duration,
    /// Bounds on connections (`[connections]`).
    #[serde(default)]
    pub connections: ConnectionLimits,
    /// Trusted workload identity issuers.
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
    /// Human approvals: how approvers are told (`[approvals]`).
    #[serde(default)]
    pub approvals: ApprovalsConfig,
    /// The Vault or OpenBao server the broker talks to (`[vault]`), when it keeps its root keys
    /// there or exchanges writs for dynamic secrets.
    #[serde(default)]
    pub vault: Option<VaultConfig>,
    /// Where the root keys live (`[keys]`): the key directory (default) or Vault.
    #[serde(default)]
    pub keys: KeysConfig,
    /// Exchanging writs for native credentials (`[exchange]`).
    #[serde(default)]
    pub exchange: ExchangeConfig,
}

/// `[exchange]`: which writs may be exchanged, and for what.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// The service name a writ must list to be exchanged: a writ for other services is not
    /// accepted here, so an agent asks for exchangeable writs knowingly.
    #[serde(default = "default_exchange_service")]
    pub service: String,
    /// Vault/OpenBao dynamic secrets (`[exchange.vault]`; the connection is `[vault]`).
    #[serde(default)]
    pub vault: Option<VaultExchangeConfig>,
    /// AWS: STS credentials for IAM roles (`[exchange.aws]`).
    #[serde(default)]
    pub aws: Option<crate::exchange::aws::AwsExchangeConfig>,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        ExchangeConfig {
            service: default_exchange_service(),
            vault: None,
            aws: None,
        }
    }
}

impl ExchangeConfig {
    fn validate(&self, vault: Option<&VaultConfig>) -> Result<(), ConfigError> {
        let service_ok = !self.service.is_empty()
            && self.service.len() <= 128
            && self
                .service
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !service_ok {
            return Err(ConfigError::Invalid(format!(
                "exchange.service {:?} must be 1-128 letters, digits, '-', '_', '.' or ':'",
                self.service
            )));
        }
        if self.vault.is_some() && vault.is_none() {
            return Err(ConfigError::Invalid(
                "[exchange.vault] needs the Vault connection in [vault]".into(),
            ));
        }
        if let Some(aws) = &self.aws {
            aws.validate()
                .map_err(|m| ConfigError::Invalid(format!("exchange.aws.{m}")))?;
        }
        let mut names = std::collections::HashSet::new();
        for role in self.vault.iter().flat_map(|vault| &vault.roles) {
            role.validate().map_err(ConfigError::Invalid)?;
            if !names.insert(role.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "vault exchange role {:?} is configured twice",
                    role.name
                )));
            }
        }
        Ok(())
    }
}

fn default_exchange_service() -> String {
    crate::exchange::DEFAULT_SERVICE.to_owned()
}

/// `[exchange.vault]`: the roles agents may exchange writs for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultExchangeConfig {
    #[serde(default)]
    pub roles: Vec<crate::exchange::VaultRole>,
}

/// `[vault]`: the connection to Vault or OpenBao, shared by the key store and the exchange.
/// Holds file names only, never a secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// `https://...` (plain `http://` only to loopback).
    pub address: String,
    /// A file (mode 0600) holding a Vault token; re-read when the token can no longer be
    /// renewed. Either this or `approle`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// AppRole login. Either this or `token_file`.
    #[serde(default)]
    pub approle: Option<AppRoleConfig>,
    /// A Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Each call to Vault is cut off after this (1s to 60s).
    #[serde(default = "default_vault_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// `[vault.approle]` (or `approle = { ... }`): AppRole login, both files re-read at each login.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRoleConfig {
    /// A file holding the role id.
    pub role_id_file: PathBuf,
    /// A file (mode 0600) holding the secret id.
    pub secret_id_file: PathBuf,
    /// Where the AppRole auth method is mounted.
    #[serde(default = "default_approle_mount")]
    pub mount: String,
}

/// `[keys]`: where the broker's root keys and approval key are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// `dir` (the key directory, `key_dir`) or `vault` (one KV v2 secret; needs `[vault]`).
    #[serde(default)]
    pub store: KeyStoreKind,
    /// The KV v2 mount of the secret.
    #[serde(default = "default_keys_vault_mount")]
    pub vault_mount: String,
    /// The secret's path under the mount.
    #[serde(default = "default_keys_vault_path")]
    pub vault_path: String,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            store: KeyStoreKind::default(),
            vault_mount: default_keys_vault_mount(),
            vault_path: default_keys_vault_path(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStoreKind {
    #[default]
    Dir,
    Vault,
}

fn default_vault_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_approle_mount() -> String {
    "approle".into()
}
fn default_keys_vault_mount() -> String {
    "secret".into()
}
fn default_keys_vault_path() -> String {
    "writ/keys".into()
}

/// Whether `path` is a Vault path writ may use (a mount, a secret path, a role path): segments
/// of ASCII letters, digits, `_`, `-` and `.`, separated by single `/`, none of them `.` or `..`,
/// at most 256 bytes. What a path can name is then up to Vault's policies, never to `..`.
pub fn valid_vault_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 256
        && path.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        })
}

impl VaultConfig {
    /// Checks what can be checked without reading files or calling Vault; the files are read
    /// (and their modes checked) when the broker connects, at start.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(format!("vault.{m}")));
        match reqwest::Url::parse(&self.address) {
            Ok(url)
                if url_https_or_loopback(&url)
                    && url.query().is_none()
                    && url.fragment().is_none()
                    && url.username().is_empty()
                    && url.password().is_none() => {}
            _ => {
                return invalid(
                    "address must be an https:// URL such as https://vault.example:8200 \
                     (plain http only to loopback)",
                );
            }
        }
        match (&self.token_file, &self.approle) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "[vault] sets both token_file and approle: authenticate with one of them"
                        .into(),
                ));
            }
            (None, None) => {
                return Err(ConfigError::Invalid(
                    "[vault] needs token_file or approle = { role_id_file, secret_id_file } to \
                     authenticate"
                        .into(),
                ));
            }
            _ => {}
        }
        if let Some(approle) = &self.approle
            && !valid_vault_path(&approle.mount)
        {
            return invalid("approle.mount must be a Vault path such as \"approle\"");
        }
        if let Some(namespace) = &self.namespace
            && !valid_vault_path(namespace)
        {
            return invalid("namespace must be a Vault namespace path such as \"team/writ\"");
        }
        ranges::VAULT_TIMEOUT
            .check("vault.timeout", self.timeout)
            .map_err(ConfigError::Invalid)
    }
}

impl KeysConfig {
    fn validate(&self, vault: Option<&VaultConfig>) -> Result<(), ConfigError> {
        if self.store != KeyStoreKind::Vault {
            return Ok(());
        }
        if vault.is_none() {
            return Err(ConfigError::Invalid(
                "keys.store = \"vault\" needs a [vault] section saying how to reach Vault".into(),
            ));
        }
        for (setting, value) in [
            ("keys.vault_mount", &self.vault_mount),
            ("keys.vault_path", &self.vault_path),
        ] {
            if !valid_vault_path(value) {
                return Err(ConfigError::Invalid(format!(
                    "{setting} = {value:?} is not a Vault path (segments of letters, digits, \
                     _ - . separated by /)"
                )));
            }
        }
        Ok(())
    }
}

/// `[approvals]`: where approvers decide and how they are told of new requests.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// The approval page's public URL (such as `https://writ.example/approvals`): webhook
    /// bodies link to each request under it.
    #[serde(default)]
    pub page_url: Option<String>,
    /// A webhook POSTed for every new request (`[approvals.webhook]`).
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// How approvers log in to the approval page (`[approvals.login]`); without it the page
    /// is not served.
    #[serde(default)]
    pub login: Option<LoginConfig>,
}

/// `[approvals.login]`: approvers log in to the approval page (`/approvals`) through an
/// OpenID Provider, with the authorization code flow and PKCE.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// The provider's issuer URL (`https://...`, or `http://` to loopback); its discovery
    /// document must name exactly this issuer.
    pub issuer: String,
    /// The broker's client id at the provider; ID tokens must be for it.
    pub client_id: String,
    /// A file (mode 0600) holding the client secret, for a confidential client (sent with
    /// HTTP Basic at the token endpoint). Without it the broker is a public client (PKCE only).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The broker's `/approvals/callback` as the browser sees it, registered at the provider:
    /// `https://writ.example/approvals/callback`.
    pub redirect_url: String,
    /// The ID token claim that names the approver (a principal: letters, digits and
    /// `. _ @ + : -`, at most 128 bytes). A login without it is refused.
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    /// The ID token claim listing the approver's groups (an array of strings; absent: none).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// A login whose groups include one of these holds the approver role; others may log in
    /// but see nothing to approve.
    pub approver_groups: Vec<String>,
    /// How long a login lasts.
    #[serde(default = "default_session_ttl", with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Scopes asked for besides `openid`: whatever makes the provider put the principal and
    /// groups claims in the ID token.
    #[serde(default = "default_login_scopes")]
    pub scopes: Vec<String>,
}

fn default_login_scopes() -> Vec<String> {
    vec!["email".into(), "groups".into()]
}

/// Whether `scope` is an OAuth scope token (RFC 6749: printable ASCII but space, `"` and `\`).
fn valid_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= 128
        && scope
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

fn default_principal_claim() -> String {
    "email".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_session_ttl() -> Duration {
    Duration::from_secs(8 * 3600)
}

/// Whether `url` is an `https://` URL, or an `http://` one to a loopback host.
pub fn https_or_loopback(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|url| url_https_or_loopback(&url))
}

fn url_https_or_loopback(url: &reqwest::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => {
            let host = url.host_str().unwrap_or_default();
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            host == "localhost"
                || bare
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
}

impl LoginConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(format!("approvals.login.{m}")));
        match reqwest::Url::parse(&self.issuer) {
            Ok(url) if url_https_or_loopback(&url) && url.query().is_none() => {}
            _ => {
                return invalid(
                    "issuer must be an https:// URL (plain http only to loopback)".into(),
                );
            }
        }
        match reqwest::Url::parse(&self.redirect_url) {
            Ok(url)
                if url_https_or_loopback(&url)
                    && url.path() == "/approvals/callback"
                    && url.query().is_none()
                    && url.fragment().is_none()
                    && url.username().is_empty()
                    && url.password().is_none() => {}
            _ => {
                return invalid(
                    "redirect_url must be the broker's /approvals/callback as browsers reach it, \
                     such as https://writ.example/approvals/callback (plain http only to loopback)"
                        .into(),
                );
            }
        }
        if self.client_id.is_empty() || self.client_id.chars().any(char::is_control) {
            return invalid("client_id must be set".into());
        }
        for (setting, claim) in [
            ("principal_claim", &self.principal_claim),
            ("groups_claim", &self.groups_claim),
        ] {
            if claim.is_empty() || claim.len() > 128 || claim.chars().any(char::is_control) {
                return invalid(format!("{setting} must name a claim"));
            }
        }
        if self.approver_groups.is_empty() {
            return invalid(
                "approver_groups must name at least one group: its members hold the approver role"
                    .into(),
            );
        }
        if let Some(bad) = self
            .approver_groups
            .iter()
            .find(|group| !crate::policy::valid_group(group))
        {
            return invalid(format!(
                "approver_groups: {bad:?} is not a group name (1 to 128 printable characters)"
            ));
        }
        if self.scopes.len() > 16 || !self.scopes.iter().all(|scope| valid_scope(scope)) {
            return invalid("scopes must be at most 16 OAuth scope names".into());
        }
        ranges::SESSION_TTL
            .check("approvals.login.session_ttl", self.session_ttl)
            .map_err(ConfigError::Invalid)
    }
}

/// `[approvals.webhook]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://...` (or `http://` to loopback).
    pub url: String,
    /// A file (mode 0600) holding the shared secret of the `Writ-Signature` HMAC, at least 32
    /// bytes.
    pub secret_file: PathBuf,
    /// Attempts per request before giving up (1 to 20).
    #[serde(default = "default_webhook_attempts")]
    pub attempts: u32,
    /// The pause before the first retry, doubled for each further one (at most 60 s).
    #[serde(default = "default_webhook_retry_base", with = "humantime_serde")]
    pub retry_base: Duration,
}

fn default_webhook_attempts() -> u32 {
    5
}
fn default_webhook_retry_base() -> Duration {
    Duration::from_secs(1)
}

impl WebhookConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let loopback_http = self.url.starts_with("http://127.0.0.1")
            || self.url.starts_with("http://[::1]")
            || self.url.starts_with("http://localhost");
        if !(self.url.starts_with("https://") || loopback_http) {
            return invalid(
                "approvals.webhook.url must be https:// (plain http only to loopback)".into(),
            );
        }
        if !(1..=20).contains(&self.attempts) {
            return invalid("approvals.webhook.attempts must be between 1 and 20".into());
        }
        ranges::WEBHOOK_RETRY_BASE
            .check("approvals.webhook.retry_base", self.retry_base)
            .map_err(ConfigError::Invalid)
    }
}

/// Bounds on what clients can hold open, so that idle, slow or streaming clients cannot starve
/// issuance of connections or descriptors.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionLimits {
    /// Connections open at once; one more is answered `503 over_capacity` and closed.
    #[serde(default = "default_max_connections")]
    pub max: usize,
    /// Revocation streams open at once (each also holds a connection); one more is answered
    /// `503 over_capacity` with `Retry-After`. At most half of `max`, so streams never take
    /// every connection.
    #[serde(default = "default_max_revocation_streams")]
    pub max_revocation_streams: usize,
    /// A client must send a request's headers within this; it also closes a connection left
    /// idle between requests.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A write to a client blocked this long (it stopped reading its answers or its stream)
    /// closes the connection.
    #[serde(default = "default_write_timeout", with = "humantime_serde")]
    pub write_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max: default_max_connections(),
            max_revocation_streams: default_max_revocation_streams(),
            header_read_timeout: default_header_read_timeout(),
            write_timeout: default_write_timeout(),
        }
    }
}

impl ConnectionLimits {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if !(16..=65_536).contains(&self.max) {
            return invalid("connections.max must be between 16 and 65536");
        }
        if self.max_revocation_streams == 0 || self.max_revocation_streams > self.max / 2 {
            return invalid(
                "connections.max_revocation_streams must be between 1 and half of connections.max",
            );
        }
        Ok(())
    }
}

fn default_audit_refusal_window() -> Duration {
    Duration::from_secs(10)
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_revocation_streams() -> usize {
    256
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_write_timeout() -> Duration {
    Duration::from_secs(10)
}

/// One trusted workload identity issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Short name that policies refer to (`issuer = "kubernetes"`).
    pub name: String,
    /// The issuer URL; tokens must carry exactly this `iss`.
    pub issuer: String,
    /// Where the signing keys come from; OIDC discovery on `issuer` when unset.
    #[serde(default)]
    pub jwks: Option<JwksSource>,
    /// The audience tokens must carry in `aud`.
    pub audience: String,
    /// Accepted signature algorithms. `none` and HMAC algorithms are never accepted.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// How the agent's identity is derived from claims: `{a/b}` is replaced by the claim at that
    /// path (segments split on `/`, so `{kubernetes.io/namespace}` reads a nested claim).
    pub agent: String,
    /// How often the key set is refreshed even when every `kid` is known.
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// The shortest interval between two fetches caused by unknown `kid`s.
    #[serde(default = "default_jwks_min_interval", with = "humantime_serde")]
    pub jwks_min_refetch_interval: Duration,
}

/// Where an issuer's keys are read from when it has no discovery document.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum JwksSource {
    Url(String),
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// The embedded default: SQLite and keys under `./writ-data`, loopback, dev mode off.
    pub fn default_embedded() -> Config {
        Config {
            listen: default_listen(),
            database_url: default_database_url(),
            key_dir: default_key_dir(),
            policy_dir: None,
            policy_reload_interval: default_policy_reload_interval(),
            dev: false,
            max_ttl: default_max_ttl(),
            clock_skew: default_clock_skew(),
            request_timeout: default_request_timeout(),
            revocation_poll: default_revocation_poll(),
            revocation_heartbeat: default_revocation_heartbeat(),
            audit_checkpoint_interval: default_audit_checkpoint_interval(),
            audit_refusal_window: default_audit_refusal_window(),
            connections: ConnectionLimits::default(),
            issuers: Vec::new(),
            approvals: ApprovalsConfig::default(),
            vault: None,
            keys: KeysConfig::default(),
            exchange: ExchangeConfig::default(),
        }
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            message: error.to_string(),
        })
    }

    /// Checks what serde cannot: every duration's range, dev-mode exposure, issuer names.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        for (setting, value, range) in [
            ("max_ttl", self.max_ttl, ranges::MAX_TTL),
            ("clock_skew", self.clock_skew, ranges::CLOCK_SKEW),
            (
                "request_timeout",
                self.request_timeout,
                ranges::REQUEST_TIMEOUT,
            ),
            (
                "revocation_poll",
                self.revocation_poll,
                ranges::REVOCATION_POLL,
            ),
            (
                "policy_reload_interval",
                self.policy_reload_interval,
                ranges::POLICY_RELOAD_INTERVAL,
            ),
            (
                "revocation_heartbeat",
                self.revocation_heartbeat,
                ranges::REVOCATION_HEARTBEAT,
            ),
            (
                "audit_checkpoint_interval",
                self.audit_checkpoint_interval,
                ranges::AUDIT_CHECKPOINT_INTERVAL,
            ),
            (
                "audit_refusal_window",
                self.audit_refusal_window,
                ranges::AUDIT_REFUSAL_WINDOW,
            ),
            (
                "connections.header_read_timeout",
                self.connections.header_read_timeout,
                ranges::HEADER_READ_TIMEOUT,
            ),
            (
                "connections.write_timeout",
                self.connections.write_timeout,
                ranges::WRITE_TIMEOUT,
            ),
        ] {
            range.check(setting, value).map_err(ConfigError::Invalid)?;
        }
        for issuer in &self.issuers {
            let within_issuer =
                |m: String| ConfigError::Invalid(format!("issuer {:?}: {m}", issuer.name));
            ranges::JWKS_REFRESH
                .check("jwks_refresh", issuer.jwks_refresh)
                .map_err(within_issuer)?;
            ranges::JWKS_MIN_REFETCH_INTERVAL
                .check(
                    "jwks_min_refetch_interval",
                    issuer.jwks_min_refetch_interval,
                )
                .map_err(within_issuer)?;
        }
        if self.dev && !self.listen.ip().is_loopback() {
            return invalid(format!(
                "dev mode trusts a built-in identity issuer and may only listen on loopback, not {}",
                self.listen
            ));
        }
        self.connections.validate()?;
        if let Some(webhook) = &self.approvals.webhook {
            webhook.validate()?;
        }
        if let Some(login) = &self.approvals.login {
            login.validate()?;
        }
        if let Some(vault) = &self.vault {
            vault.validate()?;
        }
        self.keys.validate(self.vault.as_ref())?;
        if !self.dev && self.policy_dir.is_none() {
            return invalid("policy_dir is required outside dev mode".into());
        }
        self.exchange.validate(self.vault.as_ref())?;
        let mut names = std::collections::HashSet::new();
        for issuer in &self.issuers {
            if issuer.name == DEV_ISSUER_NAME {
                return invalid(format!("the issuer name {DEV_ISSUER_NAME:?} is reserved"));
            }
            if !names.insert(issuer.name.as_str()) {
                return invalid(format!("issuer {:?} is configured twice", issuer.name));
            }
        }
        Ok(())
    }
}

/// The range of every configured duration. A zero interval would panic a timer or switch a rate
/// limit off; an absurdly long one would silently disable what it schedules. Values outside are
/// refused at start with the setting's name and its range.
pub mod ranges {
    use std::time::Duration;

    /// An inclusive range of durations.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct DurationRange {
        pub low: Duration,
        pub high: Duration,
    }

    const fn range(low: Duration, high: Duration) -> DurationRange {
        DurationRange { low, high }
    }
    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
    const fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    pub const MAX_TTL: DurationRange = range(s(10), super::ABSOLUTE_MAX_TTL);
    pub const CLOCK_SKEW: DurationRange = range(s(0), super::ABSOLUTE_MAX_SKEW);
    pub const REQUEST_TIMEOUT: DurationRange = range(s(1), s(5 * 60));
    pub const REVOCATION_POLL: DurationRange = range(ms(100), s(60));
    pub const REVOCATION_HEARTBEAT: DurationRange = range(ms(100), s(60));
    /// Reading the policy files (a few KiB) often costs little; rarely, a fix waits.
    pub const POLICY_RELOAD_INTERVAL: DurationRange = range(ms(100), s(10 * 60));
    pub const AUDIT_CHECKPOINT_INTERVAL: DurationRange = range(s(1), s(24 * 3600));
    pub const AUDIT_REFUSAL_WINDOW: DurationRange = range(s(1), s(5 * 60));
    pub const HEADER_READ_TIMEOUT: DurationRange = range(s(1), s(60));
    pub const WRITE_TIMEOUT: DurationRange = range(s(1), s(5 * 60));
    /// Scheduled refetch of an issuer's keys: often enough to pick up a rotation, rarely enough
    /// not to poll the issuer.
    pub const JWKS_REFRESH: DurationRange = range(s(30), s(24 * 3600));
    /// The unknown-`kid` rate limit: at most one fetch per second per issuer however many forged
    /// tokens arrive, and a rotated issuer key is accepted within 5 minutes at worst.
    pub const JWKS_MIN_REFETCH_INTERVAL: DurationRange = range(s(1), s(5 * 60));
    pub const WEBHOOK_RETRY_BASE: DurationRange = range(ms(100), s(60));
    /// An approver's login on the approval page: long enough for a working day, never days.
    pub const SESSION_TTL: DurationRange = range(s(5 * 60), s(24 * 3600));
    /// One call to Vault: long enough for a loaded server, short enough that a request waiting
    /// on it is answered well within `request_timeout`.
    pub const VAULT_TIMEOUT: DurationRange = range(s(1), s(60));

    impl DurationRange {
        pub fn contains(&self, value: Duration) -> bool {
            self.low <= value && value <= self.high
        }

        /// `Err` names the setting, the value and the range.
        pub fn check(&self, setting: &str, value: Duration) -> Result<(), String> {
            if self.contains(value) {
                return Ok(());
            }
            Err(format!(
                "{setting} = \"{}\" is out of range: it must be between {} and {}",
                humantime::format_duration(value),
                humantime::format_duration(self.low),
                humantime::format_duration(self.high),
            ))
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_database_url() -> String {
    "sqlite://writ-data/writ.db".into()
}
fn default_key_dir() -> PathBuf {
    PathBuf::from("writ-data/keys")
}
fn default_max_ttl() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_clock_skew() -> Duration {
    Duration::from_secs(30)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_revocation_poll() -> Duration {
    Duration::from_secs(1)
}
fn default_policy_reload_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_revocation_heartbeat() -> Duration {
    Duration::from_secs(2)
}
fn default_audit_checkpoint_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}
fn default_jwks_refresh() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_jwks_min_interval() -> Duration {
    Duration::from_secs(10)
}

/// Serde adapter for human durations ("5m") in TOML.
pub mod humantime_serde {
    use serde::Deserializer;
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(Human)
    }

    /// Text with a unit; a bare number gets an answer saying how to write it.
    struct Human;

    impl serde::de::Visitor<'_> for Human {
        type Value = Duration;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration with a unit, e.g. \"30s\" or \"10m\"")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
            humantime::parse_duration(text).map_err(|e| {
                E::custom(format!(
                    "{text:?}: {e}; write a duration with a unit, e.g. \"30s\" or \"10m\""
                ))
            })
        }

        fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<Duration, E> {
            match u64::try_from(number) {
                Ok(seconds) => self.visit_u64(seconds),
                Err(_) => Err(E::custom("a duration cannot be negative")),
            }
        }

        fn visit_u64<E: serde::de::Error>(self, seconds: u64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "durations are text with a unit: for {seconds} seconds write \"{}\"",
                humantime::format_duration(Duration::from_secs(seconds))
            )))
        }

        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Duration, E> {
            Err(E::custom(
                "durations are text with a unit, e.g. \"1500ms\" or \"2m\"",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn empty_file_is_the_embedded_default_but_needs_policies_outside_dev() {
        let config = parse("").unwrap();
        assert_eq!(config.listen, default_listen());
        assert!(config.validate().is_err());
    }

    #[test]
    fn unknown_fields_are_errors() {
        assert!(parse("lisen = \"127.0.0.1:1\"").is_err());
    }

    #[test]
    fn the_aws_exchange_is_read_and_checked_by_name() {
        let text = r#"
            dev = true
            [exchange.aws]
            region = "us-east-1"
            [[exchange.aws.roles]]
            name = "reports"
            role_arn = "arn:aws:iam::123456789012:role/writ-reports"
            resources = ["aws:s3/reports-bucket/*"]
        "#;
        let config = parse(text).unwrap();
        config.validate().unwrap();
        let aws = config.exchange.aws.as_ref().unwrap();
        assert_eq!(aws.roles[0].max_session, Duration::from_secs(3600));
        assert!(parse("").unwrap().exchange.aws.is_none());

        let bad = parse(&text.replace("us-east-1", "US")).unwrap();
        let error = bad.validate().unwrap_err().to_string();
        assert!(error.contains("exchange.aws.region"), "{error}");
        assert!(parse(&text.replace("[exchange.aws]", "[exchange.aws]\nregoin = 1")).is_err());
    }

    #[test]
    fn dev_mode_refuses_non_loopback() {
        let config = parse("dev = true\nlisten = \"0.0.0.0:8080\"").unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("loopback"), "{error}");
    }

    #[test]
    fn webhooks_go_over_https_or_to_loopback_with_bounded_retries() {
        let webhook = |body: &str| {
            parse(&format!(
                "dev = true\n[approvals.webhook]\nsecret_file = \"s\"\n{body}"
            ))
            .unwrap()
            .validate()
        };
        assert!(webhook("url = \"https://hooks.example/writ\"").is_ok());
        assert!(webhook("url = \"http://127.0.0.1:9/hook\"").is_ok());
        for refused in [
            "url = \"http://hooks.example/writ\"",
            "url = \"ftp://hooks.example\"",
            "url = \"https://h.example\"\nattempts = 0",
            "url = \"https://h.example\"\nattempts = 21",
            "url = \"https://h.example\"\nretry_base = \"0s\"",
            "url = \"https://h.example\"\nretry_base = \"2m\"",
        ] {
            let error = webhook(refused).unwrap_err().to_string();
            assert!(error.contains("approvals.webhook"), "{refused}: {error}");
        }
        assert!(parse("[approvals.webhook]\nurl = \"https://h.example\"").is_err());
    }

    #[test]
    fn ttl_cap_is_bounded() {
        let config = parse("dev = true\nmax_ttl = \"2h\"").unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn skew_and_request_timeout_are_bounded() {
        for text in [
            "dev = true\nclock_skew = \"10m\"",
            "dev = true\nrequest_timeout = \"0s\"",
            "dev = true\nrequest_timeout = \"1h\"",
        ] {
            assert!(parse(text).unwrap().validate().is_err(), "{text}");
        }
        assert!(
            parse("dev = true\nrequest_timeout = \"30s\"")
                .unwrap()
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn every_duration_is_refused_out_of_its_range_by_name() {
        let issuer = "[[issuer]]\nname = \"k8s\"\nissuer = \"https://k8s\"\naudience = \"writ\"\nagent = \"{sub}\"\n";
        for (line, expected) in [
            (
                "max_ttl = \"5s\"",
                "max_ttl = \"5s\" is out of range: it must be between 10s and 1h",
            ),
            (
                "clock_skew = \"10m\"",
                "clock_skew = \"10m\" is out of range: it must be between 0s and 5m",
            ),
            ("request_timeout = \"0s\"", "request_timeout"),
            ("revocation_poll = \"0s\"", "revocation_poll"),
            ("revocation_heartbeat = \"2m\"", "revocation_heartbeat"),
            (
                "policy_reload_interval = \"50ms\"",
                "policy_reload_interval = \"50ms\" is out of range: it must be between 100ms and 10m",
            ),
            ("policy_reload_interval = \"1h\"", "policy_reload_interval"),
            (
                "audit_checkpoint_interval = \"0s\"",
                "audit_checkpoint_interval",
            ),
        ] {
            let error = parse(&format!("dev = true\n{line}"))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{line}: {error}");
        }
        for (line, expected) in [
            (
                "jwks_refresh = \"0s\"",
                "issuer \"k8s\": jwks_refresh = \"0s\" is out of range: it must be between 30s and 1day",
            ),
            ("jwks_refresh = \"2days\"", "jwks_refresh"),
            (
                "jwks_min_refetch_interval = \"0s\"",
                "issuer \"k8s\": jwks_min_refetch_interval = \"0s\" is out of range: it must be between 1s and 5m",
            ),
            (
                "jwks_min_refetch_interval = \"999ms\"",
                "jwks_min_refetch_interval",
            ),
        ] {
            let error = parse(&format!("dev = true\n{issuer}{line}"))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{line}: {error}");
        }
        // The bounds themselves are inside.
        let edges = format!(
            "dev = true\nmax_ttl = \"1h\"\nclock_skew = \"0s\"\n{issuer}jwks_refresh = \"30s\"\njwks_min_refetch_interval = \"1s\""
        );
        assert!(parse(&edges).unwrap().validate().is_ok());
    }

    #[test]
    fn reserved_issuer_name_is_refused() {
        let config = parse(
            "dev = true\n[[issuer]]\nname = \"writ-dev\"\nissuer = \"https://x\"\naudience = \"writ\"\nagent = \"{sub}\"",
        )
        .unwrap();
        assert!(config.validate().is_err());
    }

    const LOGIN: &str = "dev = true\n[approvals.login]\nissuer = \"https://idp.example\"\n\
        client_id = \"writ\"\nredirect_url = \"https://writ.example/approvals/callback\"\n\
        approver_groups = [\"sre\"]\n";

    #[test]
    fn the_approval_page_login_has_defaults_for_all_but_where_and_who() {
        let config = parse(LOGIN).unwrap();
        config.validate().unwrap();
        let login = config.approvals.login.unwrap();
        assert_eq!(login.principal_claim, "email");
        assert_eq!(login.groups_claim, "groups");
        assert_eq!(login.session_ttl, Duration::from_secs(8 * 3600));
        assert_eq!(login.scopes, ["email", "groups"]);
        assert_eq!(login.client_secret_file, None);
        let local = LOGIN
            .replace("https://idp.example", "http://127.0.0.1:9000")
            .replace("https://writ.example", "http://localhost:8080");
        parse(&local).unwrap().validate().unwrap();
    }

    #[test]
    fn the_approval_page_login_is_refused_when_it_cannot_be_safe() {
        for (change, expected) in [
            (
                ("https://idp.example", "http://idp.example"),
                "approvals.login.issuer",
            ),
            (
                ("https://idp.example", "idp.example"),
                "approvals.login.issuer",
            ),
            (
                (
                    "https://writ.example/approvals/callback",
                    "http://writ.example/approvals/callback",
                ),
                "approvals.login.redirect_url",
            ),
            (
                (
                    "https://writ.example/approvals/callback",
                    "https://writ.example/callback",
                ),
                "approvals.login.redirect_url",
            ),
            (
                ("/approvals/callback", "/approvals/callback?x=1"),
                "approvals.login.redirect_url",
            ),
            (
                ("approver_groups = [\"sre\"]", "approver_groups = []"),
                "approver_groups",
            ),
            (
                ("approver_groups = [\"sre\"]", "approver_groups = [\"\"]"),
                "approver_groups",
            ),
            (("client_id = \"writ\"", "client_id = \"\""), "client_id"),
            (
                (
                    "approver_groups = [\"sre\"]",
                    "approver_groups = [\"sre\"]\nsession_ttl = \"1m\"",
                ),
                "approvals.login.session_ttl = \"1m\" is out of range: it must be between 5m and 1day",
            ),
            (
                (
                    "approver_groups = [\"sre\"]",
                    "approver_groups = [\"sre\"]\nsession_ttl = \"2days\"",
                ),
                "session_ttl",
            ),
            (
                (
                    "approver_groups = [\"sre\"]",
                    "approver_groups = [\"sre\"]\nscopes = [\"a b\"]",
                ),
                "scopes",
            ),
            (
                (
                    "approver_groups = [\"sre\"]",
                    "approver_groups = [\"sre\"]\nprincipal_claim = \"\"",
                ),
                "principal_claim",
            ),
        ] {
            let text = LOGIN.replace(change.0, change.1);
            assert_ne!(text, LOGIN, "{change:?}");
            let error = parse(&text).unwrap().validate().unwrap_err().to_string();
            assert!(error.contains(expected), "{change:?}: {error}");
        }
        // Every field of the login is required or has a default; typos are errors.
        assert!(parse(&LOGIN.replace("client_id", "client")).is_err());
        assert!(parse(&LOGIN.replace("approver_groups = [\"sre\"]\n", "")).is_err());
    }

    #[test]
    fn the_vault_section_authenticates_one_way_to_a_safe_address() {
        let vault = |body: &str| {
            parse(&format!("dev = true\n[vault]\n{body}"))
                .unwrap()
                .validate()
        };
        let config = parse("dev = true\n[vault]\naddress = \"https://vault.example:8200\"\ntoken_file = \"/run/t\"").unwrap();
        config.validate().unwrap();
        let section = config.vault.unwrap();
        assert_eq!(section.timeout, Duration::from_secs(5));
        assert_eq!(section.namespace, None);
        let approle = parse(
            "dev = true\n[vault]\naddress = \"http://127.0.0.1:8200\"\n\
             approle = { role_id_file = \"r\", secret_id_file = \"s\" }",
        )
        .unwrap();
        approle.validate().unwrap();
        assert_eq!(approle.vault.unwrap().approle.unwrap().mount, "approle");
        for (body, expected) in [
            (
                "address = \"http://vault.example:8200\"\ntoken_file = \"t\"",
                "vault.address must be an https:// URL",
            ),
            (
                "address = \"vault:8200\"\ntoken_file = \"t\"",
                "vault.address",
            ),
            (
                "address = \"https://v.example\"",
                "[vault] needs token_file or approle",
            ),
            (
                "address = \"https://v.example\"\ntoken_file = \"t\"\n\
                 approle = { role_id_file = \"r\", secret_id_file = \"s\" }",
                "[vault] sets both token_file and approle",
            ),
            (
                "address = \"https://v.example\"\ntoken_file = \"t\"\ntimeout = \"0s\"",
                "vault.timeout = \"0s\" is out of range: it must be between 1s and 1m",
            ),
            (
                "address = \"https://v.example\"\ntoken_file = \"t\"\nnamespace = \"../x\"",
                "vault.namespace",
            ),
        ] {
            let error = vault(body).unwrap_err().to_string();
            assert!(error.contains(expected), "{body}: {error}");
        }
        assert!(parse("[vault]\naddress = \"https://v\"\ntoken = \"s.x\"").is_err());
    }

    #[test]
    fn keys_in_vault_need_a_vault_and_valid_paths() {
        let config = parse("dev = true").unwrap();
        assert_eq!(config.keys.store, KeyStoreKind::Dir);
        assert_eq!(config.keys.vault_mount, "secret");
        assert_eq!(config.keys.vault_path, "writ/keys");
        let error = parse("dev = true\n[keys]\nstore = \"vault\"")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(error.contains("needs a [vault] section"), "{error}");
        let vault = "[vault]\naddress = \"https://v.example\"\ntoken_file = \"t\"\n";
        let with = |keys: &str| {
            parse(&format!(
                "dev = true\n{vault}[keys]\nstore = \"vault\"\n{keys}"
            ))
            .unwrap()
            .validate()
        };
        with("").unwrap();
        with("vault_mount = \"kv\"\nvault_path = \"team/writ/keys\"").unwrap();
        for bad in [
            "vault_path = \"../sys\"",
            "vault_path = \"a//b\"",
            "vault_mount = \"\"",
        ] {
            let error = with(bad).unwrap_err().to_string();
            assert!(error.contains("is not a Vault path"), "{bad}: {error}");
        }
        assert!(parse("[keys]\nstore = \"s3\"").is_err());
    }

    #[test]
    fn issuer_with_jwks_file() {
        let config = parse(
            "[[issuer]]\nname = \"spire\"\nissuer = \"https://spire\"\naudience = \"writ\"\nagent = \"{sub}\"\njwks = { file = \"/etc/bundle.json\" }",
        )
        .unwrap();
        assert_eq!(
            config.issuers[0].jwks,
            Some(JwksSource::File("/etc/bundle.json".into()))
        );
    }
}
