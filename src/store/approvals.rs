//! Approval requests and their decisions. Every change runs under the chain lock with its audit
//! events, and the rules deciding it run inside that transaction (see `approval::rules`): two
//! approvers deciding at once are ordered, so quorum is reached exactly once, and two agents'
//! fetches of an approved request are ordered, so its writ is collected exactly once.

use async_trait::async_trait;
use sqlx::{Postgres, Sqlite};

use super::rows::{Row, encode_json};
use super::statements::Tx;
use super::{IssuedWrit, Store, StoreError, append_all};
use crate::approval::{ApprovalRequest, DecisionRecord, Status};
use crate::audit::AuditEvent;

/// Which requests to list.
#[derive(Debug, Clone)]
pub struct ApprovalQuery {
    /// `None` lists every status.
    pub status: Option<Status>,
    /// Only requests created before this one (the pagination cursor: created_at, id).
    pub before: Option<(i64, String)>,
    pub limit: u32,
}

/// Where a request's webhook delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyStatus {
    /// No webhook is configured.
    None,
    Pending,
    Delivered,
    Failed,
}

impl NotifyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyStatus::None => "none",
            NotifyStatus::Pending => "pending",
            NotifyStatus::Delivered => "delivered",
            NotifyStatus::Failed => "failed",
        }
    }
}

/// A request as listed, with its notification state.
#[derive(Debug, Clone)]
pub struct ListedApproval {
    pub request: ApprovalRequest,
    pub notify_status: String,
    pub notify_attempts: u32,
}

const INSERT: &str = "INSERT INTO approval_requests (id, agent, issuer, subject, task, \
    requested_rights, rights, services, ttl, justification, policy, approvers, quorum, \
    created_at, expires_at, status, decided_at, writ_id, notify_status, notify_attempts, \
    policy_hash) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
    $19, 0, $20)";

const UPDATE: &str = "UPDATE approval_requests SET rights = $2, ttl = $3, status = $4, \
    decided_at = $5, writ_id = $6 WHERE id = $1";

const INSERT_DECISION: &str = "INSERT INTO approval_decisions (request_id, approver, via, \
    verdict, reason, narrowed_to, decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

const LIST: &str = "SELECT * FROM approval_requests WHERE ($1 IS NULL OR status = $1) \
    AND ($2 IS NULL OR created_at < $2 OR (created_at = $2 AND id < $3)) \
    ORDER BY created_at DESC, id DESC LIMIT $4";

#[async_trait]
pub(super) trait ApprovalStatements: Send {
    async fn insert_approval(
        &mut self,
        request: &ApprovalRequest,
        notify: NotifyStatus,
    ) -> Result<(), StoreError>;
    async fn approval(&mut self, id: &str) -> Result<Option<ListedApproval>, StoreError>;
    /// The decisions on request `id`, in the order they were made.
    async fn decisions(&mut self, id: &str) -> Result<Vec<DecisionRecord>, StoreError>;
    async fn update_approval(&mut self, request: &ApprovalRequest) -> Result<(), StoreError>;
    async fn insert_decision(
        &mut self,
        request_id: &str,
        decision: &DecisionRecord,
    ) -> Result<(), StoreError>;
    async fn pending_approvals_of(&mut self, agent: &str, now: i64) -> Result<u64, StoreError>;
    async fn list_approvals(
        &mut self,
        query: &ApprovalQuery,
    ) -> Result<Vec<ListedApproval>, StoreError>;
    async fn expired_pending(&mut self, now: i64, limit: u32) -> Result<Vec<String>, StoreError>;
    async fn set_notify(
        &mut self,
        id: &str,
        status: NotifyStatus,
        attempts: u32,
    ) -> Result<(), StoreError>;
}

macro_rules! impl_approval_statements {
    ($db:ty) => {
        #[async_trait]
        impl ApprovalStatements for Tx<$db> {
            async fn insert_approval(
                &mut self,
                r: &ApprovalRequest,
                notify: NotifyStatus,
            ) -> Result<(), StoreError> {
                sqlx::query(INSERT)
                    .bind(&r.id)
                    .bind(&r.agent)
                    .bind(&r.issuer)
                    .bind(&r.subject)
                    .bind(&r.task)
                    .bind(encode_json(&r.requested_rights)?)
                    .bind(encode_json(&r.rights)?)
                    .bind(encode_json(&r.services)?)
                    .bind(i64::try_from(r.ttl).unwrap_or(i64::MAX))
                    .bind(&r.justification)
                    .bind(&r.policy)
                    .bind(encode_json(&r.approvers)?)
                    .bind(i64::from(r.quorum))
                    .bind(r.created_at)
                    .bind(r.expires_at)
                    .bind(r.status.as_str())
                    .bind(r.decided_at)
                    .bind(&r.writ_id)
                    .bind(notify.as_str())
                    .bind(&r.policy_hash)
                    .execute(&mut *self.inner)
                    .await?;
                Ok(())
            }

            async fn approval(&mut self, id: &str) -> Result<Option<ListedApproval>, StoreError> {
                let row = sqlx::query("SELECT * FROM approval_requests WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.inner)
                    .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let mut listed = decode(&row)?;
                listed.request.decisions = self.decisions(id).await?;
                Ok(Some(listed))
            }

            async fn decisions(&mut self, id: &str) -> Result<Vec<DecisionRecord>, StoreError> {
                let found = sqlx::query(
                    "SELECT * FROM approval_decisions WHERE request_id = $1 \
                     ORDER BY decided_at, approver",
                )
                .bind(id)
                .fetch_all(&mut *self.inner)
                .await?;
                found.iter().map(decode_decision).collect()
            }

            async fn update_approval(&mut self, r: &ApprovalRequest) -> Result<(), StoreError> {
                sqlx::query(UPDATE)
                    .bind(&r.id)
                    .bind(encode_json(&r.rights)?)
                    .bind(i64::try_from(r.ttl).unwrap_or(i64::MAX))
                    .bind(r.status.as_str())
                    .bind(r.decided_at)
                    .bind(&r.writ_id)
                    .execute(&mut *self.inner)
                    .await?;
                Ok(())
            }

            async fn insert_decision(
                &mut self,
                request_id: &str,
                d: &DecisionRecord,
            ) -> Result<(), StoreError> {
                let narrowed = d.narrowed_to.as_ref().map(encode_json).transpose()?;
                sqlx::query(INSERT_DECISION)
                    .bind(request_id)
                    .bind(&d.approver)
                    .bind(crate::approval::rules::via_name(d.via))
                    .bind(d.verdict.as_str())
                    .bind(&d.reason)
                    .bind(narrowed)
                    .bind(d.decided_at)
                    .execute(&mut *self.inner)
                    .await?;
                Ok(())
            }

            async fn pending_approvals_of(
                &mut self,
                agent: &str,
                now: i64,
            ) -> Result<u64, StoreError> {
                let row = sqlx::query(
                    "SELECT COUNT(*) AS pending FROM approval_requests \
                     WHERE agent = $1 AND status = 'pending' AND expires_at > $2",
                )
                .bind(agent)
                .bind(now)
                .fetch_one(&mut *self.inner)
                .await?;
                row.unsigned("pending")
            }

            async fn list_approvals(
                &mut self,
                q: &ApprovalQuery,
            ) -> Result<Vec<ListedApproval>, StoreError> {
                let found = sqlx::query(LIST)
                    .bind(q.status.map(|s| s.as_str()))
                    .bind(q.before.as_ref().map(|(at, _)| *at))
                    .bind(q.before.as_ref().map(|(_, id)| id.clone()))
                    .bind(i64::from(q.limit))
                    .fetch_all(&mut *self.inner)
                    .await?;
                let mut listed: Vec<ListedApproval> =
                    found.iter().map(decode).collect::<Result<_, _>>()?;
                // Each with its decisions: what approvers read (approvals so far, whether they
                // decided) depends on them. A page holds at most 100 requests.
                for entry in &mut listed {
                    entry.request.decisions = self.decisions(&entry.request.id).await?;
                }
                Ok(listed)
            }

            async fn expired_pending(
                &mut self,
                now: i64,
                limit: u32,
            ) -> Result<Vec<String>, StoreError> {
                let found = sqlx::query(
                    "SELECT id FROM approval_requests WHERE status = 'pending' \
                     AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
                )
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.inner)
                .await?;
                found.iter().map(|row| row.text("id")).collect()
            }

            async fn set_notify(
                &mut self,
                id: &str,
                status: NotifyStatus,
                attempts: u32,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE approval_requests SET notify_status = $2, notify_attempts = $3 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(status.as_str())
                .bind(i64::from(attempts))
                .execute(&mut *self.inner)
                .await?;
                Ok(())
            }
        }
    };
}

impl_approval_statements!(Sqlite);
impl_approval_statements!(Postgres);

fn json<T: for<'de> serde::Deserialize<'de>>(
    row: &impl Row,
    column: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(&row.text(column)?)
        .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn decode(row: &impl Row) -> Result<ListedApproval, StoreError> {
    let corrupt = |column: &str, e: String| StoreError::Corrupt(format!("{column}: {e}"));
    let request = ApprovalRequest {
        id: row.text("id")?,
        agent: row.text("agent")?,
        issuer: row.text("issuer")?,
        subject: row.text("subject")?,
        task: row.text("task")?,
        requested_rights: json(row, "requested_rights")?,
        rights: json(row, "rights")?,
        services: json(row, "services")?,
        ttl: row.unsigned("ttl")?,
        justification: row.text("justification")?,
        policy: row.text("policy")?,
        policy_hash: row.optional_text("policy_hash")?,
        approvers: json(row, "approvers")?,
        quorum: u32::try_from(row.int("quorum")?).map_err(|e| corrupt("quorum", e.to_string()))?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        status: row
            .text("status")?
            .parse()
            .map_err(|e| corrupt("status", e))?,
        decided_at: row.optional_int("decided_at")?,
        decisions: Vec::new(),
        writ_id: row.optional_text("writ_id")?,
    };
    Ok(ListedApproval {
        request,
        notify_status: row.text("notify_status")?,
        notify_attempts: u32::try_from(row.int("notify_attempts")?).unwrap_or(u32::MAX),
    })
}

fn decode_decision(row: &impl Row) -> Result<DecisionRecord, StoreError> {
    let corrupt = |column: &str, e: String| StoreError::Corrupt(format!("{column}: {e}"));
    let via = match row.text("via")?.as_str() {
        "login" => crate::approval::Via::Login,
        "admin_writ" => crate::approval::Via::AdminWrit,
        other => return Err(corrupt("via", other.to_owned())),
    };
    Ok(DecisionRecord {
        approver: row.text("approver")?,
        via,
        verdict: row
            .text("verdict")?
            .parse()
            .map_err(|e| corrupt("verdict", e))?,
        reason: row.text("reason")?,
        narrowed_to: row
            .optional_text("narrowed_to")?
            .map(|text| {
                serde_json::from_str(&text).map_err(|e| corrupt("narrowed_to", e.to_string()))
            })
            .transpose()?,
        decided_at: row.int("decided_at")?,
    })
}

impl Store {
    /// Opens `request` after `admit` accepted the agent's count of pending requests, with
    /// `event`, in one transaction.
    pub async fn open_approval<E: From<StoreError>>(
        &self,
        request: &ApprovalRequest,
        notify: NotifyStatus,
        admit: impl FnOnce(u64) -> Result<(), E> + Send,
        event: AuditEvent,
    ) -> Result<(), E> {
        let mut tx = self.backend.begin_write().await?;
        admit(
            tx.pending_approvals_of(&request.agent, request.created_at)
                .await?,
        )?;
        tx.insert_approval(request, notify).await?;
        append_all(tx.as_mut(), vec![event]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A request with its decisions.
    pub async fn approval(&self, id: &str) -> Result<Option<ListedApproval>, StoreError> {
        self.backend.begin_read().await?.approval(id).await
    }

    /// Requests matching `query`, newest first, with their decisions.
    pub async fn approvals(
        &self,
        query: &ApprovalQuery,
    ) -> Result<Vec<ListedApproval>, StoreError> {
        let mut tx = self.backend.begin_read().await?;
        let mut listed = tx.list_approvals(query).await?;
        for entry in &mut listed {
            entry.request.decisions = tx.decisions(&entry.request.id).await?;
        }
        Ok(listed)
    }

    /// Changes request `id` under the chain lock: `rule` sees it as stored (`None` when there
    /// is no such request) and answers the request as it must become, the decision to record
    /// (if any), the events to append, and a value for the caller. Nothing is written when the
    /// rule refuses.
    pub async fn change_approval<E, T>(
        &self,
        id: &str,
        rule: impl FnOnce(Option<ApprovalRequest>) -> Result<ApprovalChange<T>, E> + Send,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
        T: Send,
    {
        let mut tx = self.backend.begin_write().await?;
        let current = tx.approval(id).await?.map(|listed| listed.request);
        let change = rule(current)?;
        if let Some(decision) = &change.decision {
            tx.insert_decision(id, decision).await?;
        }
        if let Some(request) = &change.request {
            tx.update_approval(request).await?;
        }
        if let Some(writ) = &change.writ {
            tx.insert_writ(writ).await?;
        }
        append_all(tx.as_mut(), change.events).await?;
        tx.commit().await?;
        Ok(change.value)
    }

    /// Marks up to `limit` pending requests past their deadline expired, each with the event
    /// `event` builds; returns their ids.
    pub async fn expire_approvals(
        &self,
        now: i64,
        limit: u32,
        event: impl Fn(&ApprovalRequest) -> AuditEvent + Send,
    ) -> Result<Vec<String>, StoreError> {
        // Looked for without the chain lock first: most seconds there are none.
        let due = self
            .backend
            .begin_read()
            .await?
            .expired_pending(now, 1)
            .await?;
        if due.is_empty() {
            return Ok(due);
        }
        let mut tx = self.backend.begin_write().await?;
        let ids = tx.expired_pending(now, limit).await?;
        let mut events = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(listed) = tx.approval(id).await? {
                let mut request = listed.request;
                request.status = Status::Expired;
                tx.update_approval(&request).await?;
                events.push(event(&request));
            }
        }
        append_all(tx.as_mut(), events).await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// Records a webhook delivery attempt's outcome and its event.
    pub async fn record_notification(
        &self,
        id: &str,
        status: NotifyStatus,
        attempts: u32,
        event: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_write().await?;
        tx.set_notify(id, status, attempts).await?;
        append_all(tx.as_mut(), vec![event]).await?;
        tx.commit().await
    }
}

/// What [`Store::change_approval`] writes.
pub struct ApprovalChange<T> {
    /// The request as it must become.
    pub request: Option<ApprovalRequest>,
    pub decision: Option<DecisionRecord>,
    /// An elevated writ issued by this change.
    pub writ: Option<IssuedWrit>,
    pub events: Vec<AuditEvent>,
    pub value: T,
}
