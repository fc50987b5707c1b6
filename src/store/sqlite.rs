//! The embedded default: one SQLite file in WAL mode with `synchronous = FULL`, so a committed
//! issuance record survives a power cut. Records are written by one writer task that commits
//! concurrent requests together (see [`writer`](super::sqlite_writer)).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::sqlite_writer::Writer;
use super::{IssuedWrit, Store, StoreError, from_row};

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
