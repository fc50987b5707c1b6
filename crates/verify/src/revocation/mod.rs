//! Revocation: the feed's wire format, shared by the broker (which serves it) and verifiers
//! (which read it), and the verifier's view of it.
//!
//! A verifier given the broker's feed ([`VerifierBuilder::revocation_feed`]) keeps a
//! [`RevocationView`] of every live revocation, follows the feed in the background, and
//! consults the view on every request (signature-cache hits included): a revoked writ is refused
//! with [`Denial::Revoked`], and while the view is older than its staleness bound every writ is
//! refused with [`Denial::RevocationViewStale`].
//!
//! [`VerifierBuilder::revocation_feed`]: crate::VerifierBuilder::revocation_feed
//! [`Denial::Revoked`]: crate::Denial::Revoked
//! [`Denial::RevocationViewStale`]: crate::Denial::RevocationViewStale

mod feed;
mod sse;
mod state;
mod view;
mod wire;

use std::sync::Arc;
use std::time::Duration;

pub use feed::{MAX_REVOCATION_PAGE_BYTES, RevocationSyncError};
pub use sse::{MAX_SSE_EVENT_BYTES, MAX_SSE_LINE_BYTES};
pub use state::RevocationStatus;
pub use view::{DEFAULT_MAX_REVOCATION_ENTRIES, RevocationView, RevocationViewFull, WritIdentity};
pub use wire::{FeedHeartbeat, RevocationEntry, RevocationPage, RevocationTarget};

pub(crate) use state::RevocationState;

/// Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// Feeds `chunks` to the revocation stream's server-sent events parser, in order, and
    /// answers every complete event as (event name, data), or the error that ended the stream.
    pub fn parse_sse<'a>(
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<(String, String)>, String> {
        let mut parser = super::sse::SseParser::new();
        let mut events = Vec::new();
        for chunk in chunks {
            parser
                .push(chunk, &mut events)
                .map_err(|error| error.to_string())?;
        }
        Ok(events
            .into_iter()
            .map(|event| (event.event, event.data))
            .collect())
    }
}

use crate::{BuildError, MAX_REVOCATION_STALENESS};
use feed::{RevocationFeed, spawn_sync};

/// How the builder asked for revocations to be handled.
pub(crate) struct RevocationSettings {
    pub(crate) feed_url: Option<String>,
    pub(crate) view: Option<RevocationView>,
    pub(crate) max_staleness: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) http_timeout: Duration,
}

impl RevocationSettings {
    /// Checks the durations, before anything touches the network.
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        if self.feed_url.is_some() && self.view.is_some() {
            return Err(BuildError::ConflictingRevocationSources);
        }
        if self.max_staleness.is_zero() || self.max_staleness > MAX_REVOCATION_STALENESS {
            return Err(BuildError::RevocationStaleness);
        }
        if self.poll_interval.is_zero() || self.poll_interval >= self.max_staleness {
            return Err(BuildError::RevocationPollInterval);
        }
        Ok(())
    }
}

/// A verifier's revocation view and, with a feed, what keeps it fresh.
#[derive(Debug)]
pub(crate) struct Revocations {
    pub(crate) state: Arc<RevocationState>,
    /// `None` for a static view.
    following: Option<Following>,
}

/// The feed and the task following it; the task stops when this is dropped.
#[derive(Debug)]
struct Following {
    feed: Arc<RevocationFeed>,
    sync: tokio::task::AbortHandle,
}

impl Revocations {
    /// Nothing without a feed or a view. With a feed: reads it once (failing the build if it
    /// cannot) and starts following it on the current runtime. With a view: that view, static,
    /// its age not enforced. `settings` were validated.
    pub(crate) async fn start(settings: RevocationSettings) -> Result<Option<Self>, BuildError> {
        let Some(feed_url) = settings.feed_url else {
            return Ok(settings.view.map(|view| Revocations {
                state: Arc::new(RevocationState::new(view, None)),
                following: None,
            }));
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let state = Arc::new(RevocationState::new(
            RevocationView::new(),
            Some(settings.max_staleness),
        ));
        let feed = Arc::new(RevocationFeed::new(
            Arc::clone(&state),
            &feed_url,
            settings.poll_interval,
            settings.max_staleness,
            settings.http_timeout,
        )?);
        feed.poll().await.map_err(BuildError::RevocationFeed)?;
        let sync = spawn_sync(&feed, &runtime);
        Ok(Some(Revocations {
            state,
            following: Some(Following { feed, sync }),
        }))
    }

    /// Polls the feed once now; nothing to do for a static view.
    pub(crate) async fn sync_now(&self) -> Result<(), RevocationSyncError> {
        match &self.following {
            Some(following) => following.feed.poll().await,
            None => Ok(()),
        }
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        self.sync.abort();
    }
}
