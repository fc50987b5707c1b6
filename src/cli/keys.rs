//! `writ keys`: root key rotation and listing, on the key directory a broker reads. A running
//! broker picks up a rotation within a couple of seconds.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};

use super::{CliResult, default_key_dir};
use crate::keys::KeyDir;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new root key active; the old one stays published until its writs have expired.
    Rotate(KeyDirArgs),
    /// List the root keys and their publication windows.
    List(KeyDirArgs),
}

#[derive(Debug, Args)]
pub struct KeyDirArgs {
    /// The broker's key directory.
    #[arg(long, env = "WRIT_KEY_DIR", default_value_os_t = default_key_dir())]
    key_dir: PathBuf,
    /// How long a retired key stays published: the broker's max_ttl plus clock skew.
    #[arg(long, default_value = "16m", value_parser = humantime::parse_duration)]
    retain_for: Duration,
}

pub fn run(command: KeysCommand) -> CliResult {
    match command {
        KeysCommand::Rotate(args) => {
            let dir = KeyDir::open(&args.key_dir).map_err(|e| e.to_string())?;
            let record = dir
                .rotate(args.retain_for, SystemTime::now())
                .map_err(|e| e.to_string())?;
            println!("key {} is now active ({})", record.kid, record.public_key);
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::List(args) => {
            let dir = KeyDir::open(&args.key_dir).map_err(|e| e.to_string())?;
            let ring = dir.load().map_err(|e| e.to_string())?;
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
