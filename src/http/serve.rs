//! Serving connections, with every one bounded: at most `max` open at once (one more is answered
//! `503 over_capacity` and closed at once, so descriptors never run out), headers read within
//! `header_read_timeout` (which also closes a connection left idle between requests), writes
//! that must make progress within `write_timeout` (a client that stops reading is dropped), and a
//! graceful shutdown that gives in-flight requests a grace period and then closes what is left.
//! HTTP/1.1 only: its bounds are these, and nothing here speaks HTTP/2's multiplexing.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Sleep;

use crate::config::ConnectionLimits;

/// The problem a connection past the cap reads before it is closed.
const OVER_CAPACITY: &str = concat!(
    r#"{"type":"urn:writ:problem:over_capacity","title":"Over capacity","status":503,"#,
    r#""detail":"the broker has too many open connections; retry shortly"}"#
);

/// How often refusals at the cap are logged (as one line with their count).
const REFUSAL_REPORT: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` turns true, then lets open connections finish
/// for `grace` and closes them.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let open = Arc::new(Semaphore::new(limits.max));
    let refusal = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{OVER_CAPACITY}",
        OVER_CAPACITY.len()
    );
    let mut refused = Refusals::default();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors or a reset before accept: wait rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutting_down(&mut shutdown) => break,
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            // The write never waits: a fresh socket's send buffer takes the few bytes, and a
            // client that cannot take them loses them.
            let _ = stream.try_write(refusal.as_bytes());
            refused.count(limits.max);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let stream = WriteDeadline::new(stream, limits.write_timeout);
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutting_down(&mut shutdown) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(grace, connection).await;
                }
            }
            drop(permit);
        });
    }
    // Wait for in-flight connections up to the grace period: each closes itself by then.
    let all = u32::try_from(limits.max).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace + Duration::from_millis(100), open.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period were closed");
    }
}

/// A TCP stream whose writes must make progress within `limit`: a client that stops reading
/// its answers (or a stream it asked for) is disconnected rather than holding its connection
/// forever. The clock runs only while a write is blocked.
struct WriteDeadline {
    inner: TcpStream,
    limit: Duration,
    blocked_since: Option<Pin<Box<Sleep>>>,
}

impl WriteDeadline {
    fn new(inner: TcpStream, limit: Duration) -> WriteDeadline {
        WriteDeadline {
            inner,
            limit,
            blocked_since: None,
        }
    }

    /// Passes a write's result through, or fails it once it has been blocked for `limit`.
    fn deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.blocked_since = None;
            return poll;
        }
        let limit = self.limit;
        let timer = self
            .blocked_since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.deadline(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.deadline(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.deadline(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.deadline(cx, poll)
    }
}

/// Resolves once the broker is shutting down (or its sender is gone).
async fn shutting_down(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|down| *down).await;
}

/// Refusals at the cap, logged at most once per [`REFUSAL_REPORT`] so a flood of connections
/// is not also a flood of log lines.
#[derive(Default)]
struct Refusals {
    since_report: u64,
    reported_at: Option<tokio::time::Instant>,
}

impl Refusals {
    fn count(&mut self, max: usize) {
        self.since_report += 1;
        let due = self
            .reported_at
            .is_none_or(|at| at.elapsed() >= REFUSAL_REPORT);
        if due {
            tracing::warn!(
                refused = self.since_report,
                max,
                "connections refused at the connection cap"
            );
            self.since_report = 0;
            self.reported_at = Some(tokio::time::Instant::now());
        }
    }
}
