//! Storage behind one interface: the broker's domain calls [`Store`] and never sees SQL. SQLite is
//! the embedded default (one file, one broker); PostgreSQL serves several broker replicas. The
//! backend is chosen by the URL scheme at start; each has its own migrations under `migrations/`.
//!
//! Every write appends to the audit chain, and every write transaction first takes the chain's
//! lock (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a transaction-scoped advisory lock), reads the
//! chain head and links its events to it. So there is one chain however many replicas write,
//! an issuance record and its audit event commit together or not at all, and revocation
//! sequence numbers are assigned in commit order (a feed reader never skips one).
//!
//! The logic is written once here against [`backend::Transaction`]; the backends supply the
//! statements.

mod approvals;
mod backend;
mod exchanges;
mod postgres;
mod rows;
mod sessions;
mod sqlite;
mod statements;
mod writer;

use std::sync::Arc;
use std::time::SystemTime;

use crate::audit::{AuditEvent, ChainHash, ChainedEvent, Checkpoint};
use crate::error::{DomainError, ErrorCode, codes};
use crate::revocation::{
    Change, Revocation, RevocationOutcome, RevocationSource, Target, TargetState,
};
use crate::time::unix_seconds;
use backend::{Backend, Transaction};
use writer::Writer;

pub use approvals::{ApprovalChange, ApprovalQuery, ListedApproval, NotifyStatus};
pub use exchanges::{EXCHANGE_PAGE, LiveExchange, Reservation};
pub use sessions::MAX_SESSIONS_PER_PRINCIPAL;

pub use crate::policy::RightRecord;

/// The durable record of an issued writ (never the writ itself: it is a bearer credential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedWrit {
    pub writ_id: String,
    pub agent: String,
    pub task: String,
    pub issuer: String,
    pub subject: String,
    pub rights: Vec<RightRecord>,
    pub services: Vec<String>,
    pub root_key_id: u32,
    /// Hex revocation id of the authority block; revoking it revokes every attenuation.
    pub revocation_id: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// The hash of the policy set that allowed it (`None` for writs issued before it was
    /// recorded).
    pub policy_hash: Option<String>,
}

/// The durable record of an admin writ (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedAdminWrit {
    pub writ_id: String,
    pub principal: String,
    pub roles: Vec<String>,
    pub issued_by: String,
    pub root_key_id: u32,
    pub revocation_id: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// Which audit events to read. Every filter is optional; results are in chain order.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only events after this chain position (the pagination cursor).
    pub after: u64,
    pub limit: u32,
    pub agent: Option<String>,
    pub task: Option<String>,
    pub writ_id: Option<String>,
    pub action: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since_ms: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub until_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("a writ with id {0} is already recorded")]
    Duplicate(String),
    #[error("the database writer has stopped")]
    WriterStopped,
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

impl DomainError for StoreError {
    fn code(&self) -> ErrorCode {
        codes::STORAGE_UNAVAILABLE
    }

    fn public_detail(&self) -> String {
        "the change could not be recorded (or read), so it was not made; retry later".to_owned()
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Unavailable(error)
    }
}

/// The broker's storage: one handle, cheap to share.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    writer: Arc<Writer>,
}

/// Connects to the database named by `url` (a SQLite file is created if missing) and applies
/// pending migrations.
pub async fn connect(url: &str) -> Result<Store, StoreError> {
    open(url, true).await
}

/// Connects to a database that must already exist: for the CLI, where a mistyped path must be
/// an error, not a new empty database.
pub async fn connect_existing(url: &str) -> Result<Store, StoreError> {
    open(url, false).await
}

async fn open(url: &str, create: bool) -> Result<Store, StoreError> {
    let backend: Arc<dyn Backend> = if url.starts_with("sqlite:") {
        Arc::new(sqlite::SqliteBackend::connect(url, create).await?)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Arc::new(postgres::PostgresBackend::connect(url).await?)
    } else {
        return Err(StoreError::UnsupportedUrl);
    };
    let writer = Arc::new(Writer::start(Arc::clone(&backend)));
    Ok(Store { backend, writer })
}

impl Store {
    /// Records an issued writ and its audit event in one transaction. Returns only after the
    /// commit: no record, no event, no writ.
    pub async fn record_issued(
        &self,
        writ: &IssuedWrit,
        event: AuditEvent,
    ) -> Result<u64, StoreError> {
        self.writer.commit(Some(writ.clone()), event).await
    }

    /// Appends one audit event; returns its chain position after the commit.
    pub async fn append_audit(&self, event: AuditEvent) -> Result<u64, StoreError> {
        self.writer.commit(None, event).await
    }

    /// Appends several audit events in one transaction, in order.
    pub async fn append_audit_events(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_write().await?;
        append_all(tx.as_mut(), events).await?;
        tx.commit().await
    }

    /// Reads one issued writ's record.
    pub async fn issued_writ(&self, writ_id: &str) -> Result<Option<IssuedWrit>, StoreError> {
        self.backend.begin_read().await?.writ(writ_id).await
    }

    /// Records an admin writ and its audit event in one transaction.
    pub async fn record_admin_writ(
        &self,
        writ: &IssuedAdminWrit,
        event: AuditEvent,
    ) -> Result<u64, StoreError> {
        let mut tx = self.backend.begin_write().await?;
        tx.insert_admin_writ(writ).await?;
        let seq = append(tx.as_mut(), event).await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// Changes the revocation entries of `target` under the lock that orders them: reads what
    /// the rules need ([`TargetState`], with the clock read under the lock so that every writ
    /// committed before is covered), lets `rule` decide, writes the entry it puts, and appends
    /// `event` (built from the outcome) in the same transaction. The rule's refusal rolls back.
    pub async fn change_revocation<E: From<StoreError>>(
        &self,
        target: &Target,
        not_before: SystemTime,
        rule: impl FnOnce(TargetState) -> Result<Change, E> + Send,
        event: impl FnOnce(&RevocationOutcome) -> AuditEvent + Send,
    ) -> Result<RevocationOutcome, E> {
        let mut tx = self.backend.begin_write().await?;
        let now = unix_seconds(SystemTime::now()).max(unix_seconds(not_before));
        let state = TargetState {
            now,
            next_seq: tx.revocation_head().await? + 1,
            writ: match target {
                Target::Writ(writ_id) => tx.writ_revocation_id(writ_id).await?,
                Target::Task(_) | Target::Agent(_) => None,
            },
            newest_issue: match target {
                Target::Writ(_) => None,
                Target::Task(_) | Target::Agent(_) => tx.newest_issue(target).await?,
            },
            latest: tx.latest_revocation(target).await?,
        };
        let change = rule(state)?;
        if let Change::Put(revocation) = &change {
            tx.put_revocation(revocation).await?;
        }
        let outcome = RevocationOutcome {
            live_writs: tx.count_live(target, now).await?,
            created: matches!(change, Change::Put(_)),
            revocation: match change {
                Change::Put(revocation) | Change::Unchanged(revocation) => revocation,
            },
        };
        append(tx.as_mut(), event(&outcome)).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Audit events matching `query`, in chain order.
    pub async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<ChainedEvent>, StoreError> {
        self.backend.begin_read().await?.audit_events(query).await
    }

    /// The chain's last position and hash (`(0, GENESIS)` for an empty log).
    pub async fn audit_head(&self) -> Result<(u64, ChainHash), StoreError> {
        self.backend.begin_read().await?.audit_head().await
    }

    pub async fn record_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_read().await?;
        tx.insert_checkpoint(checkpoint).await?;
        tx.commit().await
    }

    /// Signed checkpoints, oldest first.
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.backend.begin_read().await?.checkpoints().await
    }

    /// Checks the database answers (for readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.backend.ping().await
    }
}

/// The revocation view reads entries from the store; PostgreSQL's LISTEN/NOTIFY wakes it when
/// another replica revokes (SQLite has no such channel: the view polls).
impl RevocationSource for Store {
    type Error = StoreError;

    async fn revocations_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Revocation>, StoreError> {
        self.backend
            .begin_read()
            .await?
            .revocations_after(after, limit)
            .await
    }

    fn watch(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        self.backend.watch_revocations()
    }
}

/// Appends `event` to the chain inside `tx` (which holds the chain lock).
async fn append(tx: &mut dyn Transaction, event: AuditEvent) -> Result<u64, StoreError> {
    let seqs = append_all(tx, vec![event]).await?;
    Ok(seqs.first().copied().unwrap_or_default())
}

/// Appends `events` in order inside `tx` (which holds the chain lock), reading the head once;
/// returns their chain positions.
async fn append_all(
    tx: &mut dyn Transaction,
    events: Vec<AuditEvent>,
) -> Result<Vec<u64>, StoreError> {
    let mut head = tx.audit_head().await?;
    let mut seqs = Vec::with_capacity(events.len());
    for event in events {
        let chained = ChainedEvent::after(head, event);
        tx.insert_audit(&chained).await?;
        head = (chained.seq, chained.hash);
        seqs.push(chained.seq);
    }
    Ok(seqs)
}
