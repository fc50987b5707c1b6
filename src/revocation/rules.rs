//! The revocation rules as pure functions: given what the store read about a target under its
//! lock, which entry a request makes (or finds already in force), and what lifting a suspension
//! writes. The store runs them inside its transaction; tests run them on plain values.

use std::time::Duration;

use super::{Lift, Revocation, RevocationError, RevocationRequest, Target};

/// The broker's bounds that decide how long an entry must be served.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The longest a writ can live (maximum TTL plus clock skew): how long after its cut-off a
    /// task or agent entry must still be served.
    pub writ_lifetime: Duration,
    /// How far a verifier's clock may lag: a revoked writ's entry is served this long past the
    /// writ's own expiry.
    pub skew: Duration,
}

/// What the store read about a target, under the lock that orders revocations.
#[derive(Debug, Clone)]
pub struct TargetState {
    /// The clock read under the lock (unix seconds): every writ committed before is covered.
    pub now: i64,
    /// The seq the next entry takes.
    pub next_seq: u64,
    /// For a writ target: its authority revocation id and expiry, if such a writ was issued.
    pub writ: Option<(String, i64)>,
    /// For a task or agent target: the newest `issued_at` among its stored writs.
    pub newest_issue: Option<i64>,
    /// The latest entry for the target.
    pub latest: Option<Revocation>,
}

/// What a rule decided: an entry to write, or the one already in force.
#[derive(Debug, Clone)]
pub enum Change {
    Unchanged(Revocation),
    Put(Revocation),
}

impl Change {
    pub fn revocation(&self) -> &Revocation {
        match self {
            Change::Unchanged(revocation) | Change::Put(revocation) => revocation,
        }
    }
}

/// The entry a revocation request makes.
///
/// - A writ is revoked once; asking again returns the same entry.
/// - A task or agent: the latest entry is returned when it already covers every writ of the
///   target issued so far (for an agent: while it is suspended); otherwise a new entry cuts off
///   at `now`. Revoking an agent suspends it (the entry is open-ended).
pub fn decide(
    request: &RevocationRequest,
    state: TargetState,
    new_id: String,
    limits: Limits,
) -> Result<Change, RevocationError> {
    let writ = match request.target {
        Target::Writ(_) => Some(state.writ.clone().ok_or(RevocationError::UnknownWrit)?),
        Target::Task(_) | Target::Agent(_) => None,
    };
    if let Some(latest) = state
        .latest
        .clone()
        .filter(|latest| covers_everything(latest, state.newest_issue))
    {
        return Ok(Change::Unchanged(latest));
    }
    Ok(Change::Put(new_revocation(
        request, &state, new_id, writ, limits,
    )))
}

/// Lifting an agent's suspension: its open entry is closed at the lift time, so writs issued
/// while it was suspended stay revoked and new ones are valid.
pub fn lift(
    state: TargetState,
    lift: Lift,
    writ_lifetime: Duration,
) -> Result<Change, RevocationError> {
    let Some(mut revocation) = state.latest else {
        return Err(RevocationError::NotSuspended);
    };
    if !revocation.is_suspension() {
        return Err(RevocationError::NotSuspended);
    }
    revocation.seq = state.next_seq;
    // Writs already stored were issued while the agent was suspended (by a replica that had not
    // yet heard, or with a clock ahead): they stay revoked.
    let cut_off = lift.at.max(state.newest_issue.unwrap_or(lift.at));
    revocation.issued_until = Some(cut_off);
    revocation.expires_at = Some(cut_off.saturating_add(seconds(writ_lifetime)));
    revocation.lifted = Some(lift);
    Ok(Change::Put(revocation))
}

/// Whether the latest entry for a target already covers every writ of it issued so far, so a
/// new one would change nothing.
fn covers_everything(latest: &Revocation, newest_issue: Option<i64>) -> bool {
    match (&latest.target, latest.issued_until) {
        (Target::Writ(_), _) | (Target::Agent(_), None) | (Target::Task(_), None) => true,
        // A lifted suspension no longer stops issuance: revoking the agent again suspends it anew.
        (Target::Agent(_), Some(_)) => false,
        (Target::Task(_), Some(cut_off)) => newest_issue.is_none_or(|newest| newest <= cut_off),
    }
}

/// A new entry, cut off at `now` or at the newest stored writ of the target, whichever is later
/// (a writ whose issuer's clock ran ahead is covered too).
fn new_revocation(
    request: &RevocationRequest,
    state: &TargetState,
    id: String,
    writ: Option<(String, i64)>,
    limits: Limits,
) -> Revocation {
    let now = state.now;
    let cut_off = now.max(state.newest_issue.unwrap_or(now));
    let (revocation_id, issued_until, expires_at) = match (&request.target, writ) {
        // A verifier whose clock lags may still honour the writ a little past its expiry.
        (Target::Writ(_), Some((revocation_id, expires_at))) => (
            Some(revocation_id),
            None,
            Some(expires_at.saturating_add(seconds(limits.skew))),
        ),
        (Target::Task(_), _) => (
            None,
            Some(cut_off),
            Some(cut_off.saturating_add(seconds(limits.writ_lifetime))),
        ),
        (Target::Agent(_), _) | (Target::Writ(_), None) => (None, None, None),
    };
    Revocation {
        id,
        seq: state.next_seq,
        target: request.target.clone(),
        revocation_id,
        issued_until,
        expires_at,
        reason: request.reason.clone(),
        revoked_by: request.by.clone(),
        revoked_at: now,
        lifted: None,
    }
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use std::time::SystemTime;

    use super::*;

    const LIMITS: Limits = Limits {
        writ_lifetime: Duration::from_secs(3600),
        skew: Duration::from_secs(60),
    };

    fn request(target: Target) -> RevocationRequest {
        RevocationRequest {
            target,
            reason: "leaked".into(),
            by: "alice".into(),
            now: SystemTime::now(),
        }
    }

    fn state(now: i64) -> TargetState {
        TargetState {
            now,
            next_seq: 7,
            writ: None,
            newest_issue: None,
            latest: None,
        }
    }

    fn put(change: Change) -> Revocation {
        match change {
            Change::Put(revocation) => revocation,
            Change::Unchanged(revocation) => panic!("unchanged: {revocation:?}"),
        }
    }

    #[test]
    fn an_unknown_writ_cannot_be_revoked() {
        let error = decide(
            &request(Target::Writ("wr_x".into())),
            state(100),
            "rv_1".into(),
            LIMITS,
        )
        .unwrap_err();
        assert!(matches!(error, RevocationError::UnknownWrit));
    }

    #[test]
    fn a_writ_entry_lives_until_the_writ_expires_plus_skew() {
        let mut known = state(100);
        known.writ = Some(("abcd".into(), 400));
        let entry = put(decide(
            &request(Target::Writ("wr_x".into())),
            known,
            "rv_1".into(),
            LIMITS,
        )
        .unwrap());
        assert_eq!(entry.revocation_id.as_deref(), Some("abcd"));
        assert_eq!(entry.expires_at, Some(460));
        assert_eq!(entry.seq, 7);
        assert_eq!(entry.issued_until, None);
    }

    #[test]
    fn a_task_cut_off_covers_writs_issued_ahead_of_the_clock() {
        let mut ahead = state(100);
        ahead.newest_issue = Some(130);
        let entry = put(decide(
            &request(Target::Task("deploy".into())),
            ahead,
            "rv_1".into(),
            LIMITS,
        )
        .unwrap());
        assert_eq!(entry.issued_until, Some(130));
        assert_eq!(entry.expires_at, Some(130 + 3600));
    }

    #[test]
    fn a_task_entry_in_force_is_returned_until_a_newer_writ_appears() {
        let mut first = state(100);
        first.newest_issue = Some(90);
        let entry = put(decide(
            &request(Target::Task("deploy".into())),
            first,
            "rv_1".into(),
            LIMITS,
        )
        .unwrap());
        let mut again = state(110);
        again.newest_issue = Some(95);
        again.latest = Some(entry.clone());
        let same = decide(
            &request(Target::Task("deploy".into())),
            again.clone(),
            "rv_2".into(),
            LIMITS,
        )
        .unwrap();
        assert!(matches!(same, Change::Unchanged(ref r) if r.id == "rv_1"));
        again.newest_issue = Some(105);
        let newer = put(decide(
            &request(Target::Task("deploy".into())),
            again,
            "rv_2".into(),
            LIMITS,
        )
        .unwrap());
        assert_eq!(newer.id, "rv_2");
        assert_eq!(newer.issued_until, Some(110));
    }

    #[test]
    fn an_agent_is_suspended_until_lifted_and_the_lift_keeps_stored_writs_revoked() {
        let agent = Target::Agent("ci".into());
        let suspension =
            put(decide(&request(agent.clone()), state(100), "rv_1".into(), LIMITS).unwrap());
        assert!(suspension.is_suspension());
        let mut suspended = state(150);
        suspended.latest = Some(suspension.clone());
        assert!(matches!(
            decide(
                &request(agent.clone()),
                suspended.clone(),
                "rv_2".into(),
                LIMITS
            )
            .unwrap(),
            Change::Unchanged(_)
        ));
        suspended.newest_issue = Some(170);
        let lift_entry = Lift {
            by: "bob".into(),
            at: 160,
            reason: "fixed".into(),
        };
        let lifted = put(lift(suspended, lift_entry, LIMITS.writ_lifetime).unwrap());
        assert_eq!(lifted.issued_until, Some(170));
        assert_eq!(lifted.expires_at, Some(170 + 3600));
        assert_eq!(lifted.seq, 7);
        assert!(!lifted.is_suspension());
    }

    #[test]
    fn only_a_suspended_agent_can_be_lifted() {
        let lift_entry = Lift {
            by: "bob".into(),
            at: 160,
            reason: "fixed".into(),
        };
        assert!(matches!(
            lift(state(100), lift_entry, LIMITS.writ_lifetime),
            Err(RevocationError::NotSuspended)
        ));
    }
}
