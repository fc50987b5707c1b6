//! The broker's in-memory view of live revocation entries (the SDK's `RevocationView` follows
//! it), kept in step with the durable entries: after each local revocation, on every
//! notification that another replica revoked, and by a poll that catches anything a lost
//! notification missed. The feed and the stream are served from it, and issuance asks it whether
//! an agent is suspended. It reads entries through [`RevocationSource`], which the store
//! implements.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Mutex, watch};
use writ_verify::revocation::RevocationPage;

use super::{Revocation, Target};
use crate::error::{DomainError, ErrorCode, codes};
use crate::time::unix_seconds;

/// Where the view reads durable entries from.
pub trait RevocationSource: Clone + Send + Sync + 'static {
    type Error: std::fmt::Display + Send;

    /// Entries with `seq > after`, in order, at most `limit` (expired ones included).
    fn revocations_after(
        &self,
        after: u64,
        limit: u32,
    ) -> impl std::future::Future<Output = Result<Vec<Revocation>, Self::Error>> + Send;

    /// A channel woken when another process commits an entry, where the source has one.
    fn watch(&self) -> Option<tokio::sync::mpsc::Receiver<()>>;
}

/// The view cannot be kept current (its source cannot be read), so it must not vouch for
/// itself: the feed, the stream and readiness refuse.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the broker's revocation view is not current: its database cannot be read")]
pub struct ViewNotCurrent;

impl DomainError for ViewNotCurrent {
    fn code(&self) -> ErrorCode {
        codes::NOT_READY
    }

    fn public_detail(&self) -> String {
        self.to_string()
    }
}

/// Entries read from the database per query while catching up.
const READ_PAGE: u32 = 500;

#[derive(Default)]
struct State {
    by_id: HashMap<String, Revocation>,
    /// Feed order: seq → entry id.
    by_seq: BTreeMap<u64, String>,
    /// Agents whose entry is open-ended: asked on every issuance, so indexed.
    suspended: HashSet<String>,
    /// Every seq up to this one has been read from the database.
    head: u64,
}

pub struct RevocationView {
    state: RwLock<State>,
    /// Announces the head after each change (for the stream).
    changed: watch::Sender<u64>,
    /// One catch-up at a time; the others find the work done.
    catching_up: Mutex<()>,
    /// When the database was last read successfully: a view that cannot be kept current must
    /// not tell verifiers it is.
    synced_at: RwLock<Option<Instant>>,
    /// How old the last read may be before the view is not current.
    max_lag: Duration,
}

impl RevocationView {
    /// A view re-read every `poll`; it counts as current while its last read is no older than
    /// three polls (at least 3 s), so one slow read does not stop the feed.
    pub fn new(poll: Duration) -> Arc<RevocationView> {
        Arc::new(RevocationView {
            state: RwLock::new(State::default()),
            changed: watch::Sender::new(0),
            catching_up: Mutex::new(()),
            synced_at: RwLock::new(None),
            max_lag: (poll * 3).max(Duration::from_secs(3)),
        })
    }

    /// Reads every entry committed since the last read. Returns whether anything changed.
    pub async fn catch_up<S: RevocationSource>(&self, source: &S) -> Result<bool, S::Error> {
        let _one_at_a_time = self.catching_up.lock().await;
        let mut changed = false;
        loop {
            let after = self.read().head;
            let page = source.revocations_after(after, READ_PAGE).await?;
            let full = page.len() == READ_PAGE as usize;
            if page.is_empty() {
                break;
            }
            changed = true;
            let now = unix_seconds(SystemTime::now());
            let mut state = self.write();
            for revocation in page {
                state.head = state.head.max(revocation.seq);
                state.apply(revocation, now);
            }
            state.forget_expired(now);
            if !full {
                break;
            }
        }
        *self
            .synced_at
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now());
        if changed {
            let head = self.head();
            self.changed.send_replace(head);
        }
        Ok(changed)
    }

    /// The view if it is current.
    pub fn current(&self) -> Result<&Self, ViewNotCurrent> {
        if self.is_current() {
            Ok(self)
        } else {
            Err(ViewNotCurrent)
        }
    }

    /// Whether the view was read from its source recently enough to vouch for it.
    pub fn is_current(&self) -> bool {
        self.synced_at
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some_and(|synced| synced.elapsed() <= self.max_lag)
    }

    /// The highest seq read.
    pub fn head(&self) -> u64 {
        self.read().head
    }

    /// Woken with the new head after every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// One page of the feed: live entries with `seq > after`, at most `limit`.
    pub fn page(&self, after: u64, limit: usize, now: SystemTime) -> RevocationPage {
        let now = unix_seconds(now);
        let state = self.read();
        let mut entries = Vec::new();
        let mut more = false;
        for (_, id) in state.by_seq.range(after.saturating_add(1)..) {
            let Some(revocation) = state.by_id.get(id) else {
                continue;
            };
            if !revocation.is_live(now) {
                continue;
            }
            if entries.len() == limit {
                more = true;
                break;
            }
            entries.push(revocation.to_entry());
        }
        let next_after = match (more, entries.last()) {
            (true, Some(last)) => last.seq,
            _ => state.head.max(after),
        };
        RevocationPage {
            entries,
            next_after,
            more,
        }
    }

    /// Whether `agent` is suspended (its revocation is open-ended).
    pub fn is_suspended(&self, agent: &str) -> bool {
        self.read().suspended.contains(agent)
    }

    /// Whether a writ with this id or any of these revocation ids is revoked (admin writs).
    pub fn revokes_writ(&self, writ_id: &str, revocation_ids: &[String]) -> bool {
        self.read()
            .by_id
            .values()
            .any(|revocation| match &revocation.target {
                Target::Writ(id) => {
                    id == writ_id
                        || revocation
                            .revocation_id
                            .as_ref()
                            .is_some_and(|rid| revocation_ids.contains(rid))
                }
                _ => false,
            })
    }

    /// Keeps the view current until the task is aborted: woken by the database's notifications
    /// where it has them, and polled every `poll` regardless.
    pub fn spawn_sync<S: RevocationSource>(
        self: &Arc<Self>,
        source: S,
        poll: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let view = Arc::clone(self);
        tokio::spawn(async move {
            let mut notified = source.watch();
            let mut tick = tokio::time::interval(poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                match notified.as_mut() {
                    Some(channel) => {
                        tokio::select! {
                            _ = tick.tick() => {}
                            woken = channel.recv() => if woken.is_none() { notified = None },
                        }
                    }
                    None => {
                        tick.tick().await;
                    }
                }
                if let Err(error) = view.catch_up(&source).await {
                    tracing::warn!(%error, "revocations could not be read; the feed may lag");
                }
            }
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// Adds or replaces an entry (one already expired is not kept).
    fn apply(&mut self, revocation: Revocation, now: i64) {
        self.remove(&revocation.id);
        if revocation.is_live(now) {
            if revocation.is_suspension() {
                self.suspended.insert(revocation.target.value().to_owned());
            }
            self.by_seq.insert(revocation.seq, revocation.id.clone());
            self.by_id.insert(revocation.id.clone(), revocation);
        }
    }

    fn remove(&mut self, id: &str) {
        if let Some(previous) = self.by_id.remove(id) {
            self.by_seq.remove(&previous.seq);
            if previous.is_suspension() {
                self.suspended.remove(previous.target.value());
            }
        }
    }

    fn forget_expired(&mut self, now: i64) {
        let expired: Vec<String> = self
            .by_id
            .values()
            .filter(|revocation| !revocation.is_live(now))
            .map(|revocation| revocation.id.clone())
            .collect();
        for id in expired {
            self.remove(&id);
        }
    }
}
