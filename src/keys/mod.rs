//! The broker's root keys: Ed25519 only (P-256 signatures are malleable, which would let a holder
//! change a writ's revocation id). Each key has a numeric id that writs carry as `root_key_id`.
//!
//! Rotation makes a new key active and keeps the retired one published until every writ it
//! signed has expired. Private keys live in files of mode 0600 in a 0700 directory ([`KeyDir`]),
//! or in one Vault KV v2 secret ([`VaultKeys`], `[keys] store = "vault"`); they are never
//! logged, printed or served. This module knows nothing of HTTP or storage.

mod dir;
mod vault;

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use biscuit_auth::KeyPair;

pub use dir::{KeyDir, KeyRecord, check_private_file, create_private_dir};
pub use vault::VaultKeys;

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
    #[error("{secret}: {source}")]
    Vault {
        secret: String,
        source: crate::vault::VaultError,
    },
    /// A check-and-set write lost to a concurrent change; nothing was written.
    #[error("{0}")]
    Conflict(String),
}

/// Where the keys are kept: the key directory, or a Vault KV v2 secret.
#[derive(Debug)]
pub enum KeyStore {
    Dir(KeyDir),
    Vault(VaultKeys),
}

impl KeyStore {
    pub async fn load(&self) -> Result<KeyRing, KeyError> {
        match self {
            KeyStore::Dir(dir) => dir.load(),
            KeyStore::Vault(vault) => vault.load().await,
        }
    }

    /// The ring, when the store changed since it was last loaded.
    pub async fn load_if_changed(&self) -> Result<Option<KeyRing>, KeyError> {
        match self {
            KeyStore::Dir(dir) if !dir.changed_since_load() => Ok(None),
            KeyStore::Dir(dir) => dir.load().map(Some),
            KeyStore::Vault(vault) => vault.load_if_changed().await,
        }
    }

    /// Makes a new root key active (see [`KeyDir::rotate`]); answers its record and the id of
    /// the key it replaced.
    pub async fn rotate(
        &self,
        retain_for: Duration,
        now: SystemTime,
    ) -> Result<(KeyRecord, u32), KeyError> {
        match self {
            KeyStore::Dir(dir) => {
                let retired = dir.load()?.active.kid;
                Ok((dir.rotate(retain_for, now)?, retired))
            }
            KeyStore::Vault(vault) => vault.rotate(retain_for, now).await,
        }
    }

    /// Where the keys are, for messages: the directory's path or the secret's name.
    pub fn location(&self) -> String {
        match self {
            KeyStore::Dir(dir) => dir.path().display().to_string(),
            KeyStore::Vault(vault) => vault.name(),
        }
    }
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
    /// The public key with id `kid`, if it is published at `now`: the keys a writ may be
    /// signed by.
    pub fn published_key(&self, kid: u32, now: SystemTime) -> Option<biscuit_auth::PublicKey> {
        self.records
            .iter()
            .find(|record| record.kid == kid && record.is_published(now))
            .and_then(|record| record.public_key.parse().ok())
    }

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

/// The live key ring of a running broker, reloaded when its store changes (a `writ keys rotate`
/// run beside the broker takes effect within a second or two).
pub struct Keys {
    store: KeyStore,
    ring: RwLock<Arc<KeyRing>>,
}

impl Keys {
    pub async fn open(store: KeyStore) -> Result<Keys, KeyError> {
        let ring = store.load().await?;
        Ok(Keys {
            store,
            ring: RwLock::new(Arc::new(ring)),
        })
    }

    pub fn current(&self) -> Arc<KeyRing> {
        match self.ring.read() {
            Ok(ring) => Arc::clone(&ring),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Reloads the ring if the store changed since it was last read.
    pub async fn reload_if_changed(&self) -> Result<bool, KeyError> {
        let Some(ring) = self.store.load_if_changed().await? else {
            return Ok(false);
        };
        let ring = Arc::new(ring);
        match self.ring.write() {
            Ok(mut slot) => *slot = ring,
            Err(poisoned) => *poisoned.into_inner() = ring,
        }
        Ok(true)
    }

    /// Polls the key store until the returned task is aborted.
    pub fn watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let keys = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match keys.reload_if_changed().await {
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
