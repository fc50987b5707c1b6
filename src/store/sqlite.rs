//! The embedded default: one SQLite file in WAL mode with `synchronous = FULL`, so a committed
//! record survives a power cut. Write transactions start with `BEGIN IMMEDIATE`, which takes
//! SQLite's single write lock up front: that is the audit chain's lock, also across processes
//! (a `writ admin bootstrap` run beside the broker).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::StoreError;
use super::backend::{Backend, Transaction};
use super::statements::Tx;

pub(super) struct SqliteBackend {
    pool: SqlitePool,
}

impl SqliteBackend {
    pub(super) async fn connect(url: &str, create: bool) -> Result<SqliteBackend, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        if let Some(parent) = Path::new(options.get_filename()).parent()
            && create
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Unavailable(e.into()))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        crate::migrations::sqlite().run(&pool).await?;
        Ok(SqliteBackend { pool })
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    async fn begin_write(&self) -> Result<Box<dyn Transaction>, StoreError> {
        Ok(Box::new(Tx::<Sqlite> {
            inner: self.pool.begin_with("BEGIN IMMEDIATE").await?,
            announce_revocation: None,
        }))
    }

    async fn begin_read(&self) -> Result<Box<dyn Transaction>, StoreError> {
        Ok(Box::new(Tx::<Sqlite> {
            inner: self.pool.begin().await?,
            announce_revocation: None,
        }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn watch_revocations(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        None
    }
}
