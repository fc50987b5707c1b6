//! The signature cache: writs whose signatures were already verified, keyed by their exact text.
//!
//! Signature checks are most of the cost of a writ (tens of microseconds per block); an agent
//! presents the same writ for many requests in its few minutes of life. The cache stores the
//! verified token so a repeat pays only for Datalog authorization, which still runs on every
//! request. It must never hold anything unverified, and never outlive the writ: entries leave at
//! the writ's expiry, or oldest first when the cache is full. One short mutex section per call.
//!
//! "Full" counts entries and bytes of writ text: any holder can mint endless distinct valid
//! writs by attenuating its own, each up to the size limit, so an entry count alone would let
//! one agent fill memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// A bounded map from writ text to a verified value, evicting at expiry and oldest-first.
///
/// Its keys are bearer credentials: `Debug` shows the bounds and occupancy only, so a verifier
/// printed into a log never carries the writs it has seen.
pub(crate) struct SignatureCache<V> {
    capacity: usize,
    max_bytes: usize,
    inner: Mutex<Inner<V>>,
}

struct Inner<V> {
    map: HashMap<Arc<str>, Slot<V>>,
    /// Insertion order, for evicting the oldest entry when full.
    by_age: BTreeMap<u64, Arc<str>>,
    /// Expiry order, for dropping entries whose writ is no longer valid.
    by_expiry: BTreeSet<(SystemTime, u64)>,
    next_seq: u64,
    /// Sum of the cached writs' lengths.
    bytes: usize,
}

struct Slot<V> {
    seq: u64,
    expires_at: SystemTime,
    value: Arc<V>,
}

impl<V> SignatureCache<V> {
    /// A cache holding at most `capacity` writs totalling at most `max_bytes` bytes of writ
    /// text; a capacity of 0 disables caching.
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Self {
        SignatureCache {
            capacity,
            max_bytes,
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                by_age: BTreeMap::new(),
                by_expiry: BTreeSet::new(),
                next_seq: 0,
                bytes: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        // Nothing panics while the lock is held, and every update leaves the maps consistent, so
        // a poisoned lock still guards valid data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The value cached for `writ`, unless it expired before `now` (then it is dropped).
    pub(crate) fn get(&self, writ: &str, now: SystemTime) -> Option<Arc<V>> {
        if self.capacity == 0 {
            return None;
        }
        let mut inner = self.lock();
        let slot = inner.map.get(writ)?;
        if now > slot.expires_at {
            inner.remove(writ);
            return None;
        }
        Some(Arc::clone(&slot.value))
    }

    /// Caches `value` for `writ` until `expires_at`. Expired entries are dropped first, then the
    /// oldest entries while the cache is full.
    pub(crate) fn insert(
        &self,
        writ: &str,
        expires_at: SystemTime,
        value: Arc<V>,
        now: SystemTime,
    ) {
        if self.capacity == 0 || now > expires_at || writ.len() > self.max_bytes {
            return;
        }
        // Allocated before taking the lock to keep the critical section short.
        let key: Arc<str> = Arc::from(writ);
        let mut inner = self.lock();
        if inner.map.contains_key(writ) {
            return; // another request verified the same writ concurrently
        }
        inner.drop_expired(now);
        while inner.map.len() >= self.capacity || inner.bytes + writ.len() > self.max_bytes {
            let Some((_, oldest)) = inner.by_age.pop_first() else {
                break;
            };
            inner.remove(&oldest);
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.bytes += writ.len();
        inner.by_age.insert(seq, Arc::clone(&key));
        inner.by_expiry.insert((expires_at, seq));
        inner.map.insert(
            key,
            Slot {
                seq,
                expires_at,
                value,
            },
        );
    }

    /// Forgets `writ` (e.g. its key is no longer trusted).
    pub(crate) fn remove(&self, writ: &str) {
        self.lock().remove(writ);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }
}

impl<V> std::fmt::Debug for SignatureCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("SignatureCache")
            .field("capacity", &self.capacity)
            .field("max_bytes", &self.max_bytes)
            .field("writs", &inner.map.len())
            .field("bytes", &inner.bytes)
            .finish_non_exhaustive()
    }
}

impl<V> Inner<V> {
    fn remove(&mut self, writ: &str) {
        if let Some(slot) = self.map.remove(writ) {
            self.bytes -= writ.len();
            self.by_age.remove(&slot.seq);
            self.by_expiry.remove(&(slot.expires_at, slot.seq));
        }
    }

    fn drop_expired(&mut self, now: SystemTime) {
        while let Some(&(expires_at, seq)) = self.by_expiry.first() {
            if expires_at >= now {
                break;
            }
            self.by_expiry.pop_first();
            if let Some(key) = self.by_age.remove(&seq) {
                self.bytes -= key.len();
                self.map.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn returns_what_was_inserted_until_expiry() {
        let cache = SignatureCache::new(4, 1024);
        cache.insert("a", at(10), Arc::new(1), at(0));
        assert_eq!(cache.get("a", at(5)).as_deref(), Some(&1));
        assert_eq!(cache.get("a", at(10)).as_deref(), Some(&1));
        assert_eq!(cache.get("a", at(11)), None);
        assert_eq!(cache.len(), 0, "an expired entry is dropped when seen");
    }

    #[test]
    fn bounded_and_oldest_first() {
        let cache = SignatureCache::new(2, 1024);
        cache.insert("a", at(100), Arc::new(1), at(0));
        cache.insert("b", at(100), Arc::new(2), at(0));
        cache.insert("c", at(100), Arc::new(3), at(0));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("a", at(1)), None);
        assert!(cache.get("b", at(1)).is_some());
        assert!(cache.get("c", at(1)).is_some());
    }

    #[test]
    fn expired_entries_leave_before_live_ones() {
        let cache = SignatureCache::new(2, 1024);
        cache.insert("old-but-live", at(100), Arc::new(1), at(0));
        cache.insert("short", at(5), Arc::new(2), at(0));
        cache.insert("new", at(100), Arc::new(3), at(6));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("old-but-live", at(6)).is_some());
        assert!(cache.get("new", at(6)).is_some());
    }

    #[test]
    fn capacity_zero_disables_and_expired_values_are_not_stored() {
        let off = SignatureCache::new(0, 1024);
        off.insert("a", at(100), Arc::new(1), at(0));
        assert_eq!(off.get("a", at(0)), None);

        let cache = SignatureCache::new(2, 1024);
        cache.insert("a", at(1), Arc::new(1), at(2));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn bounded_by_bytes_too() {
        let cache = SignatureCache::new(100, 10);
        cache.insert("aaaa", at(100), Arc::new(1), at(0));
        cache.insert("bbbb", at(100), Arc::new(2), at(0));
        cache.insert("cccc", at(100), Arc::new(3), at(0));
        assert_eq!(cache.len(), 2, "12 bytes do not fit in 10");
        assert_eq!(cache.get("aaaa", at(1)), None);
        cache.insert("x".repeat(11).as_str(), at(100), Arc::new(4), at(0));
        assert_eq!(
            cache.len(),
            2,
            "a writ larger than the budget is not cached"
        );
        cache.remove("bbbb");
        cache.remove("cccc");
        cache.insert("0123456789", at(100), Arc::new(5), at(0));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn remove_forgets() {
        let cache = SignatureCache::new(2, 1024);
        cache.insert("a", at(100), Arc::new(1), at(0));
        cache.remove("a");
        assert_eq!(cache.get("a", at(0)), None);
        assert_eq!(cache.len(), 0);
    }
}
