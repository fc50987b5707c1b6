//! Test-only parts for writ: a real OIDC workload identity issuer on loopback, hostile tokens,
//! and a real moto server ([`Moto`]) standing in for AWS STS and IAM.
//!
//! [`TestIssuer`] serves a discovery document and a JWKS over HTTP on `127.0.0.1`, like the
//! Kubernetes API server and GitHub Actions do, and signs tokens shaped like theirs with fixed
//! test keys (RS256 and ES256). The broker's tests point their issuer configuration at it, so the
//! whole path (discovery, key fetch, caching, signature, claims) runs for real.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use writ_testkit::{Alg, TestIssuer};
//!
//! let issuer = TestIssuer::start().await;
//! let token = issuer.kubernetes_token(Alg::Rs256, "ci", "agent", "writ", Duration::from_secs(600));
//! // configure the broker with issuer.issuer() and present `token` as a bearer token
//! # }
//! ```

// This crate exists only for tests and benchmarks: a broken fixture (unreadable key file, port in
// use) should fail the test at once with a message, which is what unwrap/expect/panic do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod claims;
mod keys;
mod moto;
mod openbao;

pub use openbao::OpenBao;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use claims::{claims_base, now_unix};
use keys::{KEYS, Key, b64, signing_input};
pub use moto::{Moto, RecordedRequest};

/// Signature algorithms the issuer signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA-2048 (the Kubernetes and GitHub default).
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
}

impl Alg {
    /// The JOSE name: `RS256` or `ES256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
        }
    }
}

/// How a [`TestIssuer`] behaves. `IssuerOptions::default()` is what [`TestIssuer::start`] uses.
#[derive(Clone, Debug)]
pub struct IssuerOptions {
    /// Port on 127.0.0.1; 0 (default) picks a free one.
    pub port: u16,
    /// Serve `/.well-known/openid-configuration` (default true). False: only `/jwks` is served,
    /// like a SPIFFE bundle endpoint or an issuer configured by JWKS URL alone.
    pub discovery: bool,
    /// The discovery document names this issuer instead of the real one (a mix-up attack: the
    /// broker must refuse a document whose `issuer` differs from the configured one).
    pub discovery_issuer_override: Option<String>,
    /// The JWKS `use` of every key; `None` means `sig`. SPIFFE bundles use `jwt-svid`.
    pub jwks_use: Option<String>,
    /// After [`TestIssuer::rotate_rsa_key`], keep publishing the previous RSA key next to the new
    /// one (default true, as real issuers do during a rollover). False drops it, so tokens signed
    /// before the rotation stop verifying.
    pub keep_old_key_on_rotation: bool,
    /// Also publish a 1024-bit RSA key (default false), which signs
    /// [`TestIssuer::sign_with_weak_rsa_key`] tokens. A verifier must not trust a key that short.
    pub publish_weak_rsa_key: bool,
    /// Answer `GET /jwks` with a body of this many bytes, sent chunked (no Content-Length): a JSON
    /// key set that opens and never closes. [`TestIssuer::huge_bytes_served`] counts what was sent.
    pub huge_jwks: Option<usize>,
    /// The same for the discovery document.
    pub huge_discovery: Option<usize>,
}

impl Default for IssuerOptions {
    fn default() -> Self {
        IssuerOptions {
            port: 0,
            discovery: true,
            discovery_issuer_override: None,
            jwks_use: None,
            keep_old_key_on_rotation: true,
            publish_weak_rsa_key: false,
            huge_jwks: None,
            huge_discovery: None,
        }
    }
}

/// A loopback OIDC issuer. Stops serving when dropped (or use [`TestIssuer::shutdown`] to wait
/// until the port is closed).
pub struct TestIssuer {
    state: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// What the HTTP handlers and the signing methods share.
struct Shared {
    issuer: String,
    options: IssuerOptions,
    rsa: Mutex<RsaSlots>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    huge_bytes_served: Arc<AtomicUsize>,
}

/// Which of `KEYS.rsa` signs now, and which older one is still published.
#[derive(Clone, Copy)]
struct RsaSlots {
    current: usize,
    previous: Option<usize>,
}

impl TestIssuer {
    /// Starts an issuer with the default options: discovery and JWKS, Kubernetes-like discovery
    /// document (no `authorization_endpoint`).
    pub async fn start() -> TestIssuer {
        Self::start_with(IssuerOptions::default()).await
    }

    /// Starts an issuer on 127.0.0.1, serving on the caller's tokio runtime.
    pub async fn start_with(options: IssuerOptions) -> TestIssuer {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, options.port))
            .await
            .expect("bind the test issuer on 127.0.0.1");
        let port = listener.local_addr().expect("listener address").port();
        let state = Arc::new(Shared {
            issuer: format!("http://127.0.0.1:{port}"),
            rsa: Mutex::new(RsaSlots {
                current: 0,
                previous: None,
            }),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            huge_bytes_served: Arc::new(AtomicUsize::new(0)),
            options,
        });

        let mut app = Router::new().route("/jwks", get(jwks));
        if state.options.discovery {
            app = app.route("/.well-known/openid-configuration", get(discovery));
        }
        let app = app.with_state(state.clone());

        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // Resolves on send and on drop of the sender alike.
            let signal = async move {
                let _ = stopped.await;
            };
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await;
        });
        TestIssuer {
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT`, exactly the `iss` of the tokens this issuer signs.
    pub fn issuer(&self) -> String {
        self.state.issuer.clone()
    }

    /// Where the JWKS is served (`<issuer>/jwks`).
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.state.issuer)
    }

    /// How many times the JWKS was served.
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How many times the discovery document was served.
    pub fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }

    /// How many bytes of the huge documents ([`IssuerOptions::huge_jwks`],
    /// [`IssuerOptions::huge_discovery`]) were handed to the connection, over all requests. The
    /// server produces a chunk only when the connection takes it, so this is what a client read
    /// plus what socket buffers hold.
    pub fn huge_bytes_served(&self) -> usize {
        self.state.huge_bytes_served.load(Ordering::SeqCst)
    }

    /// RS256, signed by the 1024-bit RSA key under its own `kid`; the key is in the JWKS only with
    /// [`IssuerOptions::publish_weak_rsa_key`].
    pub fn sign_with_weak_rsa_key(&self, claims: &Value) -> String {
        KEYS.weak.sign_jwt(claims)
    }

    /// The `kid` the current key for `alg` is published and signs under.
    pub fn kid(&self, alg: Alg) -> String {
        self.current_key(alg).kid().to_owned()
    }

    /// Signs `claims` exactly as given (nothing is added) with the current key for `alg`.
    pub fn sign(&self, alg: Alg, claims: &Value) -> String {
        self.current_key(alg).sign_jwt(claims)
    }

    /// A Kubernetes projected service account token for `system:serviceaccount:<ns>:<sa>`.
    pub fn kubernetes_token(
        &self,
        alg: Alg,
        namespace: &str,
        service_account: &str,
        audience: &str,
        ttl: Duration,
    ) -> String {
        let claims = claims::kubernetes(
            &self.state.issuer,
            namespace,
            service_account,
            audience,
            ttl,
        );
        self.sign(alg, &claims)
    }

    /// A GitHub Actions OIDC token for `repo:<repository>:ref:<git_ref>`.
    pub fn github_token(
        &self,
        alg: Alg,
        repository: &str,
        workflow: &str,
        git_ref: &str,
        audience: &str,
        ttl: Duration,
    ) -> String {
        let claims = claims::github(
            &self.state.issuer,
            repository,
            workflow,
            git_ref,
            audience,
            ttl,
        );
        self.sign(alg, &claims)
    }

    /// Switches RS256 signing to the other RSA key, under its own `kid`. The previous key stays in
    /// the JWKS unless [`IssuerOptions::keep_old_key_on_rotation`] is false. There are two RSA keys,
    /// so rotating twice returns to the first.
    pub fn rotate_rsa_key(&self) {
        let mut slots = self.state.rsa.lock().unwrap();
        let old = slots.current;
        slots.current = (old + 1) % KEYS.rsa.len();
        slots.previous = self.state.options.keep_old_key_on_rotation.then_some(old);
    }

    /// SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`, LF line endings) of the current key.
    pub fn public_key_pem(&self, alg: Alg) -> String {
        self.current_key(alg).public_key_pem()
    }

    /// `alg: none` with an empty signature (`header.payload.`). The header carries the current RSA
    /// `kid`, so a verifier that finds the key by `kid` and then trusts the header is caught.
    pub fn forge_alg_none(&self, claims: &Value) -> String {
        let header = json!({ "alg": "none", "kid": self.kid(Alg::Rs256), "typ": "JWT" });
        format!("{}.", signing_input(&header, claims))
    }

    /// HS256 with the HMAC key set to the bytes of [`Self::public_key_pem`] for RS256, and the
    /// RSA `kid`: the classic key-confusion attack on verifiers that let the token pick the
    /// algorithm for a key.
    pub fn forge_hs256_with_public_key(&self, claims: &Value) -> String {
        let header = json!({ "alg": "HS256", "kid": self.kid(Alg::Rs256), "typ": "JWT" });
        let input = signing_input(&header, claims);
        let pem = self.public_key_pem(Alg::Rs256);
        let mut mac = Hmac::<Sha256>::new_from_slice(pem.as_bytes()).expect("HMAC takes any key");
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(mac.finalize().into_bytes()))
    }

    /// RS256, validly signed by a test key that this issuer never publishes, under that key's own
    /// `kid`. A verifier must refuse it, and should not refetch the JWKS without a rate limit.
    pub fn forge_unknown_kid(&self, claims: &Value) -> String {
        KEYS.rogue.sign_jwt(claims)
    }

    /// Changes a payload claim and keeps header and signature, so the signature no longer matches:
    /// `sub` gets `:tampered` appended, or, without a string `sub`, `"tampered": true` is added.
    pub fn tamper(token: &str) -> String {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "a compact JWS has three parts");
        let mut claims = decode_segment(parts[1]);
        match claims.get("sub").and_then(Value::as_str) {
            Some(sub) => claims["sub"] = json!(format!("{sub}:tampered")),
            None => claims["tampered"] = json!(true),
        }
        format!("{}.{}.{}", parts[0], b64(claims.to_string()), parts[2])
    }

    /// Stops serving and waits until the listening port is closed (in-flight requests finish).
    /// Dropping the issuer stops it too, without waiting.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            // Graceful shutdown waits for open connections; do not let a client stall the test.
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    fn current_key(&self, alg: Alg) -> &'static Key {
        match alg {
            Alg::Rs256 => &KEYS.rsa[self.state.rsa.lock().unwrap().current],
            Alg::Es256 => &KEYS.ec,
        }
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        // Ask for a graceful stop (idle keep-alive connections are closed), and abort the accept
        // loop so the listening socket closes as soon as the runtime gets to the task.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The JOSE header of a compact JWS, decoded.
pub fn decode_header(token: &str) -> Value {
    decode_segment(token.split('.').next().unwrap_or_default())
}

/// The claims of a compact JWS, decoded (the signature is not checked).
pub fn decode_claims(token: &str) -> Value {
    decode_segment(
        token
            .split('.')
            .nth(1)
            .expect("a compact JWS has a payload"),
    )
}

fn decode_segment(segment: &str) -> Value {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .expect("JWS segment is base64url");
    serde_json::from_slice(&bytes).expect("JWS segment is JSON")
}

/// `GET /.well-known/openid-configuration`. Shaped like the Kubernetes API server's document:
/// no `authorization_endpoint` (GitHub's omits it as well), which strict OIDC clients reject.
async fn discovery(State(state): State<Arc<Shared>>) -> Response {
    state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    if let Some(size) = state.options.huge_discovery {
        return huge_document(&state, r#"{"issuer":"#, size);
    }
    let issuer = state
        .options
        .discovery_issuer_override
        .clone()
        .unwrap_or_else(|| state.issuer.clone());
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/jwks", state.issuer),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
    .into_response()
}

/// `GET /jwks`: the current RSA key, the previous one if kept after a rotation, and the P-256 key.
async fn jwks(State(state): State<Arc<Shared>>) -> Response {
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if let Some(size) = state.options.huge_jwks {
        return huge_document(&state, r#"{"keys":["#, size);
    }
    let key_use = state.options.jwks_use.as_deref().unwrap_or("sig");
    let slots = *state.rsa.lock().unwrap();
    let mut keys = vec![KEYS.rsa[slots.current].jwk(key_use)];
    if let Some(previous) = slots.previous {
        keys.push(KEYS.rsa[previous].jwk(key_use));
    }
    keys.push(KEYS.ec.jwk(key_use));
    if state.options.publish_weak_rsa_key {
        keys.push(KEYS.weak.jwk(key_use));
    }
    Json(json!({ "keys": keys })).into_response()
}

/// A JSON body of `size` bytes that starts with `opening` and goes on with spaces, streamed in
/// 64 KiB chunks without a Content-Length, each chunk made only when the connection asks for it.
fn huge_document(state: &Shared, opening: &'static str, size: usize) -> Response {
    const CHUNK: usize = 64 * 1024;
    let served = Arc::clone(&state.huge_bytes_served);
    let chunks = futures_util::stream::unfold(0usize, move |sent| {
        let served = Arc::clone(&served);
        async move {
            if sent >= size {
                return None;
            }
            let len = CHUNK.min(size - sent);
            let mut chunk = vec![b' '; len];
            if sent == 0 {
                let head = opening.len().min(len);
                chunk[..head].copy_from_slice(&opening.as_bytes()[..head]);
            }
            served.fetch_add(len, Ordering::SeqCst);
            Some((Ok::<_, std::io::Error>(chunk), sent + len))
        }
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(chunks),
    )
        .into_response()
}
