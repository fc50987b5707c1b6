//! What a database must offer the store: transactions and the statements run in them. The
//! statements are the same SQL for both backends (see `statements`); only connecting, locking
//! the chain and the notification channel differ.

use async_trait::async_trait;

use super::{AuditQuery, IssuedAdminWrit, IssuedWrit, StoreError};
use crate::audit::{ChainHash, ChainedEvent, Checkpoint};
use crate::revocation::{Revocation, Target};

#[async_trait]
pub(super) trait Backend: Send + Sync + 'static {
    /// A write transaction holding the audit chain's lock until it ends.
    async fn begin_write(&self) -> Result<Box<dyn Transaction>, StoreError>;
    /// A transaction for reads (and for writes that need no ordering, such as checkpoints).
    async fn begin_read(&self) -> Result<Box<dyn Transaction>, StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
    /// A channel woken when another process commits a revocation, where the database has one.
    fn watch_revocations(&self) -> Option<tokio::sync::mpsc::Receiver<()>>;
}

/// Statements run inside one transaction. Dropping it without `commit` rolls back.
#[async_trait]
pub(super) trait Transaction:
    super::approvals::ApprovalStatements
    + super::exchanges::ExchangeStatements
    + super::sessions::SessionStatements
    + Send
{
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;

    async fn insert_writ(&mut self, writ: &IssuedWrit) -> Result<(), StoreError>;
    async fn writ(&mut self, writ_id: &str) -> Result<Option<IssuedWrit>, StoreError>;
    async fn insert_admin_writ(&mut self, writ: &IssuedAdminWrit) -> Result<(), StoreError>;
    /// The revocation id and expiry of an agent or admin writ.
    async fn writ_revocation_id(
        &mut self,
        writ_id: &str,
    ) -> Result<Option<(String, i64)>, StoreError>;

    /// The chain's last position and hash, `(0, GENESIS)` when empty.
    async fn audit_head(&mut self) -> Result<(u64, ChainHash), StoreError>;
    async fn insert_audit(&mut self, event: &ChainedEvent) -> Result<(), StoreError>;
    async fn audit_events(&mut self, query: &AuditQuery) -> Result<Vec<ChainedEvent>, StoreError>;
    async fn insert_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), StoreError>;
    async fn checkpoints(&mut self) -> Result<Vec<Checkpoint>, StoreError>;

    /// The highest revocation seq, 0 when there is none.
    async fn revocation_head(&mut self) -> Result<u64, StoreError>;
    async fn latest_revocation(
        &mut self,
        target: &Target,
    ) -> Result<Option<Revocation>, StoreError>;
    /// Inserts the entry, or replaces the one with the same id (and announces it).
    async fn put_revocation(&mut self, revocation: &Revocation) -> Result<(), StoreError>;
    async fn revocations_after(
        &mut self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Revocation>, StoreError>;
    /// The newest `issued_at` among writs of a task or agent target.
    async fn newest_issue(&mut self, target: &Target) -> Result<Option<i64>, StoreError>;
    /// Writs of the target not yet expired at `now` (unix seconds).
    async fn count_live(&mut self, target: &Target, now: i64) -> Result<u64, StoreError>;
}
