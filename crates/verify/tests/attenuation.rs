//! Attenuation narrows and never widens; forged facts and hostile strings change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, SystemTime};

use biscuit_auth::KeyPair;
use common::*;
use proptest::prelude::*;
use writ_verify::{AttenuateError, Attenuation, Denial, ResourcePattern, Verifier, attenuate};

fn base_spec() -> WritSpec {
    WritSpec {
        services: vec!["orders-api".into(), "billing-api".into()],
        exact: vec![
            ("orders/42".into(), "read".into()),
            ("orders/42".into(), "write".into()),
            ("invoices/7".into(), "delete".into()),
        ],
        prefixes: vec![("reports/2026/".into(), "read".into())],
        ..WritSpec::default()
    }
}

fn patterns(texts: &[&str]) -> Vec<ResourcePattern> {
    texts
        .iter()
        .map(|t| ResourcePattern::parse(t).unwrap())
        .collect()
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| (*t).to_owned()).collect()
}

#[tokio::test]
async fn each_dimension_narrows() {
    let root = KeyPair::new();
    let orders = verifier("orders-api", &root).await;
    let billing = verifier("billing-api", &root).await;
    let writ = mint(&root, &base_spec());

    let only_reports = attenuate(
        &writ,
        &Attenuation {
            resources: Some(patterns(&["reports/*"])),
            ..Attenuation::default()
        },
    )
    .unwrap();
    assert!(
        orders
            .authorize_at(&only_reports, "reports/2026/a", "read", now())
            .is_ok()
    );
    assert_eq!(
        orders.authorize_at(&only_reports, "orders/42", "read", now()),
        Err(Denial::RestrictedByAttenuation { block: Some(1) })
    );

    let read_only = attenuate(
        &writ,
        &Attenuation {
            operations: Some(strings(&["read"])),
            ..Attenuation::default()
        },
    )
    .unwrap();
    assert!(
        orders
            .authorize_at(&read_only, "orders/42", "read", now())
            .is_ok()
    );
    assert_eq!(
        orders.authorize_at(&read_only, "orders/42", "write", now()),
        Err(Denial::RestrictedByAttenuation { block: Some(1) })
    );

    let billing_only = attenuate(
        &writ,
        &Attenuation {
            services: Some(strings(&["billing-api"])),
            ..Attenuation::default()
        },
    )
    .unwrap();
    assert!(
        billing
            .authorize_at(&billing_only, "orders/42", "read", now())
            .is_ok()
    );
    assert_eq!(
        orders.authorize_at(&billing_only, "orders/42", "read", now()),
        Err(Denial::RestrictedByAttenuation { block: Some(1) })
    );

    let sooner = now() + Duration::from_secs(60);
    let short = attenuate(
        &writ,
        &Attenuation {
            expires_at: Some(sooner),
            ..Attenuation::default()
        },
    )
    .unwrap();
    assert!(
        orders
            .authorize_at(&short, "orders/42", "read", sooner)
            .is_ok()
    );
    // Past the attenuation's own limit the writ is expired, as `inspect` shows it.
    assert_eq!(
        orders.authorize_at(&short, "orders/42", "read", sooner + Duration::from_secs(1)),
        Err(Denial::Expired { expired_at: sooner })
    );
    assert_eq!(
        orders
            .authorize_at(&short, "orders/42", "read", sooner)
            .unwrap()
            .expires_at,
        sooner,
        "the grant names the effective expiry"
    );

    // Stacked: the second block refuses; depth counts both.
    let stacked = attenuate(
        &read_only,
        &Attenuation {
            resources: Some(patterns(&["orders/42"])),
            ..Attenuation::default()
        },
    )
    .unwrap();
    assert_eq!(
        orders
            .authorize_at(&stacked, "orders/42", "read", now())
            .unwrap()
            .attenuation_depth,
        2
    );
    assert_eq!(
        orders.authorize_at(&stacked, "reports/2026/a", "read", now()),
        Err(Denial::RestrictedByAttenuation { block: Some(2) })
    );
}

#[tokio::test]
async fn attenuation_cannot_grant_what_the_writ_lacks() {
    let root = KeyPair::new();
    let orders = verifier("orders-api", &root).await;
    let writ = mint(&root, &base_spec());
    let wider = attenuate(
        &writ,
        &Attenuation {
            resources: Some(patterns(&["*"])),
            operations: Some(strings(&["read", "write", "admin"])),
            services: Some(strings(&["orders-api", "other-api"])),
            expires_at: Some(expires() + Duration::from_secs(86_400)),
        },
    )
    .unwrap();
    assert_eq!(
        orders.authorize_at(&wider, "orders/43", "admin", now()),
        Err(Denial::NotPermitted)
    );
    let other = verifier("other-api", &root).await;
    assert_eq!(
        other.authorize_at(&wider, "orders/42", "read", now()),
        Err(Denial::WrongAudience)
    );
    assert!(matches!(
        orders.authorize_at(
            &wider,
            "orders/42",
            "read",
            expires() + Duration::from_secs(60)
        ),
        Err(Denial::Expired { .. })
    ));
}

#[test]
fn empty_attenuation_is_an_error() {
    let root = KeyPair::new();
    let writ = mint(&root, &base_spec());
    assert_eq!(
        attenuate(&writ, &Attenuation::default()),
        Err(AttenuateError::Empty)
    );
}

#[tokio::test]
async fn forged_authority_facts_in_later_blocks_change_nothing() {
    let root = KeyPair::new();
    let orders = verifier("orders-api", &root).await;
    let writ = mint(&root, &WritSpec::default());
    let honest = orders
        .authorize_at(&writ, "orders/42", "read", now())
        .unwrap();

    let forged = append_raw(
        &writ,
        r#"writ(1); writ_id("forged"); agent("evil"); task("forged");
           expires_at(2099-01-01T00:00:00Z); issued_at(2099-01-01T00:00:00Z);
           service("other-api"); right("x", "write"); right("orders/42", "write");
           time(2026-11-22T10:01:00Z); audience("orders-api");
           right($r, $op) <- resource($r), operation($op);"#,
    );
    let grant = orders
        .authorize_at(&forged, "orders/42", "read", now())
        .unwrap();
    assert_eq!(grant.writ_id, honest.writ_id);
    assert_eq!(grant.agent, "agent-7");
    assert_eq!(grant.task, "refund-42");
    assert_eq!(grant.expires_at, honest.expires_at);
    assert_eq!(grant.attenuation_depth, 1);

    for (resource, op) in [("x", "write"), ("orders/42", "write"), ("anything", "read")] {
        assert_eq!(
            orders.authorize_at(&forged, resource, op, now()),
            Err(Denial::NotPermitted),
            "{resource} {op}"
        );
    }
    // The forged time(..) does not rescue an expired writ, nor service(..) another audience.
    assert!(matches!(
        orders.authorize_at(
            &forged,
            "orders/42",
            "read",
            expires() + Duration::from_secs(5)
        ),
        Err(Denial::Expired { .. })
    ));
    let other = verifier("other-api", &root).await;
    assert_eq!(
        other.authorize_at(&forged, "orders/42", "read", now()),
        Err(Denial::WrongAudience)
    );
}

const HOSTILE: &[&str] = &[
    r#"orders/42"); right("orders/43", "write"#,
    r#"orders/42", "read"); allow if true; //"#,
    "orders/42\n",
    "orders/42\" or true",
    "orders/42 // comment",
    "right(\"orders/42\", \"read\")",
    "$r",
    "{exact}",
    "",
];

/// Datalog-looking text that is also a canonical resource (quotes must be encoded).
const CANONICAL_HOSTILE: &str = r#"orders/42%22);right(%22orders/43%22,%22write"#;

#[tokio::test]
async fn datalog_hostile_strings_are_harmless() {
    let root = KeyPair::new();
    let orders = verifier("orders-api", &root).await;
    let writ = mint(&root, &WritSpec::default());
    for hostile in HOSTILE.iter().chain([&CANONICAL_HOSTILE]) {
        for (resource, op) in [
            (*hostile, "read"),
            ("orders/42", *hostile),
            (*hostile, *hostile),
        ] {
            // Refused: as a resource most of them are not even canonical.
            let denial = orders.authorize_at(&writ, resource, op, now()).unwrap_err();
            assert!(
                matches!(
                    denial,
                    Denial::NotPermitted | Denial::NonCanonicalResource { .. }
                ),
                "{resource:?} {op:?}: {denial:?}"
            );
        }
    }

    // A writ granting a hostile string grants exactly that string.
    let odd = CANONICAL_HOSTILE;
    let odd_writ = mint(
        &root,
        &WritSpec {
            exact: vec![(odd.into(), "read".into())],
            ..WritSpec::default()
        },
    );
    assert!(orders.authorize_at(&odd_writ, odd, "read", now()).is_ok());
    assert_eq!(
        orders.authorize_at(&odd_writ, "orders/43", "write", now()),
        Err(Denial::NotPermitted)
    );

    // Attenuating with hostile patterns and operations only narrows.
    let narrowed = attenuate(
        &writ,
        &Attenuation {
            resources: Some(patterns(&[CANONICAL_HOSTILE, "$r"])),
            operations: Some(strings(&[HOSTILE[1]])),
            ..Attenuation::default()
        },
    )
    .unwrap();
    assert!(
        orders
            .authorize_at(&narrowed, "orders/42", "read", now())
            .is_err()
    );
    assert!(
        orders
            .authorize_at(&narrowed, CANONICAL_HOSTILE, HOSTILE[1], now())
            .is_err()
    );
}

// ---- Never widens: random attenuation sequences against a grid of requests. ----

const RESOURCES: &[&str] = &[
    "orders/42",
    "orders/43",
    "reports/2026/q1",
    "reports/2025/q4",
    "invoices/7",
    CANONICAL_HOSTILE,
];
const OPERATIONS: &[&str] = &["read", "write", "delete"];
const AUDIENCES: &[&str] = &["orders-api", "billing-api", "other-api"];
const PATTERN_POOL: &[&str] = &[
    "orders/42",
    "orders/*",
    "reports/*",
    "reports/2026/*",
    "invoices/7",
    "*",
    "nothing/*",
];
const OPERATION_POOL: &[&str] = &["read", "write", "delete", "admin"];
const SERVICE_POOL: &[&str] = &["orders-api", "billing-api", "other-api", "x"];

fn times() -> [SystemTime; 2] {
    [now(), now() + Duration::from_secs(480)]
}

type Request = (usize, usize, usize, usize); // indexes into RESOURCES, OPERATIONS, AUDIENCES, times

fn grid() -> Vec<Request> {
    let mut all = Vec::new();
    for r in 0..RESOURCES.len() {
        for o in 0..OPERATIONS.len() {
            for a in 0..AUDIENCES.len() {
                for t in 0..2 {
                    all.push((r, o, a, t));
                }
            }
        }
    }
    all
}

fn granted(verifiers: &[Verifier], writ: &str) -> Vec<bool> {
    grid()
        .into_iter()
        .map(|(r, o, a, t)| {
            verifiers[a]
                .authorize_at(writ, RESOURCES[r], OPERATIONS[o], times()[t])
                .is_ok()
        })
        .collect()
}

/// What an attenuation alone allows (the model the Datalog must match).
fn allows(att: &Attenuation, (r, o, a, t): Request) -> bool {
    att.resources
        .as_ref()
        .is_none_or(|ps| ps.iter().any(|p| p.matches(RESOURCES[r])))
        && att
            .operations
            .as_ref()
            .is_none_or(|ops| ops.iter().any(|op| op == OPERATIONS[o]))
        && att
            .services
            .as_ref()
            .is_none_or(|ss| ss.iter().any(|s| s == AUDIENCES[a]))
        && att.expires_at.is_none_or(|exp| times()[t] <= exp)
}

fn subset(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(pool, 1..=pool.len())
        .prop_map(|v| v.into_iter().map(str::to_owned).collect())
}

fn attenuation() -> impl Strategy<Value = Attenuation> {
    (
        proptest::option::of(subset(PATTERN_POOL)),
        proptest::option::of(subset(OPERATION_POOL)),
        proptest::option::of(subset(SERVICE_POOL)),
        proptest::option::of(0u64..16),
    )
        .prop_filter("restricts something", |(r, o, s, e)| {
            r.is_some() || o.is_some() || s.is_some() || e.is_some()
        })
        .prop_map(|(resources, operations, services, minutes)| Attenuation {
            resources: resources.map(|ps| {
                ps.iter()
                    .map(|p| ResourcePattern::parse(p).unwrap())
                    .collect()
            }),
            operations,
            services,
            expires_at: minutes.map(|m| now() + Duration::from_secs(m * 60)),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn attenuation_never_widens(steps in proptest::collection::vec(attenuation(), 1..4)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let root = KeyPair::new();
        let verifiers: Vec<Verifier> = AUDIENCES
            .iter()
            .map(|aud| runtime.block_on(verifier(aud, &root)))
            .collect();
        let mut writ = mint(&root, &base_spec());
        let base = granted(&verifiers, &writ);
        let mut before = base.clone();
        for (i, step) in steps.iter().enumerate() {
            writ = attenuate(&writ, step).unwrap();
            let after = granted(&verifiers, &writ);
            for (k, request) in grid().into_iter().enumerate() {
                prop_assert!(!after[k] || before[k], "step {i} widened {request:?}");
                let expected = base[k] && steps[..=i].iter().all(|s| allows(s, request));
                prop_assert_eq!(after[k], expected, "step {} request {:?}", i, request);
            }
            before = after;
        }
    }
}

#[tokio::test]
async fn appended_checks_that_cannot_evaluate_refuse() {
    let root = KeyPair::new();
    let orders = verifier("orders-api", &root).await;
    let writ = mint(&root, &WritSpec::default());
    let broken = append_raw(&writ, r#"check if resource($r), $r + 1 > 0;"#);
    let result = orders.authorize_at(&broken, "orders/42", "read", now());
    assert_eq!(
        result.map_err(|d| d.code()),
        Err("restricted_by_attenuation")
    );
}
