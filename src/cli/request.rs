//! `writ request`: the agent side of issuance.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use super::{BrokerUrl, CliResult, credential_client};

#[derive(Debug, Args)]
pub struct RequestArgs {
    #[command(flatten)]
    broker: BrokerUrl,
    /// File holding the workload identity token (e.g. a projected service account token).
    #[arg(long, conflicts_with = "identity_env")]
    identity_file: Option<PathBuf>,
    /// Environment variable holding the workload identity token.
    #[arg(long, default_value = "WRIT_IDENTITY_TOKEN")]
    identity_env: String,
    /// What the writ is for.
    #[arg(long)]
    task: String,
    /// A right as RESOURCE:OP[,OP...], e.g. 'orders/42:read' or 'reports/2026/*:read'. Repeatable.
    #[arg(long = "right", required = true)]
    rights: Vec<String>,
    /// A service that may accept the writ. Repeatable.
    #[arg(long = "service", required = true)]
    services: Vec<String>,
    /// Lifetime, e.g. 5m [default: the policy's].
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<Duration>,
    /// Print the broker's whole JSON answer instead of the writ alone.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: RequestArgs) -> CliResult {
    let identity = read_identity(&args)?;
    let body = request_body(&args)?;
    let url = args.broker.join("/v1/writs");
    let client = credential_client(None)?;
    let response = client
        .post(&url)
        .bearer_auth(identity.trim())
        .json(&body)
        .send()
        .await
        .map_err(|e| super::unreachable(&url, &e))?;
    let status = response.status();
    let answer: Value = response
        .json()
        .await
        .map_err(|e| format!("unreadable answer ({status}): {e}"))?;
    if !status.is_success() {
        eprintln!(
            "refused ({status}): {}",
            answer["detail"].as_str().unwrap_or("no detail")
        );
        eprintln!("type: {}", answer["type"].as_str().unwrap_or("?"));
        return Ok(ExitCode::FAILURE);
    }
    if args.json {
        println!("{answer:#}");
    } else {
        println!("{}", answer["writ"].as_str().unwrap_or_default());
        eprintln!(
            "writ {} for {} (task {:?}), expires {}",
            answer["writ_id"].as_str().unwrap_or("?"),
            answer["agent"].as_str().unwrap_or("?"),
            answer["task"].as_str().unwrap_or("?"),
            answer["expires_at"].as_str().unwrap_or("?"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn read_identity(args: &RequestArgs) -> Result<String, String> {
    match &args.identity_file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display())),
        None => std::env::var(&args.identity_env).map_err(|_| {
            format!(
                "no identity token: set {} or pass --identity-file",
                args.identity_env
            )
        }),
    }
}

fn request_body(args: &RequestArgs) -> Result<Value, String> {
    let rights = args
        .rights
        .iter()
        .map(|right| parse_right(right))
        .collect::<Result<Vec<_>, _>>()?;
    let mut body = json!({"task": args.task, "rights": rights, "services": args.services});
    if let Some(ttl) = args.ttl {
        body["ttl"] = json!(ttl.as_secs());
    }
    Ok(body)
}

/// `RESOURCE:OP[,OP]`: the last `:` splits, since operations never contain one.
pub fn parse_right(text: &str) -> Result<Value, String> {
    let (resource, operations) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("right {text:?} must be RESOURCE:OP[,OP...]"))?;
    let operations: Vec<&str> = operations
        .split(',')
        .map(str::trim)
        .filter(|op| !op.is_empty())
        .collect();
    if resource.is_empty() || operations.is_empty() {
        return Err(format!("right {text:?} must be RESOURCE:OP[,OP...]"));
    }
    Ok(json!({"resource": resource, "operations": operations}))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rights_split_at_the_last_colon() {
        assert_eq!(
            parse_right("urn:x:orders/42:read,write").unwrap(),
            json!({"resource": "urn:x:orders/42", "operations": ["read", "write"]})
        );
        assert!(parse_right("orders/42").is_err());
        assert!(parse_right(":read").is_err());
        assert!(parse_right("orders/42:").is_err());
    }
}
