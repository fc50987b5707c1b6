//! Approval evidence: elevated writs (a writ plus a third-party block signed by an approval key)
//! and verifiers that require approval for some operations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use biscuit_auth::builder::{AuthorizerBuilder, BlockBuilder, Term};
use biscuit_auth::{Biscuit, KeyPair, PublicKey};
use common::*;
use writ_verify::{
    ApprovalEvidence, Attenuation, BuildError, Denial, Grant, ResourcePattern, Verifier, attenuate,
};

/// A writ that may read and delete `orders/42`, and delete under `reports/`.
fn spec() -> WritSpec {
    WritSpec {
        exact: vec![
            ("orders/42".into(), "read".into()),
            ("orders/42".into(), "delete".into()),
            ("orders/43".into(), "delete".into()),
            ("orders/42".into(), "archive".into()),
        ],
        prefixes: vec![("reports/".into(), "delete".into())],
        ..WritSpec::default()
    }
}

struct Keys {
    root: KeyPair,
    approval: KeyPair,
}

fn keys() -> Keys {
    Keys {
        root: KeyPair::new(),
        approval: KeyPair::new(),
    }
}

/// A verifier trusting `keys`, requiring approval for `delete` and `archive`.
async fn approving_verifier(keys: &Keys) -> Verifier {
    Verifier::builder("orders-api")
        .static_keys([(KID, keys.root.public())])
        .approval_keys([keys.approval.public()])
        .require_approval_for(["delete", "archive"])
        .no_revocation()
        .build()
        .await
        .unwrap()
}

fn elevated(keys: &Keys, evidence: &EvidenceSpec) -> String {
    elevate(
        &mint(&keys.root, &spec()),
        &keys.root,
        &keys.approval,
        evidence,
    )
}

fn delete(verifier: &Verifier, writ: &str, resource: &str) -> Result<Grant, Denial> {
    verifier.authorize_at(writ, resource, "delete", now())
}

fn approval_required() -> Result<Grant, Denial> {
    Err(Denial::ApprovalRequired {
        operation: "delete".into(),
    })
}

/// The evidence as (request id, [(approver, decision time)]), to compare.
fn seen(evidence: &ApprovalEvidence) -> (&str, Vec<(&str, SystemTime)>) {
    let approvers = evidence
        .approvals
        .iter()
        .map(|a| (a.principal.as_str(), a.decided_at))
        .collect();
    (evidence.request_id.as_str(), approvers)
}

#[tokio::test]
async fn a_required_operation_with_evidence_is_granted_with_the_evidence() {
    let keys = keys();
    let verifier = approving_verifier(&keys).await;
    let later = decided() + Duration::from_secs(30);
    let writ = elevated(
        &keys,
        &EvidenceSpec {
            approvals: vec![
                (REQUEST_ID.into(), "alice@example.com".into(), decided()),
                (REQUEST_ID.into(), "bob@example.com".into(), later),
            ],
            ..EvidenceSpec::default()
        },
    );
    let grant = delete(&verifier, &writ, "orders/42").unwrap();
    assert_eq!(grant.writ_id, "wr_01");
    assert_eq!(
        grant.attenuation_depth, 0,
        "the approval block is no attenuation"
    );
    let evidence = grant.approval.as_ref().expect("evidence");
    assert_eq!(
        seen(evidence),
        (
            REQUEST_ID,
            vec![("alice@example.com", decided()), ("bob@example.com", later)]
        )
    );
    // The same answer from the signature cache.
    assert_eq!(verifier.cached_writs(), 1);
    assert_eq!(delete(&verifier, &writ, "orders/42"), Ok(grant));
}

#[tokio::test]
async fn a_required_operation_without_evidence_needs_approval() {
    let keys = keys();
    let verifier = approving_verifier(&keys).await;
    let plain = mint(&keys.root, &spec());
    assert_eq!(delete(&verifier, &plain, "orders/42"), approval_required());
    assert_eq!(
        verifier.authorize_at(&plain, "orders/42", "archive", now()),
        Err(Denial::ApprovalRequired {
            operation: "archive".into()
        })
    );
    // Approval alone never grants: what the writ does not grant is not permitted.
    let elevated = elevated(&keys, &EvidenceSpec::default());
    assert_eq!(
        delete(&verifier, &plain, "orders/44"),
        Err(Denial::NotPermitted)
    );
    assert_eq!(
        delete(&verifier, &elevated, "orders/44"),
        Err(Denial::NotPermitted)
    );
    // Other reasons come first.
    assert!(matches!(
        verifier.authorize_at(
            &elevated,
            "orders/42",
            "delete",
            expires() + Duration::from_secs(1)
        ),
        Err(Denial::Expired { .. })
    ));
}

#[tokio::test]
async fn operations_not_required_are_unaffected() {
    let keys = keys();
    let verifier = approving_verifier(&keys).await;
    let plain = mint(&keys.root, &spec());
    let elevated = elevated(&keys, &EvidenceSpec::default());
    for writ in [&plain, &elevated] {
        let grant = read_at(&verifier, writ, now()).unwrap();
        assert_eq!(
            grant.approval, None,
            "evidence is reported only where it was checked"
        );
        assert_eq!(grant.attenuation_depth, 0);
        assert_eq!(
            verifier.authorize_at(writ, "orders/42", "write", now()),
            Err(Denial::NotPermitted)
        );
    }
    // A verifier that requires nothing grants the elevated writ like any writ.
    let plain_verifier = verifier_with_keys(&keys).await;
    let grant = delete(&plain_verifier, &elevated, "orders/42").unwrap();
    assert_eq!(grant.approval, None);
    assert_eq!(grant.attenuation_depth, 0);
}

async fn verifier_with_keys(keys: &Keys) -> Verifier {
    Verifier::builder("orders-api")
        .static_keys([(KID, keys.root.public())])
        .approval_keys([keys.approval.public()])
        .no_revocation()
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn evidence_signed_by_an_unknown_key_is_refused() {
    let keys = keys();
    let verifier = approving_verifier(&keys).await;
    let stranger = KeyPair::new();
    let writ = elevate(
        &mint(&keys.root, &spec()),
        &keys.root,
        &stranger,
        &EvidenceSpec::default(),
    );
    assert_eq!(delete(&verifier, &writ, "orders/42"), approval_required());
    // The block is accepted, and ignored: the writ still reads.
    assert_eq!(read_at(&verifier, &writ, now()).unwrap().approval, None);
    // The root key may not approve either: evidence in the authority block does not count.
    let self_approved = elevate(
        &mint(&keys.root, &spec()),
        &keys.root,
        &keys.root,
        &EvidenceSpec::default(),
    );
    assert_eq!(
        delete(&verifier, &self_approved, "orders/42"),
        approval_required()
    );
}

#[tokio::test]
async fn evidence_in_the_authority_block_does_not_count() {
    // The key that mints writs cannot approve them: the check trusts only approval-key blocks.
    let keys = keys();
    let verifier = approving_verifier(&keys).await;
    let writ = Biscuit::builder()
        .code(format!(
            r#"writ(1); writ_id("wr_01"); agent("agent-7"); task("refund-42");
               issued_at(2026-11-22T10:00:00Z); expires_at(2026-11-22T10:15:00Z);
               service("orders-api"); right("orders/42", "delete");
               approval("{REQUEST_ID}", "alice@example.com", 2026-11-22T09:59:00Z);
               approved_writ("wr_01"); approved_right("orders/42", "delete");
               check if time($t), $t <= 2026-11-22T10:15:00Z;
               check if audience($a), service($a);"#
        ))
        .unwrap()
        .root_key_id(KID)
        .build(&keys.root)
        .unwrap()
        .to_base64()
        .unwrap();
    assert_eq!(delete(&verifier, &writ, "orders/42"), approval_required());
    // Even when an approval block is present, it must carry the evidence itself.
    let elevated = elevate(
        &writ,
        &keys.root,
        &keys.approval,
        &EvidenceSpec {
            exact: vec![],
            ..EvidenceSpec::default()
        },
    );
    assert_eq!(
        delete(&verifier, &elevated, "orders/42"),
        approval_required()
    );
}

#[tokio::test]
async fn evidence_for_another_writ_is_refused() {
    let keys = keys();
    let verifier = approving_verifier(&keys).await;
    let writ = elevated(
        &keys,
        &EvidenceSpec {
            writ_ids: vec!["wr_02".into()],
            ..EvidenceSpec::default()
        },
    );
    assert_eq!(delete(&verifier, &writ, "orders/42"), approval_required());
    // Naming no writ is not naming this one.
    let anonymous = elevated(
        &keys,
        &EvidenceSpec {
            writ_ids: vec![],
            ..EvidenceSpec::default()
        },
    );
    assert_eq!(
        delete(&verifier, &anonymous, "orders/42"),
        approval_required()
    );
}

#[tokio::test]
async fn evidence_covers_only_its_resource_and_operation() {
    let keys = keys();
    let verifier = approving_verifier(&keys).await;
    // Approves deleting orders/42; the writ also grants deleting orders/43 and archiving 42.
    let writ = elevated(&keys, &EvidenceSpec::default());
    assert!(delete(&verifier, &writ, "orders/42").is_ok());
    assert_eq!(delete(&verifier, &writ, "orders/43"), approval_required());
    assert_eq!(
        verifier.authorize_at(&writ, "orders/42", "archive", now()),
        Err(Denial::ApprovalRequired {
            operation: "archive".into()
        })
    );
    // Evidence for the operation without a resource is no evidence.
    let no_rights = elevated(
        &keys,
        &EvidenceSpec {
            exact: vec![],
            ..EvidenceSpec::default()
        },
    );
    assert_eq!(
        delete(&verifier, &no_rights, "orders/42"),
        approval_required()
    );
}

#[tokio::test]
async fn evidence_without_an_approver_is_no_evidence() {
    let keys = keys();
    let verifier = approving_verifier(&keys).await;
    let writ = elevated(
        &keys,
        &EvidenceSpec {
            approvals: vec![],
            ..EvidenceSpec::default()
        },
    );
    assert_eq!(delete(&verifier, &writ, "orders/42"), approval_required());
}

#[tokio::test]
async fn prefix_evidence_covers_resources_under_the_prefix_only() {
    let keys = keys();
    let verifier = approving_verifier(&keys).await;
    let writ = elevated(
        &keys,
        &EvidenceSpec {
            exact: vec![],
            prefixes: vec![("reports/".into(), "delete".into())],
            ..EvidenceSpec::default()
        },
    );
    for resource in ["reports/q3.pdf", "reports/2026/q3.pdf"] {
        let grant = delete(&verifier, &writ, resource).unwrap();
        assert_eq!(grant.approval.unwrap().request_id, REQUEST_ID);
    }
    assert_eq!(delete(&verifier, &writ, "orders/42"), approval_required());
    // `reports` is not under `reports/`, and the writ does not grant it anyway.
    assert_eq!(
        delete(&verifier, &writ, "reports"),
        Err(Denial::NotPermitted)
    );

    // Exact evidence does not cover what lies below its resource.
    let exact = elevated(
        &keys,
        &EvidenceSpec {
            exact: vec![("reports/q3.pdf".into(), "delete".into())],
            ..EvidenceSpec::default()
        },
    );
    assert!(delete(&verifier, &exact, "reports/q3.pdf").is_ok());
    assert_eq!(
        delete(&verifier, &exact, "reports/q3.pdf/x"),
        approval_required()
    );
}

#[tokio::test]
async fn forged_evidence_in_attenuation_blocks_is_ignored() {
    let keys = keys();
    let verifier = approving_verifier(&keys).await;
    let forged = format!(
        r#"approval("{REQUEST_ID}", "mallory", 2026-11-22T09:00:00Z);
           approved_writ("wr_01"); approved_right("orders/42", "delete");
           approved_prefix("", "delete");"#
    );
    let plain = mint(&keys.root, &spec());
    assert_eq!(
        delete(&verifier, &append_raw(&plain, &forged), "orders/42"),
        approval_required()
    );

    // On an elevated writ approving orders/42, a holder's block cannot extend it to orders/43,
    // even with a rule that trusts the approval key: what it derives has the holder's origin.
    let elevated = elevated(&keys, &EvidenceSpec::default());
    let key = keys.approval.public();
    let extended = append_raw(&elevated, &forged);
    assert!(delete(&verifier, &extended, "orders/42").is_ok());
    assert_eq!(
        delete(&verifier, &extended, "orders/43"),
        approval_required()
    );
    let derived = append_raw(
        &elevated,
        &format!(
            "approved_right($r, $op) <- resource($r), operation($op), approval($a, $b, $c) \
             trusting {key};"
        ),
    );
    assert!(delete(&verifier, &derived, "orders/42").is_ok());
    assert_eq!(
        delete(&verifier, &derived, "orders/43"),
        approval_required()
    );

    // The evidence the grant reports comes from the approval block only.
    let grant = delete(&verifier, &extended, "orders/42").unwrap();
    assert_eq!(
        seen(grant.approval.as_ref().unwrap()),
        (REQUEST_ID, vec![("alice@example.com", decided())])
    );
}

#[tokio::test]
async fn third_party_blocks_are_refused_anywhere_but_block_one() {
    let keys = keys();
    let verifier = approving_verifier(&keys).await;
    let plain = mint(&keys.root, &spec());
    let attenuated = attenuate(
        &plain,
        &Attenuation {
            operations: Some(vec!["delete".into()]),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let late = elevate(
        &attenuated,
        &keys.root,
        &keys.approval,
        &EvidenceSpec::default(),
    );
    let twice = elevate(
        &elevated(&keys, &EvidenceSpec::default()),
        &keys.root,
        &keys.approval,
        &EvidenceSpec::default(),
    );
    for writ in [&late, &twice] {
        for op in ["delete", "read"] {
            assert!(
                matches!(
                    verifier.authorize_at(writ, "orders/42", op, now()),
                    Err(Denial::UnsupportedFormat { .. })
                ),
                "{op}"
            );
        }
    }
}

#[tokio::test]
async fn attenuating_an_elevated_writ_keeps_the_evidence_and_only_narrows() {
    let keys = keys();
    let verifier = approving_verifier(&keys).await;
    let writ = elevated(
        &keys,
        &EvidenceSpec {
            exact: vec![
                ("orders/42".into(), "delete".into()),
                ("orders/43".into(), "delete".into()),
            ],
            ..EvidenceSpec::default()
        },
    );
    let only_42 = attenuate(
        &writ,
        &Attenuation {
            resources: Some(vec![ResourcePattern::parse("orders/42").unwrap()]),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let grant = delete(&verifier, &only_42, "orders/42").unwrap();
    assert_eq!(grant.attenuation_depth, 1);
    assert_eq!(grant.approval.unwrap().request_id, REQUEST_ID);
    assert_eq!(
        delete(&verifier, &only_42, "orders/43"),
        Err(Denial::RestrictedByAttenuation { block: Some(2) })
    );
    let read_only = attenuate(
        &writ,
        &Attenuation {
            operations: Some(vec!["read".into()]),
            ..Attenuation::default()
        },
    )
    .unwrap();
    assert!(read_at(&verifier, &read_only, now()).is_ok());
    assert_eq!(
        delete(&verifier, &read_only, "orders/42"),
        Err(Denial::RestrictedByAttenuation { block: Some(2) })
    );
}

#[tokio::test]
async fn evidence_of_the_wrong_shape_refuses_the_writ() {
    let keys = keys();
    let verifier = approving_verifier(&keys).await;
    let plain = mint(&keys.root, &spec());
    let with_block = |code: &str, params: &[(&str, Term)]| {
        let params = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let block = BlockBuilder::new()
            .code_with_params(code, params, HashMap::new())
            .unwrap();
        append_third_party(&plain, &keys.root, &keys.approval, block)
    };
    let base = r#"approved_writ("wr_01"); approved_right("orders/42", "delete");"#;
    let cases = [
        with_block(
            &format!(
                r#"{base} approval("ap_1", "alice", {{at}}); approval("ap_2", "bob", {{at}});"#
            ),
            &[("at", Term::from(decided()))],
        ),
        with_block(
            &format!(r#"{base} approval("ap_1", "alice", "yesterday");"#),
            &[],
        ),
        // A date past what `SystemTime` holds must not panic the verifier.
        with_block(
            &format!(r#"{base} approval("ap_1", "alice", {{at}});"#),
            &[("at", Term::Date(u64::MAX))],
        ),
    ];
    let requiring_nothing = verifier_with_keys(&keys).await;
    for writ in &cases {
        for op in ["delete", "read"] {
            assert!(
                matches!(
                    verifier.authorize_at(writ, "orders/42", op, now()),
                    Err(Denial::UnsupportedFormat { .. })
                ),
                "{op}"
            );
        }
        // A verifier that requires no approval never reads the evidence.
        assert!(read_at(&requiring_nothing, writ, now()).is_ok());
    }
}

#[tokio::test]
async fn approval_keys_and_their_absence() {
    let keys = keys();
    let builder = || {
        Verifier::builder("orders-api")
            .static_keys([(KID, keys.root.public())])
            .no_revocation()
    };
    assert_eq!(
        builder()
            .require_approval_for(["delete"])
            .build()
            .await
            .err(),
        Some(BuildError::NoApprovalKeys)
    );
    assert_eq!(
        builder()
            .approval_keys([keys.root.public()])
            .require_approval_for(["delete"])
            .build()
            .await
            .err(),
        Some(BuildError::ApprovalKeyIsRootKey)
    );
    assert_eq!(
        Verifier::builder("orders-api")
            .key_set_url("http://127.0.0.1:9/.well-known/writ-keys")
            .approval_keys([keys.approval.public()])
            .no_revocation()
            .build()
            .await
            .err(),
        Some(BuildError::ConflictingKeySources)
    );
    // Approval keys without required operations change nothing.
    let lenient = verifier_with_keys(&keys).await;
    assert!(delete(&lenient, &mint(&keys.root, &spec()), "orders/42").is_ok());
}

/// How biscuit-auth 6.0 scopes a third-party block's facts: what the verifier's check relies on.
mod scoping {
    use super::*;

    /// Runs `code` (with `allow if true`) against `writ` as an authorizer would.
    fn run(writ: &str, root: &KeyPair, code: &str, scope: &[(&str, PublicKey)]) -> bool {
        let token = Biscuit::from_base64(writ, root.public()).unwrap();
        let scope_params = scope.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        let params = HashMap::from([
            ("now".to_owned(), Term::from(now())),
            ("svc".to_owned(), Term::Str("orders-api".into())),
        ]);
        AuthorizerBuilder::new()
            // These runs test scoping, not speed: biscuit's default 1 ms (and even the verifier's
            // 20 ms) can fail a run on a loaded machine.
            .set_limits(biscuit_auth::AuthorizerLimits {
                max_time: Duration::from_secs(5),
                ..writ_verify::default_run_limits()
            })
            .code_with_params(
                format!("time({{now}}); audience({{svc}}); {code} allow if true;"),
                params,
                scope_params,
            )
            .unwrap()
            .build(&token)
            .unwrap()
            .authorize()
            .is_ok()
    }

    #[test]
    fn third_party_facts_are_invisible_by_default() {
        let keys = keys();
        let writ = elevated(&keys, &EvidenceSpec::default());
        let k = [("k", keys.approval.public())];
        let approved = r#"approved_right("orders/42", "delete")"#;
        // The authorizer's default scope is the authority block (and itself).
        assert!(!run(
            &writ,
            &keys.root,
            &format!("check if {approved};"),
            &[]
        ));
        assert!(!run(
            &writ,
            &keys.root,
            &format!("check if {approved} trusting authority;"),
            &[]
        ));
        // `trusting previous` means nothing in the authorizer.
        assert!(!run(
            &writ,
            &keys.root,
            &format!("check if {approved} trusting previous;"),
            &[]
        ));
        assert!(run(
            &writ,
            &keys.root,
            &format!("check if {approved} trusting {{k}};"),
            &k
        ));
        // A holder's block does not see it by default either (authority, itself, authorizer).
        let seen_by_holder = append_raw(&writ, &format!("check if {approved};"));
        assert!(!run(&seen_by_holder, &keys.root, "", &[]));
        let trusting_previous =
            append_raw(&writ, &format!("check if {approved} trusting previous;"));
        assert!(run(&trusting_previous, &keys.root, "", &[]));
    }

    #[test]
    fn trusting_authority_and_the_key_joins_both_blocks() {
        let keys = keys();
        let writ = elevated(&keys, &EvidenceSpec::default());
        let k = [("k", keys.approval.public())];
        let join = "check if writ_id($w), approved_writ($w)";
        assert!(run(
            &writ,
            &keys.root,
            &format!("{join} trusting authority, {{k}};"),
            &k
        ));
        assert!(!run(
            &writ,
            &keys.root,
            &format!("{join} trusting {{k}};"),
            &k
        ));
        assert!(!run(
            &writ,
            &keys.root,
            &format!("{join} trusting authority;"),
            &[]
        ));
        // The authorizer's own facts are always visible: `resource` joins approval facts.
        let request = r#"resource("orders/42"); operation("delete");"#;
        assert!(run(
            &writ,
            &keys.root,
            &format!(
                "{request} check if resource($r), operation($op), approved_right($r, $op) \
                 trusting {{k}};"
            ),
            &k
        ));
    }

    #[test]
    fn untrusted_third_party_and_attenuation_facts_stay_invisible() {
        let keys = keys();
        let stranger = KeyPair::new();
        let by_stranger = elevate(
            &mint(&keys.root, &spec()),
            &keys.root,
            &stranger,
            &EvidenceSpec::default(),
        );
        let check = "check if writ_id($w), approved_writ($w), approved_right(\"orders/42\", \"delete\") \
                     trusting authority, {k};";
        assert!(!run(
            &by_stranger,
            &keys.root,
            check,
            &[("k", keys.approval.public())]
        ));
        assert!(run(
            &by_stranger,
            &keys.root,
            check,
            &[("k", stranger.public())]
        ));

        let attenuated = append_raw(
            &mint(&keys.root, &spec()),
            r#"approved_writ("wr_01"); approved_right("orders/42", "delete");"#,
        );
        assert!(!run(
            &attenuated,
            &keys.root,
            check,
            &[("k", keys.approval.public())]
        ));
    }

    #[tokio::test]
    async fn a_third_party_block_grants_nothing_under_the_writ_policy() {
        let keys = keys();
        let granting = append_third_party(
            &mint(&keys.root, &WritSpec::default()),
            &keys.root,
            &keys.approval,
            BlockBuilder::new()
                .code(r#"right("orders/42", "write"); service("billing-api");"#)
                .unwrap(),
        );
        let verifier = verifier_with_keys(&keys).await;
        assert_eq!(
            verifier.authorize_at(&granting, "orders/42", "write", now()),
            Err(Denial::NotPermitted)
        );
    }
}
