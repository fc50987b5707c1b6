//! `writ dev`: helpers for dev mode. The identity tokens it signs are trusted only by a broker
//! running in dev mode with the same key directory.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};

use super::{CliResult, default_key_dir};
use crate::identity::DevIssuer;

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
    /// The dev broker's key directory.
    #[arg(long, env = "WRIT_KEY_DIR", default_value_os_t = default_key_dir())]
    key_dir: PathBuf,
}

pub fn run(command: DevCommand) -> CliResult {
    match command {
        DevCommand::Token(args) => {
            let issuer = DevIssuer::open_or_init(&args.key_dir).map_err(|e| e.to_string())?;
            let token = issuer.token(&args.subject, args.ttl, SystemTime::now())?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
