//! A remote key set served by a real HTTP server on loopback: fetch, rotation, rate limiting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use biscuit_auth::KeyPair;
use common::*;
use writ_verify::{BuildError, Denial, KeySetDocument, KeySetError, PublishedKey, Verifier};

#[derive(Clone, Default)]
struct Broker {
    keys: Arc<Mutex<Vec<PublishedKey>>>,
    approval_keys: Arc<Mutex<Vec<PublishedKey>>>,
    hits: Arc<AtomicUsize>,
}

fn published(kid: u32, key: &KeyPair, not_after: Option<&str>) -> PublishedKey {
    PublishedKey {
        kid,
        alg: "ed25519".into(),
        public_key: key.public().to_string(),
        not_before: "2026-11-22T09:00:00Z".into(),
        not_after: not_after.map(str::to_owned),
    }
}

impl Broker {
    fn publish(&self, kid: u32, key: &KeyPair, not_after: Option<&str>) {
        self.keys
            .lock()
            .unwrap()
            .push(published(kid, key, not_after));
    }

    fn withdraw(&self, kid: u32) {
        self.keys.lock().unwrap().retain(|k| k.kid != kid);
    }

    fn publish_approval(&self, kid: u32, key: &KeyPair, not_after: Option<&str>) {
        self.approval_keys
            .lock()
            .unwrap()
            .push(published(kid, key, not_after));
    }

    fn withdraw_approval(&self, kid: u32) {
        self.approval_keys.lock().unwrap().retain(|k| k.kid != kid);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Serves `GET /.well-known/writ-keys` on 127.0.0.1:0; answers the URL.
    async fn serve(&self) -> String {
        async fn keys(State(broker): State<Broker>) -> Json<serde_json::Value> {
            broker.hits.fetch_add(1, Ordering::SeqCst);
            let doc = KeySetDocument {
                keys: broker.keys.lock().unwrap().clone(),
                approval_keys: broker.approval_keys.lock().unwrap().clone(),
            };
            // An entry of an algorithm the verifier does not know must not break the document.
            let mut json = serde_json::to_value(doc).unwrap();
            let unknown = serde_json::json!({"kid": 900, "alg": "ml-dsa-65", "key": "AAAA"});
            json["keys"].as_array_mut().unwrap().push(unknown.clone());
            if let Some(approval_keys) = json.get_mut("approval_keys") {
                approval_keys.as_array_mut().unwrap().push(unknown);
            }
            Json(json)
        }
        let app = axum::Router::new()
            .route("/.well-known/writ-keys", get(keys))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/.well-known/writ-keys")
    }
}

/// The usual limit on unknown-key refetches.
const WINDOW: Duration = Duration::from_secs(10);

/// A broker publishing key 1; answers it, the key and the key set URL.
async fn serving_key_1() -> (Broker, KeyPair, String) {
    let broker = Broker::default();
    let k1 = KeyPair::new();
    broker.publish(1, &k1, None);
    let url = broker.serve().await;
    (broker, k1, url)
}

async fn remote_verifier(url: &str, window: Duration) -> Verifier {
    Verifier::builder("orders-api")
        .key_set_url(url)
        .unknown_key_refetch_interval(window)
        .no_revocation()
        .build()
        .await
        .unwrap()
}

/// A writ valid by the real clock (these tests use `authorize`, not `authorize_at`).
fn live_writ(root: &KeyPair, kid: u32) -> String {
    let wall = SystemTime::now();
    mint_with(
        root,
        kid,
        &WritSpec {
            issued_at: wall,
            expires_at: wall + Duration::from_secs(600),
            ..WritSpec::default()
        },
    )
}

#[tokio::test]
async fn verifies_against_a_fetched_key_set() {
    let (broker, k1, url) = serving_key_1().await;
    let verifier = remote_verifier(&url, WINDOW).await;
    assert_eq!(broker.hits(), 1);
    let grant = verifier
        .authorize_with_refresh(&live_writ(&k1, 1), "orders/42", "read")
        .await
        .unwrap();
    assert_eq!(grant.root_key_id, 1);
    assert_eq!(broker.hits(), 1, "a known key needs no fetch");
}

#[tokio::test]
async fn rotation_is_picked_up_by_one_refetch() {
    let (broker, _, url) = serving_key_1().await;
    let verifier = remote_verifier(&url, WINDOW).await;

    let k2 = KeyPair::new();
    broker.publish(2, &k2, None);
    let new_writ = live_writ(&k2, 2);
    let grant = verifier
        .authorize_with_refresh(&new_writ, "orders/42", "read")
        .await
        .unwrap();
    assert_eq!(grant.root_key_id, 2);
    assert_eq!(broker.hits(), 2, "exactly one refetch");

    // Still unknown after the refetch: a denial, and no new fetch inside the window.
    let stranger = live_writ(&KeyPair::new(), 77);
    assert_eq!(
        verifier
            .authorize_with_refresh(&stranger, "orders/42", "read")
            .await,
        Err(Denial::UnknownKey { kid: Some(77) })
    );
    assert_eq!(broker.hits(), 2);
}

#[tokio::test]
async fn sync_authorize_refetches_in_the_background() {
    let (broker, _, url) = serving_key_1().await;
    let verifier = remote_verifier(&url, WINDOW).await;

    let k2 = KeyPair::new();
    broker.publish(2, &k2, None);
    let writ = live_writ(&k2, 2);
    assert_eq!(
        verifier.authorize(&writ, "orders/42", "read"),
        Err(Denial::UnknownKey { kid: Some(2) }),
        "the synchronous call does not wait for the network"
    );
    for _ in 0..100 {
        if verifier.authorize(&writ, "orders/42", "read").is_ok() {
            assert_eq!(broker.hits(), 2);
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the background refetch never brought key 2");
}

#[tokio::test]
async fn bursts_of_unknown_kids_fetch_at_most_once_per_window() {
    let (broker, _, url) = serving_key_1().await;
    let window = Duration::from_millis(1000);
    let verifier = Arc::new(remote_verifier(&url, window).await);
    assert_eq!(broker.hits(), 1);

    let attacker = KeyPair::new();
    let writs: Vec<String> = (100..164).map(|kid| live_writ(&attacker, kid)).collect();

    for round in 1..=2 {
        let start = broker.hits();
        let began = std::time::Instant::now();
        let tasks: Vec<_> = writs
            .iter()
            .cloned()
            .map(|writ| {
                let verifier = Arc::clone(&verifier);
                tokio::spawn(async move {
                    let async_result = verifier
                        .authorize_with_refresh(&writ, "orders/42", "read")
                        .await;
                    let sync_result = verifier.authorize(&writ, "orders/42", "read");
                    (async_result, sync_result)
                })
            })
            .collect();
        for task in tasks {
            let (a, s) = task.await.unwrap();
            assert!(matches!(a, Err(Denial::UnknownKey { .. })));
            assert!(matches!(s, Err(Denial::UnknownKey { .. })));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let fetched = broker.hits() - start;
        // One fetch per window begun during the round: one, unless the machine is very slow.
        let windows = 1 + (began.elapsed().as_millis() / window.as_millis()) as usize;
        assert!(
            fetched >= 1,
            "round {round}: the first unknown kid refetches"
        );
        assert!(
            fetched <= windows,
            "round {round}: {fetched} fetches in {windows} window(s)"
        );
        tokio::time::sleep(window).await;
    }
}

#[tokio::test]
async fn withdrawn_and_retired_keys_stop_working() {
    let broker = Broker::default();
    let k1 = KeyPair::new();
    let old = KeyPair::new();
    broker.publish(1, &k1, None);
    broker.publish(9, &old, Some("2000-01-01T00:00:00Z"));
    let url = broker.serve().await;
    let verifier = remote_verifier(&url, WINDOW).await;

    assert_eq!(
        verifier.authorize(&live_writ(&old, 9), "orders/42", "read"),
        Err(Denial::KeyRetired { kid: 9 })
    );

    // A cached writ stops as soon as its key leaves the key set.
    let writ = live_writ(&k1, 1);
    assert!(verifier.authorize(&writ, "orders/42", "read").is_ok());
    assert_eq!(verifier.cached_writs(), 1);
    broker.withdraw(1);
    verifier.refresh_keys().await.unwrap();
    assert_eq!(
        verifier.authorize(&writ, "orders/42", "read"),
        Err(Denial::UnknownKey { kid: Some(1) })
    );
}

#[tokio::test]
async fn scheduled_refresh_runs() {
    let (broker, _, url) = serving_key_1().await;
    let _verifier = Verifier::builder("orders-api")
        .key_set_url(&url)
        .key_refresh_interval(Duration::from_millis(100))
        .no_revocation()
        .build()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(650)).await;
    assert!(broker.hits() >= 2, "hits: {}", broker.hits());
}

#[tokio::test]
async fn unreachable_key_set_fails_the_build() {
    // Bind then drop a listener so the port is (very likely) closed.
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let result = Verifier::builder("orders-api")
        .key_set_url(format!("http://127.0.0.1:{port}/.well-known/writ-keys"))
        .http_timeout(Duration::from_secs(2))
        .no_revocation()
        .build()
        .await;
    let Err(BuildError::KeySet(KeySetError::Unreachable(cause))) = result else {
        panic!("{result:?}");
    };
    // The underlying cause survives, not only "error sending request".
    assert!(cause.contains("Connection refused"), "{cause}");
}

#[tokio::test]
async fn a_key_set_url_without_its_path_names_the_path() {
    let (_broker, _key, url) = serving_key_1().await;
    let base = url.trim_end_matches(writ_verify::KEY_SET_PATH).to_owned();
    let result = Verifier::builder("orders-api")
        .key_set_url(&base)
        .no_revocation()
        .build()
        .await;
    let Err(BuildError::KeySet(KeySetError::Fetch(message))) = result else {
        panic!("{result:?}");
    };
    assert!(
        message.contains("404") && message.contains(&format!("{base}/.well-known/writ-keys")),
        "{message}"
    );
}

#[tokio::test]
async fn a_key_set_that_is_too_large_unreadable_refused_or_moved_fails_the_build() {
    let broker = Broker::default();
    broker.publish(1, &KeyPair::new(), None);
    let valid = broker.serve().await;
    // Over 1 MiB, announced by Content-Length or only found out while reading.
    let oversized = || format!("{{\"keys\": [{}]}}", " ".repeat(1024 * 1024));
    let streamed = move || {
        let chunks = (0..17).map(|_| Ok::<_, std::convert::Infallible>(vec![b' '; 64 * 1024]));
        axum::body::Body::from_stream(futures_util::stream::iter(chunks))
    };
    let app = axum::Router::new()
        .route("/sized", get(move || async move { oversized() }))
        .route("/streamed", get(move || async move { streamed() }))
        .route("/not-json", get(|| async { "not json" }))
        .route(
            "/error",
            get(|| async { axum::http::StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route(
            "/moved",
            get(move || async move { axum::response::Redirect::temporary(&valid) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let build = |path: &str| {
        Verifier::builder("orders-api")
            .key_set_url(format!("http://{addr}{path}"))
            .no_revocation()
            .build()
    };
    for path in ["/sized", "/streamed"] {
        assert!(
            matches!(
                build(path).await,
                Err(BuildError::KeySet(KeySetError::TooLarge))
            ),
            "{path}"
        );
    }
    assert!(matches!(
        build("/not-json").await,
        Err(BuildError::KeySet(KeySetError::Invalid(_)))
    ));
    for path in ["/error", "/moved"] {
        assert!(
            matches!(
                build(path).await,
                Err(BuildError::KeySet(KeySetError::Fetch(_)))
            ),
            "{path}"
        );
    }
    assert_eq!(broker.hits(), 0, "the redirect was not followed");
}

#[tokio::test]
async fn approval_keys_come_and_go_with_the_key_set() {
    let (broker, k1, url) = serving_key_1().await;
    let verifier = Verifier::builder("orders-api")
        .key_set_url(&url)
        .require_approval_for(["delete"])
        .no_revocation()
        .build()
        .await
        .expect("a key set without approval keys still builds");
    let wall = SystemTime::now();
    let writ = mint_with(
        &k1,
        1,
        &WritSpec {
            issued_at: wall,
            expires_at: wall + Duration::from_secs(600),
            exact: vec![
                ("orders/42".into(), "read".into()),
                ("orders/42".into(), "delete".into()),
            ],
            ..WritSpec::default()
        },
    );
    let approval = KeyPair::new();
    let elevated = elevate(&writ, &k1, &approval, &EvidenceSpec::default());
    let refused = Err(Denial::ApprovalRequired {
        operation: "delete".into(),
    });

    // No approval key published: required operations fail closed, others work.
    assert_eq!(
        verifier.authorize(&elevated, "orders/42", "delete"),
        refused
    );
    assert!(verifier.authorize(&elevated, "orders/42", "read").is_ok());

    // Published: the cached writ is read again, now with its evidence.
    broker.publish_approval(1, &approval, None);
    verifier.refresh_keys().await.unwrap();
    let grant = verifier
        .authorize(&elevated, "orders/42", "delete")
        .unwrap();
    let evidence = grant.approval.unwrap();
    assert_eq!(evidence.request_id, REQUEST_ID);
    assert_eq!(evidence.approvals[0].principal, "alice@example.com");

    // Withdrawn: refused again at once, cache or not.
    broker.withdraw_approval(1);
    verifier.refresh_keys().await.unwrap();
    assert_eq!(
        verifier.authorize(&elevated, "orders/42", "delete"),
        refused
    );

    // Retired (past its not_after): not trusted either.
    broker.publish_approval(2, &approval, Some("2000-01-01T00:00:00Z"));
    verifier.refresh_keys().await.unwrap();
    assert_eq!(
        verifier.authorize(&elevated, "orders/42", "delete"),
        refused
    );
}
