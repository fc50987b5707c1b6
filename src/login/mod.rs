//! How approvers log in to the approval page: OpenID Connect's authorization code flow with
//! PKCE against one configured OpenID Provider, and the sessions a verified login opens. This
//! module holds the rules as values and functions; the broker runs them (`broker/login.rs`)
//! and the HTTP layer carries them in cookies (`http/page/`).
//!
//! - [`state`]: what the browser carries between `/approvals/login` and the callback (state,
//!   nonce, PKCE verifier), HMAC-signed so that it needs no server-side storage.
//! - [`provider`]: the provider itself: discovery, the authorization URL, the code exchange and
//!   the ID token's verification (signature, `iss`, `aud`, nonce, expiry).
//! - [`session`]: a login's session: a random secret in the cookie, only its SHA-256 stored,
//!   and a CSRF token for its forms.
//! - Here: the settings, and how a verified ID token's claims become an approver
//!   ([`map_claims`]).

pub mod provider;
pub mod session;
pub mod state;

use std::time::Duration;

use serde_json::{Map, Value};

use crate::admin::Principal;
use crate::id::RandomSourceFailed;
use crate::policy::valid_group;

pub use provider::LoginProvider;
pub use session::{ApproverSession, SessionSecret};
pub use state::{LoginState, StateKey};

/// Most groups a login may carry; a login with more is refused (a provider that sends hundreds
/// is misconfigured, and each session stores them).
pub const MAX_GROUPS: usize = 64;

/// The login's settings, as configured (`[approvals.login]`).
#[derive(Clone)]
pub struct LoginSettings {
    pub issuer: String,
    pub client_id: String,
    /// A confidential client's secret; never logged (see the `Debug` below).
    pub client_secret: Option<String>,
    pub redirect_url: String,
    pub principal_claim: String,
    pub groups_claim: String,
    pub approver_groups: Vec<String>,
    pub session_ttl: Duration,
}

impl std::fmt::Debug for LoginSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<set>"),
            )
            .field("redirect_url", &self.redirect_url)
            .field("principal_claim", &self.principal_claim)
            .field("groups_claim", &self.groups_claim)
            .field("approver_groups", &self.approver_groups)
            .field("session_ttl", &self.session_ttl)
            .finish()
    }
}

impl LoginSettings {
    /// The broker's own origin (`https://writ.example`), from the redirect URL: form posts
    /// coming from anywhere else are refused.
    pub fn origin(&self) -> Option<String> {
        let url = reqwest::Url::parse(&self.redirect_url).ok()?;
        let origin = url.origin().ascii_serialization();
        // An opaque origin serialises as "null"; the configuration only admits http(s).
        (origin != "null").then_some(origin)
    }

    /// Whether the page is served over HTTPS (its cookies are then `Secure`).
    pub fn secure(&self) -> bool {
        self.redirect_url.starts_with("https://")
    }
}

/// Who a verified login is, as the approval page knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginIdentity {
    pub principal: Principal,
    pub groups: Vec<String>,
    /// The provider's issuer URL and the ID token's `sub`: compared against the requesting
    /// agent's identity, so that nobody approves their own request.
    pub issuer: String,
    pub subject: String,
    /// Whether the login's groups include one of `approver_groups`.
    pub approver: bool,
}

/// Why a login was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the login was not started here, or took longer than 10 minutes: start again")]
    StateMissing,
    #[error("the login's state does not match: start again")]
    StateInvalid,
    #[error("the OpenID Provider did not log you in ({0})")]
    ProviderRefused(String),
    #[error("the OpenID Provider's answer carries no code")]
    CodeMissing,
    #[error("the answer names another OpenID Provider")]
    IssuerMismatch,
    #[error("the OpenID Provider cannot be reached; try again in a moment")]
    ProviderUnavailable,
    #[error("the OpenID Provider refused to exchange the code: start again")]
    CodeRefused,
    #[error("the ID token from the OpenID Provider did not verify")]
    IdTokenInvalid,
    #[error("the login carries no {0:?} claim to name you by")]
    PrincipalMissing(String),
    #[error("the login's {claim:?} claim is not a usable name: {problem}")]
    PrincipalInvalid { claim: String, problem: String },
    #[error("the login's groups are not usable: {0}")]
    GroupsInvalid(String),
    #[error("the login could not be recorded; try again in a moment")]
    Storage,
    #[error("the broker could not make a session; try again in a moment")]
    Random(#[from] RandomSourceFailed),
}

impl LoginError {
    /// The stable name of the refusal: the `reason` of its audit record.
    pub fn reason(&self) -> &'static str {
        match self {
            LoginError::StateMissing => "login_state_missing",
            LoginError::StateInvalid => "login_state_invalid",
            LoginError::ProviderRefused(_) => "provider_refused",
            LoginError::CodeMissing => "code_missing",
            LoginError::IssuerMismatch => "issuer_mismatch",
            LoginError::ProviderUnavailable => "provider_unavailable",
            LoginError::CodeRefused => "code_refused",
            LoginError::IdTokenInvalid => "id_token_invalid",
            LoginError::PrincipalMissing(_) => "principal_claim_missing",
            LoginError::PrincipalInvalid { .. } => "principal_claim_invalid",
            LoginError::GroupsInvalid(_) => "groups_claim_invalid",
            LoginError::Storage => "storage_unavailable",
            LoginError::Random(_) => "internal",
        }
    }

    /// Whether the broker (or the provider) failed, rather than the login being refused.
    pub fn is_server_side(&self) -> bool {
        matches!(
            self,
            LoginError::ProviderUnavailable | LoginError::Storage | LoginError::Random(_)
        )
    }
}

/// Maps the claims of a verified ID token to who logged in: the principal from
/// `principal_claim` (required; never another claim instead), the groups from `groups_claim`
/// (absent: none), and the approver role when a group is one of `approver_groups`.
pub fn map_claims(
    claims: &Map<String, Value>,
    settings: &LoginSettings,
) -> Result<LoginIdentity, LoginError> {
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|sub| !sub.is_empty())
        .ok_or(LoginError::IdTokenInvalid)?;
    let named = claims
        .get(&settings.principal_claim)
        .ok_or_else(|| LoginError::PrincipalMissing(settings.principal_claim.clone()))?;
    let named = named.as_str().ok_or_else(|| LoginError::PrincipalInvalid {
        claim: settings.principal_claim.clone(),
        problem: "it is not a string".into(),
    })?;
    let principal = Principal::parse(named).map_err(|e| LoginError::PrincipalInvalid {
        claim: settings.principal_claim.clone(),
        problem: e.to_string(),
    })?;
    let groups = match claims.get(&settings.groups_claim) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            if items.len() > MAX_GROUPS {
                return Err(LoginError::GroupsInvalid(format!(
                    "{} groups, at most {MAX_GROUPS}",
                    items.len()
                )));
            }
            let mut groups = Vec::with_capacity(items.len());
            for item in items {
                match item.as_str() {
                    Some(group) if valid_group(group) => {
                        if !groups.iter().any(|g| g == group) {
                            groups.push(group.to_owned());
                        }
                    }
                    _ => {
                        return Err(LoginError::GroupsInvalid(
                            "a group is not 1 to 128 printable characters".into(),
                        ));
                    }
                }
            }
            groups
        }
        Some(_) => {
            return Err(LoginError::GroupsInvalid(format!(
                "the {:?} claim is not an array of strings",
                settings.groups_claim
            )));
        }
    };
    let approver = groups
        .iter()
        .any(|group| settings.approver_groups.contains(group));
    Ok(LoginIdentity {
        principal,
        groups,
        issuer: settings.issuer.clone(),
        subject: subject.to_owned(),
        approver,
    })
}

/// 32 random bytes, base64url without padding (43 characters).
pub fn random_token() -> Result<String, RandomSourceFailed> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|_| RandomSourceFailed)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `text` could be a [`random_token`]: 43 base64url characters.
pub fn is_token(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use serde_json::json;

    use super::*;

    pub(crate) fn settings() -> LoginSettings {
        LoginSettings {
            issuer: "https://idp.example".into(),
            client_id: "writ".into(),
            client_secret: None,
            redirect_url: "https://writ.example/approvals/callback".into(),
            principal_claim: "email".into(),
            groups_claim: "groups".into(),
            approver_groups: vec!["approvers".into(), "sre".into()],
            session_ttl: Duration::from_secs(3600),
        }
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn an_approver_group_maps_to_the_approver_role() {
        let alice = map_claims(
            &claims(json!({"sub": "a1", "email": "alice@example.com", "groups": ["staff", "sre"]})),
            &settings(),
        )
        .unwrap();
        assert_eq!(alice.principal.as_str(), "alice@example.com");
        assert_eq!(alice.groups, vec!["staff", "sre"]);
        assert_eq!(alice.subject, "a1");
        assert_eq!(alice.issuer, "https://idp.example");
        assert!(alice.approver);

        let mallory = map_claims(
            &claims(json!({"sub": "m", "email": "mallory@example.com", "groups": ["staff"]})),
            &settings(),
        )
        .unwrap();
        assert!(!mallory.approver);
        let groupless = map_claims(
            &claims(json!({"sub": "m", "email": "mallory@example.com"})),
            &settings(),
        )
        .unwrap();
        assert!(groupless.groups.is_empty() && !groupless.approver);
    }

    #[test]
    fn the_principal_claim_is_required_and_never_replaced() {
        let missing = map_claims(
            &claims(json!({"sub": "alice", "name": "Alice", "groups": ["sre"]})),
            &settings(),
        )
        .unwrap_err();
        assert_eq!(missing.reason(), "principal_claim_missing");
        for bad in [
            json!("alice smith@example.com"),
            json!("<script>@x"),
            json!(""),
            json!(42),
            json!("a".repeat(129)),
            json!("zoë@example.com"),
        ] {
            let error = map_claims(
                &claims(json!({"sub": "a", "email": bad, "groups": ["sre"]})),
                &settings(),
            )
            .unwrap_err();
            assert_eq!(error.reason(), "principal_claim_invalid", "{bad}");
        }
        let mut by_sub = settings();
        by_sub.principal_claim = "sub".into();
        let mapped = map_claims(&claims(json!({"sub": "svc:ops"})), &by_sub).unwrap();
        assert_eq!(mapped.principal.as_str(), "svc:ops");
    }

    #[test]
    fn groups_are_bounded_and_printable() {
        let many: Vec<String> = (0..65).map(|n| format!("g{n}")).collect();
        for groups in [
            json!(many),
            json!("sre"),
            json!([1]),
            json!(["ok", "bad\ngroup"]),
            json!([""]),
        ] {
            let error = map_claims(
                &claims(json!({"sub": "a", "email": "a@x", "groups": groups})),
                &settings(),
            )
            .unwrap_err();
            assert_eq!(error.reason(), "groups_claim_invalid", "{groups}");
        }
        let duplicates = map_claims(
            &claims(json!({"sub": "a", "email": "a@x", "groups": ["sre", "sre"]})),
            &settings(),
        )
        .unwrap();
        assert_eq!(duplicates.groups, vec!["sre"]);
    }

    #[test]
    fn the_origin_comes_from_the_redirect_url() {
        assert_eq!(settings().origin().unwrap(), "https://writ.example");
        let mut local = settings();
        local.redirect_url = "http://127.0.0.1:8080/approvals/callback".into();
        assert_eq!(local.origin().unwrap(), "http://127.0.0.1:8080");
        assert!(!local.secure());
        assert!(settings().secure());
    }

    #[test]
    fn tokens_are_43_base64url_characters() {
        let token = random_token().unwrap();
        assert!(is_token(&token), "{token}");
        assert_ne!(token, random_token().unwrap());
        assert!(!is_token("short"));
        assert!(!is_token(&format!("{}=", &token[..42])));
    }
}
