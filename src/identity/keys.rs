//! Fetching and parsing an issuer's signing keys (JWKS), directly or through OIDC discovery.
//!
//! Discovery documents are read by hand: Kubernetes and GitHub Actions omit
//! `authorization_endpoint`, which the openidconnect crate's metadata type requires. Key sets are
//! parsed key by key so that one key of an unknown type does not void the others, and SPIFFE
//! bundles' `use: "jwt-svid"` is read as a signing key. No redirects are followed.

use std::path::Path;
use std::time::Duration;

use openidconnect::core::{CoreJsonWebKey, CoreJsonWebKeySet};
use serde_json::Value;

use crate::config::JwksSource;

/// Larger answers from an issuer are refused.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

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

/// An HTTP client for issuers: no redirects, short timeouts.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(3))
        .build()
        .unwrap_or_default()
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

async fn get_json(client: &reqwest::Client, url: &str) -> Result<Value, KeyFetchError> {
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
    if response
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(http("the document is too large".into()));
    }
    let body = response.bytes().await.map_err(|e| http(e.to_string()))?;
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(http("the document is too large".into()));
    }
    serde_json::from_slice(&body).map_err(|e| KeyFetchError::Document {
        url: url.to_owned(),
        message: format!("not JSON: {e}"),
    })
}

fn read_file(path: &Path) -> Result<CoreJsonWebKeySet, KeyFetchError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| KeyFetchError::File {
        path: name.clone(),
        message: e.to_string(),
    })?;
    let value = serde_json::from_str(&text).map_err(|e| KeyFetchError::Document {
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
