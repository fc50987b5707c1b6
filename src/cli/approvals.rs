//! `writ approvals`: approvers list and decide requests with an admin writ carrying the
//! `approver` role (`WRIT_ADMIN_TOKEN`).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::CliResult;
use super::admin::{BrokerCall, get, post};
use super::request::parse_right;

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// List requests (pending by default), newest first.
    List(ListArgs),
    /// Approve a request, optionally narrowing its rights or lifetime.
    Approve(ApproveArgs),
    /// Deny a request.
    Deny(DenyArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    call: BrokerCall,
    /// pending, approved, denied, expired or all.
    #[arg(long, default_value = "pending")]
    status: String,
    /// Print the broker's JSON answer.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
    /// Print only the ids, one per line (for `writ approvals approve $(writ approvals list -q)`).
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    call: BrokerCall,
    /// The request id (`ap_…`).
    id: String,
    /// Why (recorded in the audit log and shown to the agent).
    #[arg(long)]
    reason: String,
    /// Approve only these rights, RESOURCE:OP[,OP...], each within those requested.
    /// Repeatable.
    #[arg(long = "right")]
    rights: Vec<String>,
    /// A shorter lifetime for the elevated writ, e.g. 2m.
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct DenyArgs {
    #[command(flatten)]
    call: BrokerCall,
    /// The request id (`ap_…`).
    id: String,
    /// Why (recorded in the audit log and shown to the agent).
    #[arg(long)]
    reason: String,
}

pub async fn run(command: ApprovalsCommand) -> CliResult {
    match command {
        ApprovalsCommand::List(args) => list(args).await,
        ApprovalsCommand::Approve(args) => {
            let mut body = json!({ "decision": "approve", "reason": args.reason });
            if !args.rights.is_empty() {
                let rights = args
                    .rights
                    .iter()
                    .map(|r| parse_right(r))
                    .collect::<Result<Vec<_>, _>>()?;
                body["rights"] = json!(rights);
            }
            if let Some(ttl) = args.ttl {
                body["ttl"] = json!(ttl.as_secs());
            }
            decide(&args.call, &args.id, body).await
        }
        ApprovalsCommand::Deny(args) => {
            let body = json!({ "decision": "deny", "reason": args.reason });
            decide(&args.call, &args.id, body).await
        }
    }
}

async fn list(args: ListArgs) -> CliResult {
    let status = urlencode(&args.status);
    let page = get(&args.call, &format!("/v1/approvals?status={status}")).await?;
    if args.json {
        println!("{page:#}");
        return Ok(ExitCode::SUCCESS);
    }
    let approvals = page["approvals"].as_array().cloned().unwrap_or_default();
    if args.quiet {
        for approval in &approvals {
            println!("{}", approval["id"].as_str().unwrap_or_default());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if approvals.is_empty() {
        eprintln!("no {} requests", args.status);
    }
    for approval in &approvals {
        println!("{}", summary(approval));
    }
    Ok(ExitCode::SUCCESS)
}

/// One request in a few lines: id, status, who asks what, why, and the votes.
fn summary(approval: &Value) -> String {
    let text = |key: &str| approval[key].as_str().unwrap_or("?").to_owned();
    let rights: Vec<String> = approval["rights"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let ops: Vec<&str> = r["operations"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            format!(
                "{}:{}",
                r["resource"].as_str().unwrap_or("?"),
                ops.join(",")
            )
        })
        .collect();
    let mut lines = vec![
        format!(
            "{}  {}  {}/{} approvals  expires {}",
            text("id"),
            text("status"),
            approval["approvals"],
            approval["quorum"],
            text("expires_at")
        ),
        format!("  agent    {:?}", text("agent")),
        format!("  task     {:?}", text("task")),
        format!("  rights   {}", rights.join(" ")),
        format!("  why      {:?}", text("justification")),
    ];
    if approval["may_decide"] == json!(true) {
        lines.push("  you may decide this request".into());
    }
    lines.join("\n")
}

async fn decide(call: &BrokerCall, id: &str, body: Value) -> CliResult {
    if !crate::id::is_id(id, crate::broker::APPROVAL_PREFIX) {
        return Err(format!("{id:?} is not an approval request id (ap_…)"));
    }
    let answer = post(call, &format!("/v1/approvals/{id}/decision"), body).await?;
    eprintln!(
        "{} is {} ({}/{} approvals)",
        id,
        answer["status"].as_str().unwrap_or("?"),
        answer["approvals"],
        answer["quorum"]
    );
    println!("{answer:#}");
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes a query value (status names are plain words; anything else is escaped).
fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
