//! Golden vectors: writs minted once in the v1 format (tests/vectors/writs.json) must keep their
//! meaning. A change in the format, in biscuit-auth's encoding or in this crate's reading of
//! either breaks this test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use serde_json::Value;
use writ_verify::{Denial, Grant, Verifier, inspect};

fn vectors() -> Value {
    let text = include_str!("vectors/writs.json");
    serde_json::from_str(text).unwrap()
}

fn time(value: &Value) -> std::time::SystemTime {
    humantime::parse_rfc3339(value.as_str().unwrap()).unwrap()
}

fn check(result: Result<Grant, Denial>, expect: &Value, label: &str) {
    match (result, expect.get("grant"), expect.get("denial")) {
        (Ok(grant), Some(want), None) => {
            assert_eq!(grant.writ_id, want["writ_id"].as_str().unwrap(), "{label}");
            assert_eq!(grant.agent, want["agent"].as_str().unwrap(), "{label}");
            assert_eq!(grant.task, want["task"].as_str().unwrap(), "{label}");
            assert_eq!(grant.expires_at, time(&want["expires_at"]), "{label}");
            assert_eq!(
                grant.attenuation_depth as u64,
                want["attenuation_depth"].as_u64().unwrap(),
                "{label}"
            );
            assert_eq!(
                u64::from(grant.root_key_id),
                want["root_key_id"].as_u64().unwrap(),
                "{label}"
            );
        }
        (Err(denial), None, Some(code)) => {
            assert_eq!(denial.code(), code.as_str().unwrap(), "{label}: {denial}");
        }
        (result, _, _) => panic!("{label}: got {result:?}, expected {expect}"),
    }
}

#[tokio::test]
async fn golden_writs_keep_their_meaning() {
    let doc = vectors();
    let key: biscuit_auth::PublicKey = doc["public_key"].as_str().unwrap().parse().unwrap();
    let kid = u32::try_from(doc["root_key_id"].as_u64().unwrap()).unwrap();
    let now = time(&doc["now"]);
    let writs = doc["writs"].as_object().unwrap();

    let mut verifiers: HashMap<String, Verifier> = HashMap::new();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let service = case["service"].as_str().unwrap();
        if !verifiers.contains_key(service) {
            let verifier = Verifier::builder(service)
                .static_keys([(kid, key)])
                .no_revocation()
                .build()
                .await
                .unwrap();
            verifiers.insert(service.to_owned(), verifier);
        }
        let name = case["writ"].as_str().unwrap();
        let writ = writs[name].as_str().unwrap();
        let resource = case["resource"].as_str().unwrap();
        let operation = case["operation"].as_str().unwrap();
        let result = verifiers[service].authorize_at(writ, resource, operation, now);
        check(
            result,
            &case["expect"],
            &format!("{name} {service} {resource} {operation}"),
        );
    }

    let expired = &doc["expired_case"];
    let writ = writs[expired["writ"].as_str().unwrap()].as_str().unwrap();
    let at = time(&expired["at"]);
    check(
        verifiers["orders-api"].authorize_at(writ, "orders/42", "read", at),
        &expired["expect"],
        "expired",
    );
}

#[test]
fn golden_authority_block_prints_the_same() {
    let doc = vectors();
    let writ = doc["writs"]["prefix"].as_str().unwrap();
    let seen = inspect(writ).unwrap();
    assert_eq!(
        seen.blocks[0],
        doc["authority_sources"]["prefix"].as_str().unwrap()
    );
}

/// Prefix requests are proven from the shape of the golden writs, so that shape is pinned too:
/// the authority block's prefix grant and checks, and an attenuation block as `attenuate`
/// wrote it, are recognised.
#[tokio::test]
async fn golden_writs_grant_whole_prefixes() {
    let doc = vectors();
    let key: biscuit_auth::PublicKey = doc["public_key"].as_str().unwrap().parse().unwrap();
    let kid = u32::try_from(doc["root_key_id"].as_u64().unwrap()).unwrap();
    let now = time(&doc["now"]);
    let writs = &doc["writs"];
    let verifier = Verifier::builder("orders-api")
        .static_keys([(kid, key)])
        .no_revocation()
        .build()
        .await
        .unwrap();
    let read_all = |name: &str, prefix: &str| {
        let pattern = writ_verify::ResourcePattern::parse(prefix).unwrap();
        verifier.authorize_pattern_at(writs[name].as_str().unwrap(), &pattern, "read", now)
    };

    let grant = read_all("prefix", "reports/2026/*").unwrap();
    assert_eq!(grant.writ_id, "wr_prefix");
    assert!(read_all("prefix", "reports/2026/q3/*").is_ok());
    assert_eq!(read_all("prefix", "reports/*"), Err(Denial::NotPermitted));
    assert!(read_all("attenuated", "reports/2026/*").is_ok());
    assert_eq!(
        read_all("attenuated", "reports/2026/*")
            .unwrap()
            .revocation_ids
            .len(),
        2
    );
    // Exact rights only (and a holder's block of forged facts): no prefix.
    assert_eq!(
        read_all("forged_facts", "orders/*"),
        Err(Denial::NotPermitted)
    );
}
