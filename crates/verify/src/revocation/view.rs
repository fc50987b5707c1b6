//! The revocation view: the verifier's in-memory copy of the broker's live revocations, indexed
//! by what a writ can be matched on.
//!
//! Matching is conservative. A writ is revoked if its id, or any of its block revocation ids,
//! is named by a writ revocation (so revoking a writ revokes every attenuation of it), or if a
//! revocation of its agent or task covers its `issued_at`. Times the view cannot read make an
//! entry revoke more, never less: an unreadable `issued_until` revokes everything of its target
//! and an unreadable `expires_at` keeps the entry until the broker replaces it.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use super::wire::{RevocationEntry, RevocationTarget};

/// Default largest number of live entries a view holds (about 40 MB at the worst sizes the feed
/// allows; a broker whose writs live minutes has far fewer live revocations).
pub const DEFAULT_MAX_REVOCATION_ENTRIES: usize = 100_000;

/// What the view needs to know of a writ to decide whether it is revoked: the trusted values of
/// its authority block and the revocation ids of all its blocks.
#[derive(Clone, Copy, Debug)]
pub struct WritIdentity<'a> {
    /// `writ_id(..)` of the authority block.
    pub writ_id: &'a str,
    /// `agent(..)` of the authority block.
    pub agent: &'a str,
    /// `task(..)` of the authority block.
    pub task: &'a str,
    /// `issued_at(..)` of the authority block.
    pub issued_at: SystemTime,
    /// Every block's revocation id (`Biscuit::revocation_identifiers`), lowercase hex, the
    /// authority block's first.
    pub revocation_ids: &'a [String],
}

/// An entry did not fit in the view: more live entries than it may hold. The view is then
/// incomplete for good and never confirmed again, so a verifier using it refuses every writ as
/// stale (fail closed); one following a feed rebuilds it from the feed once it is stale.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the revocation view is full ({max_entries} entries); it can no longer be complete")]
pub struct RevocationViewFull {
    /// The view's capacity.
    pub max_entries: usize,
}

/// The live revocations known to a verifier, and when they were last confirmed complete.
///
/// A verifier with a revocation feed keeps its own view up to date; a view can also be built and
/// filled by hand (tests, a service that learns revocations another way) and given to
/// [`VerifierBuilder::revocations`](crate::VerifierBuilder::revocations).
#[derive(Clone, Debug)]
pub struct RevocationView {
    entries: HashMap<String, StoredEntry>,
    by_writ_id: Index,
    by_revocation_id: Index,
    by_agent: Index,
    by_task: Index,
    /// Entries that may be forgotten after a time, in that order.
    by_expiry: BTreeSet<(SystemTime, String)>,
    cursor: u64,
    last_confirmed: Option<Instant>,
    max_entries: usize,
    /// Set once an entry could not be stored: the view can never be complete again.
    overflowed: bool,
}

#[derive(Clone, Debug)]
struct StoredEntry {
    entry: RevocationEntry,
    cutoff: Cutoff,
    expires_at: Option<SystemTime>,
}

/// Which writs of an agent or task an entry covers, by their `issued_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cutoff {
    /// Every writ, whenever issued (a suspended agent, or an `issued_until` that is unreadable).
    Everything,
    /// Writs issued at or before this instant.
    IssuedUntil(SystemTime),
}

impl Cutoff {
    fn covers(self, issued_at: SystemTime) -> bool {
        match self {
            Cutoff::Everything => true,
            Cutoff::IssuedUntil(until) => issued_at <= until,
        }
    }
}

/// Entry ids by one matchable value (several revocations may name the same agent or task).
#[derive(Clone, Debug, Default)]
struct Index(HashMap<String, Vec<String>>);

impl Index {
    fn insert(&mut self, key: &str, id: &str) {
        self.0
            .entry(key.to_owned())
            .or_default()
            .push(id.to_owned());
    }

    fn remove(&mut self, key: &str, id: &str) {
        if let Some(ids) = self.0.get_mut(key) {
            ids.retain(|existing| existing != id);
            if ids.is_empty() {
                self.0.remove(key);
            }
        }
    }

    fn ids(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }
}

impl Default for RevocationView {
    fn default() -> Self {
        RevocationView::new()
    }
}

impl RevocationView {
    /// An empty view, never confirmed, holding at most [`DEFAULT_MAX_REVOCATION_ENTRIES`].
    pub fn new() -> RevocationView {
        RevocationView::with_max_entries(DEFAULT_MAX_REVOCATION_ENTRIES)
    }

    pub(crate) fn with_max_entries(max_entries: usize) -> RevocationView {
        RevocationView {
            entries: HashMap::new(),
            by_writ_id: Index::default(),
            by_revocation_id: Index::default(),
            by_agent: Index::default(),
            by_task: Index::default(),
            by_expiry: BTreeSet::new(),
            cursor: 0,
            last_confirmed: None,
            max_entries,
            overflowed: false,
        }
    }

    /// Number of live entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The highest feed position seen: the next sync asks for entries after it.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// When the view was last known to hold every live revocation, if ever.
    pub fn last_confirmed(&self) -> Option<Instant> {
        self.last_confirmed
    }

    /// How old the view's last confirmation is at `now`; `None` if never confirmed.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.last_confirmed
            .map(|confirmed| now.saturating_duration_since(confirmed))
    }

    /// Records that the view held every live revocation at `at` (a confirmation older than the
    /// last one changes nothing). Ignored once the view has overflowed: it cannot be complete.
    pub fn confirm(&mut self, at: Instant) {
        if self.overflowed {
            return;
        }
        if self.last_confirmed.is_none_or(|last| at > last) {
            self.last_confirmed = Some(at);
        }
    }

    /// Moves the cursor forward to `seq` (the broker's `next_after`, which also covers entries
    /// it left out because they had expired).
    pub(crate) fn advance_cursor(&mut self, seq: u64) {
        self.cursor = self.cursor.max(seq);
    }

    /// Adds `entry`, replacing an entry with the same id and a lower `seq` (an entry with the same
    /// id and a `seq` not higher than the held one is stale and ignored). An entry already
    /// expired at `now` only removes the one it replaces.
    ///
    /// # Errors
    /// [`RevocationViewFull`] when a new entry does not fit; the view is then never confirmed
    /// again, so it refuses writs as stale rather than answer without the entry.
    pub fn apply(
        &mut self,
        entry: RevocationEntry,
        now: SystemTime,
    ) -> Result<(), RevocationViewFull> {
        let held = self.entries.get(&entry.id).map(|held| held.entry.seq);
        if held.is_some_and(|held_seq| held_seq >= entry.seq) {
            self.advance_cursor(entry.seq);
            return Ok(());
        }
        let stored = StoredEntry::read(entry);
        let expired = stored.expires_at.is_some_and(|at| now > at);
        if held.is_none() && !expired && self.entries.len() >= self.max_entries {
            self.overflowed = true;
            tracing::error!(
                max_entries = self.max_entries,
                revocation = %stored.entry.id,
                "the revocation view is full; every writ will be refused as stale"
            );
            return Err(RevocationViewFull {
                max_entries: self.max_entries,
            });
        }
        self.advance_cursor(stored.entry.seq);
        self.remove(&stored.entry.id);
        if !expired {
            self.insert(stored);
        }
        Ok(())
    }

    /// Entries with a `seq` above `seq`.
    pub(crate) fn entries_after(&self, seq: u64) -> impl Iterator<Item = &RevocationEntry> {
        self.entries
            .values()
            .map(|stored| &stored.entry)
            .filter(move |entry| entry.seq > seq)
    }

    /// Forgets entries whose `expires_at` has passed at `now`; answers how many.
    pub fn prune(&mut self, now: SystemTime) -> usize {
        let mut pruned = 0;
        while let Some((expires_at, id)) = self.by_expiry.first().cloned() {
            if expires_at >= now {
                break;
            }
            self.remove(&id);
            pruned += 1;
        }
        pruned
    }

    /// The entry that revokes `writ`, if any: its writ id or any block revocation id is named by
    /// a writ revocation, or an agent or task revocation covers its `issued_at`.
    pub fn is_revoked(&self, writ: &WritIdentity<'_>) -> Option<&RevocationEntry> {
        let by_id = self.by_writ_id.ids(writ.writ_id).iter();
        let by_revocation_id = writ
            .revocation_ids
            .iter()
            .flat_map(|rid| self.by_revocation_id.ids(rid));
        let named = by_id
            .chain(by_revocation_id)
            .filter_map(|id| self.entries.get(id));
        let covering = self
            .by_agent
            .ids(writ.agent)
            .iter()
            .chain(self.by_task.ids(writ.task))
            .filter_map(|id| self.entries.get(id))
            .filter(|stored| stored.cutoff.covers(writ.issued_at));
        named.chain(covering).next().map(|stored| &stored.entry)
    }

    fn insert(&mut self, stored: StoredEntry) {
        let id = stored.entry.id.clone();
        self.file_under(&stored.entry.target, &id, Index::insert);
        if let Some(expires_at) = stored.expires_at {
            self.by_expiry.insert((expires_at, id.clone()));
        }
        self.entries.insert(id, stored);
    }

    fn remove(&mut self, id: &str) {
        let Some(stored) = self.entries.remove(id) else {
            return;
        };
        self.file_under(&stored.entry.target, id, Index::remove);
        if let Some(expires_at) = stored.expires_at {
            self.by_expiry.remove(&(expires_at, stored.entry.id));
        }
    }

    /// Applies `update` (insert or remove) to entry `id` in every index `target` is matched by,
    /// under the same keys both ways, so a removed entry leaves no id behind.
    fn file_under(
        &mut self,
        target: &RevocationTarget,
        id: &str,
        update: fn(&mut Index, &str, &str),
    ) {
        match target {
            RevocationTarget::Writ {
                writ_id,
                revocation_id,
            } => {
                update(&mut self.by_writ_id, writ_id, id);
                // Writs' revocation ids are matched in lowercase hex.
                update(
                    &mut self.by_revocation_id,
                    &revocation_id.to_ascii_lowercase(),
                    id,
                );
            }
            RevocationTarget::Agent { agent } => update(&mut self.by_agent, agent, id),
            RevocationTarget::Task { task } => update(&mut self.by_task, task, id),
        }
    }
}

impl StoredEntry {
    /// Reads the entry's times, failing closed on those that do not parse.
    fn read(entry: RevocationEntry) -> StoredEntry {
        let cutoff = match &entry.issued_until {
            None => {
                if matches!(entry.target, RevocationTarget::Task { .. }) {
                    tracing::warn!(
                        revocation = %entry.id,
                        "a task revocation without issued_until; revoking every writ of the task"
                    );
                }
                Cutoff::Everything
            }
            Some(text) => match humantime::parse_rfc3339(text) {
                Ok(until) => Cutoff::IssuedUntil(until),
                Err(error) => {
                    tracing::warn!(
                        revocation = %entry.id, %error,
                        "unreadable issued_until; revoking every writ of the target"
                    );
                    Cutoff::Everything
                }
            },
        };
        let expires_at =
            entry
                .expires_at
                .as_deref()
                .and_then(|text| match humantime::parse_rfc3339(text) {
                    Ok(at) => Some(at),
                    Err(error) => {
                        tracing::warn!(
                            revocation = %entry.id, %error,
                            "unreadable expires_at; keeping the entry until the broker replaces it"
                        );
                        None
                    }
                });
        StoredEntry {
            entry,
            cutoff,
            expires_at,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    const NOON: &str = "2026-11-22T12:00:00Z";

    fn entry(seq: u64, id: &str, target: RevocationTarget) -> RevocationEntry {
        RevocationEntry {
            seq,
            id: id.into(),
            target,
            issued_until: None,
            expires_at: None,
        }
    }

    fn agent(seq: u64, id: &str, until: Option<&str>) -> RevocationEntry {
        RevocationEntry {
            issued_until: until.map(str::to_owned),
            ..entry(
                seq,
                id,
                RevocationTarget::Agent {
                    agent: "agent-7".into(),
                },
            )
        }
    }

    fn revoked(view: &RevocationView, issued: &str, ids: &[String]) -> bool {
        view.is_revoked(&WritIdentity {
            writ_id: "wr_1",
            agent: "agent-7",
            task: "refund-42",
            issued_at: at(issued),
            revocation_ids: ids,
        })
        .is_some()
    }

    #[test]
    fn a_later_entry_with_the_same_id_replaces_an_earlier_one() {
        let mut view = RevocationView::new();
        view.apply(agent(1, "rv_1", None), at(NOON)).unwrap();
        assert!(revoked(&view, "2026-11-22T12:30:00Z", &[]));

        view.apply(agent(2, "rv_1", Some(NOON)), at(NOON)).unwrap();
        assert_eq!(view.len(), 1);
        assert!(revoked(&view, NOON, &[]), "issued at the cutoff");
        assert!(!revoked(&view, "2026-11-22T12:00:01Z", &[]));

        // A replay of the older entry does not undo the lift.
        view.apply(agent(1, "rv_1", None), at(NOON)).unwrap();
        assert!(!revoked(&view, "2026-11-22T12:30:00Z", &[]));
        assert_eq!(view.cursor(), 2);
    }

    #[test]
    fn revocation_ids_match_any_block_in_any_case() {
        let mut view = RevocationView::new();
        let target = RevocationTarget::Writ {
            writ_id: "wr_other".into(),
            revocation_id: "ABCD".into(),
        };
        view.apply(entry(1, "rv_1", target), at(NOON)).unwrap();
        assert!(revoked(&view, NOON, &["0000".into(), "abcd".into()]));
        assert!(!revoked(&view, NOON, &["0000".into()]));
    }

    #[test]
    fn expired_entries_are_pruned_and_never_stored() {
        let mut view = RevocationView::new();
        let expiring = |seq, id: &str, expires: &str| RevocationEntry {
            expires_at: Some(expires.into()),
            ..agent(seq, id, Some(NOON))
        };
        view.apply(expiring(1, "rv_1", "2026-11-22T12:15:00Z"), at(NOON))
            .unwrap();
        view.apply(expiring(2, "rv_2", "2026-11-22T13:00:00Z"), at(NOON))
            .unwrap();
        assert_eq!(view.prune(at("2026-11-22T12:15:00Z")), 0, "not yet past");
        assert_eq!(view.prune(at("2026-11-22T12:15:01Z")), 1);
        assert_eq!(view.len(), 1);

        // An expired replacement removes what it replaces and is not kept itself.
        view.apply(expiring(3, "rv_2", "2026-11-22T11:00:00Z"), at(NOON))
            .unwrap();
        assert!(view.is_empty());
        assert_eq!(view.cursor(), 3);
    }

    #[test]
    fn unreadable_times_fail_closed() {
        let mut view = RevocationView::new();
        let entry = RevocationEntry {
            expires_at: Some("soon".into()),
            ..agent(1, "rv_1", Some("yesterday"))
        };
        view.apply(entry, at(NOON)).unwrap();
        assert!(revoked(&view, "2030-01-01T00:00:00Z", &[]));
        assert_eq!(view.prune(at("2099-01-01T00:00:00Z")), 0);
    }

    #[test]
    fn a_task_revocation_without_cutoff_covers_every_writ_of_the_task() {
        let mut view = RevocationView::new();
        let target = RevocationTarget::Task {
            task: "refund-42".into(),
        };
        view.apply(entry(1, "rv_1", target), at(NOON)).unwrap();
        assert!(revoked(&view, "2030-01-01T00:00:00Z", &[]));
    }

    #[test]
    fn an_overflowing_view_is_never_confirmed_again() {
        let mut view = RevocationView::with_max_entries(1);
        view.apply(agent(1, "rv_1", None), at(NOON)).unwrap();
        view.confirm(Instant::now());
        // Replacing an entry needs no room.
        view.apply(agent(2, "rv_1", Some(NOON)), at(NOON)).unwrap();
        assert_eq!(
            view.apply(agent(3, "rv_2", None), at(NOON)),
            Err(RevocationViewFull { max_entries: 1 })
        );
        assert_eq!(view.cursor(), 2, "the lost entry stays ahead of the cursor");
        let before = view.last_confirmed();
        view.confirm(Instant::now() + Duration::from_secs(1));
        assert_eq!(view.last_confirmed(), before);
    }

    #[test]
    fn age_counts_from_the_latest_confirmation() {
        let mut view = RevocationView::new();
        let start = Instant::now();
        assert_eq!(view.age(start), None);
        view.confirm(start + Duration::from_secs(2));
        view.confirm(start + Duration::from_secs(1));
        assert_eq!(
            view.age(start + Duration::from_secs(5)),
            Some(Duration::from_secs(3))
        );
    }
}
