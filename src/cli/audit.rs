//! `writ audit verify`: walks the audit chain from its first event, in the database or in a
//! JSON-lines export, names the first event that was altered, removed or reordered, and holds
//! the log to every signed checkpoint (which also catches a rewritten or truncated tail).

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::CliResult;
use super::admin::BrokerFiles;
use crate::audit::{ChainHash, ChainVerifier, ChainedEvent, Checkpoint};
use crate::keys::KeyRing;
use crate::store::AuditQuery;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the audit chain (exit 0 intact, 1 broken or unreadable).
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    files: BrokerFiles,
    /// Verify a JSON-lines export (`GET /v1/audit?format=jsonl`) instead of the database.
    #[arg(long)]
    export: Option<PathBuf>,
}

/// Events read from the database per query.
const PAGE: u32 = 1000;

pub async fn run(command: AuditCommand) -> CliResult {
    let AuditCommand::Verify(args) = command;
    match &args.export {
        Some(path) => verify_export(path),
        None => verify_database(&args.files).await,
    }
}

fn verify_export(path: &Path) -> CliResult {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut verifier = ChainVerifier::new();
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: ChainedEvent = serde_json::from_str(&line)
            .map_err(|e| format!("{}:{}: not an audit event: {e}", path.display(), number + 1))?;
        if let Err(broken) = verifier.push(&event) {
            println!("audit chain broken: {broken}");
            return Ok(ExitCode::FAILURE);
        }
    }
    let (seq, hash) = verifier.head();
    println!(
        "audit chain intact: {} events, head {seq} {hash}",
        verifier.count()
    );
    Ok(ExitCode::SUCCESS)
}

async fn verify_database(files: &BrokerFiles) -> CliResult {
    let (database_url, _) = files.resolve()?;
    let store = crate::store::connect_existing(&database_url)
        .await
        .map_err(|e| format!("the broker's database: {e}"))?;
    let checkpoints = store.checkpoints().await.map_err(|e| e.to_string())?;
    let wanted: HashMap<u64, ()> = checkpoints.iter().map(|c| (c.seq, ())).collect();
    let mut hashes_at: HashMap<u64, ChainHash> = HashMap::new();
    let mut verifier = ChainVerifier::new();
    let mut query = AuditQuery {
        limit: PAGE,
        ..AuditQuery::default()
    };
    loop {
        let page = store
            .audit_events(&query)
            .await
            .map_err(|e| e.to_string())?;
        for event in &page {
            if let Err(broken) = verifier.push(event) {
                println!("audit chain broken: {broken}");
                return Ok(ExitCode::FAILURE);
            }
            if wanted.contains_key(&event.seq) {
                hashes_at.insert(event.seq, event.hash);
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => query.after = last.seq,
            _ => break,
        }
    }
    let (head, hash) = verifier.head();
    let ring = if checkpoints.is_empty() {
        None
    } else {
        Some(match files.key_store().await {
            Ok(keys) => keys
                .load()
                .await
                .map(|ring| (ring, keys.location()))
                .map_err(|e| e.to_string()),
            Err(error) => Err(error),
        })
    };
    if let Err(message) = check_checkpoints(&checkpoints, &hashes_at, head, ring) {
        println!("audit log does not match its checkpoints: {message}");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "audit chain intact: {} events, head {head} {hash}; {} signed checkpoints hold",
        verifier.count(),
        checkpoints.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn check_checkpoints(
    checkpoints: &[Checkpoint],
    hashes_at: &HashMap<u64, ChainHash>,
    head: u64,
    ring: Option<Result<(KeyRing, String), String>>,
) -> Result<(), String> {
    let Some(ring) = ring else {
        return Ok(());
    };
    let (ring, location) =
        ring.map_err(|e| format!("cannot read the root keys to check signatures: {e}"))?;
    for checkpoint in checkpoints {
        let record = ring
            .records
            .iter()
            .find(|record| record.kid == checkpoint.root_key_id)
            .ok_or_else(|| {
                format!(
                    "the checkpoint for event {} names root key {}, which is not in {}",
                    checkpoint.seq, checkpoint.root_key_id, location
                )
            })?;
        let key: biscuit_auth::PublicKey = record
            .public_key
            .parse()
            .map_err(|_| format!("root key {} is not a valid public key", record.kid))?;
        checkpoint.verify(&key).map_err(|e| e.to_string())?;
        checkpoint
            .check_log(hashes_at.get(&checkpoint.seq), head)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
