//! The verifier's revocation stream: bytes cut into chunks (the first byte picks the chunk
//! size) through the server-sent events parser, each event's JSON decoded as the feed decodes
//! it, entries applied to a revocation view, and a writ checked against it.
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use writ_verify::revocation::fuzzing::parse_sse;
use writ_verify::revocation::{FeedHeartbeat, RevocationEntry, RevocationView, WritIdentity};

fuzz_target!(|data: &[u8]| {
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let size = usize::from(size).max(1);
    let Ok(events) = parse_sse(stream.chunks(size)) else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let mut view = RevocationView::new();
    for (name, data) in events {
        match name.as_str() {
            "revocation" => {
                if let Ok(entry) = serde_json::from_str::<RevocationEntry>(&data) {
                    let _ = view.apply(entry, now);
                }
            }
            "heartbeat" => {
                let _ = serde_json::from_str::<FeedHeartbeat>(&data);
            }
            _ => {}
        }
    }
    let ids = ["00ff".to_owned()];
    let writ = WritIdentity {
        writ_id: "wr_1",
        agent: "agent",
        task: "task",
        issued_at: now,
        revocation_ids: &ids,
    };
    let _ = view.is_revoked(&writ);
    let _ = view.prune(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX)));
});
