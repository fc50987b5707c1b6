//! The signature cache: same answers, bounded, evicts at expiry, and never skips authorization.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use biscuit_auth::KeyPair;
use common::*;
use writ_verify::{Denial, Verifier};

async fn cached_verifier(root: &KeyPair, capacity: usize) -> Verifier {
    Verifier::builder("orders-api")
        .static_keys([(KID, root.public())])
        .signature_cache_capacity(capacity)
        .no_revocation()
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn repeat_use_returns_the_same_grant() {
    let root = KeyPair::new();
    let verifier = cached_verifier(&root, 8).await;
    let writ = mint(&root, &WritSpec::default());
    let first = read_at(&verifier, &writ, now()).unwrap();
    assert_eq!(verifier.cached_writs(), 1);
    for _ in 0..3 {
        assert_eq!(read_at(&verifier, &writ, now()), Ok(first.clone()));
    }
    assert_eq!(verifier.cached_writs(), 1);

    let uncached = cached_verifier(&root, 0).await;
    assert_eq!(read_at(&uncached, &writ, now()), Ok(first));
    assert_eq!(uncached.cached_writs(), 0);
}

#[tokio::test]
async fn authorization_still_runs_for_every_request() {
    let root = KeyPair::new();
    let verifier = cached_verifier(&root, 8).await;
    let writ = mint(&root, &WritSpec::default());
    assert!(read_at(&verifier, &writ, now()).is_ok());
    assert_eq!(
        verifier.authorize_at(&writ, "orders/42", "write", now()),
        Err(Denial::NotPermitted)
    );
    assert_eq!(
        verifier.authorize_at(&writ, "orders/43", "read", now()),
        Err(Denial::NotPermitted)
    );
    // Refusals of a cached writ are as precise as at first sight.
    assert_eq!(
        read_at(&verifier, &writ, expires() + Duration::from_secs(1)),
        Err(Denial::Expired {
            expired_at: expires()
        })
    );
}

#[tokio::test]
async fn cache_is_bounded() {
    let root = KeyPair::new();
    let verifier = cached_verifier(&root, 3).await;
    let writs: Vec<String> = (0..10)
        .map(|i| {
            mint(
                &root,
                &WritSpec {
                    writ_id: format!("wr_{i}"),
                    ..WritSpec::default()
                },
            )
        })
        .collect();
    for writ in &writs {
        assert!(read_at(&verifier, writ, now()).is_ok());
        assert!(verifier.cached_writs() <= 3);
    }
    assert_eq!(verifier.cached_writs(), 3);
    // Evicted writs still verify (paying the signature again).
    assert_eq!(
        read_at(&verifier, &writs[0], now()).unwrap().writ_id,
        "wr_0"
    );
}

#[tokio::test]
async fn expired_writs_leave_the_cache() {
    let root = KeyPair::new();
    let verifier = cached_verifier(&root, 8).await;
    let short = mint(
        &root,
        &WritSpec {
            writ_id: "short".into(),
            expires_at: now() + Duration::from_secs(10),
            ..WritSpec::default()
        },
    );
    let long = mint(&root, &WritSpec::default());
    assert!(read_at(&verifier, &short, now()).is_ok());
    assert!(read_at(&verifier, &long, now()).is_ok());
    assert_eq!(verifier.cached_writs(), 2);

    let later = now() + Duration::from_secs(60);
    assert!(matches!(
        read_at(&verifier, &short, later),
        Err(Denial::Expired { .. })
    ));
    assert_eq!(verifier.cached_writs(), 1, "the expired writ was evicted");
    assert!(read_at(&verifier, &long, later).is_ok());
}

#[tokio::test]
async fn invalid_writs_are_never_cached() {
    let root = KeyPair::new();
    let verifier = cached_verifier(&root, 8).await;
    let forged = mint(&KeyPair::new(), &WritSpec::default());
    for _ in 0..3 {
        assert_eq!(
            read_at(&verifier, &forged, now()),
            Err(Denial::InvalidSignature)
        );
    }
    let v2 = mint(
        &root,
        &WritSpec {
            version: 2,
            ..WritSpec::default()
        },
    );
    assert!(read_at(&verifier, &v2, now()).is_err());
    assert_eq!(verifier.cached_writs(), 0);
}

#[tokio::test]
async fn cache_is_bounded_in_bytes_against_attenuation_floods() {
    let root = KeyPair::new();
    let writ = mint(&root, &WritSpec::default());
    // Every attenuation of one writ is a distinct valid writ; two fit in the budget.
    let budget = 2 * writ.len() + 2 * 400;
    let verifier = Verifier::builder("orders-api")
        .static_keys([(KID, root.public())])
        .signature_cache_bytes(budget)
        .no_revocation()
        .build()
        .await
        .unwrap();
    for _ in 0..10 {
        let variant = writ_verify::attenuate(
            &writ,
            &writ_verify::Attenuation {
                operations: Some(vec!["read".into()]),
                ..writ_verify::Attenuation::default()
            },
        )
        .unwrap();
        assert!(read_at(&verifier, &variant, now()).is_ok());
    }
    assert!(verifier.cached_writs() <= 2, "{}", verifier.cached_writs());
}

#[tokio::test]
async fn a_printed_verifier_shows_no_cached_writ() {
    let root = KeyPair::new();
    let verifier = cached_verifier(&root, 8).await;
    let writ = mint(&root, &WritSpec::default());
    assert!(read_at(&verifier, &writ, now()).is_ok());
    assert_eq!(verifier.cached_writs(), 1);
    let printed = format!("{verifier:?}");
    // Any stretch of the writ would do; its start is the same for every writ, so take the end.
    assert!(!printed.contains(&writ[writ.len() - 40..]), "{printed}");
}
