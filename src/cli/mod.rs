//! The `writ` command: the broker (`serve`), the agent side (`request`, `attenuate`, `inspect`),
//! the verifier side (`verify`), and operators' tools (`keys`, `policy`, `admin`, `audit`, `dev`).

mod admin;
mod audit;
mod dev;
mod keys;
mod policy;
mod request;
mod serve;
mod writ;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "writ",
    version,
    about = "A credential broker for AI agents: workload identity in, short-lived scoped writs out"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker.
    Serve(serve::ServeArgs),
    /// Ask the broker for a writ with a workload identity token (agent side).
    Request(request::RequestArgs),
    /// Decode a writ and show its facts, checks, expiry and key id (does not verify it).
    Inspect(writ::InspectArgs),
    /// Narrow a writ offline: fewer resources, operations or services, an earlier expiry.
    Attenuate(writ::AttenuateArgs),
    /// Verify a writ as a downstream service would, for one resource and operation.
    Verify(writ::VerifyArgs),
    /// Manage the broker's root keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Admin credentials and admin calls: bootstrap, revoke, lift, grant.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Verify the audit log's hash chain and signed checkpoints.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Check and test policy files.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Development helpers (dev mode only).
    #[command(subcommand)]
    Dev(dev::DevCommand),
}

impl Cli {
    pub async fn run(self) -> ExitCode {
        let result = match self.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Request(args) => request::run(args).await,
            Command::Inspect(args) => writ::inspect(args),
            Command::Attenuate(args) => writ::attenuate(args),
            Command::Verify(args) => writ::verify(args).await,
            Command::Keys(command) => keys::run(command).await,
            Command::Policy(command) => policy::run(command),
            Command::Admin(command) => admin::run(command).await,
            Command::Audit(command) => audit::run(command).await,
            Command::Dev(command) => dev::run(command),
        };
        match result {
            Ok(code) => code,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        }
    }
}

/// What each command returns: an exit code, or a message for stderr (exit 1).
type CliResult = Result<ExitCode, String>;

/// Reads a value given inline, or `-` for stdin.
fn read_arg_or_stdin(value: &str) -> Result<String, String> {
    if value == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| format!("stdin: {e}"))?;
        Ok(text.trim().to_owned())
    } else {
        Ok(value.trim().to_owned())
    }
}

/// An HTTP client for calls that carry a credential: it goes to the broker named, never to a
/// redirect target.
fn credential_client(timeout: Option<std::time::Duration>) -> Result<reqwest::Client, String> {
    let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    let builder = match timeout {
        Some(timeout) => builder.timeout(timeout),
        None => builder,
    };
    builder.build().map_err(|e| e.to_string())
}

/// An error and its causes on one line ("error sending request: connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn default_key_dir() -> PathBuf {
    PathBuf::from("writ-data/keys")
}
