//! The `writ` command: the broker (`serve`), the agent side (`request`, `attenuate`, `inspect`,
//! `aws-credentials`, `exchange`), the verifier side (`verify`), and operators' tools (`keys`, `policy`, `admin`, `audit`, `dev`).

mod admin;
mod approvals;
mod audit;
mod dev;
mod exchange;
mod keys;
mod policy;
mod policy_status;
mod request;
mod serve;
mod writ;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

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
    /// Exchange a writ for AWS credentials, printed for `credential_process` (agent side).
    AwsCredentials(exchange::AwsCredentialsArgs),
    /// Exchange a writ for a native credential: a Vault/OpenBao dynamic secret or AWS
    /// credentials (agent side).
    #[command(subcommand)]
    Exchange(exchange::ExchangeCommand),
    /// Manage the broker's root keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Admin credentials and admin calls: bootstrap, revoke, lift, grant.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Approvers: list, approve and deny requests for elevated writs.
    #[command(subcommand)]
    Approvals(approvals::ApprovalsCommand),
    /// Verify the audit log's hash chain and signed checkpoints.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Check and test policy files; show the set a running broker runs.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Development helpers (dev mode only).
    #[command(subcommand)]
    Dev(dev::DevCommand),
}

impl Cli {
    pub async fn run(self) -> ExitCode {
        if !matches!(self.command, Command::Serve(_)) {
            end_quietly_on_a_closed_pipe();
        }
        let result = match self.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Request(args) => request::run(args).await,
            Command::Inspect(args) => writ::inspect(args),
            Command::Attenuate(args) => writ::attenuate(args),
            Command::Verify(args) => writ::verify(args).await,
            Command::AwsCredentials(args) => exchange::aws_credentials(args).await,
            Command::Exchange(command) => exchange::run(command).await,
            Command::Keys(command) => keys::run(command).await,
            Command::Policy(command) => policy::run(command).await,
            Command::Admin(command) => admin::run(command).await,
            Command::Approvals(command) => approvals::run(command).await,
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

/// An error and its causes on one line ("error sending request: connection refused"); a cause
/// whose text its parent already holds is not repeated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(&format!(": {cause_text}"));
        }
        source = cause.source();
    }
    text
}

/// Where a broker listens unless told otherwise (`writ serve --listen`, `WRIT_LISTEN`).
pub const DEFAULT_BROKER_URL: &str = "http://127.0.0.1:8080";

/// The broker a command talks to: one flag and one variable for every command.
#[derive(Debug, Clone, Args)]
pub struct BrokerUrl {
    /// The broker's base URL (where `writ serve` listens).
    #[arg(
        long = "broker",
        env = "WRIT_BROKER_URL",
        default_value = DEFAULT_BROKER_URL,
        value_name = "URL"
    )]
    url: String,
}

impl BrokerUrl {
    /// The base URL, without a trailing slash (and without the key set path, should it have
    /// been given the key set URL).
    fn base(&self) -> String {
        let url = self.url.trim().trim_end_matches('/');
        url.strip_suffix(writ_verify::KEY_SET_PATH)
            .unwrap_or(url)
            .to_owned()
    }

    /// `{base}{path}`.
    fn join(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }
}

/// A failed call to the broker, with its cause and, when nothing answered, what to do about it.
fn unreachable(url: &str, error: &reqwest::Error) -> String {
    let mut text = format!("cannot reach the broker at {url}: {}", error_chain(error));
    if error.is_connect() || error.is_timeout() {
        text.push_str(NOT_RUNNING_HINT);
    }
    text
}

/// What to do when no broker answers.
const NOT_RUNNING_HINT: &str = "\nIs the broker running? Start one with `writ serve --dev`, or \
     point --broker (or WRIT_BROKER_URL) at the one you mean.";

fn default_key_dir() -> PathBuf {
    PathBuf::from("writ-data/keys")
}

/// A command whose output is piped into `head` should end quietly when the pipe closes, as Unix
/// tools do (status 141, as if by SIGPIPE), rather than print a panic. Not for `serve`, whose
/// output is its log.
fn end_quietly_on_a_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
