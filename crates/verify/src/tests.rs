//! Unit tests that need the verifier's internals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use biscuit_auth::{AuthorizerLimits, Biscuit, KeyPair};

use crate::request::RequestFacts;
use crate::{Denial, Verifier};

fn writ(root: &KeyPair) -> Biscuit {
    Biscuit::builder()
        .code(
            r#"writ(1); writ_id("wr_1"); agent("a"); task("t");
               issued_at(2026-01-01T00:00:00Z); expires_at(2030-01-01T00:00:00Z);
               service("svc"); right("r", "read");
               right($r, "write") <- resource($r), $r.starts_with("r");
               check if time($t), $t <= 2030-01-01T00:00:00Z;
               check if audience($a), service($a);"#,
        )
        .unwrap()
        .root_key_id(1)
        .build(root)
        .unwrap()
}

#[tokio::test]
async fn configured_limits_reach_the_authorizer() {
    let root = KeyPair::new();
    let limits = AuthorizerLimits {
        max_facts: 1234,
        max_iterations: 56,
        max_time: Duration::from_millis(78),
    };
    let verifier = Verifier::builder("svc")
        .static_keys([(1, root.public())])
        .run_limits(limits.clone())
        .no_revocation()
        .build()
        .await
        .unwrap();
    assert_eq!(verifier.run_limits().max_facts, 1234);
    let authorizer = verifier
        .request_authorizer(
            &writ(&root),
            RequestFacts::new("r", "read", 1_800_000_000),
            None,
        )
        .unwrap();
    let applied = authorizer.limits();
    assert_eq!(applied.max_facts, limits.max_facts);
    assert_eq!(applied.max_iterations, limits.max_iterations);
    assert_eq!(applied.max_time, limits.max_time);
}

#[tokio::test]
async fn default_limits_are_not_biscuits_one_millisecond() {
    let root = KeyPair::new();
    let verifier = Verifier::builder("svc")
        .static_keys([(1, root.public())])
        .no_revocation()
        .build()
        .await
        .unwrap();
    assert!(verifier.run_limits().max_time >= Duration::from_millis(10));
}

#[tokio::test]
async fn absurd_limits_are_reported_as_limits_exceeded() {
    let root = KeyPair::new();
    let verifier = Verifier::builder("svc")
        .static_keys([(1, root.public())])
        .run_limits(AuthorizerLimits {
            max_facts: 2,
            ..crate::default_run_limits()
        })
        .no_revocation()
        .build()
        .await
        .unwrap();
    // max_facts is checked when rules derive facts; the prefix grant derives one.
    let token = writ(&root).to_base64().unwrap();
    let now = humantime::parse_rfc3339("2027-01-01T00:00:00Z").unwrap();
    let result = verifier.authorize_at(&token, "r", "read", now);
    assert!(
        matches!(result, Err(Denial::LimitsExceeded { .. })),
        "{result:?}"
    );
}

/// The approval check alone (no evidence read in Rust): it passes only for the trusted key, the
/// writ's own id and the request's resource and operation.
#[tokio::test]
async fn the_approval_check_decides_in_datalog() {
    use crate::verifier::ApprovalCheck;
    use biscuit_auth::builder::BlockBuilder;

    let root = KeyPair::new();
    let approval = KeyPair::new();
    let verifier = Verifier::builder("svc")
        .static_keys([(1, root.public())])
        .no_revocation()
        .build()
        .await
        .unwrap();
    let token = writ(&root);
    let block = BlockBuilder::new()
        .code(
            r#"approval("ap_1", "alice", 2026-01-01T00:00:00Z); approved_writ("wr_1");
               approved_right("r", "read"); approved_prefix("r", "write");"#,
        )
        .unwrap();
    let signed = token
        .third_party_request()
        .unwrap()
        .create_block(&approval.private(), block)
        .unwrap();
    let elevated = token.append_third_party(approval.public(), signed).unwrap();
    let run = |writ_id: &str, keys: &[biscuit_auth::PublicKey], resource: &str, op: &str| {
        let check = ApprovalCheck {
            writ_id,
            keys,
            prefix: None,
        };
        verifier
            .request_authorizer(
                &elevated,
                RequestFacts::new(resource, op, 1_800_000_000),
                Some(check),
            )
            .unwrap()
            .authorize()
            .is_ok()
    };
    let other = KeyPair::new().public();
    assert!(run("wr_1", &[approval.public()], "r", "read"));
    assert!(run("wr_1", &[other, approval.public()], "r", "read"));
    assert!(run("wr_1", &[approval.public()], "rx", "write"));
    assert!(!run("wr_1", &[approval.public()], "rx", "read"));
    assert!(!run("wr_1", &[other], "r", "read"));
    assert!(!run("wr_1", &[], "r", "read"));
    assert!(!run("wr_2", &[approval.public()], "r", "read"));
    // The token's own grants are untouched: without the check, it reads as before.
    assert!(
        verifier
            .request_authorizer(
                &elevated,
                RequestFacts::new("r", "read", 1_800_000_000),
                None
            )
            .unwrap()
            .authorize()
            .is_ok()
    );
}
