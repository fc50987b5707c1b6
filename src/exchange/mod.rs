//! Exchange: trading a verified writ for a native credential (AWS STS session credentials, a
//! Vault/OpenBao dynamic secret) that lives no longer than the writ and is taken back when the
//! writ is revoked.
//!
//! The rules here are values and pure functions: what a configured exchange role is, what a
//! repeated exchange of the same writ answers, and how a credential is sealed for keeping
//! ([`seal`]). The broker (`broker/exchange.rs`) verifies the writ, records the exchange and
//! talks to the upstream through [`aws`] and `vault`.

pub mod aws;
pub mod seal;

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The largest writ presented for an exchange, in bytes: the broker reads no more of an
/// `Authorization` header, and the CLI no more of a writ file.
pub const MAX_WRIT_BYTES: usize = 16 * 1024;

/// The service name a writ must list to be exchanged, unless configured otherwise.
pub const DEFAULT_SERVICE: &str = "writ-exchange";

/// What a writ is exchanged for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Aws,
    Vault,
}

impl ExchangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Aws => "aws",
            ExchangeKind::Vault => "vault",
        }
    }

    pub fn parse(text: &str) -> Option<ExchangeKind> {
        match text {
            "aws" => Some(ExchangeKind::Aws),
            "vault" => Some(ExchangeKind::Vault),
            _ => None,
        }
    }
}

/// Where an exchange stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeState {
    /// The upstream is being asked; the row holds the writ and target so that no second
    /// exchange starts meanwhile.
    Pending,
    /// The credential was issued and is kept sealed.
    Issued,
    /// Revocation took the credential back upstream.
    Withdrawn,
}

impl ExchangeState {
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeState::Pending => "pending",
            ExchangeState::Issued => "issued",
            ExchangeState::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(text: &str) -> Option<ExchangeState> {
        match text {
            "pending" => Some(ExchangeState::Pending),
            "issued" => Some(ExchangeState::Issued),
            "withdrawn" => Some(ExchangeState::Withdrawn),
            _ => None,
        }
    }
}

/// One exchange as recorded. Holds no secret in the clear: `sealed` is the credential encrypted
/// under the sealing key.
#[derive(Clone, PartialEq, Eq)]
pub struct ExchangeRecord {
    pub id: String,
    pub writ_id: String,
    pub agent: String,
    pub task: String,
    pub kind: ExchangeKind,
    /// The configured role name.
    pub target: String,
    /// SHA-256 hex of what was asked ([`scope_hash`]).
    pub scope: String,
    pub state: ExchangeState,
    /// What identifies the credential upstream: the Vault lease id, the AWS assumed-role ARN.
    pub handle: Option<String>,
    pub sealed: Option<String>,
    pub sealing_kid: Option<u32>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds: when the credential ends upstream (an STS session lasts at least 15
    /// minutes, which may be after the writ's end).
    pub expires_at: i64,
    pub writ_expires_at: i64,
    pub withdrawn_at: Option<i64>,
    pub withdraw_error: Option<String>,
    /// AWS: until when the deny statement of a withdrawn exchange is needed.
    pub deny_until: Option<i64>,
    pub deny_removed_at: Option<i64>,
}

impl fmt::Debug for ExchangeRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeRecord")
            .field("id", &self.id)
            .field("writ_id", &self.writ_id)
            .field("kind", &self.kind)
            .field("target", &self.target)
            .field("state", &self.state)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What a repeated exchange of the same writ for the same target answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Repeat<'a> {
    /// The credential already issued, still alive: answer it again.
    Answer(&'a str),
    /// Another call is asking the upstream right now.
    InProgress,
    /// The writ was exchanged for this target with a different scope.
    OtherScope,
    /// The credential would outlive the writ presented now (an attenuation that ends sooner).
    OutlivesWrit,
    /// The credential was taken back (revocation) or has ended.
    Ended,
}

/// Decides what a call asking `scope` at `now`, with a writ valid until `writ_expires_at`, gets
/// when `existing` is recorded for the same writ and target. One exchange per writ and target: a
/// leaked writ cannot mint a fan of native credentials, and a retry after a lost answer gets the
/// same credential. An attenuation of the writ that ends sooner does not get a credential made
/// for the longer writ: that would outlive it.
pub fn repeat<'a>(
    existing: &'a ExchangeRecord,
    scope: &str,
    writ_expires_at: i64,
    now: i64,
) -> Repeat<'a> {
    match existing.state {
        ExchangeState::Pending => Repeat::InProgress,
        ExchangeState::Withdrawn => Repeat::Ended,
        ExchangeState::Issued if existing.scope != scope => Repeat::OtherScope,
        ExchangeState::Issued if existing.expires_at <= now => Repeat::Ended,
        ExchangeState::Issued if writ_expires_at < existing.writ_expires_at => Repeat::OutlivesWrit,
        ExchangeState::Issued => match &existing.sealed {
            Some(sealed) => Repeat::Answer(sealed),
            None => Repeat::Ended,
        },
    }
}

/// The scope of an exchange as one value: SHA-256 hex over each part, length-prefixed so that
/// no two lists of parts hash alike.
pub fn scope_hash<S: AsRef<str>>(parts: &[S]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        let part = part.as_ref();
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hex::encode(hash.finalize())
}

/// How an upstream (STS, IAM, Vault) failed: the distinction decides the answer's status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// It could not be reached, or did not answer in time: retrying later may work (503).
    #[error("{upstream} is unreachable: {detail}")]
    Unreachable {
        upstream: &'static str,
        detail: String,
    },
    /// It answered and refused, or answered something unusable (502).
    #[error("{upstream} refused: {detail}")]
    Refused {
        upstream: &'static str,
        detail: String,
    },
}

/// A credential as answered to the agent: a JSON object, kept only sealed. Deliberately without
/// a `Debug` that could print it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Credential(pub serde_json::Map<String, serde_json::Value>);

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(..)")
    }
}

/// A configured Vault exchange role: `POST /v1/exchange/vault/{name}` reads a credential at
/// `path` for a writ that grants `operation` on `resource`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VaultRole {
    pub name: String,
    /// A dynamic-secret path, e.g. `database/creds/orders-readonly`.
    pub path: String,
    pub resource: String,
    pub operation: String,
}

/// Checks a role name: what an agent puts in a URL, so short and plain.
pub fn check_role_name(name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    match plain {
        true => Ok(()),
        false => Err(format!(
            "name must be 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit ({name:?} is not)"
        )),
    }
}

impl VaultRole {
    pub fn validate(&self) -> Result<(), String> {
        check_role_name(&self.name)?;
        let path_ok = crate::config::valid_vault_path(&self.path);
        if !path_ok {
            return Err(format!(
                "vault role {:?}: path {:?} must be segments of letters, digits, '-', '_' or '.' separated by '/'",
                self.name, self.path
            ));
        }
        writ_verify::check_canonical_resource(&self.resource).map_err(|error| {
            format!(
                "vault role {:?}: resource {:?}: {error}",
                self.name, self.resource
            )
        })?;
        if self.operation.is_empty()
            || self.operation.len() > 64
            || !self
                .operation
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return Err(format!(
                "vault role {:?}: operation {:?} must be 1-64 letters, digits, '-', '_', '.' or ':'",
                self.name, self.operation
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(state: ExchangeState) -> ExchangeRecord {
        ExchangeRecord {
            id: "ex_1".into(),
            writ_id: "wr_1".into(),
            agent: "agent".into(),
            task: "task".into(),
            kind: ExchangeKind::Vault,
            target: "orders".into(),
            scope: scope_hash(&["a"]),
            state,
            handle: None,
            sealed: Some("sealed".into()),
            sealing_kid: Some(1),
            created_at: 100,
            expires_at: 200,
            writ_expires_at: 200,
            withdrawn_at: None,
            withdraw_error: None,
            deny_until: None,
            deny_removed_at: None,
        }
    }

    #[test]
    fn a_repeat_answers_the_live_credential_of_the_same_scope_only() {
        let issued = record(ExchangeState::Issued);
        let same = scope_hash(&["a"]);
        assert_eq!(repeat(&issued, &same, 200, 150), Repeat::Answer("sealed"));
        assert_eq!(repeat(&issued, &same, 300, 150), Repeat::Answer("sealed"));
        assert_eq!(
            repeat(&issued, &scope_hash(&["b"]), 200, 150),
            Repeat::OtherScope
        );
        assert_eq!(repeat(&issued, &same, 200, 200), Repeat::Ended);
        assert_eq!(repeat(&issued, &same, 199, 150), Repeat::OutlivesWrit);
        assert_eq!(
            repeat(&record(ExchangeState::Pending), &same, 200, 150),
            Repeat::InProgress
        );
        assert_eq!(
            repeat(&record(ExchangeState::Withdrawn), &same, 200, 150),
            Repeat::Ended
        );
    }

    #[test]
    fn scopes_hash_by_their_parts() {
        assert_ne!(scope_hash(&["ab", "c"]), scope_hash(&["a", "bc"]));
        assert_eq!(scope_hash(&["a", "b"]), scope_hash(&["a", "b"]));
    }

    #[test]
    fn vault_roles_are_checked() {
        let role = VaultRole {
            name: "orders-db".into(),
            path: "database/creds/orders-readonly".into(),
            resource: "vault:database/orders".into(),
            operation: "read".into(),
        };
        assert_eq!(role.validate(), Ok(()));
        for bad in [
            VaultRole {
                name: "Orders".into(),
                ..role.clone()
            },
            VaultRole {
                name: "".into(),
                ..role.clone()
            },
            VaultRole {
                path: "database/../sys/raw".into(),
                ..role.clone()
            },
            VaultRole {
                path: "database//creds".into(),
                ..role.clone()
            },
            VaultRole {
                path: "database/creds?x=1".into(),
                ..role.clone()
            },
            VaultRole {
                resource: "vault:a/../b".into(),
                ..role.clone()
            },
            VaultRole {
                operation: "".into(),
                ..role.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn credentials_do_not_print() {
        let mut map = serde_json::Map::new();
        map.insert("password".into(), "hunter2".into());
        assert!(!format!("{:?}", Credential(map)).contains("hunter2"));
    }
}
