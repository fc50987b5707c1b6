//! PostgreSQL, for several broker replicas sharing one database.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};

use super::{IssuedWrit, Store, StoreError, decode_json, encode_json, map_insert_error};

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresStore { pool })
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn record_issued(&self, writ: &IssuedWrit) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO writs (writ_id, agent, task, issuer, subject, rights, services, root_key_id, \
             revocation_id, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
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
        .execute(&self.pool)
        .await
        .map_err(|e| map_insert_error(e, &writ.writ_id))?;
        Ok(())
    }

    async fn issued_writ(&self, writ_id: &str) -> Result<Option<IssuedWrit>, StoreError> {
        let row = sqlx::query("SELECT * FROM writs WHERE writ_id = $1")
            .bind(writ_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| from_row(&row)).transpose()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

fn from_row(row: &PgRow) -> Result<IssuedWrit, StoreError> {
    let root_key_id: i64 = row.try_get("root_key_id")?;
    Ok(IssuedWrit {
        writ_id: row.try_get("writ_id")?,
        agent: row.try_get("agent")?,
        task: row.try_get("task")?,
        issuer: row.try_get("issuer")?,
        subject: row.try_get("subject")?,
        rights: decode_json(row.try_get("rights")?)?,
        services: decode_json(row.try_get("services")?)?,
        root_key_id: u32::try_from(root_key_id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        revocation_id: row.try_get("revocation_id")?,
        issued_at: row.try_get("issued_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}
