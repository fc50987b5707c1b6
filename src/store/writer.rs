//! Group commit. Every commit waits for the disk (SQLite `synchronous = FULL`, PostgreSQL's
//! WAL flush) and every write holds the audit chain's lock, so one transaction per writ would
//! bound issuance by fsync latency and make writers queue on the lock. Instead one task owns
//! the writes: it takes every job waiting (up to [`MAX_BATCH`]), commits them in one
//! transaction, and answers each caller only after that commit. Durability per writ is the
//! same; one fsync serves many.
//!
//! If a batch fails, each job is retried in a transaction of its own, so one bad record (a
//! duplicate id) cannot fail the others.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::backend::Backend;
use super::{IssuedWrit, StoreError, append_all};
use crate::audit::AuditEvent;

/// The most jobs committed in one transaction.
pub const MAX_BATCH: usize = 64;

/// Jobs waiting for the writer beyond this make callers wait (backpressure).
const QUEUE: usize = 1024;

/// An audit event, and the issuance record that must commit with it.
struct Job {
    writ: Option<IssuedWrit>,
    event: AuditEvent,
    done: oneshot::Sender<Result<u64, StoreError>>,
}

pub(super) struct Writer {
    queue: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task; it stops when the `Writer` is dropped.
    pub(super) fn start(backend: Arc<dyn Backend>) -> Writer {
        let (queue, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(run(backend, jobs));
        Writer { queue }
    }

    /// Commits the event (and the record) and returns the event's chain position.
    pub(super) async fn commit(
        &self,
        writ: Option<IssuedWrit>,
        event: AuditEvent,
    ) -> Result<u64, StoreError> {
        let (done, committed) = oneshot::channel();
        self.queue
            .send(Job { writ, event, done })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        committed.await.map_err(|_| StoreError::WriterStopped)?
    }
}

async fn run(backend: Arc<dyn Backend>, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit_batch(backend.as_ref(), std::mem::take(&mut batch)).await;
    }
}

async fn commit_batch(backend: &dyn Backend, batch: Vec<Job>) {
    if batch.len() > 1 {
        let jobs: Vec<(&Option<IssuedWrit>, &AuditEvent)> =
            batch.iter().map(|job| (&job.writ, &job.event)).collect();
        match commit_all(backend, &jobs).await {
            Ok(seqs) => {
                for (job, seq) in batch.into_iter().zip(seqs) {
                    let _ = job.done.send(Ok(seq));
                }
                return;
            }
            Err(error) => {
                tracing::warn!(%error, size = batch.len(), "batched commit failed; committing one by one");
            }
        }
    }
    for job in batch {
        let result = commit_all(backend, &[(&job.writ, &job.event)]).await;
        let _ = job
            .done
            .send(result.map(|seqs| seqs.first().copied().unwrap_or_default()));
    }
}

async fn commit_all(
    backend: &dyn Backend,
    jobs: &[(&Option<IssuedWrit>, &AuditEvent)],
) -> Result<Vec<u64>, StoreError> {
    let mut tx = backend.begin_write().await?;
    for writ in jobs.iter().filter_map(|(writ, _)| writ.as_ref()) {
        tx.insert_writ(writ).await?;
    }
    let events = jobs.iter().map(|(_, event)| (*event).clone()).collect();
    let seqs = append_all(tx.as_mut(), events).await?;
    tx.commit().await?;
    Ok(seqs)
}
