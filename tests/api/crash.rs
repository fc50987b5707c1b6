//! Crash safety: a broker process killed with SIGKILL while it issues under load. Every writ a
//! client received has its issuance record and its audit event, and the audit chain verifies.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use writ_testkit::TestIssuer;

use crate::helpers::{
    AUDIENCE, ServeProcess, WRIT, client, drop_postgres_database, fresh_postgres_database,
    orders_request, postgres_url, process_config,
};

/// Clients issuing at once.
const CLIENTS: usize = 8;

async fn killed_under_load(database_url: &str, dir: &Path) {
    let issuer = TestIssuer::start().await;
    let github = TestIssuer::start().await;
    let config = process_config(dir, database_url, &issuer, &github);
    let config_path = dir.join("writ.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut broker =
        ServeProcess::start(dir, "crash", &["--config", config_path.to_str().unwrap()]);
    let identity = issuer.kubernetes_token(
        writ_testkit::Alg::Rs256,
        "orders",
        "report-bot",
        AUDIENCE,
        Duration::from_secs(300),
    );

    let received = Arc::new(Mutex::new(BTreeSet::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, identity, received) =
                (broker.url.clone(), identity.clone(), Arc::clone(&received));
            tokio::spawn(async move {
                let http = client();
                loop {
                    let sent = http
                        .post(format!("{url}/v1/writs"))
                        .bearer_auth(&identity)
                        .json(&orders_request())
                        .send()
                        .await;
                    let Ok(response) = sent else { return };
                    if response.status() != 201 {
                        return;
                    }
                    let Ok(answer) = response.json::<Value>().await else {
                        return;
                    };
                    let writ_id = answer["writ_id"].as_str().unwrap().to_owned();
                    received.lock().unwrap().insert(writ_id);
                }
            })
        })
        .collect();
    // Kill it mid-flight, once writs are flowing.
    for _ in 0..200 {
        if received.lock().unwrap().len() >= 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.kill_hard();
    for client in clients {
        client.await.unwrap();
    }
    let received = received.lock().unwrap().clone();
    assert!(
        received.len() >= 50,
        "writs were issued before the kill: {}",
        received.len()
    );

    let recorded = writ_ids(database_url, "SELECT writ_id FROM writs").await;
    let audited = writ_ids(
        database_url,
        "SELECT writ_id FROM audit_events WHERE action = 'writ.issued'",
    )
    .await;
    let unrecorded: Vec<_> = received.difference(&recorded).collect();
    let unaudited: Vec<_> = received.difference(&audited).collect();
    assert!(
        unrecorded.is_empty(),
        "received but not recorded: {unrecorded:?}"
    );
    assert!(
        unaudited.is_empty(),
        "received but not audited: {unaudited:?}"
    );

    let verified = Command::new(WRIT)
        .args(["audit", "verify", "--database-url", database_url])
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
}

async fn writ_ids(url: &str, query: &'static str) -> BTreeSet<String> {
    use sqlx::Connection;
    let rows: Vec<(Option<String>,)> = if url.starts_with("sqlite:") {
        let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_as(query)
            .fetch_all(&mut connection)
            .await
            .unwrap()
    } else {
        let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_as(query)
            .fetch_all(&mut connection)
            .await
            .unwrap()
    };
    rows.into_iter().filter_map(|(id,)| id).collect()
}

#[tokio::test]
async fn a_broker_killed_under_load_on_sqlite_lost_no_writ_it_returned() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("writ.db").display());
    killed_under_load(&url, dir.path()).await;
}

#[tokio::test]
async fn a_broker_killed_under_load_on_postgres_lost_no_writ_it_returned() {
    let dir = tempfile::tempdir().unwrap();
    let database = fresh_postgres_database().await;
    killed_under_load(&postgres_url(&database), dir.path()).await;
    drop_postgres_database(&database).await;
}
