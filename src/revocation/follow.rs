//! Following the view as a stream, for the push feed: the backlog after a cursor, then a
//! heartbeat, then live entries as they are committed, and a heartbeat whenever nothing else was
//! sent for the heartbeat interval. A heartbeat promises that every live entry up to its `head`
//! has been sent. The HTTP layer frames the items as server-sent events.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::Stream;
use tokio::sync::watch;
use writ_verify::revocation::{FeedHeartbeat, RevocationEntry};

use super::RevocationView;

/// Entries a stream reads from the view at a time: a slow reader holds at most this many.
const STREAM_PAGE: usize = 200;

/// One item of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    Entry(RevocationEntry),
    Heartbeat(FeedHeartbeat),
}

/// The stream of `view` after `after`. It ends when `shutdown` turns true (a verifier reconnects
/// to another replica or after the restart), or when the view stops being current at a
/// heartbeat (the broker cannot vouch for a view it cannot keep).
pub fn follow(
    view: Arc<RevocationView>,
    after: u64,
    heartbeat: Duration,
    shutdown: watch::Receiver<bool>,
) -> impl Stream<Item = FeedItem> {
    let changes = view.subscribe();
    let follower = Follower {
        view,
        changes,
        shutdown,
        cursor: after,
        heartbeat,
        pending: VecDeque::new(),
        last_heartbeat: None,
    };
    futures_util::stream::unfold(follower, |mut follower| async move {
        let item = follower.next().await?;
        Some((item, follower))
    })
}

struct Follower {
    view: Arc<RevocationView>,
    changes: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    cursor: u64,
    heartbeat: Duration,
    pending: VecDeque<FeedItem>,
    /// When the last heartbeat went out (`None`: not yet).
    last_heartbeat: Option<tokio::time::Instant>,
}

impl Follower {
    /// The next item to send; `None` ends the stream.
    async fn next(&mut self) -> Option<FeedItem> {
        loop {
            if *self.shutdown.borrow() {
                return None;
            }
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            // Mark the change seen before reading, so one committed meanwhile wakes us again.
            self.changes.borrow_and_update();
            if self.read_page() {
                continue;
            }
            // Nothing unsent as of this read. A heartbeat at least once per interval, even
            // while entries keep coming: it is what tells a verifier its view is complete.
            let heartbeat_due = self
                .last_heartbeat
                .is_none_or(|sent| sent.elapsed() >= self.heartbeat);
            if heartbeat_due {
                if !self.view.is_current() {
                    return None;
                }
                self.last_heartbeat = Some(tokio::time::Instant::now());
                return Some(FeedItem::Heartbeat(FeedHeartbeat { head: self.cursor }));
            }
            let wait = self.last_heartbeat.map_or(Duration::ZERO, |sent| {
                self.heartbeat.saturating_sub(sent.elapsed())
            });
            tokio::select! {
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = self.shutdown.changed() => return None,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Queues the next page of live entries after the cursor; false when there is none.
    fn read_page(&mut self) -> bool {
        let head = self.view.head();
        let page = self.view.page(self.cursor, STREAM_PAGE, SystemTime::now());
        let last_sent = page.entries.last().map_or(0, |entry| entry.seq);
        // A full page leaves the rest for the next read; otherwise everything up to the head
        // read before the page has been queued.
        self.cursor = if page.more {
            last_sent
        } else {
            self.cursor.max(head).max(last_sent)
        };
        let found = !page.entries.is_empty();
        self.pending
            .extend(page.entries.into_iter().map(FeedItem::Entry));
        found
    }
}
