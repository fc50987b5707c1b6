//! Exchange: a writ in, a native credential out (see `exchange`).
//!
//! Order of an exchange: the writ is verified in-process with the SDK's verifier (signature,
//! expiry, the exchange service as audience, the broker's own revocation view, and the right the
//! target needs, attenuations included); then the exchange is reserved (one per writ and
//! target), the upstream asked, and the credential recorded sealed with its audit event. When
//! recording fails after the upstream answered, the credential is taken back at once: nothing
//! leaves half-issued. Revocation takes credentials back ([`withdraw`]).
//!
//! The upstreams have a file each: [`vault`] (dynamic secrets, leases bounded by the writ) and
//! [`aws`] (STS sessions scoped by a session policy).

mod aws;
mod vault;
mod withdraw;

use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde_json::json;
use writ_verify::{Denial, Grant, ResourcePattern, RevocationView, Verifier};

use super::Broker;
use crate::audit::{AuditEvent, Outcome, actions};
use crate::error::{DomainError, ErrorCode, codes};
use crate::exchange::aws::{AwsExchange, AwsRoleConfig};
use crate::exchange::seal::{SealError, SealingKey};
use crate::exchange::{
    Credential, ExchangeKind, ExchangeRecord, ExchangeState, Repeat, UpstreamError, VaultRole,
    repeat,
};
use crate::id::{self, RandomSourceFailed};
use crate::keys::KeyRing;
use crate::store::{Reservation, StoreError};
use crate::time::unix_seconds;
use crate::vault::VaultClient;
use aws::aws_error;
use vault::vault_error;

/// Why an exchange answered no credential.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("no {kind} exchange role is named {name:?}")]
    RoleUnknown { kind: &'static str, name: String },
    #[error("the writ was refused: {0}")]
    Writ(Denial),
    #[error("{0}")]
    Scope(String),
    #[error("{0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Upstream(UpstreamError),
    #[error("the broker's revocation view is not current, so no writ can be verified")]
    NotReady,
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error("the credential could not be sealed: {0}")]
    Seal(#[from] SealError),
    #[error(transparent)]
    Random(#[from] RandomSourceFailed),
    /// The broker failed (building its verifier, encoding what it keeps).
    #[error("{0}")]
    Internal(String),
}

impl DomainError for ExchangeError {
    fn code(&self) -> ErrorCode {
        match self {
            ExchangeError::RoleUnknown { .. } => codes::EXCHANGE_ROLE_UNKNOWN,
            ExchangeError::Writ(denial) => match denial.http_status() {
                400 => codes::INVALID_REQUEST,
                403 => codes::EXCHANGE_NOT_GRANTED,
                500 => codes::INTERNAL,
                503 => codes::NOT_READY,
                _ => codes::WRIT_REFUSED,
            },
            ExchangeError::Scope(_) => codes::EXCHANGE_SCOPE_INVALID,
            ExchangeError::Conflict(_) => codes::EXCHANGE_CONFLICT,
            ExchangeError::Upstream(UpstreamError::Unreachable { .. }) => {
                codes::EXCHANGE_UPSTREAM_UNAVAILABLE
            }
            ExchangeError::Upstream(UpstreamError::Refused { .. }) => {
                codes::EXCHANGE_UPSTREAM_REFUSED
            }
            ExchangeError::NotReady => codes::NOT_READY,
            ExchangeError::Storage(error) => error.code(),
            ExchangeError::Seal(_) | ExchangeError::Random(_) | ExchangeError::Internal(_) => {
                codes::INTERNAL
            }
        }
    }

    fn public_detail(&self) -> String {
        match self {
            // The upstream's own words may name its internals; the kind of failure is enough.
            ExchangeError::Upstream(UpstreamError::Unreachable { upstream, .. }) => {
                format!("{upstream} could not be reached, so nothing was issued; retry later")
            }
            ExchangeError::Upstream(UpstreamError::Refused { upstream, .. }) => format!(
                "{upstream} refused to issue the credential, so nothing was issued; the cause is in the broker's log"
            ),
            ExchangeError::NotReady => self.to_string(),
            ExchangeError::Storage(_) => {
                "the exchange could not be recorded, so nothing was issued; retry later".into()
            }
            other if other.code().kind.is_server_side() => {
                "the broker failed; the cause is in its log".into()
            }
            other => other.to_string(),
        }
    }

    fn extension(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        match self {
            ExchangeError::Writ(denial) => {
                let mut members = serde_json::Map::new();
                members.insert("denial".into(), denial.code().into());
                Some(members)
            }
            _ => None,
        }
    }
}

/// A credential answered by an exchange.
#[derive(Debug)]
pub struct Exchanged {
    pub exchange_id: String,
    pub credential: Credential,
    /// Whether this call answered a credential issued to an earlier call.
    pub repeated: bool,
}

/// The exchange configuration of a running broker and its upstream clients.
pub struct Exchanges {
    service: String,
    vault: Option<VaultExchange>,
    aws: Option<AwsExchange>,
    verifier: RwLock<Option<Arc<CachedVerifier>>>,
}

/// The Vault/OpenBao dynamic-secret exchange: the client and the configured roles.
pub struct VaultExchange {
    pub client: VaultClient,
    pub roles: Vec<VaultRole>,
}

/// The verifier of presented writs, valid for one key ring and one revocation head.
struct CachedVerifier {
    ring: Arc<KeyRing>,
    head: u64,
    verifier: Verifier,
    /// The revocation entries the verifier holds, for the withdrawal pass.
    view: RevocationView,
}

impl Exchanges {
    /// No exchange configured: every exchange route answers `exchange_role_unknown`.
    pub fn none() -> Exchanges {
        Exchanges::new(crate::exchange::DEFAULT_SERVICE.to_owned(), None, None)
    }

    pub fn new(
        service: String,
        vault: Option<VaultExchange>,
        aws: Option<AwsExchange>,
    ) -> Exchanges {
        Exchanges {
            service,
            vault,
            aws,
            verifier: RwLock::new(None),
        }
    }

    fn aws_role(&self, name: &str) -> Result<(&AwsExchange, &AwsRoleConfig), ExchangeError> {
        let unknown = || ExchangeError::RoleUnknown {
            kind: "AWS",
            name: name.to_owned(),
        };
        let aws = self.aws.as_ref().ok_or_else(unknown)?;
        let role = aws.role(name).ok_or_else(unknown)?;
        Ok((aws, role))
    }

    fn vault_role(&self, name: &str) -> Result<(&VaultExchange, &VaultRole), ExchangeError> {
        let unknown = || ExchangeError::RoleUnknown {
            kind: "vault",
            name: name.to_owned(),
        };
        let vault = self.vault.as_ref().ok_or_else(unknown)?;
        let role = vault
            .roles
            .iter()
            .find(|role| role.name == name)
            .ok_or_else(unknown)?;
        Ok((vault, role))
    }
}

/// What the upstream answered for one exchange.
struct Issued {
    handle: String,
    credential: Credential,
    /// Unix seconds: the credential's end upstream.
    expires_at: i64,
}

impl Broker {
    /// Audits a refused exchange. A writ whose signature does not verify with a key the broker
    /// publishes (or a call refused before any writ was read) is counted, not recorded one by
    /// one: a flood of garbage must not grow the log, and nobody may write an event naming an
    /// agent with a token of their own making. A writ the broker signed is recorded with its
    /// ids, whatever refused it. Upstream failures were recorded where they happened.
    async fn record_refusal(&self, writ: &str, error: &ExchangeError) {
        let code = error.code();
        if matches!(error, ExchangeError::Upstream(_)) {
            return;
        }
        match self.signed_values(writ) {
            Some((writ_id, agent, task)) => {
                let event =
                    AuditEvent::new(actions::EXCHANGE_REFUSED, Outcome::Refused, agent.clone())
                        .with_writ(writ_id)
                        .with_task(task)
                        .with_agent(agent)
                        .with_reason(code.name);
                self.audit_best_effort(event).await;
            }
            None if !code.kind.is_server_side() => {
                self.refusals.count(
                    actions::EXCHANGE_REFUSED,
                    crate::audit::UNKNOWN_ISSUER,
                    code.name,
                    crate::time::unix_ms(SystemTime::now()),
                );
            }
            None => {}
        }
    }

    /// The writ id, agent and task of `writ` if its signatures verify with a root key the
    /// broker publishes (expiry and revocation aside: a refusal of an expired writ is still
    /// the holder's). Admin writs and tokens of anyone else's making answer `None`.
    fn signed_values(&self, writ: &str) -> Option<(String, String, String)> {
        let ring = self.keys.current();
        let now = SystemTime::now();
        biscuit_auth::Biscuit::from_base64(writ, |kid: Option<u32>| {
            kid.and_then(|kid| ring.published_key(kid, now))
                .ok_or(biscuit_auth::error::Format::UnknownPublicKey)
        })
        .ok()?;
        let values = writ_verify::inspect(writ).ok()?;
        Some((values.writ_id?, values.agent?, values.task?))
    }

    /// Verifies `writ` for `operation` on every resource `pattern` names, as a verifier of
    /// the exchange service would, against the broker's own keys and revocation view.
    async fn verify_presented(
        &self,
        writ: &str,
        pattern: &ResourcePattern,
        operation: &str,
    ) -> Result<Grant, ExchangeError> {
        let verifier = self.exchange_verifier().await?;
        verifier
            .verifier
            .authorize_pattern(writ, pattern, operation)
            .map_err(ExchangeError::Writ)
    }

    /// The verifier for the current key ring and revocation head, built again when either
    /// changed. The broker's view must be current: a stale view would let a revoked writ
    /// through.
    async fn exchange_verifier(&self) -> Result<Arc<CachedVerifier>, ExchangeError> {
        if !self.revocations.is_current() {
            return Err(ExchangeError::NotReady);
        }
        let ring = self.keys.current();
        let head = self.revocations.head();
        let cached = self
            .exchanges
            .verifier
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Some(cached) = cached
            && Arc::ptr_eq(&cached.ring, &ring)
            && cached.head == head
        {
            return Ok(cached);
        }
        let built = Arc::new(self.build_exchange_verifier(ring, head).await?);
        *self
            .exchanges
            .verifier
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::clone(&built));
        Ok(built)
    }

    async fn build_exchange_verifier(
        &self,
        ring: Arc<KeyRing>,
        head: u64,
    ) -> Result<CachedVerifier, ExchangeError> {
        let now = SystemTime::now();
        let keys = ring
            .records
            .iter()
            .filter_map(|record| Some((record.kid, ring.published_key(record.kid, now)?)))
            .collect::<Vec<_>>();
        let mut view = RevocationView::new();
        for entry in self.revocations.page(0, usize::MAX, now).entries {
            // A view that cannot hold every entry must not answer: refuse every writ.
            view.apply(entry, now)
                .map_err(|error| ExchangeError::Internal(error.to_string()))?;
        }
        let verifier = Verifier::builder(self.exchanges.service.clone())
            .static_keys(keys)
            .approval_keys([ring.approval.key_pair.public()])
            .revocations(view.clone())
            .build()
            .await
            .map_err(|error| ExchangeError::Internal(error.to_string()))?;
        Ok(CachedVerifier {
            ring,
            head,
            verifier,
            view,
        })
    }

    /// Exchanges the verified writ of `grant` for `target` once: answers the credential kept
    /// from an earlier call for the same scope, or reserves the exchange, asks the upstream
    /// (`ask`) and records what it answered.
    async fn exchange_once<F, Fut>(
        &self,
        grant: &Grant,
        kind: ExchangeKind,
        target: &str,
        scope: String,
        ask: F,
    ) -> Result<Exchanged, ExchangeError>
    where
        F: FnOnce(ExchangeRecord) -> Fut,
        Fut: Future<Output = Result<Issued, UpstreamError>>,
    {
        let now = unix_seconds(SystemTime::now());
        let mut record = ExchangeRecord {
            id: id::new_id(id::EXCHANGE)?,
            writ_id: grant.writ_id.clone(),
            agent: grant.agent.clone(),
            task: grant.task.clone(),
            kind,
            target: target.to_owned(),
            scope,
            state: ExchangeState::Pending,
            handle: None,
            sealed: None,
            sealing_kid: None,
            created_at: now,
            expires_at: unix_seconds(grant.expires_at),
            writ_expires_at: unix_seconds(grant.expires_at),
            withdrawn_at: None,
            withdraw_error: None,
            deny_until: None,
            deny_removed_at: None,
        };
        if let Reservation::Existing(existing) = self.store.reserve_exchange(&record).await? {
            return self
                .answer_repeat(&existing, &record.scope, record.writ_expires_at, now)
                .await;
        }
        let issued = match ask(record.clone()).await {
            Ok(issued) => issued,
            Err(error) => {
                let event = exchange_event(&record, actions::EXCHANGE_FAILED, Outcome::Failed)
                    .with_reason(ExchangeError::Upstream(error.clone()).code().name);
                tracing::warn!(exchange = %record.id, %error, "exchange upstream failed");
                self.store.abandon_exchange(&record.id, event).await?;
                return Err(ExchangeError::Upstream(error));
            }
        };
        record.state = ExchangeState::Issued;
        record.handle = Some(issued.handle.clone());
        record.expires_at = issued.expires_at;
        if let Err(error) = self.seal_into(&mut record, &issued.credential) {
            self.take_back_unrecorded(&record).await;
            return Err(error);
        }
        let event = exchange_event(&record, actions::EXCHANGE_ISSUED, Outcome::Success)
            .with_details(json!({
                "exchange_id": record.id,
                "kind": kind.as_str(),
                "target": target,
                "expires_at": crate::time::rfc3339(record.expires_at),
            }));
        if let Err(error) = self.store.record_exchange_issued(&record, event).await {
            self.take_back_unrecorded(&record).await;
            return Err(error.into());
        }
        Ok(Exchanged {
            exchange_id: record.id,
            credential: issued.credential,
            repeated: false,
        })
    }

    /// Seals `credential` into `record` under the current approval key.
    fn seal_into(
        &self,
        record: &mut ExchangeRecord,
        credential: &Credential,
    ) -> Result<(), ExchangeError> {
        let ring = self.keys.current();
        let sealing = SealingKey::derive(&ring.approval.key_pair.private().to_bytes())?;
        let plaintext = serde_json::to_vec(credential)
            .map_err(|error| ExchangeError::Internal(error.to_string()))?;
        record.sealed = Some(sealing.seal(&record.id, &plaintext)?);
        record.sealing_kid = Some(ring.approval.kid);
        Ok(())
    }

    /// A credential made upstream that could not be recorded is not revocable: it is taken
    /// back now rather than left out (and, failing that, the unfinished reservation is found
    /// and closed later).
    async fn take_back_unrecorded(&self, record: &ExchangeRecord) {
        if let Err(undo) = self.take_back(record).await {
            tracing::error!(exchange = %record.id, %undo, "an unrecorded credential could not be taken back yet; its reservation will be closed later");
        }
    }

    async fn answer_repeat(
        &self,
        existing: &ExchangeRecord,
        scope: &str,
        writ_expires_at: i64,
        now: i64,
    ) -> Result<Exchanged, ExchangeError> {
        let sealed = match repeat(existing, scope, writ_expires_at, now) {
            Repeat::Answer(sealed) => sealed,
            Repeat::InProgress => {
                return Err(ExchangeError::Conflict(
                    "this writ is being exchanged for this target by another call; retry in a moment",
                ));
            }
            Repeat::OtherScope => {
                return Err(ExchangeError::Conflict(
                    "this writ was already exchanged for this target with a different scope; one exchange per writ and target",
                ));
            }
            Repeat::OutlivesWrit => {
                return Err(ExchangeError::Conflict(
                    "this writ was exchanged for this target by a longer-lived copy of it; its credential would outlive the writ presented",
                ));
            }
            Repeat::Ended => {
                return Err(ExchangeError::Conflict(
                    "this writ's exchange for this target has ended; ask for a new writ",
                ));
            }
        };
        let ring = self.keys.current();
        if existing.sealing_kid != Some(ring.approval.kid) {
            return Err(ExchangeError::Conflict(
                "this writ's credential for this target can no longer be answered again; ask for a new writ",
            ));
        }
        let sealing = SealingKey::derive(&ring.approval.key_pair.private().to_bytes())?;
        let plaintext = sealing.open(&existing.id, sealed)?;
        let credential = serde_json::from_slice(&plaintext)
            .map_err(|error| ExchangeError::Internal(error.to_string()))?;
        Ok(Exchanged {
            exchange_id: existing.id.clone(),
            credential,
            repeated: true,
        })
    }

    /// Takes the credential of `record` back upstream.
    async fn take_back(&self, record: &ExchangeRecord) -> Result<Option<i64>, UpstreamError> {
        match record.kind {
            ExchangeKind::Vault => {
                let (vault, _) = self.exchanges.vault_role(&record.target).map_err(|_| {
                    UpstreamError::Refused {
                        upstream: "Vault",
                        detail: format!("role {} is no longer configured", record.target),
                    }
                })?;
                let lease = record.handle.as_deref().unwrap_or_default();
                vault
                    .client
                    .revoke_lease(lease)
                    .await
                    .map_err(vault_error)?;
                Ok(None)
            }
            ExchangeKind::Aws => {
                let (aws, _) = self.exchanges.aws_role(&record.target).map_err(|_| {
                    UpstreamError::Refused {
                        upstream: "AWS",
                        detail: format!("role {} is no longer configured", record.target),
                    }
                })?;
                aws.deny_writ(
                    &record.target,
                    &record.writ_id,
                    crate::time::from_unix_seconds(record.expires_at),
                )
                .await
                .map_err(aws_error)?;
                Ok(Some(record.expires_at))
            }
        }
    }

    /// Whether any exchange is configured (the withdrawal pass has nothing to do otherwise).
    pub fn exchanges_configured(&self) -> bool {
        self.exchanges.vault.is_some() || self.exchanges.aws.is_some()
    }
}

fn exchange_event(record: &ExchangeRecord, action: &str, outcome: Outcome) -> AuditEvent {
    AuditEvent::new(action, outcome, record.agent.clone())
        .with_writ(record.writ_id.clone())
        .with_task(record.task.clone())
        .with_agent(record.agent.clone())
}
