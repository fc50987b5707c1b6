//! The broker's operations, free of HTTP: issuance ([`issue`]) for agents, and what admins,
//! auditors and operators do ([`admin`]). Every decision here is written to the audit log.

mod admin;
mod issue;

use std::sync::Arc;

pub use admin::{AdminCallError, AdminWritOrder, RevokeRequest, issue_admin_writ};
pub use issue::{IssueError, IssuedWritResponse};

use crate::audit::AuditEvent;
use crate::identity::IdentityVerifier;
use crate::keys::Keys;
use crate::policy::PolicySet;
use crate::revocation::Registry;
use crate::store::Store;

/// Everything the operations need, shared by every request.
pub struct Broker {
    pub identities: IdentityVerifier,
    pub policies: PolicySet,
    pub keys: Arc<Keys>,
    pub store: Store,
    pub revocations: Arc<Registry>,
}

impl Broker {
    /// Appends an event whose failure must not change the answer (a refusal is a refusal
    /// whether or not it could be recorded); the failure is logged loudly instead.
    async fn audit_best_effort(&self, event: AuditEvent) {
        let action = event.action.clone();
        if let Err(error) = self.store.append_audit(event).await {
            tracing::error!(%error, %action, "audit event could not be recorded");
        }
    }
}
