//! Approvers' sessions on the approval page (see `login::session`). A session is keyed by the
//! SHA-256 of its secret, never the secret. Opening and closing one are audited in the same
//! transaction; expired sessions are never answered, and are deleted whenever someone logs in.

use async_trait::async_trait;
use sqlx::{Postgres, Sqlite};

use super::rows::{Row, encode_json};
use super::statements::Tx;
use super::{Store, StoreError, append_all};
use crate::admin::Principal;
use crate::audit::AuditEvent;
use crate::login::ApproverSession;

/// Sessions one principal may hold at once; logging in again past this ends the oldest.
pub const MAX_SESSIONS_PER_PRINCIPAL: i64 = 16;

const INSERT: &str = "INSERT INTO approver_sessions (id_hash, principal, groups, issuer, \
    subject, approver, csrf_token, created_at, expires_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

const TRIM: &str = "DELETE FROM approver_sessions WHERE principal = $1 AND id_hash <> $2 \
    AND id_hash NOT IN (SELECT id_hash FROM approver_sessions WHERE principal = $1 \
    ORDER BY created_at DESC, id_hash DESC LIMIT $3)";

#[async_trait]
pub(super) trait SessionStatements: Send {
    async fn insert_session(
        &mut self,
        id_hash: &str,
        session: &ApproverSession,
    ) -> Result<(), StoreError>;
    /// The session, if it has not expired at `now`.
    async fn session(
        &mut self,
        id_hash: &str,
        now: i64,
    ) -> Result<Option<ApproverSession>, StoreError>;
    async fn delete_session(&mut self, id_hash: &str) -> Result<(), StoreError>;
    /// Deletes sessions expired at `now`; answers how many.
    async fn purge_sessions(&mut self, now: i64) -> Result<u64, StoreError>;
    /// Keeps the newest [`MAX_SESSIONS_PER_PRINCIPAL`] of the principal's sessions (and `keep`).
    async fn trim_sessions(&mut self, principal: &str, keep: &str) -> Result<(), StoreError>;
}

macro_rules! impl_session_statements {
    ($db:ty) => {
        #[async_trait]
        impl SessionStatements for Tx<$db> {
            async fn insert_session(
                &mut self,
                id_hash: &str,
                s: &ApproverSession,
            ) -> Result<(), StoreError> {
                sqlx::query(INSERT)
                    .bind(id_hash)
                    .bind(s.principal.as_str())
                    .bind(encode_json(&s.groups)?)
                    .bind(&s.issuer)
                    .bind(&s.subject)
                    .bind(i64::from(s.approver))
                    .bind(&s.csrf_token)
                    .bind(s.created_at)
                    .bind(s.expires_at)
                    .execute(&mut *self.inner)
                    .await?;
                Ok(())
            }

            async fn session(
                &mut self,
                id_hash: &str,
                now: i64,
            ) -> Result<Option<ApproverSession>, StoreError> {
                let row = sqlx::query(
                    "SELECT * FROM approver_sessions WHERE id_hash = $1 AND expires_at > $2",
                )
                .bind(id_hash)
                .bind(now)
                .fetch_optional(&mut *self.inner)
                .await?;
                row.map(|row| decode(&row)).transpose()
            }

            async fn delete_session(&mut self, id_hash: &str) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM approver_sessions WHERE id_hash = $1")
                    .bind(id_hash)
                    .execute(&mut *self.inner)
                    .await?;
                Ok(())
            }

            async fn purge_sessions(&mut self, now: i64) -> Result<u64, StoreError> {
                let done = sqlx::query("DELETE FROM approver_sessions WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&mut *self.inner)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn trim_sessions(
                &mut self,
                principal: &str,
                keep: &str,
            ) -> Result<(), StoreError> {
                sqlx::query(TRIM)
                    .bind(principal)
                    .bind(keep)
                    .bind(MAX_SESSIONS_PER_PRINCIPAL)
                    .execute(&mut *self.inner)
                    .await?;
                Ok(())
            }
        }
    };
}

impl_session_statements!(Sqlite);
impl_session_statements!(Postgres);

fn decode(row: &impl Row) -> Result<ApproverSession, StoreError> {
    let corrupt = |column: &str, e: String| StoreError::Corrupt(format!("{column}: {e}"));
    Ok(ApproverSession {
        principal: Principal::parse(&row.text("principal")?)
            .map_err(|e| corrupt("principal", e.to_string()))?,
        groups: serde_json::from_str(&row.text("groups")?)
            .map_err(|e| corrupt("groups", e.to_string()))?,
        issuer: row.text("issuer")?,
        subject: row.text("subject")?,
        approver: row.int("approver")? != 0,
        csrf_token: row.text("csrf_token")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
    })
}

impl Store {
    /// Records a new session keyed by `id_hash` with its audit `event`, in one transaction;
    /// sessions expired at its start are deleted first, and the principal's oldest beyond
    /// [`MAX_SESSIONS_PER_PRINCIPAL`] after.
    pub async fn open_session(
        &self,
        id_hash: &str,
        session: &ApproverSession,
        event: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.backend.begin_write().await?;
        tx.purge_sessions(session.created_at).await?;
        tx.insert_session(id_hash, session).await?;
        tx.trim_sessions(session.principal.as_str(), id_hash)
            .await?;
        append_all(tx.as_mut(), vec![event]).await?;
        tx.commit().await
    }

    /// The session keyed by `id_hash`, unless it has expired at `now`.
    pub async fn approver_session(
        &self,
        id_hash: &str,
        now: i64,
    ) -> Result<Option<ApproverSession>, StoreError> {
        self.backend.begin_read().await?.session(id_hash, now).await
    }

    /// Ends the session keyed by `id_hash`, with the event `event` makes of it (when it was
    /// live at `now`), in one transaction; answers the session ended.
    pub async fn close_session(
        &self,
        id_hash: &str,
        now: i64,
        event: impl FnOnce(&ApproverSession) -> AuditEvent + Send,
    ) -> Result<Option<ApproverSession>, StoreError> {
        let mut tx = self.backend.begin_write().await?;
        let Some(session) = tx.session(id_hash, now).await? else {
            return Ok(None);
        };
        tx.delete_session(id_hash).await?;
        append_all(tx.as_mut(), vec![event(&session)]).await?;
        tx.commit().await?;
        Ok(Some(session))
    }
}
