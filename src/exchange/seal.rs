//! Sealing the credential an exchange answered, so that a repeated exchange can answer it again
//! without the database holding it in the clear.
//!
//! The key is `SHA-256("writ exchange seal v1\0" || approval private key)`: replicas sharing the
//! key store share it, and it is never the approval key itself (the login state key is derived
//! the same way under another domain). The cipher is ChaCha20-Poly1305 with a random nonce and the
//! exchange's id as associated data, so a sealed credential moved to another row does not open.
//!
//! Sealed form: `base64(nonce || ciphertext || tag)`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::{Digest, Sha256};

const KEY_DOMAIN: &[u8] = b"writ exchange seal v1\0";

/// Why a sealed credential could not be made or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the system random source failed")]
    Random,
    #[error("the sealing key could not be made")]
    Key,
    #[error("the sealed credential does not open with this key")]
    Unopenable,
}

/// The key credentials are sealed with. Deliberately without `Debug`.
pub struct SealingKey(LessSafeKey);

impl SealingKey {
    /// The key derived from `secret` (the approval key's private bytes).
    pub fn derive(secret: &[u8]) -> Result<SealingKey, SealError> {
        let mut hash = Sha256::new();
        hash.update(KEY_DOMAIN);
        hash.update(secret);
        let bytes: [u8; 32] = hash.finalize().into();
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| SealError::Key)?;
        Ok(SealingKey(LessSafeKey::new(key)))
    }

    /// Seals `plaintext` for the exchange `id`.
    pub fn seal(&self, id: &str, plaintext: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|_| SealError::Random)?;
        let mut in_out = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(id.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| SealError::Random)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&in_out);
        Ok(STANDARD.encode(sealed))
    }

    /// Opens what [`seal`](Self::seal) made for the same `id` with the same key.
    pub fn open(&self, id: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let bytes = STANDARD.decode(sealed).map_err(|_| SealError::Unopenable)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Unopenable);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Unopenable)?;
        let mut in_out = ciphertext.to_vec();
        let plaintext = self
            .0
            .open_in_place(nonce, Aad::from(id.as_bytes()), &mut in_out)
            .map_err(|_| SealError::Unopenable)?;
        Ok(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_sealed_credential_opens_with_its_key_and_id_only() {
        let key = SealingKey::derive(b"approval key").unwrap();
        let sealed = key.seal("ex_1", b"secret").unwrap();
        assert_eq!(key.open("ex_1", &sealed).unwrap(), b"secret");
        assert_eq!(key.open("ex_2", &sealed), Err(SealError::Unopenable));
        let other = SealingKey::derive(b"another key").unwrap();
        assert_eq!(other.open("ex_1", &sealed), Err(SealError::Unopenable));
        assert!(!sealed.contains("secret"));
    }

    #[test]
    fn altered_or_short_sealed_text_does_not_open() {
        let key = SealingKey::derive(b"approval key").unwrap();
        let sealed = key.seal("ex_1", b"secret").unwrap();
        let mut bytes = STANDARD.decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            key.open("ex_1", &STANDARD.encode(bytes)),
            Err(SealError::Unopenable)
        );
        assert_eq!(key.open("ex_1", "AAAA"), Err(SealError::Unopenable));
        assert_eq!(key.open("ex_1", "not base64!"), Err(SealError::Unopenable));
    }

    #[test]
    fn two_seals_of_the_same_text_differ() {
        let key = SealingKey::derive(b"approval key").unwrap();
        assert_ne!(
            key.seal("ex_1", b"x").unwrap(),
            key.seal("ex_1", b"x").unwrap()
        );
    }
}
