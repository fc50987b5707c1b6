//! What admins do, each call authenticated with an admin writ, checked for its role, and
//! audited whether it succeeds or not: issue admin writs, revoke writs, tasks and agents, lift
//! suspensions.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::Broker;
use crate::admin::{
    AdminCredential, AdminMintError, CredentialError, MAX_ADMIN_TTL, MintedAdminWrit, Principal,
    Role, mint_admin_writ, role_names, verify_admin_writ,
};
use crate::audit::{ANONYMOUS, AuditEvent, Outcome, UNKNOWN_ISSUER, actions};
use crate::error::{DomainError, ErrorCode, codes};
use crate::id::{self, RandomSourceFailed};
use crate::policy::TaskName;
use crate::revocation::{
    self, Lift, Revocation, RevocationError, RevocationOutcome, RevocationRequest, Target,
};
use crate::store::{IssuedAdminWrit, StoreError};
use crate::time::{unix, unix_ms, unix_seconds};

/// The longest revocation reason accepted.
pub const MAX_REASON_LEN: usize = 500;
/// The longest agent identity accepted in a request.
pub const MAX_AGENT_LEN: usize = 512;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminCallError {
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("this admin credential has been revoked")]
    CredentialRevoked,
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Revocation(#[from] RevocationError),
    #[error(transparent)]
    Mint(#[from] AdminMintError),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

impl From<RandomSourceFailed> for AdminCallError {
    fn from(error: RandomSourceFailed) -> Self {
        AdminCallError::Mint(error.into())
    }
}

impl DomainError for AdminCallError {
    fn code(&self) -> ErrorCode {
        match self {
            AdminCallError::Credential(error) => error.code(),
            AdminCallError::CredentialRevoked => codes::ADMIN_CREDENTIAL_REVOKED,
            AdminCallError::InvalidRequest(_) => codes::INVALID_REQUEST,
            AdminCallError::Revocation(error) => error.code(),
            AdminCallError::Mint(error) => error.code(),
            AdminCallError::Storage(error) => error.code(),
        }
    }

    fn public_detail(&self) -> String {
        match self {
            AdminCallError::Storage(error) => error.public_detail(),
            AdminCallError::Mint(error) => error.public_detail(),
            error => error.to_string(),
        }
    }
}

/// A revocation as an admin asks for it: exactly one of `writ_id`, `task` and `agent`, and a
/// reason; all still unchecked.
#[derive(Debug, Clone, Copy)]
pub struct RevokeOrder<'a> {
    pub writ_id: Option<&'a str>,
    pub task: Option<&'a str>,
    pub agent: Option<&'a str>,
    pub reason: &'a str,
}

impl Broker {
    /// Verifies an admin writ and its role for a call to `route` (`METHOD /path`, for the
    /// audit record). A refusal is audited.
    pub async fn authorize_admin(
        &self,
        token: &str,
        roles: &'static [Role],
        route: &str,
    ) -> Result<AdminCredential, AdminCallError> {
        let now = SystemTime::now();
        let refusal = match verify_admin_writ(&self.keys.current(), token, now) {
            Ok(credential) => match self.admit(&credential, roles) {
                Ok(()) => return Ok(credential),
                Err(error) => (Some(credential), error),
            },
            Err(error) => (None, error.into()),
        };
        let (credential, error) = refusal;
        let unverified = match &error {
            AdminCallError::Credential(error) => !error.after_signature(),
            _ => false,
        };
        if unverified {
            // Nothing verified: anyone can send this, so it is counted, not recorded alone.
            self.refusals.count(
                actions::ADMIN_REFUSED,
                UNKNOWN_ISSUER,
                error.code().name,
                unix_ms(now),
            );
            return Err(error);
        }
        // A credential that verified names who used it when it is an admin writ (revoked, or
        // without the role); a signed token that is none (an agent's writ) is recorded too.
        let mut refused = AuditEvent::new(
            actions::ADMIN_REFUSED,
            Outcome::Refused,
            credential
                .as_ref()
                .map_or(ANONYMOUS, |c| c.principal.as_str()),
        )
        .at(unix_ms(now))
        .with_reason(error.code().name)
        .with_details(json!({ "route": route, "required_role": role_names(roles) }));
        refused.writ_id = credential.map(|credential| credential.writ_id);
        self.audit_best_effort(refused).await;
        Err(error)
    }

    /// Whether a verified admin writ may make this call: not revoked, and carrying one of the
    /// roles.
    fn admit(
        &self,
        credential: &AdminCredential,
        roles: &'static [Role],
    ) -> Result<(), AdminCallError> {
        if self
            .revocations
            .revokes_writ(&credential.writ_id, &credential.revocation_ids)
        {
            return Err(AdminCallError::CredentialRevoked);
        }
        Ok(credential.require(roles)?)
    }

    /// Revokes a writ, a task or an agent (which also suspends it), and makes the local view
    /// serve it at once.
    pub async fn revoke(
        &self,
        admin: &AdminCredential,
        order: RevokeOrder<'_>,
    ) -> Result<RevocationOutcome, AdminCallError> {
        let now = SystemTime::now();
        let result = self.try_revoke(admin, order, now).await;
        if let Err(error) = &result {
            let mut failed = admin_event(actions::REVOCATION_CREATED, admin, error, now);
            failed.details =
                json!({ "writ_id": order.writ_id, "task": order.task, "agent": order.agent })
                    .to_string();
            self.audit_best_effort(failed).await;
        }
        result
    }

    async fn try_revoke(
        &self,
        admin: &AdminCredential,
        order: RevokeOrder<'_>,
        now: SystemTime,
    ) -> Result<RevocationOutcome, AdminCallError> {
        let request = RevocationRequest {
            target: revocation_target(order)?,
            reason: check_reason(order.reason)?,
            by: admin.principal.to_string(),
            now,
        };
        let new_id = id::new_id(id::REVOCATION)?;
        let limits = self.limits;
        let principal = admin.principal.to_string();
        let outcome = self
            .store
            .change_revocation(
                &request.target,
                now,
                |state| {
                    Ok::<_, AdminCallError>(revocation::decide(&request, state, new_id, limits)?)
                },
                |outcome| revocation_event(&principal, outcome, now),
            )
            .await?;
        self.catch_up_revocations().await;
        tracing::info!(
            id = %outcome.revocation.id, target = outcome.revocation.target.kind(),
            created = outcome.created, live_writs = outcome.live_writs, by = %principal,
            "revocation"
        );
        Ok(outcome)
    }

    /// Lifts an agent's suspension.
    pub async fn lift_suspension(
        &self,
        admin: &AdminCredential,
        agent: &str,
        reason: &str,
    ) -> Result<Revocation, AdminCallError> {
        let now = SystemTime::now();
        let result = self.try_lift(admin, agent, reason, now).await;
        if let Err(error) = &result {
            let mut failed = admin_event(actions::SUSPENSION_LIFTED, admin, error, now);
            failed.agent = check_agent(agent).ok();
            self.audit_best_effort(failed).await;
        }
        result
    }

    async fn try_lift(
        &self,
        admin: &AdminCredential,
        agent: &str,
        reason: &str,
        now: SystemTime,
    ) -> Result<Revocation, AdminCallError> {
        let agent = check_agent(agent)?;
        let reason = check_reason(reason)?;
        let principal = admin.principal.to_string();
        let lift = Lift {
            by: principal.clone(),
            at: unix_seconds(now),
            reason: reason.clone(),
        };
        let writ_lifetime = self.limits.writ_lifetime;
        let lifted = self
            .store
            .change_revocation(
                &Target::Agent(agent.clone()),
                now,
                |state| Ok::<_, AdminCallError>(revocation::lift(state, lift, writ_lifetime)?),
                |outcome| {
                    AuditEvent::new(actions::SUSPENSION_LIFTED, Outcome::Success, &principal)
                        .at(unix_ms(now))
                        .with_agent(&agent)
                        .with_details(
                            json!({ "revocation": outcome.revocation.id, "reason": reason }),
                        )
                },
            )
            .await?;
        self.catch_up_revocations().await;
        Ok(lifted.revocation)
    }

    /// Issues an admin writ to another principal (an admin's call).
    pub async fn grant_admin_writ(
        &self,
        admin: &AdminCredential,
        principal: &str,
        roles: &BTreeSet<Role>,
        ttl: Duration,
    ) -> Result<MintedAdminWrit, AdminCallError> {
        let principal = Principal::parse(principal)
            .map_err(|error| AdminCallError::InvalidRequest(format!("principal: {error}")))?;
        // An admin writ never outlives the one it was issued with, so whatever a leaked admin
        // writ made dies with it at the latest. (An invalid ttl is left for minting to refuse.)
        let ttl = if ttl.is_zero() || ttl > MAX_ADMIN_TTL {
            ttl
        } else {
            let remaining = admin
                .expires_at
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            ttl.min(Duration::from_secs(remaining.as_secs().max(1)))
        };
        let issued = issue_admin_writ(
            &self.keys.current(),
            &self.store,
            &AdminWritOrder {
                principal: &principal,
                roles,
                ttl,
                issued_by: admin.principal.as_str(),
                parent_writ_id: Some(&admin.writ_id),
                action: actions::ADMIN_WRIT_ISSUED,
            },
        )
        .await?;
        Ok(issued)
    }

    async fn catch_up_revocations(&self) {
        if let Err(error) = self.revocations.catch_up(&self.store).await {
            tracing::warn!(%error, "revocation view not refreshed; the poll will catch up");
        }
    }
}

/// What an admin writ is for and who asks for it.
#[derive(Debug, Clone, Copy)]
pub struct AdminWritOrder<'a> {
    pub principal: &'a Principal,
    pub roles: &'a BTreeSet<Role>,
    pub ttl: Duration,
    /// Who asks: an admin's principal, or `cli:<user>` for a bootstrap.
    pub issued_by: &'a str,
    /// The admin writ the request came with (none for a bootstrap).
    pub parent_writ_id: Option<&'a str>,
    /// The audit action: `admin.bootstrap` or `admin.writ.issued`.
    pub action: &'a str,
}

/// Mints an admin writ and records it with its audit event; the writ is returned only after
/// both are committed. Used by admins over the API and by `writ admin bootstrap`.
pub async fn issue_admin_writ(
    ring: &crate::keys::KeyRing,
    store: &crate::store::Store,
    order: &AdminWritOrder<'_>,
) -> Result<MintedAdminWrit, AdminCallError> {
    let AdminWritOrder {
        principal,
        roles,
        ttl,
        issued_by,
        parent_writ_id,
        action,
    } = *order;
    let now = SystemTime::now();
    let minted = mint_admin_writ(&ring.active, principal, roles, now, ttl)?;
    let roles: Vec<String> = roles.iter().map(|role| role.as_str().to_owned()).collect();
    let record = IssuedAdminWrit {
        writ_id: minted.writ_id.clone(),
        principal: principal.to_string(),
        roles: roles.clone(),
        issued_by: issued_by.to_owned(),
        root_key_id: minted.root_key_id,
        revocation_id: minted.revocation_id.clone(),
        issued_at: unix(minted.issued_at) as i64,
        expires_at: unix(minted.expires_at) as i64,
    };
    let issued = AuditEvent::new(action, Outcome::Success, issued_by)
        .at(unix_ms(now))
        .with_writ(&minted.writ_id)
        .with_details(json!({
            "principal": principal.as_str(), "roles": roles, "ttl": ttl.as_secs(),
            "root_key_id": minted.root_key_id, "expires_at": record.expires_at,
            // The admin writ that made this one: revoking a leaked admin writ starts here.
            "parent_writ_id": parent_writ_id,
        }));
    store.record_admin_writ(&record, issued).await?;
    Ok(minted)
}

fn admin_event(
    action: &str,
    admin: &AdminCredential,
    error: &AdminCallError,
    now: SystemTime,
) -> AuditEvent {
    AuditEvent::new(action, Outcome::of(error.code()), admin.principal.as_str())
        .at(unix_ms(now))
        .with_reason(error.code().name)
}

fn revocation_event(principal: &str, outcome: &RevocationOutcome, now: SystemTime) -> AuditEvent {
    let revocation = &outcome.revocation;
    let revoked = AuditEvent::new(actions::REVOCATION_CREATED, Outcome::Success, principal)
        .at(unix_ms(now))
        .with_details(json!({
            "revocation": revocation.id, "target": revocation.target.kind(), "seq": revocation.seq,
            "created": outcome.created, "live_writs": outcome.live_writs,
            "reason": revocation.reason, "suspended": revocation.is_suspension(),
        }));
    match &revocation.target {
        Target::Writ(writ_id) => revoked.with_writ(writ_id),
        Target::Task(task) => revoked.with_task(task),
        Target::Agent(agent) => revoked.with_agent(agent),
    }
}

fn revocation_target(order: RevokeOrder<'_>) -> Result<Target, AdminCallError> {
    let invalid = |m: &str| Err(AdminCallError::InvalidRequest(m.to_owned()));
    match (order.writ_id, order.task, order.agent) {
        (Some(writ_id), None, None) => {
            if !id::is_id(writ_id, id::WRIT) && !id::is_id(writ_id, id::ADMIN_WRIT) {
                return invalid("writ_id must be wr_ or ad_ followed by 32 lowercase hex digits");
            }
            Ok(Target::Writ(writ_id.to_owned()))
        }
        (None, Some(task), None) => {
            let task = TaskName::parse(task)
                .map_err(|error| AdminCallError::InvalidRequest(format!("task: {error}")))?;
            Ok(Target::Task(task.to_string()))
        }
        (None, None, Some(agent)) => Ok(Target::Agent(check_agent(agent)?)),
        _ => invalid("name exactly one of writ_id, task and agent"),
    }
}

fn check_agent(agent: &str) -> Result<String, AdminCallError> {
    if agent.is_empty() || agent.len() > MAX_AGENT_LEN || agent.chars().any(char::is_control) {
        return Err(AdminCallError::InvalidRequest(format!(
            "agent must be 1 to {MAX_AGENT_LEN} bytes without control characters"
        )));
    }
    Ok(agent.to_owned())
}

fn check_reason(reason: &str) -> Result<String, AdminCallError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON_LEN || reason.chars().any(char::is_control) {
        return Err(AdminCallError::InvalidRequest(format!(
            "reason must be 1 to {MAX_REASON_LEN} bytes without control characters"
        )));
    }
    Ok(reason.to_owned())
}
