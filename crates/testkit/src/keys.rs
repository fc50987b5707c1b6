//! The fixed test keys (see `keys/README.md`), their JWKs and JWS compact encoding.
//!
//! Keys are committed PEM files rather than generated: RSA-2048 generation takes seconds in a debug
//! build, and fixed keys make every RS256/ES256 token reproducible.

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::SigningKey as EcSigningKey;
use rsa::pkcs1v15::SigningKey as RsaSigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Alg;

/// One signing key with the `kid` it is published under.
// Only five of these exist, in one static: their size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Key {
    Rsa {
        kid: String,
        signing: RsaSigningKey<Sha256>,
        public: RsaPublicKey,
    },
    Ec {
        kid: String,
        signing: EcSigningKey,
    },
}

/// Every key the test kit knows. `rsa[0]` is published at start, `rsa[1]` after a rotation, `rogue`
/// never, `weak` (RSA-1024) on request.
pub(crate) struct Keys {
    pub rsa: [Key; 2],
    pub rogue: Key,
    pub weak: Key,
    pub ec: Key,
}

pub(crate) static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    rsa: [
        Key::rsa(include_str!("../keys/rsa-primary.pem")),
        Key::rsa(include_str!("../keys/rsa-rotated.pem")),
    ],
    rogue: Key::rsa(include_str!("../keys/rsa-rogue.pem")),
    weak: Key::rsa(include_str!("../keys/rsa-1024-weak.pem")),
    ec: Key::ec(include_str!("../keys/ec-p256.pem")),
});

pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Key {
    fn rsa(pem: &str) -> Key {
        let private = RsaPrivateKey::from_pkcs8_pem(pem).expect("test RSA key is PKCS#8 PEM");
        let public = private.to_public_key();
        // RFC 7638 thumbprint: required members in lexicographic order, no whitespace. Written out
        // by hand so it does not depend on serde_json's map ordering.
        let kid = thumbprint(&format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            b64(public.e().to_bytes_be()),
            b64(public.n().to_bytes_be()),
        ));
        Key::Rsa {
            kid,
            signing: RsaSigningKey::new(private),
            public,
        }
    }

    fn ec(pem: &str) -> Key {
        let signing = EcSigningKey::from_pkcs8_pem(pem).expect("test P-256 key is PKCS#8 PEM");
        let (x, y) = ec_coordinates(&signing);
        let kid = thumbprint(&format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#
        ));
        Key::Ec { kid, signing }
    }

    pub fn kid(&self) -> &str {
        match self {
            Key::Rsa { kid, .. } | Key::Ec { kid, .. } => kid,
        }
    }

    pub fn alg(&self) -> Alg {
        match self {
            Key::Rsa { .. } => Alg::Rs256,
            Key::Ec { .. } => Alg::Es256,
        }
    }

    /// The public JWK as an issuer publishes it; `key_use` is normally `sig` (`jwt-svid` in SPIFFE).
    pub fn jwk(&self, key_use: &str) -> Value {
        match self {
            Key::Rsa { kid, public, .. } => json!({
                "kty": "RSA",
                "kid": kid,
                "use": key_use,
                "alg": "RS256",
                "n": b64(public.n().to_bytes_be()),
                "e": b64(public.e().to_bytes_be()),
            }),
            Key::Ec { kid, signing } => {
                let (x, y) = ec_coordinates(signing);
                json!({
                    "kty": "EC",
                    "kid": kid,
                    "use": key_use,
                    "alg": "ES256",
                    "crv": "P-256",
                    "x": x,
                    "y": y,
                })
            }
        }
    }

    /// SubjectPublicKeyInfo PEM with LF line endings.
    pub fn public_key_pem(&self) -> String {
        match self {
            Key::Rsa { public, .. } => public.to_public_key_pem(LineEnding::LF),
            Key::Ec { signing, .. } => signing.verifying_key().to_public_key_pem(LineEnding::LF),
        }
        .expect("public key encodes as PEM")
    }

    /// The JWS signature over `input`: PKCS#1 v1.5 SHA-256 for RSA, `r || s` (64 bytes) for P-256.
    /// Both are deterministic (ECDSA uses RFC 6979 nonces).
    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            Key::Rsa { signing, .. } => signing.sign(input).to_vec(),
            Key::Ec { signing, .. } => {
                let signature: p256::ecdsa::Signature = signing.sign(input);
                signature.to_bytes().to_vec()
            }
        }
    }

    /// A compact JWS of `claims` with header `{"alg", "kid", "typ": "JWT"}`.
    pub fn sign_jwt(&self, claims: &Value) -> String {
        let header = json!({ "alg": self.alg().as_str(), "kid": self.kid(), "typ": "JWT" });
        let input = signing_input(&header, claims);
        let signature = self.sign(input.as_bytes());
        format!("{input}.{}", b64(signature))
    }
}

/// `base64url(header) "." base64url(claims)`, the bytes a JWS signature covers.
pub(crate) fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64(header.to_string()), b64(claims.to_string()))
}

fn ec_coordinates(signing: &EcSigningKey) -> (String, String) {
    let point = signing.verifying_key().to_encoded_point(false);
    let x = point.x().expect("uncompressed point has x");
    let y = point.y().expect("uncompressed point has y");
    (b64(x), b64(y))
}

fn thumbprint(canonical_jwk: &str) -> String {
    b64(Sha256::digest(canonical_jwk.as_bytes()))
}
