//! Dates: crafted or absurd dates never panic `inspect` or the verifier, and the expiry shown
//! by `inspect` is the one the verifier decides by (the earliest of every block's time limit).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use biscuit_auth::builder::{BlockBuilder, Term};
use biscuit_auth::{Biscuit, KeyPair, UnverifiedBiscuit};
use common::*;
use writ_verify::{Attenuation, Denial, attenuate, inspect};

/// 10000-01-01T00:00:00Z: the first second humantime cannot format.
const YEAR_10000: u64 = 253_402_300_800;

/// A writ of the v1 format with raw dates (seconds since the epoch), signed by `root`.
fn writ_with_dates(root: &KeyPair, issued: u64, expires: u64) -> String {
    let params = HashMap::from([
        ("iat".to_owned(), Term::Date(issued)),
        ("exp".to_owned(), Term::Date(expires)),
        ("id".to_owned(), Term::Str("wr_dates".into())),
    ]);
    Biscuit::builder()
        .code_with_params(
            r#"writ(1); writ_id({id}); agent("a"); task("t");
               issued_at({iat}); expires_at({exp}); service("orders-api");
               right("orders/42", "read");
               check if time($t), $t <= {exp};
               check if audience($a), service($a);"#,
            params,
            HashMap::new(),
        )
        .unwrap()
        .root_key_id(KID)
        .build(root)
        .unwrap()
        .to_base64()
        .unwrap()
}

fn append_time_limit(writ: &str, limit: u64) -> String {
    let block = BlockBuilder::new()
        .code_with_params(
            "check if time($t), $t <= {limit}",
            HashMap::from([("limit".to_owned(), Term::Date(limit))]),
            HashMap::new(),
        )
        .unwrap();
    UnverifiedBiscuit::from_base64(writ)
        .unwrap()
        .append(block)
        .unwrap()
        .to_base64()
        .unwrap()
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn inspect_survives_dates_past_what_system_time_holds() {
    let root = KeyPair::new();
    for (issued, expires) in [
        (u64::MAX, u64::MAX),
        (0, u64::MAX),
        (u64::MAX - 1, 1 << 63),
        (i64::MAX as u64, i64::MAX as u64),
    ] {
        let writ = append_time_limit(&writ_with_dates(&root, issued, expires), u64::MAX);
        let seen = inspect(&writ).unwrap();
        assert_eq!(seen.writ_id.as_deref(), Some("wr_dates"));
        assert_eq!(seen.blocks.len(), 2);
        // Representable dates are read; the others only appear in the printed blocks.
        assert_eq!(
            seen.expires_at,
            UNIX_EPOCH.checked_add(Duration::from_secs(expires))
        );
        assert_eq!(seen.effective_expires_at, seen.expires_at);
    }
}

#[test]
fn inspect_reads_dates_past_year_9999() {
    let root = KeyPair::new();
    let writ = writ_with_dates(&root, YEAR_10000, YEAR_10000 + 60);
    let seen = inspect(&writ).unwrap();
    assert_eq!(seen.issued_at, Some(at(YEAR_10000)));
    assert_eq!(seen.effective_expires_at, Some(at(YEAR_10000 + 60)));
}

#[tokio::test]
async fn the_verifier_refuses_signed_dates_it_cannot_hold_without_panicking() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    for (issued, expires) in [(u64::MAX, u64::MAX), (1_700_000_000, u64::MAX)] {
        let writ = writ_with_dates(&root, issued, expires);
        let denial = verifier
            .authorize_at(&writ, "orders/42", "read", now())
            .unwrap_err();
        assert!(
            matches!(denial, Denial::UnsupportedFormat { .. }),
            "{denial:?}"
        );
        assert!(!denial.to_string().is_empty());
    }
}

#[tokio::test]
async fn expiries_past_year_9999_are_decided_and_displayed() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    let writ = writ_with_dates(&root, 1_700_000_000, YEAR_10000);
    let grant = verifier
        .authorize_at(&writ, "orders/42", "read", now())
        .unwrap();
    assert_eq!(grant.expires_at, at(YEAR_10000));
    let denial = verifier
        .authorize_at(&writ, "orders/42", "read", at(YEAR_10000 + 1))
        .unwrap_err();
    assert_eq!(
        denial,
        Denial::Expired {
            expired_at: at(YEAR_10000)
        }
    );
    assert_eq!(
        denial.to_string(),
        "the writ expired at 253402300800 s after 1970-01-01T00:00:00Z"
    );
    // A limit no clock reaches, appended by a holder, changes nothing.
    let endless = append_time_limit(&writ, u64::MAX);
    assert_eq!(
        verifier
            .authorize_at(&endless, "orders/42", "read", now())
            .unwrap()
            .expires_at,
        at(YEAR_10000)
    );
}

#[tokio::test]
async fn inspect_shows_the_expiry_verify_decides_by() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    let writ = mint(&root, &WritSpec::default());
    let sooner = now() + Duration::from_secs(60);
    let short = attenuate(
        &writ,
        &Attenuation {
            expires_at: Some(sooner),
            ..Attenuation::default()
        },
    )
    .unwrap();
    // An attenuation that sets a later limit changes nothing.
    let later = append_time_limit(
        &short,
        expires().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3600,
    );

    for writ in [&short, &later] {
        let seen = inspect(writ).unwrap();
        assert_eq!(seen.expires_at, Some(expires()), "as issued");
        assert_eq!(seen.effective_expires_at, Some(sooner));
        assert_eq!(seen.expiry_block, Some(1));

        let at_limit = verifier.authorize_at(writ, "orders/42", "read", sooner);
        assert_eq!(at_limit.unwrap().expires_at, sooner);
        let past = sooner + Duration::from_secs(1);
        assert_eq!(
            verifier.authorize_at(writ, "orders/42", "read", past),
            Err(Denial::Expired { expired_at: sooner })
        );
    }

    let plain = inspect(&writ).unwrap();
    assert_eq!(plain.effective_expires_at, Some(expires()));
    assert_eq!(plain.expiry_block, None);
}

#[tokio::test]
async fn a_block_that_brings_its_own_clock_sets_no_expiry() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    let writ = mint(&root, &WritSpec::default());
    // The block's check sees its own time fact, so it passes at any hour: not a limit.
    let own_clock = append_raw(
        &writ,
        "time(2000-01-01T00:00:00Z); check if time($t), $t <= 2001-01-01T00:00:00Z;",
    );
    let seen = inspect(&own_clock).unwrap();
    assert_eq!(seen.effective_expires_at, Some(expires()));
    assert_eq!(
        verifier
            .authorize_at(&own_clock, "orders/42", "read", now())
            .unwrap()
            .expires_at,
        expires()
    );
}
