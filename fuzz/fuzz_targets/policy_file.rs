//! Policy files (`writ::policy::PolicySet::parse`): TOML, then every field's validation with
//! errors that point at the line. A policy that loads is then asked one fixed question.
#![no_main]

use std::path::Path;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use writ::policy::{Channel, PolicySet, RawWritRequest, Subject, WritRequest};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policies) = PolicySet::parse(Path::new("fuzz.toml"), text, Duration::from_secs(900))
    else {
        return;
    };
    let claims = serde_json::json!({"sub": "agent", "kubernetes.io": {"namespace": "orders"}});
    let Some(claims) = claims.as_object() else {
        return;
    };
    let raw: RawWritRequest = match serde_json::from_value(serde_json::json!({
        "task": "t", "rights": [{"resource": "orders/42", "operations": ["read"]}],
        "services": ["orders-api"], "ttl": 60
    })) {
        Ok(raw) => raw,
        Err(_) => return,
    };
    if let Ok(request) = WritRequest::parse(&raw) {
        for issuer in ["kubernetes", "writ-dev"] {
            for channel in [Channel::Direct, Channel::Approval] {
                let _ = policies.decide(
                    Subject { issuer, claims },
                    &request,
                    channel,
                    std::time::SystemTime::now(),
                );
            }
        }
    }
});
