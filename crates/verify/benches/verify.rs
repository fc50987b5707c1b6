//! Verify + authorize cost, beside plain biscuit-auth doing the same work in the same run.
//!
//! Plain biscuit-auth: `Biscuit::from_base64` with the root key, an authorizer with
//! time/audience/resource/operation and the policy, `authorize`. writ-verify: first sight (cache
//! disabled, so every call verifies signatures) and repeat (the writ is in the signature cache).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use biscuit_auth::macros::authorizer;
use biscuit_auth::{Biscuit, KeyPair};
use common::*;
use criterion::{Criterion, criterion_group, criterion_main};
use writ_verify::revocation::{RevocationEntry, RevocationTarget};
use writ_verify::{
    Attenuation, ResourcePattern, RevocationView, Verifier, attenuate, default_run_limits,
};

fn writ_with_blocks(root: &KeyPair, blocks: usize) -> String {
    let mut writ = mint(
        root,
        &WritSpec {
            prefixes: vec![("reports/2026/".into(), "read".into())],
            ..WritSpec::default()
        },
    );
    for _ in 1..blocks {
        writ = attenuate(
            &writ,
            &Attenuation {
                resources: Some(vec![ResourcePattern::parse("orders/*").unwrap()]),
                operations: Some(vec!["read".into()]),
                ..Attenuation::default()
            },
        )
        .unwrap();
    }
    writ
}

fn plain_biscuit(writ: &str, root: &KeyPair) -> bool {
    let token = Biscuit::from_base64(writ, root.public()).unwrap();
    let mut authorizer = authorizer!(
        r#"time({now}); audience({aud}); resource({res}); operation({op});
           allow if resource($r), operation($op), right($r, $op);"#,
        now = now(),
        aud = "orders-api",
        res = "orders/42",
        op = "read",
    )
    .set_limits(default_run_limits())
    .build(&token)
    .unwrap();
    authorizer.authorize().is_ok()
}

/// A static revocation view of 3000 entries (writs, agents, tasks) that revoke none of the
/// benchmarked writs.
fn busy_view() -> RevocationView {
    let mut view = RevocationView::new();
    for n in 0..1000_u64 {
        let targets = [
            RevocationTarget::Writ {
                writ_id: format!("wr_other_{n}"),
                revocation_id: format!("{n:0128x}"),
            },
            RevocationTarget::Agent {
                agent: format!("agent-other-{n}"),
            },
            RevocationTarget::Task {
                task: format!("task-other-{n}"),
            },
        ];
        for (i, target) in (0_u64..).zip(targets) {
            let seq = 3 * n + i + 1;
            let entry = RevocationEntry {
                seq,
                id: format!("rv_{seq}"),
                target,
                issued_until: None,
                expires_at: None,
            };
            view.apply(entry, now()).unwrap();
        }
    }
    view
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let root = KeyPair::new();
    let build = |capacity| {
        runtime.block_on(
            Verifier::builder("orders-api")
                .static_keys([(KID, root.public())])
                .signature_cache_capacity(capacity)
                .no_revocation()
                .build(),
        )
    };
    let fresh = build(0).unwrap();
    let cached = build(1024).unwrap();
    // The revocation check on the hot path: a view of many entries, none naming the writ.
    let revoking = runtime
        .block_on(
            Verifier::builder("orders-api")
                .static_keys([(KID, root.public())])
                .revocations(busy_view())
                .build(),
        )
        .unwrap();

    for blocks in [1, 3] {
        let writ = writ_with_blocks(&root, blocks);
        assert!(plain_biscuit(&writ, &root));
        assert!(
            cached
                .authorize_at(&writ, "orders/42", "read", now())
                .is_ok()
        );

        let mut group = c.benchmark_group(format!("{blocks}-block"));
        group.bench_function("biscuit-auth", |b| {
            b.iter(|| black_box(plain_biscuit(black_box(&writ), &root)))
        });
        group.bench_function("writ-verify first sight", |b| {
            b.iter(|| black_box(fresh.authorize_at(black_box(&writ), "orders/42", "read", now())))
        });
        group.bench_function("writ-verify repeat (cached)", |b| {
            b.iter(|| black_box(cached.authorize_at(black_box(&writ), "orders/42", "read", now())))
        });
        assert!(
            revoking
                .authorize_at(&writ, "orders/42", "read", now())
                .is_ok()
        );
        group.bench_function("writ-verify repeat (cached, revocation view)", |b| {
            b.iter(|| {
                black_box(revoking.authorize_at(black_box(&writ), "orders/42", "read", now()))
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
