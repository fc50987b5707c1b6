//! `writ-test-issuer`: the test issuer as a process, for benchmarks that drive writ (or OpenBao)
//! from outside.
//!
//! ```text
//! writ-test-issuer [--port N] [--ttl 1h] [--audience writ] [--namespace default]
//!                  [--service-account writ-bench] [--token-out FILE] [--pubkey-out FILE]
//! ```
//!
//! Writes a Kubernetes-shaped RS256 token and the RSA public key PEM (if asked), then prints one
//! line `issuer=http://127.0.0.1:PORT` (the files are complete by then) and serves until SIGTERM
//! or ctrl-c. The keys are the test kit's fixed test keys: never use this outside tests.

use std::error::Error;
use std::time::Duration;

use writ_testkit::{Alg, IssuerOptions, TestIssuer};

struct Args {
    port: u16,
    ttl: Duration,
    audience: String,
    namespace: String,
    service_account: String,
    token_out: Option<String>,
    pubkey_out: Option<String>,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut args = Args {
        port: 0,
        ttl: Duration::from_secs(3600),
        audience: "writ".into(),
        namespace: "default".into(),
        service_account: "writ-bench".into(),
        token_out: None,
        pubkey_out: None,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => args.port = value()?.parse()?,
            "--ttl" => args.ttl = humantime::parse_duration(&value()?)?,
            "--audience" => args.audience = value()?,
            "--namespace" => args.namespace = value()?,
            "--service-account" => args.service_account = value()?,
            "--token-out" => args.token_out = Some(value()?),
            "--pubkey-out" => args.pubkey_out = Some(value()?),
            "-h" | "--help" => {
                println!(
                    "usage: writ-test-issuer [--port N] [--ttl 1h] [--audience writ] \
                     [--namespace default] [--service-account writ-bench] \
                     [--token-out FILE] [--pubkey-out FILE]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let issuer = TestIssuer::start_with(IssuerOptions {
        port: args.port,
        ..IssuerOptions::default()
    })
    .await;

    if let Some(path) = &args.token_out {
        let token = issuer.kubernetes_token(
            Alg::Rs256,
            &args.namespace,
            &args.service_account,
            &args.audience,
            args.ttl,
        );
        std::fs::write(path, token)?;
    }
    if let Some(path) = &args.pubkey_out {
        std::fs::write(path, issuer.public_key_pem(Alg::Rs256))?;
    }
    // println! flushes at the newline: a parent reading our stdout sees the line at once.
    println!("issuer={}", issuer.issuer());

    wait_for_termination().await?;
    issuer.shutdown().await;
    Ok(())
}

async fn wait_for_termination() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await
}
