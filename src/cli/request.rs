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
    /// Print the broker's whole JSON answer instead of the writ alone (a refusal's problem
    /// document too).
    #[arg(long)]
    json: bool,
    /// Ask humans to approve the request (for rights a policy grants only with approval), wait
    /// for their decision, and print the elevated writ once approved.
    #[arg(long, requires = "justification")]
    approval: bool,
    /// Why the agent needs this, for the approvers (with --approval).
    #[arg(long, requires = "approval")]
    justification: Option<String>,
    /// How long to wait for the decision (with --approval).
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration, requires = "approval")]
    wait: Duration,
}

pub async fn run(args: RequestArgs) -> CliResult {
    let identity = read_identity(&args)?;
    let identity = identity.trim();
    let mut body = request_body(&args)?;
    let client = credential_client(None)?;
    if args.approval {
        body["justification"] = json!(args.justification.clone().unwrap_or_default());
        return approval::request_and_wait(&args, &client, identity, body).await;
    }
    let url = args.broker.join("/v1/writs");
    let Some(answer) = call(client.post(&url).json(&body), &url, identity, args.json).await? else {
        return Ok(ExitCode::FAILURE);
    };
    print_writ(&args, &answer);
    Ok(ExitCode::SUCCESS)
}

/// Sends `request` with the identity token; answers the JSON of a success, or prints the
/// refusal and answers `None`. With `json`, the refusal's problem document goes to stdout too,
/// so that a script reads what was refused (`refused_rights`, `deny`, …) as it reads a writ.
async fn call(
    request: reqwest::RequestBuilder,
    url: &str,
    identity: &str,
    json: bool,
) -> Result<Option<Value>, String> {
    let response = request
        .bearer_auth(identity)
        .send()
        .await
        .map_err(|e| super::unreachable(url, &e))?;
    let status = response.status();
    let answer: Value = response
        .json()
        .await
        .map_err(|e| format!("unreadable answer ({status}): {e}"))?;
    if !status.is_success() {
        if json {
            println!("{answer:#}");
        }
        eprintln!(
            "refused ({status}): {}",
            answer["detail"].as_str().unwrap_or("no detail")
        );
        let kind = answer["type"].as_str().unwrap_or("?");
        eprintln!("type: {kind}");
        match kind.strip_prefix("urn:writ:problem:") {
            Some("approval_required") => eprintln!(
                "hint: ask humans with --approval --justification \"why the agent needs this\""
            ),
            Some("approval_not_needed") => {
                eprintln!("hint: drop --approval: the policy grants this directly")
            }
            _ => {}
        }
        return Ok(None);
    }
    Ok(Some(answer))
}

fn print_writ(args: &RequestArgs, answer: &Value) {
    if args.json {
        println!("{answer:#}");
    } else {
        println!("{}", answer["writ"].as_str().unwrap_or_default());
        eprintln!(
            "writ {} for {} (task {:?}), expires {}",
            answer["writ_id"].as_str().unwrap_or("?"),
            answer["agent"].as_str().unwrap_or("?"),
            answer["task"].as_str().unwrap_or("?"),
            answer["writ_expires_at"]
                .as_str()
                .or(answer["expires_at"].as_str())
                .unwrap_or("?"),
        );
    }
}

/// `writ request --approval`: open the request, then long-poll until it is decided.
mod approval {
    use std::process::ExitCode;
    use std::time::{Duration, Instant};

    use serde_json::Value;

    use super::{RequestArgs, call, print_writ, read_identity};
    use crate::cli::CliResult;

    pub(super) async fn request_and_wait(
        args: &RequestArgs,
        client: &reqwest::Client,
        identity: &str,
        body: Value,
    ) -> CliResult {
        let url = args.broker.join("/v1/approvals");
        let Some(opened) = call(client.post(&url).json(&body), &url, identity, args.json).await?
        else {
            return Ok(ExitCode::FAILURE);
        };
        let id = opened["id"].as_str().unwrap_or_default().to_owned();
        eprintln!(
            "approval request {id} is pending ({} approval(s) needed, expires {}); waiting",
            opened["quorum"],
            opened["expires_at"].as_str().unwrap_or("?")
        );
        let deadline = Instant::now() + args.wait;
        let url = args.broker.join(&format!("/v1/approvals/{id}?wait=30s"));
        loop {
            let asked = Instant::now();
            // Read again for every poll: a projected or CI token is rotated in place while the
            // humans decide, and the one read at the start may have expired.
            let identity = read_identity(args)?;
            let Some(answer) = call(client.get(&url), &url, identity.trim(), args.json).await?
            else {
                return Ok(ExitCode::FAILURE);
            };
            match answer["status"].as_str() {
                Some("pending") if Instant::now() < deadline => {
                    // Answered without waiting (the broker had no slot free): pause before
                    // asking again rather than spin.
                    if asked.elapsed() < Duration::from_secs(1) {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                    continue;
                }
                Some("pending") => {
                    eprintln!(
                        "still pending after {}; stopped waiting (request {id})",
                        humantime::format_duration(args.wait)
                    );
                    return Ok(ExitCode::FAILURE);
                }
                Some("approved") if answer["writ"].is_string() => {
                    print_writ(args, &answer);
                    return Ok(ExitCode::SUCCESS);
                }
                Some("approved") => {
                    eprintln!("request {id} was approved but its writ was already collected");
                    return Ok(ExitCode::FAILURE);
                }
                status => {
                    eprintln!(
                        "request {id} is {}{}",
                        status.unwrap_or("?"),
                        reasons(&answer)
                    );
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }

    /// The approvers' reasons, for a denied request.
    fn reasons(answer: &Value) -> String {
        let decisions = answer["decisions"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        decisions
            .iter()
            .map(|d| {
                format!(
                    "\n  {} by {}: {}",
                    d["decision"].as_str().unwrap_or("?"),
                    d["approver"].as_str().unwrap_or("?"),
                    d["reason"].as_str().unwrap_or("")
                )
            })
            .collect()
    }
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
