//! The statements, written once: SQLite and PostgreSQL both accept `$n` placeholders and
//! `ON CONFLICT … DO UPDATE`, so one body serves both. The macro only stamps it out for each
//! backend's transaction type, since sqlx's executors are not generic-friendly.

use async_trait::async_trait;
use sqlx::{Postgres, Sqlite};

use super::backend::Transaction;
use super::rows::{self, Row, encode_json};
use super::{AuditQuery, IssuedAdminWrit, IssuedWrit, StoreError};
use crate::audit::{ChainHash, ChainedEvent, Checkpoint};
use crate::revocation::{Revocation, Target};

/// A database transaction, and the statement (if any) that announces a revocation to other
/// processes when it commits.
pub(super) struct Tx<DB: sqlx::Database> {
    pub(super) inner: sqlx::Transaction<'static, DB>,
    pub(super) announce_revocation: Option<&'static str>,
}

const INSERT_WRIT: &str = "INSERT INTO writs (writ_id, agent, task, issuer, subject, rights, \
    services, root_key_id, revocation_id, issued_at, expires_at, policy_hash) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

const INSERT_ADMIN_WRIT: &str = "INSERT INTO admin_writs (writ_id, principal, roles, issued_by, \
    root_key_id, revocation_id, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

const WRIT_REVOCATION_ID: &str = "SELECT revocation_id, expires_at FROM writs WHERE writ_id = $1 \
    UNION ALL SELECT revocation_id, expires_at FROM admin_writs WHERE writ_id = $1";

const INSERT_AUDIT: &str = "INSERT INTO audit_events (seq, at_ms, action, outcome, actor, \
    writ_id, task, agent, reason, details, prev_hash, hash) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

const AUDIT_EVENTS: &str = "SELECT * FROM audit_events WHERE seq > $1 \
    AND ($2 IS NULL OR agent = $2) AND ($3 IS NULL OR task = $3) \
    AND ($4 IS NULL OR writ_id = $4) AND ($5 IS NULL OR action = $5) \
    AND ($6 IS NULL OR at_ms >= $6) AND ($7 IS NULL OR at_ms < $7) \
    ORDER BY seq LIMIT $8";

const PUT_REVOCATION: &str = "INSERT INTO revocations (id, seq, target, value, revocation_id, \
    issued_until, expires_at, reason, revoked_by, revoked_at, lifted_by, lifted_at, lift_reason) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
    ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, issued_until = excluded.issued_until, \
    expires_at = excluded.expires_at, lifted_by = excluded.lifted_by, \
    lifted_at = excluded.lifted_at, lift_reason = excluded.lift_reason";

fn newest_issue_sql(target: &Target) -> &'static str {
    match target {
        Target::Task(_) => "SELECT MAX(issued_at) AS newest FROM writs WHERE task = $1",
        Target::Agent(_) => "SELECT MAX(issued_at) AS newest FROM writs WHERE agent = $1",
        Target::Writ(_) => "SELECT MAX(issued_at) AS newest FROM writs WHERE writ_id = $1",
    }
}

fn count_live_sql(target: &Target) -> &'static str {
    match target {
        Target::Task(_) => "SELECT COUNT(*) AS live FROM writs WHERE task = $1 AND expires_at > $2",
        Target::Agent(_) => {
            "SELECT COUNT(*) AS live FROM writs WHERE agent = $1 AND expires_at > $2"
        }
        Target::Writ(_) => {
            "SELECT COUNT(*) AS live FROM (SELECT expires_at FROM writs WHERE writ_id = $1 \
             UNION ALL SELECT expires_at FROM admin_writs WHERE writ_id = $1) AS w \
             WHERE expires_at > $2"
        }
    }
}

fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn map_insert_error(error: sqlx::Error, id: &str) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Duplicate(id.to_owned())
        }
        _ => StoreError::Unavailable(error),
    }
}

macro_rules! impl_transaction {
    ($db:ty) => {
        #[async_trait]
        impl Transaction for Tx<$db> {
            async fn commit(self: Box<Self>) -> Result<(), StoreError> {
                Ok(self.inner.commit().await?)
            }

            async fn insert_writ(&mut self, writ: &IssuedWrit) -> Result<(), StoreError> {
                sqlx::query(INSERT_WRIT)
                    .bind(&writ.writ_id)
                    .bind(&writ.agent)
                    .bind(&writ.task)
                    .bind(&writ.issuer)
                    .bind(&writ.subject)
                    .bind(encode_json(&writ.rights)?)
                    .bind(encode_json(&writ.services)?)
                    .bind(i64::from(writ.root_key_id))
                    .bind(&writ.revocation_id)
                    .bind(writ.issued_at)
                    .bind(writ.expires_at)
                    .bind(&writ.policy_hash)
                    .execute(&mut *self.inner)
                    .await
                    .map_err(|e| map_insert_error(e, &writ.writ_id))?;
                Ok(())
            }

            async fn writ(&mut self, writ_id: &str) -> Result<Option<IssuedWrit>, StoreError> {
                let row = sqlx::query("SELECT * FROM writs WHERE writ_id = $1")
                    .bind(writ_id)
                    .fetch_optional(&mut *self.inner)
                    .await?;
                row.map(|row| rows::issued_writ(&row)).transpose()
            }

            async fn insert_admin_writ(
                &mut self,
                writ: &IssuedAdminWrit,
            ) -> Result<(), StoreError> {
                sqlx::query(INSERT_ADMIN_WRIT)
                    .bind(&writ.writ_id)
                    .bind(&writ.principal)
                    .bind(encode_json(&writ.roles)?)
                    .bind(&writ.issued_by)
                    .bind(i64::from(writ.root_key_id))
                    .bind(&writ.revocation_id)
                    .bind(writ.issued_at)
                    .bind(writ.expires_at)
                    .execute(&mut *self.inner)
                    .await
                    .map_err(|e| map_insert_error(e, &writ.writ_id))?;
                Ok(())
            }

            async fn writ_revocation_id(
                &mut self,
                writ_id: &str,
            ) -> Result<Option<(String, i64)>, StoreError> {
                let row = sqlx::query(WRIT_REVOCATION_ID)
                    .bind(writ_id)
                    .fetch_optional(&mut *self.inner)
                    .await?;
                row.map(|row| Ok((row.text("revocation_id")?, row.int("expires_at")?)))
                    .transpose()
            }

            async fn audit_head(&mut self) -> Result<(u64, ChainHash), StoreError> {
                let row =
                    sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                        .fetch_optional(&mut *self.inner)
                        .await?;
                match row {
                    None => Ok((0, ChainHash::GENESIS)),
                    Some(row) => {
                        let hash = row
                            .text("hash")?
                            .parse()
                            .map_err(|e| StoreError::Corrupt(format!("hash: {e}")))?;
                        Ok((row.unsigned("seq")?, hash))
                    }
                }
            }

            async fn insert_audit(&mut self, chained: &ChainedEvent) -> Result<(), StoreError> {
                let event = &chained.event;
                sqlx::query(INSERT_AUDIT)
                    .bind(to_i64(chained.seq)?)
                    .bind(event.at_ms)
                    .bind(&event.action)
                    .bind(event.outcome.as_str())
                    .bind(&event.actor)
                    .bind(&event.writ_id)
                    .bind(&event.task)
                    .bind(&event.agent)
                    .bind(&event.reason)
                    .bind(&event.details)
                    .bind(chained.prev_hash.to_string())
                    .bind(chained.hash.to_string())
                    .execute(&mut *self.inner)
                    .await?;
                Ok(())
            }

            async fn audit_events(
                &mut self,
                query: &AuditQuery,
            ) -> Result<Vec<ChainedEvent>, StoreError> {
                let found = sqlx::query(AUDIT_EVENTS)
                    .bind(to_i64(query.after)?)
                    .bind(&query.agent)
                    .bind(&query.task)
                    .bind(&query.writ_id)
                    .bind(&query.action)
                    .bind(query.since_ms)
                    .bind(query.until_ms)
                    .bind(i64::from(query.limit))
                    .fetch_all(&mut *self.inner)
                    .await?;
                found.iter().map(rows::chained_event).collect()
            }

            async fn insert_checkpoint(
                &mut self,
                checkpoint: &Checkpoint,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO audit_checkpoints (seq, hash, at_ms, root_key_id, signature) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(to_i64(checkpoint.seq)?)
                .bind(checkpoint.hash.to_string())
                .bind(checkpoint.at_ms)
                .bind(i64::from(checkpoint.root_key_id))
                .bind(&checkpoint.signature)
                .execute(&mut *self.inner)
                .await?;
                Ok(())
            }

            async fn checkpoints(&mut self) -> Result<Vec<Checkpoint>, StoreError> {
                let found =
                    sqlx::query("SELECT * FROM audit_checkpoints ORDER BY seq, root_key_id")
                        .fetch_all(&mut *self.inner)
                        .await?;
                found.iter().map(rows::checkpoint).collect()
            }

            async fn revocation_head(&mut self) -> Result<u64, StoreError> {
                let row = sqlx::query("SELECT MAX(seq) AS head FROM revocations")
                    .fetch_one(&mut *self.inner)
                    .await?;
                Ok(row.optional_int("head")?.unwrap_or(0).max(0) as u64)
            }

            async fn latest_revocation(
                &mut self,
                target: &Target,
            ) -> Result<Option<Revocation>, StoreError> {
                let row = sqlx::query(
                    "SELECT * FROM revocations WHERE target = $1 AND value = $2 \
                     ORDER BY seq DESC LIMIT 1",
                )
                .bind(target.kind())
                .bind(target.value())
                .fetch_optional(&mut *self.inner)
                .await?;
                row.map(|row| rows::revocation(&row)).transpose()
            }

            async fn put_revocation(&mut self, revocation: &Revocation) -> Result<(), StoreError> {
                let lifted = revocation.lifted.as_ref();
                sqlx::query(PUT_REVOCATION)
                    .bind(&revocation.id)
                    .bind(to_i64(revocation.seq)?)
                    .bind(revocation.target.kind())
                    .bind(revocation.target.value())
                    .bind(&revocation.revocation_id)
                    .bind(revocation.issued_until)
                    .bind(revocation.expires_at)
                    .bind(&revocation.reason)
                    .bind(&revocation.revoked_by)
                    .bind(revocation.revoked_at)
                    .bind(lifted.map(|lift| lift.by.clone()))
                    .bind(lifted.map(|lift| lift.at))
                    .bind(lifted.map(|lift| lift.reason.clone()))
                    .execute(&mut *self.inner)
                    .await?;
                if let Some(announce) = self.announce_revocation {
                    sqlx::query(announce).execute(&mut *self.inner).await?;
                }
                Ok(())
            }

            async fn revocations_after(
                &mut self,
                after: u64,
                limit: u32,
            ) -> Result<Vec<Revocation>, StoreError> {
                let found =
                    sqlx::query("SELECT * FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2")
                        .bind(to_i64(after)?)
                        .bind(i64::from(limit))
                        .fetch_all(&mut *self.inner)
                        .await?;
                found.iter().map(rows::revocation).collect()
            }

            async fn newest_issue(&mut self, target: &Target) -> Result<Option<i64>, StoreError> {
                let row = sqlx::query(newest_issue_sql(target))
                    .bind(target.value())
                    .fetch_one(&mut *self.inner)
                    .await?;
                row.optional_int("newest")
            }

            async fn count_live(&mut self, target: &Target, now: i64) -> Result<u64, StoreError> {
                let row = sqlx::query(count_live_sql(target))
                    .bind(target.value())
                    .bind(now)
                    .fetch_one(&mut *self.inner)
                    .await?;
                row.unsigned("live")
            }
        }
    };
}

impl_transaction!(Sqlite);
impl_transaction!(Postgres);
