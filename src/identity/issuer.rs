//! One trusted issuer: its verification rules and its cached signing keys.
//!
//! Keys are cached and refreshed on a schedule and when a token names an unknown `kid` (a new key
//! after the issuer rotated). Unknown-`kid` refreshes are rate-limited so that a stream of forged
//! tokens cannot make the broker hammer the issuer.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use openidconnect::core::{
    CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    ClaimsVerificationError, ClientId, IssuerUrl, JwsSigningAlgorithm, Nonce,
    SignatureVerificationError,
};

use super::IdentityError;
use super::agent::AgentTemplate;
use super::keys::{self, KeySource};

pub struct TrustedIssuer {
    pub name: String,
    pub issuer: IssuerUrl,
    pub audience: String,
    pub algorithms: Vec<CoreJwsSigningAlgorithm>,
    /// The same, as JOSE names (`RS256`), to check a token's header before any parsing.
    algorithm_names: Vec<String>,
    pub agent: AgentTemplate,
    pub skew: Duration,
    pub min_refetch_interval: Duration,
    pub refresh_every: Duration,
    source: KeySource,
    client: reqwest::Client,
    keys: RwLock<Option<Arc<CoreJsonWebKeySet>>>,
    /// Serialises fetches and remembers when the last one started.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

/// Settings for a [`TrustedIssuer`].
pub struct IssuerSettings {
    pub name: String,
    pub issuer: String,
    pub audience: String,
    pub algorithms: Vec<String>,
    pub agent: String,
    pub skew: Duration,
    pub min_refetch_interval: Duration,
    pub refresh_every: Duration,
    pub source: KeySource,
}

impl TrustedIssuer {
    pub fn new(settings: IssuerSettings) -> Result<TrustedIssuer, String> {
        let issuer = IssuerUrl::new(settings.issuer.clone())
            .map_err(|e| format!("issuer {:?}: invalid URL: {e}", settings.name))?;
        let algorithms = parse_algorithms(&settings.name, &settings.algorithms)?;
        let agent = AgentTemplate::parse(&settings.agent)?;
        if settings.audience.is_empty() {
            return Err(format!("issuer {:?}: audience is empty", settings.name));
        }
        Ok(TrustedIssuer {
            name: settings.name,
            issuer,
            audience: settings.audience,
            algorithms,
            algorithm_names: settings.algorithms,
            agent,
            skew: settings.skew,
            min_refetch_interval: settings.min_refetch_interval,
            refresh_every: settings.refresh_every,
            source: settings.source,
            client: keys::http_client(),
            keys: RwLock::new(None),
            last_fetch: tokio::sync::Mutex::new(None),
        })
    }

    pub fn accepts_algorithm(&self, alg: &str) -> bool {
        self.algorithm_names.iter().any(|allowed| allowed == alg)
    }

    /// Verifies signature, issuer, audience and times; returns nothing on success (the caller
    /// already holds the claims it decoded).
    pub async fn verify(&self, token: &str, now: SystemTime) -> Result<(), IdentityError> {
        let keys = match self.cached_keys() {
            Some(keys) => keys,
            None => self.refresh(self.min_refetch_interval).await?,
        };
        match self.verify_with(&keys, token, now) {
            Err(IdentityError::UnknownKey) => {
                let fresh = self.refresh(self.min_refetch_interval).await?;
                if Arc::ptr_eq(&fresh, &keys) {
                    return Err(IdentityError::UnknownKey);
                }
                self.verify_with(&fresh, token, now)
            }
            other => other,
        }
    }

    fn verify_with(
        &self,
        keys: &CoreJsonWebKeySet,
        token: &str,
        now: SystemTime,
    ) -> Result<(), IdentityError> {
        let id_token: CoreIdToken = token.parse().map_err(|_| {
            IdentityError::Malformed(
                "the token's claims are not those of an OIDC token (iss, sub, aud, exp, iat)",
            )
        })?;
        let leeway = chrono::Duration::from_std(self.skew).unwrap_or_default();
        let now = chrono::DateTime::<chrono::Utc>::from(now);
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.audience.clone()),
            self.issuer.clone(),
            keys.clone(),
        )
        .set_allowed_algs(self.algorithms.clone())
        .set_time_fn(move || now - leeway);
        id_token
            .claims(&verifier, |_: Option<&Nonce>| Ok::<(), String>(()))
            .map(|_| ())
            .map_err(|error| {
                tracing::debug!(issuer = %self.name, ?error, "workload token refused");
                map_error(error)
            })
    }

    fn cached_keys(&self) -> Option<Arc<CoreJsonWebKeySet>> {
        self.keys.read().ok().and_then(|keys| keys.clone())
    }

    /// Fetches the keys unless the last fetch started less than `min_age` ago, in which case the
    /// cached keys are answered: neither unknown `kid`s nor an unreachable issuer can turn
    /// requests into a flood of fetches.
    pub async fn refresh(
        &self,
        min_age: Duration,
    ) -> Result<Arc<CoreJsonWebKeySet>, IdentityError> {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < min_age) {
            return self.cached_keys().ok_or(IdentityError::IssuerUnavailable);
        }
        *last = Some(Instant::now());
        match keys::fetch(&self.source, &self.client).await {
            Ok(fetched) => {
                let fetched = Arc::new(fetched);
                if let Ok(mut slot) = self.keys.write() {
                    *slot = Some(Arc::clone(&fetched));
                }
                Ok(fetched)
            }
            Err(error) => {
                tracing::warn!(issuer = %self.name, %error, "could not fetch the issuer's keys");
                self.cached_keys().ok_or(IdentityError::IssuerUnavailable)
            }
        }
    }
}

fn map_error(error: ClaimsVerificationError) -> IdentityError {
    match error {
        ClaimsVerificationError::Expired(_) => IdentityError::Expired,
        ClaimsVerificationError::InvalidAudience(_) => IdentityError::WrongAudience,
        ClaimsVerificationError::InvalidIssuer(_) => IdentityError::UnknownIssuer,
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        ) => IdentityError::UnknownKey,
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::DisallowedAlg(_),
        ) => IdentityError::AlgorithmRefused,
        _ => IdentityError::BadSignature,
    }
}

/// Parses the configured algorithm names, refusing `none` and every shared-secret algorithm.
fn parse_algorithms(
    issuer: &str,
    names: &[String],
) -> Result<Vec<CoreJwsSigningAlgorithm>, String> {
    if names.is_empty() {
        return Err(format!("issuer {issuer:?}: no algorithms allowed"));
    }
    names
        .iter()
        .map(|name| {
            let alg: CoreJwsSigningAlgorithm =
                serde_json::from_value(serde_json::Value::String(name.clone()))
                    .map_err(|_| format!("issuer {issuer:?}: unknown algorithm {name:?}"))?;
            if alg.uses_shared_secret() || alg == CoreJwsSigningAlgorithm::None {
                return Err(format!(
                    "issuer {issuer:?}: algorithm {name:?} is never accepted for workload tokens"
                ));
            }
            Ok(alg)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_and_hmac_cannot_be_configured() {
        assert!(parse_algorithms("i", &["none".into()]).is_err());
        assert!(parse_algorithms("i", &["HS256".into()]).is_err());
        assert!(parse_algorithms("i", &["RS257".into()]).is_err());
        assert!(parse_algorithms("i", &[]).is_err());
        assert_eq!(
            parse_algorithms("i", &["RS256".into(), "EdDSA".into()]),
            Ok(vec![
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                CoreJwsSigningAlgorithm::EdDsa
            ])
        );
    }
}
