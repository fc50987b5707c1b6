//! `writ policy`: validate policy files, run their tests (like `opa test`) and explain a
//! decision; and ask a running broker which set it runs (`status`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};

use super::CliResult;
use crate::policy::{Channel, PolicySet, RawWritRequest, Subject, WritRequest, testing};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Load and validate the policies; errors point at the file and line.
    Check(PolicyArgs),
    /// Run the policy tests (`*.test.toml`) beside the policies. Exits non-zero on any failure;
    /// lists the policies and deny rules no case exercised.
    Test(TestArgs),
    /// Show how the policies decide one request: which policies matched the identity, which
    /// rule or condition refused each item, and which deny rule fired. Exits 0 when the request
    /// is granted (with --approval: granted once humans approve), 1 when it is refused.
    Explain(ExplainArgs),
    /// Ask a running broker which policy set it runs: its hash, its files and any refused
    /// reload (then exit 1). Needs an admin writ with the admin or auditor role.
    Status(super::policy_status::StatusArgs),
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    policies: PolicyArgs,
    /// Fail when a policy or deny rule is exercised by no case.
    #[arg(long)]
    require_coverage: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    policies: PolicyArgs,
    /// The configured issuer name the identity comes from (as policies name it).
    #[arg(long)]
    issuer: String,
    /// The identity's claims, a JSON object.
    #[arg(long, value_parser = parse_claims)]
    claims: serde_json::Map<String, serde_json::Value>,
    /// The request, as the body of POST /v1/writs: {"task", "rights", "services", "ttl"?}.
    #[arg(long, value_parser = parse_request)]
    request: RawWritRequest,
    /// Decide as for POST /v1/approvals (human approval) rather than POST /v1/writs.
    #[arg(long)]
    approval: bool,
    /// The instant of the request, RFC 3339 (for time windows); default now.
    #[arg(long, value_parser = crate::time::parse_rfc3339)]
    at: Option<SystemTime>,
    /// Print the explanation as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_claims(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    serde_json::from_str(text).map_err(|e| format!("claims must be a JSON object: {e}"))
}

fn parse_request(text: &str) -> Result<RawWritRequest, String> {
    serde_json::from_str(text).map_err(|e| format!("request: {e}"))
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
    if policies.policies().is_empty() {
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
            let count = |n: usize, one: &str, many: &str| {
                format!("{n} {}", if n == 1 { one } else { many })
            };
            println!(
                "{} and {} are valid",
                count(policies.policies().len(), "policy", "policies"),
                count(policies.denies().len(), "deny rule", "deny rules")
            );
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Test(TestArgs {
            policies: args,
            require_coverage,
        }) => {
            let policies = load(&args)?;
            let dir = args.dir()?;
            let run = testing::run_dir(dir, &policies).map_err(|e| e.to_string())?;
            let results = &run.cases;
            if results.is_empty() {
                return Err(format!(
                    "no policy tests (*.test.toml) in {}",
                    dir.display()
                ));
            }
            let mut failed = 0;
            for result in results {
                match &result.failure {
                    None => println!("ok   {} :: {}", result.file, result.name),
                    Some(why) => {
                        failed += 1;
                        println!("FAIL {} :: {}\n     {why}", result.file, result.name);
                    }
                }
            }
            println!("{} passed, {failed} failed", results.len() - failed);
            for rule in &run.unexercised {
                println!("not exercised by any case: {rule}");
            }
            let uncovered = require_coverage && !run.unexercised.is_empty();
            if uncovered {
                println!(
                    "--require-coverage: {} rules are not exercised by any case",
                    run.unexercised.len()
                );
            }
            Ok(if failed == 0 && !uncovered {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        PolicyCommand::Explain(args) => explain(args),
    }
}

fn explain(args: ExplainArgs) -> CliResult {
    let policies = load(&args.policies)?;
    let request = WritRequest::parse(&args.request).map_err(|e| format!("request: {e}"))?;
    let subject = Subject {
        issuer: &args.issuer,
        claims: &args.claims,
    };
    let channel = if args.approval {
        Channel::Approval
    } else {
        Channel::Direct
    };
    let at = args.at.unwrap_or_else(SystemTime::now);
    let explanation = policies.explain(subject, &request, channel, at);
    if args.json {
        let text = serde_json::to_string_pretty(&explanation).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print!("{explanation}");
    }
    // The exit status says the decision, so scripts can branch on it.
    Ok(if explanation.refusal.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
