//! What a browser carries from `/approvals/login` to the callback: the OAuth `state`, the OpenID
//! `nonce`, the PKCE verifier and where to go afterwards. The broker keeps nothing of a login
//! that has not finished (starting one writes nothing anywhere): the browser holds it in a
//! short-lived cookie, signed with HMAC-SHA256 so that it cannot be forged or altered.
//!
//! The key is derived from the broker's approval key (`SHA-256("writ login state v1\0" ||
//! private key)`): replicas sharing the key directory share it, so a login may return to any
//! replica, and it is never the approval key itself.
//!
//! Sealed form: `base64url(JSON) "." base64url(HMAC(key, JSON))`. Opening it checks the MAC in
//! constant time before anything is parsed, then the age (at most [`MAX_AGE`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A login must come back within this many seconds.
pub const MAX_AGE: i64 = 600;

/// Longest sealed state accepted, in bytes; anything longer is refused unread.
pub const MAX_SEALED_BYTES: usize = 2048;

const KEY_DOMAIN: &[u8] = b"writ login state v1\0";

/// A login in progress.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginState {
    /// The OAuth `state`, which the provider sends back with the code.
    pub state: String,
    /// The OpenID `nonce`, which the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier; the provider saw only its SHA-256.
    pub verifier: String,
    /// Where to go once logged in: a path under `/approvals`.
    pub next: String,
    /// Unix seconds.
    pub issued_at: i64,
}

impl std::fmt::Debug for LoginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginState")
            .field("next", &self.next)
            .field("issued_at", &self.issued_at)
            .finish_non_exhaustive()
    }
}

/// The key login states are signed with. No `Debug`: it is a secret.
pub struct StateKey([u8; 32]);

/// Why a sealed state was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("not a sealed login state")]
    Malformed,
    #[error("the login state's signature does not verify")]
    BadSignature,
    #[error("the login state is too old")]
    Expired,
}

type HmacSha256 = Hmac<Sha256>;

impl StateKey {
    /// The key derived from `secret` (the approval key's private bytes).
    pub fn derive(secret: &[u8]) -> StateKey {
        let mut hash = Sha256::new();
        hash.update(KEY_DOMAIN);
        hash.update(secret);
        StateKey(hash.finalize().into())
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC pads a key shorter than the hash's block with zeros, so the 32-byte key padded
        // to SHA-256's 64-byte block is the same key, through a constructor that cannot fail.
        let mut block = hmac::digest::Key::<HmacSha256>::default();
        block[..self.0.len()].copy_from_slice(&self.0);
        <HmacSha256 as hmac::digest::KeyInit>::new(&block)
    }

    pub fn seal(&self, state: &LoginState) -> String {
        let json = serde_json::to_vec(state).unwrap_or_default();
        let mut mac = self.mac();
        mac.update(&json);
        let tag = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&json),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The state sealed in `sealed`, if this key signed it and it is at most [`MAX_AGE`]
    /// seconds old at `now` (unix seconds).
    pub fn open(&self, sealed: &str, now: i64) -> Result<LoginState, StateError> {
        if sealed.len() > MAX_SEALED_BYTES {
            return Err(StateError::Malformed);
        }
        let (payload, tag) = sealed.split_once('.').ok_or(StateError::Malformed)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| StateError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| StateError::Malformed)?;
        let mut mac = self.mac();
        mac.update(&json);
        mac.verify_slice(&tag)
            .map_err(|_| StateError::BadSignature)?;
        let state: LoginState = serde_json::from_slice(&json).map_err(|_| StateError::Malformed)?;
        let age = now.saturating_sub(state.issued_at);
        if !(0..=MAX_AGE).contains(&age) {
            return Err(StateError::Expired);
        }
        Ok(state)
    }
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn state(issued_at: i64) -> LoginState {
        LoginState {
            state: "s".repeat(43),
            nonce: "n".repeat(43),
            verifier: "v".repeat(43),
            next: "/approvals".into(),
            issued_at,
        }
    }

    #[test]
    fn a_sealed_state_opens_with_its_key_only() {
        let key = StateKey::derive(b"approval key");
        let sealed = key.seal(&state(1000));
        assert_eq!(key.open(&sealed, 1000).unwrap(), state(1000));
        assert_eq!(key.open(&sealed, 1600).unwrap(), state(1000));
        assert_eq!(key.open(&sealed, 1601), Err(StateError::Expired));
        assert_eq!(key.open(&sealed, 999), Err(StateError::Expired));
        let other = StateKey::derive(b"another key");
        assert_eq!(other.open(&sealed, 1000), Err(StateError::BadSignature));
    }

    #[test]
    fn an_altered_state_is_refused() {
        let key = StateKey::derive(b"approval key");
        let sealed = key.seal(&state(1000));
        let (payload, tag) = sealed.split_once('.').unwrap();
        let mut forged = state(1000);
        forged.next = "/approvals/evil".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            key.open(&format!("{forged_payload}.{tag}"), 1000),
            Err(StateError::BadSignature)
        );
        assert_eq!(
            key.open(
                &format!("{payload}.{}", URL_SAFE_NO_PAD.encode([0u8; 32])),
                1000
            ),
            Err(StateError::BadSignature)
        );
        for garbage in ["", ".", "x", "a.b.c", "!!!.???", &"A".repeat(3000)] {
            assert!(key.open(garbage, 1000).is_err(), "{garbage}");
        }
    }

    #[test]
    fn the_mac_is_hmac_sha256_with_the_derived_key() {
        let key = StateKey::derive(b"approval key");
        let mut reference = <HmacSha256 as Mac>::new_from_slice(&key.0).unwrap();
        reference.update(b"message");
        let mut ours = key.mac();
        ours.update(b"message");
        assert_eq!(
            ours.finalize().into_bytes(),
            reference.finalize().into_bytes()
        );
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }
}
