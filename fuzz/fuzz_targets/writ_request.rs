//! Request bodies of `POST /v1/writs`: JSON into `RawWritRequest`, then `WritRequest::parse`
//! (names, canonical resource patterns, counts, lifetime), then the dev playground policy's
//! decision on whatever parsed.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use writ::policy::{Channel, DEV_POLICY, PolicySet, RawWritRequest, Subject, WritRequest};

fn policies() -> &'static PolicySet {
    static POLICIES: OnceLock<PolicySet> = OnceLock::new();
    POLICIES.get_or_init(|| {
        PolicySet::parse(Path::new("dev.toml"), DEV_POLICY, Duration::from_secs(900))
            .expect("the playground policy loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = serde_json::from_slice::<RawWritRequest>(data) else {
        return;
    };
    let Ok(request) = WritRequest::parse(&raw) else {
        return;
    };
    let claims = serde_json::Map::new();
    let subject = Subject {
        issuer: "writ-dev",
        claims: &claims,
    };
    for channel in [Channel::Direct, Channel::Approval] {
        if let Err(refusal) =
            policies().decide(subject, &request, channel, std::time::SystemTime::now())
        {
            let _ = serde_json::to_string(&refusal);
            let _ = refusal.to_string();
        }
    }
});
