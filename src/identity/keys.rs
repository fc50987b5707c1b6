//! Fetching and parsing an issuer's signing keys (JWKS), directly or through OIDC discovery.
//!
//! Discovery documents are read by hand: Kubernetes and GitHub Actions omit
//! `authorization_endpoint`, which the openidconnect crate's metadata type requires. Key sets are
//! parsed key by key so that one key of an unknown type does not void the others, and SPIFFE
//! bundles' `use: "jwt-svid"` is read as a signing key. No redirects are followed.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreJsonWebKey, CoreJsonWebKeySet};
use serde_json::Value;

use crate::config::JwksSource;

/// RSA keys with a shorter modulus are dropped from an issuer's key set.
pub const MIN_RSA_BITS: usize = 2048;

/// Larger answers from an issuer (discovery document or key set) are refused; reading stops at
/// this size, whether or not the answer announced its length.
pub const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum KeyFetchError {
    #[error("request to {url} failed: {message}")]
    Http { url: String, message: String },
    #[error("{url}: {message}")]
    Document { url: String, message: String },
    #[error("cannot read {path}: {message}")]
    File { path: String, message: String },
}

/// Where to get keys: a JWKS location, or discovery on the issuer URL.
#[derive(Debug, Clone)]
pub enum KeySource {
    Discovery {
        issuer: String,
    },
    Url(String),
    File(std::path::PathBuf),
    /// Keys known at start (the development issuer).
    Static(CoreJsonWebKeySet),
}

impl KeySource {
    pub fn from_config(issuer: &str, jwks: Option<&JwksSource>) -> KeySource {
        match jwks {
            None => KeySource::Discovery {
                issuer: issuer.to_owned(),
            },
            Some(JwksSource::Url(url)) => KeySource::Url(url.clone()),
            Some(JwksSource::File(path)) => KeySource::File(path.clone()),
        }
    }
}

/// An HTTP client for identity and login providers: no redirects, short timeouts. Fails rather
/// than fall back to a client without those limits.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(3))
        .build()
}

pub async fn fetch(
    source: &KeySource,
    client: &reqwest::Client,
) -> Result<CoreJsonWebKeySet, KeyFetchError> {
    match source {
        KeySource::Static(keys) => Ok(keys.clone()),
        KeySource::File(path) => read_file(path),
        KeySource::Url(url) => parse_key_set(url, &get_json(client, url).await?),
        KeySource::Discovery { issuer } => {
            let url = format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            );
            let document = get_json(client, &url).await?;
            let jwks_uri = discovered_jwks_uri(&url, issuer, &document)?;
            parse_key_set(&jwks_uri, &get_json(client, &jwks_uri).await?)
        }
    }
}

fn discovered_jwks_uri(url: &str, issuer: &str, document: &Value) -> Result<String, KeyFetchError> {
    let error = |message: String| KeyFetchError::Document {
        url: url.to_owned(),
        message,
    };
    let claimed = document
        .get("issuer")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if claimed != issuer {
        return Err(error(format!(
            "the discovery document names issuer {claimed:?}, not the configured {issuer:?}"
        )));
    }
    document
        .get("jwks_uri")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| error("the discovery document has no jwks_uri".into()))
}

/// GETs `url` and reads its JSON, at most [`MAX_DOCUMENT_BYTES`] of it.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Result<Value, KeyFetchError> {
    let http = |message: String| KeyFetchError::Http {
        url: url.to_owned(),
        message,
    };
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| http(e.to_string()))?;
    if !response.status().is_success() {
        return Err(http(format!("status {}", response.status())));
    }
    let body = read_bounded(response, MAX_DOCUMENT_BYTES)
        .await
        .map_err(|e| http(e.to_string()))?;
    serde_json::from_slice(&body).map_err(|e| KeyFetchError::Document {
        url: url.to_owned(),
        message: format!("not JSON: {e}"),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the document is larger than {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

/// Reads a response body chunk by chunk and stops at `max` bytes: a chunked answer without a
/// Content-Length is never read whole before its size is known.
pub async fn read_bounded(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn read_file(path: &Path) -> Result<CoreJsonWebKeySet, KeyFetchError> {
    let name = path.display().to_string();
    let file_error = |message: String| KeyFetchError::File {
        path: name.clone(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| file_error(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_DOCUMENT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| file_error(e.to_string()))?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(file_error(format!(
            "the key set is larger than {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    let value = serde_json::from_slice(&bytes).map_err(|e| KeyFetchError::Document {
        url: name.clone(),
        message: format!("not JSON: {e}"),
    })?;
    parse_key_set(&name, &value)
}

/// Parses a JWKS key by key: keys that cannot be used for signatures are skipped, not fatal.
pub fn parse_key_set(url: &str, document: &Value) -> Result<CoreJsonWebKeySet, KeyFetchError> {
    let keys = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| KeyFetchError::Document {
            url: url.to_owned(),
            message: "no keys array".into(),
        })?;
    let usable: Vec<CoreJsonWebKey> = keys
        .iter()
        .filter_map(|key| {
            if let Some(weakness) = rsa_weakness(key) {
                let kid = key.get("kid").and_then(Value::as_str).unwrap_or_default();
                tracing::warn!(%url, kid, weakness, "dropping a weak RSA key from the issuer's key set");
                return None;
            }
            let mut key = key.clone();
            if key.get("use").and_then(Value::as_str) == Some("jwt-svid") {
                key["use"] = Value::String("sig".into());
            }
            match serde_json::from_value(key) {
                Ok(key) => Some(key),
                Err(error) => {
                    tracing::debug!(%url, %error, "skipping a key the broker cannot use");
                    None
                }
            }
        })
        .collect();
    Ok(CoreJsonWebKeySet::new(usable))
}

/// Why an RSA JWK is too weak to trust, if it is: a modulus under [`MIN_RSA_BITS`] (factorable
/// with enough effort, so anyone could sign as the issuer), or a public exponent that is even or
/// below 3 (`e = 1` makes the signature equal to the padded message). Other key types, and RSA
/// keys too malformed to read, are left to the JWK parser.
fn rsa_weakness(key: &Value) -> Option<String> {
    if key.get("kty").and_then(Value::as_str) != Some("RSA") {
        return None;
    }
    let number = |name: &str| {
        let text = key.get(name).and_then(Value::as_str)?;
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let first = bytes.iter().position(|&b| b != 0)?;
        Some(bytes[first..].to_vec())
    };
    let (Some(modulus), Some(exponent)) = (number("n"), number("e")) else {
        return None;
    };
    let bits = bit_length(&modulus);
    if bits < MIN_RSA_BITS {
        return Some(format!("{bits}-bit modulus, under {MIN_RSA_BITS} bits"));
    }
    let odd = exponent.last().is_some_and(|b| b & 1 == 1);
    if !odd || (exponent.len() == 1 && exponent[0] < 3) {
        return Some("public exponent is even or below 3".into());
    }
    None
}

/// The bit length of a big-endian unsigned integer without leading zero bytes.
fn bit_length(bytes: &[u8]) -> usize {
    match bytes.first() {
        None => 0,
        Some(first) => (bytes.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_key_types_are_skipped_and_spiffe_use_is_accepted() {
        let document = json!({"keys": [
            {"kty": "AKP", "alg": "ML-DSA-44", "kid": "pq", "pub": "AAAA"},
            {"kty": "EC", "crv": "P-256", "kid": "svid", "use": "jwt-svid",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]});
        let set = parse_key_set("test", &document).unwrap();
        assert_eq!(set.keys().len(), 1);
    }

    #[test]
    fn weak_rsa_keys_are_dropped() {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let rsa = |bits: usize, e: &[u8]| {
            let mut n = vec![0u8; 1 + bits / 8]; // a leading zero byte does not count
            n[1] = 0x80;
            json!({"kty": "RSA", "kid": format!("k{bits}"), "alg": "RS256", "n": b64(&n), "e": b64(e)})
        };
        assert_eq!(rsa_weakness(&rsa(2048, &[1, 0, 1])), None);
        assert_eq!(rsa_weakness(&rsa(4096, &[3])), None);
        assert!(
            rsa_weakness(&rsa(2040, &[1, 0, 1]))
                .unwrap()
                .contains("2040-bit")
        );
        assert!(rsa_weakness(&rsa(1024, &[1, 0, 1])).is_some());
        assert!(rsa_weakness(&rsa(2048, &[1])).is_some());
        assert!(rsa_weakness(&rsa(2048, &[1, 0, 0])).is_some());
        let set = parse_key_set(
            "test",
            &json!({"keys": [rsa(1024, &[1, 0, 1]), rsa(2048, &[1, 0, 1])]}),
        )
        .unwrap();
        assert_eq!(set.keys().len(), 1);
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0xff, 0]), 16);
    }

    #[test]
    fn a_missing_key_file_says_so() {
        let error = read_file(Path::new("/nonexistent/bundle.json")).unwrap_err();
        assert!(matches!(error, KeyFetchError::File { .. }), "{error}");
        assert!(
            error
                .to_string()
                .starts_with("cannot read /nonexistent/bundle.json")
        );
    }

    #[test]
    fn discovery_must_name_the_configured_issuer() {
        let document = json!({"issuer": "https://evil", "jwks_uri": "https://evil/jwks"});
        assert!(discovered_jwks_uri("u", "https://good", &document).is_err());
        let document = json!({"issuer": "https://good"});
        assert!(discovered_jwks_uri("u", "https://good", &document).is_err());
    }
}
