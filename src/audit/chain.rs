//! The hash chain: each event's hash covers the previous event's hash, the event's position and
//! its contents, so altering, removing or reordering stored events breaks the chain at the first
//! event touched. The encoding is specified in the [module documentation](super).

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::{AuditEvent, ParseError};

/// Domain separation: no other hash the broker computes starts with these bytes.
pub const EVENT_DOMAIN: &[u8] = b"writ-audit-v1\0";

/// A SHA-256 hash in the chain; lowercase hex in text, JSON and storage.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainHash([u8; 32]);

impl ChainHash {
    /// The `prev_hash` of event 1: all zero bytes.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    pub const fn from_bytes(bytes: [u8; 32]) -> ChainHash {
        ChainHash(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({self})")
    }
}

impl FromStr for ChainHash {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<ChainHash, ParseError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| ParseError::Hash)?;
        Ok(ChainHash(bytes))
    }
}

impl Serialize for ChainHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ChainHash, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An event in its place in the chain, as stored and exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainedEvent {
    /// The position in the log: 1 for the first event, then gapless.
    pub seq: u64,
    #[serde(flatten)]
    pub event: AuditEvent,
    /// The hash of event `seq - 1`, or [`ChainHash::GENESIS`] for event 1.
    pub prev_hash: ChainHash,
    /// [`link`]`(prev_hash, seq, event)`.
    pub hash: ChainHash,
}

impl ChainedEvent {
    /// Places `event` at `seq`, after the event whose hash is `prev_hash`.
    pub fn new(seq: u64, prev_hash: ChainHash, event: AuditEvent) -> ChainedEvent {
        let hash = link(&prev_hash, seq, &event);
        ChainedEvent {
            seq,
            event,
            prev_hash,
            hash,
        }
    }

    /// Places `event` right after a log's head: `(0, ChainHash::GENESIS)` for an empty log,
    /// otherwise the last event's seq and hash.
    pub fn after(head: (u64, ChainHash), event: AuditEvent) -> ChainedEvent {
        let (seq, hash) = head;
        ChainedEvent::new(seq.saturating_add(1), hash, event)
    }
}

/// The hash of `event` at position `seq` after the event whose hash is `prev`: SHA-256 over the
/// canonical encoding in the [module documentation](super).
pub fn link(prev: &ChainHash, seq: u64, event: &AuditEvent) -> ChainHash {
    let mut hasher = Sha256::new();
    hasher.update(EVENT_DOMAIN);
    hasher.update(prev.0);
    hasher.update(seq.to_be_bytes());
    hasher.update(event.at_ms.to_be_bytes());
    put_str(&mut hasher, &event.action);
    put_str(&mut hasher, event.outcome.as_str());
    put_str(&mut hasher, &event.actor);
    put_opt(&mut hasher, event.writ_id.as_deref());
    put_opt(&mut hasher, event.task.as_deref());
    put_opt(&mut hasher, event.agent.as_deref());
    put_opt(&mut hasher, event.reason.as_deref());
    put_str(&mut hasher, &event.details);
    ChainHash(hasher.finalize().into())
}

/// A string as its byte length (u32, big-endian) and its UTF-8 bytes: the length tells where
/// one field ends, so no bytes can move between adjacent fields without changing the hash.
fn put_str(hasher: &mut Sha256, value: &str) {
    // Fields of 4 GiB or more are outside the encoding; the broker's request limits are far
    // smaller. Saturating keeps `link` total rather than panicking on them.
    let length = u32::try_from(value.len()).unwrap_or(u32::MAX);
    hasher.update(length.to_be_bytes());
    hasher.update(value.as_bytes());
}

/// An optional string as a 0 byte (absent) or a 1 byte and the string: absent and empty differ.
fn put_opt(hasher: &mut Sha256, value: Option<&str>) {
    match value {
        None => hasher.update([0u8]),
        Some(value) => {
            hasher.update([1u8]);
            put_str(hasher, value);
        }
    }
}

/// Where and how a chain is broken: the first event, in log order, that is not as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// The event's hash is not the hash of its contents, position and `prev_hash`.
    #[error("event {seq} was altered: its contents no longer match its hash")]
    Altered { seq: u64 },
    /// The log skips from `expected - 1` to `found`.
    #[error("{}", missing_text(*expected, *found))]
    Missing { expected: u64, found: u64 },
    /// Two events carry the same seq.
    #[error("there are two events numbered {seq}: one was duplicated or inserted")]
    Duplicated { seq: u64 },
    /// The log goes backwards: `seq` came where `expected` should have.
    #[error("event {seq} is out of order: event {expected} was expected next")]
    Reordered { seq: u64, expected: u64 },
    /// The event is intact but its `prev_hash` is not the hash of the event before it.
    #[error(
        "event {seq} does not follow the event before it: an earlier event was removed or the \
         events were reordered"
    )]
    LinkBroken { seq: u64 },
}

fn missing_text(expected: u64, found: u64) -> String {
    let gone = if found.saturating_sub(expected) <= 1 {
        format!("event {expected} is missing")
    } else {
        format!(
            "events {expected} to {} are missing",
            found.saturating_sub(1)
        )
    };
    let context = if expected <= 1 {
        format!("the log starts at event {found}")
    } else {
        format!("event {found} follows event {}", expected.saturating_sub(1))
    };
    format!("{gone}: {context}; events were removed")
}

impl ChainBreak {
    /// The first position at which the log is not as written (for [`ChainBreak::Missing`], the
    /// first missing seq).
    pub fn seq(&self) -> u64 {
        match *self {
            ChainBreak::Altered { seq }
            | ChainBreak::Duplicated { seq }
            | ChainBreak::Reordered { seq, .. }
            | ChainBreak::LinkBroken { seq } => seq,
            ChainBreak::Missing { expected, .. } => expected,
        }
    }

    /// A stable code for the kind of break, for API responses and logs.
    pub fn code(&self) -> &'static str {
        match self {
            ChainBreak::Altered { .. } => "altered",
            ChainBreak::Missing { .. } => "missing",
            ChainBreak::Duplicated { .. } => "duplicated",
            ChainBreak::Reordered { .. } => "reordered",
            ChainBreak::LinkBroken { .. } => "link_broken",
        }
    }
}

/// Verifies a chain one event at a time, in seq order, holding only the head: storage streams
/// the log through it without loading it.
///
/// The chain alone shows that no stored event was altered, removed, inserted or moved, except at
/// the end: removing the newest events, or rewriting every event from some point on, leaves a
/// valid chain. Signed [checkpoints](super::Checkpoint) catch those.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    seq: u64,
    hash: ChainHash,
    count: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier::new()
    }
}

impl ChainVerifier {
    /// A verifier for a whole log, which starts at event 1.
    pub fn new() -> ChainVerifier {
        ChainVerifier::resume(0, ChainHash::GENESIS)
    }

    /// A verifier that continues after a trusted event `seq` whose hash is `hash`, such as the
    /// head of a verified checkpoint; the next event pushed must be `seq + 1`.
    pub fn resume(seq: u64, hash: ChainHash) -> ChainVerifier {
        ChainVerifier {
            seq,
            hash,
            count: 0,
        }
    }

    /// Checks the next event and, if it is sound, makes it the head. On a break the head stays
    /// at the last sound event.
    ///
    /// Events out of seq order in the input show here as [`ChainBreak::Missing`] at the first
    /// event out of place (the verifier cannot see what follows); [`ChainVerifier::push_all`]
    /// looks one event ahead and calls that [`ChainBreak::Reordered`].
    pub fn push(&mut self, event: &ChainedEvent) -> Result<(), ChainBreak> {
        self.check_position(event.seq)?;
        if link(&event.prev_hash, event.seq, &event.event) != event.hash {
            return Err(ChainBreak::Altered { seq: event.seq });
        }
        if event.prev_hash != self.hash {
            return Err(ChainBreak::LinkBroken { seq: event.seq });
        }
        self.seq = event.seq;
        self.hash = event.hash;
        self.count += 1;
        Ok(())
    }

    fn check_position(&self, seq: u64) -> Result<(), ChainBreak> {
        let expected = self.seq.saturating_add(1);
        if seq == expected {
            Ok(())
        } else if seq > expected {
            Err(ChainBreak::Missing {
                expected,
                found: seq,
            })
        } else if seq == self.seq && seq != 0 {
            Err(ChainBreak::Duplicated { seq })
        } else {
            Err(ChainBreak::Reordered { seq, expected })
        }
    }

    /// Pushes every event in turn, stopping at the first break. A gap followed by an event from
    /// inside it is reported as the reordering it is rather than as missing events.
    pub fn push_all<I>(&mut self, events: I) -> Result<(), ChainBreak>
    where
        I: IntoIterator,
        I::Item: Borrow<ChainedEvent>,
    {
        let mut events = events.into_iter().peekable();
        while let Some(event) = events.next() {
            match self.push(event.borrow()) {
                Err(ChainBreak::Missing { expected, found })
                    if events.peek().is_some_and(|next| next.borrow().seq < found) =>
                {
                    return Err(ChainBreak::Reordered {
                        seq: found,
                        expected,
                    });
                }
                result => result?,
            }
        }
        Ok(())
    }

    /// The last sound event's seq and hash: `(0, ChainHash::GENESIS)` before any, for a fresh
    /// verifier.
    pub fn head(&self) -> (u64, ChainHash) {
        (self.seq, self.hash)
    }

    /// How many events have been verified.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Verifies a whole log, in seq order, from event 1; returns its head (seq and hash).
pub fn verify_chain<I>(events: I) -> Result<(u64, ChainHash), ChainBreak>
where
    I: IntoIterator,
    I::Item: Borrow<ChainedEvent>,
{
    let mut verifier = ChainVerifier::new();
    verifier.push_all(events)?;
    Ok(verifier.head())
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::audit::{Outcome, actions};
    use proptest::prelude::*;
    use serde_json::json;

    pub(crate) fn event(i: u64) -> AuditEvent {
        AuditEvent::new(actions::WRIT_ISSUED, Outcome::Success, format!("agent-{i}"))
            .at(1_700_000_000_000 + i as i64)
            .with_writ(format!("wr_{i}"))
            .with_task("deploy")
            .with_agent(format!("agent-{i}"))
            .with_details(json!({ "n": i }))
    }

    /// A sound chain of `n` events.
    pub(crate) fn chain(n: u64) -> Vec<ChainedEvent> {
        let mut head = (0, ChainHash::GENESIS);
        let mut events = Vec::new();
        for i in 1..=n {
            let chained = ChainedEvent::after(head, event(i));
            head = (chained.seq, chained.hash);
            events.push(chained);
        }
        events
    }

    /// Recomputes each event's own hash from its (possibly changed) contents, keeping its
    /// stored `prev_hash`: what someone who edits rows and knows the encoding would do.
    fn rehash(event: &mut ChainedEvent) {
        event.hash = link(&event.prev_hash, event.seq, &event.event);
    }

    fn sample() -> AuditEvent {
        AuditEvent::new(actions::WRIT_REFUSED, Outcome::Refused, "agent-7")
            .at(1_700_000_000_123)
            .with_task("deploy")
            .with_reason("policy_refused")
            .with_details(json!({"services": ["orders"]}))
    }

    #[test]
    fn link_follows_the_documented_encoding() {
        let event = sample();
        let prev = ChainHash::from_bytes([7; 32]);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"writ-audit-v1\0");
        bytes.extend_from_slice(&[7; 32]);
        bytes.extend_from_slice(&42u64.to_be_bytes());
        bytes.extend_from_slice(&1_700_000_000_123i64.to_be_bytes());
        for field in ["writ.refused", "refused", "agent-7"] {
            bytes.extend_from_slice(&(field.len() as u32).to_be_bytes());
            bytes.extend_from_slice(field.as_bytes());
        }
        bytes.push(0); // writ_id
        bytes.push(1); // task
        bytes.extend_from_slice(&6u32.to_be_bytes());
        bytes.extend_from_slice(b"deploy");
        bytes.push(0); // agent
        bytes.push(1); // reason
        bytes.extend_from_slice(&14u32.to_be_bytes());
        bytes.extend_from_slice(b"policy_refused");
        let details = br#"{"services":["orders"]}"#;
        bytes.extend_from_slice(&(details.len() as u32).to_be_bytes());
        bytes.extend_from_slice(details);
        let expected: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(link(&prev, 42, &event), ChainHash::from_bytes(expected));
    }

    #[test]
    fn link_is_stable_across_releases() {
        // A known answer: changing the encoding breaks every stored log, so it must be deliberate.
        let hash = link(&ChainHash::GENESIS, 1, &sample());
        assert_eq!(hash.to_string(), KNOWN_ANSWER);
    }

    /// Computed independently (Python `hashlib`) from the encoding in the module documentation.
    const KNOWN_ANSWER: &str = "3ad3c922c8d3b89fb379e70b36f198520d7c75cd67b3e389492b4924fd9da69e";

    #[test]
    fn link_is_deterministic() {
        let prev = ChainHash::from_bytes([3; 32]);
        assert_eq!(link(&prev, 5, &sample()), link(&prev, 5, &sample()));
    }

    #[test]
    fn link_separates_absent_from_empty_and_adjacent_fields() {
        let base = sample();
        let hash = |event: &AuditEvent| link(&ChainHash::GENESIS, 1, event);
        let empty_writ = AuditEvent {
            writ_id: Some(String::new()),
            ..base.clone()
        };
        assert_ne!(hash(&base), hash(&empty_writ));

        // Bytes moved from one field to the next.
        let a = AuditEvent {
            writ_id: Some("ab".into()),
            task: Some("c".into()),
            ..base.clone()
        };
        let b = AuditEvent {
            writ_id: Some("a".into()),
            task: Some("bc".into()),
            ..base.clone()
        };
        assert_ne!(hash(&a), hash(&b));
        let a = AuditEvent {
            action: "writ.issued".into(),
            actor: "x".into(),
            ..base.clone()
        };
        let b = AuditEvent {
            action: "writ.issue".into(),
            actor: "dx".into(),
            ..base.clone()
        };
        assert_ne!(hash(&a), hash(&b));
        // A value moved from one optional field to the next.
        let a = AuditEvent {
            writ_id: Some("x".into()),
            task: None,
            ..base.clone()
        };
        let b = AuditEvent {
            writ_id: None,
            task: Some("x".into()),
            ..base
        };
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn link_covers_position_and_predecessor() {
        let event = sample();
        let prev = ChainHash::from_bytes([1; 32]);
        assert_ne!(link(&prev, 1, &event), link(&prev, 2, &event));
        assert_ne!(link(&prev, 1, &event), link(&ChainHash::GENESIS, 1, &event));
    }

    #[test]
    fn hashes_are_lowercase_hex_in_text_and_json() {
        let hash = link(&ChainHash::GENESIS, 1, &sample());
        let text = hash.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text, text.to_lowercase());
        assert_eq!(text.parse::<ChainHash>().unwrap(), hash);
        assert_eq!(serde_json::to_string(&hash).unwrap(), format!("\"{text}\""));
        assert_eq!(
            serde_json::from_str::<ChainHash>(&format!("\"{text}\"")).unwrap(),
            hash
        );
        assert_eq!(ChainHash::GENESIS.to_string(), "0".repeat(64));
        assert!("abc".parse::<ChainHash>().is_err());
        assert!("zz".repeat(32).parse::<ChainHash>().is_err());
    }

    #[test]
    fn chained_events_export_flat() {
        let events = chain(2);
        let value = serde_json::to_value(&events[1]).unwrap();
        assert_eq!(value["seq"], 2);
        assert_eq!(value["action"], "writ.issued");
        assert_eq!(value["outcome"], "success");
        assert_eq!(value["prev_hash"], events[0].hash.to_string());
        let back: ChainedEvent = serde_json::from_value(value).unwrap();
        assert_eq!(back, events[1]);
    }

    #[test]
    fn a_sound_chain_verifies() {
        let events = chain(50);
        let head = verify_chain(&events).unwrap();
        assert_eq!(head, (50, events[49].hash));
        assert_eq!(
            verify_chain(Vec::<ChainedEvent>::new()).unwrap(),
            (0, ChainHash::GENESIS)
        );
        assert_eq!(events[0].prev_hash, ChainHash::GENESIS);
    }

    #[test]
    fn verification_streams_and_resumes() {
        let events = chain(10);
        let mut first = ChainVerifier::new();
        first.push_all(&events[..6]).unwrap();
        assert_eq!(first.count(), 6);
        let (seq, hash) = first.head();
        let mut rest = ChainVerifier::resume(seq, hash);
        for event in &events[6..] {
            rest.push(event).unwrap();
        }
        assert_eq!(rest.count(), 4);
        assert_eq!(rest.head(), (10, events[9].hash));
    }

    #[test]
    fn an_altered_field_names_the_event() {
        let mut events = chain(10);
        events[4].event.reason = Some("nothing to see".into());
        let broken = verify_chain(&events).unwrap_err();
        assert_eq!(broken, ChainBreak::Altered { seq: 5 });
        assert_eq!(
            broken.to_string(),
            "event 5 was altered: its contents no longer match its hash"
        );
    }

    #[test]
    fn an_altered_and_rehashed_event_breaks_the_next_link() {
        let mut events = chain(10);
        events[4].event.outcome = Outcome::Failed;
        rehash(&mut events[4]);
        assert_eq!(
            verify_chain(&events).unwrap_err(),
            ChainBreak::LinkBroken { seq: 6 }
        );
    }

    #[test]
    fn a_removed_event_is_missing() {
        let mut events = chain(10);
        events.remove(4);
        let broken = verify_chain(&events).unwrap_err();
        assert_eq!(
            broken,
            ChainBreak::Missing {
                expected: 5,
                found: 6
            }
        );
        assert_eq!(broken.seq(), 5);
        assert_eq!(
            broken.to_string(),
            "event 5 is missing: event 6 follows event 4; events were removed"
        );

        let mut events = chain(10);
        events.drain(2..5);
        assert_eq!(
            verify_chain(&events).unwrap_err().to_string(),
            "events 3 to 5 are missing: event 6 follows event 2; events were removed"
        );
        let events = chain(10);
        assert_eq!(
            verify_chain(&events[3..]).unwrap_err().to_string(),
            "events 1 to 3 are missing: the log starts at event 4; events were removed"
        );
    }

    #[test]
    fn a_removed_and_renumbered_event_is_caught() {
        // Renumbered only: the seq is part of the hash.
        let mut events = chain(10);
        events.remove(4);
        for event in &mut events[4..] {
            event.seq -= 1;
        }
        assert_eq!(
            verify_chain(&events).unwrap_err(),
            ChainBreak::Altered { seq: 5 }
        );
        // Renumbered and each event rehashed: the link to the removed event remains.
        for event in &mut events[4..] {
            rehash(event);
        }
        let broken = verify_chain(&events).unwrap_err();
        assert_eq!(broken, ChainBreak::LinkBroken { seq: 5 });
        assert_eq!(
            broken.to_string(),
            "event 5 does not follow the event before it: an earlier event was removed or the \
             events were reordered"
        );
    }

    #[test]
    fn swapped_events_are_caught() {
        // The rows' contents swapped, seqs left in place.
        let mut events = chain(10);
        let (a, b) = (events[3].clone(), events[4].clone());
        events[3] = ChainedEvent { seq: 4, ..b };
        events[4] = ChainedEvent { seq: 5, ..a };
        assert_eq!(
            verify_chain(&events).unwrap_err(),
            ChainBreak::Altered { seq: 4 }
        );
        rehash(&mut events[3]);
        rehash(&mut events[4]);
        assert_eq!(
            verify_chain(&events).unwrap_err(),
            ChainBreak::LinkBroken { seq: 4 }
        );

        // Two lines of an export swapped.
        let mut events = chain(10);
        events.swap(3, 4);
        let broken = verify_chain(&events).unwrap_err();
        assert_eq!(
            broken,
            ChainBreak::Reordered {
                seq: 5,
                expected: 4
            }
        );
        assert_eq!(
            broken.to_string(),
            "event 5 is out of order: event 4 was expected next"
        );
        // Streaming sees only the gap.
        let mut verifier = ChainVerifier::new();
        let first_break = events.iter().find_map(|event| verifier.push(event).err());
        assert_eq!(
            first_break,
            Some(ChainBreak::Missing {
                expected: 4,
                found: 5
            })
        );
    }

    #[test]
    fn a_seq_going_backwards_is_reordered() {
        let events = chain(10);
        let mut verifier = ChainVerifier::new();
        verifier.push_all(&events[..5]).unwrap();
        assert_eq!(
            verifier.push(&events[2]).unwrap_err(),
            ChainBreak::Reordered {
                seq: 3,
                expected: 6
            }
        );
        assert_eq!(verifier.head(), (5, events[4].hash));
    }

    #[test]
    fn a_duplicated_event_is_caught() {
        let mut events = chain(10);
        events.insert(5, events[4].clone());
        let broken = verify_chain(&events).unwrap_err();
        assert_eq!(broken, ChainBreak::Duplicated { seq: 5 });
        assert_eq!(
            broken.to_string(),
            "there are two events numbered 5: one was duplicated or inserted"
        );
    }

    #[test]
    fn a_truncated_head_leaves_a_sound_chain() {
        // Removing the newest events is invisible to the chain alone; see the checkpoint tests.
        let events = chain(10);
        assert_eq!(verify_chain(&events[..7]).unwrap(), (7, events[6].hash));
    }

    fn any_event() -> impl Strategy<Value = AuditEvent> {
        let text = "[a-z._:-]{0,12}";
        (
            any::<i64>(),
            text,
            prop_oneof![
                Just(Outcome::Success),
                Just(Outcome::Refused),
                Just(Outcome::Failed)
            ],
            text,
            proptest::option::of(text),
            proptest::option::of(text),
            proptest::option::of(text),
            proptest::option::of(text),
            "\\{[a-z\":0-9,]{0,16}\\}",
        )
            .prop_map(
                |(at_ms, action, outcome, actor, writ_id, task, agent, reason, details)| {
                    AuditEvent {
                        at_ms,
                        action,
                        outcome,
                        actor,
                        writ_id,
                        task,
                        agent,
                        reason,
                        details,
                    }
                },
            )
    }

    /// Changes one field of `event`, chosen by `field`, so that it differs.
    fn mutate(event: &mut AuditEvent, field: usize) {
        fn change(value: &mut String) {
            value.push('x');
        }
        fn change_opt(value: &mut Option<String>) {
            *value = match value.take() {
                None => Some(String::new()),
                Some(_) => None,
            };
        }
        match field {
            0 => event.at_ms = event.at_ms.wrapping_add(1),
            1 => change(&mut event.action),
            2 => {
                event.outcome = match event.outcome {
                    Outcome::Success => Outcome::Refused,
                    Outcome::Refused => Outcome::Failed,
                    Outcome::Failed => Outcome::Success,
                }
            }
            3 => change(&mut event.actor),
            4 => change_opt(&mut event.writ_id),
            5 => change_opt(&mut event.task),
            6 => change_opt(&mut event.agent),
            7 => change_opt(&mut event.reason),
            _ => change(&mut event.details),
        }
    }

    proptest! {
        #[test]
        fn any_single_field_change_changes_the_hash(event in any_event(), field in 0usize..9) {
            let mut changed = event.clone();
            mutate(&mut changed, field);
            prop_assert_ne!(
                link(&ChainHash::GENESIS, 1, &event),
                link(&ChainHash::GENESIS, 1, &changed)
            );
        }

        #[test]
        fn any_single_field_change_in_a_chain_is_found(
            n in 1u64..20,
            at in any::<prop::sample::Index>(),
            field in 0usize..9,
        ) {
            let mut events = chain(n);
            let victim = at.index(events.len());
            mutate(&mut events[victim].event, field);
            prop_assert_eq!(
                verify_chain(&events),
                Err(ChainBreak::Altered { seq: victim as u64 + 1 })
            );
        }
    }
}
