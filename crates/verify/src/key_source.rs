//! Where the verifier's trusted keys come from: a fixed table, or the broker's key set URL.
//!
//! A remote key set is fetched at build, refreshed on a schedule, and refetched when a writ names
//! an unknown key id (the broker may have rotated). That last path is driven by whoever presents
//! a token, so it is rate-limited: at most one on-demand fetch per window, however many hostile
//! key ids arrive, and concurrent callers share one fetch. A failed fetch keeps the old keys.
//! The approval keys come with the root keys (same document, same table, same refreshes).

use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant, SystemTime};

use biscuit_auth::PublicKey;

use crate::http_fetch::{FetchError, describe, get_bounded};
use crate::keys::{KeySetError, KeyTable, Lookup};

/// Largest key set document read, in bytes.
const MAX_KEY_SET_BYTES: usize = 1024 * 1024;

/// The current key table, and how to renew it.
#[derive(Debug)]
pub(crate) struct KeySource {
    table: RwLock<Arc<KeyTable>>,
    remote: Option<Remote>,
}

#[derive(Debug)]
pub(crate) struct Remote {
    url: String,
    client: reqwest::Client,
    /// Minimum time between two on-demand (unknown key id) fetches.
    refetch_window: Duration,
    last_refetch: Mutex<Option<Instant>>,
    /// Held for the duration of a fetch so concurrent refreshes collapse into one.
    fetching: tokio::sync::Mutex<()>,
    /// The runtime the verifier was built on, for refreshes started from synchronous calls.
    runtime: tokio::runtime::Handle,
}

impl KeySource {
    pub(crate) fn fixed(table: KeyTable) -> KeySource {
        KeySource {
            table: RwLock::new(Arc::new(table)),
            remote: None,
        }
    }

    /// Fetches the key set once; fails if it cannot be read.
    pub(crate) async fn remote(
        url: String,
        client: reqwest::Client,
        refetch_window: Duration,
        runtime: tokio::runtime::Handle,
    ) -> Result<KeySource, KeySetError> {
        let table = fetch(&client, &url).await?;
        Ok(KeySource {
            table: RwLock::new(Arc::new(table)),
            remote: Some(Remote {
                url,
                client,
                refetch_window,
                last_refetch: Mutex::new(None),
                fetching: tokio::sync::Mutex::new(()),
                runtime,
            }),
        })
    }

    /// The keys in force now (a refresh swaps in a new table).
    fn current(&self) -> RwLockReadGuard<'_, Arc<KeyTable>> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// What `kid` resolves to at `now` in the keys in force. Per request: a read lock, and no
    /// clone of the table's `Arc` (a counter shared by every request).
    pub(crate) fn lookup(&self, kid: u32, now: SystemTime) -> Lookup {
        self.current().lookup(kid, now)
    }

    /// The approval keys usable at `now` in the keys in force.
    pub(crate) fn approval_keys(&self, now: SystemTime) -> Vec<PublicKey> {
        self.current().approval_keys(now)
    }

    /// Whether `key` is an approval key usable at `now` in the keys in force.
    pub(crate) fn is_approval_key(&self, key: &PublicKey, now: SystemTime) -> bool {
        self.current().is_approval_key(key, now)
    }

    pub(crate) fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Fetches now and swaps the table in; on failure the old table stays.
    pub(crate) async fn refresh(&self) -> Result<(), KeySetError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let _fetching = remote.fetching.lock().await;
        self.fetch_and_swap(remote).await
    }

    async fn fetch_and_swap(&self, remote: &Remote) -> Result<(), KeySetError> {
        match fetch(&remote.client, &remote.url).await {
            Ok(table) => {
                tracing::debug!(keys = table.len(), "writ key set refreshed");
                *self.table.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
                Ok(())
            }
            Err(error) => {
                tracing::warn!(%error, "writ key set refresh failed; keeping the previous keys");
                Err(error)
            }
        }
    }

    /// From a synchronous call that met an unknown key id: starts one background fetch if the
    /// rate limit allows. The caller is refused now; a later request sees the new keys.
    pub(crate) fn refetch_in_background(self: &Arc<Self>) {
        let Some(remote) = &self.remote else {
            return;
        };
        if !remote.claim_refetch() {
            return;
        }
        let source = Arc::clone(self);
        remote.runtime.spawn(async move {
            let _ = source.refresh().await;
        });
    }

    /// From an async call that met unknown key id `kid`: waits for one rate-limited fetch (or
    /// for the one already running) and answers whether `kid` is known afterwards.
    pub(crate) async fn refetch_for(&self, kid: u32) -> bool {
        let Some(remote) = &self.remote else {
            return false;
        };
        let _fetching = remote.fetching.lock().await;
        if self.current().contains(kid) {
            return true; // a fetch that finished while we waited brought it
        }
        if !remote.claim_refetch() {
            return false;
        }
        let _ = self.fetch_and_swap(remote).await;
        self.current().contains(kid)
    }
}

impl Remote {
    /// Takes the on-demand fetch slot if the window since the last one has passed.
    fn claim_refetch(&self) -> bool {
        let mut last = self
            .last_refetch
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.refetch_window) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// Spawns the scheduled refresh. It holds only a weak reference, so it ends once the verifier
/// is dropped (the verifier also aborts it).
pub(crate) fn spawn_scheduled_refresh(
    source: &Arc<KeySource>,
    every: Duration,
    runtime: &tokio::runtime::Handle,
) -> tokio::task::AbortHandle {
    let weak = Arc::downgrade(source);
    runtime
        .spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is immediate; the key set was just fetched
            loop {
                ticks.tick().await;
                let Some(source) = weak.upgrade() else {
                    break;
                };
                let _ = source.refresh().await;
            }
        })
        .abort_handle()
}

/// GETs and parses the key set, reading at most [`MAX_KEY_SET_BYTES`].
async fn fetch(client: &reqwest::Client, url: &str) -> Result<KeyTable, KeySetError> {
    let request = client
        .get(url)
        .header(http::header::ACCEPT, "application/json");
    let body = get_bounded(request, MAX_KEY_SET_BYTES)
        .await
        .map_err(|error| match error {
            FetchError::Request(error) if error.is_connect() => {
                KeySetError::Unreachable(describe(&error))
            }
            FetchError::Request(error) => KeySetError::Fetch(describe(&error)),
            FetchError::Status(status) => KeySetError::Fetch(status_message(url, status)),
            FetchError::TooLarge => KeySetError::TooLarge,
        })?;
    KeyTable::from_json(&body)
}

/// Where a broker serves its key set, below its base URL.
pub const KEY_SET_PATH: &str = "/.well-known/writ-keys";

/// An error status, with the likely fix when the URL is not a key set URL at all.
fn status_message(url: &str, status: http::StatusCode) -> String {
    let path = url.split('?').next().unwrap_or(url).trim_end_matches('/');
    if path.ends_with(KEY_SET_PATH) {
        format!("{url} answered {status}")
    } else {
        format!("{url} answered {status}; a broker serves its key set at {path}{KEY_SET_PATH}")
    }
}
