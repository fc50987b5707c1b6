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
    /// Serialises fetches and remembers how the last ones went.
    fetches: tokio::sync::Mutex<FetchState>,
}

/// The first retry after a failed key fetch comes this soon (jittered), each further one twice as
/// late, up to [`RETRY_MAX`] (or the issuer's unknown-`kid` interval, if shorter).
pub const RETRY_FIRST: Duration = Duration::from_millis(250);
pub const RETRY_MAX: Duration = Duration::from_secs(4);

#[derive(Debug, Default)]
struct FetchState {
    /// When the last fetch started.
    last_attempt: Option<Instant>,
    /// Failed fetches since the last success.
    failures: u32,
    /// After a failure, no fetch before this.
    retry_at: Option<Instant>,
}

impl FetchState {
    /// Whether a fetch may start now: after a success, once `min_age` has passed since it; after
    /// a failure, once the backoff has.
    fn may_fetch(&self, now: Instant, min_age: Duration) -> bool {
        if self.failures > 0 {
            return self.retry_at.is_none_or(|at| now >= at);
        }
        self.last_attempt
            .is_none_or(|at| now.saturating_duration_since(at) >= min_age)
    }
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
        let settings_name = settings.name.clone();
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
            client: keys::http_client()
                .map_err(|e| format!("issuer {:?}: no HTTP client: {e}", settings_name))?,
            keys: RwLock::new(None),
            fetches: tokio::sync::Mutex::new(FetchState::default()),
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
    /// requests into a flood of fetches. After a failed fetch the next one waits only for a short
    /// backoff ([`RETRY_FIRST`] doubling to [`RETRY_MAX`], jittered), so an issuer that was down
    /// is trusted again within seconds of coming back.
    pub async fn refresh(
        &self,
        min_age: Duration,
    ) -> Result<Arc<CoreJsonWebKeySet>, IdentityError> {
        let mut state = self.fetches.lock().await;
        if !state.may_fetch(Instant::now(), min_age) {
            return self.cached_keys().ok_or(IdentityError::IssuerUnavailable);
        }
        state.last_attempt = Some(Instant::now());
        match keys::fetch(&self.source, &self.client).await {
            Ok(fetched) => {
                if state.failures > 0 {
                    tracing::info!(issuer = %self.name, failed_attempts = state.failures, "fetched the issuer's keys again");
                }
                state.failures = 0;
                state.retry_at = None;
                let fetched = Arc::new(fetched);
                if let Ok(mut slot) = self.keys.write() {
                    *slot = Some(Arc::clone(&fetched));
                }
                Ok(fetched)
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                let delay = self.retry_delay(state.failures);
                state.retry_at = Some(Instant::now() + delay);
                // The first failure, then ever more rarely while the issuer stays away.
                if state.failures.is_power_of_two() {
                    tracing::warn!(
                        issuer = %self.name, %error, failed_attempts = state.failures,
                        retry_in = ?delay, "could not fetch the issuer's keys"
                    );
                } else {
                    tracing::debug!(issuer = %self.name, %error, failed_attempts = state.failures, "could not fetch the issuer's keys");
                }
                self.cached_keys().ok_or(IdentityError::IssuerUnavailable)
            }
        }
    }

    /// How long the scheduled refresh waits before its next attempt: the backoff while fetches
    /// fail, `refresh_every` otherwise.
    pub async fn next_scheduled_refresh(&self) -> Duration {
        let state = self.fetches.lock().await;
        match state.retry_at {
            Some(at) if state.failures > 0 => at.saturating_duration_since(Instant::now()),
            _ => self.refresh_every,
        }
    }

    /// The wait after `failures` failed fetches: `RETRY_FIRST * 2^(failures - 1)`, at most
    /// `RETRY_MAX` and never more than the unknown-`kid` interval, then drawn between half of
    /// that and all of it so that replicas do not retry in step.
    fn retry_delay(&self, failures: u32) -> Duration {
        let cap = RETRY_MAX.min(self.min_refetch_interval).max(RETRY_FIRST);
        let doublings = failures.saturating_sub(1).min(16);
        let full = RETRY_FIRST.saturating_mul(1 << doublings).min(cap);
        let mut random = [0u8; 4];
        let fraction = match getrandom::getrandom(&mut random) {
            Ok(()) => f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX),
            Err(_) => 1.0,
        };
        full.mul_f64(0.5 + fraction / 2.0)
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

    fn unreachable_issuer(min_refetch_interval: Duration) -> TrustedIssuer {
        TrustedIssuer::new(IssuerSettings {
            name: "i".into(),
            issuer: "https://i".into(),
            audience: "writ".into(),
            algorithms: vec!["RS256".into()],
            agent: "{sub}".into(),
            skew: Duration::ZERO,
            min_refetch_interval,
            refresh_every: Duration::from_secs(600),
            source: KeySource::Url("http://127.0.0.1:9/jwks".into()),
        })
        .unwrap()
    }

    #[test]
    fn failed_fetches_are_retried_with_a_jittered_doubling_backoff() {
        let issuer = unreachable_issuer(Duration::from_secs(10));
        for (failures, full) in [
            (1, 250),
            (2, 500),
            (3, 1000),
            (4, 2000),
            (5, 4000),
            (40, 4000),
        ] {
            let full = Duration::from_millis(full);
            for _ in 0..20 {
                let delay = issuer.retry_delay(failures);
                assert!(full / 2 <= delay && delay <= full, "{failures}: {delay:?}");
            }
        }
        // Never longer than the wait after a success.
        let quick = unreachable_issuer(Duration::from_secs(1));
        assert!(quick.retry_delay(10) <= Duration::from_secs(1));
    }

    #[test]
    fn after_a_failure_the_backoff_gates_fetches_not_the_interval() {
        let now = Instant::now();
        let min_age = Duration::from_secs(10);
        assert!(FetchState::default().may_fetch(now, min_age));
        let succeeded = FetchState {
            last_attempt: Some(now),
            failures: 0,
            retry_at: None,
        };
        assert!(!succeeded.may_fetch(now + Duration::from_secs(9), min_age));
        assert!(succeeded.may_fetch(now + min_age, min_age));
        let failed = FetchState {
            last_attempt: Some(now),
            failures: 1,
            retry_at: Some(now + Duration::from_millis(250)),
        };
        assert!(!failed.may_fetch(now + Duration::from_millis(200), min_age));
        assert!(failed.may_fetch(now + Duration::from_millis(250), min_age));
    }

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
