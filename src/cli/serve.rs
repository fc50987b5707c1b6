//! `writ serve`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::CliResult;
use crate::app::{Application, StartError};
use crate::config::Config;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML). Without one, the embedded defaults apply.
    #[arg(long, env = "WRIT_CONFIG")]
    config: Option<PathBuf>,
    /// Development mode: SQLite and keys under ./writ-data, a built-in identity issuer, loopback only.
    #[arg(long, env = "WRIT_DEV", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    dev: bool,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "WRIT_LISTEN")]
    listen: Option<SocketAddr>,
    /// sqlite://path or postgres://... [default: sqlite://writ-data/writ.db].
    #[arg(long, env = "WRIT_DATABASE_URL")]
    database_url: Option<String>,
    /// Directory of the root keys [default: writ-data/keys].
    #[arg(long, env = "WRIT_KEY_DIR")]
    key_dir: Option<PathBuf>,
    /// Directory of policy files (required outside dev mode).
    #[arg(long, env = "WRIT_POLICY_DIR")]
    policy_dir: Option<PathBuf>,
    /// How often the policy files are read for a change, e.g. 2s (SIGHUP reads them at once)
    /// [default: 2s].
    #[arg(long, env = "WRIT_POLICY_RELOAD_INTERVAL", value_parser = humantime::parse_duration)]
    policy_reload_interval: Option<std::time::Duration>,
}

impl ServeArgs {
    /// File, then environment and flags on top.
    pub fn config(&self) -> Result<Config, String> {
        let mut config = match &self.config {
            Some(path) => Config::load(path).map_err(|e| e.to_string())?,
            None => Config::default_embedded(),
        };
        config.dev |= self.dev;
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(url) = &self.database_url {
            config.database_url.clone_from(url);
        }
        if let Some(dir) = &self.key_dir {
            config.key_dir.clone_from(dir);
        }
        if let Some(dir) = &self.policy_dir {
            config.policy_dir = Some(dir.clone());
        }
        if let Some(every) = self.policy_reload_interval {
            config.policy_reload_interval = every;
        }
        Ok(config)
    }
}

pub async fn run(args: ServeArgs) -> CliResult {
    let config = args.config()?;
    let dev = config.dev;
    let app = Application::build(config)
        .await
        .map_err(|e| start_error(&e))?;
    let addr = app.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, dev, "writ is listening");
    if dev {
        print_first_steps(addr);
    }
    app.run(shutdown_signal()).await;
    tracing::info!("writ stopped");
    Ok(ExitCode::SUCCESS)
}

/// Why the broker did not start; for an address in use, how to pick another.
fn start_error(error: &StartError) -> String {
    match error {
        StartError::Listen { addr, source } if source.kind() == std::io::ErrorKind::AddrInUse => {
            format!(
                "cannot listen on {addr}: the address is in use (another broker?). Choose \
                 another with --listen (or WRIT_LISTEN, or `listen` in the configuration file), \
                 e.g. --listen 127.0.0.1:8090, and point the commands at it with --broker (or \
                 WRIT_BROKER_URL), e.g. export WRIT_BROKER_URL=http://127.0.0.1:8090"
            )
        }
        _ => error.to_string(),
    }
}

fn print_first_steps(addr: SocketAddr) {
    let url = format!("http://{addr}");
    let broker = if url == super::DEFAULT_BROKER_URL {
        String::new()
    } else {
        format!("  export WRIT_BROKER_URL={url}\n")
    };
    // Not eprintln!: a closed stderr must not stop the broker.
    let _ = writeln!(
        std::io::stderr(),
        "\nwrit (dev mode) is listening on {url}\n\
         Get a first writ from another terminal, in this directory:\n\
         {broker}  \
         writ dev token --subject demo-agent > identity.jwt\n  \
         writ request --identity-file identity.jwt --task demo --right 'orders/42:read' --service orders-api > writ.txt\n  \
         writ verify --audience orders-api --resource orders/42 --operation read - < writ.txt\n\
         (from a checkout, `cargo run -q --` stands for `writ`)\n"
    );
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
