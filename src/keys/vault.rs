//! Root keys in one Vault KV v2 secret (`[keys] store = "vault"`): the records the key
//! directory's manifest holds and the private keys beside them, so no replica keeps a key on
//! disk. Every write is check-and-set on the version read: two replicas starting on an empty
//! secret create the keys once (the loser reads the winner's), and a rotation racing another
//! fails instead of dropping a key.
//!
//! The secret's data:
//! ```json
//! { "active": 2,
//!   "keys": [ { "kid": 1, "public_key": "ed25519/…", "created_at": …, "retired_at": …,
//!               "publish_until": … }, { "kid": 2, … } ],
//!   "approval": { "kid": 1, "public_key": "ed25519/…", … },
//!   "private_keys": { "root-1": "-----BEGIN PRIVATE KEY-----…", "root-2": "…",
//!                     "approval-1": "…" } }
//! ```

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::dir::{Manifest, key_pair_matching, new_key};
use super::{KeyError, KeyRecord, KeyRing, SigningKey};
use crate::vault::{VaultClient, VaultError};

/// The key ring's secret in Vault. Its `Debug` names the secret, never a key.
pub struct VaultKeys {
    client: VaultClient,
    mount: String,
    path: String,
    loaded_version: Mutex<Option<u64>>,
}

impl std::fmt::Debug for VaultKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultKeys")
            .field("address", &self.client.address())
            .field("secret", &self.name())
            .finish_non_exhaustive()
    }
}

/// The secret's data. No `Debug`: it holds private keys.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    active: u32,
    keys: Vec<KeyRecord>,
    approval: KeyRecord,
    /// PEM (PKCS#8) private keys, named `root-<kid>` and `approval-<kid>` as the key
    /// directory names its files.
    private_keys: BTreeMap<String, String>,
}

fn root_name(kid: u32) -> String {
    format!("root-{kid}")
}

fn approval_name(kid: u32) -> String {
    format!("approval-{kid}")
}

impl VaultKeys {
    /// The key store in `mount`/`path`, creating the first root key and the approval key when
    /// the secret does not exist yet (for a broker starting).
    pub async fn open_or_init(
        client: VaultClient,
        mount: &str,
        path: &str,
    ) -> Result<VaultKeys, KeyError> {
        let keys = VaultKeys::new(client, mount, path);
        if keys.read().await?.is_some() {
            return Ok(keys);
        }
        let now = SystemTime::now();
        let (root_pem, root) = new_key(1, now)?;
        let (approval_pem, approval) = new_key(1, now)?;
        let document = Document {
            active: 1,
            keys: vec![root],
            approval,
            private_keys: BTreeMap::from([
                (root_name(1), root_pem),
                (approval_name(1), approval_pem),
            ]),
        };
        match keys.write(&document, 0).await {
            Ok(_) => {
                tracing::info!(kid = 1, secret = %keys.name(), "generated the first root key in Vault")
            }
            // Another replica created them first: theirs are the keys.
            Err(KeyError::Conflict(_)) => {}
            Err(error) => return Err(error),
        }
        Ok(keys)
    }

    /// The key store in `mount`/`path`, which must hold keys already (for `writ` commands: a
    /// wrong path creates nothing).
    pub async fn open(client: VaultClient, mount: &str, path: &str) -> Result<VaultKeys, KeyError> {
        let keys = VaultKeys::new(client, mount, path);
        if keys.read().await?.is_none() {
            return Err(KeyError::Invalid(format!(
                "{} holds no keys: a broker configured with [keys] store = \"vault\" creates \
                 them when it first starts",
                keys.name()
            )));
        }
        Ok(keys)
    }

    fn new(client: VaultClient, mount: &str, path: &str) -> VaultKeys {
        VaultKeys {
            client,
            mount: mount.to_owned(),
            path: path.to_owned(),
            loaded_version: Mutex::new(None),
        }
    }

    /// `Vault secret <mount>/<path>`, for messages.
    pub fn name(&self) -> String {
        format!("Vault secret {}/{}", self.mount, self.path)
    }

    /// Reads the key ring.
    pub async fn load(&self) -> Result<KeyRing, KeyError> {
        let (version, document) = self.read_existing().await?;
        let ring = self.ring(document)?;
        self.remember(version);
        Ok(ring)
    }

    /// Reads the key ring if the secret has a version other than the one last loaded.
    pub async fn load_if_changed(&self) -> Result<Option<KeyRing>, KeyError> {
        let (version, document) = self.read_existing().await?;
        if self.loaded_version.lock().ok().and_then(|slot| *slot) == Some(version) {
            return Ok(None);
        }
        let ring = self.ring(document)?;
        self.remember(version);
        Ok(Some(ring))
    }

    /// Makes a new key active, written with check-and-set on the version read: a concurrent
    /// change fails with [`KeyError::Conflict`] and leaves the secret as the other left it.
    /// Answers the new key's record and the id of the key it replaced.
    pub async fn rotate(
        &self,
        retain_for: Duration,
        now: SystemTime,
    ) -> Result<(KeyRecord, u32), KeyError> {
        let (version, document) = self.read_existing().await?;
        // The ring must load before it is changed: never rotate away from a broken secret.
        self.ring_check(&document)?;
        let retired = document.active;
        let mut manifest = Manifest {
            active: document.active,
            keys: document.keys,
            approval: None,
        };
        let mut private_keys = document.private_keys;
        let kid = manifest.next_kid();
        let (pem, record) = new_key(kid, now)?;
        private_keys.insert(root_name(kid), pem);
        for expired in manifest.rotate_to(record.clone(), retain_for, now) {
            private_keys.remove(&root_name(expired.kid));
        }
        let rotated = Document {
            active: manifest.active,
            keys: manifest.keys,
            approval: document.approval,
            private_keys,
        };
        self.write(&rotated, version).await?;
        Ok((record, retired))
    }

    async fn read(&self) -> Result<Option<(u64, Document)>, KeyError> {
        let Some((version, data)) = self
            .client
            .kv_read(&self.mount, &self.path)
            .await
            .map_err(|e| self.vault_error(e))?
        else {
            return Ok(None);
        };
        // serde_json's error names a field or a position, never the value.
        let document = serde_json::from_value(data)
            .map_err(|e| KeyError::Invalid(format!("{} (version {version}): {e}", self.name())))?;
        Ok(Some((version, document)))
    }

    async fn read_existing(&self) -> Result<(u64, Document), KeyError> {
        self.read()
            .await?
            .ok_or_else(|| KeyError::Invalid(format!("{} holds no keys", self.name())))
    }

    async fn write(&self, document: &Document, cas: u64) -> Result<u64, KeyError> {
        let data = serde_json::to_value(document)
            .map_err(|e| KeyError::Invalid(format!("cannot encode the key ring: {e}")))?;
        self.client
            .kv_write(&self.mount, &self.path, &data, Some(cas))
            .await
            .map_err(|error| match error {
                VaultError::CasConflict => KeyError::Conflict(format!(
                    "{} changed while this command ran (another rotation?); nothing was \
                     written: run it again",
                    self.name()
                )),
                other => self.vault_error(other),
            })
    }

    fn vault_error(&self, error: VaultError) -> KeyError {
        KeyError::Vault {
            secret: self.name(),
            source: error,
        }
    }

    fn remember(&self, version: u64) {
        if let Ok(mut slot) = self.loaded_version.lock() {
            *slot = Some(version);
        }
    }

    fn ring_check(&self, document: &Document) -> Result<(), KeyError> {
        self.signing_keys(document).map(|_| ())
    }

    fn signing_keys(&self, document: &Document) -> Result<(SigningKey, SigningKey), KeyError> {
        let record = document
            .keys
            .iter()
            .find(|record| record.kid == document.active)
            .ok_or_else(|| {
                KeyError::Invalid(format!(
                    "{}: active key {} has no record",
                    self.name(),
                    document.active
                ))
            })?;
        let pem = |name: String| {
            document
                .private_keys
                .get(&name)
                .ok_or_else(|| KeyError::Invalid(format!("{}: no private key {name}", self.name())))
        };
        let root_name = root_name(record.kid);
        let active = key_pair_matching(
            record,
            pem(root_name.clone())?,
            &format!("{} {root_name}", self.name()),
        )?;
        let approval_name = approval_name(document.approval.kid);
        let approval = key_pair_matching(
            &document.approval,
            pem(approval_name.clone())?,
            &format!("{} {approval_name}", self.name()),
        )?;
        Ok((
            SigningKey {
                kid: record.kid,
                key_pair: active,
            },
            SigningKey {
                kid: document.approval.kid,
                key_pair: approval,
            },
        ))
    }

    fn ring(&self, document: Document) -> Result<KeyRing, KeyError> {
        let (active, approval) = self.signing_keys(&document)?;
        Ok(KeyRing {
            active,
            records: document.keys,
            approval,
            approval_record: document.approval,
        })
    }
}
