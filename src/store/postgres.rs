//! PostgreSQL, for several broker replicas sharing one database. Write transactions take a
//! transaction-scoped advisory lock (the audit chain's lock), and a committed revocation is
//! announced on the `writ_revocations` channel (LISTEN/NOTIFY), so every replica's view, and
//! the verifiers streaming from it, learn it within milliseconds.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Postgres;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::mpsc;

use super::StoreError;
use super::backend::{Backend, Transaction};
use super::statements::Tx;

/// The advisory lock key of the audit chain ("writ" in ASCII).
const CHAIN_LOCK: i64 = 0x7772_6974;
const CHANNEL: &str = "writ_revocations";
const ANNOUNCE: &str = "SELECT pg_notify('writ_revocations', '')";

pub(super) struct PostgresBackend {
    pool: PgPool,
}

impl PostgresBackend {
    pub(super) async fn connect(url: &str) -> Result<PostgresBackend, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        crate::migrations::postgres().run(&pool).await?;
        Ok(PostgresBackend { pool })
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    async fn begin_write(&self) -> Result<Box<dyn Transaction>, StoreError> {
        let mut inner = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CHAIN_LOCK)
            .execute(&mut *inner)
            .await?;
        Ok(Box::new(Tx::<Postgres> {
            inner,
            announce_revocation: Some(ANNOUNCE),
        }))
    }

    async fn begin_read(&self) -> Result<Box<dyn Transaction>, StoreError> {
        Ok(Box::new(Tx::<Postgres> {
            inner: self.pool.begin().await?,
            announce_revocation: None,
        }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn watch_revocations(&self) -> Option<mpsc::Receiver<()>> {
        let (wake, woken) = mpsc::channel(1);
        tokio::spawn(listen(self.pool.clone(), wake));
        Some(woken)
    }
}

/// Forwards notifications until the receiver is dropped. A lost connection also wakes the
/// receiver: notifications sent while it was down are gone, so the reader must re-read.
async fn listen(pool: PgPool, wake: mpsc::Sender<()>) {
    while !wake.is_closed() {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for revocations; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(CHANNEL).await {
            tracing::warn!(%error, "cannot listen for revocations; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // Whatever was announced before this connection listened must be read now.
        let _ = wake.try_send(());
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) | Ok(None) => {
                    // `None`: the connection dropped and was re-established; re-read.
                    if wake.try_send(()).is_err() && wake.is_closed() {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "revocation notifications interrupted; reconnecting");
                    break;
                }
            }
        }
    }
}
