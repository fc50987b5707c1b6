//! An approver's session on the approval page. The browser holds a random 256-bit secret (the
//! `writ_session` cookie); the store keeps only its SHA-256, so a copy of the database opens no
//! session. Each session has its own CSRF token, which every form of the page carries.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::state::same_secret;
use super::{LoginIdentity, is_token, random_token};
use crate::admin::Principal;
use crate::approval::{Approver, Via};
use crate::id::RandomSourceFailed;

/// The secret of a session, as the cookie carries it. No `Debug` or `Display`: it opens the
/// session.
pub struct SessionSecret(String);

impl SessionSecret {
    pub fn generate() -> Result<SessionSecret, RandomSourceFailed> {
        random_token().map(SessionSecret)
    }

    /// A cookie value that could be a session secret; anything else is no session, and is
    /// never looked up.
    pub fn parse(text: &str) -> Option<SessionSecret> {
        is_token(text).then(|| SessionSecret(text.to_owned()))
    }

    /// What the store keys the session by: SHA-256 of the secret, in hex.
    pub fn id_hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// The cookie value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A logged-in approver, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ApproverSession {
    pub principal: Principal,
    pub groups: Vec<String>,
    /// The provider's issuer URL and the subject it named.
    pub issuer: String,
    pub subject: String,
    /// Whether the login's groups map to the approver role.
    pub approver: bool,
    /// Every form of the page carries it; a post without it is refused.
    pub csrf_token: String,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: i64,
}

/// The CSRF token guards every form: never in debug output.
impl std::fmt::Debug for ApproverSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApproverSession")
            .field("principal", &self.principal)
            .field("groups", &self.groups)
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .field("approver", &self.approver)
            .field("csrf_token", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl ApproverSession {
    /// A new session for `identity`, starting at `now` (unix seconds) and lasting `ttl`; answers
    /// its secret too (for the cookie; it is stored only hashed).
    pub fn open(
        identity: LoginIdentity,
        now: i64,
        ttl: Duration,
    ) -> Result<(SessionSecret, ApproverSession), RandomSourceFailed> {
        let secret = SessionSecret::generate()?;
        let session = ApproverSession {
            principal: identity.principal,
            groups: identity.groups,
            issuer: identity.issuer,
            subject: identity.subject,
            approver: identity.approver,
            csrf_token: random_token()?,
            created_at: now,
            expires_at: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        };
        Ok((secret, session))
    }

    pub fn is_live(&self, now: i64) -> bool {
        now < self.expires_at
    }

    /// Whether `token` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, token: &str) -> bool {
        same_secret(&self.csrf_token, token)
    }

    /// The approver this session decides as: its principal and groups, and the login's issuer
    /// and subject (compared against the requesting agent's, so nobody approves their own
    /// request).
    pub fn approver(&self) -> Approver {
        Approver {
            principal: self.principal.clone(),
            groups: self.groups.clone(),
            login: Some((self.issuer.clone(), self.subject.clone())),
            via: Via::Login,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn identity() -> LoginIdentity {
        LoginIdentity {
            principal: Principal::parse("alice@example.com").unwrap(),
            groups: vec!["sre".into()],
            issuer: "https://idp.example".into(),
            subject: "a1".into(),
            approver: true,
        }
    }

    #[test]
    fn a_session_stores_only_the_hash_of_its_secret() {
        let (secret, session) =
            ApproverSession::open(identity(), 1000, Duration::from_secs(60)).unwrap();
        let hash = secret.id_hash();
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(secret.expose()));
        let again = SessionSecret::parse(secret.expose()).unwrap();
        assert_eq!(again.id_hash(), hash);
        assert_eq!(session.expires_at, 1060);
        assert!(session.is_live(1059) && !session.is_live(1060));
        assert!(session.csrf_matches(&session.csrf_token.clone()));
        assert!(!session.csrf_matches(""));
        assert!(!session.csrf_matches(secret.expose()));
        let approver = session.approver();
        assert_eq!(approver.via, Via::Login);
        assert_eq!(
            approver.login,
            Some(("https://idp.example".into(), "a1".into()))
        );
    }

    #[test]
    fn only_well_formed_secrets_are_looked_up() {
        for garbage in ["", "x", &"a".repeat(44), &format!("{}!", "a".repeat(42))] {
            assert!(SessionSecret::parse(garbage).is_none(), "{garbage}");
        }
    }
}
