//! PostgreSQL, for several broker replicas sharing one database.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::{IssuedWrit, Store, StoreError, encode_json, from_row, map_insert_error};

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
