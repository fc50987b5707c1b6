//! Approvers logging in to the approval page, and their sessions. The rules are in `login`;
//! here they run against the provider, the key ring and the store, audited:
//!
//! - starting a login writes nothing: its state travels in a signed cookie;
//! - a callback is checked against that state (signature, age, `state` in constant time, the
//!   provider's `iss`) before any call to the provider; refusals up to the ID token's
//!   verification are counted per window (`approver.login`, `unknown`, reason), as refusals of
//!   unverified credentials are, since anyone can send them;
//! - a login whose ID token verified is one audit event, opened or refused (naming the
//!   subject), and a logout another.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::Broker;
use crate::approval::{Approver, rules};
use crate::audit::{ANONYMOUS, AuditEvent, Outcome, UNKNOWN_ISSUER, actions};
use crate::error::ErrorCode;
use crate::login::state::{StateError, same_secret};
use crate::login::{
    ApproverSession, LoginError, LoginProvider, LoginSettings, LoginState, SessionSecret, StateKey,
    map_claims, random_token,
};
use crate::store::StoreError;
use crate::time::{unix_ms, unix_seconds};

/// Longest `code` or `state` a callback may carry, in bytes.
pub const MAX_CALLBACK_PARAM: usize = 4096;

/// Where a new login sends the browser, and the state it must bring back (the cookie).
pub struct LoginStart {
    pub authorization_url: String,
    pub sealed_state: String,
}

/// What the provider sent back to the callback.
#[derive(Default)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    /// RFC 9207: the provider names itself; it must be the configured one.
    pub iss: Option<String>,
}

/// The authorization code and the state are credentials: never in debug output.
impl std::fmt::Debug for Callback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback")
            .field("code", &self.code.as_ref().map(|_| "<redacted>"))
            .field("state", &self.state.as_ref().map(|_| "<redacted>"))
            .field("error", &self.error)
            .field("iss", &self.iss)
            .finish()
    }
}

/// A login that opened a session.
pub struct LoggedIn {
    /// For the cookie; stored only hashed.
    pub secret: SessionSecret,
    pub session: ApproverSession,
    /// Where the person was going when asked to log in.
    pub next: String,
}

impl Broker {
    /// The approval page's login settings, when it is configured.
    pub fn login_settings(&self) -> Option<&LoginSettings> {
        self.approvals.login.as_deref().map(LoginProvider::settings)
    }

    fn login_provider(&self) -> Result<&LoginProvider, LoginError> {
        self.approvals
            .login
            .as_deref()
            .ok_or(LoginError::ProviderUnavailable)
    }

    /// The key login states are signed with, derived from the approval key: replicas sharing
    /// the key directory share it.
    fn state_key(&self) -> StateKey {
        let ring = self.keys.current();
        StateKey::derive(&ring.approval.key_pair.private().to_bytes())
    }

    /// Starts a login that returns to `next` (a path under `/approvals`, checked by the
    /// caller): the provider's authorization URL and the sealed state. Writes nothing.
    pub async fn begin_login(&self, next: &str) -> Result<LoginStart, LoginError> {
        let provider = self.login_provider()?;
        let state = LoginState {
            state: random_token()?,
            nonce: random_token()?,
            verifier: random_token()?,
            next: next.to_owned(),
            issued_at: unix_seconds(SystemTime::now()),
        };
        let authorization_url = provider
            .authorization_url(&state)
            .await
            .inspect_err(|error| self.count_login_refusal(error))?;
        Ok(LoginStart {
            authorization_url,
            sealed_state: self.state_key().seal(&state),
        })
    }

    /// Finishes a login: checks the callback against the sealed state the browser brought,
    /// redeems the code, verifies the ID token, maps its claims and opens a session.
    pub async fn finish_login(
        &self,
        sealed_state: Option<&str>,
        callback: &Callback,
    ) -> Result<LoggedIn, LoginError> {
        let now = SystemTime::now();
        let (claims, state) = match self.verify_login(sealed_state, callback, now).await {
            Ok(verified) => verified,
            Err(error) => {
                self.count_login_refusal(&error);
                return Err(error);
            }
        };
        let provider = self.login_provider()?;
        let settings = provider.settings();
        let subject: String = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .chars()
            .take(256)
            .collect();
        let identity = match map_claims(&claims, settings) {
            Ok(identity) => identity,
            Err(error) => {
                tracing::info!(reason = error.reason(), "a login was refused");
                let event = AuditEvent::new(actions::APPROVER_LOGIN, Outcome::Refused, ANONYMOUS)
                    .at(unix_ms(now))
                    .with_reason(error.reason())
                    .with_details(json!({
                        "outcome": "refused",
                        "reason": error.reason(),
                        "issuer": settings.issuer,
                        "subject": subject,
                    }));
                self.audit_best_effort(event).await;
                return Err(error);
            }
        };
        let (secret, session) =
            ApproverSession::open(identity, unix_seconds(now), settings.session_ttl)?;
        let event = AuditEvent::new(
            actions::APPROVER_LOGIN,
            Outcome::Success,
            session.principal.as_str(),
        )
        .at(unix_ms(now))
        .with_details(json!({
            "principal": session.principal,
            "outcome": "logged_in",
            "approver": session.approver,
            "groups": session.groups,
            "issuer": session.issuer,
            "subject": session.subject,
            "expires_at": session.expires_at,
        }));
        self.store
            .open_session(&secret.id_hash(), &session, event)
            .await
            .map_err(|error| {
                tracing::error!(%error, "a login could not be recorded");
                LoginError::Storage
            })?;
        tracing::info!(principal = %session.principal, approver = session.approver,
            "an approver logged in to the approval page");
        Ok(LoggedIn {
            secret,
            session,
            next: state.next,
        })
    }

    /// Everything before the claims are looked at: the state, the provider's answer, the code
    /// exchange and the ID token's verification. Nothing reaches the provider unless the
    /// browser brought a state this broker signed, and the `state` it sent back matches it.
    async fn verify_login(
        &self,
        sealed_state: Option<&str>,
        callback: &Callback,
        now: SystemTime,
    ) -> Result<(serde_json::Map<String, Value>, LoginState), LoginError> {
        let provider = self.login_provider()?;
        let sealed = sealed_state.ok_or(LoginError::StateMissing)?;
        let state =
            self.state_key()
                .open(sealed, unix_seconds(now))
                .map_err(|error| match error {
                    StateError::Expired => LoginError::StateMissing,
                    StateError::Malformed | StateError::BadSignature => LoginError::StateInvalid,
                })?;
        let returned = callback.state.as_deref().unwrap_or_default();
        if returned.len() > MAX_CALLBACK_PARAM || !same_secret(returned, &state.state) {
            return Err(LoginError::StateInvalid);
        }
        if let Some(iss) = &callback.iss
            && *iss != provider.settings().issuer
        {
            return Err(LoginError::IssuerMismatch);
        }
        if let Some(error) = &callback.error {
            return Err(LoginError::ProviderRefused(oauth_error_name(error)));
        }
        let code = callback
            .code
            .as_deref()
            .filter(|code| !code.is_empty() && code.len() <= MAX_CALLBACK_PARAM)
            .ok_or(LoginError::CodeMissing)?;
        let claims = provider.redeem(code, &state).await?;
        Ok((claims, state))
    }

    /// Counts a refused login whose ID token never verified (anyone can send one).
    fn count_login_refusal(&self, error: &LoginError) {
        tracing::debug!(reason = error.reason(), "a login was refused");
        self.refusals.count(
            actions::APPROVER_LOGIN,
            UNKNOWN_ISSUER,
            error.reason(),
            unix_ms(SystemTime::now()),
        );
    }

    /// The live session `secret` opens, if any.
    pub async fn approver_session(
        &self,
        secret: &SessionSecret,
    ) -> Result<Option<ApproverSession>, StoreError> {
        self.store
            .approver_session(&secret.id_hash(), unix_seconds(SystemTime::now()))
            .await
    }

    /// Ends the session `secret` opens (audited); nothing when there is none.
    pub async fn logout(&self, secret: &SessionSecret) -> Result<(), StoreError> {
        let now = SystemTime::now();
        let ended = self
            .store
            .close_session(&secret.id_hash(), unix_seconds(now), |session| {
                AuditEvent::new(
                    actions::APPROVER_LOGIN,
                    Outcome::Success,
                    session.principal.as_str(),
                )
                .at(unix_ms(now))
                .with_details(json!({
                    "principal": session.principal,
                    "outcome": "logged_out",
                }))
            })
            .await?;
        if let Some(session) = ended {
            tracing::info!(principal = %session.principal, "an approver logged out of the approval page");
        }
        Ok(())
    }

    /// Records a refused decision on request `id` (by the rules, or before them: a login
    /// without the approver role), with its code.
    pub async fn refuse_decision(&self, approver: &Approver, id: &str, code: ErrorCode) {
        let event = AuditEvent::new(
            actions::APPROVAL_DECISION_REFUSED,
            Outcome::of(code),
            approver.principal.as_str(),
        )
        .at(unix_ms(SystemTime::now()))
        .with_reason(code.name)
        .with_details(json!({
            "approval_id": crate::id::is_id(id, super::APPROVAL_PREFIX).then_some(id),
            "via": rules::via_name(approver.via),
        }));
        self.audit_best_effort(event).await;
    }
}

/// An OAuth error code as the provider sent it, if it is one (`access_denied`...); anything
/// else is reported as `error`.
fn oauth_error_name(error: &str) -> String {
    if !error.is_empty()
        && error.len() <= 64
        && error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        error.to_owned()
    } else {
        "error".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::oauth_error_name;

    #[test]
    fn provider_errors_are_reported_by_name_only() {
        assert_eq!(oauth_error_name("access_denied"), "access_denied");
        assert_eq!(oauth_error_name("<script>"), "error");
        assert_eq!(oauth_error_name(""), "error");
        assert_eq!(oauth_error_name(&"a".repeat(65)), "error");
    }
}
