//! Revocation end to end: the verifier SDK following a real broker's stream refuses a revoked
//! writ (and its attenuations) within a second, and with two broker processes on one
//! PostgreSQL database, a revocation made through one reaches a verifier following the other.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use writ_testkit::TestIssuer;
use writ_verify::{Denial, Verifier};

use crate::helpers::{
    AUDIENCE, PostgresDatabase, ServeProcess, TestBroker, WRIT, client, orders_request,
    postgres_admin_url, process_config,
};

async fn follower(broker_url: &str) -> Verifier {
    Verifier::builder("orders-api")
        .key_set_url(format!("{broker_url}/.well-known/writ-keys"))
        .revocation_feed(broker_url)
        .max_revocation_staleness(Duration::from_secs(2))
        .revocation_poll_interval(Duration::from_millis(200))
        .build()
        .await
        .unwrap()
}

/// Polls `check` until it holds; returns how long that took.
async fn within(limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn a_revoked_writ_and_its_attenuations_are_refused_by_a_following_verifier() {
    let broker = TestBroker::start().await;
    let admin = broker.admin_token("root", &["admin"]).await;
    let (writ, writ_id) = broker
        .issue_writ(&broker.orders_identity(), &orders_request())
        .await;
    let narrowed = writ_verify::attenuate(
        &writ,
        &writ_verify::Attenuation {
            operations: Some(vec!["read".into()]),
            ..Default::default()
        },
    )
    .unwrap();
    let (other, _) = broker
        .issue_writ(&broker.orders_identity(), &orders_request())
        .await;
    let verifier = follower(&broker.url).await;
    assert!(verifier.authorize(&writ, "orders/42", "read").is_ok());
    assert!(verifier.authorize(&narrowed, "orders/42", "read").is_ok());

    let revoked = broker
        .admin_post(
            "/v1/revocations",
            &admin,
            &json!({ "writ_id": writ_id, "reason": "leaked" }),
        )
        .await;
    assert_eq!(revoked.status(), 201);
    within(Duration::from_secs(1), || {
        verifier.authorize(&writ, "orders/42", "read") == Err(Denial::Revoked)
    })
    .await;
    assert_eq!(
        verifier.authorize(&narrowed, "orders/42", "read"),
        Err(Denial::Revoked)
    );
    assert!(
        verifier.authorize(&other, "orders/42", "read").is_ok(),
        "another writ of the same agent is untouched"
    );
    let status = verifier.revocation_status().unwrap();
    assert!(status.age.unwrap() < Duration::from_secs(2));
    broker.stop().await;

    // Cut off from the broker, the verifier refuses everything once its view is too old.
    within(Duration::from_secs(5), || {
        matches!(
            verifier.authorize(&other, "orders/42", "read"),
            Err(Denial::RevocationViewStale { .. })
        )
    })
    .await;
    assert!(verifier.revocation_status().unwrap().age.unwrap() > Duration::from_secs(2));
}

/// A broker process started from a configuration file written to `<dir>/<name>.toml`.
fn replica(dir: &Path, name: &str, config: &str) -> ServeProcess {
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config).unwrap();
    ServeProcess::start(dir, name, &["--config", config_path.to_str().unwrap()])
}

#[tokio::test]
async fn a_revocation_through_one_replica_reaches_a_verifier_following_the_other() {
    let issuer = TestIssuer::start().await;
    let github = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let database = PostgresDatabase::create().await;
    let config = process_config(dir.path(), &database.url(), &issuer, &github);
    let replica_a = replica(dir.path(), "a", &config);
    let replica_b = replica(dir.path(), "b", &config);

    let admin = {
        let output = Command::new(WRIT)
            .args([
                "admin",
                "bootstrap",
                "--principal",
                "root",
                "--database-url",
            ])
            .arg(database.url())
            .arg("--key-dir")
            .arg(dir.path().join("keys"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let identity = issuer.kubernetes_token(
        writ_testkit::Alg::Rs256,
        "orders",
        "report-bot",
        AUDIENCE,
        Duration::from_secs(300),
    );
    let issued: Value = client()
        .post(format!("{}/v1/writs", replica_a.url))
        .bearer_auth(&identity)
        .json(&orders_request())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let writ = issued["writ"].as_str().unwrap().to_owned();
    let verifier = follower(&replica_b.url).await;
    assert!(verifier.authorize(&writ, "orders/42", "read").is_ok());

    let revoke = Command::new(WRIT)
        .args(["admin", "revoke", "--broker", &replica_a.url, "--writ-id"])
        .arg(issued["writ_id"].as_str().unwrap())
        .args(["--reason", "leaked"])
        .env("WRIT_ADMIN_TOKEN", &admin)
        .output()
        .unwrap();
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let took = within(Duration::from_secs(1), || {
        verifier.authorize(&writ, "orders/42", "read") == Err(Denial::Revoked)
    })
    .await;
    eprintln!("revocation through replica A reached replica B's follower in {took:?}");

    // Suspending the agent through B stops issuance through A.
    let suspend = Command::new(WRIT)
        .args([
            "admin",
            "revoke",
            "--broker",
            &replica_b.url,
            "--agent",
            "k8s:orders/report-bot",
        ])
        .args(["--reason", "suspected"])
        .env("WRIT_ADMIN_TOKEN", &admin)
        .output()
        .unwrap();
    assert!(
        suspend.status.success(),
        "{}",
        String::from_utf8_lossy(&suspend.stderr)
    );
    let mut refused = false;
    for _ in 0..100 {
        let response = client()
            .post(format!("{}/v1/writs", replica_a.url))
            .bearer_auth(&identity)
            .json(&orders_request())
            .send()
            .await
            .unwrap();
        if response.status() == 403 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        refused,
        "replica A learned of the suspension made through B"
    );
    drop(replica_a);
    drop(replica_b);
    issuer.shutdown().await;
    github.shutdown().await;
    let name = database.name.clone();
    drop(database);
    assert!(
        !database_exists(&name).await,
        "the test leaves no database behind"
    );
}

async fn database_exists(name: &str) -> bool {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .unwrap();
    sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut admin)
        .await
        .unwrap()
        .is_some()
}
