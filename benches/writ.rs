//! Minting cost: `writ::mint::mint` beside plain biscuit-auth doing the same work in the same run.
//!
//! Both sides build the same authority block (the same Datalog text with the same parameters, the
//! same `service` and `right` facts, the same prefix rule), sign it with an Ed25519 root key and
//! encode it as base64url. Before measuring, the bench checks that the two blocks print the same
//! Datalog, so the pair compares like with like. The writ side also hex-encodes the revocation id,
//! as the broker records it.
//!
//! Ids read as pairs: `mint/writ/1-right` vs `mint/biscuit/1-right`, `mint/writ/3-rights-mixed` vs
//! `mint/biscuit/3-rights-mixed`. Verification is benchmarked in `crates/verify/benches`.
//!
//! ```text
//! cargo bench --bench writ -- --warm-up-time 1 --measurement-time 3
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, SystemTime};

use biscuit_auth::builder::{Term, date, fact, string};
use biscuit_auth::{Biscuit, KeyPair};
use criterion::{Criterion, criterion_group, criterion_main};
use writ::keys::SigningKey;
use writ::mint::{self, FORMAT_VERSION, WritContents};
use writ::policy::{RawRight, RawWritRequest, ServiceName, WritRequest};

const KID: u32 = 7;
const WRIT_ID: &str = "wr_0123456789abcdef0123456789abcdef";
const AGENT: &str = "k8s:orders/writ-bench";

/// One case: a request as an agent would send it.
struct Case {
    name: &'static str,
    task: &'static str,
    /// `(resource, operations)`; a resource ending in `*` is a prefix.
    rights: &'static [(&'static str, &'static [&'static str])],
    services: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "1-right",
        task: "refund-order-42",
        rights: &[("orders/42", &["read"])],
        services: &["orders-api"],
    },
    Case {
        name: "3-rights-mixed",
        task: "monthly-report",
        rights: &[
            ("orders/42", &["read"]),
            ("orders/43", &["read", "write"]),
            ("reports/2026/*", &["read"]),
        ],
        services: &["orders-api", "reports-api"],
    },
];

// The plain biscuit-auth side writes the writ format by hand (see `src/mint/mod.rs`).
const AUTHORITY: &str = r#"
    writ({version});
    writ_id({writ_id}); agent({agent}); task({task});
    issued_at({issued_at}); expires_at({expires_at});
    check if time($t), $t <= {expires_at};
    check if audience($a), service($a);
"#;
const PREFIX_RULE: &str = r#"right($r, {operation}) <- resource($r), $r.starts_with({prefix});"#;

/// The same block with biscuit-auth alone: parameters, facts, rules, `build`, `to_base64`.
fn plain_biscuit(
    root: &KeyPair,
    case: &Case,
    issued_at: SystemTime,
    expires_at: SystemTime,
) -> String {
    let params = HashMap::from([
        ("version".to_owned(), Term::Integer(FORMAT_VERSION)),
        ("writ_id".to_owned(), string(WRIT_ID)),
        ("agent".to_owned(), string(AGENT)),
        ("task".to_owned(), string(case.task)),
        ("issued_at".to_owned(), date(&issued_at)),
        ("expires_at".to_owned(), date(&expires_at)),
    ]);
    let mut builder = Biscuit::builder()
        .code_with_params(AUTHORITY, params, HashMap::new())
        .unwrap()
        .root_key_id(KID);
    // The broker keeps services and operations in sorted sets; the cases list them sorted.
    for service in case.services {
        builder = builder.fact(fact("service", &[string(service)])).unwrap();
    }
    for (resource, operations) in case.rights {
        for operation in *operations {
            builder = match resource.strip_suffix('*') {
                None => builder
                    .fact(fact("right", &[string(resource), string(operation)]))
                    .unwrap(),
                Some(prefix) => builder
                    .code_with_params(
                        PREFIX_RULE,
                        HashMap::from([
                            ("operation".to_owned(), string(operation)),
                            ("prefix".to_owned(), string(prefix)),
                        ]),
                        HashMap::new(),
                    )
                    .unwrap(),
            };
        }
    }
    builder.build(root).unwrap().to_base64().unwrap()
}

fn authority_source(token: &str, root: &KeyPair) -> String {
    Biscuit::from_base64(token, root.public())
        .unwrap()
        .print_block_source(0)
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let key = SigningKey {
        kid: KID,
        key_pair: KeyPair::new(),
    };
    let issued_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
    let expires_at = issued_at + Duration::from_secs(300);

    let mut group = c.benchmark_group("mint");
    for case in CASES {
        let raw = RawWritRequest {
            task: case.task.into(),
            rights: case
                .rights
                .iter()
                .map(|(resource, operations)| RawRight {
                    resource: (*resource).into(),
                    operations: operations.iter().map(|op| (*op).into()).collect(),
                })
                .collect(),
            services: case.services.iter().map(|s| (*s).into()).collect(),
            ttl: None,
        };
        let request = WritRequest::parse(&raw).unwrap();
        let services: Vec<ServiceName> = request.services.iter().cloned().collect();
        let contents = WritContents {
            writ_id: WRIT_ID,
            agent: AGENT,
            task: request.task.as_str(),
            rights: &request.rights,
            services: &services,
            issued_at,
            expires_at,
        };

        // Like with like: both sides must produce the same authority block.
        let minted = mint::mint(&key, &contents).unwrap();
        let plain = plain_biscuit(&key.key_pair, case, issued_at, expires_at);
        assert_eq!(
            authority_source(&minted.token, &key.key_pair),
            authority_source(&plain, &key.key_pair),
            "the plain biscuit-auth block differs from the writ for {}",
            case.name
        );

        group.bench_function(format!("writ/{}", case.name), |b| {
            b.iter(|| mint::mint(black_box(&key), black_box(&contents)).unwrap())
        });
        group.bench_function(format!("biscuit/{}", case.name), |b| {
            b.iter(|| {
                plain_biscuit(
                    black_box(&key.key_pair),
                    black_box(case),
                    issued_at,
                    expires_at,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
