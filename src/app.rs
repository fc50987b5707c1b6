//! Assembling and running the broker: configuration in, a bound listener and a router out.
//! Tests build the same [`Application`] on port 0 with a fresh database.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind};

use crate::approval::notify::{DeliveryReport, Notifier, Webhook};
use crate::broker::{Approvals, Broker, Exchanges, Policies, ReloadTrigger, VaultExchange};
use crate::config::{
    ABSOLUTE_MAX_SKEW, Config, ConfigError, ConnectionLimits, DEV_ISSUER_NAME, KeyStoreKind,
    LoginConfig, WRIT_LIFETIME_BOUND, WebhookConfig,
};
use crate::exchange::aws::{AwsExchange, BrokerAwsCredentials};
use crate::http::{self, AppState, router};
use crate::identity::{DevIssuer, IdentityVerifier};
use crate::keys::{KeyDir, KeyStore, Keys, VaultKeys};
use crate::login::{LoginProvider, LoginSettings};
use crate::revocation::{Limits, RevocationView};
use crate::store;
use crate::store::Store;
use crate::vault::VaultClient;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("policies: {0}")]
    Policy(#[from] crate::policy::PolicyError),
    #[error("keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    #[error("vault: {0}")]
    Vault(#[from] crate::vault::VaultError),
    #[error("storage: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("identity: {0}")]
    Identity(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Application {
    listener: TcpListener,
    request_timeout: Duration,
    connections: ConnectionLimits,
    /// Writes refusal counts; it ends after writing the last window once shutdown begins.
    refusal_counts: tokio::task::JoinHandle<()>,
    state: AppState,
    shutting_down: tokio::sync::watch::Sender<bool>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Application, StartError> {
        config.validate()?;
        let dev = if config.dev {
            tracing::warn!(
                issuer = DEV_ISSUER_NAME,
                "DEV MODE: the built-in development identity issuer is trusted; never use this in production"
            );
            Some(
                DevIssuer::open_or_init(&config.key_dir)
                    .map_err(|e| StartError::Identity(e.to_string()))?,
            )
        } else {
            None
        };
        let identities =
            IdentityVerifier::from_config(&config, dev.as_ref()).map_err(StartError::Identity)?;
        let issuers = identities.issuer_names().map(str::to_owned).collect();
        let policies = Policies::load(config.policy_dir.as_deref(), config.max_ttl, issuers)?;
        // Listening for SIGHUP from the start: its default action would stop the broker.
        // Without a policy directory (dev mode) there is nothing to reload.
        let reload_signal = config.policy_dir.as_ref().map(|_| hangup_signal());
        // Vault is reached (and logged in to) at start: a broker configured for it that cannot
        // reach it says so now rather than at the first call.
        let vault = match &config.vault {
            Some(vault) => Some(VaultClient::connect(vault).await?),
            None => None,
        };
        let keys = Arc::new(Keys::open(open_key_store(&config, vault.as_ref()).await?).await?);
        let store = store::connect(&config.database_url).await?;
        let revocations = RevocationView::new(config.revocation_poll);
        revocations.catch_up(&store).await?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let mut background = identities.spawn_refresh();
        background.push(keys.watch(Duration::from_secs(1)));
        background.push(revocations.spawn_sync(store.clone(), config.revocation_poll));
        background.push(spawn_checkpoints(
            store.clone(),
            Arc::clone(&keys),
            config.audit_checkpoint_interval,
        ));
        let limits = Limits {
            writ_lifetime: WRIT_LIFETIME_BOUND,
            skew: ABSOLUTE_MAX_SKEW,
        };
        let (notifier, deliveries) = match &config.approvals.webhook {
            Some(webhook) => {
                let (notifier, reports) = start_webhook(webhook)?;
                (Some(notifier), Some(reports))
            }
            None => (None, None),
        };
        let mut approvals = Approvals::new(notifier, config.approvals.page_url.clone());
        if let Some(login) = &config.approvals.login {
            let provider = Arc::new(start_login(login)?);
            // Discovery is tried now, without holding the start: agents need no provider, and
            // logins retry it (see `login::provider`).
            let warming = Arc::clone(&provider);
            background.push(tokio::spawn(async move { warming.warm_up().await }));
            approvals = approvals.with_login(provider);
        }
        let exchanges = start_exchanges(&config, vault.clone())?;
        let broker = Arc::new(
            Broker::new(
                identities,
                policies,
                keys,
                store,
                revocations,
                limits,
                approvals,
            )
            .with_exchanges(exchanges),
        );
        if broker.exchanges_configured() {
            background.push(tokio::spawn(Arc::clone(&broker).keep_withdrawing()));
            background.push(tokio::spawn(Arc::clone(&broker).keep_tidy()));
        }
        if let Some(reports) = deliveries {
            background.push(spawn_delivery_records(Arc::clone(&broker), reports));
        }
        background.push(spawn_approval_expiry(Arc::clone(&broker)));
        if let Some(signal) = reload_signal {
            background.push(spawn_policy_reload(
                Arc::clone(&broker),
                config.policy_reload_interval,
                signal,
            ));
        }
        let (shutting_down, shutdown) = tokio::sync::watch::channel(false);
        let refusal_counts = spawn_refusal_counts(
            Arc::clone(&broker),
            config.audit_refusal_window,
            shutdown.clone(),
        );
        Ok(Application {
            shutting_down,
            listener,
            request_timeout: config.request_timeout,
            connections: config.connections,
            refusal_counts,
            state: AppState {
                broker,
                revocation_heartbeat: config.revocation_heartbeat,
                shutdown,
                streams: Arc::new(tokio::sync::Semaphore::new(
                    config.connections.max_revocation_streams,
                )),
            },
            background,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then gives in-flight requests `request_timeout` to
    /// finish (a client that stopped reading a stream or an export must not hold the shutdown
    /// forever) and stops the background tasks.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let app = router(self.state, self.request_timeout);
        let shutting_down = self.shutting_down;
        let down = shutting_down.subscribe();
        tokio::spawn(async move {
            shutdown.await;
            shutting_down.send_replace(true);
        });
        http::serve(
            self.listener,
            app,
            self.connections,
            down,
            self.request_timeout,
        )
        .await;
        for task in self.background {
            task.abort();
        }
        // The last window's refusal counts are written before the broker stops.
        if tokio::time::timeout(self.request_timeout, self.refusal_counts)
            .await
            .is_err()
        {
            tracing::warn!("the last refusal counts could not be written in time");
        }
    }
}

/// Writes the refusal counts every `window` (see `audit::RefusalTally`), and once more when
/// the broker shuts down. It is never aborted mid-write, so no count is lost on a clean stop.
fn spawn_refusal_counts(
    broker: Arc<Broker>,
    window: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(window);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = shutdown.wait_for(|down| *down) => true,
            };
            broker.flush_refusals().await;
            if stopping {
                return;
            }
        }
    })
}

/// Shortest webhook secret accepted, in bytes.
const MIN_WEBHOOK_SECRET: usize = 32;

/// The exchange configuration with its upstream clients (`[exchange]`).
fn start_exchanges(config: &Config, vault: Option<VaultClient>) -> Result<Exchanges, StartError> {
    let vault = match (&config.exchange.vault, vault) {
        (Some(exchange), Some(client)) => Some(VaultExchange {
            client,
            roles: exchange.roles.clone(),
        }),
        (Some(_), None) => {
            return Err(StartError::Config(ConfigError::Invalid(
                "[exchange.vault] needs the Vault connection in [vault]".into(),
            )));
        }
        (None, _) => None,
    };
    let aws = match &config.exchange.aws {
        Some(aws) => {
            let credentials = BrokerAwsCredentials::configured(aws)
                .map_err(|m| StartError::Config(ConfigError::Invalid(m)))?;
            Some(AwsExchange::new(aws, credentials))
        }
        None => None,
    };
    Ok(Exchanges::new(config.exchange.service.clone(), vault, aws))
}

fn start_webhook(
    config: &WebhookConfig,
) -> Result<(Notifier, tokio::sync::mpsc::Receiver<DeliveryReport>), StartError> {
    let invalid = |m: String| StartError::Config(ConfigError::Invalid(m));
    crate::keys::check_private_file(&config.secret_file)?;
    let secret = std::fs::read(&config.secret_file).map_err(|e| {
        invalid(format!(
            "approvals.webhook.secret_file {}: {e}",
            config.secret_file.display()
        ))
    })?;
    let secret = secret.trim_ascii().to_vec();
    if secret.len() < MIN_WEBHOOK_SECRET {
        return Err(invalid(format!(
            "approvals.webhook.secret_file must hold at least {MIN_WEBHOOK_SECRET} bytes"
        )));
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| invalid(format!("webhook client: {e}")))?;
    let webhook = Webhook {
        url: config.url.clone(),
        secret: Arc::new(secret),
        attempts: config.attempts,
        retry_base: config.retry_base,
    };
    Ok(Notifier::start(webhook, client))
}

/// Longest client secret read from `approvals.login.client_secret_file`, in bytes.
const MAX_CLIENT_SECRET: usize = 4096;

/// The approval page's login provider, as configured (`[approvals.login]`).
fn start_login(config: &LoginConfig) -> Result<LoginProvider, StartError> {
    let invalid = |m: String| StartError::Config(ConfigError::Invalid(m));
    let client_secret = match &config.client_secret_file {
        None => None,
        Some(path) => {
            crate::keys::check_private_file(path)?;
            let bytes = std::fs::read(path).map_err(|e| {
                invalid(format!(
                    "approvals.login.client_secret_file {}: {e}",
                    path.display()
                ))
            })?;
            let secret = String::from_utf8(bytes.trim_ascii().to_vec())
                .map_err(|_| invalid("approvals.login.client_secret_file must hold text".into()))?;
            if secret.is_empty() || secret.len() > MAX_CLIENT_SECRET {
                return Err(invalid(format!(
                    "approvals.login.client_secret_file must hold 1 to {MAX_CLIENT_SECRET} bytes"
                )));
            }
            Some(secret)
        }
    };
    let settings = LoginSettings {
        issuer: config.issuer.clone(),
        client_id: config.client_id.clone(),
        client_secret,
        redirect_url: config.redirect_url.clone(),
        principal_claim: config.principal_claim.clone(),
        groups_claim: config.groups_claim.clone(),
        approver_groups: config.approver_groups.clone(),
        session_ttl: config.session_ttl,
    };
    LoginProvider::new(settings, config.scopes.clone()).map_err(invalid)
}

/// Records every webhook delivery attempt as it is reported.
fn spawn_delivery_records(
    broker: Arc<Broker>,
    mut reports: tokio::sync::mpsc::Receiver<DeliveryReport>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(report) = reports.recv().await {
            broker.record_delivery(report).await;
        }
    })
}

/// The key store `[keys]` names: the key directory (created with a first key if empty), or the
/// Vault secret (likewise).
pub async fn open_key_store(
    config: &Config,
    vault: Option<&VaultClient>,
) -> Result<KeyStore, StartError> {
    match (config.keys.store, vault) {
        (KeyStoreKind::Dir, _) => Ok(KeyStore::Dir(KeyDir::open_or_init(&config.key_dir)?)),
        (KeyStoreKind::Vault, Some(vault)) => Ok(KeyStore::Vault(
            VaultKeys::open_or_init(
                vault.clone(),
                &config.keys.vault_mount,
                &config.keys.vault_path,
            )
            .await?,
        )),
        (KeyStoreKind::Vault, None) => Err(StartError::Config(ConfigError::Invalid(
            "keys.store = \"vault\" needs a [vault] section saying how to reach Vault".into(),
        ))),
    }
}

/// Marks pending approval requests expired once past their deadline, every second.
fn spawn_approval_expiry(broker: Arc<Broker>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = broker.expire_approvals().await {
                tracing::warn!(%error, "expired approval requests not recorded yet");
            }
        }
    })
}

/// Signs the audit chain's head every `every`, when it moved, so an outside party holding a
/// checkpoint can later prove the log was not rewritten or truncated.
fn spawn_checkpoints(
    store: Store,
    keys: Arc<Keys>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        let mut signed_up_to = 0;
        loop {
            tick.tick().await;
            match checkpoint(&store, &keys, signed_up_to).await {
                Ok(seq) => signed_up_to = seq,
                Err(error) => tracing::warn!(%error, "audit checkpoint not written"),
            }
        }
    })
}

async fn checkpoint(store: &Store, keys: &Keys, signed_up_to: u64) -> Result<u64, String> {
    let (seq, hash) = store.audit_head().await.map_err(|e| e.to_string())?;
    if seq <= signed_up_to {
        return Ok(signed_up_to);
    }
    let now = crate::time::unix_ms(std::time::SystemTime::now());
    let signed = crate::audit::Checkpoint::sign(&keys.current().active, seq, hash, now)
        .map_err(|e| e.to_string())?;
    store
        .record_checkpoint(&signed)
        .await
        .map_err(|e| e.to_string())?;
    Ok(seq)
}

/// SIGHUP, or `None` (logged) when it cannot be listened for: the poll still reloads.
fn hangup_signal() -> Option<Signal> {
    match tokio::signal::unix::signal(SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "SIGHUP cannot be listened for; policies reload on the poll only");
            None
        }
    }
}

/// Re-reads the policy files every `every`, and at once on SIGHUP (see `broker::policy`).
fn spawn_policy_reload(
    broker: Arc<Broker>,
    every: Duration,
    mut hangup: Option<Signal>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate, and the set was just loaded.
        tick.tick().await;
        loop {
            let trigger = tokio::select! {
                _ = tick.tick() => ReloadTrigger::Poll,
                () = next_signal(&mut hangup) => ReloadTrigger::Signal,
            };
            broker.reload_policies(trigger).await;
        }
    })
}

/// The next delivery of `signal`; never, once it cannot deliver any more.
async fn next_signal(signal: &mut Option<Signal>) {
    if let Some(listening) = signal
        && listening.recv().await.is_some()
    {
        return;
    }
    *signal = None;
    std::future::pending::<()>().await
}
