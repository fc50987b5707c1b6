//! Workload identity: turning a JWT from a trusted issuer (Kubernetes, GitHub Actions, SPIFFE,
//! any OIDC issuer) into an [`Identity`], or a precise refusal.
//!
//! Every rule fails closed: the issuer must be configured and match `iss` exactly; the algorithm
//! must be on that issuer's allow-list (never `none`, never HMAC, so a public key can never serve
//! as an HMAC secret); `aud` must carry the configured audience; `exp`, `nbf` and `iat` hold
//! within the configured clock skew. Signature checks go through the openidconnect crate; `nbf`,
//! which it ignores, is checked here. Nothing here knows about HTTP.

pub mod agent;
pub mod dev;
mod issuer;
pub mod jwt;
mod keys;
mod text;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

pub use agent::AgentTemplate;
pub use dev::DevIssuer;
pub use issuer::{IssuerSettings, TrustedIssuer};
pub use keys::{
    BodyError, KeyFetchError, KeySource, MAX_DOCUMENT_BYTES, MIN_RSA_BITS, fetch as fetch_keys,
    get_json, http_client, read_bounded,
};
pub use text::{display_name_problem, free_text_problem};

use crate::config::Config;
use crate::error::{DomainError, ErrorCode, codes};

/// A verified workload identity.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The configured name of the issuer (what policies match on).
    pub issuer: String,
    pub subject: String,
    /// The agent's identity, rendered from claims by the issuer's template.
    pub agent: String,
    pub claims: Map<String, Value>,
}

/// Why a workload token was refused. Each has a stable code for clients and audit records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the identity token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the identity token's issuer is not trusted")]
    UnknownIssuer,
    #[error("the identity token's signature algorithm is not accepted for its issuer")]
    AlgorithmRefused,
    #[error("the identity token is signed by a key its issuer does not publish")]
    UnknownKey,
    #[error("the identity token's signature is invalid")]
    BadSignature,
    #[error("the identity token has expired")]
    Expired,
    #[error("the identity token is not valid yet")]
    NotYetValid,
    #[error("the identity token was issued in the future")]
    IssuedInFuture,
    #[error("the identity token is not meant for this broker (aud)")]
    WrongAudience,
    #[error("the identity token lacks the claim {0}")]
    ClaimMissing(String),
    #[error("the identity token's claims {0} cannot form an agent identity")]
    ClaimInvalid(String),
    #[error("the identity token's issuer could not be reached for its keys")]
    IssuerUnavailable,
}

impl IdentityError {
    /// Whether the token's signature had verified when it was refused: only then does the
    /// refusal say anything about who sent it (anyone can make every other refusal).
    pub fn after_signature(&self) -> bool {
        matches!(
            self,
            IdentityError::ClaimMissing(_) | IdentityError::ClaimInvalid(_)
        )
    }
}

impl DomainError for IdentityError {
    fn code(&self) -> ErrorCode {
        match self {
            IdentityError::Malformed(_) => codes::IDENTITY_MALFORMED,
            IdentityError::UnknownIssuer => codes::IDENTITY_ISSUER_UNKNOWN,
            IdentityError::AlgorithmRefused => codes::IDENTITY_ALGORITHM_REFUSED,
            IdentityError::UnknownKey => codes::IDENTITY_KEY_UNKNOWN,
            IdentityError::BadSignature => codes::IDENTITY_SIGNATURE_INVALID,
            IdentityError::Expired => codes::IDENTITY_EXPIRED,
            IdentityError::NotYetValid => codes::IDENTITY_NOT_YET_VALID,
            IdentityError::IssuedInFuture => codes::IDENTITY_ISSUED_IN_FUTURE,
            IdentityError::WrongAudience => codes::IDENTITY_AUDIENCE_INVALID,
            IdentityError::ClaimMissing(_) => codes::IDENTITY_CLAIM_MISSING,
            IdentityError::ClaimInvalid(_) => codes::IDENTITY_CLAIM_INVALID,
            IdentityError::IssuerUnavailable => codes::IDENTITY_ISSUER_UNAVAILABLE,
        }
    }

    fn public_detail(&self) -> String {
        self.to_string()
    }
}

/// All trusted issuers, selected by exact `iss`.
pub struct IdentityVerifier {
    issuers: Vec<Arc<TrustedIssuer>>,
}

impl IdentityVerifier {
    pub fn new(issuers: Vec<TrustedIssuer>) -> IdentityVerifier {
        IdentityVerifier {
            issuers: issuers.into_iter().map(Arc::new).collect(),
        }
    }

    /// Builds the verifier for a configuration; in dev mode the development issuer is added.
    pub fn from_config(
        config: &Config,
        dev: Option<&DevIssuer>,
    ) -> Result<IdentityVerifier, String> {
        let mut issuers = config
            .issuers
            .iter()
            .map(|issuer| {
                TrustedIssuer::new(IssuerSettings {
                    name: issuer.name.clone(),
                    issuer: issuer.issuer.clone(),
                    audience: issuer.audience.clone(),
                    algorithms: issuer.algorithms.clone(),
                    agent: issuer.agent.clone(),
                    skew: config.clock_skew,
                    min_refetch_interval: issuer.jwks_min_refetch_interval,
                    refresh_every: issuer.jwks_refresh,
                    source: KeySource::from_config(&issuer.issuer, issuer.jwks.as_ref()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(dev) = dev {
            issuers.push(TrustedIssuer::new(dev.settings(config.clock_skew))?);
        }
        Ok(IdentityVerifier::new(issuers))
    }

    pub fn issuer_names(&self) -> impl Iterator<Item = &str> {
        self.issuers.iter().map(|issuer| issuer.name.as_str())
    }

    /// Every configured issuer's name and URL.
    pub fn issuer_urls(&self) -> Vec<(String, String)> {
        self.issuers
            .iter()
            .map(|issuer| (issuer.name.clone(), issuer.issuer.as_str().to_owned()))
            .collect()
    }

    /// The name of the configured issuer a token claims to come from (unverified: for counting
    /// refusals only).
    pub fn claimed_issuer(&self, token: &str) -> Option<&str> {
        let unverified = jwt::decode(token).ok()?;
        self.issuers
            .iter()
            .find(|issuer| issuer.issuer.as_str() == unverified.issuer)
            .map(|issuer| issuer.name.as_str())
    }

    pub async fn verify(&self, token: &str, now: SystemTime) -> Result<Identity, IdentityError> {
        let unverified = jwt::decode(token)?;
        let issuer = self
            .issuers
            .iter()
            .find(|issuer| issuer.issuer.as_str() == unverified.issuer)
            .ok_or(IdentityError::UnknownIssuer)?;
        if !issuer.accepts_algorithm(&unverified.alg) {
            return Err(IdentityError::AlgorithmRefused);
        }
        if !unverified.claims.contains_key("aud") {
            return Err(IdentityError::WrongAudience);
        }
        check_times(&unverified.claims, now, issuer.skew)?;
        issuer.verify(token, now).await?;
        let claims = unverified.claims;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let agent = issuer.agent.render(&claims)?;
        // The subject is recorded and shown beside the agent: the same rules apply.
        if let Some(why) = display_name_problem(&subject) {
            return Err(IdentityError::ClaimInvalid(format!("sub ({why})")));
        }
        Ok(Identity {
            issuer: issuer.name.clone(),
            subject,
            agent,
            claims,
        })
    }

    /// Fetches every issuer's keys once (at start), then refreshes each on its schedule; a failed
    /// fetch is retried with a short backoff until it succeeds.
    pub fn spawn_refresh(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.issuers
            .iter()
            .map(|issuer| {
                let issuer = Arc::clone(issuer);
                tokio::spawn(async move {
                    // Half the period: a fetch made for a request moments ago counts.
                    let min_age = issuer.refresh_every / 2;
                    loop {
                        let _ = issuer.refresh(min_age).await;
                        // After a failure, soon (with backoff); otherwise after the period.
                        tokio::time::sleep(issuer.next_scheduled_refresh().await).await;
                    }
                })
            })
            .collect()
    }
}

/// The openidconnect crate ignores `nbf` and has no skew for `iat`: both are checked here.
fn check_times(
    claims: &Map<String, Value>,
    now: SystemTime,
    skew: Duration,
) -> Result<(), IdentityError> {
    let latest = now
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
        + skew.as_secs_f64();
    let read = |name: &str, malformed| match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_f64()
            .map(Some)
            .ok_or(IdentityError::Malformed(malformed)),
    };
    if read("nbf", "nbf is not a number")?.is_some_and(|nbf| nbf > latest) {
        return Err(IdentityError::NotYetValid);
    }
    if read("iat", "iat is not a number")?.is_some_and(|iat| iat > latest) {
        return Err(IdentityError::IssuedInFuture);
    }
    Ok(())
}
