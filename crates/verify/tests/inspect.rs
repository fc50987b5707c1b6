//! Inspection decodes what a writ says (unverified) without being fooled by printed Datalog.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use biscuit_auth::KeyPair;
use common::*;
use writ_verify::{
    Attenuation, InspectedRight, ResourcePattern, RightResource, attenuate, inspect,
};

#[test]
fn shows_authority_values_and_blocks() {
    let root = KeyPair::new();
    let writ = mint(
        &root,
        &WritSpec {
            services: vec!["orders-api".into(), "billing-api".into()],
            prefixes: vec![("reports/2026/".into(), "read".into())],
            ..WritSpec::default()
        },
    );
    let attenuated = attenuate(
        &writ,
        &Attenuation {
            resources: Some(vec![ResourcePattern::parse("orders/*").unwrap()]),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let seen = inspect(&attenuated).unwrap();
    assert_eq!(seen.root_key_id, Some(KID));
    assert_eq!(seen.version, Some(1));
    assert_eq!(seen.writ_id.as_deref(), Some("wr_01"));
    assert_eq!(seen.agent.as_deref(), Some("agent-7"));
    assert_eq!(seen.task.as_deref(), Some("refund-42"));
    assert_eq!(seen.issued_at, Some(issued()));
    assert_eq!(seen.expires_at, Some(expires()));
    assert_eq!(seen.services, ["orders-api", "billing-api"]);
    assert_eq!(
        seen.rights,
        [
            InspectedRight {
                resource: RightResource::Exact("orders/42".into()),
                operation: "read".into()
            },
            InspectedRight {
                resource: RightResource::Prefix("reports/2026/".into()),
                operation: "read".into()
            },
        ]
    );
    assert_eq!(seen.blocks.len(), 2);
    assert!(seen.blocks[0].contains("writ_id(\"wr_01\")"));
    assert!(seen.blocks[1].contains("starts_with(\"orders/\")"));
}

#[test]
fn hostile_values_are_decoded_exactly() {
    let root = KeyPair::new();
    let agent = r#"x"); right("orders/43", "write"); agent("y"#;
    let writ = mint(
        &root,
        &WritSpec {
            agent: agent.into(),
            ..WritSpec::default()
        },
    );
    let seen = inspect(&writ).unwrap();
    assert_eq!(seen.agent.as_deref(), Some(agent));
    assert_eq!(
        seen.rights.len(),
        1,
        "no right conjured out of the agent name"
    );
}

#[test]
fn garbage_is_an_error() {
    assert!(inspect("").is_err());
    assert!(inspect("definitely not a writ").is_err());
}

#[test]
fn shows_approval_evidence_unverified() {
    let root = KeyPair::new();
    let approver = KeyPair::new();
    let writ = elevate(
        &mint(&root, &WritSpec::default()),
        &root,
        &approver,
        &EvidenceSpec {
            prefixes: vec![("reports/".into(), "delete".into())],
            ..EvidenceSpec::default()
        },
    );
    let seen = inspect(&writ).unwrap();
    assert_eq!(seen.writ_id.as_deref(), Some("wr_01"));
    assert_eq!(seen.blocks.len(), 2);
    let [approval] = seen.approvals.as_slice() else {
        panic!("{:?}", seen.approvals);
    };
    assert_eq!(approval.block, 1);
    assert_eq!(approval.signed_by, approver.public());
    assert_eq!(approval.approved_writs, ["wr_01"]);
    let approvers: Vec<_> = approval
        .approvals
        .iter()
        .map(|a| (a.request_id.as_str(), a.principal.as_str(), a.decided_at))
        .collect();
    assert_eq!(approvers, [(REQUEST_ID, "alice@example.com", decided())]);
    assert_eq!(
        approval.rights,
        [
            InspectedRight {
                resource: RightResource::Exact("orders/42".into()),
                operation: "delete".into()
            },
            InspectedRight {
                resource: RightResource::Prefix("reports/".into()),
                operation: "delete".into()
            },
        ]
    );
    // The authority block's rights are its own.
    assert_eq!(seen.rights.len(), 1);
    // An ordinary writ shows none.
    let plain = mint(&root, &WritSpec::default());
    assert!(inspect(&plain).unwrap().approvals.is_empty());
}
