//! Refusals of credentials that never verified, counted instead of recorded one by one. Anyone
//! can send garbage tokens, thousands a second; an event each would make every refusal a write
//! through the lock issuance takes. So refusals that did not get past signature verification
//! are counted per (action, issuer, code) and written as one event per key and window, with the
//! exact count (never sampled) and the window's bounds. Anything that got past signature
//! verification is still recorded per request, naming who it was.
//!
//! Keys are bounded: the issuer is a configured issuer's name or `unknown` (never the
//! attacker-chosen `iss`), and codes come from the fixed table.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::json;

use super::{ANONYMOUS, AuditEvent, Outcome};

/// What an issuer that is not configured (or a token without one) is counted as.
pub const UNKNOWN_ISSUER: &str = "unknown";

type Key = (&'static str, String, &'static str);

/// Counts of refusals in the current window.
#[derive(Default)]
pub struct RefusalTally {
    window: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    /// Unix ms of the first refusal counted in this window.
    since_ms: Option<i64>,
    counts: BTreeMap<Key, u64>,
}

impl RefusalTally {
    /// Counts one refusal.
    pub fn count(&self, action: &'static str, issuer: &str, code: &'static str, now_ms: i64) {
        let mut window = self.lock();
        window.since_ms.get_or_insert(now_ms);
        *window
            .counts
            .entry((action, issuer.to_owned(), code))
            .or_default() += 1;
    }

    /// Ends the window and answers what it counted (`None` when nothing was).
    pub fn take(&self, now_ms: i64) -> Option<WindowCounts> {
        let mut window = self.lock();
        let since_ms = window.since_ms.take()?;
        Some(WindowCounts {
            since_ms,
            until_ms: now_ms,
            counts: std::mem::take(&mut window.counts),
        })
    }

    /// Puts back counts that could not be written, so they go out with the next window instead
    /// of being lost.
    pub fn restore(&self, unwritten: WindowCounts) {
        let mut window = self.lock();
        let since = window.since_ms.get_or_insert(unwritten.since_ms);
        *since = (*since).min(unwritten.since_ms);
        for (key, count) in unwritten.counts {
            *window.counts.entry(key).or_default() += count;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The counts of one window.
#[derive(Debug, Clone)]
pub struct WindowCounts {
    since_ms: i64,
    until_ms: i64,
    counts: BTreeMap<Key, u64>,
}

impl WindowCounts {
    /// One event per key, with its exact count and the window's bounds.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.counts
            .iter()
            .map(|((action, issuer, code), count)| {
                AuditEvent::new(*action, Outcome::Refused, ANONYMOUS)
                    .at(self.until_ms)
                    .with_reason(*code)
                    .with_details(json!({
                        "aggregated": true, "count": count, "issuer": issuer,
                        "since_ms": self.since_ms, "until_ms": self.until_ms,
                    }))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::audit::actions;

    fn details(event: &AuditEvent) -> serde_json::Value {
        serde_json::from_str(&event.details).unwrap()
    }

    #[test]
    fn refusals_are_counted_exactly_per_action_issuer_and_code() {
        let tally = RefusalTally::default();
        for _ in 0..1000 {
            tally.count(
                actions::IDENTITY_REFUSED,
                "unknown",
                "identity_malformed",
                10,
            );
        }
        tally.count(
            actions::IDENTITY_REFUSED,
            "kubernetes",
            "identity_signature_invalid",
            20,
        );
        tally.count(
            actions::ADMIN_REFUSED,
            "unknown",
            "admin_credential_invalid",
            30,
        );
        let events = tally.take(40).unwrap().events();
        assert_eq!(events.len(), 3);
        let malformed = events
            .iter()
            .find(|e| e.reason.as_deref() == Some("identity_malformed"))
            .unwrap();
        assert_eq!(details(malformed)["count"], 1000);
        assert_eq!(details(malformed)["since_ms"], 10);
        assert_eq!(details(malformed)["until_ms"], 40);
        assert_eq!(malformed.actor, ANONYMOUS);
        assert!(tally.take(50).is_none(), "the window starts empty");
    }

    #[test]
    fn events_that_could_not_be_written_are_counted_again() {
        let tally = RefusalTally::default();
        for _ in 0..7 {
            tally.count(
                actions::IDENTITY_REFUSED,
                "github",
                "identity_key_unknown",
                5,
            );
        }
        let unwritten = tally.take(9).unwrap();
        tally.count(
            actions::IDENTITY_REFUSED,
            "github",
            "identity_key_unknown",
            12,
        );
        tally.restore(unwritten);
        let events = tally.take(20).unwrap().events();
        assert_eq!(events.len(), 1);
        assert_eq!(details(&events[0])["count"], 8);
        assert_eq!(details(&events[0])["since_ms"], 5);
    }
}
