//! Telling approvers: a webhook POSTed for every new request, signed so the receiver can tell it
//! came from this broker and was not replayed.
//!
//! The body is JSON. `Writ-Signature: t=<unix seconds>,v1=<hex>` where `v1` is
//! HMAC-SHA256(secret, "<t>.<body>"): the receiver recomputes it over the raw body, compares in
//! constant time, and refuses a `t` too far from its clock. Each request is retried with
//! exponential backoff (`retry_base`, doubled each time, at most 60 s apart) until delivered, the
//! attempts run out, or the request expires; every attempt is reported (and audited by the
//! broker). At most 8 attempts are on the wire at once; a request waiting for its next attempt
//! holds no slot, so one failing notification delays no other. The queue is bounded: when it is
//! full a notification is reported undelivered at once rather than held in memory; the approval
//! page and `writ approvals list` still show the request. Notifications in flight are bounded by
//! the requests that can be pending (16 per agent) and by their `attempts` and expiry.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{Semaphore, mpsc};

/// Notifications waiting for delivery, at most.
pub const QUEUE_CAPACITY: usize = 1024;
/// Deliveries in flight at once.
const CONCURRENT_DELIVERIES: usize = 8;
/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Each attempt's own time limit.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to deliver.
#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: Arc<Vec<u8>>,
    pub attempts: u32,
    pub retry_base: Duration,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// One notification: the request it is about, the JSON body, and when trying becomes pointless.
#[derive(Debug, Clone)]
pub struct Notification {
    pub request_id: String,
    pub body: Vec<u8>,
    /// Unix seconds: the request's expiry.
    pub give_up_at: i64,
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub request_id: String,
    pub attempt: u32,
    pub delivered: bool,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why the attempt failed, in words (never the body or the secret).
    pub error: Option<String>,
    /// No further attempt will be made.
    pub last: bool,
}

/// The signature header's value for `body` sent at `timestamp`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body))
    )
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; the error case cannot occur.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return Vec::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Hands notifications to the delivery task.
#[derive(Clone)]
pub struct Notifier {
    queue: mpsc::Sender<Notification>,
    reports: mpsc::Sender<DeliveryReport>,
}

impl Notifier {
    /// Starts delivering to `webhook`; every attempt's report arrives on the returned receiver.
    pub fn start(
        webhook: Webhook,
        client: reqwest::Client,
    ) -> (Notifier, mpsc::Receiver<DeliveryReport>) {
        let (queue, mut incoming) = mpsc::channel::<Notification>(QUEUE_CAPACITY);
        let (reports, report_rx) = mpsc::channel(QUEUE_CAPACITY);
        let sender = reports.clone();
        tokio::spawn(async move {
            // Each notification gets its own task, which holds a sending slot only while an
            // attempt is on the wire: a receiver that keeps failing for one request delays no
            // other request's notification by its backoff.
            let sending = Arc::new(Semaphore::new(CONCURRENT_DELIVERIES));
            while let Some(notification) = incoming.recv().await {
                let (webhook, client, reports) = (webhook.clone(), client.clone(), sender.clone());
                let sending = Arc::clone(&sending);
                tokio::spawn(async move {
                    deliver(&webhook, &client, &sending, notification, &reports).await;
                });
            }
        });
        (Notifier { queue, reports }, report_rx)
    }

    /// Queues `notification`; a full queue is reported as a failed last attempt at once.
    pub fn notify(&self, notification: Notification) {
        if let Err(error) = self.queue.try_send(notification) {
            let notification = match error {
                mpsc::error::TrySendError::Full(n) | mpsc::error::TrySendError::Closed(n) => n,
            };
            let _ = self.reports.try_send(DeliveryReport {
                request_id: notification.request_id,
                attempt: 0,
                delivered: false,
                status: None,
                error: Some("the notification queue is full".into()),
                last: true,
            });
        }
    }
}

async fn deliver(
    webhook: &Webhook,
    client: &reqwest::Client,
    sending: &Semaphore,
    notification: Notification,
    reports: &mpsc::Sender<DeliveryReport>,
) {
    let mut backoff = webhook.retry_base;
    for attempt in 1..=webhook.attempts {
        let Ok(slot) = sending.acquire().await else {
            return;
        };
        let now = crate::time::unix_seconds(std::time::SystemTime::now());
        let (status, error) = attempt_once(webhook, client, &notification, now).await;
        drop(slot);
        let delivered = error.is_none();
        let out_of_time = now.saturating_add(backoff.as_secs() as i64) >= notification.give_up_at;
        let last = delivered || attempt == webhook.attempts || out_of_time;
        let report = DeliveryReport {
            request_id: notification.request_id.clone(),
            attempt,
            delivered,
            status,
            error,
            last,
        };
        if reports.send(report).await.is_err() || last {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn attempt_once(
    webhook: &Webhook,
    client: &reqwest::Client,
    notification: &Notification,
    now: i64,
) -> (Option<u16>, Option<String>) {
    let sent = client
        .post(&webhook.url)
        .timeout(ATTEMPT_TIMEOUT)
        .header("content-type", "application/json")
        .header(
            "writ-signature",
            signature(&webhook.secret, now, &notification.body),
        )
        .body(notification.body.clone())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
        Ok(response) => {
            let status = response.status().as_u16();
            (
                Some(status),
                Some(format!("the receiver answered {status}")),
            )
        }
        Err(error) if error.is_timeout() => {
            (None, Some("the receiver did not answer in time".into()))
        }
        Err(error) if error.is_connect() => {
            (None, Some("the receiver could not be reached".into()))
        }
        Err(_) => (None, Some("the request failed".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let a = signature(b"secret", 1700000000, b"{}");
        assert!(a.starts_with("t=1700000000,v1="));
        assert_eq!(a.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(a, signature(b"secret", 1700000001, b"{}"));
        assert_ne!(a, signature(b"secret", 1700000000, b"{ }"));
        assert_ne!(a, signature(b"other", 1700000000, b"{}"));
        assert_eq!(a, signature(b"secret", 1700000000, b"{}"));
    }
}
