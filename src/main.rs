//! The `writ` binary: parse the command line, set up logging, run the command.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    // The Vault client's libraries log every refused call at error level; the broker logs each
    // failure once, with what it means, so theirs are off unless asked for.
    let filter = EnvFilter::try_from_env("WRIT_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,vaultrs=off,rustify=off"));
    let json = std::env::var("WRIT_LOG_FORMAT").is_ok_and(|format| format == "json");
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
    writ::cli::Cli::parse().run().await
}
