//! The embedded default: one SQLite file in WAL mode with `synchronous = FULL`, so a committed
//! issuance record survives a power cut. Records are written by one writer task that commits
//! concurrent requests together (see [`writer`](super::sqlite_writer)).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use super::sqlite_writer::Writer;
use super::{IssuedWrit, Store, StoreError, decode_json};

pub struct SqliteStore {
    pool: SqlitePool,
    writer: Writer,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        if let Some(parent) = Path::new(options.get_filename()).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Unavailable(e.into()))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let writer = Writer::start(pool.clone());
        Ok(SqliteStore { pool, writer })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn record_issued(&self, writ: &IssuedWrit) -> Result<(), StoreError> {
        self.writer.record(writ).await
    }

    async fn issued_writ(&self, writ_id: &str) -> Result<Option<IssuedWrit>, StoreError> {
        let row = sqlx::query("SELECT * FROM writs WHERE writ_id = ?")
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

fn from_row(row: &SqliteRow) -> Result<IssuedWrit, StoreError> {
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
