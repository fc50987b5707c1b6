//! Storage on both backends: every issued writ is recorded before it is returned; when the record
//! cannot be written, no writ is returned.

use futures_util::future::join_all;
use serde_json::Value;

use crate::helpers::{Backend, TestBroker, break_writs_table, orders_request, problem_type};
use crate::on_both_backends;

async fn issued_writs_are_recorded(backend: Backend) {
    let broker = TestBroker::start_on(backend).await;
    let answer = broker
        .issue(&broker.orders_identity(), &orders_request())
        .await;
    let store = writ::store::connect(&broker.database_url).await.unwrap();
    let record = store
        .issued_writ(answer["writ_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.agent, "k8s:orders/report-bot");
    assert_eq!(record.task, "nightly report");
    assert_eq!(record.issuer, "kubernetes");
    assert_eq!(record.services, vec!["orders-api".to_owned()]);
    assert_eq!(record.rights[0].resource, "orders/42");
    assert_eq!(record.expires_at - record.issued_at, 300);
    assert_eq!(record.root_key_id, 1);
    assert_eq!(
        record.revocation_id.len(),
        128,
        "hex of an Ed25519 signature"
    );
    let writ = answer["writ"].as_str().unwrap();
    let inspected = writ_verify::inspect(writ).unwrap();
    assert_eq!(inspected.writ_id.as_deref(), Some(record.writ_id.as_str()));
    broker.stop().await;
}
on_both_backends!(issued_writs_are_recorded);

async fn no_writ_when_the_record_cannot_be_written(backend: Backend) {
    let broker = TestBroker::start_on(backend).await;
    broker
        .issue(&broker.orders_identity(), &orders_request())
        .await;
    break_writs_table(&broker.database_url).await;
    let response = broker
        .request(&broker.orders_identity(), &orders_request())
        .await;
    assert_eq!(response.status(), 503);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:writ:problem:storage_unavailable");
    assert!(problem.get("writ").is_none());
    assert!(
        !problem.to_string().contains("writs_gone"),
        "no database detail leaks"
    );
    broker.stop().await;
}
on_both_backends!(no_writ_when_the_record_cannot_be_written);

async fn readiness_reflects_storage(backend: Backend) {
    let broker = TestBroker::start_on(backend).await;
    let ready = broker.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let live = broker.get("/healthz").await;
    assert_eq!(live.status(), 200);
    broker.stop().await;
}
on_both_backends!(readiness_reflects_storage);

#[tokio::test]
async fn not_ready_when_postgres_is_gone() {
    let broker = TestBroker::start_on(Backend::Postgres).await;
    broker.drop_postgres_database().await;
    let ready = broker.get("/readyz").await;
    assert_eq!(
        problem_type(ready).await,
        (503, "urn:writ:problem:not_ready".to_owned())
    );
    let response = broker
        .request(&broker.orders_identity(), &orders_request())
        .await;
    assert_eq!(response.status(), 503);
    broker.stop().await;
}

async fn concurrent_issuance_records_every_writ(backend: Backend) {
    let broker = TestBroker::start_on(backend).await;
    let identity = broker.orders_identity();
    let body = orders_request();
    let requests = (0..40).map(|_| broker.issue(&identity, &body));
    let answers = join_all(requests).await;
    let store = writ::store::connect(&broker.database_url).await.unwrap();
    for answer in &answers {
        let id = answer["writ_id"].as_str().unwrap();
        assert!(
            store.issued_writ(id).await.unwrap().is_some(),
            "{id} recorded"
        );
    }
    broker.stop().await;
}
on_both_backends!(concurrent_issuance_records_every_writ);

/// One record that cannot be written (a duplicate id) fails alone, even when it is committed in
/// the same batch as others.
async fn a_failing_record_does_not_fail_its_neighbours(backend: Backend) {
    let broker = TestBroker::start_on(backend).await;
    let store = std::sync::Arc::new(writ::store::connect(&broker.database_url).await.unwrap());
    let record = |id: usize| writ::store::IssuedWrit {
        writ_id: format!("wr_{id:032}"),
        agent: "a".into(),
        task: "t".into(),
        issuer: "kubernetes".into(),
        subject: "s".into(),
        rights: vec![],
        services: vec!["orders-api".into()],
        root_key_id: 1,
        revocation_id: format!("{id:0128}"),
        issued_at: 0,
        expires_at: 60,
        policy_hash: None,
    };
    let event =
        || writ::audit::AuditEvent::new("writ.issued", writ::audit::Outcome::Success, "test");
    store.record_issued(&record(0), event()).await.unwrap();
    let attempts = (0..30).map(|id| {
        let store = std::sync::Arc::clone(&store);
        let writ = record(id);
        let event = event();
        tokio::spawn(async move { store.record_issued(&writ, event).await })
    });
    let results = join_all(attempts).await;
    for (id, result) in results.into_iter().enumerate() {
        match (id, result.unwrap()) {
            (0, Err(writ::store::StoreError::Duplicate(_))) => {}
            (0, other) => panic!("the duplicate was not refused: {other:?}"),
            (_, result) => assert!(result.is_ok(), "{id}: {result:?}"),
        }
    }
    broker.stop().await;
}
on_both_backends!(a_failing_record_does_not_fail_its_neighbours);
