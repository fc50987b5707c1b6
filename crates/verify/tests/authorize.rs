//! Grants and refusals of single writs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use biscuit_auth::KeyPair;
use common::*;
use writ_verify::{Denial, Verifier};

fn rich_spec() -> WritSpec {
    WritSpec {
        exact: vec![("orders/42".into(), "read".into())],
        prefixes: vec![("reports/2026/".into(), "read".into())],
        ..WritSpec::default()
    }
}

#[tokio::test]
async fn grants_exact_and_prefix_rights_with_trusted_values() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    let writ = mint(&root, &rich_spec());

    let grant = read_at(&verifier, &writ, now()).unwrap();
    assert_eq!(grant.writ_id, "wr_01");
    assert_eq!(grant.agent, "agent-7");
    assert_eq!(grant.task, "refund-42");
    assert_eq!(grant.expires_at, expires());
    assert_eq!(grant.attenuation_depth, 0);
    assert_eq!(grant.root_key_id, KID);

    let by_prefix = verifier
        .authorize_at(&writ, "reports/2026/q3.pdf", "read", now())
        .unwrap();
    assert_eq!(by_prefix, grant);
}

#[tokio::test]
async fn grants_name_every_block_revocation_id_authority_first() {
    let root = KeyPair::new();
    // Without a revocation view too: the service may keep its own list.
    let verifier = verifier("orders-api", &root).await;
    let writ = mint(&root, &rich_spec());
    let narrowed = writ_verify::attenuate(
        &writ,
        &writ_verify::Attenuation {
            operations: Some(vec!["read".into()]),
            ..writ_verify::Attenuation::default()
        },
    )
    .unwrap();
    let expected = |writ: &str| -> Vec<String> {
        biscuit_auth::UnverifiedBiscuit::from_base64(writ)
            .unwrap()
            .revocation_identifiers()
            .iter()
            .map(hex::encode)
            .collect()
    };

    let plain = read_at(&verifier, &writ, now()).unwrap();
    assert_eq!(plain.revocation_ids, expected(&writ));
    assert_eq!(plain.revocation_ids.len(), 1);

    let attenuated = read_at(&verifier, &narrowed, now()).unwrap();
    assert_eq!(attenuated.revocation_ids, expected(&narrowed));
    assert_eq!(attenuated.revocation_ids.len(), 2);
    assert_eq!(attenuated.revocation_ids[0], plain.revocation_ids[0]);
    assert!(attenuated.revocation_ids.iter().all(|id| {
        id.len() == 128
            && id
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    }));
    // A cache hit answers the same ids.
    assert_eq!(read_at(&verifier, &narrowed, now()).unwrap(), attenuated);
}

#[tokio::test]
async fn refuses_what_the_writ_does_not_grant() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    let writ = mint(&root, &rich_spec());
    for (resource, op) in [
        ("orders/43", "read"),
        ("orders/42", "write"),
        ("orders/4", "read"),
        ("reports/2025/q3.pdf", "read"),
        ("reports/2026", "read"), // the prefix is "reports/2026/"
        ("reports/2026/q3.pdf", "write"),
    ] {
        assert_eq!(
            verifier.authorize_at(&writ, resource, op, now()),
            Err(Denial::NotPermitted),
            "{resource} {op}"
        );
    }
}

#[tokio::test]
async fn refuses_other_audiences() {
    let root = KeyPair::new();
    let billing = verifier("billing-api", &root).await;
    let writ = mint(&root, &rich_spec());
    assert_eq!(read_at(&billing, &writ, now()), Err(Denial::WrongAudience));
}

#[tokio::test]
async fn refuses_expired_writs_by_the_authority_expiry() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    let writ = mint(&root, &rich_spec());
    // Valid up to and including its expiry second.
    assert!(read_at(&verifier, &writ, expires()).is_ok());
    assert_eq!(
        read_at(&verifier, &writ, expires() + Duration::from_secs(1)),
        Err(Denial::Expired {
            expired_at: expires()
        })
    );
}

#[tokio::test]
async fn authorize_reads_the_real_clock() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    let wall = std::time::SystemTime::now();
    let stale = mint(
        &root,
        &WritSpec {
            issued_at: wall - Duration::from_secs(1200),
            expires_at: wall - Duration::from_secs(300),
            ..rich_spec()
        },
    );
    assert!(matches!(
        verifier.authorize(&stale, "orders/42", "read"),
        Err(Denial::Expired { .. })
    ));
    let fresh = mint(
        &root,
        &WritSpec {
            issued_at: wall,
            expires_at: wall + Duration::from_secs(300),
            ..rich_spec()
        },
    );
    assert!(verifier.authorize(&fresh, "orders/42", "read").is_ok());
}

#[tokio::test]
async fn refuses_unknown_key_ids_and_foreign_signatures() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;

    let other_kid = mint_with(&root, 2, &rich_spec());
    assert_eq!(
        read_at(&verifier, &other_kid, now()),
        Err(Denial::UnknownKey { kid: Some(2) })
    );

    let impostor = KeyPair::new();
    let forged = mint_with(&impostor, KID, &rich_spec());
    assert_eq!(
        read_at(&verifier, &forged, now()),
        Err(Denial::InvalidSignature)
    );

    // A token without any root key id.
    let no_kid = biscuit_auth::Biscuit::builder()
        .code("writ(1);")
        .unwrap()
        .build(&root)
        .unwrap()
        .to_base64()
        .unwrap();
    assert_eq!(
        read_at(&verifier, &no_kid, now()),
        Err(Denial::UnknownKey { kid: None })
    );
}

#[tokio::test]
async fn refuses_tampered_bytes() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    let writ = mint(&root, &rich_spec());
    let bytes = URL_SAFE.decode(&writ).unwrap();

    // Change the signed agent name, keeping the length: only the signature can notice.
    let at = bytes
        .windows(7)
        .position(|w| w == b"agent-7")
        .expect("the agent name is in the token");
    let mut renamed = bytes.clone();
    renamed[at + 6] = b'8';
    assert_eq!(
        verifier.authorize_at(&URL_SAFE.encode(&renamed), "orders/42", "read", now()),
        Err(Denial::InvalidSignature)
    );

    // Flip one bit anywhere: never a grant.
    for i in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0x01;
        let result = verifier.authorize_at(&URL_SAFE.encode(&flipped), "orders/42", "read", now());
        assert!(
            result.is_err(),
            "flipping byte {i} still granted: {result:?}"
        );
    }
}

#[tokio::test]
async fn refuses_malformed_input() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    for garbage in [
        "",
        "   ",
        "not a token",
        "!!!!",
        "AAAA",
        "eyJhbGciOiJub25lIn0.e30.",
    ] {
        let result = read_at(&verifier, garbage, now());
        assert!(
            matches!(result, Err(Denial::Malformed { .. })),
            "{garbage:?}: {result:?}"
        );
    }
    let huge = "A".repeat(writ_verify::DEFAULT_MAX_WRIT_BYTES + 1);
    assert_eq!(
        read_at(&verifier, &huge, now()),
        Err(Denial::LimitsExceeded { limit: "writ size" })
    );
}

#[tokio::test]
async fn refuses_other_format_versions() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    let v2 = mint(
        &root,
        &WritSpec {
            version: 2,
            ..rich_spec()
        },
    );
    assert!(matches!(
        read_at(&verifier, &v2, now()),
        Err(Denial::UnsupportedFormat { .. })
    ));

    // Correctly signed, right shape, but no writ(..) fact at all.
    let bare = biscuit_auth::Biscuit::builder()
        .code(r#"right("orders/42", "read"); service("orders-api");"#)
        .unwrap()
        .root_key_id(KID)
        .build(&root)
        .unwrap()
        .to_base64()
        .unwrap();
    assert!(matches!(
        read_at(&verifier, &bare, now()),
        Err(Denial::UnsupportedFormat { .. })
    ));
}

#[tokio::test]
async fn refuses_writs_deeper_than_the_limit() {
    let root = KeyPair::new();
    let verifier = Verifier::builder("orders-api")
        .static_keys([(KID, root.public())])
        .max_attenuation_depth(2)
        .no_revocation()
        .build()
        .await
        .unwrap();
    let mut writ = mint(&root, &rich_spec());
    for depth in 1..=3 {
        writ = append_raw(&writ, r#"check if operation("read");"#);
        let result = read_at(&verifier, &writ, now());
        if depth <= 2 {
            assert_eq!(result.unwrap().attenuation_depth, depth);
        } else {
            assert_eq!(
                result,
                Err(Denial::LimitsExceeded {
                    limit: "attenuation depth"
                })
            );
        }
    }
}

#[tokio::test]
async fn builder_refuses_bad_configurations() {
    use writ_verify::BuildError;
    let root = KeyPair::new();
    assert_eq!(
        Verifier::builder("x")
            .no_revocation()
            .build()
            .await
            .unwrap_err(),
        BuildError::NoKeySource
    );
    assert_eq!(
        Verifier::builder("")
            .static_keys([(1, root.public())])
            .no_revocation()
            .build()
            .await
            .unwrap_err(),
        BuildError::EmptyServiceName
    );
    assert_eq!(
        Verifier::builder("x")
            .static_keys([(1, root.public())])
            .key_set_url("http://127.0.0.1:1/")
            .no_revocation()
            .build()
            .await
            .unwrap_err(),
        BuildError::ConflictingKeySources
    );
    let p256 = KeyPair::new_with_algorithm(biscuit_auth::builder::Algorithm::Secp256r1);
    assert_eq!(
        Verifier::builder("x")
            .static_keys([(3, p256.public())])
            .no_revocation()
            .build()
            .await
            .unwrap_err(),
        BuildError::UnsupportedKeyAlgorithm { kid: 3 }
    );
}

#[tokio::test]
async fn builder_refuses_duplicate_keys_and_a_zero_refresh_interval() {
    use writ_verify::BuildError;
    let root = KeyPair::new();
    assert_eq!(
        Verifier::builder("x")
            .static_keys([(1, root.public()), (1, KeyPair::new().public())])
            .no_revocation()
            .build()
            .await
            .unwrap_err(),
        BuildError::DuplicateKid(1)
    );
    // Refused before any fetch (nothing listens on port 1).
    assert_eq!(
        Verifier::builder("x")
            .key_set_url("http://127.0.0.1:1/")
            .key_refresh_interval(Duration::ZERO)
            .no_revocation()
            .build()
            .await
            .unwrap_err(),
        BuildError::ZeroRefreshInterval
    );
}

/// Ignoring revocation is a choice made in the code, never the default.
#[tokio::test]
async fn a_verifier_without_a_revocation_choice_is_refused() {
    use writ_verify::{BuildError, RevocationView};
    let root = KeyPair::new();
    let keys = || Verifier::builder("orders-api").static_keys([(KID, root.public())]);
    assert_eq!(
        keys().build().await.unwrap_err(),
        BuildError::NoRevocationSource
    );
    assert!(
        BuildError::NoRevocationSource
            .to_string()
            .contains("revocation_feed"),
        "the error names the fix"
    );
    for conflicting in [
        keys().no_revocation().revocation_feed("http://127.0.0.1:1"),
        keys().no_revocation().revocations(RevocationView::new()),
    ] {
        assert_eq!(
            conflicting.build().await.unwrap_err(),
            BuildError::ConflictingRevocationSources
        );
    }
    let chosen = keys().no_revocation().build().await.unwrap();
    assert!(read_at(&chosen, &mint(&root, &rich_spec()), now()).is_ok());
}

#[test]
fn what_needs_a_runtime_is_refused_outside_one() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    use writ_verify::BuildError;
    // Polled once, without Tokio: the runtime is looked for before anything is awaited.
    fn first_poll(build: impl Future<Output = Result<Verifier, BuildError>>) -> BuildError {
        let mut build = std::pin::pin!(build);
        match build.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => result.unwrap_err(),
            Poll::Pending => panic!("the build waited"),
        }
    }
    let root = KeyPair::new();
    assert_eq!(
        first_poll(
            Verifier::builder("x")
                .key_set_url("http://127.0.0.1:1/")
                .no_revocation()
                .build()
        ),
        BuildError::NoRuntime
    );
    assert_eq!(
        first_poll(
            Verifier::builder("x")
                .static_keys([(KID, root.public())])
                .revocation_feed("http://127.0.0.1:1")
                .build()
        ),
        BuildError::NoRuntime
    );
}

#[tokio::test]
async fn verifier_is_send_sync_and_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Verifier>();
    let root = KeyPair::new();
    let verifier = std::sync::Arc::new(verifier("orders-api", &root).await);
    let writ = mint(&root, &rich_spec());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let verifier = verifier.clone();
            let writ = writ.clone();
            tokio::task::spawn_blocking(move || read_at(&verifier, &writ, now()))
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().is_ok());
    }
}
