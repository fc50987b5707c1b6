//! What auditors read: audit events and signed checkpoints. Every read is itself audited.

use serde_json::json;

use super::{AdminCallError, Broker};
use crate::admin::AdminCredential;
use crate::audit::{AuditEvent, ChainedEvent, Checkpoint, Outcome, actions};
use crate::store::AuditQuery;

impl Broker {
    /// Audit events for an auditor; the read itself is audited.
    pub async fn read_audit(
        &self,
        auditor: &AdminCredential,
        query: &AuditQuery,
    ) -> Result<Vec<ChainedEvent>, AdminCallError> {
        let events = self.store.audit_events(query).await?;
        let read = AuditEvent::new(
            actions::AUDIT_READ,
            Outcome::Success,
            auditor.principal.as_str(),
        )
        .with_details(json!({
            "after": query.after, "limit": query.limit, "agent": query.agent,
            "task": query.task, "writ_id": query.writ_id, "action": query.action,
            "since_ms": query.since_ms, "until_ms": query.until_ms, "returned": events.len(),
        }));
        self.store.append_audit(read).await?;
        Ok(events)
    }

    /// A further page of a read already audited by [`Broker::read_audit`] (an export streams
    /// every page of one read).
    pub async fn continue_audit_read(
        &self,
        query: &AuditQuery,
    ) -> Result<Vec<ChainedEvent>, AdminCallError> {
        Ok(self.store.audit_events(query).await?)
    }

    /// The signed checkpoints for an auditor; the read is audited.
    pub async fn checkpoints(
        &self,
        auditor: &AdminCredential,
    ) -> Result<Vec<Checkpoint>, AdminCallError> {
        let checkpoints = self.store.checkpoints().await?;
        let read = AuditEvent::new(
            actions::AUDIT_READ,
            Outcome::Success,
            auditor.principal.as_str(),
        )
        .with_details(json!({ "checkpoints": checkpoints.len() }));
        self.store.append_audit(read).await?;
        Ok(checkpoints)
    }
}
