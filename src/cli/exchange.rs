//! `writ aws-credentials` and `writ exchange vault`: the agent trades a writ for a native
//! credential (`POST /v1/exchange/...`) and prints it. The writ and the credential go to the
//! broker and to stdout only: never to stderr or a log.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{BrokerUrl, CliResult, credential_client};
use crate::exchange::MAX_WRIT_BYTES;

/// The help of `writ exchange vault`, after the options.
const VAULT_AFTER_HELP: &str = "Prints the broker's JSON answer (exchange_id, lease_duration, \
     expires_at, data); the lease ends no later than the writ. A refusal goes to stderr and \
     exits 1. The writ must list the exchange service (`writ-exchange` unless the broker's \
     [exchange] service says otherwise) and grant the role's right, e.g. `writ request \
     --service writ-exchange --right 'vault:database/orders:read' ...`.";

/// Where the writ comes from.
#[derive(Debug, Args)]
pub struct WritFile {
    /// File holding the writ (read whole, surrounding whitespace ignored), or - for stdin.
    #[arg(long, value_name = "FILE")]
    writ_file: PathBuf,
}

impl WritFile {
    /// The writ, trimmed. Errors name the file, never its content.
    fn read(&self) -> Result<String, String> {
        let stdin = self.writ_file.as_os_str() == "-";
        let name = if stdin {
            "stdin".to_owned()
        } else {
            self.writ_file.display().to_string()
        };
        let mut bytes = Vec::new();
        let read = if stdin {
            std::io::stdin()
                .take(MAX_WRIT_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        } else {
            std::fs::File::open(&self.writ_file)
                .and_then(|file| file.take(MAX_WRIT_BYTES as u64 + 1).read_to_end(&mut bytes))
        };
        read.map_err(|e| format!("cannot read the writ from {name}: {e}"))?;
        if bytes.len() > MAX_WRIT_BYTES {
            return Err(format!(
                "{name} holds more than {MAX_WRIT_BYTES} bytes (16 KiB): not a writ"
            ));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("{name} is not text: a writ is base64url"))?;
        let writ = text.trim();
        if writ.is_empty() {
            return Err(format!("{name} is empty: no writ"));
        }
        Ok(writ.to_owned())
    }
}

/// The help of `writ aws-credentials`, after the options.
const AWS_AFTER_HELP: &str = "Prints only the broker's JSON (Version, AccessKeyId, SecretAccessKey, \
     SessionToken, Expiration), as AWS `credential_process` reads it; a refusal goes to stderr \
     and exits 1. In ~/.aws/config:\n\n  [profile reports]\n  credential_process = writ \
     aws-credentials --broker https://writ.example --writ-file /run/agent/writ --role reports\n\n\
     The writ must list the exchange service (`writ-exchange` unless the broker's [exchange] \
     service says otherwise) and grant rights within the role's resources, e.g. \
     `writ request --service writ-exchange --right 'aws:s3/reports/*:read' ...`.";

#[derive(Debug, Args)]
#[command(after_help = AWS_AFTER_HELP)]
pub struct AwsCredentialsArgs {
    #[command(flatten)]
    broker: BrokerUrl,
    /// The AWS exchange role to assume (a name from the broker's [[exchange.aws.roles]]).
    #[arg(long, value_name = "NAME")]
    role: String,
    #[command(flatten)]
    writ: WritFile,
    /// Ask only for this right of the writ, as RESOURCE:OP[,OP...], e.g.
    /// 'aws:s3/reports/2026/*:read'. Repeatable [default: every right of the writ the role
    /// serves].
    #[arg(long = "right", value_name = "RIGHT")]
    rights: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ExchangeCommand {
    /// Exchange a writ for a Vault/OpenBao dynamic secret, e.g. a database login.
    #[command(after_help = VAULT_AFTER_HELP)]
    Vault(VaultArgs),
    /// Exchange a writ for AWS credentials: the same as `writ aws-credentials`.
    #[command(after_help = AWS_AFTER_HELP)]
    Aws(AwsCredentialsArgs),
}

#[derive(Debug, Args)]
pub struct VaultArgs {
    /// The Vault exchange role (a name from the broker's [[exchange.vault.roles]]).
    name: String,
    #[command(flatten)]
    broker: BrokerUrl,
    #[command(flatten)]
    writ: WritFile,
}

/// `writ aws-credentials`: stdout is the broker's answer alone, as `credential_process` reads it.
pub async fn aws_credentials(args: AwsCredentialsArgs) -> CliResult {
    let rights = args
        .rights
        .iter()
        .map(|right| super::request::parse_right(right))
        .collect::<Result<Vec<_>, _>>()?;
    let writ = args.writ.read()?;
    let mut body = json!({"role": args.role});
    if !rights.is_empty() {
        body["rights"] = Value::Array(rights);
    }
    let url = args.broker.join("/v1/exchange/aws");
    let client = credential_client(None)?;
    let Some((text, _)) = exchange(client.post(&url).json(&body), &url, &writ).await? else {
        return Ok(ExitCode::FAILURE);
    };
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// `writ exchange vault NAME`: the answer, pretty-printed; a summary without secrets on stderr.
pub async fn run(command: ExchangeCommand) -> CliResult {
    let args = match command {
        ExchangeCommand::Vault(args) => args,
        ExchangeCommand::Aws(args) => return aws_credentials(args).await,
    };
    let writ = args.writ.read()?;
    let mut url = reqwest::Url::parse(&args.broker.join("/v1/exchange/vault"))
        .map_err(|e| format!("--broker {:?}: {e}", args.broker.base()))?;
    url.path_segments_mut()
        .map_err(|()| format!("--broker {:?} is not an HTTP URL", args.broker.base()))?
        .push(&args.name);
    let client = credential_client(None)?;
    let Some((_, answer)) = exchange(client.post(url.clone()), url.as_str(), &writ).await? else {
        return Ok(ExitCode::FAILURE);
    };
    println!("{answer:#}");
    eprintln!(
        "exchange {} for Vault role {:?}: lease of {} s, ends {}",
        answer["exchange_id"].as_str().unwrap_or("?"),
        args.name,
        answer["lease_duration"],
        answer["expires_at"].as_str().unwrap_or("?"),
    );
    Ok(ExitCode::SUCCESS)
}

/// Sends `request` with the writ. A success answers its body as received and as JSON; a refusal
/// is written to stderr (its `type`, `detail` and `denial`, nothing of the writ) and answers
/// `None`.
async fn exchange(
    request: reqwest::RequestBuilder,
    url: &str,
    writ: &str,
) -> Result<Option<(String, Value)>, String> {
    let response = request
        .bearer_auth(writ)
        .send()
        .await
        .map_err(|e| super::unreachable(url, &e))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("unreadable answer ({status}): {}", super::error_chain(&e)))?;
    let answer: Value = serde_json::from_str(&text)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| format!("unreadable answer ({status}): not a JSON object"))?;
    if status.is_success() {
        return Ok(Some((text, answer)));
    }
    eprintln!(
        "refused ({status}): {}",
        answer["detail"].as_str().unwrap_or("no detail")
    );
    let kind = answer["type"].as_str().unwrap_or("?");
    eprintln!("type: {kind}");
    if let Some(denial) = answer["denial"].as_str() {
        eprintln!("denial: {denial}");
    }
    match answer["denial"].as_str() {
        Some("wrong_audience") => eprintln!(
            "hint: the writ must list the exchange service (`writ-exchange` unless the broker \
             is configured otherwise): `writ request --service writ-exchange ...`"
        ),
        Some("not_permitted") => {
            eprintln!("hint: the writ does not grant what this exchange needs")
        }
        _ => {}
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn read(content: &[u8]) -> Result<String, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("writ");
        std::fs::write(&path, content).unwrap();
        WritFile { writ_file: path }.read()
    }

    #[test]
    fn a_writ_file_is_read_whole_and_trimmed() {
        assert_eq!(read(b"  En0KEw.abc_-\n").unwrap(), "En0KEw.abc_-");
        let limit = vec![b'a'; MAX_WRIT_BYTES];
        assert_eq!(read(&limit).unwrap().len(), limit.len());
    }

    #[test]
    fn a_writ_file_that_cannot_be_a_writ_is_refused_without_echoing_it() {
        let large = read(&vec![b'a'; MAX_WRIT_BYTES + 1]).unwrap_err();
        assert!(large.contains("more than 16384 bytes"), "{large}");
        assert!(!large.contains("aaaa"), "{large}");
        assert!(read(b" \n").unwrap_err().contains("empty"));
        let binary = read(&[0xff, 0xfe, b's', b'e', b'c']).unwrap_err();
        assert!(
            binary.contains("not text") && !binary.contains("sec"),
            "{binary}"
        );
        let missing = WritFile {
            writ_file: PathBuf::from("/nonexistent/writ"),
        }
        .read()
        .unwrap_err();
        assert!(missing.contains("/nonexistent/writ"), "{missing}");
    }
}
