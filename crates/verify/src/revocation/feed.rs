//! Following the broker's revocation feed: the event stream while it works, polling while it
//! does not.
//!
//! The sync task connects `GET {base}/v1/revocations/stream` from the view's cursor and applies
//! each entry as it arrives. A heartbeat whose `head` the cursor has reached confirms the view
//! complete as of its arrival; a heartbeat ahead of the cursor (entries the stream left out
//! because they expired, or one still in flight) is settled by a poll. When the stream fails,
//! ends, or confirms nothing for half the staleness bound, the task polls
//! `GET {base}/v1/revocations` every poll interval and retries the stream with a capped, jittered
//! backoff, so a broken stream costs freshness only if polling fails too.
//!
//! A view that went stale is rebuilt from the start of the feed rather than caught up: while it
//! was cut off, an entry it holds may have been replaced by one that has since expired (a lifted
//! suspension), and the feed no longer sends either, so catching up would keep the old entry
//! forever. Any later entry the old view already had is carried over.
//!
//! Everything read is bounded: pages by [`MAX_REVOCATION_PAGE_BYTES`] and the number of pages
//! per poll, stream lines and events by the SSE parser's limits, the view by its capacity.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{ACCEPT, CONTENT_TYPE};

use super::sse::{SseEvent, SseParser};
use super::state::RevocationState;
use super::view::{RevocationView, RevocationViewFull};
use super::wire::{FeedHeartbeat, RevocationEntry, RevocationPage};
use crate::BuildError;
use crate::http_fetch::{FetchError, ensure_success, get_bounded};

/// Largest page of the feed read, in bytes.
pub const MAX_REVOCATION_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Entries asked for per page (`limit=`).
const PAGE_LIMIT: u32 = 500;
/// Most pages one poll reads before giving up (the view's capacity is far below this).
const MAX_PAGES_PER_POLL: usize = 1000;
/// Longest wait between two attempts to reconnect the stream.
const STREAM_RETRY_CAP: Duration = Duration::from_secs(30);

/// Why the revocation feed could not be read. The view keeps what it had; it is simply not
/// confirmed, and refuses writs once older than its bound.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationSyncError {
    /// The request failed, timed out, or answered an error status.
    #[error("the revocation feed cannot be read: {0}")]
    Fetch(String),
    /// A page is larger than [`MAX_REVOCATION_PAGE_BYTES`].
    #[error("a revocation feed page exceeds {MAX_REVOCATION_PAGE_BYTES} bytes")]
    TooLarge,
    /// The feed sent something that is not the feed's format (including oversized stream lines
    /// or events, and entries this verifier cannot read).
    #[error("the revocation feed sent something unreadable: {0}")]
    Invalid(String),
    /// The stream confirmed nothing for this long (no heartbeat): taken for broken.
    #[error("the revocation stream confirmed nothing for {0:?}")]
    Silent(Duration),
    /// The view cannot hold every live revocation.
    #[error(transparent)]
    ViewFull(#[from] RevocationViewFull),
}

impl From<FetchError> for RevocationSyncError {
    fn from(error: FetchError) -> Self {
        match error {
            FetchError::Request(error) => {
                RevocationSyncError::Fetch(crate::http_fetch::describe(&error))
            }
            FetchError::Status(status) => {
                RevocationSyncError::Fetch(format!("the broker answered {status}"))
            }
            FetchError::TooLarge => RevocationSyncError::TooLarge,
        }
    }
}

fn invalid(error: impl ToString) -> RevocationSyncError {
    RevocationSyncError::Invalid(error.to_string())
}

/// Where the feed is and how to follow it.
#[derive(Debug)]
pub(crate) struct RevocationFeed {
    state: Arc<RevocationState>,
    client: reqwest::Client,
    pages_url: String,
    stream_url: String,
    poll_interval: Duration,
    /// Bound of one poll request, and of connecting the stream.
    request_timeout: Duration,
    /// A stream that confirms nothing for this long is taken for broken.
    confirm_within: Duration,
    /// One poll at a time (the sync task's and `sync_revocations_now`'s), so a rebuilt view is
    /// never swapped in over a newer one.
    polling: tokio::sync::Mutex<()>,
}

/// How a stream connection ended.
struct StreamEnd {
    /// Whether it confirmed the view at least once (it worked: reconnect promptly).
    confirmed: bool,
    result: Result<(), RevocationSyncError>,
}

impl RevocationFeed {
    /// A feed at `base_url` (the broker's base URL) updating `state`, whose view is held to
    /// `max_staleness`.
    pub(crate) fn new(
        state: Arc<RevocationState>,
        base_url: &str,
        poll_interval: Duration,
        max_staleness: Duration,
        http_timeout: Duration,
    ) -> Result<RevocationFeed, BuildError> {
        let base = feed_base(base_url)?;
        let client = reqwest::Client::builder()
            // An answer from elsewhere could hide revocations: never follow a redirect.
            .redirect(reqwest::redirect::Policy::none())
            // No overall timeout: the stream stays open. Requests are bounded one by one.
            .connect_timeout(http_timeout)
            .build()
            .map_err(|e| BuildError::HttpClient(e.to_string()))?;
        Ok(RevocationFeed {
            state,
            client,
            pages_url: format!("{base}/v1/revocations"),
            stream_url: format!("{base}/v1/revocations/stream"),
            poll_interval,
            request_timeout: http_timeout.min(max_staleness),
            confirm_within: max_staleness / 2,
            polling: tokio::sync::Mutex::new(()),
        })
    }

    /// Brings the view up to date from the feed's pages and confirms it: caught up from its
    /// cursor while fresh, rebuilt from the start once stale.
    pub(crate) async fn poll(&self) -> Result<(), RevocationSyncError> {
        let _one_at_a_time = self.polling.lock().await;
        if self.state.is_stale() {
            self.rebuild().await
        } else {
            self.catch_up().await
        }
    }

    async fn catch_up(&self) -> Result<(), RevocationSyncError> {
        let after = self.state.read().cursor();
        let now = SystemTime::now();
        let asked_at = self
            .read_pages(after, |entries, next_after| {
                let mut view = self.state.write();
                apply_page(&mut view, entries, next_after, now)
            })
            .await?;
        self.confirm(asked_at);
        Ok(())
    }

    async fn rebuild(&self) -> Result<(), RevocationSyncError> {
        let mut fresh = RevocationView::new();
        let now = SystemTime::now();
        let asked_at = self
            .read_pages(0, |entries, next_after| {
                apply_page(&mut fresh, entries, next_after, now)
            })
            .await?;
        {
            let mut view = self.state.write();
            // Entries the stream brought while the pages were read.
            let newer: Vec<_> = view.entries_after(fresh.cursor()).cloned().collect();
            apply_page(&mut fresh, newer, 0, now)?;
            *view = fresh;
        }
        tracing::info!("revocation view rebuilt from the feed");
        self.confirm(asked_at);
        Ok(())
    }

    /// Reads the pages after `after` until the feed says there is no more, handing each to
    /// `apply` with its `next_after`; answers when the last page was asked for (the instant the
    /// view is complete as of).
    async fn read_pages(
        &self,
        mut after: u64,
        mut apply: impl FnMut(Vec<RevocationEntry>, u64) -> Result<(), RevocationViewFull>,
    ) -> Result<Instant, RevocationSyncError> {
        for _ in 0..MAX_PAGES_PER_POLL {
            let asked_at = Instant::now();
            let page = self.fetch_page(after).await?;
            if page.more && page.next_after <= after {
                return Err(invalid(
                    "the feed announces more entries but its cursor stands",
                ));
            }
            after = after.max(page.next_after);
            apply(page.entries, after)?;
            if !page.more {
                return Ok(asked_at);
            }
        }
        Err(invalid(format!(
            "the feed announced more than {MAX_PAGES_PER_POLL} pages"
        )))
    }

    async fn fetch_page(&self, after: u64) -> Result<RevocationPage, RevocationSyncError> {
        let request = self
            .client
            .get(format!(
                "{}?after={after}&limit={PAGE_LIMIT}",
                self.pages_url
            ))
            .header(ACCEPT, "application/json")
            .timeout(self.request_timeout);
        let body = get_bounded(request, MAX_REVOCATION_PAGE_BYTES).await?;
        serde_json::from_slice(&body).map_err(invalid)
    }

    fn apply(&self, entry: RevocationEntry) -> Result<(), RevocationViewFull> {
        self.state.write().apply(entry, SystemTime::now())
    }

    /// The view held every live revocation at `at`; expired entries can go.
    fn confirm(&self, at: Instant) {
        let mut view = self.state.write();
        view.confirm(at);
        view.prune(SystemTime::now());
    }

    /// Follows the feed until the verifier is dropped (the task is aborted then).
    pub(crate) async fn run(self: Arc<Self>) {
        let mut retry_in = self.poll_interval;
        let mut polls_failing = false;
        loop {
            let end = self.stream().await;
            match end.result {
                Ok(()) => tracing::debug!("the revocation stream ended; polling until it is back"),
                Err(error) => {
                    self.state.count_stream_error();
                    tracing::warn!(%error, "revocation stream failed; polling until it is back");
                }
            }
            if end.confirmed {
                retry_in = self.poll_interval;
            }
            let reconnect_at = Instant::now() + jittered(retry_in);
            retry_in = (retry_in * 2).min(STREAM_RETRY_CAP);
            self.poll_until(reconnect_at, &mut polls_failing).await;
        }
    }

    /// Polls every poll interval (at once first) until `until`.
    async fn poll_until(&self, until: Instant, failing: &mut bool) {
        loop {
            match self.poll().await {
                Ok(()) => *failing = false,
                Err(error) => {
                    self.state.count_poll_error();
                    if std::mem::replace(failing, true) {
                        tracing::debug!(%error, "revocation feed poll failed again");
                    } else {
                        tracing::warn!(%error, "revocation feed poll failed");
                    }
                }
            }
            let next = Instant::now() + self.poll_interval;
            if next >= until {
                tokio::time::sleep_until(until.into()).await;
                return;
            }
            tokio::time::sleep_until(next.into()).await;
        }
    }

    async fn stream(&self) -> StreamEnd {
        let mut confirmed = false;
        let result = self.follow_stream(&mut confirmed).await;
        StreamEnd { confirmed, result }
    }

    /// Connects the stream from the view's cursor and applies what it sends until it ends.
    async fn follow_stream(&self, confirmed: &mut bool) -> Result<(), RevocationSyncError> {
        let cursor = self.state.read().cursor();
        let request = self
            .client
            .get(format!("{}?after={cursor}", self.stream_url))
            .header(ACCEPT, "text/event-stream")
            .header("last-event-id", cursor.to_string())
            .send();
        let mut response = tokio::time::timeout(self.request_timeout, request)
            .await
            .map_err(|_| RevocationSyncError::Fetch("connecting the stream timed out".into()))?
            .map_err(FetchError::from)?;
        ensure_success(&response)?;
        let is_event_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/event-stream"));
        if !is_event_stream {
            return Err(invalid("the stream is not text/event-stream"));
        }
        let _streaming = self.state.streaming();
        let connected_at = Instant::now();
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        loop {
            let deadline = self.confirm_deadline(connected_at);
            let chunk = tokio::time::timeout_at(deadline.into(), response.chunk())
                .await
                .map_err(|_| RevocationSyncError::Silent(self.confirm_within))?
                .map_err(FetchError::from)?;
            let Some(chunk) = chunk else {
                return Ok(());
            };
            parser.push(&chunk, &mut events).map_err(invalid)?;
            for event in events.drain(..) {
                *confirmed |= self.on_event(event).await?;
            }
        }
    }

    /// When a stream that has not confirmed the view since is taken for broken.
    fn confirm_deadline(&self, connected_at: Instant) -> Instant {
        let last = self.state.read().last_confirmed();
        last.map_or(connected_at, |last| last.max(connected_at)) + self.confirm_within
    }

    /// Applies one event; answers whether it confirmed the view.
    async fn on_event(&self, event: SseEvent) -> Result<bool, RevocationSyncError> {
        match event.event.as_str() {
            "revocation" => {
                let entry: RevocationEntry = serde_json::from_str(&event.data).map_err(invalid)?;
                self.apply(entry)?;
                Ok(false)
            }
            "heartbeat" => {
                let heartbeat: FeedHeartbeat =
                    serde_json::from_str(&event.data).map_err(invalid)?;
                Ok(self.on_heartbeat(heartbeat.head).await)
            }
            // Newer brokers may send more kinds; nothing here depends on them.
            _ => Ok(false),
        }
    }

    async fn on_heartbeat(&self, head: u64) -> bool {
        let arrived_at = Instant::now();
        let cursor = self.state.read().cursor();
        if head <= cursor && !self.state.is_stale() {
            self.confirm(arrived_at);
            return true;
        }
        // The broker has entries the stream did not bring: expired ones it leaves out, or one
        // still on its way. A poll brings them, or moves the cursor past them. A stale view is
        // rebuilt by the poll rather than confirmed as it is.
        match self.poll().await {
            Ok(()) => true,
            Err(error) => {
                self.state.count_poll_error();
                tracing::warn!(%error, "revocation feed poll after a heartbeat failed");
                false
            }
        }
    }
}

/// Applies one page's entries to `view` and moves its cursor to `next_after`.
fn apply_page(
    view: &mut RevocationView,
    entries: Vec<RevocationEntry>,
    next_after: u64,
    now: SystemTime,
) -> Result<(), RevocationViewFull> {
    for entry in entries {
        view.apply(entry, now)?;
    }
    view.advance_cursor(next_after);
    Ok(())
}

/// Spawns the task that follows `feed`; the verifier aborts it when dropped.
pub(crate) fn spawn_sync(
    feed: &Arc<RevocationFeed>,
    runtime: &tokio::runtime::Handle,
) -> tokio::task::AbortHandle {
    runtime.spawn(Arc::clone(feed).run()).abort_handle()
}

/// The feed's base URL without a trailing slash, if it is an http(s) URL without query.
fn feed_base(base_url: &str) -> Result<String, BuildError> {
    let unusable = |why: &str| BuildError::InvalidRevocationFeed(format!("{base_url:?}: {why}"));
    let url = reqwest::Url::parse(base_url).map_err(|e| unusable(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(unusable("not an http(s) URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(unusable(
            "give the broker's base URL, without query or fragment",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// `base` give or take a fifth, so verifiers that lost the broker together do not all
/// reconnect at the same instant.
fn jittered(base: Duration) -> Duration {
    // A randomly keyed hash of the time: enough randomness for spreading, without a dependency.
    let random = RandomState::new().hash_one(Instant::now());
    let fraction = (random % 1000) as f64 / 1000.0;
    base.mul_f64(0.8 + 0.4 * fraction)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_base_url_must_be_plain_http() {
        assert_eq!(
            feed_base("http://broker.internal:8080/").unwrap(),
            "http://broker.internal:8080"
        );
        assert_eq!(
            feed_base("https://broker/writ").unwrap(),
            "https://broker/writ"
        );
        for bad in ["broker:8080", "ftp://broker", "http://broker/?x=1", ""] {
            assert!(
                matches!(feed_base(bad), Err(BuildError::InvalidRevocationFeed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        for _ in 0..100 {
            let waited = jittered(Duration::from_secs(10));
            assert!(waited >= Duration::from_secs(8) && waited <= Duration::from_secs(12));
        }
    }
}
