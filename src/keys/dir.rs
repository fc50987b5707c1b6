//! The on-disk layout of the key directory:
//! `keyring.json` (public records and which key is active), `root-<kid>.pem` (private keys,
//! mode 0600) and `approval-<kid>.pem` (the approval key, which signs the evidence block of
//! elevated writs; generated the first time a directory without one is loaded). The manifest is replaced atomically (write + rename) so a broker reading it never
//! sees half a file.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use biscuit_auth::{KeyPair, PrivateKey, PublicKey};
use serde::{Deserialize, Serialize};

use super::{KeyError, KeyRing, SigningKey};
use crate::time::{rfc3339, unix};

fn rfc3339_u64(unix_seconds: u64) -> String {
    rfc3339(i64::try_from(unix_seconds).unwrap_or(i64::MAX))
}

const MANIFEST: &str = "keyring.json";

/// The public record of one root key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub kid: u32,
    /// `ed25519/<hex>`.
    pub public_key: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; when the key stopped signing.
    pub retired_at: Option<u64>,
    /// Unix seconds; the last moment a writ it signed can still be valid.
    pub publish_until: Option<u64>,
}

impl KeyRecord {
    pub fn is_published(&self, now: SystemTime) -> bool {
        self.publish_until.is_none_or(|until| unix(now) <= until)
    }

    pub fn to_published(&self) -> writ_verify::PublishedKey {
        writ_verify::PublishedKey {
            kid: self.kid,
            alg: "ed25519".into(),
            public_key: self.public_key.clone(),
            not_before: rfc3339_u64(self.created_at),
            not_after: self.publish_until.map(rfc3339_u64),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Manifest {
    pub(super) active: u32,
    pub(super) keys: Vec<KeyRecord>,
    /// The approval key; absent in directories made before approvals existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) approval: Option<KeyRecord>,
}

impl Manifest {
    /// The record of the active key.
    pub(super) fn active_record(&self) -> Result<&KeyRecord, KeyError> {
        self.keys
            .iter()
            .find(|record| record.kid == self.active)
            .ok_or_else(|| KeyError::Invalid(format!("active key {} has no record", self.active)))
    }

    /// The next key id.
    pub(super) fn next_kid(&self) -> u32 {
        self.keys.iter().map(|k| k.kid).max().unwrap_or(0) + 1
    }

    /// Makes `record` the active key: the keys still active are retired and stay published for
    /// `retain_for`; keys past their publication window are dropped and returned.
    pub(super) fn rotate_to(
        &mut self,
        record: KeyRecord,
        retain_for: Duration,
        now: SystemTime,
    ) -> Vec<KeyRecord> {
        for old in self.keys.iter_mut().filter(|k| k.retired_at.is_none()) {
            old.retired_at = Some(unix(now));
            old.publish_until = Some(unix(now + retain_for));
        }
        let (kept, expired): (Vec<_>, Vec<_>) = std::mem::take(&mut self.keys)
            .into_iter()
            .partition(|record| record.is_published(now));
        self.keys = kept;
        self.active = record.kid;
        self.keys.push(record);
        expired
    }
}

/// A new Ed25519 key: its pair, its PEM (PKCS#8) and its public record.
pub(super) fn new_key(kid: u32, now: SystemTime) -> Result<(String, KeyRecord), KeyError> {
    let key_pair = KeyPair::new();
    let pem = key_pair
        .to_private_key_pem()
        .map_err(|e| KeyError::Invalid(format!("cannot encode a new key: {e}")))?;
    let record = KeyRecord {
        kid,
        public_key: key_pair.public().to_string(),
        created_at: unix(now),
        retired_at: None,
        publish_until: None,
    };
    Ok((pem.to_string(), record))
}

/// The key pair in `pem`, checked against the public key `record` holds. `what` names where the
/// PEM came from, for errors (never the key itself).
pub(super) fn key_pair_matching(
    record: &KeyRecord,
    pem: &str,
    what: &str,
) -> Result<KeyPair, KeyError> {
    let private = PrivateKey::from_pem(pem)
        .map_err(|_| KeyError::Invalid(format!("{what} is not an Ed25519 private key")))?;
    let key_pair = KeyPair::from(&private);
    let expected: PublicKey = record.public_key.parse().map_err(|_| {
        KeyError::Invalid(format!("key {} has an unreadable public key", record.kid))
    })?;
    if key_pair.public() != expected {
        return Err(KeyError::Invalid(format!(
            "{what} does not match the public key recorded for key {}",
            record.kid
        )));
    }
    Ok(key_pair)
}

/// Which manifest was read: inode and nanosecond mtime. The manifest is always replaced by a
/// rename, so a new version has a new inode, and two rotations within a second still differ.
type ManifestVersion = (u64, i64, i64);

/// A key directory on disk.
#[derive(Debug)]
pub struct KeyDir {
    path: PathBuf,
    loaded_version: Mutex<Option<ManifestVersion>>,
}

impl KeyDir {
    /// Opens the directory, creating it (0700) with a first key if it holds none.
    pub fn open_or_init(path: &Path) -> Result<KeyDir, KeyError> {
        let dir = KeyDir {
            path: path.to_owned(),
            loaded_version: Mutex::new(None),
        };
        if !dir.manifest_path().exists() {
            create_private_dir(path).map_err(|e| dir.io(e))?;
            let now = SystemTime::now();
            let manifest = Manifest {
                active: 1,
                keys: vec![dir.generate(&dir.private_path(1), 1, now)?],
                approval: Some(dir.generate(&dir.approval_path(1), 1, now)?),
            };
            dir.write_manifest(&manifest)?;
            tracing::info!(kid = 1, dir = %path.display(), "generated the first root key");
        }
        Ok(dir)
    }

    /// Opens an existing directory.
    pub fn open(path: &Path) -> Result<KeyDir, KeyError> {
        let dir = KeyDir {
            path: path.to_owned(),
            loaded_version: Mutex::new(None),
        };
        if !dir.manifest_path().exists() {
            return Err(KeyError::Invalid(format!(
                "{} holds no keyring.json",
                path.display()
            )));
        }
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self) -> Result<KeyRing, KeyError> {
        let mut manifest = self.read_manifest()?;
        let approval = match &manifest.approval {
            Some(record) => record.clone(),
            None => {
                let record = self.generate(&self.approval_path(1), 1, SystemTime::now())?;
                manifest.approval = Some(record.clone());
                self.write_manifest(&manifest)?;
                tracing::info!(dir = %self.path.display(), "generated the approval key");
                record
            }
        };
        let version = self.manifest_version()?;
        let record = manifest.active_record()?;
        let key_pair = self.read_private(record, &self.private_path(record.kid))?;
        let approval_pair = self.read_private(&approval, &self.approval_path(approval.kid))?;
        if let Ok(mut slot) = self.loaded_version.lock() {
            *slot = Some(version);
        }
        Ok(KeyRing {
            active: SigningKey {
                kid: record.kid,
                key_pair,
            },
            records: manifest.keys,
            approval: SigningKey {
                kid: approval.kid,
                key_pair: approval_pair,
            },
            approval_record: approval,
        })
    }

    pub(super) fn changed_since_load(&self) -> bool {
        let current = self.manifest_version().ok();
        let loaded = self.loaded_version.lock().ok().and_then(|slot| *slot);
        current != loaded
    }

    /// Makes a new key active. The retired key stays published for `retain_for` (the longest
    /// writ lifetime plus margin); keys past their publication window are deleted.
    pub fn rotate(&self, retain_for: Duration, now: SystemTime) -> Result<KeyRecord, KeyError> {
        let mut manifest = self.read_manifest()?;
        let kid = manifest.next_kid();
        let record = self.generate(&self.private_path(kid), kid, now)?;
        let expired = manifest.rotate_to(record.clone(), retain_for, now);
        self.write_manifest(&manifest)?;
        for old in expired {
            let _ = fs::remove_file(self.private_path(old.kid));
        }
        Ok(record)
    }

    fn generate(&self, path: &Path, kid: u32, now: SystemTime) -> Result<KeyRecord, KeyError> {
        let (pem, record) = new_key(kid, now)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| self.io(e))?;
        file.write_all(pem.as_bytes()).map_err(|e| self.io(e))?;
        file.sync_all().map_err(|e| self.io(e))?;
        Ok(record)
    }

    fn read_private(&self, record: &KeyRecord, path: &Path) -> Result<KeyPair, KeyError> {
        check_private_file(path)?;
        let pem = fs::read_to_string(path).map_err(|e| self.io(e))?;
        key_pair_matching(record, &pem, &path.display().to_string())
    }

    fn read_manifest(&self) -> Result<Manifest, KeyError> {
        let text = fs::read_to_string(self.manifest_path()).map_err(|e| self.io(e))?;
        serde_json::from_str(&text)
            .map_err(|e| KeyError::Invalid(format!("{}: {e}", self.manifest_path().display())))
    }

    fn write_manifest(&self, manifest: &Manifest) -> Result<(), KeyError> {
        let text = serde_json::to_string_pretty(manifest)
            .map_err(|e| KeyError::Invalid(format!("cannot encode the key manifest: {e}")))?;
        let temp = self.path.join(format!("{MANIFEST}.tmp"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| self.io(e))?;
        file.write_all(text.as_bytes()).map_err(|e| self.io(e))?;
        file.sync_all().map_err(|e| self.io(e))?;
        fs::rename(&temp, self.manifest_path()).map_err(|e| self.io(e))
    }

    fn manifest_version(&self) -> Result<ManifestVersion, KeyError> {
        let metadata = fs::metadata(self.manifest_path()).map_err(|e| self.io(e))?;
        Ok((metadata.ino(), metadata.mtime(), metadata.mtime_nsec()))
    }

    fn manifest_path(&self) -> PathBuf {
        self.path.join(MANIFEST)
    }

    fn private_path(&self, kid: u32) -> PathBuf {
        self.path.join(format!("root-{kid}.pem"))
    }

    fn approval_path(&self, kid: u32) -> PathBuf {
        self.path.join(format!("approval-{kid}.pem"))
    }

    fn io(&self, source: std::io::Error) -> KeyError {
        KeyError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

/// Refuses a private key file that group or others may access in any way.
pub fn check_private_file(path: &Path) -> Result<(), KeyError> {
    let metadata = fs::metadata(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Creates `path` (and parents) readable by the owner only, if it does not exist yet.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn first_open_generates_a_private_key_readable_by_owner_only() {
        let temp = tempfile::tempdir().unwrap();
        let dir = KeyDir::open_or_init(&temp.path().join("keys")).unwrap();
        let ring = dir.load().unwrap();
        assert_eq!(ring.active.kid, 1);
        let mode = fs::metadata(dir.private_path(1))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }

    #[test]
    fn a_group_readable_key_file_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let dir = KeyDir::open_or_init(temp.path()).unwrap();
        fs::set_permissions(dir.private_path(1), fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(dir.load(), Err(KeyError::Permissions { .. })));
    }

    #[test]
    fn rotation_keeps_the_old_key_published_until_its_writs_expire() {
        let temp = tempfile::tempdir().unwrap();
        let dir = KeyDir::open_or_init(temp.path()).unwrap();
        let now = SystemTime::now();
        let retain = Duration::from_secs(600);
        dir.rotate(retain, now).unwrap();
        let ring = dir.load().unwrap();
        assert_eq!(ring.active.kid, 2);
        let published = |at| {
            ring.published(at)
                .keys
                .iter()
                .map(|k| k.kid)
                .collect::<Vec<_>>()
        };
        assert_eq!(published(now), vec![1, 2]);
        assert_eq!(published(now + retain + Duration::from_secs(2)), vec![2]);
        // A later rotation deletes the key whose window has closed.
        dir.rotate(retain, now + retain + Duration::from_secs(2))
            .unwrap();
        assert!(!dir.private_path(1).exists());
        assert_eq!(dir.load().unwrap().active.kid, 3);
    }

    #[test]
    fn a_swapped_private_key_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let dir = KeyDir::open_or_init(temp.path()).unwrap();
        fs::remove_file(dir.private_path(1)).unwrap();
        let other = KeyPair::new().to_private_key_pem().unwrap();
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.private_path(1))
            .unwrap();
        file.write_all(other.as_bytes()).unwrap();
        assert!(matches!(dir.load(), Err(KeyError::Invalid(_))));
    }
}
