//! The development identity issuer, trusted only in dev mode, so a newcomer can get a first writ
//! without any identity provider. Its Ed25519 key lives in the key directory (`dev-issuer.pem`,
//! 0600, refused like a root key when group or others may read it); `writ dev token` signs
//! identity tokens with it. A broker outside dev mode never loads
//! it, and the configuration refuses an issuer of the same name.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreEdDsaPrivateSigningKey, CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{JsonWebKeyId, PrivateSigningKey};
use serde_json::json;

use super::issuer::IssuerSettings;
use super::keys::KeySource;
use crate::config::DEV_ISSUER_NAME;

/// The development issuer's `iss`; `.invalid` can never be a real host.
pub const DEV_ISSUER_URL: &str = "https://writ-dev.invalid";
pub const DEV_AUDIENCE: &str = "writ";
const KEY_ID: &str = "writ-dev-1";
const KEY_FILE: &str = "dev-issuer.pem";

#[derive(Debug, thiserror::Error)]
pub enum DevIssuerError {
    #[error("development issuer key {path}: {message}")]
    Key { path: PathBuf, message: String },
}

pub struct DevIssuer {
    signing_key: CoreEdDsaPrivateSigningKey,
}

impl DevIssuer {
    /// Loads the development issuer's key from `key_dir`, creating it on first use.
    pub fn open_or_init(key_dir: &Path) -> Result<DevIssuer, DevIssuerError> {
        let path = key_dir.join(KEY_FILE);
        let error = |message: String| DevIssuerError::Key {
            path: path.clone(),
            message,
        };
        if !path.exists() {
            crate::keys::create_private_dir(key_dir).map_err(|e| error(e.to_string()))?;
            let pem = biscuit_auth::KeyPair::new()
                .to_private_key_pem()
                .map_err(|e| error(e.to_string()))?;
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| error(e.to_string()))?;
            file.write_all(pem.as_bytes())
                .map_err(|e| error(e.to_string()))?;
        }
        // The same rule as the root keys: whoever can read this key can sign identities the dev
        // broker trusts.
        crate::keys::check_private_file(&path).map_err(|e| error(e.to_string()))?;
        let pem = fs::read_to_string(&path).map_err(|e| error(e.to_string()))?;
        let signing_key = CoreEdDsaPrivateSigningKey::from_ed25519_pem(
            &pem,
            Some(JsonWebKeyId::new(KEY_ID.into())),
        )
        .map_err(error)?;
        Ok(DevIssuer { signing_key })
    }

    /// The trusted-issuer settings of the development issuer (static keys, EdDSA only).
    pub fn settings(&self, skew: Duration) -> IssuerSettings {
        IssuerSettings {
            name: DEV_ISSUER_NAME.into(),
            issuer: DEV_ISSUER_URL.into(),
            audience: DEV_AUDIENCE.into(),
            algorithms: vec!["EdDSA".into()],
            agent: "dev:{sub}".into(),
            skew,
            min_refetch_interval: Duration::from_secs(3600),
            refresh_every: Duration::from_secs(3600),
            source: KeySource::Static(CoreJsonWebKeySet::new(vec![
                self.signing_key.as_verification_key(),
            ])),
        }
    }

    /// Signs a development identity token for `subject`.
    pub fn token(&self, subject: &str, ttl: Duration, now: SystemTime) -> Result<String, String> {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let exp = iat
            .checked_add(ttl.as_secs())
            .ok_or("the token's lifetime is too long")?;
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": KEY_ID});
        let claims = json!({
            "iss": DEV_ISSUER_URL, "sub": subject, "aud": DEV_AUDIENCE,
            "iat": iat, "nbf": iat, "exp": exp,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .signing_key
            .sign(&CoreJwsSigningAlgorithm::EdDsa, signing_input.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}
