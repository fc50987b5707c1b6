//! `writ keys`: root key rotation and listing, on the key store a broker reads (its key
//! directory, or its Vault secret with `--config` naming a broker configured with `[keys] store =
//! "vault"`). A running broker picks up a rotation within a couple of seconds.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};

use serde_json::json;

use super::CliResult;
use super::admin::{BrokerFiles, key_store, operator};
use crate::audit::{AuditEvent, Outcome, actions};
use crate::config::{ABSOLUTE_MAX_SKEW, ABSOLUTE_MAX_TTL, Config, WRIT_LIFETIME_BOUND};

/// The absolute lifetime cap plus the largest clock skew (checked by a test below).
const DEFAULT_RETAIN: &str = "65m";

/// The longest a retired key may stay published: long enough for every writ and admin writ it
/// signed, short enough that a retired key does not linger for months.
const MAX_RETAIN: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new root key active; the old one stays published until its writs have expired.
    Rotate(RotateArgs),
    /// List the root keys and their publication windows.
    List(KeyDirArgs),
}

#[derive(Debug, Args)]
pub struct KeyDirArgs {
    /// The broker's key directory [default: writ-data/keys].
    #[arg(long, env = "WRIT_KEY_DIR")]
    key_dir: Option<PathBuf>,
    /// The broker's configuration file: its key store is listed (`key_dir`, or the Vault
    /// secret with `[keys] store = "vault"`).
    #[arg(long, env = "WRIT_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The key directory and the database where the rotation is audited.
    #[command(flatten)]
    files: BrokerFiles,
    /// How long a retired key stays published, at most 7 days. The default outlasts any writ (the
    /// absolute lifetime cap plus the largest clock skew); with --config it may be lowered to the
    /// broker's max_ttl plus its clock_skew, never below.
    #[arg(long, default_value = DEFAULT_RETAIN, value_parser = humantime::parse_duration)]
    retain_for: Duration,
}

pub async fn run(command: KeysCommand) -> CliResult {
    match command {
        KeysCommand::Rotate(args) => {
            let config = match args.files.config_file() {
                Some(path) => Some(Config::load(path).map_err(|e| e.to_string())?),
                None => None,
            };
            check_retain_for(args.retain_for, config.as_ref())?;
            // Reach the database first, so the rotation can be recorded once it is made.
            let (database_url, _) = args.files.resolve()?;
            let store = crate::store::connect_existing(&database_url)
                .await
                .map_err(|e| format!("the broker's database: {e}"))?;
            let keys = args.files.key_store().await?;
            // In Vault the write is check-and-set: a rotation racing another fails here, and
            // nothing is written.
            let (record, retired) = keys
                .rotate(args.retain_for, SystemTime::now())
                .await
                .map_err(|e| e.to_string())?;
            let event = AuditEvent::new(actions::KEYS_ROTATED, Outcome::Success, operator())
                .with_details(json!({
                    "kid": record.kid, "retired_kid": retired,
                    "public_key": record.public_key,
                    "retain_for": args.retain_for.as_secs(),
                }));
            store.append_audit(event).await.map_err(|e| {
                format!(
                    "key {} is now active, but the rotation could not be recorded in the audit log: {e}",
                    record.kid
                )
            })?;
            println!("key {} is now active ({})", record.kid, record.public_key);
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::List(args) => {
            let keys = key_store(args.config.as_deref(), args.key_dir.as_deref()).await?;
            let ring = keys.load().await.map_err(|e| e.to_string())?;
            for record in &ring.records {
                let published = record.to_published();
                let state = if record.kid == ring.active.kid {
                    "active"
                } else {
                    "retired"
                };
                println!(
                    "{}\t{state}\t{}\tpublished until {}",
                    record.kid,
                    record.public_key,
                    published.not_after.as_deref().unwrap_or("-")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A retired key must stay published as long as a writ it signed can be valid: the broker's
/// `max_ttl` plus its `clock_skew` when its configuration is known, otherwise the longest any writ
/// can live. Shorter, and live writs would fail verification after the rotation.
fn check_retain_for(retain_for: Duration, config: Option<&Config>) -> Result<(), String> {
    let (low, why) = match config {
        Some(config) => (
            config.max_ttl.min(ABSOLUTE_MAX_TTL) + config.clock_skew.min(ABSOLUTE_MAX_SKEW),
            "the broker's max_ttl plus clock_skew, from --config",
        ),
        None => (
            WRIT_LIFETIME_BOUND,
            "the longest any writ lives; with --config the floor is the broker's max_ttl plus clock_skew",
        ),
    };
    if low <= retain_for && retain_for <= MAX_RETAIN {
        return Ok(());
    }
    Err(format!(
        "--retain-for {} is out of range: it must be between {} ({why}) and {}",
        humantime::format_duration(retain_for),
        humantime::format_duration(low),
        humantime::format_duration(MAX_RETAIN),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_keys_outlast_every_writ_by_default() {
        assert_eq!(
            humantime::parse_duration(DEFAULT_RETAIN).unwrap(),
            ABSOLUTE_MAX_TTL + ABSOLUTE_MAX_SKEW
        );
    }

    #[test]
    fn retain_for_is_bounded() {
        let hour = Duration::from_secs(3600);
        assert!(check_retain_for(Duration::from_secs(6), None).is_err());
        assert!(check_retain_for(hour, None).is_err());
        assert!(check_retain_for(WRIT_LIFETIME_BOUND, None).is_ok());
        assert!(check_retain_for(MAX_RETAIN + Duration::from_secs(1), None).is_err());
        let mut config = Config::default_embedded(); // max_ttl 15m, clock_skew 30s
        config.max_ttl = Duration::from_secs(600);
        assert!(check_retain_for(Duration::from_secs(630), Some(&config)).is_ok());
        let error = check_retain_for(Duration::from_secs(629), Some(&config)).unwrap_err();
        assert!(
            error.contains("--retain-for 10m 29s is out of range: it must be between 10m 30s"),
            "{error}"
        );
    }
}
