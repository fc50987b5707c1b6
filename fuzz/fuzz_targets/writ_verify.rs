//! The verifier on signed writs of any content: the input is Datalog for an authority block
//! (signed here with a fixed key, so the fuzzer gets past the signature), an optional
//! attenuation block, and the request (resource, operation, time). Sections are separated by
//! NUL bytes: `authority \0 attenuation \0 resource \0 operation \0 unix-seconds`.
//! Exercises the canonical-resource check, the trusted-value reader, the time-limit scan,
//! Datalog under the verifier's limits, the refusal reasons and their display.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use writ_verify::Verifier;
use writ_verify::biscuit_auth::builder::BlockBuilder;
use writ_verify::biscuit_auth::{Algorithm, Biscuit, KeyPair, PrivateKey};

fn root() -> &'static KeyPair {
    static ROOT: OnceLock<KeyPair> = OnceLock::new();
    ROOT.get_or_init(|| {
        let key = PrivateKey::from_bytes(&[7; 32], Algorithm::Ed25519).expect("a valid key");
        KeyPair::from(&key)
    })
}

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime
            .block_on(
                Verifier::builder("orders-api")
                    .static_keys([(1, root().public())])
                    .no_revocation()
                    .signature_cache_capacity(0)
                    .build(),
            )
            .expect("a verifier")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let (Some(authority), attenuation, resource, operation, time) = (
        parts.next(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or("orders/42"),
        parts.next().unwrap_or("read"),
        parts.next().and_then(|t| t.trim().parse::<u64>().ok()),
    ) else {
        return;
    };
    let Ok(builder) = Biscuit::builder().code(authority) else {
        return;
    };
    let Ok(mut token) = builder.root_key_id(1).build(root()) else {
        return;
    };
    if !attenuation.is_empty() {
        let Ok(block) = BlockBuilder::new().code(attenuation) else {
            return;
        };
        let Ok(appended) = token.append(block) else {
            return;
        };
        token = appended;
    }
    let Ok(writ) = token.to_base64() else {
        return;
    };
    let now = UNIX_EPOCH
        .checked_add(Duration::from_secs(time.unwrap_or(1_795_000_000)))
        .unwrap_or(UNIX_EPOCH);
    match verifier().authorize_at(&writ, resource, operation, now) {
        Ok(grant) => {
            let _ = writ_verify::Denial::Expired {
                expired_at: grant.expires_at,
            }
            .to_string();
        }
        Err(denial) => {
            let _ = (
                denial.to_string(),
                denial.problem_json(),
                denial.http_status(),
            );
        }
    }
    let _ = writ_verify::inspect(&writ);
});
