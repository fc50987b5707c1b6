//! `writ policy status`: the policy set a running broker runs (`GET /v1/policy`), with an admin
//! writ carrying the `admin` or `auditor` role (`WRIT_ADMIN_TOKEN`). Against several replicas,
//! ask each: each answers for itself.

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::CliResult;
use super::admin::{BrokerCall, get};

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    call: BrokerCall,
    /// Print the broker's JSON answer.
    #[arg(long)]
    json: bool,
}

/// Prints the running set; exits 1 when the broker refused the last change to its files, so
/// that a deploy script notices.
pub async fn run(args: StatusArgs) -> CliResult {
    let status = get(&args.call, "/v1/policy").await?;
    if args.json {
        println!("{status:#}");
    } else {
        print!("{}", summary(&status));
    }
    Ok(if status.get("last_error").is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The hash, when it was loaded, each file's digest, and the refused reload if any.
fn summary(status: &Value) -> String {
    let text = |value: &Value| value.as_str().unwrap_or("?").to_owned();
    let mut lines = vec![
        format!("policy hash  {}", text(&status["hash"])),
        format!("loaded at    {}", text(&status["loaded_at"])),
    ];
    for file in status["files"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        lines.push(format!(
            "  {}  {}",
            text(&file["sha256"]),
            text(&file["name"])
        ));
    }
    if let Some(error) = status.get("last_error") {
        let hash = error["hash"].as_str().unwrap_or("unreadable");
        lines.push(format!(
            "reload refused at {} (files {hash}); the set above still decides:\n  {}",
            text(&error["at"]),
            text(&error["message"])
        ));
    }
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_summary_names_every_file_and_a_refused_reload() {
        let mut status = json!({
            "hash": "ab12", "loaded_at": "2026-01-01T00:00:00Z",
            "files": [{"name": "a.toml", "sha256": "cd34"}],
        });
        let shown = summary(&status);
        assert_eq!(
            shown,
            "policy hash  ab12\nloaded at    2026-01-01T00:00:00Z\n  cd34  a.toml\n"
        );
        status["last_error"] =
            json!({"message": "a.toml:3:1: bad", "at": "2026-01-01T00:01:00Z", "hash": null});
        let shown = summary(&status);
        assert!(
            shown.ends_with(
                "reload refused at 2026-01-01T00:01:00Z (files unreadable); the set above still \
                 decides:\n  a.toml:3:1: bad\n"
            ),
            "{shown}"
        );
    }
}
