//! Group commit for SQLite. With `synchronous = FULL` every commit waits for an fsync, and SQLite
//! has one writer at a time, so one transaction per writ bounds issuance by the disk's fsync
//! latency and makes concurrent writers queue in SQLite's busy handler. Instead one task owns the
//! writes: it takes every record waiting (up to [`MAX_BATCH`]), inserts them in one transaction,
//! and answers each request only after that transaction commits. Durability per writ is the
//! same; one fsync serves many.
//!
//! If a batch fails, each of its records is retried in a transaction of its own, so one bad
//! record (a duplicate id) cannot fail the others.

use sqlx::SqliteConnection;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::{IssuedWrit, StoreError, encode_json, map_insert_error};

/// The most records committed in one transaction.
pub const MAX_BATCH: usize = 64;

/// Records waiting for the writer beyond this make callers wait (backpressure).
const QUEUE: usize = 1024;

struct Pending {
    writ: IssuedWrit,
    done: oneshot::Sender<Result<(), StoreError>>,
}

pub struct Writer {
    queue: mpsc::Sender<Pending>,
}

impl Writer {
    /// Starts the writer task; it stops when the `Writer` is dropped.
    pub fn start(pool: SqlitePool) -> Writer {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, pending));
        Writer { queue }
    }

    /// Records `writ` and returns once the transaction holding it has committed.
    pub async fn record(&self, writ: &IssuedWrit) -> Result<(), StoreError> {
        let (done, committed) = oneshot::channel();
        let pending = Pending {
            writ: writ.clone(),
            done,
        };
        self.queue
            .send(pending)
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        committed.await.map_err(|_| StoreError::WriterStopped)?
    }
}

async fn run(pool: SqlitePool, mut pending: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit(&pool, std::mem::take(&mut batch)).await;
    }
}

async fn commit(pool: &SqlitePool, batch: Vec<Pending>) {
    if batch.len() > 1 {
        let records: Vec<&IssuedWrit> = batch.iter().map(|p| &p.writ).collect();
        match insert_all(pool, &records).await {
            Ok(()) => {
                for pending in batch {
                    let _ = pending.done.send(Ok(()));
                }
                return;
            }
            Err(error) => {
                tracing::warn!(%error, size = batch.len(), "batched commit failed; committing one by one");
            }
        }
    }
    for pending in batch {
        let result = insert_all(pool, &[&pending.writ]).await;
        let _ = pending.done.send(result);
    }
}

async fn insert_all(pool: &SqlitePool, records: &[&IssuedWrit]) -> Result<(), StoreError> {
    let mut transaction = pool.begin().await?;
    for writ in records {
        insert(&mut transaction, writ).await?;
    }
    transaction.commit().await?;
    Ok(())
}

async fn insert(connection: &mut SqliteConnection, writ: &IssuedWrit) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO writs (writ_id, agent, task, issuer, subject, rights, services, root_key_id, \
         revocation_id, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    .execute(connection)
    .await
    .map_err(|e| map_insert_error(e, &writ.writ_id))?;
    Ok(())
}
