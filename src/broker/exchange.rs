//! Exchange: a writ in, a native credential out (see `exchange`).
//!
//! Order of an exchange: the writ is verified in-process with the SDK's verifier (signature,
//! expiry, the exchange service as audience, the broker's own revocation view, and the right the
//! target needs, attenuations included); then the exchange is reserved (one per writ and
//! target), the upstream asked, and the credential recorded sealed with its audit event. When
//! recording fails after the upstream answered, the credential is taken back at once: nothing
//! leaves half-issued. Revocation takes credentials back in [`Broker::withdraw_revoked`], a pass
//! the broker runs every second.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde_json::json;
use writ_verify::{
    Denial, Grant, ResourcePattern, RevocationView, RightResource, Verifier, WritIdentity,
};

use super::Broker;
use crate::audit::{AuditEvent, Outcome, actions};
use crate::error::{DomainError, ErrorCode, codes};
use crate::exchange::aws::{
    AssumeRequest, AwsExchange, AwsExchangeError, AwsRoleConfig, policy as aws_policy,
};
use crate::exchange::seal::{SealError, SealingKey};
use crate::exchange::{
    Credential, ExchangeKind, ExchangeRecord, ExchangeState, Repeat, UpstreamError, VaultRole,
    repeat, scope_hash,
};
use crate::id::{self, RandomSourceFailed};
use crate::keys::KeyRing;
use crate::store::RightRecord;
use crate::store::{LiveExchange, Reservation, StoreError};
use crate::time::unix_seconds;
use crate::vault::VaultClient;

/// Withdrawals in flight at once in one pass.
pub const WITHDRAW_CONCURRENCY: usize = 16;

/// A reservation this old that never finished is taken to be abandoned (an exchange is cut
/// off far sooner: Vault's and AWS's own timeouts are seconds).
pub const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(120);

/// Most rights one AWS exchange may ask for (a session policy holds at most 2048 characters
/// anyway).
pub const MAX_AWS_RIGHTS: usize = 32;

/// How often the withdrawal pass runs without a revocation to wake it (retries, AWS deny
/// statements that are no longer needed).
pub const WITHDRAW_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

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
    #[error("the exchange verifier could not be built: {0}")]
    Verifier(String),
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
            ExchangeError::Seal(_) | ExchangeError::Random(_) | ExchangeError::Verifier(_) => {
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
    /// Exchanges `writ` for a credential of the Vault role `name`: the writ must grant the
    /// role's operation on its resource.
    pub async fn exchange_vault(&self, writ: &str, name: &str) -> Result<Exchanged, ExchangeError> {
        let result = self.exchange_vault_unrecorded(writ, name).await;
        if let Err(error) = &result {
            self.record_refusal(writ, error).await;
        }
        result
    }

    async fn exchange_vault_unrecorded(
        &self,
        writ: &str,
        name: &str,
    ) -> Result<Exchanged, ExchangeError> {
        let (vault, role) = self.exchanges.vault_role(name)?;
        let pattern = ResourcePattern::parse(&role.resource)
            .map_err(|error| ExchangeError::Scope(error.to_string()))?;
        let grant = self
            .verify_presented(writ, &pattern, &role.operation)
            .await?;
        let scope = scope_hash(&[role.path.as_str()]);
        self.exchange_once(&grant, ExchangeKind::Vault, name, scope, |record| {
            read_vault_credential(&self.store, vault, role, record)
        })
        .await
    }

    /// Exchanges `writ` for AWS credentials of the role `name`, with a session policy granting
    /// `rights` (each must be granted by the writ whole, attenuations included), or, when no
    /// rights are asked, every right of the writ within the role's resources that the writ
    /// still grants.
    pub async fn exchange_aws(
        &self,
        writ: &str,
        name: &str,
        rights: Option<Vec<RightRecord>>,
    ) -> Result<Exchanged, ExchangeError> {
        let result = self.exchange_aws_unrecorded(writ, name, rights).await;
        if let Err(error) = &result {
            self.record_refusal(writ, error).await;
        }
        result
    }

    async fn exchange_aws_unrecorded(
        &self,
        writ: &str,
        name: &str,
        rights: Option<Vec<RightRecord>>,
    ) -> Result<Exchanged, ExchangeError> {
        let (aws, role) = self.exchanges.aws_role(name)?;
        let (grant, granted) = match rights {
            Some(rights) => self.aws_rights_asked(writ, role, &rights).await?,
            None => self.aws_rights_held(writ, role).await?,
        };
        let expires_at = grant.expires_at;
        aws_policy::session_policy_in(role.partition(), &granted, expires_at)
            .map_err(|error| ExchangeError::Scope(error.to_string()))?;
        let scope = scope_hash(
            &granted
                .iter()
                .map(|(pattern, operation)| format!("{pattern} {operation}"))
                .collect::<Vec<_>>(),
        );
        self.exchange_once(&grant, ExchangeKind::Aws, name, scope, |record| {
            assume_role(aws, name, record, granted)
        })
        .await
    }

    /// Each right asked must lie within the role's resources and be granted whole by the writ.
    async fn aws_rights_asked(
        &self,
        writ: &str,
        role: &AwsRoleConfig,
        rights: &[RightRecord],
    ) -> Result<(Grant, Vec<(ResourcePattern, String)>), ExchangeError> {
        let mut asked = Vec::new();
        for right in rights {
            let pattern = ResourcePattern::parse(&right.resource)
                .map_err(|error| ExchangeError::Scope(format!("{}: {error}", right.resource)))?;
            for operation in &right.operations {
                asked.push((pattern.clone(), operation.clone()));
            }
        }
        asked.sort();
        asked.dedup();
        if asked.is_empty() || asked.len() > MAX_AWS_RIGHTS {
            return Err(ExchangeError::Scope(format!(
                "ask for 1 to {MAX_AWS_RIGHTS} rights (resource and operation pairs)"
            )));
        }
        if let Some((pattern, _)) = asked.iter().find(|right| {
            aws_policy::within_role(&role.resources, &[(*right).clone()]) != [(*right).clone()]
        }) {
            return Err(ExchangeError::Scope(format!(
                "{pattern} is not within the resources AWS role {:?} serves",
                role.name
            )));
        }
        let mut grant = None;
        for (pattern, operation) in &asked {
            grant = Some(self.verify_presented(writ, pattern, operation).await?);
        }
        let grant = grant.ok_or_else(|| ExchangeError::Scope("no rights asked".into()))?;
        Ok((grant, asked))
    }

    /// The writ's own rights within the role's resources, each kept if the writ (attenuations
    /// included) still grants it whole. The authority block's rights are read only after the
    /// writ verified: they are then the ones the broker signed.
    async fn aws_rights_held(
        &self,
        writ: &str,
        role: &AwsRoleConfig,
    ) -> Result<(Grant, Vec<(ResourcePattern, String)>), ExchangeError> {
        let first = role
            .resources
            .first()
            .ok_or_else(|| ExchangeError::Scope("the role serves no resources".into()))?;
        let signed = match writ_verify::inspect(writ) {
            Ok(inspection) => inspection.rights,
            Err(_) => Vec::new(),
        };
        let held: Vec<(ResourcePattern, String)> = signed
            .iter()
            .filter_map(|right| {
                let text = match &right.resource {
                    RightResource::Exact(resource) => resource.clone(),
                    RightResource::Prefix(prefix) => format!("{prefix}*"),
                };
                Some((ResourcePattern::parse(&text).ok()?, right.operation.clone()))
            })
            .collect();
        let candidates = aws_policy::within_role(&role.resources, &held);
        let mut granted = Vec::new();
        let mut grant = None;
        let mut first_refusal = None;
        for (pattern, operation) in candidates {
            match self.verify_presented(writ, &pattern, &operation).await {
                Ok(verified) => {
                    grant = Some(verified);
                    granted.push((pattern, operation));
                }
                Err(error) => {
                    first_refusal.get_or_insert(error);
                }
            }
        }
        match (grant, first_refusal) {
            (Some(grant), _) => Ok((grant, granted)),
            (None, Some(refusal)) => Err(refusal),
            // Nothing of the role's in the writ: verify it anyway, so that a writ that does
            // not verify is refused as such, and one that does is told it grants nothing here.
            (None, None) => Err(self
                .verify_presented(writ, first, "read")
                .await
                .err()
                .unwrap_or(ExchangeError::Writ(Denial::NotPermitted))),
        }
    }

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
            .filter(|record| record.is_published(now))
            .filter_map(|record| Some((record.kid, record.public_key.parse().ok()?)))
            .collect::<Vec<_>>();
        let mut view = RevocationView::new();
        for entry in self.revocations.page(0, usize::MAX, now).entries {
            // A view that cannot hold every entry must not answer: refuse every writ.
            view.apply(entry, now)
                .map_err(|error| ExchangeError::Verifier(error.to_string()))?;
        }
        let verifier = Verifier::builder(self.exchanges.service.clone())
            .static_keys(keys)
            .approval_keys([ring.approval.key_pair.public()])
            .revocations(view.clone())
            .build()
            .await
            .map_err(|error| ExchangeError::Verifier(error.to_string()))?;
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
        let ring = self.keys.current();
        let sealing = SealingKey::derive(&ring.approval.key_pair.private().to_bytes())?;
        let plaintext = serde_json::to_vec(&issued.credential)
            .map_err(|error| ExchangeError::Verifier(error.to_string()))?;
        record.state = ExchangeState::Issued;
        record.handle = Some(issued.handle.clone());
        record.sealed = Some(sealing.seal(&record.id, &plaintext)?);
        record.sealing_kid = Some(ring.approval.kid);
        record.expires_at = issued.expires_at;
        let event = exchange_event(&record, actions::EXCHANGE_ISSUED, Outcome::Success)
            .with_details(json!({
                "exchange_id": record.id,
                "kind": kind.as_str(),
                "target": target,
                "expires_at": crate::time::rfc3339(record.expires_at),
            }));
        if let Err(error) = self.store.record_exchange_issued(&record, event).await {
            // Not recorded means not revocable: take it back now rather than leave it out.
            if let Err(undo) = self.take_back(&record).await {
                tracing::error!(exchange = %record.id, %undo, "an unrecorded credential could not be taken back; it ends at its expiry");
            }
            return Err(error.into());
        }
        Ok(Exchanged {
            exchange_id: record.id,
            credential: issued.credential,
            repeated: false,
        })
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
            .map_err(|error| ExchangeError::Verifier(error.to_string()))?;
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

    /// Runs [`withdraw_revoked`](Self::withdraw_revoked) whenever the revocation view changes,
    /// and every [`WITHDRAW_RETRY`] regardless (to retry what failed), until aborted.
    pub async fn keep_withdrawing(self: Arc<Self>) {
        let mut changed = self.revocations.subscribe();
        loop {
            match self.withdraw_revoked().await {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, "revoked writs' credentials taken back"),
                Err(error) => {
                    tracing::warn!(%error, "revoked writs' credentials not taken back yet")
                }
            }
            // Either wakes the next pass; a closed channel leaves the timer.
            let _ = tokio::time::timeout(WITHDRAW_RETRY, changed.changed()).await;
        }
    }

    /// Every [`WITHDRAW_RETRY`], until aborted: closes exchanges the broker never finished
    /// ([`close_abandoned`](Self::close_abandoned)) and keeps AWS deny statements as they must
    /// be. Apart from [`keep_withdrawing`](Self::keep_withdrawing), so that an upstream out
    /// of reach here never delays a revocation there.
    pub async fn keep_tidy(self: Arc<Self>) {
        let mut tick = tokio::time::interval(WITHDRAW_RETRY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = self.close_abandoned().await {
                tracing::warn!(%error, "unfinished exchanges not closed yet");
            }
            if let Err(error) = self.maintain_aws_denies().await {
                tracing::warn!(%error, "AWS deny statements not maintained yet");
            }
        }
    }

    /// Takes back what exchanges reserved more than [`ABANDONED_AFTER`] ago and never
    /// finished (the broker stopped between asking the upstream and recording the answer): a
    /// Vault lease whose id was recorded is revoked and the reservation dropped; an AWS
    /// reservation is closed as withdrawn, every session of its writ denied on the role until
    /// the longest session STS could have issued has ended. A Vault lease whose id was never
    /// recorded cannot be found: it ends with its own TTL, and the log says so.
    async fn close_abandoned(&self) -> Result<(), StoreError> {
        let now = unix_seconds(SystemTime::now());
        let stale = self
            .store
            .stale_pending_exchanges(now - ABANDONED_AFTER.as_secs() as i64)
            .await?;
        for record in stale {
            let event = exchange_event(&record, actions::EXCHANGE_FAILED, Outcome::Failed)
                .with_reason("exchange_abandoned")
                .with_details(json!({"exchange_id": record.id, "kind": record.kind.as_str(), "target": record.target}));
            match record.kind {
                ExchangeKind::Vault => {
                    match (&record.handle, self.exchanges.vault_role(&record.target)) {
                        (Some(lease), Ok((vault, _))) => {
                            if let Err(error) = vault.client.revoke_lease(lease).await {
                                tracing::warn!(exchange = %record.id, %error, "an unfinished exchange's lease not revoked yet");
                                continue;
                            }
                        }
                        _ => {
                            tracing::error!(exchange = %record.id, "an unfinished Vault exchange left no lease id; its lease ends with its own TTL")
                        }
                    }
                    self.store.abandon_exchange(&record.id, event).await?;
                }
                ExchangeKind::Aws => {
                    let Ok((aws, role)) = self.exchanges.aws_role(&record.target) else {
                        continue;
                    };
                    let until = record.created_at
                        + i64::try_from(role.max_session.as_secs()).unwrap_or(i64::MAX / 2);
                    if let Err(error) = aws
                        .deny_writ(
                            &record.target,
                            &record.writ_id,
                            crate::time::from_unix_seconds(until),
                        )
                        .await
                    {
                        tracing::warn!(exchange = %record.id, %error, "an unfinished exchange's sessions not denied yet");
                        continue;
                    }
                    self.store
                        .close_abandoned_exchange(&record.id, now, until, event)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// One pass of taking back what revoked writs were exchanged for: every live exchange whose
    /// writ, task or agent the revocation view revokes is withdrawn upstream and recorded; a
    /// failure is recorded (the first one audited) and retried on the next pass.
    pub async fn withdraw_revoked(&self) -> Result<usize, StoreError> {
        let verifier = match self.exchange_verifier().await {
            Ok(verifier) => verifier,
            Err(_) => return Ok(0),
        };
        let now = SystemTime::now();
        let mut withdrawn = 0;
        let mut after = String::new();
        loop {
            let page = self.store.live_exchanges(unix_seconds(now), &after).await?;
            let Some(last) = page.last() else { break };
            after = last.record.id.clone();
            let full = page.len() == crate::store::EXCHANGE_PAGE as usize;
            // Concurrently, so that one upstream out of reach (each call cut off after seconds)
            // does not hold back what the others can take back now.
            let revoked: Vec<ExchangeRecord> = page
                .into_iter()
                .filter(|live| is_revoked(&verifier.view, live))
                .map(|live| live.record)
                .collect();
            for batch in revoked.chunks(WITHDRAW_CONCURRENCY) {
                let results = join_all(batch.iter().map(|record| self.withdraw(record))).await;
                for result in results {
                    withdrawn += usize::from(result?);
                }
            }
            if !full {
                break;
            }
        }
        Ok(withdrawn)
    }

    /// Keeps each AWS role's deny statements as the withdrawn exchanges need them: a statement
    /// whose credentials have expired is removed; one still needed but missing (another replica
    /// wrote the policy at the same moment: IAM has no check-and-set) is written again.
    async fn maintain_aws_denies(&self) -> Result<(), StoreError> {
        let Some(aws) = &self.exchanges.aws else {
            return Ok(());
        };
        let now = unix_seconds(SystemTime::now());
        let withdrawn = self.store.aws_denies().await?;
        let mut roles: BTreeMap<&str, (Vec<&ExchangeRecord>, Vec<String>)> = BTreeMap::new();
        for record in &withdrawn {
            let (ended, needed) = roles.entry(record.target.as_str()).or_default();
            match record.deny_until.unwrap_or(record.expires_at) <= now {
                true => ended.push(record),
                false => needed.push(record.writ_id.clone()),
            }
        }
        for (role, (ended, needed)) in roles {
            if !ended.is_empty() {
                match aws.prune_denies(role, SystemTime::now()).await {
                    Ok(()) => {
                        for record in ended {
                            self.store.record_deny_removed(&record.id, now).await?;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(role, %error, "expired AWS deny statements not removed yet")
                    }
                }
            }
            if needed.is_empty() {
                continue;
            }
            let missing = match aws.missing_denies(role, &needed).await {
                Ok(missing) => missing,
                Err(error) => {
                    tracing::warn!(role, %error, "AWS deny statements not checked");
                    continue;
                }
            };
            for writ_id in missing {
                let until = withdrawn
                    .iter()
                    .filter(|record| record.writ_id == writ_id && record.target == role)
                    .filter_map(|record| record.deny_until)
                    .max()
                    .unwrap_or(now);
                tracing::warn!(
                    role,
                    writ_id,
                    "an AWS deny statement was lost; writing it again"
                );
                if let Err(error) = aws
                    .deny_writ(role, &writ_id, crate::time::from_unix_seconds(until))
                    .await
                {
                    tracing::warn!(role, %error, "an AWS deny statement could not be written again");
                }
            }
        }
        Ok(())
    }

    async fn withdraw(&self, record: &ExchangeRecord) -> Result<bool, StoreError> {
        let now = unix_seconds(SystemTime::now());
        match self.take_back(record).await {
            Ok(deny_until) => {
                let event = exchange_event(record, actions::EXCHANGE_WITHDRAWN, Outcome::Success)
                    .with_details(json!({"exchange_id": record.id, "kind": record.kind.as_str(), "target": record.target}));
                self.store
                    .record_exchange_withdrawn(&record.id, now, deny_until, event)
                    .await
            }
            Err(error) => {
                tracing::warn!(exchange = %record.id, %error, "a revoked writ's credential could not be taken back yet; retrying");
                let event = record.withdraw_error.is_none().then(|| {
                    exchange_event(record, actions::EXCHANGE_WITHDRAW_FAILED, Outcome::Failed)
                        .with_reason(ExchangeError::Upstream(error.clone()).code().name)
                });
                self.store
                    .record_withdraw_failure(&record.id, &error.to_string(), event)
                    .await?;
                Ok(false)
            }
        }
    }
}

fn is_revoked(view: &RevocationView, live: &LiveExchange) -> bool {
    let revocation_ids = [live.writ_revocation_id.clone()];
    let identity = WritIdentity {
        writ_id: &live.record.writ_id,
        agent: &live.record.agent,
        task: &live.record.task,
        issued_at: crate::time::from_unix_seconds(live.writ_issued_at),
        revocation_ids: &revocation_ids,
    };
    view.is_revoked(&identity).is_some()
}

fn aws_error(error: AwsExchangeError) -> UpstreamError {
    let detail = error.to_string();
    match error {
        AwsExchangeError::Unavailable { .. } => UpstreamError::Unreachable {
            upstream: "AWS",
            detail,
        },
        _ => UpstreamError::Refused {
            upstream: "AWS",
            detail,
        },
    }
}

/// Assumes the AWS role `name` for the reserved exchange `record`, granting `granted`, and
/// answers the credentials in the `credential_process` format. The expiration told to the
/// caller is the writ's: the session policy denies everything after it, even while STS still
/// holds the session (STS's minimum is 15 minutes).
async fn assume_role(
    aws: &AwsExchange,
    name: &str,
    record: ExchangeRecord,
    granted: Vec<(ResourcePattern, String)>,
) -> Result<Issued, UpstreamError> {
    let request = AssumeRequest {
        writ_id: record.writ_id.clone(),
        task: record.task.clone(),
        agent: record.agent.clone(),
        rights: granted,
        writ_expires_at: crate::time::from_unix_seconds(record.writ_expires_at),
    };
    let issued = aws.assume(name, &request).await.map_err(aws_error)?;
    let mut credential = serde_json::Map::new();
    credential.insert("Version".into(), 1.into());
    credential.insert("AccessKeyId".into(), issued.access_key_id.clone().into());
    credential.insert(
        "SecretAccessKey".into(),
        issued.secret_access_key.clone().into(),
    );
    credential.insert("SessionToken".into(), issued.session_token.clone().into());
    credential.insert(
        "Expiration".into(),
        crate::time::rfc3339(unix_seconds(issued.expiration)).into(),
    );
    Ok(Issued {
        handle: issued.assumed_role_arn.clone().unwrap_or_default(),
        credential: Credential(credential),
        expires_at: unix_seconds(issued.sts_expiration),
    })
}

fn exchange_event(record: &ExchangeRecord, action: &str, outcome: Outcome) -> AuditEvent {
    AuditEvent::new(action, outcome, record.agent.clone())
        .with_writ(record.writ_id.clone())
        .with_task(record.task.clone())
        .with_agent(record.agent.clone())
}

fn vault_error(error: crate::vault::VaultError) -> UpstreamError {
    let detail = error.to_string();
    match error.is_unavailable() {
        true => UpstreamError::Unreachable {
            upstream: "Vault",
            detail,
        },
        false => UpstreamError::Refused {
            upstream: "Vault",
            detail,
        },
    }
}

/// Reads a dynamic secret for `role` and bounds its lease by the writ's remaining life: Vault
/// takes no ttl when reading database credentials, but renewing with a smaller increment
/// shortens the lease (and the database user's validity). If the lease cannot be bounded, it
/// is revoked and nothing is answered.
async fn read_vault_credential(
    store: &crate::store::Store,
    vault: &VaultExchange,
    role: &VaultRole,
    record: ExchangeRecord,
) -> Result<Issued, UpstreamError> {
    let secret = vault
        .client
        .read_dynamic(&role.path)
        .await
        .map_err(vault_error)?;
    let lease = secret.lease_id.clone();
    // Recorded before anything else, so that a broker stopping now leaves a lease it can
    // still revoke; measured after the read, so that the lease ends with the writ, not later.
    let recorded = store.record_pending_handle(&record.id, &lease).await;
    let now = unix_seconds(SystemTime::now());
    let remaining = (record.writ_expires_at - now).max(1);
    let bounded = match recorded {
        Ok(true) => bound_lease(vault, &secret, remaining).await,
        Ok(false) | Err(_) => Err(UpstreamError::Refused {
            upstream: "Vault",
            detail: "the lease could not be recorded".into(),
        }),
    };
    let granted = match bounded {
        Ok(granted) => granted,
        Err(error) => {
            if let Err(undo) = vault.client.revoke_lease(&lease).await {
                tracing::error!(%undo, "a lease that outlived its writ could not be revoked");
            }
            return Err(error);
        }
    };
    let expires_at = now + granted;
    let mut credential = serde_json::Map::new();
    credential.insert("exchange_id".into(), record.id.into());
    credential.insert("lease_duration".into(), granted.into());
    credential.insert("expires_at".into(), crate::time::rfc3339(expires_at).into());
    credential.insert(
        "data".into(),
        serde_json::Value::Object(secret.data.clone()),
    );
    Ok(Issued {
        handle: lease,
        credential: Credential(credential),
        expires_at,
    })
}

/// Shortens the lease of `secret` to at most `remaining` seconds; answers the seconds granted.
async fn bound_lease(
    vault: &VaultExchange,
    secret: &crate::vault::DynamicSecret,
    remaining: i64,
) -> Result<i64, UpstreamError> {
    let current = i64::try_from(secret.lease_duration.as_secs()).unwrap_or(i64::MAX);
    if current <= remaining {
        return Ok(current);
    }
    let increment = std::time::Duration::from_secs(u64::try_from(remaining).unwrap_or(1));
    let granted = vault
        .client
        .renew_lease(&secret.lease_id, increment)
        .await
        .map_err(vault_error)?;
    let granted = i64::try_from(granted.as_secs()).unwrap_or(i64::MAX);
    if granted > remaining {
        return Err(UpstreamError::Refused {
            upstream: "Vault",
            detail: format!(
                "the lease could not be shortened to {remaining}s (granted {granted}s)"
            ),
        });
    }
    Ok(granted)
}
