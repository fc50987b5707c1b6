//! Prefix requests (`authorize_pattern` with `p/*`): granted only when the writ provably grants
//! the operation on every resource under the prefix, even after a holder attenuated it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, SystemTime};

use biscuit_auth::KeyPair;
use biscuit_auth::builder::{BlockBuilder, Scope};
use common::*;
use proptest::prelude::*;
use writ_verify::revocation::{RevocationEntry, RevocationTarget};
use writ_verify::{
    Attenuation, Denial, Grant, ResourcePattern, RevocationView, Verifier, attenuate,
};

/// Reads under `reports/2026/`, and reads `orders/42` exactly.
fn spec() -> WritSpec {
    WritSpec {
        exact: vec![("orders/42".into(), "read".into())],
        prefixes: vec![("reports/2026/".into(), "read".into())],
        ..WritSpec::default()
    }
}

fn pattern(text: &str) -> ResourcePattern {
    ResourcePattern::parse(text).unwrap()
}

fn patterns(texts: &[&str]) -> Vec<ResourcePattern> {
    texts.iter().map(|text| pattern(text)).collect()
}

fn read_all(verifier: &Verifier, writ: &str, prefix: &str) -> Result<Grant, Denial> {
    verifier.authorize_pattern_at(writ, &pattern(prefix), "read", now())
}

fn unprovable(result: Result<Grant, Denial>) -> bool {
    matches!(result, Err(Denial::PrefixNotProvable { .. }))
}

/// Appends `block` as an ordinary (first-party) block, as any holder can.
fn append_block(writ: &str, block: BlockBuilder) -> String {
    biscuit_auth::UnverifiedBiscuit::from_base64(writ)
        .unwrap()
        .append(block)
        .unwrap()
        .to_base64()
        .unwrap()
}

fn narrow(writ: &str, resources: &[&str]) -> String {
    attenuate(
        writ,
        &Attenuation {
            resources: Some(patterns(resources)),
            ..Attenuation::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn a_prefix_right_of_the_authority_grants_its_prefix_and_narrower_ones() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    let writ = mint(&root, &spec());

    let whole = read_all(&verifier, &writ, "reports/2026/*").unwrap();
    // The same grant as for any single resource under it, revocation ids included.
    let single = verifier
        .authorize_at(&writ, "reports/2026/q3.pdf", "read", now())
        .unwrap();
    assert_eq!(whole, single);
    assert_eq!(whole.writ_id, "wr_01");
    assert_eq!(whole.revocation_ids.len(), 1);
    for narrower in [
        "reports/2026/q3/*",
        "reports/2026/q3*",
        "reports/2026/q3/eu/*",
    ] {
        assert!(read_all(&verifier, &writ, narrower).is_ok(), "{narrower}");
    }
    // An exact pattern is `authorize` of that resource.
    assert_eq!(
        verifier.authorize_pattern_at(&writ, &pattern("reports/2026/q3.pdf"), "read", now()),
        Ok(single)
    );
    assert_eq!(
        verifier.authorize_pattern_at(&writ, &pattern("orders/42"), "read", now()),
        verifier.authorize_at(&writ, "orders/42", "read", now())
    );
    assert_eq!(
        verifier.authorize_pattern_at(&writ, &pattern("orders/43"), "read", now()),
        Err(Denial::NotPermitted)
    );
}

#[tokio::test]
async fn prefixes_wider_than_the_grant_or_for_other_operations_are_refused() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    let writ = mint(&root, &spec());
    for wider in ["reports/*", "reports/2026*", "*", "reports/2025/*"] {
        assert_eq!(
            read_all(&verifier, &writ, wider),
            Err(Denial::NotPermitted),
            "{wider}"
        );
    }
    assert_eq!(
        verifier.authorize_pattern_at(&writ, &pattern("reports/2026/*"), "write", now()),
        Err(Denial::NotPermitted)
    );
}

#[tokio::test]
async fn exact_rights_never_grant_a_prefix() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    // An exact right whose text is the prefix grants that one (odd) resource, nothing under it.
    let exact_only = mint(
        &root,
        &WritSpec {
            exact: vec![("reports/".into(), "read".into())],
            ..WritSpec::default()
        },
    );
    assert!(read_all(&verifier, &exact_only, "reports/*").is_err());
    assert!(read_all(&verifier, &exact_only, "reports*").is_err());

    // Even when an exact right names the very resource biscuit is run for (`P` + "x"), so
    // that the run grants it: the proof wants a prefix right.
    let exact_on_probe = mint(
        &root,
        &WritSpec {
            exact: vec![
                ("reports/".into(), "read".into()),
                ("reports/x".into(), "read".into()),
            ],
            ..WritSpec::default()
        },
    );
    assert!(
        verifier
            .authorize_at(&exact_on_probe, "reports/x", "read", now())
            .is_ok()
    );
    assert!(unprovable(read_all(
        &verifier,
        &exact_on_probe,
        "reports/*"
    )));
}

#[tokio::test]
async fn attenuation_to_a_narrower_prefix_grants_only_that_prefix() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    let writ = mint(&root, &spec());
    let q3 = narrow(&writ, &["reports/2026/q3/*", "orders/42"]);

    assert!(read_all(&verifier, &q3, "reports/2026/q3/*").is_ok());
    assert!(read_all(&verifier, &q3, "reports/2026/q3/eu/*").is_ok());
    assert_eq!(
        read_all(&verifier, &q3, "reports/2026/*"),
        Err(Denial::RestrictedByAttenuation { block: Some(1) })
    );
    assert_eq!(
        read_all(&verifier, &q3, "reports/*"),
        Err(Denial::RestrictedByAttenuation { block: Some(1) })
    );

    // A second attenuation narrows further; both blocks must cover the prefix.
    let eu = narrow(&q3, &["reports/2026/q3/eu/*"]);
    let grant = read_all(&verifier, &eu, "reports/2026/q3/eu/*").unwrap();
    assert_eq!(grant.attenuation_depth, 2);
    assert_eq!(grant.revocation_ids.len(), 3);
    assert_eq!(
        read_all(&verifier, &eu, "reports/2026/q3/*"),
        Err(Denial::RestrictedByAttenuation { block: Some(2) })
    );
}

#[tokio::test]
async fn every_dimension_attenuate_writes_is_understood() {
    let root = KeyPair::new();
    let orders = verifier("orders-api", &root).await;
    let billing = verifier("billing-api", &root).await;
    let writ = mint(
        &root,
        &WritSpec {
            services: vec!["orders-api".into(), "billing-api".into()],
            prefixes: vec![
                ("reports/".into(), "read".into()),
                ("reports/".into(), "list".into()),
            ],
            ..WritSpec::default()
        },
    );
    let sooner = now() + Duration::from_secs(60);
    let narrowed = attenuate(
        &writ,
        &Attenuation {
            resources: Some(patterns(&["reports/2026/*", "orders/1"])),
            operations: Some(vec!["read".into()]),
            services: Some(vec!["orders-api".into()]),
            expires_at: Some(sooner),
        },
    )
    .unwrap();
    let all = pattern("reports/2026/*");
    let grant = orders
        .authorize_pattern_at(&narrowed, &all, "read", now())
        .unwrap();
    assert_eq!(grant.expires_at, sooner);
    assert_eq!(
        orders.authorize_pattern_at(&narrowed, &all, "list", now()),
        Err(Denial::RestrictedByAttenuation { block: Some(1) })
    );
    assert_eq!(
        billing.authorize_pattern_at(&narrowed, &all, "read", now()),
        Err(Denial::RestrictedByAttenuation { block: Some(1) })
    );
    assert_eq!(
        orders.authorize_pattern_at(&narrowed, &all, "read", sooner + Duration::from_secs(1)),
        Err(Denial::Expired { expired_at: sooner })
    );
}

#[tokio::test]
async fn attenuation_to_exact_resources_keeps_them_but_no_prefix() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    let writ = mint(&root, &spec());
    let two = narrow(&writ, &["reports/2026/a.pdf", "reports/2026/b.pdf"]);

    assert!(
        verifier
            .authorize_pattern_at(&two, &pattern("reports/2026/a.pdf"), "read", now())
            .is_ok()
    );
    assert_eq!(
        read_all(&verifier, &two, "reports/2026/*"),
        Err(Denial::RestrictedByAttenuation { block: Some(1) })
    );
    // Exact resources that include the resource biscuit is run for: the run passes, the
    // proof does not (an exact entry never covers a prefix).
    let probe = narrow(&writ, &["reports/2026/x"]);
    assert!(unprovable(read_all(&verifier, &probe, "reports/2026/*")));
}

/// Blocks a hostile (or merely creative) holder can append. Each lets biscuit grant the probe
/// resource `reports/2026/x`, so only the proof stands between them and a prefix grant.
const HOSTILE_BLOCKS: &[&str] = &[
    // Excludes one resource under the prefix: the case the proof exists for.
    r#"check if resource($r), $r != "reports/2026/secret";"#,
    r#"check if resource($r), $r.starts_with("reports/"), $r != "reports/2026/secret";"#,
    // An extra predicate in an otherwise recognised check.
    r#"check if resource($r), operation($op), $r.starts_with("reports/");"#,
    r#"check if resource($r), time($t), $r.starts_with("reports/");"#,
    // A recognised check, plus a fact or a rule.
    r#"check if resource($r), $r.starts_with("reports/"); note("x");"#,
    r#"check if resource($r), $r.starts_with("reports/");
       blocked($r) <- resource($r), $r == "reports/2026/secret";"#,
    r#"check if resource($r), $r.starts_with("reports/");
       right($r, "read") <- resource($r);"#,
    // Other check kinds.
    r#"reject if resource($r), $r == "reports/2026/secret";"#,
    r#"check all resource($r), $r.starts_with("reports/");"#,
    // Looks like a resource check, tests another variable.
    r#"check if resource($r), operation($op), {"read"}.contains($op);"#,
    r#"check if resource($r), operation($op), $op.starts_with("re");"#,
    r#"check if resource($r), audience($a), {"orders-api"}.contains($a);"#,
    // Recognisable meaning, not attenuate's form: refused rather than guessed at.
    r#"check if resource($s), $s.starts_with("reports/");"#,
    r#"check if resource($r), $r.starts_with("reports/") or resource($r), {"a/b"}.contains($r);"#,
    r#"check if resource($r), $r.starts_with("reports/") or resource($r), $r.starts_with("reports/");"#,
    r#"check if resource($r), $r.starts_with("reports/") trusting previous;"#,
    r#"check if resource($r), ["reports/2026/x"].contains($r);"#,
    r#"check if operation($op), {"read"}.contains($op), resource($r);"#,
    r#"check if operation($op), {"read"}.contains($op), {"read"}.contains($op);"#,
    r#"check if operation($op), $op == "read";"#,
    r#"check if time($t), $t < 2030-01-01T00:00:00Z;"#,
    r#"check if true;"#,
    r#"check if resource($r) or operation("read");"#,
];

#[tokio::test]
async fn hostile_attenuation_blocks_make_every_prefix_unprovable() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    let writ = mint(&root, &spec());
    let excluding = append_raw(&writ, HOSTILE_BLOCKS[0]);
    // Why: this writ grants every resource under the prefix but one.
    assert!(
        verifier
            .authorize_at(&excluding, "reports/2026/a", "read", now())
            .is_ok()
    );
    assert_eq!(
        verifier.authorize_at(&excluding, "reports/2026/secret", "read", now()),
        Err(Denial::RestrictedByAttenuation { block: Some(1) })
    );

    for code in HOSTILE_BLOCKS {
        let hostile = append_raw(&writ, code);
        assert!(
            verifier
                .authorize_at(&hostile, "reports/2026/x", "read", now())
                .is_ok(),
            "biscuit should grant the probe: {code}"
        );
        assert!(
            unprovable(read_all(&verifier, &hostile, "reports/2026/*")),
            "{code}: {:?}",
            read_all(&verifier, &hostile, "reports/2026/*")
        );
        // Under a narrower prefix the run may refuse first; it is refused either way.
        assert!(
            read_all(&verifier, &hostile, "reports/2026/q3/*").is_err(),
            "{code}"
        );
        // Also after a recognised attenuation, and before one.
        let later = narrow(&hostile, &["reports/2026/*"]);
        assert!(
            unprovable(read_all(&verifier, &later, "reports/2026/*")),
            "{code}"
        );
        let earlier = append_raw(&narrow(&writ, &["reports/2026/*"]), code);
        assert!(
            unprovable(read_all(&verifier, &earlier, "reports/2026/*")),
            "{code}"
        );
    }
}

#[tokio::test]
async fn a_block_scope_makes_the_prefix_unprovable() {
    let root = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    let writ = mint(&root, &spec());
    let block = BlockBuilder::new()
        .code(r#"check if resource($r), $r.starts_with("reports/");"#)
        .unwrap();
    let plain = append_block(&writ, block.clone());
    assert!(
        read_all(&verifier, &plain, "reports/2026/*").is_ok(),
        "the control"
    );
    let scoped = append_block(&writ, block.scope(Scope::Previous));
    assert!(unprovable(read_all(&verifier, &scoped, "reports/2026/*")));
}

#[tokio::test]
async fn a_third_party_block_with_checks_is_not_approval_evidence() {
    let root = KeyPair::new();
    let stranger = KeyPair::new();
    let verifier = verifier("orders-api", &root).await;
    let writ = mint(&root, &spec());
    let block = BlockBuilder::new()
        .code(r#"check if resource($r), $r != "reports/2026/secret";"#)
        .unwrap();
    let signed = append_third_party(&writ, &root, &stranger, block);
    assert!(
        verifier
            .authorize_at(&signed, "reports/2026/x", "read", now())
            .is_ok()
    );
    assert!(unprovable(read_all(&verifier, &signed, "reports/2026/*")));

    // Facts only, as the broker's evidence: changes nothing, whoever signed it.
    let facts = append_third_party(
        &writ,
        &root,
        &stranger,
        evidence_block(&EvidenceSpec::default()),
    );
    assert!(read_all(&verifier, &facts, "reports/2026/*").is_ok());
}

#[tokio::test]
async fn expired_revoked_and_foreign_writs_keep_their_usual_denials() {
    let root = KeyPair::new();
    let orders = verifier("orders-api", &root).await;
    let billing = verifier("billing-api", &root).await;
    let writ = mint(&root, &spec());
    let all = pattern("reports/2026/*");

    assert!(
        orders
            .authorize_pattern_at(&writ, &all, "read", expires())
            .is_ok()
    );
    assert_eq!(
        orders.authorize_pattern_at(&writ, &all, "read", expires() + Duration::from_secs(1)),
        Err(Denial::Expired {
            expired_at: expires()
        })
    );
    assert_eq!(
        billing.authorize_pattern_at(&writ, &all, "read", now()),
        Err(Denial::WrongAudience)
    );
    let stranger = verifier("orders-api", &KeyPair::new()).await;
    assert_eq!(
        stranger.authorize_pattern_at(&writ, &all, "read", now()),
        Err(Denial::InvalidSignature)
    );
    assert!(matches!(
        orders.authorize_pattern_at("not a writ", &all, "read", now()),
        Err(Denial::Malformed { .. })
    ));

    // Revoked by the revocation id of its attenuation block: the attenuated writ is refused,
    // the writ it was made from is not.
    let narrowed = narrow(&writ, &["reports/2026/*"]);
    let ids = orders
        .authorize_pattern_at(&narrowed, &all, "read", now())
        .unwrap()
        .revocation_ids;
    let mut view = RevocationView::new();
    let entry = RevocationEntry {
        seq: 1,
        id: "rv_1".into(),
        target: RevocationTarget::Writ {
            writ_id: "wr_other".into(),
            revocation_id: ids[1].clone(),
        },
        issued_until: None,
        expires_at: None,
    };
    view.apply(entry, SystemTime::now()).unwrap();
    let revoking = Verifier::builder("orders-api")
        .static_keys([(KID, root.public())])
        .revocations(view)
        .build()
        .await
        .unwrap();
    assert_eq!(
        revoking.authorize_pattern_at(&narrowed, &all, "read", now()),
        Err(Denial::Revoked)
    );
    assert!(
        revoking
            .authorize_pattern_at(&writ, &all, "read", now())
            .is_ok()
    );
}

/// A verifier requiring approval for `delete`, trusting `approval`.
async fn approving(root: &KeyPair, approval: &KeyPair) -> Verifier {
    Verifier::builder("orders-api")
        .static_keys([(KID, root.public())])
        .approval_keys([approval.public()])
        .require_approval_for(["delete"])
        .no_revocation()
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn approval_must_cover_the_whole_prefix() {
    let root = KeyPair::new();
    let approval = KeyPair::new();
    let verifier = approving(&root, &approval).await;
    let writ = mint(
        &root,
        &WritSpec {
            prefixes: vec![("reports/".into(), "delete".into())],
            ..WritSpec::default()
        },
    );
    let delete_all = |writ: &str, prefix: &str| {
        verifier.authorize_pattern_at(writ, &pattern(prefix), "delete", now())
    };
    let required = Err(Denial::ApprovalRequired {
        operation: "delete".into(),
    });
    assert_eq!(delete_all(&writ, "reports/2026/*"), required);

    let by_prefix = elevate(
        &writ,
        &root,
        &approval,
        &EvidenceSpec {
            exact: vec![],
            prefixes: vec![("reports/2026/".into(), "delete".into())],
            ..EvidenceSpec::default()
        },
    );
    let grant = delete_all(&by_prefix, "reports/2026/*").unwrap();
    assert_eq!(grant.approval.unwrap().request_id, REQUEST_ID);
    assert_eq!(grant.attenuation_depth, 0);
    assert!(delete_all(&by_prefix, "reports/2026/q3/*").is_ok());
    assert_eq!(delete_all(&by_prefix, "reports/*"), required);
    // An elevated writ attenuated by `attenuate` keeps both.
    let narrowed = narrow(&by_prefix, &["reports/2026/q3/*"]);
    let grant = delete_all(&narrowed, "reports/2026/q3/*").unwrap();
    assert_eq!(
        (grant.attenuation_depth, grant.revocation_ids.len()),
        (1, 3)
    );

    // Approval of single resources, even the one biscuit is run for, covers no prefix.
    let by_resource = elevate(
        &writ,
        &root,
        &approval,
        &EvidenceSpec {
            exact: vec![
                ("reports/2026/x".into(), "delete".into()),
                ("reports/2026/".into(), "delete".into()),
            ],
            ..EvidenceSpec::default()
        },
    );
    assert!(
        verifier
            .authorize_at(&by_resource, "reports/2026/x", "delete", now())
            .is_ok()
    );
    assert_eq!(delete_all(&by_resource, "reports/2026/*"), required);

    // Evidence signed by a key the verifier does not trust approves nothing.
    let forged = elevate(
        &writ,
        &root,
        &KeyPair::new(),
        &EvidenceSpec {
            prefixes: vec![("reports/".into(), "delete".into())],
            ..EvidenceSpec::default()
        },
    );
    assert_eq!(delete_all(&forged, "reports/2026/*"), required);
}

// Soundness, by example: whatever a prefix request grants, every resource under the prefix is
// granted one by one, for writs attenuated by `attenuate` and by hand.

const PREFIXES: &[&str] = &[
    "reports/",
    "reports/2026/",
    "reports/2026/q3/",
    "reports/2026/q3",
];
const RESOURCES: &[&str] = &[
    "reports/2026/q3/a",
    "reports/2026/q3x",
    "reports/2026/secret",
    "reports/2026/q3/secret",
    "reports/2025/a",
    "reports/x",
    "reports/2026/x",
];
const OPERATIONS: &[&str] = &["read", "list"];

fn resource_patterns() -> impl Strategy<Value = Vec<ResourcePattern>> {
    let choices: Vec<String> = PREFIXES
        .iter()
        .map(|p| format!("{p}*"))
        .chain(RESOURCES.iter().map(|r| (*r).to_owned()))
        .collect();
    proptest::sample::subsequence(choices, 1..4)
        .prop_map(|texts| texts.iter().map(|t| pattern(t)).collect())
}

#[derive(Clone, Debug)]
enum Step {
    Attenuate(Attenuation),
    Raw(&'static str),
}

fn step() -> impl Strategy<Value = Step> {
    let attenuation = (
        proptest::option::of(resource_patterns()),
        proptest::option::of(proptest::sample::subsequence(OPERATIONS.to_vec(), 1..3)),
    )
        .prop_filter("restricts something", |(r, o)| r.is_some() || o.is_some())
        .prop_map(|(resources, operations)| {
            Step::Attenuate(Attenuation {
                resources,
                operations: operations.map(|ops| ops.iter().map(|o| (*o).to_owned()).collect()),
                ..Attenuation::default()
            })
        });
    prop_oneof![
        4 => attenuation,
        1 => proptest::sample::select(HOSTILE_BLOCKS).prop_map(Step::Raw),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn a_granted_prefix_grants_every_resource_under_it(
        steps in proptest::collection::vec(step(), 0..3),
        prefix in proptest::sample::select(PREFIXES),
        operation in proptest::sample::select(OPERATIONS),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let root = KeyPair::new();
        let verifier = runtime.block_on(verifier("orders-api", &root));
        let mut writ = mint(&root, &WritSpec {
            prefixes: vec![
                ("reports/2026/".into(), "read".into()),
                ("reports/".into(), "list".into()),
            ],
            ..WritSpec::default()
        });
        for step in &steps {
            writ = match step {
                Step::Attenuate(attenuation) => attenuate(&writ, attenuation).unwrap(),
                Step::Raw(code) => append_raw(&writ, code),
            };
        }
        let whole = pattern(&format!("{prefix}*"));
        if verifier.authorize_pattern_at(&writ, &whole, operation, now()).is_ok() {
            for resource in RESOURCES.iter().filter(|r| r.starts_with(prefix)) {
                prop_assert!(
                    verifier.authorize_at(&writ, resource, operation, now()).is_ok(),
                    "{prefix}* granted but not {resource}"
                );
            }
        }
    }
}
