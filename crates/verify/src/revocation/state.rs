//! The verifier's side of revocation: the shared view, the staleness bound it is held to, and
//! the counters its status reports.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use super::view::{RevocationView, WritIdentity};
use crate::Denial;

/// A snapshot of a verifier's revocation view, from
/// [`Verifier::revocation_status`](crate::Verifier::revocation_status).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RevocationStatus {
    /// Time since the view was last confirmed complete; `None` if it never was.
    pub age: Option<Duration>,
    /// The bound on `age` past which every writ is refused; `None` for a static view, which
    /// nothing keeps fresh and whose age is therefore not enforced.
    pub max_staleness: Option<Duration>,
    /// The highest feed position applied.
    pub cursor: u64,
    /// Live entries held.
    pub entries: usize,
    /// Whether the event stream is connected now (otherwise the verifier polls).
    pub streaming: bool,
    /// Stream connections that failed or broke: refused, error status, malformed or oversized
    /// events, or silent past half the staleness bound.
    pub stream_errors: u64,
    /// Polls of the feed that failed.
    pub poll_errors: u64,
}

/// The view shared by the verifier (reading on every request) and the sync task (writing).
#[derive(Debug)]
pub(crate) struct RevocationState {
    view: RwLock<RevocationView>,
    /// `None` for a static view: its age is not enforced.
    max_staleness: Option<Duration>,
    streaming: AtomicBool,
    stream_errors: AtomicU64,
    poll_errors: AtomicU64,
}

impl RevocationState {
    pub(crate) fn new(view: RevocationView, max_staleness: Option<Duration>) -> RevocationState {
        RevocationState {
            view: RwLock::new(view),
            max_staleness,
            streaming: AtomicBool::new(false),
            stream_errors: AtomicU64::new(0),
            poll_errors: AtomicU64::new(0),
        }
    }

    // Nothing panics while the lock is held and every view update leaves it consistent, so a
    // poisoned lock still guards a valid view.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, RevocationView> {
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, RevocationView> {
        self.view.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The refusal due while `view` is too old to decide: never confirmed, or confirmed longer
    /// ago than the bound. A static view never is.
    fn staleness(&self, view: &RevocationView) -> Option<Denial> {
        let max_staleness = self.max_staleness?;
        let age = view.age(Instant::now());
        age.is_none_or(|age| age > max_staleness)
            .then_some(Denial::RevocationViewStale { age, max_staleness })
    }

    /// Whether the view is too old to decide (see [`RevocationState::check`]).
    pub(crate) fn is_stale(&self) -> bool {
        self.staleness(&self.read()).is_some()
    }

    /// Refuses `writ` if the view is too old to decide, or names it.
    pub(crate) fn check(&self, writ: &WritIdentity<'_>) -> Result<(), Denial> {
        let view = self.read();
        if let Some(stale) = self.staleness(&view) {
            return Err(stale);
        }
        match view.is_revoked(writ) {
            Some(entry) => {
                tracing::debug!(writ_id = writ.writ_id, revocation = %entry.id, "writ revoked");
                Err(Denial::Revoked)
            }
            None => Ok(()),
        }
    }

    pub(crate) fn status(&self) -> RevocationStatus {
        let view = self.read();
        RevocationStatus {
            age: view.age(Instant::now()),
            max_staleness: self.max_staleness,
            cursor: view.cursor(),
            entries: view.len(),
            streaming: self.streaming.load(Ordering::Relaxed),
            stream_errors: self.stream_errors.load(Ordering::Relaxed),
            poll_errors: self.poll_errors.load(Ordering::Relaxed),
        }
    }

    /// Marks the stream connected until the returned guard is dropped.
    pub(crate) fn streaming(&self) -> StreamingGuard<'_> {
        self.streaming.store(true, Ordering::Relaxed);
        StreamingGuard(&self.streaming)
    }

    pub(crate) fn count_stream_error(&self) {
        self.stream_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_poll_error(&self) {
        self.poll_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Clears the streaming flag however the stream ends.
pub(crate) struct StreamingGuard<'a>(&'a AtomicBool);

impl Drop for StreamingGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}
