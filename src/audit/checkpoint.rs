//! Signed checkpoints: the chain's head at a moment, signed with the broker's active root key.
//!
//! The chain shows that no stored event was altered or removed in the middle, but removing the
//! newest events, or rewriting every event from some point on, leaves a sound chain. A
//! checkpoint kept where the database's writers cannot change it (exported, published, held by
//! an auditor) pins the head it signed: a later log must still hold that hash at that seq.

use biscuit_auth::PublicKey;
use openidconnect::JsonWebKey;
use openidconnect::core::{CoreJsonCurveType, CoreJsonWebKey, CoreJwsSigningAlgorithm};
use serde::{Deserialize, Serialize};

use super::ChainHash;
use crate::keys::SigningKey;

/// Domain separation for the signed message: a checkpoint signature cannot be mistaken for a
/// writ's, nor a writ's for a checkpoint's.
pub const CHECKPOINT_DOMAIN: &[u8] = b"writ-audit-checkpoint-v1\0";

/// The length of an Ed25519 signature.
const SIGNATURE_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("the checkpoint could not be signed: {0}")]
    Signing(biscuit_auth::error::Format),
    #[error("root key {root_key_id} is not an Ed25519 key; checkpoints are signed with Ed25519")]
    UnsupportedKey { root_key_id: u32 },
    #[error("the checkpoint for event {seq} has a malformed signature (not 64 bytes in hex)")]
    MalformedSignature { seq: u64 },
    #[error(
        "the checkpoint for event {seq} does not verify with root key {root_key_id}: it was \
         altered or not signed by that key"
    )]
    BadSignature { seq: u64, root_key_id: u32 },
    /// The log holds a different hash (or no event) at the checkpoint's seq.
    #[error(
        "the log was rewritten: event {seq}'s hash differs from the checkpoint signed at {}",
        format_ms(*signed_at_ms)
    )]
    Rewritten { seq: u64, signed_at_ms: i64 },
    /// The log ends at `last_seq`, before the checkpoint's seq.
    #[error("{}", truncated_text(*last_seq, *seq, *signed_at_ms))]
    Truncated {
        last_seq: u64,
        seq: u64,
        signed_at_ms: i64,
    },
}

/// The head of the chain at `seq`, signed by root key `root_key_id` at `at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: ChainHash,
    /// When it was signed, in unix milliseconds.
    pub at_ms: i64,
    pub root_key_id: u32,
    /// The Ed25519 signature of [`Checkpoint::message`], in lowercase hex.
    pub signature: String,
}

impl Checkpoint {
    /// Signs the head `(seq, hash)` with `key` at `at_ms` (unix milliseconds).
    pub fn sign(
        key: &SigningKey,
        seq: u64,
        hash: ChainHash,
        at_ms: i64,
    ) -> Result<Checkpoint, CheckpointError> {
        if !matches!(key.key_pair.public(), PublicKey::Ed25519(_)) {
            return Err(CheckpointError::UnsupportedKey {
                root_key_id: key.kid,
            });
        }
        let message = message(seq, &hash, at_ms, key.kid);
        let signature = key
            .key_pair
            .sign(&message)
            .map_err(CheckpointError::Signing)?;
        Ok(Checkpoint {
            seq,
            hash,
            at_ms,
            root_key_id: key.kid,
            signature: hex::encode(signature.to_bytes()),
        })
    }

    /// The signed bytes (see the [module documentation](super)).
    pub fn message(&self) -> Vec<u8> {
        message(self.seq, &self.hash, self.at_ms, self.root_key_id)
    }

    /// Checks the signature with the public key of root key `root_key_id` (the caller picks it
    /// from the published key set by that id).
    pub fn verify(&self, public_key: &PublicKey) -> Result<(), CheckpointError> {
        if !matches!(public_key, PublicKey::Ed25519(_)) {
            return Err(CheckpointError::UnsupportedKey {
                root_key_id: self.root_key_id,
            });
        }
        let signature = self.signature_bytes()?;
        // biscuit-auth 6 does not export its `Signature` type, so a signature read back from
        // text cannot be handed to `PublicKey::verify_signature`; the OpenID Connect crate's
        // Ed25519 verifier (ed25519-dalek, as in biscuit-auth) checks the same bytes.
        let key = CoreJsonWebKey::new_okp(public_key.to_bytes(), CoreJsonCurveType::Ed25519, None);
        key.verify_signature(&CoreJwsSigningAlgorithm::EdDsa, &self.message(), &signature)
            .map_err(|_| CheckpointError::BadSignature {
                seq: self.seq,
                root_key_id: self.root_key_id,
            })
    }

    fn signature_bytes(&self) -> Result<[u8; SIGNATURE_LEN], CheckpointError> {
        let mut bytes = [0u8; SIGNATURE_LEN];
        hex::decode_to_slice(&self.signature, &mut bytes)
            .map_err(|_| CheckpointError::MalformedSignature { seq: self.seq })?;
        Ok(bytes)
    }

    /// Holds the log to this checkpoint. `hash_at_seq` is the stored hash of event `self.seq`
    /// (`None` if the log has no such event) and `last_seq` the log's last seq (0 if empty).
    ///
    /// This compares one hash; verify the checkpoint's signature first, and the chain itself with
    /// a [`ChainVerifier`](super::ChainVerifier): the chain vouches for every event before the
    /// checkpoint's, the checkpoint for the chain's head at the moment it was signed.
    pub fn check_log(
        &self,
        hash_at_seq: Option<&ChainHash>,
        last_seq: u64,
    ) -> Result<(), CheckpointError> {
        // Before event 1 the chain's hash is the genesis hash, which no storage holds.
        let hash_at_seq = match self.seq {
            0 => Some(&ChainHash::GENESIS),
            _ => hash_at_seq,
        };
        match hash_at_seq {
            Some(hash) if *hash == self.hash => Ok(()),
            None if last_seq < self.seq => Err(CheckpointError::Truncated {
                last_seq,
                seq: self.seq,
                signed_at_ms: self.at_ms,
            }),
            _ => Err(CheckpointError::Rewritten {
                seq: self.seq,
                signed_at_ms: self.at_ms,
            }),
        }
    }
}

fn message(seq: u64, hash: &ChainHash, at_ms: i64, root_key_id: u32) -> Vec<u8> {
    let mut message = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 8 + 32 + 8 + 4);
    message.extend_from_slice(CHECKPOINT_DOMAIN);
    message.extend_from_slice(&seq.to_be_bytes());
    message.extend_from_slice(hash.as_bytes());
    message.extend_from_slice(&at_ms.to_be_bytes());
    message.extend_from_slice(&root_key_id.to_be_bytes());
    message
}

fn truncated_text(last_seq: u64, seq: u64, signed_at_ms: i64) -> String {
    let signed = format_ms(signed_at_ms);
    if last_seq == 0 {
        format!("every event was removed: a checkpoint signed at {signed} covers event {seq}")
    } else {
        format!(
            "events after {last_seq} were removed: a checkpoint signed at {signed} covers event \
             {seq}"
        )
    }
}

/// Unix milliseconds as RFC 3339 UTC, for operators.
fn format_ms(at_ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(at_ms) {
        Some(time) => time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => format!("{at_ms} ms after the unix epoch"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::audit::chain::tests::chain;
    use crate::audit::{ChainedEvent, verify_chain};
    use biscuit_auth::KeyPair;

    const SIGNED_AT: i64 = 1_700_000_000_000;

    fn key(kid: u32) -> SigningKey {
        SigningKey {
            kid,
            key_pair: KeyPair::new(),
        }
    }

    fn head(events: &[ChainedEvent]) -> (u64, ChainHash) {
        events
            .last()
            .map(|event| (event.seq, event.hash))
            .unwrap_or((0, ChainHash::GENESIS))
    }

    /// What storage answers for a checkpoint: the hash at its seq and the last seq.
    fn log_at(events: &[ChainedEvent], seq: u64) -> (Option<&ChainHash>, u64) {
        let hash = events
            .iter()
            .find(|event| event.seq == seq)
            .map(|event| &event.hash);
        (hash, head(events).0)
    }

    #[test]
    fn a_signed_checkpoint_verifies() {
        let key = key(3);
        let events = chain(5);
        let (seq, hash) = head(&events);
        let checkpoint = Checkpoint::sign(&key, seq, hash, SIGNED_AT).unwrap();
        assert_eq!(checkpoint.root_key_id, 3);
        assert_eq!(checkpoint.signature.len(), 128);
        checkpoint.verify(&key.key_pair.public()).unwrap();
    }

    #[test]
    fn the_signature_covers_the_documented_message() {
        let key = key(9);
        let hash = ChainHash::from_bytes([5; 32]);
        let checkpoint = Checkpoint::sign(&key, 42, hash, SIGNED_AT).unwrap();
        let mut expected = b"writ-audit-checkpoint-v1\0".to_vec();
        expected.extend_from_slice(&42u64.to_be_bytes());
        expected.extend_from_slice(&[5; 32]);
        expected.extend_from_slice(&SIGNED_AT.to_be_bytes());
        expected.extend_from_slice(&9u32.to_be_bytes());
        assert_eq!(checkpoint.message(), expected);
        // Ed25519 is deterministic: signing the documented bytes gives the same signature.
        let direct = key.key_pair.sign(&expected).unwrap();
        assert_eq!(checkpoint.signature, hex::encode(direct.to_bytes()));
    }

    #[test]
    fn another_key_is_refused() {
        let checkpoint = Checkpoint::sign(&key(1), 5, ChainHash::GENESIS, SIGNED_AT).unwrap();
        let other = KeyPair::new();
        let refused = checkpoint.verify(&other.public()).unwrap_err();
        assert!(matches!(
            refused,
            CheckpointError::BadSignature {
                seq: 5,
                root_key_id: 1
            }
        ));
        assert_eq!(
            refused.to_string(),
            "the checkpoint for event 5 does not verify with root key 1: it was altered or not \
             signed by that key"
        );
    }

    #[test]
    fn an_altered_checkpoint_is_refused() {
        let key = key(1);
        let public = key.key_pair.public();
        let events = chain(5);
        let checkpoint = Checkpoint::sign(&key, 5, events[4].hash, SIGNED_AT).unwrap();
        let altered = [
            Checkpoint {
                seq: 4,
                ..checkpoint.clone()
            },
            Checkpoint {
                hash: events[3].hash,
                ..checkpoint.clone()
            },
            Checkpoint {
                at_ms: SIGNED_AT + 1,
                ..checkpoint.clone()
            },
            Checkpoint {
                root_key_id: 2,
                ..checkpoint.clone()
            },
        ];
        for checkpoint in altered {
            assert!(matches!(
                checkpoint.verify(&public),
                Err(CheckpointError::BadSignature { .. })
            ));
        }
        let mut flipped = checkpoint.clone();
        let last = if flipped.signature.ends_with('0') {
            "1"
        } else {
            "0"
        };
        flipped.signature.replace_range(127.., last);
        assert!(matches!(
            flipped.verify(&public),
            Err(CheckpointError::BadSignature { .. })
        ));
        let short = Checkpoint {
            signature: "abcd".into(),
            ..checkpoint
        };
        assert!(matches!(
            short.verify(&public),
            Err(CheckpointError::MalformedSignature { seq: 5 })
        ));
    }

    #[test]
    fn checkpoints_round_trip_through_json() {
        let checkpoint =
            Checkpoint::sign(&key(1), 5, ChainHash::from_bytes([1; 32]), SIGNED_AT).unwrap();
        let value = serde_json::to_value(&checkpoint).unwrap();
        assert_eq!(value["hash"], "01".repeat(32));
        assert_eq!(value["root_key_id"], 1);
        let back: Checkpoint = serde_json::from_value(value).unwrap();
        assert_eq!(back, checkpoint);
    }

    #[test]
    fn a_truncated_head_is_caught_by_a_checkpoint() {
        let key = key(1);
        let events = chain(10);
        let (seq, hash) = head(&events);
        let checkpoint = Checkpoint::sign(&key, seq, hash, SIGNED_AT).unwrap();
        let (at, last) = log_at(&events, seq);
        checkpoint.check_log(at, last).unwrap();

        let truncated = &events[..7];
        verify_chain(truncated).unwrap();
        let (at, last) = log_at(truncated, seq);
        let caught = checkpoint.check_log(at, last).unwrap_err();
        assert!(matches!(
            caught,
            CheckpointError::Truncated {
                last_seq: 7,
                seq: 10,
                ..
            }
        ));
        assert_eq!(
            caught.to_string(),
            "events after 7 were removed: a checkpoint signed at 2023-11-14T22:13:20.000Z \
             covers event 10"
        );
        let (at, last) = log_at(&[], seq);
        assert_eq!(
            checkpoint.check_log(at, last).unwrap_err().to_string(),
            "every event was removed: a checkpoint signed at 2023-11-14T22:13:20.000Z covers \
             event 10"
        );
    }

    #[test]
    fn a_rewritten_log_is_caught_by_a_checkpoint() {
        let key = key(1);
        let events = chain(10);
        let checkpoint = Checkpoint::sign(&key, 8, events[7].hash, SIGNED_AT).unwrap();

        // Everything from event 4 on rewritten and rehashed: a sound chain, a different one.
        let mut rewritten = events[..3].to_vec();
        for original in &events[3..] {
            let mut event = original.event.clone();
            event.reason = Some("rewritten".into());
            rewritten.push(ChainedEvent::after(head(&rewritten), event));
        }
        verify_chain(&rewritten).unwrap();
        let (at, last) = log_at(&rewritten, 8);
        let caught = checkpoint.check_log(at, last).unwrap_err();
        assert!(matches!(caught, CheckpointError::Rewritten { seq: 8, .. }));
        assert_eq!(
            caught.to_string(),
            "the log was rewritten: event 8's hash differs from the checkpoint signed at \
             2023-11-14T22:13:20.000Z"
        );
        // Events after the checkpoint are not its concern.
        let (at, last) = log_at(&events, 8);
        checkpoint.check_log(at, last).unwrap();
    }

    #[test]
    fn a_checkpoint_of_the_empty_log_holds_against_any_log() {
        let checkpoint = Checkpoint::sign(&key(1), 0, ChainHash::GENESIS, SIGNED_AT).unwrap();
        checkpoint.check_log(None, 0).unwrap();
        checkpoint.check_log(None, 10).unwrap();
    }
}
