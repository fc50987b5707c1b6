//! Storage behind one interface: the broker's domain calls [`Store`] and never sees SQL. SQLite is
//! the embedded default (one file, one broker); PostgreSQL serves several broker replicas. The
//! backend is chosen by the URL scheme at start; each has its own migrations under `migrations/`.
//!
//! Durability is the contract: `record_issued` returns only once the record is committed, and the
//! broker returns a writ only after that.

mod postgres;
mod sqlite;
mod sqlite_writer;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// One right as it was granted: a resource pattern and the operations on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RightRecord {
    pub resource: String,
    pub operations: Vec<String>,
}

/// The durable record of an issued writ (never the writ itself: it is a bearer credential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedWrit {
    pub writ_id: String,
    pub agent: String,
    pub task: String,
    pub issuer: String,
    pub subject: String,
    pub rights: Vec<RightRecord>,
    pub services: Vec<String>,
    pub root_key_id: u32,
    /// Hex revocation id of the authority block; revoking it revokes every attenuation.
    pub revocation_id: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("a writ with id {0} is already recorded")]
    Duplicate(String),
    #[error("the database writer has stopped")]
    WriterStopped,
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Unavailable(error)
    }
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Records an issued writ durably. Returns only after the commit.
    async fn record_issued(&self, writ: &IssuedWrit) -> Result<(), StoreError>;
    /// Reads one issued writ's record.
    async fn issued_writ(&self, writ_id: &str) -> Result<Option<IssuedWrit>, StoreError>;
    /// Checks the database answers (for readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Connects to the database named by `url` and applies pending migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

fn encode_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode_json<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Reads an issued-writ row; the two backends name and type the columns alike.
fn from_row<'r, R>(row: &'r R) -> Result<IssuedWrit, StoreError>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let text = |column: &'r str| row.try_get::<String, _>(column);
    let number = |column: &'r str| row.try_get::<i64, _>(column);
    Ok(IssuedWrit {
        writ_id: text("writ_id")?,
        agent: text("agent")?,
        task: text("task")?,
        issuer: text("issuer")?,
        subject: text("subject")?,
        rights: decode_json(&text("rights")?)?,
        services: decode_json(&text("services")?)?,
        root_key_id: u32::try_from(number("root_key_id")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        revocation_id: text("revocation_id")?,
        issued_at: number("issued_at")?,
        expires_at: number("expires_at")?,
    })
}

fn map_insert_error(error: sqlx::Error, writ_id: &str) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Duplicate(writ_id.to_owned())
        }
        _ => StoreError::Unavailable(error),
    }
}
