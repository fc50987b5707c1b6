//! The approval path's latency, human time excluded: an agent opens a request
//! (`POST /v1/approvals`) and long-polls it; an approver decides (`POST
//! /v1/approvals/{id}/decision`); the agent's poll returns with the elevated writ. Measured:
//! opening, deciding, and decision-to-writ-in-hand (the waiting agent woken, the writ minted and
//! recorded, the answer read), and their sum.
//!
//!   cargo bench --bench approval              # 200 trials
//!   WRIT_BENCH_TRIALS=500 cargo bench --bench approval
//!
//! One broker on SQLite in this process on loopback, in dev mode (the playground's `delete`
//! needs one approver).

// A benchmark: a failed step should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
mod support;

fn report(what: &str, took: &mut [Duration]) {
    took.sort();
    let at = |q: f64| took[((took.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{what:<32} n={:<4} p50 {:>8.2?}  p99 {:>8.2?}  max {:>8.2?}",
        took.len(),
        at(0.50),
        at(0.99),
        at(1.0)
    );
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::var("WRIT_BENCH_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = format!("sqlite://{}", dir.path().join("writ.db").display());
    let broker = support::start(support::dev_config(dir.path(), &database_url)).await;
    let url = broker.url.clone();

    let client = reqwest::Client::new();
    let dev = writ::identity::DevIssuer::open_or_init(&dir.path().join("keys")).expect("dev");
    let approver =
        support::admin_token(dir.path(), &database_url, writ::admin::Role::Approver).await;
    let (mut open, mut decide, mut handover, mut total) = (vec![], vec![], vec![], vec![]);
    println!("approval path, human time excluded ({count} trials, one broker, SQLite)");
    for trial in 0..count {
        let identity = dev
            .token(
                &format!("agent-{trial}"),
                Duration::from_secs(300),
                SystemTime::now(),
            )
            .expect("token");
        let started = Instant::now();
        let opened: Value = client
            .post(format!("{url}/v1/approvals"))
            .bearer_auth(&identity)
            .json(&json!({
                "task": "bench", "services": ["orders-api"],
                "rights": [{ "resource": "orders/42", "operations": ["delete"] }],
                "justification": "benchmark",
            }))
            .send()
            .await
            .expect("open")
            .json()
            .await
            .expect("opened");
        let opening = started.elapsed();
        let id = opened["id"].as_str().expect("an id").to_owned();
        let poll = {
            let (client, url, identity, id) =
                (client.clone(), url.clone(), identity.clone(), id.clone());
            tokio::spawn(async move {
                let answer: Value = client
                    .get(format!("{url}/v1/approvals/{id}?wait=30s"))
                    .bearer_auth(&identity)
                    .send()
                    .await
                    .expect("poll")
                    .json()
                    .await
                    .expect("polled");
                (answer, Instant::now())
            })
        };
        // Let the poll reach the broker and wait, as an agent would be by the time a human acts.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let deciding = Instant::now();
        let decided = client
            .post(format!("{url}/v1/approvals/{id}/decision"))
            .bearer_auth(&approver)
            .json(&json!({ "decision": "approve", "reason": "bench" }))
            .send()
            .await
            .expect("decide");
        assert_eq!(decided.status(), 200);
        let decision = deciding.elapsed();
        let (answer, in_hand) = poll.await.expect("poll task");
        assert!(answer["writ"].is_string(), "{answer:#}");
        let handed = in_hand.duration_since(deciding);
        open.push(opening);
        decide.push(decision);
        handover.push(handed);
        total.push(opening + handed);
    }
    report("open (POST /v1/approvals)", &mut open);
    report("decide (POST .../decision)", &mut decide);
    report("decision -> writ in hand", &mut handover);
    report("open + decision -> writ", &mut total);
    let _ = broker.stop.send(());
}
