//! The broker's root keys: Ed25519 only (P-256 signatures are malleable, which would let a holder
//! change a writ's revocation id). Each key has a numeric id that writs carry as `root_key_id`.
//!
//! Rotation makes a new key active and keeps the retired one published until every writ it
//! signed has expired. Private keys live in files of mode 0600 in a 0700 directory; they are never
//! logged, printed or served. This module knows nothing of HTTP or storage.

mod dir;

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use biscuit_auth::KeyPair;

pub use dir::{KeyDir, KeyRecord, check_private_file, create_private_dir};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key directory {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("key file {path} is accessible to other users (mode {mode:o}); run chmod 600 on it")]
    Permissions { path: std::path::PathBuf, mode: u32 },
}

/// A private signing key with its id. Deliberately has no `Debug` that could print the key.
pub struct SigningKey {
    pub kid: u32,
    pub key_pair: KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The loaded key set: the active signing key and every key still published.
#[derive(Debug)]
pub struct KeyRing {
    pub active: SigningKey,
    pub records: Vec<KeyRecord>,
    /// Signs the approval evidence of elevated writs. A key apart from the root keys, so that a
    /// verifier requiring approval for an operation trusts only what this key signed, whatever
    /// a misconfigured policy let the root key grant.
    pub approval: SigningKey,
    pub approval_record: KeyRecord,
}

impl KeyRing {
    /// The public key set as verifiers read it; keys whose writs have all expired are left out.
    pub fn published(&self, now: SystemTime) -> writ_verify::KeySetDocument {
        let keys = self
            .records
            .iter()
            .filter(|record| record.is_published(now))
            .map(KeyRecord::to_published)
            .collect();
        writ_verify::KeySetDocument {
            keys,
            approval_keys: vec![self.approval_record.to_published()],
        }
    }
}

/// The live key ring of a running broker, reloaded when the key directory changes (a `writ keys
/// rotate` run beside the broker takes effect within a second or two).
pub struct Keys {
    dir: KeyDir,
    ring: RwLock<Arc<KeyRing>>,
}

impl Keys {
    pub fn open(dir: KeyDir) -> Result<Keys, KeyError> {
        let ring = dir.load()?;
        Ok(Keys {
            dir,
            ring: RwLock::new(Arc::new(ring)),
        })
    }

    pub fn current(&self) -> Arc<KeyRing> {
        match self.ring.read() {
            Ok(ring) => Arc::clone(&ring),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Reloads the ring if the manifest changed since it was last read.
    pub fn reload_if_changed(&self) -> Result<bool, KeyError> {
        if !self.dir.changed_since_load() {
            return Ok(false);
        }
        let ring = Arc::new(self.dir.load()?);
        match self.ring.write() {
            Ok(mut slot) => *slot = ring,
            Err(poisoned) => *poisoned.into_inner() = ring,
        }
        Ok(true)
    }

    /// Polls the key directory until the returned task is aborted.
    pub fn watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let keys = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match keys.reload_if_changed() {
                    Ok(true) => {
                        tracing::info!(kid = keys.current().active.kid, "root keys reloaded")
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::error!(%error, "root keys could not be reloaded; keeping the loaded ones")
                    }
                }
            }
        })
    }

    /// Whether the active key can sign (for readiness).
    pub fn usable(&self) -> bool {
        self.current()
            .active
            .key_pair
            .sign(b"writ readiness")
            .is_ok()
    }
}
