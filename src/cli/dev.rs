//! `writ dev`: helpers for dev mode. The identity tokens it signs are trusted only by a broker
//! running in dev mode with the same key directory.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};

use super::{CliResult, default_key_dir};
use crate::identity::DevIssuer;
use crate::keys::KeyDir;

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Print a development identity token (a JWT) for an agent.
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The agent's subject; its identity becomes dev:<subject>.
    #[arg(long)]
    subject: String,
    /// Lifetime of the identity token.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// The key directory of the broker started with `writ serve --dev` (its dev issuer key is
    /// there).
    #[arg(long, env = "WRIT_KEY_DIR", default_value_os_t = default_key_dir())]
    key_dir: PathBuf,
}

pub fn run(command: DevCommand) -> CliResult {
    match command {
        DevCommand::Token(args) => {
            // A key made anywhere else would sign tokens no broker trusts ("signature is
            // invalid" at the broker): only a broker's key directory gets a dev issuer key.
            if KeyDir::open(&args.key_dir).is_err() {
                return Err(format!(
                    "{} is not a broker's key directory. `writ dev token` signs with the dev \
                     issuer key of a broker started with `writ serve --dev`, kept in its key \
                     directory: run this where that broker runs, or pass --key-dir (or \
                     WRIT_KEY_DIR) naming its key directory.",
                    args.key_dir.display()
                ));
            }
            let issuer = DevIssuer::open_or_init(&args.key_dir).map_err(|e| e.to_string())?;
            let token = issuer.token(&args.subject, args.ttl, SystemTime::now())?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
