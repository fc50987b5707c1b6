//! What verifiers and operators read without credentials: the public key set, the revocation
//! feed and stream, and readiness.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::Stream;
use writ_verify::KeySetDocument;
use writ_verify::revocation::RevocationPage;

use super::Broker;
use crate::error::{DomainError, ErrorCode, codes};
use crate::revocation::{self, FeedItem, ViewNotCurrent};

/// Why the broker is not ready to issue.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("storage is unavailable")]
    Storage,
    #[error("storage did not answer in time")]
    StorageTimeout,
    #[error(transparent)]
    Revocations(#[from] ViewNotCurrent),
    #[error("the root key cannot sign")]
    RootKey,
}

impl DomainError for NotReady {
    fn code(&self) -> ErrorCode {
        codes::NOT_READY
    }

    fn public_detail(&self) -> String {
        self.to_string()
    }
}

impl Broker {
    /// The public key set verifiers use, as of `now`.
    pub fn key_set(&self, now: SystemTime) -> KeySetDocument {
        self.keys.current().published(now)
    }

    /// One page of the revocation feed: live entries after `after`, at most `limit`.
    pub fn revocation_page(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<RevocationPage, ViewNotCurrent> {
        Ok(self
            .revocations
            .current()?
            .page(after, limit, SystemTime::now()))
    }

    /// The revocation stream after `after` (see [`revocation::follow`]).
    pub fn follow_revocations(
        &self,
        after: u64,
        heartbeat: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<impl Stream<Item = FeedItem> + use<>, ViewNotCurrent> {
        self.revocations.current()?;
        Ok(revocation::follow(
            Arc::clone(&self.revocations),
            after,
            heartbeat,
            shutdown,
        ))
    }

    /// Ready means a writ could be issued now: the database answers, the revocation view is
    /// current and the active root key signs.
    pub async fn readiness(&self) -> Result<(), NotReady> {
        match tokio::time::timeout(Duration::from_secs(2), self.store.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "not ready: storage");
                return Err(NotReady::Storage);
            }
            Err(_) => return Err(NotReady::StorageTimeout),
        }
        self.revocations.current()?;
        if !self.keys.usable() {
            return Err(NotReady::RootKey);
        }
        Ok(())
    }
}
