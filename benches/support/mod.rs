//! What the HTTP benchmarks share: a dev-mode broker on loopback in this process, and an admin
//! writ made as `writ admin bootstrap` makes one.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use writ::app::Application;
use writ::config::Config;

/// A running broker: its URL, and the sender that stops it.
pub struct Broker {
    pub url: String,
    pub stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts a broker with `config` in this process.
pub async fn start(config: Config) -> Broker {
    let app = Application::build(config).await.expect("the broker starts");
    let url = format!("http://{}", app.local_addr().expect("bound"));
    let (stop, stopped) = tokio::sync::oneshot::channel();
    tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    Broker { url, stop }
}

/// Dev mode on a free loopback port, keys under `dir`, on `database_url`.
pub fn dev_config(dir: &Path, database_url: &str) -> Config {
    let mut config = Config::default_embedded();
    config.dev = true;
    config.listen = "127.0.0.1:0".parse().expect("address");
    config.database_url = database_url.to_owned();
    config.key_dir = dir.join("keys");
    config
}

/// An admin writ with `role` for the principal `bench`, valid for an hour.
pub async fn admin_token(dir: &Path, database_url: &str, role: writ::admin::Role) -> String {
    let ring = writ::keys::KeyDir::open(&dir.join("keys"))
        .and_then(|keys| keys.load())
        .expect("keys");
    let store = writ::store::connect(database_url).await.expect("store");
    let roles: BTreeSet<_> = [role].into();
    let principal = writ::admin::Principal::parse("bench").expect("principal");
    writ::broker::issue_admin_writ(
        &ring,
        &store,
        &writ::broker::AdminWritOrder {
            principal: &principal,
            roles: &roles,
            ttl: Duration::from_secs(3600),
            issued_by: "bench",
            parent_writ_id: None,
            action: writ::audit::actions::ADMIN_BOOTSTRAP,
        },
    )
    .await
    .expect("admin writ")
    .token
}
