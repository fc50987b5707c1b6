//! The revocation view fed by a real HTTP feed on loopback (a fake broker serving an in-test
//! list): matching rules, the stream, polling, staleness, and recovery.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "revocation/fake_broker.rs"]
mod fake_broker;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use biscuit_auth::KeyPair;
use common::*;
use fake_broker::{FakeBroker, Mode, PageFault};
use writ_verify::revocation::{RevocationEntry, RevocationSyncError, RevocationTarget};
use writ_verify::{
    Attenuation, BuildError, Denial, RevocationView, Verifier, VerifierBuilder, WritIdentity,
    attenuate,
};

/// The staleness bound of these tests: short, so outages show quickly.
const BOUND: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(100);
const HEARTBEAT: Duration = Duration::from_millis(100);

/// A bound and poll interval under which polling alone would take far longer than a test: only
/// the stream (or an explicit sync) can be quick.
const SLOW: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(10));

fn feed_builder(base: &str, root: &KeyPair, bound: Duration, poll: Duration) -> VerifierBuilder {
    Verifier::builder("orders-api")
        .static_keys([(KID, root.public())])
        .revocation_feed(base)
        .max_revocation_staleness(bound)
        .revocation_poll_interval(poll)
}

/// A fake broker in `mode` and a verifier following it with the staleness bound and poll
/// interval `(bound, poll)`, trusting the returned root key.
async fn start_with(
    mode: Mode,
    (bound, poll): (Duration, Duration),
) -> (FakeBroker, KeyPair, Verifier) {
    let (broker, base) = FakeBroker::start(HEARTBEAT).await;
    broker.set_mode(mode);
    let root = KeyPair::new();
    let verifier = feed_builder(&base, &root, bound, poll)
        .build()
        .await
        .unwrap();
    (broker, root, verifier)
}

/// A working fake broker and a verifier following it under [`BOUND`] and [`POLL`].
async fn start() -> (FakeBroker, KeyPair, Verifier) {
    start_with(Mode::Up, (BOUND, POLL)).await
}

/// The current time, to the second (writ times are whole seconds).
fn wall() -> SystemTime {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A writ of agent-7 for task "a", valid by the real clock, issued at `issued_at`.
fn agent_writ(root: &KeyPair, writ_id: &str, issued_at: SystemTime) -> String {
    writ(root, writ_id, "agent-7", "a", issued_at)
}

/// A writ valid by the real clock, issued at `issued_at`.
fn writ(root: &KeyPair, writ_id: &str, agent: &str, task: &str, issued_at: SystemTime) -> String {
    mint(
        root,
        &WritSpec {
            writ_id: writ_id.into(),
            agent: agent.into(),
            task: task.into(),
            issued_at,
            expires_at: wall() + Duration::from_secs(600),
            ..WritSpec::default()
        },
    )
}

fn read(verifier: &Verifier, writ: &str) -> Result<(), Denial> {
    verifier.authorize(writ, "orders/42", "read").map(|_| ())
}

/// Polls `condition` every 10 ms until it holds; answers how long that took, or fails after
/// `limit`.
async fn within(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

async fn until_streaming(verifier: &Verifier) {
    within(Duration::from_secs(3), "the stream connects", || {
        verifier.revocation_status().unwrap().streaming
    })
    .await;
}

/// Waits until `writ` is refused as revoked.
async fn until_revoked(verifier: &Verifier, writ: &str) -> Duration {
    within(
        Duration::from_secs(2),
        "the writ is refused as revoked",
        || read(verifier, writ) == Err(Denial::Revoked),
    )
    .await
}

fn writ_target(writ_id: &str, revocation_id: &str) -> RevocationTarget {
    RevocationTarget::Writ {
        writ_id: writ_id.into(),
        revocation_id: revocation_id.into(),
    }
}

fn agent_target(agent: &str) -> RevocationTarget {
    RevocationTarget::Agent {
        agent: agent.into(),
    }
}

fn revocation_ids(writ: &str) -> Vec<String> {
    biscuit_auth::UnverifiedBiscuit::from_base64(writ)
        .unwrap()
        .revocation_identifiers()
        .iter()
        .map(hex::encode)
        .collect()
}

#[tokio::test]
async fn a_writ_revoked_by_id_is_refused_even_from_the_cache() {
    let (broker, root, verifier) = start().await;
    let issued = wall() - Duration::from_secs(60);
    let doomed = writ(&root, "wr_doomed", "agent-7", "refund-42", issued);
    let spared = writ(&root, "wr_spared", "agent-7", "refund-42", issued);
    assert_eq!(read(&verifier, &doomed), Ok(()));
    assert_eq!(verifier.cached_writs(), 1);

    broker.revoke("rv_1", writ_target("wr_doomed", "00"), None, None);
    until_revoked(&verifier, &doomed).await;
    assert_eq!(read(&verifier, &spared), Ok(()));
    let status = verifier.revocation_status().unwrap();
    assert_eq!((status.cursor, status.entries), (1, 1));
}

#[tokio::test]
async fn revoking_a_writ_revokes_its_attenuations_but_not_its_parent() {
    let (broker, root, verifier) = start().await;
    let issued = wall() - Duration::from_secs(60);
    let narrowed = Attenuation {
        operations: Some(vec!["read".into()]),
        ..Attenuation::default()
    };

    let parent = writ(&root, "wr_parent", "agent-7", "refund-42", issued);
    let child = attenuate(&parent, &narrowed).unwrap();
    assert_eq!(read(&verifier, &child), Ok(()));
    // Named by the parent's authority revocation id only (not by writ id).
    let parent_rid = &revocation_ids(&parent)[0];
    broker.revoke(
        "rv_parent",
        writ_target("wr_unrelated", parent_rid),
        None,
        None,
    );
    until_revoked(&verifier, &child).await;
    assert_eq!(read(&verifier, &parent), Err(Denial::Revoked));

    // Revoking an attenuation by its own block's id leaves the parent alone.
    let other = writ(&root, "wr_other", "agent-7", "refund-42", issued);
    let other_child = attenuate(&other, &narrowed).unwrap();
    let child_rid = &revocation_ids(&other_child)[1];
    broker.revoke(
        "rv_child",
        writ_target("wr_unrelated", child_rid),
        None,
        None,
    );
    until_revoked(&verifier, &other_child).await;
    assert_eq!(read(&verifier, &other), Ok(()));
}

#[tokio::test]
async fn a_suspended_agent_loses_every_writ() {
    let (broker, root, verifier) = start().await;
    let old = agent_writ(&root, "wr_1", wall() - Duration::from_secs(300));
    let new = writ(&root, "wr_2", "agent-7", "b", wall());
    let other_agent = writ(&root, "wr_3", "agent-8", "a", wall());

    broker.revoke("rv_suspend", agent_target("agent-7"), None, None);
    until_revoked(&verifier, &old).await;
    assert_eq!(read(&verifier, &new), Err(Denial::Revoked));
    assert_eq!(read(&verifier, &other_agent), Ok(()));
}

#[tokio::test]
async fn an_agent_cutoff_spares_writs_issued_after_it() {
    let (broker, root, verifier) = start().await;
    let cutoff = wall() - Duration::from_secs(60);
    let before = agent_writ(&root, "wr_1", cutoff - Duration::from_secs(1));
    let at_cutoff = agent_writ(&root, "wr_2", cutoff);
    let after = agent_writ(&root, "wr_3", cutoff + Duration::from_secs(1));

    broker.revoke("rv_agent", agent_target("agent-7"), Some(cutoff), None);
    until_revoked(&verifier, &before).await;
    assert_eq!(read(&verifier, &at_cutoff), Err(Denial::Revoked));
    assert_eq!(read(&verifier, &after), Ok(()));
}

#[tokio::test]
async fn a_task_cutoff_revokes_the_task_for_every_agent() {
    let (broker, root, verifier) = start().await;
    let cutoff = wall() - Duration::from_secs(60);
    let issued = cutoff - Duration::from_secs(30);
    let first_agent = writ(&root, "wr_1", "agent-7", "refund-42", issued);
    let second_agent = writ(&root, "wr_2", "agent-8", "refund-42", issued);
    let other_task = writ(&root, "wr_3", "agent-7", "refund-43", issued);
    let later = writ(&root, "wr_4", "agent-7", "refund-42", wall());

    let task = RevocationTarget::Task {
        task: "refund-42".into(),
    };
    broker.revoke("rv_task", task, Some(cutoff), None);
    until_revoked(&verifier, &first_agent).await;
    assert_eq!(read(&verifier, &second_agent), Err(Denial::Revoked));
    assert_eq!(read(&verifier, &other_task), Ok(()));
    assert_eq!(read(&verifier, &later), Ok(()));
}

#[tokio::test]
async fn lifting_a_suspension_replaces_the_entry() {
    let (broker, root, verifier) = start().await;
    let lifted_at = wall() - Duration::from_secs(60);
    let during = agent_writ(&root, "wr_1", lifted_at - Duration::from_secs(10));
    let since = agent_writ(&root, "wr_2", wall());

    broker.revoke("rv_suspend", agent_target("agent-7"), None, None);
    until_revoked(&verifier, &since).await;

    let expires = wall() + Duration::from_secs(600);
    broker.revoke(
        "rv_suspend",
        agent_target("agent-7"),
        Some(lifted_at),
        Some(expires),
    );
    within(Duration::from_secs(2), "the lift arrives", || {
        read(&verifier, &since).is_ok()
    })
    .await;
    assert_eq!(read(&verifier, &during), Err(Denial::Revoked));
    let status = verifier.revocation_status().unwrap();
    assert_eq!((status.entries, status.cursor), (1, 2));
}

#[tokio::test]
async fn expired_entries_are_dropped() {
    let (broker, _, verifier) = start().await;
    until_streaming(&verifier).await;

    // Already expired: advances the cursor, holds nothing.
    let past = wall() - Duration::from_secs(1);
    broker.revoke("rv_old", agent_target("agent-1"), Some(past), Some(past));
    within(Duration::from_secs(2), "the cursor moves", || {
        verifier.revocation_status().unwrap().cursor == 1
    })
    .await;
    assert_eq!(verifier.revocation_status().unwrap().entries, 0);

    // Expiring shortly: held, then pruned once its time has passed.
    let soon = wall() + Duration::from_secs(2);
    broker.revoke("rv_soon", agent_target("agent-2"), Some(past), Some(soon));
    within(Duration::from_secs(2), "the entry arrives", || {
        verifier.revocation_status().unwrap().entries == 1
    })
    .await;
    within(Duration::from_secs(4), "the entry is pruned", || {
        verifier.revocation_status().unwrap().entries == 0
    })
    .await;
    assert!(SystemTime::now() > soon, "pruned before its expiry");
}

#[tokio::test]
async fn a_live_revocation_is_refused_within_a_second() {
    // Polling alone would take far longer than a second here: the stream must deliver.
    let (broker, root, verifier) = start_with(Mode::Up, SLOW).await;
    until_streaming(&verifier).await;
    let live = agent_writ(&root, "wr_live", wall());
    assert_eq!(read(&verifier, &live), Ok(()));

    broker.revoke("rv_live", writ_target("wr_live", "00"), None, None);
    let took = until_revoked(&verifier, &live).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test]
async fn an_entry_the_stream_missed_is_fetched_when_a_heartbeat_reveals_it() {
    let (broker, root, verifier) = start_with(Mode::Up, SLOW).await;
    until_streaming(&verifier).await;
    let missed = agent_writ(&root, "wr_missed", wall());

    broker.revoke_unannounced("rv_missed", writ_target("wr_missed", "00"));
    let took = until_revoked(&verifier, &missed).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(verifier.revocation_status().unwrap().streaming);
}

#[tokio::test]
async fn polling_keeps_the_view_fresh_while_the_stream_is_refused() {
    let (broker, root, verifier) = start_with(Mode::StreamRefused, (BOUND, POLL)).await;
    let fine = agent_writ(&root, "wr_fine", wall());
    let doomed = agent_writ(&root, "wr_doomed", wall());

    tokio::time::sleep(BOUND + BOUND / 2).await;
    assert_eq!(
        read(&verifier, &fine),
        Ok(()),
        "polling kept the view fresh"
    );
    let status = verifier.revocation_status().unwrap();
    assert!(!status.streaming);
    assert!(status.stream_errors >= 1, "{status:?}");
    assert!(status.age.unwrap() < BOUND, "{status:?}");

    broker.revoke("rv_1", writ_target("wr_doomed", "00"), None, None);
    until_revoked(&verifier, &doomed).await;
    assert_eq!(read(&verifier, &fine), Ok(()));
}

#[tokio::test]
async fn a_silent_stream_is_abandoned_for_polling() {
    let (_broker, root, verifier) = start_with(Mode::StreamSilent, (BOUND, POLL)).await;
    let fine = agent_writ(&root, "wr_fine", wall());

    within(
        Duration::from_secs(2),
        "the silent stream is dropped",
        || verifier.revocation_status().unwrap().stream_errors >= 1,
    )
    .await;
    tokio::time::sleep(BOUND + BOUND / 2).await;
    assert_eq!(
        read(&verifier, &fine),
        Ok(()),
        "polling kept the view fresh"
    );
}

#[tokio::test]
async fn a_broker_outage_refuses_every_writ_after_the_bound_then_recovers() {
    let (broker, root, verifier) = start().await;
    until_streaming(&verifier).await;
    let fine = agent_writ(&root, "wr_fine", wall());
    assert_eq!(read(&verifier, &fine), Ok(()));

    broker.set_mode(Mode::Down);
    let down_at = Instant::now();
    assert_eq!(read(&verifier, &fine), Ok(()), "fresh enough for a while");
    within(Duration::from_secs(3), "the view goes stale", || {
        matches!(
            read(&verifier, &fine),
            Err(Denial::RevocationViewStale { .. })
        )
    })
    .await;
    // The last confirmation came at most a heartbeat before the outage.
    assert!(
        down_at.elapsed() >= BOUND - HEARTBEAT * 2,
        "stale too early"
    );
    match read(&verifier, &fine) {
        Err(Denial::RevocationViewStale {
            age: Some(age),
            max_staleness,
        }) => {
            assert!(age > BOUND, "{age:?}");
            assert_eq!(max_staleness, BOUND);
        }
        other => panic!("{other:?}"),
    }
    let status = verifier.revocation_status().unwrap();
    assert!(status.age.unwrap() > BOUND, "{status:?}");
    assert!(status.poll_errors >= 1, "{status:?}");
    assert!(!status.streaming);

    broker.set_mode(Mode::Up);
    within(Duration::from_secs(2), "the verifier recovers", || {
        read(&verifier, &fine).is_ok()
    })
    .await;
    until_streaming(&verifier).await;
}

#[tokio::test]
async fn a_lift_that_expired_during_an_outage_is_not_missed() {
    let (broker, root, verifier) = start().await;
    let writ_of_agent = agent_writ(&root, "wr_1", wall());
    broker.revoke("rv_suspend", agent_target("agent-7"), None, None);
    until_revoked(&verifier, &writ_of_agent).await;

    broker.set_mode(Mode::Down);
    within(Duration::from_secs(3), "the view goes stale", || {
        matches!(
            read(&verifier, &writ_of_agent),
            Err(Denial::RevocationViewStale { .. })
        )
    })
    .await;
    // Lifted, and expired, while the verifier could not see it: the feed leaves it out now.
    let long_ago = wall() - Duration::from_secs(3600);
    broker.revoke(
        "rv_suspend",
        agent_target("agent-7"),
        Some(long_ago),
        Some(long_ago),
    );
    broker.set_mode(Mode::Up);
    within(
        Duration::from_secs(2),
        "the rebuilt view drops the suspension",
        || read(&verifier, &writ_of_agent).is_ok(),
    )
    .await;
    let status = verifier.revocation_status().unwrap();
    assert_eq!((status.entries, status.cursor), (0, 2));
}

#[tokio::test]
async fn malformed_events_break_the_stream_but_not_the_verifier() {
    let (broker, root, verifier) = start().await;
    let oversized_line = format!("data: {}", "x".repeat(70 * 1024));
    // Lines within their limit, adding up to more than an event may hold.
    let long_data = format!("data: {}\n", "x".repeat(40 * 1024));
    let oversized_event = format!("event: revocation\n{long_data}{long_data}\n");
    let garbage: [&[u8]; 6] = [
        b"event: revocation\ndata: {not json}\n\n",
        b"event: heartbeat\ndata: \"soon\"\n\n",
        b"event: revocation\ndata: \xff\xfe\n\n",
        oversized_line.as_bytes(),
        oversized_event.as_bytes(),
        b"event: revocation\ndata: {\"seq\": 9, \"id\": \"rv_x\", \"target\": \"service\"}\n\n",
    ];
    for (round, bytes) in garbage.iter().enumerate() {
        until_streaming(&verifier).await;
        let errors = verifier.revocation_status().unwrap().stream_errors;
        broker.send_raw(bytes);
        within(
            Duration::from_secs(2),
            "the stream error is counted",
            || verifier.revocation_status().unwrap().stream_errors > errors,
        )
        .await;
        let fine = agent_writ(&root, &format!("wr_{round}"), wall());
        assert_eq!(read(&verifier, &fine), Ok(()), "round {round}");
    }

    // Back on a new stream, revocations still arrive.
    until_streaming(&verifier).await;
    let doomed = agent_writ(&root, "wr_doomed", wall());
    broker.revoke("rv_1", writ_target("wr_doomed", "00"), None, None);
    until_revoked(&verifier, &doomed).await;
}

#[tokio::test]
async fn reconnecting_resumes_from_the_cursor_with_last_event_id() {
    let (broker, root, verifier) = start().await;
    until_streaming(&verifier).await;
    for n in 1..=3 {
        broker.revoke(&format!("rv_{n}"), agent_target("agent-x"), None, None);
    }
    within(Duration::from_secs(2), "three entries arrive", || {
        verifier.revocation_status().unwrap().cursor == 3
    })
    .await;

    broker.close_streams();
    within(Duration::from_secs(3), "the stream reconnects", || {
        broker.last_event_ids().len() >= 2
    })
    .await;
    assert_eq!(
        broker.last_event_ids()[..2],
        [Some("0".to_owned()), Some("3".to_owned())]
    );
    until_streaming(&verifier).await;
    let doomed = agent_writ(&root, "wr_doomed", wall());
    broker.revoke("rv_4", writ_target("wr_doomed", "00"), None, None);
    until_revoked(&verifier, &doomed).await;
}

#[tokio::test]
async fn sync_revocations_now_reads_the_feed_at_once() {
    let (broker, root, verifier) = start_with(Mode::StreamRefused, SLOW).await;
    // The build's poll and the first fallback poll; the next is ten seconds away.
    within(Duration::from_secs(2), "the fallback polls", || {
        broker.page_requests() >= 2
    })
    .await;
    let doomed = agent_writ(&root, "wr_doomed", wall());
    broker.revoke("rv_1", writ_target("wr_doomed", "00"), None, None);
    assert_eq!(read(&verifier, &doomed), Ok(()), "not polled yet");

    verifier.sync_revocations_now().await.unwrap();
    assert_eq!(read(&verifier, &doomed), Err(Denial::Revoked));
}

#[tokio::test]
async fn the_feed_is_read_and_checked_at_build() {
    let root = KeyPair::new();
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let build = |feed: String, bound: Duration, poll: Duration| {
        feed_builder(&feed, &root, bound, poll).build()
    };
    let closed = format!("http://127.0.0.1:{port}");
    assert!(matches!(
        build(closed.clone(), BOUND, POLL).await,
        Err(BuildError::RevocationFeed(_))
    ));
    assert!(matches!(
        build(closed.clone(), Duration::ZERO, POLL).await,
        Err(BuildError::RevocationStaleness)
    ));
    assert!(matches!(
        build(closed.clone(), Duration::MAX, POLL).await,
        Err(BuildError::RevocationStaleness)
    ));
    assert!(matches!(
        build(closed.clone(), BOUND, BOUND).await,
        Err(BuildError::RevocationPollInterval)
    ));
    assert!(matches!(
        build(closed, BOUND, Duration::ZERO).await,
        Err(BuildError::RevocationPollInterval)
    ));
    assert!(matches!(
        build("broker:8080".into(), BOUND, POLL).await,
        Err(BuildError::InvalidRevocationFeed(_))
    ));
    let both = Verifier::builder("orders-api")
        .static_keys([(KID, root.public())])
        .revocation_feed("http://127.0.0.1:1")
        .revocations(RevocationView::new())
        .build()
        .await;
    assert!(matches!(
        both,
        Err(BuildError::ConflictingRevocationSources)
    ));
}

#[tokio::test]
async fn unreadable_or_partial_feeds_fail_the_build() {
    let (broker, base) = FakeBroker::start(HEARTBEAT).await;
    let root = KeyPair::new();
    let build = || feed_builder(&base, &root, BOUND, POLL).build();
    broker.set_page_fault(Some(PageFault::TooLarge));
    assert!(matches!(
        build().await,
        Err(BuildError::RevocationFeed(RevocationSyncError::TooLarge))
    ));
    for fault in [PageFault::NotJson, PageFault::CursorStands] {
        broker.set_page_fault(Some(fault));
        assert!(
            matches!(
                build().await,
                Err(BuildError::RevocationFeed(RevocationSyncError::Invalid(_)))
            ),
            "{fault:?}"
        );
    }

    // The first page read and the second refused: the view is not complete.
    broker.set_max_page(1);
    broker.revoke("rv_1", agent_target("agent-x"), None, None);
    broker.revoke("rv_2", agent_target("agent-y"), None, None);
    broker.set_page_fault(Some(PageFault::AfterFirst));
    assert!(matches!(
        build().await,
        Err(BuildError::RevocationFeed(RevocationSyncError::Fetch(_)))
    ));
    broker.set_page_fault(None);
    let verifier = build().await.unwrap();
    assert_eq!(verifier.revocation_status().unwrap().entries, 2);
}

#[tokio::test]
async fn a_poll_cut_short_applies_what_it_read_but_confirms_nothing() {
    let (broker, root, verifier) = start_with(Mode::StreamRefused, SLOW).await;
    // The build's poll and the first fallback poll; the next is ten seconds away.
    within(Duration::from_secs(2), "the fallback polls", || {
        broker.page_requests() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let age = verifier.revocation_status().unwrap().age.unwrap();

    broker.set_max_page(1);
    broker.revoke("rv_1", writ_target("wr_doomed", "00"), None, None);
    broker.revoke("rv_2", agent_target("agent-x"), None, None);
    broker.set_page_fault(Some(PageFault::AfterFirst));
    assert!(matches!(
        verifier.sync_revocations_now().await,
        Err(RevocationSyncError::Fetch(_))
    ));
    let status = verifier.revocation_status().unwrap();
    assert_eq!((status.cursor, status.entries), (1, 1), "the first page");
    assert!(status.age.unwrap() >= age, "confirmed: {status:?}");
    let doomed = agent_writ(&root, "wr_doomed", wall());
    assert_eq!(read(&verifier, &doomed), Err(Denial::Revoked));
}

#[tokio::test]
async fn a_stream_that_is_not_an_event_stream_is_left_for_polling() {
    let (_broker, root, verifier) = start_with(Mode::StreamNotEventStream, (BOUND, POLL)).await;
    within(Duration::from_secs(2), "the stream is refused", || {
        verifier.revocation_status().unwrap().stream_errors >= 1
    })
    .await;
    assert!(!verifier.revocation_status().unwrap().streaming);
    tokio::time::sleep(BOUND + BOUND / 2).await;
    let fine = agent_writ(&root, "wr_fine", wall());
    assert_eq!(
        read(&verifier, &fine),
        Ok(()),
        "polling kept the view fresh"
    );
}

#[tokio::test]
async fn a_static_view_is_consulted_but_its_age_is_not_enforced() {
    let root = KeyPair::new();
    let plain = verifier("orders-api", &root).await;
    assert_eq!(plain.revocation_status(), None, "no view, no status");

    let mut view = RevocationView::new();
    let entry = RevocationEntry {
        seq: 1,
        id: "rv_1".into(),
        target: writ_target("wr_doomed", "00"),
        issued_until: None,
        expires_at: None,
    };
    view.apply(entry, SystemTime::now()).unwrap();
    let doomed = agent_writ(&root, "wr_doomed", wall());
    let fine = agent_writ(&root, "wr_fine", wall());
    let identity = WritIdentity {
        writ_id: "wr_doomed",
        agent: "agent-7",
        task: "a",
        issued_at: wall(),
        revocation_ids: &[],
    };
    assert_eq!(view.is_revoked(&identity).unwrap().id, "rv_1");

    let verifier = Verifier::builder("orders-api")
        .static_keys([(KID, root.public())])
        .revocations(view)
        .build()
        .await
        .unwrap();
    assert_eq!(read(&verifier, &doomed), Err(Denial::Revoked));
    assert_eq!(
        read(&verifier, &fine),
        Ok(()),
        "never confirmed, yet not stale"
    );
    let status = verifier.revocation_status().unwrap();
    assert_eq!((status.max_staleness, status.entries), (None, 1));
}
