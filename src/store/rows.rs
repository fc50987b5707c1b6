//! Reading rows into domain values. Both backends name and type the columns alike, so each
//! decoder is written once against [`Row`].

use std::str::FromStr;

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use super::{IssuedWrit, StoreError};
use crate::audit::{AuditEvent, ChainHash, ChainedEvent, Checkpoint, Outcome};
use crate::revocation::{Lift, Revocation, Target};

/// Typed column access, the same for both backends.
pub(super) trait Row {
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn optional_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn optional_int(&self, column: &str) -> Result<Option<i64>, StoreError>;

    fn unsigned(&self, column: &str) -> Result<u64, StoreError> {
        u64::try_from(self.int(column)?).map_err(|e| corrupt(column, e))
    }
}

macro_rules! impl_row {
    ($row:ty) => {
        impl Row for $row {
            fn text(&self, column: &str) -> Result<String, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn optional_text(&self, column: &str) -> Result<Option<String>, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn int(&self, column: &str) -> Result<i64, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn optional_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
        }
    };
}

impl_row!(SqliteRow);
impl_row!(PgRow);

fn corrupt(column: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{column}: {error}"))
}

pub(super) fn encode_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode_json<T: for<'de> serde::Deserialize<'de>>(
    row: &impl Row,
    column: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(&row.text(column)?).map_err(|e| corrupt(column, e))
}

fn parse<T: FromStr>(row: &impl Row, column: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    row.text(column)?.parse().map_err(|e| corrupt(column, e))
}

pub(super) fn issued_writ(row: &impl Row) -> Result<IssuedWrit, StoreError> {
    Ok(IssuedWrit {
        writ_id: row.text("writ_id")?,
        agent: row.text("agent")?,
        task: row.text("task")?,
        issuer: row.text("issuer")?,
        subject: row.text("subject")?,
        rights: decode_json(row, "rights")?,
        services: decode_json(row, "services")?,
        root_key_id: u32::try_from(row.int("root_key_id")?)
            .map_err(|e| corrupt("root_key_id", e))?,
        revocation_id: row.text("revocation_id")?,
        issued_at: row.int("issued_at")?,
        expires_at: row.int("expires_at")?,
        policy_hash: row.optional_text("policy_hash")?,
    })
}

pub(super) fn chained_event(row: &impl Row) -> Result<ChainedEvent, StoreError> {
    Ok(ChainedEvent {
        seq: row.unsigned("seq")?,
        event: AuditEvent {
            at_ms: row.int("at_ms")?,
            action: row.text("action")?,
            outcome: parse::<Outcome>(row, "outcome")?,
            actor: row.text("actor")?,
            writ_id: row.optional_text("writ_id")?,
            task: row.optional_text("task")?,
            agent: row.optional_text("agent")?,
            reason: row.optional_text("reason")?,
            details: row.text("details")?,
        },
        prev_hash: parse::<ChainHash>(row, "prev_hash")?,
        hash: parse::<ChainHash>(row, "hash")?,
    })
}

pub(super) fn checkpoint(row: &impl Row) -> Result<Checkpoint, StoreError> {
    Ok(Checkpoint {
        seq: row.unsigned("seq")?,
        hash: parse::<ChainHash>(row, "hash")?,
        at_ms: row.int("at_ms")?,
        root_key_id: u32::try_from(row.int("root_key_id")?)
            .map_err(|e| corrupt("root_key_id", e))?,
        signature: row.text("signature")?,
    })
}

pub(super) fn revocation(row: &impl Row) -> Result<Revocation, StoreError> {
    let kind = row.text("target")?;
    let target = Target::from_parts(&kind, row.text("value")?)
        .ok_or_else(|| corrupt("target", format!("unknown target {kind:?}")))?;
    let lifted = match (
        row.optional_text("lifted_by")?,
        row.optional_int("lifted_at")?,
    ) {
        (Some(by), Some(at)) => Some(Lift {
            by,
            at,
            reason: row.optional_text("lift_reason")?.unwrap_or_default(),
        }),
        _ => None,
    };
    Ok(Revocation {
        id: row.text("id")?,
        seq: row.unsigned("seq")?,
        target,
        revocation_id: row.optional_text("revocation_id")?,
        issued_until: row.optional_int("issued_until")?,
        expires_at: row.optional_int("expires_at")?,
        reason: row.text("reason")?,
        revoked_by: row.text("revoked_by")?,
        revoked_at: row.int("revoked_at")?,
        lifted,
    })
}
