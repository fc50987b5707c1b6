//! The OpenID Provider approvers log in with: discovery, the authorization request, the code
//! exchange and the ID token's verification, through the openidconnect crate.
//!
//! Discovery is lazy: the broker starts whether or not the provider answers (agents need no
//! provider), tries it once in the background at start, and again when someone logs in. A
//! failed attempt is retried only after a backoff (1 s doubling to 30 s), so logins during an
//! outage are answered at once without a call each. The document must name exactly the
//! configured issuer; it is re-read after an hour, and the key set early (at most every 10 s)
//! when an ID token names a key it does not hold. Every answer is read up to 512 KiB, no
//! redirect is followed, each call times out after 5 s, and at most [`MAX_EXCHANGES`] code
//! exchanges run at once.
//!
//! ID tokens are verified for signature (the provider's keys, asymmetric algorithms only: never
//! `none` nor HMAC with the client secret), `iss` (exact), `aud` (the client id, and nothing
//! else), the nonce of this login, and expiry. The claims are then read from the verified
//! token's payload as JSON, so that any claim can name the approver.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AsyncHttpClient, AuthUrl, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IssuerUrl,
    JwsSigningAlgorithm, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, SignatureVerificationError, TokenResponse, TokenUrl,
};
use serde_json::{Map, Value};

use super::{LoginError, LoginSettings, LoginState};
use crate::identity::{KeySource, MAX_DOCUMENT_BYTES, fetch_keys, get_json, read_bounded};

/// Code exchanges running at once; a login past this is asked to retry.
pub const MAX_EXCHANGES: usize = 16;
/// The discovery document and keys are re-read after this.
const REDISCOVER_AFTER: Duration = Duration::from_secs(3600);
/// Keys are re-read for an unknown `kid` at most this often.
const MIN_REFETCH: Duration = Duration::from_secs(10);
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

type LoginClient =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// What discovery found.
struct Discovered {
    authorization_endpoint: AuthUrl,
    token_endpoint: TokenUrl,
    jwks: CoreJsonWebKeySet,
    algorithms: Vec<CoreJwsSigningAlgorithm>,
    fetched: Instant,
}

#[derive(Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    failures: u32,
    retry_at: Option<Instant>,
}

/// The provider, as configured and as discovered.
pub struct LoginProvider {
    settings: LoginSettings,
    issuer: IssuerUrl,
    redirect: RedirectUrl,
    scopes: Vec<String>,
    http: ProviderHttp,
    discovered: RwLock<Option<Arc<Discovered>>>,
    fetches: tokio::sync::Mutex<FetchState>,
    exchanges: Arc<tokio::sync::Semaphore>,
}

/// An HTTP failure talking to the provider (never carries a body: it may hold tokens).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SendError(String);

/// The client the crate's requests go through: no redirects, bounded answers.
struct ProviderHttp(reqwest::Client);

impl<'c> AsyncHttpClient<'c> for ProviderHttp {
    type Error = SendError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, SendError>> + Send + Sync + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(send(&self.0, request))
    }
}

impl LoginProvider {
    pub fn new(settings: LoginSettings, scopes: Vec<String>) -> Result<LoginProvider, String> {
        let issuer = IssuerUrl::new(settings.issuer.clone())
            .map_err(|e| format!("approvals.login.issuer: {e}"))?;
        let redirect = RedirectUrl::new(settings.redirect_url.clone())
            .map_err(|e| format!("approvals.login.redirect_url: {e}"))?;
        let http = crate::identity::http_client()
            .map_err(|e| format!("approvals.login: no HTTP client: {e}"))?;
        Ok(LoginProvider {
            settings,
            issuer,
            redirect,
            scopes,
            http: ProviderHttp(http),
            discovered: RwLock::new(None),
            fetches: tokio::sync::Mutex::new(FetchState::default()),
            exchanges: Arc::new(tokio::sync::Semaphore::new(MAX_EXCHANGES)),
        })
    }

    pub fn settings(&self) -> &LoginSettings {
        &self.settings
    }

    /// Reads the discovery document and keys once, logging the outcome (at start).
    pub async fn warm_up(&self) {
        if self.refresh(Duration::ZERO).await.is_ok() {
            tracing::info!(issuer = %self.settings.issuer, "approval page login provider discovered");
        }
    }

    /// The URL to send the browser to for `state`.
    pub async fn authorization_url(&self, state: &LoginState) -> Result<String, LoginError> {
        let discovered = self.current().await?;
        let client = self.client(&discovered);
        let (csrf, nonce) = (state.state.clone(), state.nonce.clone());
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            state.verifier.clone(),
        ));
        let (url, _, _) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(csrf),
                move || Nonce::new(nonce),
            )
            .add_scopes(self.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge)
            .url();
        Ok(url.into())
    }

    /// Exchanges `code` (with the PKCE verifier of `state`) for tokens, verifies the ID token
    /// (with the nonce of `state`), and answers its claims.
    pub async fn redeem(
        &self,
        code: &str,
        state: &LoginState,
    ) -> Result<Map<String, Value>, LoginError> {
        let Ok(_permit) = Arc::clone(&self.exchanges).try_acquire_owned() else {
            // Counted with the other refusals; a flood of these must not flood the log.
            tracing::debug!("too many logins at once; one was asked to retry");
            return Err(LoginError::ProviderUnavailable);
        };
        let discovered = self.current().await?;
        let client = self.client(&discovered);
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(state.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|error| match error {
                RequestTokenError::ServerResponse(answer) => {
                    tracing::debug!(error = %answer.error(), "the provider refused a code");
                    LoginError::CodeRefused
                }
                RequestTokenError::Request(error) => {
                    tracing::warn!(%error, "the provider's token endpoint cannot be reached");
                    LoginError::ProviderUnavailable
                }
                // Parse errors carry the body, which may hold tokens: only their kind is logged.
                RequestTokenError::Parse(..) | RequestTokenError::Other(_) => {
                    tracing::warn!("the provider's token endpoint answered something unreadable");
                    LoginError::CodeRefused
                }
            })?;
        let id_token = tokens.id_token().ok_or(LoginError::IdTokenInvalid)?;
        let nonce = Nonce::new(state.nonce.clone());
        let verified = match id_token.claims(&self.verifier(&discovered), &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // The provider may have rotated its keys since they were read.
                let fresh = self.refresh(MIN_REFETCH).await?;
                id_token.claims(&self.verifier(&fresh), &nonce).map(|_| ())
            }
            other => other.map(|_| ()),
        };
        if let Err(error) = verified {
            tracing::debug!(?error, "an ID token was refused");
            return Err(LoginError::IdTokenInvalid);
        }
        payload(&id_token.to_string()).ok_or(LoginError::IdTokenInvalid)
    }

    fn client(&self, discovered: &Discovered) -> LoginClient {
        let client = CoreClient::new(
            ClientId::new(self.settings.client_id.clone()),
            self.issuer.clone(),
            discovered.jwks.clone(),
        )
        .set_auth_uri(discovered.authorization_endpoint.clone())
        .set_token_uri(discovered.token_endpoint.clone())
        .set_redirect_uri(self.redirect.clone());
        match &self.settings.client_secret {
            Some(secret) => client.set_client_secret(ClientSecret::new(secret.clone())),
            None => client,
        }
    }

    /// A public-client verifier whatever the client is: a confidential client's verifier would
    /// also accept HMAC signatures made with the client secret.
    fn verifier(&self, discovered: &Discovered) -> CoreIdTokenVerifier<'static> {
        CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.settings.client_id.clone()),
            self.issuer.clone(),
            discovered.jwks.clone(),
        )
        .set_allowed_algs(discovered.algorithms.clone())
    }

    /// The discovered provider, read again when it is older than an hour (the old one serves
    /// while the provider cannot be reached).
    async fn current(&self) -> Result<Arc<Discovered>, LoginError> {
        match self.cached() {
            Some(found) if found.fetched.elapsed() < REDISCOVER_AFTER => Ok(found),
            _ => self.refresh(REDISCOVER_AFTER).await,
        }
    }

    fn cached(&self) -> Option<Arc<Discovered>> {
        self.discovered.read().ok().and_then(|found| found.clone())
    }

    /// Reads discovery and keys unless the last read was less than `min_age` ago (then the
    /// cached ones answer), or failed and its backoff is not over.
    async fn refresh(&self, min_age: Duration) -> Result<Arc<Discovered>, LoginError> {
        let mut fetches = self.fetches.lock().await;
        let now = Instant::now();
        let may = if fetches.failures > 0 {
            fetches.retry_at.is_none_or(|at| now >= at)
        } else {
            fetches
                .last_attempt
                .is_none_or(|at| now.saturating_duration_since(at) >= min_age)
        };
        if !may {
            return self.cached().ok_or(LoginError::ProviderUnavailable);
        }
        fetches.last_attempt = Some(now);
        match self.discover().await {
            Ok(found) => {
                fetches.failures = 0;
                fetches.retry_at = None;
                let found = Arc::new(found);
                if let Ok(mut slot) = self.discovered.write() {
                    *slot = Some(Arc::clone(&found));
                }
                Ok(found)
            }
            Err(error) => {
                fetches.failures = fetches.failures.saturating_add(1);
                let doublings = fetches.failures.saturating_sub(1).min(8);
                let delay = RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX);
                fetches.retry_at = Some(now + delay);
                if fetches.failures.is_power_of_two() {
                    tracing::warn!(issuer = %self.settings.issuer, %error,
                        failed_attempts = fetches.failures, retry_in = ?delay,
                        "the approval page's OpenID Provider cannot be read");
                }
                self.cached().ok_or(LoginError::ProviderUnavailable)
            }
        }
    }

    async fn discover(&self) -> Result<Discovered, String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let document = get_json(&self.http.0, &url)
            .await
            .map_err(|e| e.to_string())?;
        let text = |member: &str| {
            document
                .get(member)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{url}: the discovery document has no {member}"))
        };
        if text("issuer")? != self.settings.issuer {
            return Err(format!(
                "{url}: the discovery document names another issuer than {:?}",
                self.settings.issuer
            ));
        }
        let endpoint = |member: &str| -> Result<String, String> {
            let value = text(member)?;
            if crate::config::https_or_loopback(value) {
                Ok(value.to_owned())
            } else {
                Err(format!(
                    "{url}: {member} must be https:// (plain http only to loopback)"
                ))
            }
        };
        let authorization_endpoint =
            AuthUrl::new(endpoint("authorization_endpoint")?).map_err(|e| e.to_string())?;
        let token_endpoint =
            TokenUrl::new(endpoint("token_endpoint")?).map_err(|e| e.to_string())?;
        let jwks_uri = endpoint("jwks_uri")?;
        if let Some(methods) = document
            .get("code_challenge_methods_supported")
            .and_then(Value::as_array)
            && !methods.iter().any(|m| m.as_str() == Some("S256"))
        {
            return Err(format!(
                "{url}: the provider does not support PKCE with S256"
            ));
        }
        let algorithms = signing_algorithms(&document);
        if algorithms.is_empty() {
            return Err(format!(
                "{url}: the provider signs ID tokens with no asymmetric algorithm the broker accepts"
            ));
        }
        let jwks = fetch_keys(&KeySource::Url(jwks_uri), &self.http.0)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Discovered {
            authorization_endpoint,
            token_endpoint,
            jwks,
            algorithms,
            fetched: Instant::now(),
        })
    }
}

/// Sends one request to the provider, following no redirect and reading at most 512 KiB.
async fn send(client: &reqwest::Client, request: HttpRequest) -> Result<HttpResponse, SendError> {
    let request = reqwest::Request::try_from(request).map_err(|e| SendError(e.to_string()))?;
    let response = client
        .execute(request)
        .await
        .map_err(|e| SendError(e.to_string()))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_bounded(response, MAX_DOCUMENT_BYTES)
        .await
        .map_err(|e| SendError(e.to_string()))?;
    let mut answer = openidconnect::http::Response::builder().status(status);
    for (name, value) in &headers {
        answer = answer.header(name, value);
    }
    answer.body(body).map_err(|e| SendError(e.to_string()))
}

/// The algorithms the provider says it signs ID tokens with, less `none` and every HMAC
/// algorithm (RS256 when it says nothing, as OpenID Connect Discovery makes it the default).
fn signing_algorithms(document: &Value) -> Vec<CoreJwsSigningAlgorithm> {
    let Some(listed) = document
        .get("id_token_signing_alg_values_supported")
        .and_then(Value::as_array)
    else {
        return vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256];
    };
    listed
        .iter()
        .filter_map(|name| serde_json::from_value::<CoreJwsSigningAlgorithm>(name.clone()).ok())
        .filter(|alg| !alg.uses_shared_secret() && *alg != CoreJwsSigningAlgorithm::None)
        .collect()
}

/// The claims of a compact JWS whose signature was verified.
fn payload(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (_, payload) = (parts.next()?, parts.next()?);
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(claims) => Some(claims),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn only_asymmetric_algorithms_are_accepted() {
        let algs = signing_algorithms(
            &json!({"id_token_signing_alg_values_supported": ["none", "HS256", "RS256", "ES256", "AKP-1"]}),
        );
        assert_eq!(
            algs,
            vec![
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                CoreJwsSigningAlgorithm::EcdsaP256Sha256
            ]
        );
        assert_eq!(
            signing_algorithms(&json!({})),
            vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]
        );
        assert!(
            signing_algorithms(&json!({"id_token_signing_alg_values_supported": ["HS512"]}))
                .is_empty()
        );
    }

    #[test]
    fn the_payload_is_read_from_the_middle_part() {
        let body = URL_SAFE_NO_PAD.encode(br#"{"sub":"a","groups":["x"]}"#);
        let claims = payload(&format!("h.{body}.s")).unwrap();
        assert_eq!(claims["groups"], json!(["x"]));
        assert!(payload("nothing").is_none());
        assert!(payload(&format!("h.{}.s", URL_SAFE_NO_PAD.encode(b"[1]"))).is_none());
    }
}
