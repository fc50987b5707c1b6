//! The browser harness end to end: a person signs in to the test OpenID Provider in headless
//! Chromium with the authorization code flow and PKCE, the browser comes back to the client's
//! redirect URI with a code, and the code buys an ID token carrying the person's groups.

use std::time::Instant;

use axum::extract::RawQuery;
use axum::response::Html;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{Browser, OidcProvider, login};
use crate::helpers::client;

const CLIENT_ID: &str = "writ-approver";

/// A client's redirect URI on a free loopback port: it records each query string it receives.
struct RedirectTarget {
    uri: String,
    queries: mpsc::UnboundedReceiver<String>,
    server: tokio::task::JoinHandle<()>,
}

impl RedirectTarget {
    async fn start() -> RedirectTarget {
        let (sender, queries) = mpsc::unbounded_channel();
        let app = axum::Router::new().route(
            "/oidc/callback",
            axum::routing::get(move |RawQuery(query): RawQuery| {
                let _ = sender.send(query.unwrap_or_default());
                async {
                    Html("<!DOCTYPE html><title>client</title><h1 id=back>back at the client</h1>")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/oidc/callback", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        RedirectTarget {
            uri,
            queries,
            server,
        }
    }
}

impl Drop for RedirectTarget {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn random_text() -> String {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).unwrap();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// One authorization request of the client: its URL and the secrets it keeps for the answer.
struct AuthorizationRequest {
    url: String,
    state: String,
    nonce: String,
    code_verifier: String,
}

impl AuthorizationRequest {
    fn new(discovery: &Value, redirect_uri: &str, extra: &[(&str, &str)]) -> AuthorizationRequest {
        let state = random_text();
        let nonce = random_text();
        let code_verifier = random_text();
        let code_challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(code_verifier.as_bytes()));
        let mut url =
            reqwest::Url::parse(discovery["authorization_endpoint"].as_str().unwrap()).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", CLIENT_ID)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "openid email groups")
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &code_challenge)
            .append_pair("code_challenge_method", "S256")
            .extend_pairs(extra);
        AuthorizationRequest {
            url: url.into(),
            state,
            nonce,
            code_verifier,
        }
    }
}

/// The query parameter `name` of `query`.
fn parameter(query: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(&format!("http://query.invalid/?{query}"))
        .unwrap()
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Asks the token endpoint for tokens for `code`, proving PKCE with `code_verifier`: as a
/// public client, or with `secret` in HTTP Basic.
async fn token_request(
    discovery: &Value,
    redirect_uri: &str,
    code: &str,
    code_verifier: &str,
    secret: Option<&str>,
) -> reqwest::Response {
    let mut request = client()
        .post(discovery["token_endpoint"].as_str().unwrap())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", CLIENT_ID),
            ("code_verifier", code_verifier),
        ]);
    if let Some(secret) = secret {
        request = request.basic_auth(CLIENT_ID, Some(secret));
    }
    request.send().await.unwrap()
}

/// Exchanges `code` at the token endpoint and answers the ID token's header and payload.
async fn id_token_for(
    discovery: &Value,
    redirect_uri: &str,
    code: &str,
    code_verifier: &str,
    secret: Option<&str>,
) -> (Value, Value) {
    let response = token_request(discovery, redirect_uri, code, code_verifier, secret).await;
    let status = response.status();
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{tokens:#}");
    let id_token = tokens["id_token"].as_str().unwrap();
    let parts: Vec<&str> = id_token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS in compact form: {id_token}");
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    (decode(parts[0]), decode(parts[1]))
}

/// Signs in through `request` as `login` and answers the ID token's header and payload, after
/// checking what the browser and the redirect URI saw. A client with a `secret` must present it
/// to get tokens.
async fn sign_in(
    browser: &Browser,
    provider: &OidcProvider,
    target: &mut RedirectTarget,
    request: &AuthorizationRequest,
    login_name: &str,
    secret: Option<&str>,
    screenshot: Option<&str>,
) -> (Value, Value) {
    let discovery = provider.discovery().await;
    browser.goto(&request.url).await;
    browser.wait_for("input[name=login]").await;
    if let Some(name) = screenshot {
        browser.screenshot(name).await;
    }
    let signed_in = login(browser, provider, login_name).await;
    assert_eq!(signed_in.consent_screens, 0, "the provider asks no consent");
    let landed = signed_in.url;

    // The browser is back at the redirect URI, with a code and the same state...
    assert!(
        landed.starts_with(&format!("{}?", target.uri)),
        "{landed} is not the redirect URI {}",
        target.uri
    );
    let query = landed.split_once('?').unwrap().1;
    let code = parameter(query, "code").expect("a code");
    assert_eq!(parameter(query, "state").as_deref(), Some(&*request.state));
    assert_eq!(
        parameter(query, "iss").as_deref(),
        Some(provider.issuer()),
        "RFC 9207's iss"
    );
    assert_eq!(browser.text("#back").await, "back at the client");
    // ... which the client's server received, exactly once.
    assert_eq!(target.queries.recv().await.unwrap(), query);
    assert!(target.queries.is_empty());

    if secret.is_some() {
        let without_secret =
            token_request(&discovery, &target.uri, &code, &request.code_verifier, None).await;
        assert_eq!(without_secret.status(), 401);
    }
    let (header, payload) = id_token_for(
        &discovery,
        &target.uri,
        &code,
        &request.code_verifier,
        secret,
    )
    .await;

    // The code is single use.
    let replay = token_request(
        &discovery,
        &target.uri,
        &code,
        &request.code_verifier,
        secret,
    )
    .await;
    assert_eq!(replay.status(), 400);

    assert_eq!(header["alg"], "RS256");
    let jwks: Value = client()
        .get(discovery["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|key| key["kid"] == header["kid"] && key["kty"] == "RSA"),
        "the ID token's key {} is in the provider's JWKS {jwks:#}",
        header["kid"]
    );
    assert_eq!(payload["iss"], provider.issuer());
    assert_eq!(payload["aud"], provider.client_id());
    assert_eq!(payload["nonce"], *request.nonce);
    (header, payload)
}

#[tokio::test]
async fn a_person_signs_in_with_pkce_and_the_id_token_carries_their_groups() {
    let started = Instant::now();
    let mut target = RedirectTarget::start().await;
    let provider = OidcProvider::start(
        CLIENT_ID,
        &target.uri,
        &[("alice", &["approvers"]), ("mallory", &[])],
    );
    assert!(provider.issuer().starts_with("http://127.0.0.1:"));
    assert!(!provider.issuer().ends_with('/'));
    let discovery = provider.discovery().await;
    assert_eq!(discovery["issuer"], provider.issuer());
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let browser = Browser::start().await;

    // A request without PKCE is refused: the browser goes back with an error, and no code.
    let mut without_pkce =
        reqwest::Url::parse(&AuthorizationRequest::new(&discovery, &target.uri, &[]).url).unwrap();
    let kept: Vec<(String, String)> = without_pkce
        .query_pairs()
        .filter(|(key, _)| !key.starts_with("code_challenge"))
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    without_pkce.query_pairs_mut().clear().extend_pairs(kept);
    browser.goto(without_pkce.as_str()).await;
    let refused = browser
        .wait_for_url("the redirect URI", |url| url.starts_with(&target.uri))
        .await;
    let refused_query = refused.split_once('?').unwrap().1;
    assert_eq!(
        parameter(refused_query, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(parameter(refused_query, "code"), None);
    assert_eq!(target.queries.recv().await.unwrap(), refused_query);

    // Alice, an approver.
    let request = AuthorizationRequest::new(&discovery, &target.uri, &[]);
    let (_, alice) = sign_in(
        &browser,
        &provider,
        &mut target,
        &request,
        "alice",
        None,
        Some("oidc-provider-login"),
    )
    .await;
    assert_eq!(alice["sub"], "alice");
    assert_eq!(alice["email"], "alice@example.test");
    assert_eq!(alice["groups"], serde_json::json!(["approvers"]));

    // Mallory, in no group, signs in the same browser (prompt=login: alice's session is not
    // reused).
    let request = AuthorizationRequest::new(&discovery, &target.uri, &[("prompt", "login")]);
    let (_, mallory) = sign_in(
        &browser,
        &provider,
        &mut target,
        &request,
        "mallory",
        None,
        None,
    )
    .await;
    assert_eq!(mallory["sub"], "mallory");
    assert_eq!(mallory["groups"], serde_json::json!([]));

    browser.stop().await;
    provider.stop();
    eprintln!("signed in twice in {:?}", started.elapsed());
}

#[tokio::test]
async fn a_confidential_client_gets_tokens_only_with_its_secret() {
    let mut target = RedirectTarget::start().await;
    let provider = OidcProvider::start_with(
        CLIENT_ID,
        Some("approver-secret"),
        &target.uri,
        &[("bob", &["approvers", "auditors"])],
    );
    let discovery = provider.discovery().await;
    let browser = Browser::start().await;
    let request = AuthorizationRequest::new(&discovery, &target.uri, &[]);
    let (_, bob) = sign_in(
        &browser,
        &provider,
        &mut target,
        &request,
        "bob",
        Some("approver-secret"),
        None,
    )
    .await;
    assert_eq!(bob["sub"], "bob");
    assert_eq!(bob["groups"], serde_json::json!(["approvers", "auditors"]));
    browser.stop().await;
    provider.stop();
}
