//! `writ inspect`, `writ attenuate`, `writ verify`: holder and verifier tools built on the
//! `writ-verify` crate, so the CLI reads and checks writs exactly as downstream services do.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;
use writ_verify::biscuit_auth::PublicKey;
use writ_verify::{
    Attenuation, BuildError, Inspection, KEY_SET_PATH, KeySetError, ResourcePattern, RightResource,
    Verifier,
};

use super::{BrokerUrl, CliResult, read_arg_or_stdin};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The writ, or - to read it from stdin.
    writ: String,
}

#[derive(Debug, Args)]
pub struct AttenuateArgs {
    /// The writ, or - to read it from stdin.
    writ: String,
    /// Keep only these resources (exact, or a prefix ending in *). Repeatable.
    #[arg(long = "resource")]
    resources: Vec<String>,
    /// Keep only these operations. Repeatable.
    #[arg(long = "operation")]
    operations: Vec<String>,
    /// Keep only these services. Repeatable.
    #[arg(long = "service")]
    services: Vec<String>,
    /// Expire this long from now (if earlier than the writ's own expiry), e.g. 2m.
    #[arg(long, value_parser = humantime::parse_duration)]
    expires_in: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The writ, or - to read it from stdin.
    writ: String,
    /// The verifying service's own name (the audience).
    #[arg(long)]
    audience: String,
    /// The resource of the request.
    #[arg(long)]
    resource: String,
    /// The operation of the request.
    #[arg(long)]
    operation: String,
    /// The broker whose key set (`/.well-known/writ-keys`) and revocation feed are used.
    #[command(flatten)]
    broker: BrokerUrl,
    /// Trust this root key (KID=ed25519/HEX) instead of the broker's key set. Repeatable.
    #[arg(long)]
    public_key: Vec<String>,
    /// Do not read the broker's revocation feed: a revoked writ is then granted.
    #[arg(long)]
    no_revocation: bool,
    /// This operation requires human approval evidence (signed by the broker's approval key)
    /// covering the request: an ordinary writ is denied it. Repeatable.
    #[arg(long = "require-approval-for", value_name = "OP")]
    require_approval_for: Vec<String>,
    /// Trust this approval key (ed25519/HEX) instead of the key set's, with --public-key.
    /// Repeatable.
    #[arg(long, requires = "public_key")]
    approval_key: Vec<String>,
}

pub fn inspect(args: InspectArgs) -> CliResult {
    let writ = read_arg_or_stdin(&args.writ)?;
    let inspection = writ_verify::inspect(&writ).map_err(|e| e.to_string())?;
    print!("{}", describe(&inspection, SystemTime::now()));
    Ok(ExitCode::SUCCESS)
}

fn describe(inspection: &Inspection, now: SystemTime) -> String {
    let mut out = String::from("NOT VERIFIED: this decodes the writ; `writ verify` checks it.\n");
    let line = |out: &mut String, name: &str, value: String| {
        out.push_str(&format!("{name:<12} {value}\n"))
    };
    let or_none = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
    line(
        &mut out,
        "root key",
        inspection
            .root_key_id
            .map_or("-".into(), |kid| kid.to_string()),
    );
    line(
        &mut out,
        "format",
        inspection.version.map_or("-".into(), |v| v.to_string()),
    );
    line(&mut out, "writ id", or_none(&inspection.writ_id));
    line(
        &mut out,
        "agent",
        format!("{:?}", or_none(&inspection.agent)),
    );
    line(&mut out, "task", format!("{:?}", or_none(&inspection.task)));
    line(
        &mut out,
        "issued at",
        inspection.issued_at.map_or("-".into(), rfc3339),
    );
    // The effective expiry, as a verifier decides: an attenuation may have set an earlier one.
    let expiry = inspection.effective_expires_at.map_or("-".into(), |at| {
        let state = if at < now { "expired" } else { "valid" };
        match (inspection.expiry_block, inspection.expires_at) {
            (Some(block), Some(issued)) => format!(
                "{} ({state}; set by block {block}, issued to expire {})",
                rfc3339(at),
                rfc3339(issued)
            ),
            (Some(block), None) => format!("{} ({state}; set by block {block})", rfc3339(at)),
            (None, _) => format!("{} ({state})", rfc3339(at)),
        }
    });
    line(&mut out, "expires at", expiry);
    line(&mut out, "services", inspection.services.join(", "));
    for right in &inspection.rights {
        let resource = match &right.resource {
            RightResource::Exact(resource) => format!("{resource:?}"),
            RightResource::Prefix(prefix) => format!("{:?}", format!("{prefix}*")),
        };
        line(&mut out, "right", format!("{} {resource}", right.operation));
    }
    line(
        &mut out,
        "blocks",
        format!(
            "{} (attenuation depth {}{})",
            inspection.blocks.len(),
            inspection
                .blocks
                .len()
                .saturating_sub(1 + inspection.approvals.len()),
            if inspection.approvals.is_empty() {
                ""
            } else {
                "; block 1 is the approval evidence"
            }
        ),
    );
    for evidence in &inspection.approvals {
        for approver in &evidence.approvals {
            line(
                &mut out,
                "approval",
                format!(
                    "by {:?} at {} (request {}; block {} signed by {})",
                    approver.principal,
                    rfc3339(approver.decided_at),
                    approver.request_id,
                    evidence.block,
                    evidence.signed_by
                ),
            );
        }
    }
    for (index, block) in inspection.blocks.iter().enumerate() {
        out.push_str(&format!(
            "\n-- block {index}{} --\n{block}\n",
            if index == 0 { " (authority)" } else { "" }
        ));
    }
    out
}

pub fn attenuate(args: AttenuateArgs) -> CliResult {
    let writ = read_arg_or_stdin(&args.writ)?;
    let non_empty = |list: Vec<String>| (!list.is_empty()).then_some(list);
    let resources = args
        .resources
        .iter()
        .map(|r| ResourcePattern::parse(r).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let attenuation = Attenuation {
        resources: (!resources.is_empty()).then_some(resources),
        operations: non_empty(args.operations),
        services: non_empty(args.services),
        expires_at: args
            .expires_in
            .map(|ttl| {
                // `SystemTime + Duration` panics past what `SystemTime` holds.
                SystemTime::now()
                    .checked_add(ttl)
                    .ok_or_else(|| format!("--expires-in {ttl:?} is too far in the future"))
            })
            .transpose()?,
    };
    // Decoded without verification: the holder's own writ, read to refuse a result that could
    // never be used.
    if let Ok(inspection) = writ_verify::inspect(&writ) {
        grants_something(&inspection, &attenuation)?;
    }
    let narrower = writ_verify::attenuate(&writ, &attenuation).map_err(|e| e.to_string())?;
    println!("{narrower}");
    Ok(ExitCode::SUCCESS)
}

/// Refuses an attenuation after which the writ (by its authority block's rights and services)
/// would grant nothing: a resource, operation or service it does not grant at all.
fn grants_something(inspection: &Inspection, attenuation: &Attenuation) -> Result<(), String> {
    if let Some(services) = &attenuation.services
        && !services.iter().any(|s| inspection.services.contains(s))
    {
        return Err(format!(
            "the writ may be shown only to {}: none of --service {} is among them, so the \
             narrower writ would be accepted nowhere",
            inspection.services.join(", "),
            services.join(", ")
        ));
    }
    let operation_kept = |right: &&writ_verify::InspectedRight| {
        attenuation
            .operations
            .as_ref()
            .is_none_or(|ops| ops.contains(&right.operation))
    };
    let resource_kept = |right: &&writ_verify::InspectedRight| {
        attenuation.resources.as_ref().is_none_or(|patterns| {
            patterns
                .iter()
                .any(|pattern| overlaps(pattern, &right.resource))
        })
    };
    if inspection
        .rights
        .iter()
        .any(|right| operation_kept(&right) && resource_kept(&right))
    {
        return Ok(());
    }
    let granted: Vec<String> = inspection
        .rights
        .iter()
        .map(|right| format!("{} {}", right.operation, right_resource(&right.resource)))
        .collect();
    Err(format!(
        "the narrower writ would grant nothing: the writ grants {}, and none of it is within \
         the --resource/--operation given",
        if granted.is_empty() {
            "nothing".to_owned()
        } else {
            granted.join(", ")
        }
    ))
}

/// Whether some resource matches both the pattern and the right.
fn overlaps(pattern: &ResourcePattern, right: &RightResource) -> bool {
    match (pattern.exact(), pattern.prefix(), right) {
        (Some(exact), _, RightResource::Exact(granted)) => exact == granted,
        (Some(exact), _, RightResource::Prefix(granted)) => exact.starts_with(granted.as_str()),
        (None, Some(prefix), RightResource::Exact(granted)) => granted.starts_with(prefix),
        (None, Some(prefix), RightResource::Prefix(granted)) => {
            prefix.starts_with(granted.as_str()) || granted.starts_with(prefix)
        }
        (None, None, _) => false,
    }
}

fn right_resource(resource: &RightResource) -> String {
    match resource {
        RightResource::Exact(resource) => resource.clone(),
        RightResource::Prefix(prefix) => format!("{prefix}*"),
    }
}

pub async fn verify(args: VerifyArgs) -> CliResult {
    let writ = read_arg_or_stdin(&args.writ)?;
    let broker = args.broker.base();
    let keys = args
        .public_key
        .iter()
        .map(|key| parse_static_key(key))
        .collect::<Result<Vec<_>, _>>()?;
    let approval_keys = args
        .approval_key
        .iter()
        .map(|key| {
            key.parse::<PublicKey>()
                .map_err(|_| format!("--approval-key {key:?} must be ed25519/HEX"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder = Verifier::builder(args.audience.clone());
    builder = if keys.is_empty() {
        builder.key_set_url(format!("{broker}{KEY_SET_PATH}"))
    } else {
        builder.static_keys(keys)
    };
    if !approval_keys.is_empty() {
        builder = builder.approval_keys(approval_keys);
    }
    if !args.require_approval_for.is_empty() {
        builder = builder.require_approval_for(args.require_approval_for.clone());
    }
    let revocation = if args.no_revocation {
        builder = builder.no_revocation();
        "revocation: NOT checked (--no-revocation): a revoked writ passes".to_owned()
    } else {
        builder = builder.revocation_feed(broker.clone());
        format!("revocation: checked against the feed of {broker}")
    };
    let verifier = builder
        .build()
        .await
        .map_err(|e| build_error(&broker, &e))?;
    let answer = verifier
        .authorize_with_refresh(&writ, &args.resource, &args.operation)
        .await;
    let code = match answer {
        Ok(grant) => {
            println!(
                "granted: {} {} for agent {:?}, task {:?} (writ {}, key {}, depth {}, expires {})",
                args.operation,
                args.resource,
                grant.agent,
                grant.task,
                grant.writ_id,
                grant.root_key_id,
                grant.attenuation_depth,
                rfc3339(grant.expires_at)
            );
            if let Some(evidence) = &grant.approval {
                for approver in &evidence.approvals {
                    println!(
                        "approved by {} at {} (request {})",
                        approver.principal,
                        rfc3339(approver.decided_at),
                        evidence.request_id
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(denial) => {
            println!("denied ({}): {denial}", denial.code());
            ExitCode::FAILURE
        }
    };
    println!("{revocation}");
    Ok(code)
}

/// Why the verifier could not be built, with the way out.
fn build_error(broker: &str, error: &BuildError) -> String {
    match error {
        BuildError::KeySet(KeySetError::Unreachable(_)) => {
            format!("{error}{}", super::NOT_RUNNING_HINT)
        }
        BuildError::RevocationFeed(_) => format!(
            "{error}\nThe revocation feed of {broker} is read before anything is verified; \
             point --broker (or WRIT_BROKER_URL) at the broker, or pass --no-revocation to \
             verify without it."
        ),
        _ => error.to_string(),
    }
}

fn parse_static_key(text: &str) -> Result<(u32, PublicKey), String> {
    let (kid, key) = text
        .split_once('=')
        .ok_or_else(|| format!("--public-key {text:?} must be KID=ed25519/HEX"))?;
    let kid = kid
        .parse()
        .map_err(|_| format!("key id {kid:?} is not a number"))?;
    let key: PublicKey = key
        .parse()
        .map_err(|_| format!("{key:?} is not a public key (ed25519/HEX)"))?;
    Ok((kid, key))
}

/// RFC 3339 to the second for any time a writ can carry: years past 9999 are written with a
/// sign (`+10000-01-01T00:00:00Z`, ISO 8601's expanded form; humantime's formatter fails there,
/// which panics `to_string`), times beyond chrono's range in seconds since the epoch.
fn rfc3339(time: SystemTime) -> String {
    let secs = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).ok(),
        Err(before) => i64::try_from(before.duration().as_secs())
            .ok()
            .map(|secs| -secs),
    };
    match secs.and_then(|secs| chrono::DateTime::from_timestamp(secs, 0)) {
        Some(at) => at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        None => match time.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(since) => format!("{} s after 1970-01-01T00:00:00Z", since.as_secs()),
            Err(before) => format!(
                "{} s before 1970-01-01T00:00:00Z",
                before.duration().as_secs()
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_of_any_year_are_written() {
        let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(rfc3339(at(1_795_000_000)), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(at(253_402_300_800)), "+10000-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(at(i64::MAX as u64)),
            format!("{} s after 1970-01-01T00:00:00Z", i64::MAX)
        );
    }
}
