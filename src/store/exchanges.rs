//! Exchanges of writs for native credentials (see `exchange`). A row is reserved (`pending`)
//! under the chain lock before the upstream is asked, so two calls for the same writ and target
//! never both reach it; it becomes `issued` with its audit event in one transaction, or is
//! deleted with the event saying why nothing was issued.

use async_trait::async_trait;
use sqlx::{Postgres, Sqlite};

use super::rows::Row;
use super::statements::Tx;
use super::{Store, StoreError, append_all};
use crate::audit::AuditEvent;
use crate::exchange::{ExchangeKind, ExchangeRecord, ExchangeState};

/// Live exchanges read per page by the revocation pass.
pub const EXCHANGE_PAGE: u32 = 500;

const INSERT: &str = "INSERT INTO exchanges (id, writ_id, agent, task, kind, target, scope, \
    state, handle, sealed, sealing_kid, created_at, expires_at, writ_expires_at, withdrawn_at, \
    withdraw_error, deny_until, deny_removed_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)";

const ISSUE: &str = "UPDATE exchanges SET state = 'issued', handle = $2, sealed = $3, \
    sealing_kid = $4, expires_at = $5 WHERE id = $1 AND state = 'pending'";

const WITHDRAW: &str = "UPDATE exchanges SET state = 'withdrawn', withdrawn_at = $2, \
    withdraw_error = NULL, sealed = NULL, deny_until = $3 WHERE id = $1 AND state = 'issued'";

/// A live exchange with what the revocation pass needs of its writ.
#[derive(Debug)]
pub struct LiveExchange {
    pub record: ExchangeRecord,
    /// Unix seconds; 0 when the writ's record is missing (every task or agent revocation then
    /// covers it: missing records fail closed).
    pub writ_issued_at: i64,
    /// The authority block's revocation id, empty when the writ's record is missing.
    pub writ_revocation_id: String,
}

const LIVE: &str = "SELECT e.*, COALESCE(w.issued_at, 0) AS writ_issued_at, \
    COALESCE(w.revocation_id, '') AS writ_revocation_id \
    FROM exchanges e LEFT JOIN writs w ON w.writ_id = e.writ_id \
    WHERE e.state = 'issued' AND e.expires_at > $1 AND e.id > $2 ORDER BY e.id LIMIT $3";

/// What reserving an exchange found.
#[derive(Debug)]
pub enum Reservation {
    /// The row was inserted as `pending`: this call asks the upstream.
    Reserved,
    /// The writ was already exchanged (or is being exchanged) for this target.
    Existing(Box<ExchangeRecord>),
}

#[async_trait]
pub(super) trait ExchangeStatements: Send {
    async fn insert_exchange(&mut self, record: &ExchangeRecord) -> Result<(), StoreError>;
    async fn exchange_for(
        &mut self,
        writ_id: &str,
        kind: ExchangeKind,
        target: &str,
    ) -> Result<Option<ExchangeRecord>, StoreError>;
    async fn exchange(&mut self, id: &str) -> Result<Option<ExchangeRecord>, StoreError>;
    async fn mark_issued(&mut self, record: &ExchangeRecord) -> Result<u64, StoreError>;
    async fn delete_pending(&mut self, id: &str) -> Result<u64, StoreError>;
    async fn mark_withdrawn(
        &mut self,
        id: &str,
        at: i64,
        deny_until: Option<i64>,
    ) -> Result<u64, StoreError>;
    async fn set_withdraw_error(&mut self, id: &str, error: &str) -> Result<(), StoreError>;
    async fn set_pending_handle(&mut self, id: &str, handle: &str) -> Result<u64, StoreError>;
    async fn stale_pending(
        &mut self,
        created_before: i64,
        limit: u32,
    ) -> Result<Vec<ExchangeRecord>, StoreError>;
    async fn close_pending(
        &mut self,
        id: &str,
        at: i64,
        deny_until: i64,
    ) -> Result<u64, StoreError>;
    async fn live_exchanges(
        &mut self,
        now: i64,
        after_id: &str,
        limit: u32,
    ) -> Result<Vec<LiveExchange>, StoreError>;
    async fn aws_denies(&mut self, limit: u32) -> Result<Vec<ExchangeRecord>, StoreError>;
    async fn mark_deny_removed(&mut self, id: &str, at: i64) -> Result<(), StoreError>;
}

macro_rules! impl_exchange_statements {
    ($db:ty) => {
        #[async_trait]
        impl ExchangeStatements for Tx<$db> {
            async fn insert_exchange(&mut self, r: &ExchangeRecord) -> Result<(), StoreError> {
                sqlx::query(INSERT)
                    .bind(&r.id)
                    .bind(&r.writ_id)
                    .bind(&r.agent)
                    .bind(&r.task)
                    .bind(r.kind.as_str())
                    .bind(&r.target)
                    .bind(&r.scope)
                    .bind(r.state.as_str())
                    .bind(&r.handle)
                    .bind(&r.sealed)
                    .bind(r.sealing_kid.map(i64::from))
                    .bind(r.created_at)
                    .bind(r.expires_at)
                    .bind(r.writ_expires_at)
                    .bind(r.withdrawn_at)
                    .bind(&r.withdraw_error)
                    .bind(r.deny_until)
                    .bind(r.deny_removed_at)
                    .execute(&mut *self.inner)
                    .await?;
                Ok(())
            }

            async fn exchange_for(
                &mut self,
                writ_id: &str,
                kind: ExchangeKind,
                target: &str,
            ) -> Result<Option<ExchangeRecord>, StoreError> {
                let row = sqlx::query(
                    "SELECT * FROM exchanges WHERE writ_id = $1 AND kind = $2 AND target = $3",
                )
                .bind(writ_id)
                .bind(kind.as_str())
                .bind(target)
                .fetch_optional(&mut *self.inner)
                .await?;
                row.as_ref().map(decode).transpose()
            }

            async fn exchange(&mut self, id: &str) -> Result<Option<ExchangeRecord>, StoreError> {
                let row = sqlx::query("SELECT * FROM exchanges WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.inner)
                    .await?;
                row.as_ref().map(decode).transpose()
            }

            async fn mark_issued(&mut self, r: &ExchangeRecord) -> Result<u64, StoreError> {
                let done = sqlx::query(ISSUE)
                    .bind(&r.id)
                    .bind(&r.handle)
                    .bind(&r.sealed)
                    .bind(r.sealing_kid.map(i64::from))
                    .bind(r.expires_at)
                    .execute(&mut *self.inner)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn delete_pending(&mut self, id: &str) -> Result<u64, StoreError> {
                let done = sqlx::query("DELETE FROM exchanges WHERE id = $1 AND state = 'pending'")
                    .bind(id)
                    .execute(&mut *self.inner)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn mark_withdrawn(
                &mut self,
                id: &str,
                at: i64,
                deny_until: Option<i64>,
            ) -> Result<u64, StoreError> {
                let done = sqlx::query(WITHDRAW)
                    .bind(id)
                    .bind(at)
                    .bind(deny_until)
                    .execute(&mut *self.inner)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn set_withdraw_error(
                &mut self,
                id: &str,
                error: &str,
            ) -> Result<(), StoreError> {
                sqlx::query("UPDATE exchanges SET withdraw_error = $2 WHERE id = $1")
                    .bind(id)
                    .bind(error)
                    .execute(&mut *self.inner)
                    .await?;
                Ok(())
            }

            async fn set_pending_handle(
                &mut self,
                id: &str,
                handle: &str,
            ) -> Result<u64, StoreError> {
                let done = sqlx::query(
                    "UPDATE exchanges SET handle = $2 WHERE id = $1 AND state = 'pending'",
                )
                .bind(id)
                .bind(handle)
                .execute(&mut *self.inner)
                .await?;
                Ok(done.rows_affected())
            }

            async fn stale_pending(
                &mut self,
                created_before: i64,
                limit: u32,
            ) -> Result<Vec<ExchangeRecord>, StoreError> {
                let found = sqlx::query(
                    "SELECT * FROM exchanges WHERE state = 'pending' AND created_at < $1 \
                     ORDER BY created_at LIMIT $2",
                )
                .bind(created_before)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.inner)
                .await?;
                found.iter().map(decode).collect()
            }

            async fn close_pending(
                &mut self,
                id: &str,
                at: i64,
                deny_until: i64,
            ) -> Result<u64, StoreError> {
                let done = sqlx::query(
                    "UPDATE exchanges SET state = 'withdrawn', withdrawn_at = $2, \
                     deny_until = $3 WHERE id = $1 AND state = 'pending'",
                )
                .bind(id)
                .bind(at)
                .bind(deny_until)
                .execute(&mut *self.inner)
                .await?;
                Ok(done.rows_affected())
            }

            async fn live_exchanges(
                &mut self,
                now: i64,
                after_id: &str,
                limit: u32,
            ) -> Result<Vec<LiveExchange>, StoreError> {
                let found = sqlx::query(LIVE)
                    .bind(now)
                    .bind(after_id)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.inner)
                    .await?;
                found
                    .iter()
                    .map(|row| {
                        Ok(LiveExchange {
                            record: decode(row)?,
                            writ_issued_at: row.int("writ_issued_at")?,
                            writ_revocation_id: row.text("writ_revocation_id")?,
                        })
                    })
                    .collect()
            }

            async fn aws_denies(&mut self, limit: u32) -> Result<Vec<ExchangeRecord>, StoreError> {
                let found = sqlx::query(
                    "SELECT * FROM exchanges WHERE state = 'withdrawn' AND kind = 'aws' \
                     AND deny_removed_at IS NULL ORDER BY deny_until, id LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&mut *self.inner)
                .await?;
                found.iter().map(decode).collect()
            }

            async fn mark_deny_removed(&mut self, id: &str, at: i64) -> Result<(), StoreError> {
                sqlx::query("UPDATE exchanges SET deny_removed_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&mut *self.inner)
                    .await?;
                Ok(())
            }
        }
    };
}

impl_exchange_statements!(Sqlite);
impl_exchange_statements!(Postgres);

fn decode(row: &impl Row) -> Result<ExchangeRecord, StoreError> {
    let corrupt = |column: &str, text: String| StoreError::Corrupt(format!("{column}: {text}"));
    let kind = row.text("kind")?;
    let state = row.text("state")?;
    Ok(ExchangeRecord {
        id: row.text("id")?,
        writ_id: row.text("writ_id")?,
        agent: row.text("agent")?,
        task: row.text("task")?,
        kind: ExchangeKind::parse(&kind).ok_or_else(|| corrupt("kind", kind.clone()))?,
        target: row.text("target")?,
        scope: row.text("scope")?,
        state: ExchangeState::parse(&state).ok_or_else(|| corrupt("state", state.clone()))?,
        handle: row.optional_text("handle")?,
        sealed: row.optional_text("sealed")?,
        sealing_kid: row
            .optional_int("sealing_kid")?
            .map(|kid| u32::try_from(kid).map_err(|e| corrupt("sealing_kid", e.to_string())))
            .transpose()?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        writ_expires_at: row.int("writ_expires_at")?,
        withdrawn_at: row.optional_int("withdrawn_at")?,
        withdraw_error: row.optional_text("withdraw_error")?,
        deny_until: row.optional_int("deny_until")?,
        deny_removed_at: row.optional_int("deny_removed_at")?,
    })
}

impl Store {
    /// Reserves the exchange of `record.writ_id` for `record.target` (inserting `record`, which
    /// is `pending`), unless one is already recorded: then answers that one and writes nothing.
    /// Runs under the chain lock, so two calls at once are ordered.
    pub async fn reserve_exchange(
        &self,
        record: &ExchangeRecord,
    ) -> Result<Reservation, StoreError> {
        let mut tx = self.backend.begin_write().await?;
        if let Some(existing) = tx
            .exchange_for(&record.writ_id, record.kind, &record.target)
            .await?
        {
            return Ok(Reservation::Existing(Box::new(existing)));
        }
        tx.insert_exchange(record).await?;
        tx.commit().await?;
        Ok(Reservation::Reserved)
    }

    /// Records the reserved exchange as issued (its handle, sealed credential and upstream
    /// expiry from `record`) with `event`, in one transaction.
    pub async fn record_exchange_issued(
        &self,
        record: &ExchangeRecord,
        event: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_write().await?;
        if tx.mark_issued(record).await? != 1 {
            return Err(StoreError::Corrupt(format!(
                "exchange {} was not pending when its credential was recorded",
                record.id
            )));
        }
        append_all(tx.as_mut(), vec![event]).await?;
        tx.commit().await
    }

    /// Drops the reservation `id` (nothing was issued) and records `event` saying why, in one
    /// transaction: the writ may be exchanged again.
    pub async fn abandon_exchange(&self, id: &str, event: AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_write().await?;
        tx.delete_pending(id).await?;
        append_all(tx.as_mut(), vec![event]).await?;
        tx.commit().await
    }

    /// Records the upstream handle of the reserved exchange `id` (a Vault lease id) as soon as
    /// the upstream answered, so that an exchange the broker could not finish can still be
    /// taken back. Answers false when `id` is no longer pending.
    pub async fn record_pending_handle(&self, id: &str, handle: &str) -> Result<bool, StoreError> {
        let mut tx = self.backend.begin_read().await?;
        let changed = tx.set_pending_handle(id, handle).await?;
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// Reservations made before `created_before` and never finished (the broker stopped
    /// between asking the upstream and recording its answer), oldest first.
    pub async fn stale_pending_exchanges(
        &self,
        created_before: i64,
    ) -> Result<Vec<ExchangeRecord>, StoreError> {
        self.backend
            .begin_read()
            .await?
            .stale_pending(created_before, EXCHANGE_PAGE)
            .await
    }

    /// Closes the unfinished AWS reservation `id` as withdrawn (its sessions denied until
    /// `deny_until`) with `event`, in one transaction.
    pub async fn close_abandoned_exchange(
        &self,
        id: &str,
        at: i64,
        deny_until: i64,
        event: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_write().await?;
        if tx.close_pending(id, at, deny_until).await? == 1 {
            append_all(tx.as_mut(), vec![event]).await?;
        }
        tx.commit().await
    }

    /// Issued exchanges whose credential is still alive at `now`, by id after `after_id`.
    pub async fn live_exchanges(
        &self,
        now: i64,
        after_id: &str,
    ) -> Result<Vec<LiveExchange>, StoreError> {
        self.backend
            .begin_read()
            .await?
            .live_exchanges(now, after_id, EXCHANGE_PAGE)
            .await
    }

    /// One exchange by id.
    pub async fn exchange(&self, id: &str) -> Result<Option<ExchangeRecord>, StoreError> {
        self.backend.begin_read().await?.exchange(id).await
    }

    /// Records that revocation took exchange `id` back upstream at `at` (for AWS, the deny
    /// statement stays until `deny_until`), with `event`; the sealed credential is dropped.
    /// Answers false (writing nothing) when it was no longer `issued`.
    pub async fn record_exchange_withdrawn(
        &self,
        id: &str,
        at: i64,
        deny_until: Option<i64>,
        event: AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.backend.begin_write().await?;
        if tx.mark_withdrawn(id, at, deny_until).await? != 1 {
            return Ok(false);
        }
        append_all(tx.as_mut(), vec![event]).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records why exchange `id` could not be withdrawn yet; `event` (if any) is appended in the
    /// same transaction (the first failure is audited, retries are not).
    pub async fn record_withdraw_failure(
        &self,
        id: &str,
        error: &str,
        event: Option<AuditEvent>,
    ) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_write().await?;
        tx.set_withdraw_error(id, error).await?;
        if let Some(event) = event {
            append_all(tx.as_mut(), vec![event]).await?;
        }
        tx.commit().await
    }

    /// Withdrawn AWS exchanges whose deny statement has not been removed, soonest to end
    /// first (at most [`EXCHANGE_PAGE`]).
    pub async fn aws_denies(&self) -> Result<Vec<ExchangeRecord>, StoreError> {
        self.backend
            .begin_read()
            .await?
            .aws_denies(EXCHANGE_PAGE)
            .await
    }

    /// Records that the deny statement of exchange `id` was removed at `at`.
    pub async fn record_deny_removed(&self, id: &str, at: i64) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_read().await?;
        tx.mark_deny_removed(id, at).await?;
        tx.commit().await
    }
}
