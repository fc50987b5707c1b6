//! `writ policy`: validate policy files and run their tests, like `opa test`; and ask a running
//! broker which set it runs (`status`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::CliResult;
use crate::policy::{PolicySet, testing};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Load and validate the policies; errors point at the file and line.
    Check(PolicyArgs),
    /// Run the policy tests (`*.test.toml`) beside the policies. Exits non-zero on any failure.
    Test(PolicyArgs),
    /// Ask a running broker which policy set it runs: its hash, its files and any refused
    /// reload (then exit 1). Needs an admin writ with the admin or auditor role.
    Status(super::policy_status::StatusArgs),
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// The policy directory [env: WRIT_POLICY_DIR].
    // Optional for clap so that its absence is answered with the variable as well.
    #[arg(env = "WRIT_POLICY_DIR", hide_env = true)]
    dir: Option<PathBuf>,
    /// The broker's hard cap on lifetimes (its max_ttl).
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    max_ttl: Duration,
}

impl PolicyArgs {
    fn dir(&self) -> Result<&Path, String> {
        self.dir.as_deref().ok_or_else(|| {
            "no policy directory: give it as an argument or in WRIT_POLICY_DIR".to_owned()
        })
    }
}

/// The policies of the directory; one without any is an error, not a valid empty set.
fn load(args: &PolicyArgs) -> Result<PolicySet, String> {
    let dir = args.dir()?;
    let policies = PolicySet::load_dir(dir, args.max_ttl).map_err(|e| e.to_string())?;
    if policies.policies.is_empty() {
        return Err(format!(
            "no policies in {}: policies are [[policy]] tables in *.toml files (not *.test.toml)",
            dir.display()
        ));
    }
    Ok(policies)
}

pub async fn run(command: PolicyCommand) -> CliResult {
    match command {
        PolicyCommand::Status(args) => super::policy_status::run(args).await,
        PolicyCommand::Check(args) => {
            let policies = load(&args)?;
            println!("{} policies are valid", policies.policies.len());
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Test(args) => {
            let policies = load(&args)?;
            let dir = args.dir()?;
            let results = testing::run_dir(dir, &policies).map_err(|e| e.to_string())?;
            if results.is_empty() {
                return Err(format!(
                    "no policy tests (*.test.toml) in {}",
                    dir.display()
                ));
            }
            let mut failed = 0;
            for result in &results {
                match &result.failure {
                    None => println!("ok   {} :: {}", result.file, result.name),
                    Some(why) => {
                        failed += 1;
                        println!("FAIL {} :: {}\n     {why}", result.file, result.name);
                    }
                }
            }
            println!("{} passed, {failed} failed", results.len() - failed);
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
