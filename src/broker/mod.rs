//! The broker's operations, free of HTTP: issuance ([`issue`]) for agents, what admins do
//! ([`admin`]: admin writs and revocation), what auditors read ([`audit`]), the state verifiers
//! and operators read ([`status`]), and the running policy set with its live reload
//! ([`policy`]). Every decision here is written to the audit log.
//!
//! [`Broker`] is the one face the HTTP layer sees: its parts are private, and each operation
//! takes and returns domain values.

mod admin;
mod approval;
mod audit;
mod exchange;
mod issue;
mod login;
mod policy;
mod status;

use std::sync::Arc;
use std::time::SystemTime;

pub use admin::{AdminCallError, AdminWritOrder, RevokeOrder, issue_admin_writ};
pub use approval::{
    APPROVAL_PREFIX, AgentView, ApprovalCallError, Approvals, ApproverView, ElevatedWrit, MAX_WAIT,
    RawApprovalRequest, RawDecision,
};
pub use exchange::{ExchangeError, Exchanged, Exchanges, VaultExchange};
pub use issue::{IssueError, Issued};
pub use login::{Callback, LoggedIn, LoginStart, MAX_CALLBACK_PARAM};
pub use policy::{
    ExplainAnswer, ExplainError, Policies, PolicyStatus, RawExplain, ReloadFailure, ReloadTrigger,
};
pub use status::NotReady;

use crate::audit::{AuditEvent, RefusalTally, UNKNOWN_ISSUER};
use crate::error::ErrorCode;
use crate::identity::IdentityVerifier;
use crate::keys::Keys;
use crate::revocation::{Limits, RevocationView};
use crate::store::Store;
use crate::time::unix_ms;

/// Everything the operations need, shared by every request.
pub struct Broker {
    identities: IdentityVerifier,
    /// The running policy set, swapped whole on reload.
    policies: Policies,
    keys: Arc<Keys>,
    store: Store,
    revocations: Arc<RevocationView>,
    limits: Limits,
    /// Refusals of credentials that never verified, written as counts per window.
    refusals: RefusalTally,
    approvals: Approvals,
    /// Exchanging writs for native credentials, where configured.
    exchanges: Exchanges,
}

impl Broker {
    pub fn new(
        identities: IdentityVerifier,
        policies: Policies,
        keys: Arc<Keys>,
        store: Store,
        revocations: Arc<RevocationView>,
        limits: Limits,
        approvals: Approvals,
    ) -> Broker {
        Broker {
            identities,
            policies,
            keys,
            store,
            revocations,
            limits,
            refusals: RefusalTally::default(),
            approvals,
            exchanges: Exchanges::none(),
        }
    }

    /// The broker exchanging writs as `exchanges` says (none by default).
    pub fn with_exchanges(mut self, exchanges: Exchanges) -> Broker {
        self.exchanges = exchanges;
        self
    }

    /// Counts a request refused before any credential could be read (none sent, or not
    /// `Bearer`), as refusals of unverified credentials are.
    pub fn count_unauthenticated(&self, action: &'static str, code: ErrorCode) {
        self.refusals.count(
            action,
            UNKNOWN_ISSUER,
            code.name,
            unix_ms(SystemTime::now()),
        );
    }

    /// Writes the refusals counted since the last call, one event per action, issuer and code
    /// with its exact count. Counts that cannot be written are kept for the next call.
    pub async fn flush_refusals(&self) {
        let Some(window) = self.refusals.take(unix_ms(SystemTime::now())) else {
            return;
        };
        if let Err(error) = self.store.append_audit_events(window.events()).await {
            tracing::warn!(%error, "refusal counts not recorded yet; kept for the next window");
            self.refusals.restore(window);
        }
    }

    /// Appends an event whose failure must not change the answer (a refusal is a refusal
    /// whether or not it could be recorded); the failure is logged loudly instead.
    async fn audit_best_effort(&self, event: AuditEvent) {
        let action = event.action.clone();
        if let Err(error) = self.store.append_audit(event).await {
            tracing::error!(%error, %action, "audit event could not be recorded");
        }
    }
}
