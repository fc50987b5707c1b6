//! Workload identity: every way a token can be wrong is refused with its own stable error.

use std::time::Duration;

use serde_json::{Value, json};
use writ_testkit::{Alg, IssuerOptions, TestIssuer, claims_base, now_unix};

use crate::helpers::{AUDIENCE, Backend, Setup, TestBroker, client, orders_request};

async fn problem_type(broker: &TestBroker, identity: &str) -> (u16, String) {
    let response = broker.request(identity, &orders_request()).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert!(body.get("writ").is_none());
    (
        status,
        body["type"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("urn:writ:problem:")
            .to_owned(),
    )
}

async fn assert_refused(broker: &TestBroker, identity: &str, code: &str) {
    assert_eq!(problem_type(broker, identity).await, (401, code.to_owned()));
}

#[tokio::test]
async fn kubernetes_rs256_and_es256_tokens_are_accepted() {
    let broker = TestBroker::start().await;
    for alg in [Alg::Rs256, Alg::Es256] {
        let token = broker.kubernetes.kubernetes_token(
            alg,
            "orders",
            "report-bot",
            AUDIENCE,
            Duration::from_secs(600),
        );
        let writ = broker.issue(&token, &orders_request()).await;
        assert_eq!(writ["agent"], "k8s:orders/report-bot");
    }
    broker.stop().await;
}

#[tokio::test]
async fn expiry_and_validity_windows_honour_the_configured_skew_only() {
    let broker = TestBroker::start().await; // skew 30 s
    let now = now_unix() as i64;
    let sign = |edit: &dyn Fn(&mut Value)| {
        broker
            .kubernetes
            .sign(Alg::Rs256, &broker.orders_claims(|c| edit(c)))
    };
    assert_refused(
        &broker,
        &sign(&|c| c["exp"] = json!(now - 120)),
        "identity_expired",
    )
    .await;
    assert_refused(
        &broker,
        &sign(&|c| c["exp"] = json!(now - 35)),
        "identity_expired",
    )
    .await;
    assert_refused(
        &broker,
        &sign(&|c| c["nbf"] = json!(now + 120)),
        "identity_not_yet_valid",
    )
    .await;
    assert_refused(
        &broker,
        &sign(&|c| c["iat"] = json!(now + 120)),
        "identity_issued_in_future",
    )
    .await;
    // Within the skew, all three are accepted.
    for edit in [
        &(|c: &mut Value| c["exp"] = json!(now - 10)) as &dyn Fn(&mut Value),
        &|c: &mut Value| c["nbf"] = json!(now + 10),
        &|c: &mut Value| c["iat"] = json!(now + 10),
    ] {
        broker.issue(&sign(edit), &orders_request()).await;
    }
    broker.stop().await;
}

#[tokio::test]
async fn issuer_and_audience_must_match_exactly() {
    let broker = TestBroker::start().await;
    let sign = |claims: Value| broker.kubernetes.sign(Alg::Rs256, &claims);
    let with_slash = format!("{}/", broker.kubernetes.issuer());
    assert_refused(
        &broker,
        &sign(broker.orders_claims(|c| c["iss"] = json!(with_slash))),
        "identity_issuer_unknown",
    )
    .await;
    assert_refused(
        &broker,
        &sign(broker.orders_claims(|c| c["aud"] = json!("someone-else"))),
        "identity_audience_invalid",
    )
    .await;
    assert_refused(
        &broker,
        &sign(broker.orders_claims(|c| c["aud"] = json!(["writ", "someone-else"]))),
        "identity_audience_invalid",
    )
    .await;
    assert_refused(
        &broker,
        &sign(broker.orders_claims(|c| {
            c.as_object_mut().unwrap().remove("aud");
        })),
        "identity_audience_invalid",
    )
    .await;
    broker.stop().await;
}

#[tokio::test]
async fn a_token_from_an_issuer_that_is_not_configured_is_refused() {
    let broker = TestBroker::start().await;
    let stranger = TestIssuer::start().await;
    let token = stranger.kubernetes_token(
        Alg::Rs256,
        "orders",
        "bot",
        AUDIENCE,
        Duration::from_secs(600),
    );
    assert_refused(&broker, &token, "identity_issuer_unknown").await;
    assert_eq!(
        stranger.jwks_fetches() + stranger.discovery_fetches(),
        0,
        "never contacted"
    );
    broker.stop().await;
}

#[tokio::test]
async fn forged_algorithms_keys_and_signatures_are_refused() {
    let broker = TestBroker::start().await;
    let claims = broker.orders_claims(|_| {});
    assert_refused(
        &broker,
        &broker.kubernetes.forge_alg_none(&claims),
        "identity_algorithm_refused",
    )
    .await;
    assert_refused(
        &broker,
        &broker.kubernetes.forge_hs256_with_public_key(&claims),
        "identity_algorithm_refused",
    )
    .await;
    assert_refused(
        &broker,
        &broker.kubernetes.forge_unknown_kid(&claims),
        "identity_key_unknown",
    )
    .await;
    let tampered = TestIssuer::tamper(&broker.kubernetes.sign(Alg::Rs256, &claims));
    assert_refused(&broker, &tampered, "identity_signature_invalid").await;
    broker.stop().await;
}

#[tokio::test]
async fn malformed_tokens_and_credentials_are_refused() {
    let broker = TestBroker::start().await;
    for garbage in [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJSUzI1NiJ9.e30.",
        &"x".repeat(20_000),
    ] {
        assert_refused(&broker, garbage, "identity_malformed").await;
    }
    let url = format!("{}/v1/writs", broker.url);
    // Identity comes first: an unauthenticated caller learns nothing about its body.
    let unauthenticated = client()
        .post(&url)
        .bearer_auth("garbage")
        .header("content-type", "text/plain")
        .body(r#"{"admin": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let none = client()
        .post(&url)
        .json(&orders_request())
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let body: Value = none.json().await.unwrap();
    assert_eq!(body["type"], "urn:writ:problem:credential_missing");
    for empty in ["Bearer ", "Bearer    ", "bearer"] {
        let response = client()
            .post(&url)
            .header("authorization", empty)
            .json(&orders_request())
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["type"], "urn:writ:problem:credential_malformed",
            "{empty:?}"
        );
    }
    let basic = client()
        .post(&url)
        .header("authorization", "Basic dXNlcjpwYXNz")
        .json(&orders_request())
        .send()
        .await
        .unwrap();
    let body: Value = basic.json().await.unwrap();
    assert_eq!(body["type"], "urn:writ:problem:credential_malformed");
    broker.stop().await;
}

#[tokio::test]
async fn an_algorithm_off_the_issuers_allow_list_is_refused() {
    let mut setup = Setup::new(Backend::Sqlite);
    setup.tweak = Box::new(|config| config.issuers[0].algorithms = vec!["RS256".into()]);
    let broker = TestBroker::start_with(setup).await;
    let es256 = broker.kubernetes.kubernetes_token(
        Alg::Es256,
        "orders",
        "bot",
        AUDIENCE,
        Duration::from_secs(600),
    );
    assert_refused(&broker, &es256, "identity_algorithm_refused").await;
    broker.stop().await;
}

#[tokio::test]
async fn keys_are_cached_and_unknown_kids_refetch_at_most_once_per_window() {
    let broker = TestBroker::start().await;
    for _ in 0..5 {
        broker
            .issue(&broker.orders_identity(), &orders_request())
            .await;
    }
    assert_eq!(
        broker.kubernetes.jwks_fetches(),
        1,
        "one fetch serves many tokens"
    );
    let forged = broker
        .kubernetes
        .forge_unknown_kid(&broker.orders_claims(|_| {}));
    for _ in 0..20 {
        assert_refused(&broker, &forged, "identity_key_unknown").await;
    }
    assert!(
        broker.kubernetes.jwks_fetches() <= 2,
        "fetches: {}",
        broker.kubernetes.jwks_fetches()
    );
    broker.stop().await;
}

#[tokio::test]
async fn a_rotated_issuer_key_is_fetched_on_first_sight() {
    let mut setup = Setup::new(Backend::Sqlite);
    // The shortest interval allowed.
    setup.tweak =
        Box::new(|config| config.issuers[0].jwks_min_refetch_interval = Duration::from_secs(1));
    let broker = TestBroker::start_with(setup).await;
    broker
        .issue(&broker.orders_identity(), &orders_request())
        .await;
    let before = broker.kubernetes.jwks_fetches();
    broker.kubernetes.rotate_rsa_key();
    tokio::time::sleep(Duration::from_millis(1050)).await;
    broker
        .issue(&broker.orders_identity(), &orders_request())
        .await;
    assert_eq!(broker.kubernetes.jwks_fetches(), before + 1);
    broker.stop().await;
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_refused() {
    let impostor = TestIssuer::start_with(IssuerOptions {
        discovery_issuer_override: Some("https://evil.example".into()),
        ..IssuerOptions::default()
    })
    .await;
    let issuer = impostor.issuer();
    let mut setup = Setup::new(Backend::Sqlite);
    setup.tweak = Box::new(move |config| config.issuers[0].issuer = issuer);
    let broker = TestBroker::start_with(setup).await;
    let token = impostor.kubernetes_token(
        Alg::Rs256,
        "orders",
        "bot",
        AUDIENCE,
        Duration::from_secs(600),
    );
    assert_eq!(
        problem_type(&broker, &token).await,
        (503, "identity_issuer_unavailable".into())
    );
    assert_eq!(
        impostor.jwks_fetches(),
        0,
        "keys are never read from an impostor's document"
    );
    broker.stop().await;
}

#[tokio::test]
async fn spiffe_style_issuers_by_jwks_url_with_jwt_svid_keys() {
    let spire = TestIssuer::start_with(IssuerOptions {
        discovery: false,
        jwks_use: Some("jwt-svid".into()),
        ..IssuerOptions::default()
    })
    .await;
    let (issuer, jwks_url) = (spire.issuer(), spire.jwks_url());
    let mut setup = Setup::new(Backend::Sqlite);
    setup.policies.push_str(
        "[[policy]]\nname = \"spiffe\"\nissuer = \"spire\"\nclaims = { sub = \"spiffe://acme.org/ns/orders/*\" }\n\
         resources = [\"orders/*\"]\noperations = [\"read\"]\nservices = [\"orders-api\"]\nmax_ttl = \"5m\"\n",
    );
    setup.tweak = Box::new(move |config| {
        let mut spire = config.issuers[0].clone();
        spire.name = "spire".into();
        spire.issuer = issuer;
        spire.jwks = Some(writ::config::JwksSource::Url(jwks_url));
        spire.agent = "{sub}".into();
        config.issuers.push(spire);
    });
    let broker = TestBroker::start_with(setup).await;
    let svid = spire.sign(
        Alg::Es256,
        &claims_base(
            &spire.issuer(),
            "spiffe://acme.org/ns/orders/sa/bot",
            AUDIENCE,
            Duration::from_secs(300),
        ),
    );
    let writ = broker.issue(&svid, &orders_request()).await;
    assert_eq!(writ["agent"], "spiffe://acme.org/ns/orders/sa/bot");
    assert_eq!(writ["policy"], "spiffe");
    broker.stop().await;
}

#[tokio::test]
async fn a_claim_the_agent_template_needs_must_be_present() {
    let broker = TestBroker::start().await;
    let token = broker.kubernetes.sign(
        Alg::Rs256,
        &broker.orders_claims(|c| {
            c.as_object_mut().unwrap().remove("kubernetes.io");
        }),
    );
    assert_refused(&broker, &token, "identity_claim_missing").await;
    broker.stop().await;
}

/// Kubernetes-shaped claims from `issuer` for service account `name` in `orders`.
fn orders_claims_from(issuer: &str, name: &str) -> Value {
    let mut claims = claims_base(
        issuer,
        &format!("system:serviceaccount:orders:{name}"),
        AUDIENCE,
        Duration::from_secs(600),
    );
    claims["kubernetes.io"] = json!({"namespace": "orders", "serviceaccount": {"name": name}});
    claims
}

/// A broker whose `kubernetes` issuer is `issuer` (at `issuer_url`).
async fn broker_trusting(issuer_url: String) -> TestBroker {
    let mut setup = Setup::new(Backend::Sqlite);
    setup.tweak = Box::new(move |config| config.issuers[0].issuer = issuer_url);
    TestBroker::start_with(setup).await
}

/// A chunked answer without Content-Length is read only up to the document limit: the broker
/// refuses the issuer's keys after reading a bounded amount, not after 256 MiB.
#[tokio::test]
async fn huge_issuer_documents_are_read_only_up_to_the_limit() {
    const HUGE: usize = 256 * 1024 * 1024;
    for options in [
        IssuerOptions {
            huge_jwks: Some(HUGE),
            ..IssuerOptions::default()
        },
        IssuerOptions {
            huge_discovery: Some(HUGE),
            ..IssuerOptions::default()
        },
    ] {
        let hostile = TestIssuer::start_with(options.clone()).await;
        let broker = broker_trusting(hostile.issuer()).await;
        let token = hostile.sign(Alg::Rs256, &orders_claims_from(&hostile.issuer(), "bot"));
        let started = std::time::Instant::now();
        assert_eq!(
            problem_type(&broker, &token).await,
            (503, "identity_issuer_unavailable".into())
        );
        let elapsed = started.elapsed();
        let fetches = if options.huge_jwks.is_some() {
            hostile.jwks_fetches()
        } else {
            hostile.discovery_fetches()
        };
        assert!(fetches >= 1);
        // 512 KiB are read; what the sockets buffer on loopback comes on top.
        let per_fetch = hostile.huge_bytes_served() / fetches;
        assert!(
            per_fetch < 16 * 1024 * 1024,
            "{per_fetch} bytes served per fetch ({fetches} fetches)"
        );
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        broker.stop().await;
        hostile.shutdown().await;
    }
}

/// An RSA key under 2048 bits in the issuer's key set is dropped: a token it signed is refused as
/// signed by a key the issuer does not publish, and the issuer's other keys still work.
#[tokio::test]
async fn a_weak_rsa_key_in_the_issuers_key_set_is_not_trusted() {
    let issuer = TestIssuer::start_with(IssuerOptions {
        publish_weak_rsa_key: true,
        ..IssuerOptions::default()
    })
    .await;
    let broker = broker_trusting(issuer.issuer()).await;
    let claims = orders_claims_from(&issuer.issuer(), "bot");
    assert_refused(
        &broker,
        &issuer.sign_with_weak_rsa_key(&claims),
        "identity_key_unknown",
    )
    .await;
    broker
        .issue(&issuer.sign(Alg::Rs256, &claims), &orders_request())
        .await;
    broker.stop().await;
    issuer.shutdown().await;
}

/// An issuer that is unreachable when the broker starts is retried with a short backoff, not
/// after `jwks_min_refetch_interval` (10 s here): its tokens are accepted within about two
/// seconds of its return.
#[tokio::test]
async fn an_issuer_down_at_start_is_trusted_soon_after_it_comes_back() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let broker = broker_trusting(format!("http://127.0.0.1:{port}")).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let early = TestIssuer::start().await; // only to sign a token with the right claims shape
    let token = early.sign(
        Alg::Rs256,
        &orders_claims_from(&format!("http://127.0.0.1:{port}"), "bot"),
    );
    early.shutdown().await;
    assert_eq!(
        problem_type(&broker, &token).await,
        (503, "identity_issuer_unavailable".into())
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let issuer = TestIssuer::start_with(IssuerOptions {
        port,
        ..IssuerOptions::default()
    })
    .await;
    let back = std::time::Instant::now();
    let accepted = loop {
        let response = broker.request(&token, &orders_request()).await;
        if response.status() == 201 {
            break back.elapsed();
        }
        assert!(
            back.elapsed() < Duration::from_secs(6),
            "still refused {:?} after the issuer came back",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(accepted < Duration::from_millis(2500), "{accepted:?}");
    broker.stop().await;
    issuer.shutdown().await;
}

/// Identities that would look like another one in logs, audit records and admin commands are
/// refused: a second service account whose name carries a bidi override, a zero-width character
/// or another encoding of the same text cannot pass for a suspended one.
#[tokio::test]
async fn look_alike_agent_identities_are_refused() {
    let broker = TestBroker::start().await;
    let admin = broker.admin_token("alice", &["admin"]).await;
    let suspended = broker
        .admin_post(
            "/v1/revocations",
            &admin,
            &json!({"agent": "k8s:orders/report-bot", "reason": "prompt injection suspected"}),
        )
        .await;
    assert_eq!(suspended.status(), 201);
    let issuer = broker.kubernetes.issuer();
    for name in [
        "report-bot\u{200B}",         // zero-width space
        "report\u{2060}-bot",         // word joiner
        "report-bot\u{FE0F}",         // variation selector
        "\u{202E}tob-troper",         // right-to-left override: shows as report-bot
        "\u{2067}tob-troper\u{2069}", // right-to-left isolate
        "report-bot\u{00A0}",         // no-break space
        "report-bot ",                // trailing space
    ] {
        let token = broker
            .kubernetes
            .sign(Alg::Rs256, &orders_claims_from(&issuer, name));
        assert_refused(&broker, &token, "identity_claim_invalid").await;
    }
    // Two encodings of one visible name: only the NFC one is an agent identity.
    let composed = broker
        .kubernetes
        .sign(Alg::Rs256, &orders_claims_from(&issuer, "zoë-bot"));
    let writ = broker.issue(&composed, &orders_request()).await;
    assert_eq!(writ["agent"], "k8s:orders/zoë-bot");
    let decomposed = broker
        .kubernetes
        .sign(Alg::Rs256, &orders_claims_from(&issuer, "zoe\u{0308}-bot"));
    assert_refused(&broker, &decomposed, "identity_claim_invalid").await;
    // The subject is recorded beside the agent: the same rules apply to it.
    let mut claims = orders_claims_from(&issuer, "bot");
    claims["sub"] = json!("system:serviceaccount:orders:bot\u{202E}");
    let response = broker
        .request(
            &broker.kubernetes.sign(Alg::Rs256, &claims),
            &orders_request(),
        )
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "urn:writ:problem:identity_claim_invalid");
    assert!(body["detail"].as_str().unwrap().contains("sub ("), "{body}");
    broker.stop().await;
}
