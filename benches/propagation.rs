//! Revocation propagation: the time from an admin's `POST /v1/revocations` to a verifier
//! (the writ-verify SDK following the broker's stream) refusing the writ, over many trials.
//!
//!   cargo bench --bench propagation            # 200 trials per setup
//!   WRIT_BENCH_TRIALS=500 cargo bench --bench propagation
//!
//! Setups: one broker on SQLite; one broker on PostgreSQL; two brokers on one PostgreSQL
//! database, revoking through A while the verifier follows B (LISTEN/NOTIFY between them).
//! PostgreSQL setups need a server at WRIT_TEST_POSTGRES_URL (default
//! postgres://postgres@127.0.0.1:5432/postgres); a fresh database is made and dropped.
//! Every broker runs in this process on loopback, in dev mode (the built-in identity issuer).

// A benchmark: a failed step should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use sqlx::Connection;
use writ_verify::{Denial, Verifier};

mod support;

use support::{admin_token, dev_config as config, start};

/// Runs `trials` revocations: issue through `issue_via`, revoke through `revoke_via`, and time
/// until a verifier following `follow` refuses. Returns the sorted durations.
async fn trials(
    dir: &std::path::Path,
    database_url: &str,
    issue_via: &str,
    revoke_via: &str,
    follow: &str,
    trials: usize,
) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let dev = writ::identity::DevIssuer::open_or_init(&dir.join("keys")).expect("dev issuer");
    let admin = admin_token(dir, database_url, writ::admin::Role::Admin).await;
    let verifier = Verifier::builder("orders-api")
        .key_set_url(format!("{follow}/.well-known/writ-keys"))
        .revocation_feed(follow)
        .build()
        .await
        .expect("verifier");
    let mut took = Vec::with_capacity(trials);
    for trial in 0..trials {
        let identity = dev
            .token(
                &format!("agent-{trial}"),
                Duration::from_secs(300),
                SystemTime::now(),
            )
            .expect("token");
        let issued: Value = client
            .post(format!("{issue_via}/v1/writs"))
            .bearer_auth(&identity)
            .json(&json!({
                "task": "bench", "services": ["orders-api"],
                "rights": [{ "resource": "orders/42", "operations": ["read"] }],
            }))
            .send()
            .await
            .expect("issue")
            .json()
            .await
            .expect("issued");
        let writ = issued["writ"].as_str().expect("a writ").to_owned();
        assert!(verifier.authorize(&writ, "orders/42", "read").is_ok());
        let started = Instant::now();
        let response = client
            .post(format!("{revoke_via}/v1/revocations"))
            .bearer_auth(&admin)
            .json(&json!({ "writ_id": issued["writ_id"], "reason": "bench" }))
            .send()
            .await
            .expect("revoke");
        assert_eq!(response.status(), 201);
        while verifier.authorize(&writ, "orders/42", "read") != Err(Denial::Revoked) {
            assert!(started.elapsed() < Duration::from_secs(10), "never refused");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        took.push(started.elapsed());
    }
    took.sort();
    took
}

fn report(setup: &str, took: &[Duration]) {
    let at = |q: f64| took[((took.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{setup:<40} n={:<4} p50 {:>8.2?}  p99 {:>8.2?}  max {:>8.2?}",
        took.len(),
        at(0.50),
        at(0.99),
        at(1.0)
    );
}

fn postgres_admin_url() -> String {
    std::env::var("WRIT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::var("WRIT_BENCH_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    println!("revocation propagation: POST /v1/revocations -> verifier refuses ({count} trials)");

    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = format!("sqlite://{}", dir.path().join("writ.db").display());
    let one = start(config(dir.path(), &sqlite)).await;
    let took = trials(dir.path(), &sqlite, &one.url, &one.url, &one.url, count).await;
    report("one broker, SQLite", &took);
    let _ = one.stop.send(());

    let admin_url = postgres_admin_url();
    let name = format!("writ_bench_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("PostgreSQL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create database");
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(base, _)| base);
    let postgres = format!("{base}/{name}");
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start(config(dir.path(), &postgres)).await;
    let b = start(config(dir.path(), &postgres)).await;
    let took = trials(dir.path(), &postgres, &a.url, &a.url, &a.url, count).await;
    report("one broker, PostgreSQL", &took);
    let took = trials(dir.path(), &postgres, &a.url, &a.url, &b.url, count).await;
    report("two brokers, PostgreSQL (revoke A, follow B)", &took);
    let _ = a.stop.send(());
    let _ = b.stop.send(());
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .expect("drop database");
}
