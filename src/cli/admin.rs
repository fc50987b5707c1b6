//! `writ admin`: the first admin credential (`bootstrap`, run on the broker's host, with its
//! key directory and database), and admins' calls to a running broker (`revoke`, `lift`,
//! `grant`), authenticated with an admin writ from `WRIT_ADMIN_TOKEN`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{BrokerUrl, CliResult, credential_client, default_key_dir, error_chain};
use crate::admin::{DEFAULT_ADMIN_TTL, Principal, Role};
use crate::audit::actions;
use crate::config::KeyStoreKind;
use crate::keys::{KeyDir, KeyStore, VaultKeys};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin writ directly from the key directory and database (the first admin
    /// credential; there is no default password). Prints only the writ on stdout.
    Bootstrap(BootstrapArgs),
    /// Revoke a writ, every writ of a task, or an agent (which also suspends it).
    Revoke(RevokeArgs),
    /// Lift an agent's suspension.
    Lift(LiftArgs),
    /// Issue an admin writ to another principal (prints only the writ on stdout).
    Grant(GrantArgs),
}

/// Where the broker keeps its data, for commands that run beside it.
#[derive(Debug, Args)]
pub struct BrokerFiles {
    /// The broker's configuration file; its database_url and key_dir are used.
    #[arg(long, env = "WRIT_CONFIG")]
    config: Option<PathBuf>,
    /// sqlite://path or postgres://... (overrides the configuration file).
    #[arg(long, env = "WRIT_DATABASE_URL")]
    database_url: Option<String>,
    /// The root key directory (overrides the configuration file).
    #[arg(long, env = "WRIT_KEY_DIR")]
    key_dir: Option<PathBuf>,
}

impl BrokerFiles {
    /// The configuration file, when one was named.
    pub fn config_file(&self) -> Option<&std::path::Path> {
        self.config.as_deref()
    }

    /// The database URL and key directory, from flags, then the file, then the defaults.
    pub fn resolve(&self) -> Result<(String, PathBuf), String> {
        let config = match &self.config {
            Some(path) => Some(crate::config::Config::load(path).map_err(|e| e.to_string())?),
            None => None,
        };
        let defaults = crate::config::Config::default_embedded();
        let database_url = self
            .database_url
            .clone()
            .or_else(|| config.as_ref().map(|c| c.database_url.clone()))
            .unwrap_or(defaults.database_url);
        let key_dir = self
            .key_dir
            .clone()
            .or_else(|| config.as_ref().map(|c| c.key_dir.clone()))
            .unwrap_or_else(default_key_dir);
        Ok((database_url, key_dir))
    }

    /// The broker's key store, existing: the Vault secret when the configuration keeps the
    /// keys there (`[keys] store = "vault"`), otherwise the key directory.
    pub async fn key_store(&self) -> Result<KeyStore, String> {
        key_store(self.config.as_deref(), self.key_dir.as_deref()).await
    }
}

/// The key store of the broker configured by `config`, or the key directory `key_dir` (default
/// `writ-data/keys`). Both naming a store is refused: which one was meant is unclear.
pub async fn key_store(
    config: Option<&std::path::Path>,
    key_dir: Option<&std::path::Path>,
) -> Result<KeyStore, String> {
    let config = match config {
        Some(path) => Some(crate::config::Config::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    match config {
        Some(config) if config.keys.store == KeyStoreKind::Vault => {
            if key_dir.is_some() {
                return Err(
                    "--key-dir (or WRIT_KEY_DIR) names a key directory, but the \
                     configuration keeps the keys in Vault ([keys] store = \"vault\"): give one \
                     of them"
                        .into(),
                );
            }
            let vault = config.vault.as_ref().ok_or(
                "keys.store = \"vault\" needs a [vault] section saying how to reach Vault",
            )?;
            let client = crate::vault::VaultClient::connect(vault)
                .await
                .map_err(|e| format!("the broker's Vault: {e}"))?;
            let keys = VaultKeys::open(client, &config.keys.vault_mount, &config.keys.vault_path)
                .await
                .map_err(|e| e.to_string())?;
            Ok(KeyStore::Vault(keys))
        }
        config => {
            let key_dir = key_dir
                .map(ToOwned::to_owned)
                .or_else(|| config.map(|c| c.key_dir))
                .unwrap_or_else(default_key_dir);
            KeyDir::open(&key_dir)
                .map(KeyStore::Dir)
                .map_err(|e| e.to_string())
        }
    }
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    #[command(flatten)]
    files: BrokerFiles,
    /// Who the writ names (an email or a service name).
    #[arg(long)]
    principal: String,
    /// Roles the writ carries (repeat for several).
    #[arg(long = "role", default_value = "admin")]
    roles: Vec<Role>,
    /// Lifetime (at most 24h).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
}

/// A running broker and the admin writ to call it with.
#[derive(Args)]
pub struct BrokerCall {
    #[command(flatten)]
    pub(super) broker: BrokerUrl,
    /// The admin writ (from `writ admin bootstrap` or `writ admin grant`).
    // Optional for clap, checked by `token()`: its message names the variable as well as the
    // flag, and tells an empty token (a bootstrap that failed inside `$(…)`) from a missing one.
    #[arg(
        long,
        env = "WRIT_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "WRIT"
    )]
    admin_token: Option<String>,
}

impl BrokerCall {
    pub(super) fn token(&self) -> Result<&str, String> {
        match self.admin_token.as_deref().map(str::trim) {
            None => Err("no admin writ: set WRIT_ADMIN_TOKEN or pass --admin-token \
                 (the first one comes from `writ admin bootstrap`)"
                .into()),
            Some("") => Err(
                "the admin writ is empty: WRIT_ADMIN_TOKEN (or --admin-token) holds \
                 nothing; did the `writ admin bootstrap` or `writ admin grant` that set it fail?"
                    .into(),
            ),
            Some(token) => Ok(token),
        }
    }
}

/// The admin writ is a credential: never in debug output.
impl std::fmt::Debug for BrokerCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerCall")
            .field("broker", &self.broker)
            .field("admin_token", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false, id = "target")]
pub struct RevokeTarget {
    /// A writ id (`wr_…`, or `ad_…` for an admin writ).
    #[arg(long)]
    writ_id: Option<String>,
    /// A writ itself, or - to read it from stdin: its id is revoked (the broker checks that it
    /// issued it).
    #[arg(long, value_name = "WRIT|-")]
    writ: Option<String>,
    /// A task name: every writ issued for it so far.
    #[arg(long)]
    task: Option<String>,
    /// An agent: every writ issued to it, and no new ones until lifted.
    #[arg(long)]
    agent: Option<String>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    call: BrokerCall,
    #[command(flatten)]
    target: RevokeTarget,
    /// Why (recorded in the audit log).
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Args)]
pub struct LiftArgs {
    #[command(flatten)]
    call: BrokerCall,
    /// The suspended agent.
    #[arg(long)]
    agent: String,
    /// Why (recorded in the audit log).
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    #[command(flatten)]
    call: BrokerCall,
    #[arg(long)]
    principal: String,
    #[arg(long = "role", required = true)]
    roles: Vec<Role>,
    /// Lifetime (at most 24h).
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<Duration>,
}

pub async fn run(command: AdminCommand) -> CliResult {
    match command {
        AdminCommand::Bootstrap(args) => bootstrap(args).await,
        AdminCommand::Revoke(args) => {
            let writ_id = match (&args.target.writ_id, &args.target.writ) {
                (_, Some(writ)) => Some(writ_id_of(writ)?),
                (writ_id, None) => writ_id.clone(),
            };
            let body = json!({
                "writ_id": writ_id, "task": args.target.task,
                "agent": args.target.agent, "reason": args.reason,
            });
            call(&args.call, "/v1/revocations", body).await
        }
        AdminCommand::Lift(args) => {
            let body = json!({ "agent": args.agent, "reason": args.reason });
            call(&args.call, "/v1/suspensions/lift", body).await
        }
        AdminCommand::Grant(args) => {
            let body = json!({
                "principal": args.principal, "roles": args.roles,
                "ttl": args.ttl.unwrap_or(DEFAULT_ADMIN_TTL).as_secs(),
            });
            let answer = post(&args.call, "/v1/admin/writs", body).await?;
            println!("{}", answer["writ"].as_str().unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn bootstrap(args: BootstrapArgs) -> CliResult {
    let principal = Principal::parse(&args.principal).map_err(|e| format!("--principal: {e}"))?;
    let roles: BTreeSet<Role> = args.roles.into_iter().collect();
    let (database_url, _) = args.files.resolve()?;
    // The broker's database and keys, both existing: a wrong path creates neither.
    let store = crate::store::connect_existing(&database_url)
        .await
        .map_err(|e| format!("the broker's database: {e}"))?;
    let ring = args
        .files
        .key_store()
        .await?
        .load()
        .await
        .map_err(|e| format!("the broker's root keys: {e}"))?;
    let minted = crate::broker::issue_admin_writ(
        &ring,
        &store,
        &crate::broker::AdminWritOrder {
            principal: &principal,
            roles: &roles,
            ttl: args.ttl,
            issued_by: &operator(),
            parent_writ_id: None,
            action: actions::ADMIN_BOOTSTRAP,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    eprintln!(
        "admin writ {} for {} ({}), expires {}; recorded in the audit log",
        minted.writ_id,
        principal,
        roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        humantime::format_rfc3339_seconds(minted.expires_at)
    );
    println!("{}", minted.token);
    Ok(ExitCode::SUCCESS)
}

/// The id a writ carries, read without verifying it: the broker refuses an id it never issued.
fn writ_id_of(writ: &str) -> Result<String, String> {
    let writ = super::read_arg_or_stdin(writ)?;
    writ_verify::inspect(&writ)
        .map_err(|e| format!("--writ: {e}"))?
        .writ_id
        .ok_or_else(|| "--writ: the writ carries no writ id".to_owned())
}

/// Who runs a command on the broker's host, for the audit log.
pub fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

async fn call(call: &BrokerCall, path: &str, body: Value) -> CliResult {
    let answer = post(call, path, body).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&answer).map_err(|e| e.to_string())?
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn post(call: &BrokerCall, path: &str, body: Value) -> Result<Value, String> {
    send(call, path, Some(body)).await
}

/// GETs `path` (with its query) from the broker with the admin writ.
pub(super) async fn get(call: &BrokerCall, path: &str) -> Result<Value, String> {
    send(call, path, None).await
}

async fn send(call: &BrokerCall, path: &str, body: Option<Value>) -> Result<Value, String> {
    let token = call.token()?;
    let client = credential_client(Some(Duration::from_secs(30)))?;
    let url = call.broker.join(path);
    let request = match body {
        Some(body) => client.post(&url).json(&body),
        None => client.get(&url),
    };
    let response = request
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| super::unreachable(&url, &e))?;
    let status = response.status();
    let answer: Value = response
        .json()
        .await
        .map_err(|e| format!("{url}: {}", error_chain(&e)))?;
    if !status.is_success() {
        return Err(format!(
            "{status}: {} ({})",
            answer["detail"].as_str().unwrap_or_default(),
            answer["type"].as_str().unwrap_or_default()
        ));
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_writ_never_shows_in_debug_output() {
        let call = BrokerCall {
            broker: BrokerUrl {
                url: "http://127.0.0.1:8080".into(),
            },
            admin_token: Some("En0KE3dyaXRfYWRtaW4".into()),
        };
        let shown = format!("{call:?}");
        assert!(!shown.contains("En0KE3dyaXRfYWRtaW4"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
