//! The broker's public key set: the document served at `GET /.well-known/writ-keys` (the broker
//! serializes [`KeySetDocument`]), and the table of trusted Ed25519 keys a verifier builds from it.
//!
//! Reading is lenient per entry and strict about trust: entries with an unknown `alg`, or that do
//! not parse, are skipped (logged), so one new key type does not break old verifiers; only
//! `ed25519/<64 hex>` keys are ever trusted.
//!
//! The document also lists the broker's **approval keys** (`approval_keys`, absent from older
//! documents): they sign the approval evidence of elevated writs (see
//! [`VerifierBuilder::require_approval_for`](crate::VerifierBuilder::require_approval_for)), never
//! a writ. They are read by the same rules, and refreshed together with the root keys. An
//! approval key that is also a root key is not trusted as an approval key: the key that mints
//! writs must not be able to approve them.

use std::collections::HashMap;
use std::time::SystemTime;

use biscuit_auth::PublicKey;
use biscuit_auth::builder::Algorithm;
use serde::{Deserialize, Serialize};

/// The key set document: `{"keys": [...], "approval_keys": [...]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySetDocument {
    /// Every published root key, active and retired-but-still-relevant.
    pub keys: Vec<PublishedKey>,
    /// Every published approval key (same shape as `keys`): the keys that sign the approval
    /// evidence of elevated writs. Absent from older documents (read as empty), and left out of
    /// the serialized document when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approval_keys: Vec<PublishedKey>,
}

/// One published root key (in `keys`) or approval key (in `approval_keys`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedKey {
    /// The key id: for a root key, the `root_key_id` of the writs it signs; approval keys have
    /// ids of their own (evidence names its key by the key itself).
    pub kid: u32,
    /// The algorithm; verifiers use only `"ed25519"` and skip other entries.
    pub alg: String,
    /// `ed25519/<hex>`, as biscuit prints keys.
    pub public_key: String,
    /// RFC 3339 time from which the key signs (informational: a verifier does not enforce it,
    /// since clock skew would then refuse fresh writs right after a rotation).
    pub not_before: String,
    /// RFC 3339 time after which no writ signed by this key can still be valid, or `null` for the
    /// active key. Verifiers refuse the key after it.
    pub not_after: Option<String>,
}

/// Why a key set document could not be used. The previous key set, if any, stays in force.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// The HTTP request failed or answered an error status.
    #[error("fetching the key set failed: {0}")]
    Fetch(String),
    /// No connection could be made (nothing listens there, or the name does not resolve).
    #[error("the key set cannot be reached: {0}")]
    Unreachable(String),
    /// The body is larger than the verifier accepts.
    #[error("the key set document is too large")]
    TooLarge,
    /// The body is not a key set document.
    #[error("the key set document is not valid: {0}")]
    Invalid(String),
    /// Two entries share a key id, so the document is ambiguous.
    #[error("the key set names key id {0} twice")]
    DuplicateKid(u32),
    /// Two approval key entries share a key id, so the document is ambiguous.
    #[error("the key set names approval key id {0} twice")]
    DuplicateApprovalKid(u32),
}

/// A key the verifier trusts, with the end of its usefulness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TrustedKey {
    pub(crate) key: PublicKey,
    pub(crate) not_after: Option<SystemTime>,
}

/// What a key id resolves to at a given time.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    Usable(PublicKey),
    Retired,
    Unknown,
}

/// The trusted keys by id, and the trusted approval keys. Immutable once built; a refresh swaps
/// in a whole new table.
#[derive(Debug, Default)]
pub(crate) struct KeyTable {
    keys: HashMap<u32, TrustedKey>,
    /// No root key is among them (see the module docs).
    approval_keys: Vec<TrustedKey>,
}

impl KeyTable {
    /// The table of `keys` and `approval_keys`, less any approval key that is also a root key.
    pub(crate) fn new(keys: HashMap<u32, TrustedKey>, approval_keys: Vec<TrustedKey>) -> KeyTable {
        let mut approval_keys = approval_keys;
        approval_keys.retain(|approval| {
            let is_root = keys.values().any(|root| root.key == approval.key);
            if is_root {
                tracing::warn!("skipping an approval key that is also a root key");
            }
            !is_root
        });
        KeyTable {
            keys,
            approval_keys,
        }
    }

    pub(crate) fn lookup(&self, kid: u32, now: SystemTime) -> Lookup {
        match self.keys.get(&kid) {
            None => Lookup::Unknown,
            Some(trusted) if !usable(trusted, now) => Lookup::Retired,
            Some(trusted) => Lookup::Usable(trusted.key),
        }
    }

    /// The approval keys usable at `now` (not retired).
    pub(crate) fn approval_keys(&self, now: SystemTime) -> Vec<PublicKey> {
        self.approval_keys
            .iter()
            .filter(|trusted| usable(trusted, now))
            .map(|trusted| trusted.key)
            .collect()
    }

    /// Whether `key` is an approval key usable at `now`.
    pub(crate) fn is_approval_key(&self, key: &PublicKey, now: SystemTime) -> bool {
        self.approval_keys
            .iter()
            .any(|trusted| trusted.key == *key && usable(trusted, now))
    }

    pub(crate) fn contains(&self, kid: u32) -> bool {
        self.keys.contains_key(&kid)
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Reads a key set document leniently: see the module docs.
    pub(crate) fn from_json(body: &[u8]) -> Result<KeyTable, KeySetError> {
        // Entries are read one by one from raw JSON so that an entry of another shape (a future
        // algorithm with other fields) cannot fail the whole document.
        #[derive(Deserialize)]
        struct Raw {
            keys: Vec<serde_json::Value>,
            #[serde(default)]
            approval_keys: Vec<serde_json::Value>,
        }
        let raw: Raw =
            serde_json::from_slice(body).map_err(|e| KeySetError::Invalid(e.to_string()))?;
        let keys = read_entries(raw.keys, "root").map_err(KeySetError::DuplicateKid)?;
        let approval_keys = read_entries(raw.approval_keys, "approval")
            .map_err(KeySetError::DuplicateApprovalKid)?;
        if keys.is_empty() {
            tracing::warn!("the key set holds no usable ed25519 key: every writ will be refused");
        }
        // In key id order, so the approval check's branches are in a stable order.
        let mut approval_keys: Vec<(u32, TrustedKey)> = approval_keys.into_iter().collect();
        approval_keys.sort_by_key(|(kid, _)| *kid);
        let approval_keys = approval_keys.into_iter().map(|(_, key)| key).collect();
        Ok(KeyTable::new(keys, approval_keys))
    }
}

/// Whether `trusted` is still usable at `now`: not past its `not_after`.
fn usable(trusted: &TrustedKey, now: SystemTime) -> bool {
    trusted.not_after.is_none_or(|end| now <= end)
}

/// The trusted keys of one list of entries, by id; an error names a key id given twice.
fn read_entries(
    entries: Vec<serde_json::Value>,
    list: &'static str,
) -> Result<HashMap<u32, TrustedKey>, u32> {
    let mut keys = HashMap::new();
    for value in entries {
        if value.get("alg").and_then(serde_json::Value::as_str) != Some("ed25519") {
            tracing::debug!(list, alg = ?value.get("alg"), "skipping key set entry of another algorithm");
            continue;
        }
        let entry: PublishedKey = match serde_json::from_value(value) {
            Ok(entry) => entry,
            Err(error) => {
                tracing::warn!(list, %error, "skipping unreadable ed25519 key set entry");
                continue;
            }
        };
        let Some(trusted) = trusted_key(&entry) else {
            tracing::warn!(
                list,
                kid = entry.kid,
                "skipping invalid ed25519 key set entry"
            );
            continue;
        };
        if keys.insert(entry.kid, trusted).is_some() {
            return Err(entry.kid);
        }
    }
    Ok(keys)
}

fn trusted_key(entry: &PublishedKey) -> Option<TrustedKey> {
    let key = parse_ed25519(&entry.public_key)?;
    let not_after = match &entry.not_after {
        None => None,
        Some(text) => Some(humantime::parse_rfc3339_weak(text).ok()?),
    };
    Some(TrustedKey { key, not_after })
}

/// Parses `ed25519/<64 hex digits>`; nothing else is accepted.
pub(crate) fn parse_ed25519(text: &str) -> Option<PublicKey> {
    let hex_key = text.strip_prefix("ed25519/")?;
    let bytes = hex::decode(hex_key).ok()?;
    if bytes.len() != 32 {
        return None;
    }
    PublicKey::from_bytes(&bytes, Algorithm::Ed25519).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use biscuit_auth::KeyPair;
    use std::time::Duration;

    fn entry(kid: u32, alg: &str, key: &str, not_after: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "kid": kid, "alg": alg, "public_key": key,
            "not_before": "2026-11-22T10:00:00Z", "not_after": not_after,
        })
    }

    #[test]
    fn reads_ed25519_and_skips_the_rest() {
        let key = KeyPair::new().public();
        let doc = serde_json::json!({"keys": [
            entry(1, "ed25519", &key.to_string(), None),
            {"kid": 2, "alg": "ml-dsa-65", "pk": "whatever"},
            entry(3, "ed25519", "secp256r1/00", None),
            entry(4, "ed25519", "ed25519/zz", None),
        ]});
        let table = KeyTable::from_json(doc.to_string().as_bytes()).unwrap();
        assert_eq!(table.len(), 1);
        assert_eq!(table.lookup(1, SystemTime::now()), Lookup::Usable(key));
        assert_eq!(table.lookup(2, SystemTime::now()), Lookup::Unknown);
    }

    #[test]
    fn retired_keys_are_refused_after_not_after() {
        let key = KeyPair::new().public();
        let doc = serde_json::json!({"keys": [
            entry(1, "ed25519", &key.to_string(), Some("2026-11-22T11:00:00Z")),
        ]});
        let table = KeyTable::from_json(doc.to_string().as_bytes()).unwrap();
        let end = humantime::parse_rfc3339("2026-11-22T11:00:00Z").unwrap();
        assert_eq!(table.lookup(1, end), Lookup::Usable(key));
        assert_eq!(
            table.lookup(1, end + Duration::from_secs(1)),
            Lookup::Retired
        );
    }

    #[test]
    fn duplicate_kids_and_garbage_are_errors() {
        let key = KeyPair::new().public().to_string();
        let doc = serde_json::json!({"keys": [
            entry(1, "ed25519", &key, None), entry(1, "ed25519", &key, None),
        ]});
        assert_eq!(
            KeyTable::from_json(doc.to_string().as_bytes()).unwrap_err(),
            KeySetError::DuplicateKid(1)
        );
        assert!(KeyTable::from_json(b"not json").is_err());
        assert!(KeyTable::from_json(b"{}").is_err());
    }

    #[test]
    fn document_serializes_in_the_published_shape() {
        let key = PublishedKey {
            kid: 1,
            alg: "ed25519".into(),
            public_key: "ed25519/00".into(),
            not_before: "2026-11-22T10:00:00Z".into(),
            not_after: None,
        };
        let mut doc = KeySetDocument {
            keys: vec![key.clone()],
            approval_keys: Vec::new(),
        };
        let entry = serde_json::json!({"kid": 1, "alg": "ed25519", "public_key": "ed25519/00",
            "not_before": "2026-11-22T10:00:00Z", "not_after": null});
        // Without approval keys the document is exactly what older brokers served.
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json, serde_json::json!({"keys": [entry.clone()]}));
        assert_eq!(serde_json::from_value::<KeySetDocument>(json).unwrap(), doc);

        doc.approval_keys.push(key);
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"keys": [entry.clone()], "approval_keys": [entry]})
        );
        assert_eq!(serde_json::from_value::<KeySetDocument>(json).unwrap(), doc);
    }

    #[test]
    fn reads_approval_keys_by_the_same_rules() {
        let root = KeyPair::new().public();
        let approval = KeyPair::new().public();
        let retired = KeyPair::new().public();
        let doc = serde_json::json!({
            "keys": [entry(1, "ed25519", &root.to_string(), None)],
            "approval_keys": [
                entry(1, "ed25519", &approval.to_string(), None),
                {"kid": 2, "alg": "ml-dsa-65", "pk": "whatever"},
                entry(3, "ed25519", "ed25519/zz", None),
                entry(4, "ed25519", &retired.to_string(), Some("2026-11-22T11:00:00Z")),
                // The root key may not double as an approval key.
                entry(5, "ed25519", &root.to_string(), None),
            ],
        });
        let table = KeyTable::from_json(doc.to_string().as_bytes()).unwrap();
        let before = humantime::parse_rfc3339("2026-11-22T11:00:00Z").unwrap();
        let after = before + Duration::from_secs(1);
        assert_eq!(table.lookup(1, before), Lookup::Usable(root));
        assert_eq!(table.approval_keys(before), [approval, retired]);
        assert_eq!(table.approval_keys(after), [approval]);
        assert!(table.is_approval_key(&retired, before));
        assert!(!table.is_approval_key(&retired, after));
        assert!(!table.is_approval_key(&root, before));
    }

    #[test]
    fn approval_keys_are_optional_but_not_ambiguous() {
        let root = KeyPair::new().public().to_string();
        let old = serde_json::json!({"keys": [entry(1, "ed25519", &root, None)]});
        let table = KeyTable::from_json(old.to_string().as_bytes()).unwrap();
        assert!(table.approval_keys(SystemTime::now()).is_empty());

        let approval = KeyPair::new().public().to_string();
        let doc = serde_json::json!({
            "keys": [entry(1, "ed25519", &root, None)],
            "approval_keys": [entry(1, "ed25519", &approval, None), entry(1, "ed25519", &approval, None)],
        });
        assert_eq!(
            KeyTable::from_json(doc.to_string().as_bytes()).unwrap_err(),
            KeySetError::DuplicateApprovalKid(1)
        );
    }
}
