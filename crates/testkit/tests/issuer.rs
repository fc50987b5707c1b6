//! The test issuer over real HTTP on loopback: documents, signatures checked against the published
//! keys, forged tokens, rotation, counters, shutdown, and the `writ-test-issuer` binary.

// Tests fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rsa::pkcs1v15::{Signature as RsaSignature, VerifyingKey as RsaVerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};
use serde_json::{Value, json};
use sha2::Sha256;
use writ_testkit::{
    Alg, IssuerOptions, TestIssuer, claims_base, decode_claims, decode_header, now_unix,
};

const HOUR: Duration = Duration::from_secs(3600);

fn client() -> reqwest::Client {
    // A proxy from the environment must not intercept loopback requests.
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn get_json(url: &str) -> Value {
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.unwrap()
}

fn b64d(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

/// Verifies `token` the way a strict verifier would: key chosen by `kid` from `jwks`, algorithm
/// taken from the key, not from the token.
fn verifies(token: &str, jwks: &Value) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let input = format!("{}.{}", parts[0], parts[1]);
    let signature = b64d(parts[2]);
    let header = decode_header(token);
    let Some(jwk) = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
    else {
        return false;
    };
    if jwk["alg"] != header["alg"] {
        return false;
    }
    match jwk["kty"].as_str().unwrap() {
        "RSA" => {
            let n = BigUint::from_bytes_be(&b64d(jwk["n"].as_str().unwrap()));
            let e = BigUint::from_bytes_be(&b64d(jwk["e"].as_str().unwrap()));
            let key = RsaVerifyingKey::<Sha256>::new(RsaPublicKey::new(n, e).unwrap());
            let Ok(signature) = RsaSignature::try_from(signature.as_slice()) else {
                return false;
            };
            key.verify(input.as_bytes(), &signature).is_ok()
        }
        "EC" => {
            assert_eq!(jwk["crv"], "P-256");
            let mut sec1 = vec![0x04];
            sec1.extend(b64d(jwk["x"].as_str().unwrap()));
            sec1.extend(b64d(jwk["y"].as_str().unwrap()));
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
            let Ok(signature) = p256::ecdsa::Signature::from_slice(&signature) else {
                return false;
            };
            key.verify(input.as_bytes(), &signature).is_ok()
        }
        other => panic!("unexpected kty {other}"),
    }
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn serves_kubernetes_like_discovery_and_jwks() {
    let issuer = TestIssuer::start().await;
    assert!(issuer.issuer().starts_with("http://127.0.0.1:"));
    assert_eq!(issuer.jwks_url(), format!("{}/jwks", issuer.issuer()));

    let doc = get_json(&format!(
        "{}/.well-known/openid-configuration",
        issuer.issuer()
    ))
    .await;
    assert_eq!(doc["issuer"], issuer.issuer());
    assert_eq!(doc["jwks_uri"], issuer.jwks_url());
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["RS256", "ES256"])
    );
    assert_eq!(doc["response_types_supported"], json!(["id_token"]));
    assert_eq!(doc["subject_types_supported"], json!(["public"]));
    assert!(doc.get("authorization_endpoint").is_none());

    let jwks = get_json(&issuer.jwks_url()).await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let rsa = keys.iter().find(|k| k["kty"] == "RSA").unwrap();
    assert_eq!(rsa["kid"], issuer.kid(Alg::Rs256));
    assert_eq!(rsa["use"], "sig");
    assert_eq!(rsa["alg"], "RS256");
    assert_eq!(rsa["e"], "AQAB");
    assert_eq!(b64d(rsa["n"].as_str().unwrap()).len(), 256, "RSA-2048");
    let ec = keys.iter().find(|k| k["kty"] == "EC").unwrap();
    assert_eq!(ec["kid"], issuer.kid(Alg::Es256));
    assert_eq!(ec["use"], "sig");
    assert_eq!(ec["alg"], "ES256");
    assert_eq!(ec["crv"], "P-256");
    assert_eq!(b64d(ec["x"].as_str().unwrap()).len(), 32);
    assert_eq!(b64d(ec["y"].as_str().unwrap()).len(), 32);

    assert_eq!(issuer.discovery_fetches(), 1);
    assert_eq!(issuer.jwks_fetches(), 1);
    get_json(&issuer.jwks_url()).await;
    get_json(&issuer.jwks_url()).await;
    assert_eq!(issuer.jwks_fetches(), 3);
    assert_eq!(issuer.discovery_fetches(), 1);
}

#[tokio::test]
async fn options_change_the_documents() {
    let issuer = TestIssuer::start_with(IssuerOptions {
        discovery: false,
        jwks_use: Some("jwt-svid".into()),
        ..IssuerOptions::default()
    })
    .await;
    let response = client()
        .get(format!(
            "{}/.well-known/openid-configuration",
            issuer.issuer()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(issuer.discovery_fetches(), 0);
    let jwks = get_json(&issuer.jwks_url()).await;
    for key in jwks["keys"].as_array().unwrap() {
        assert_eq!(key["use"], "jwt-svid");
    }

    let mixed_up = TestIssuer::start_with(IssuerOptions {
        discovery_issuer_override: Some("https://elsewhere.example".into()),
        ..IssuerOptions::default()
    })
    .await;
    let doc = get_json(&format!(
        "{}/.well-known/openid-configuration",
        mixed_up.issuer()
    ))
    .await;
    assert_eq!(doc["issuer"], "https://elsewhere.example");
    assert_eq!(doc["jwks_uri"], mixed_up.jwks_url());
    // The tokens still carry the real issuer.
    let token = mixed_up.kubernetes_token(Alg::Rs256, "ns", "sa", "writ", HOUR);
    assert_eq!(decode_claims(&token)["iss"], mixed_up.issuer());
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_with_the_published_keys() {
    let issuer = TestIssuer::start().await;
    let jwks = get_json(&issuer.jwks_url()).await;
    for alg in [Alg::Rs256, Alg::Es256] {
        let claims = claims_base(&issuer.issuer(), "spiffe://example.org/agent", "writ", HOUR);
        let token = issuer.sign(alg, &claims);
        let header = decode_header(&token);
        assert_eq!(header["alg"], alg.as_str());
        assert_eq!(header["kid"], issuer.kid(alg));
        assert_eq!(decode_claims(&token), claims, "signed exactly as given");
        assert!(verifies(&token, &jwks), "{alg:?}");
        // Deterministic: same claims, same token (RFC 6979 for ECDSA).
        assert_eq!(issuer.sign(alg, &claims), token);

        let k8s = issuer.kubernetes_token(alg, "ci", "agent", "writ", HOUR);
        assert!(verifies(&k8s, &jwks), "{alg:?}");
        let gh = issuer.github_token(alg, "acme/app", "CI", "refs/heads/main", "writ", HOUR);
        assert!(verifies(&gh, &jwks), "{alg:?}");
    }
}

#[tokio::test]
async fn public_key_pem_matches_the_jwks() {
    let issuer = TestIssuer::start().await;
    let jwks = get_json(&issuer.jwks_url()).await;
    let pem = issuer.public_key_pem(Alg::Rs256);
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let key = RsaPublicKey::from_public_key_pem(&pem).unwrap();
    let rsa = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "RSA")
        .unwrap();
    assert_eq!(key.n().to_bytes_be(), b64d(rsa["n"].as_str().unwrap()));

    let pem = issuer.public_key_pem(Alg::Es256);
    let key = p256::ecdsa::VerifyingKey::from_public_key_pem(&pem).unwrap();
    let point = key.to_encoded_point(false);
    let ec = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "EC")
        .unwrap();
    assert_eq!(point.x().unwrap().to_vec(), b64d(ec["x"].as_str().unwrap()));
}

#[tokio::test]
async fn kubernetes_and_github_claims_have_their_shapes() {
    let issuer = TestIssuer::start().await;
    let before = now_unix();
    let token = issuer.kubernetes_token(Alg::Rs256, "ci", "agent", "writ", HOUR);
    let c = decode_claims(&token);
    assert_eq!(c["iss"], issuer.issuer());
    assert_eq!(c["sub"], "system:serviceaccount:ci:agent");
    assert_eq!(c["aud"], json!(["writ"]));
    let iat = c["iat"].as_u64().unwrap();
    assert!(iat >= before && iat <= now_unix());
    assert_eq!(c["nbf"], c["iat"]);
    assert_eq!(c["exp"].as_u64().unwrap(), iat + 3600);
    let k = &c["kubernetes.io"];
    assert_eq!(k["namespace"], "ci");
    assert_eq!(k["serviceaccount"]["name"], "agent");
    assert_eq!(k["serviceaccount"]["uid"].as_str().unwrap().len(), 36);
    assert!(k["pod"]["name"].is_string());
    assert_eq!(k["pod"]["uid"].as_str().unwrap().len(), 36);

    let token = issuer.github_token(
        Alg::Es256,
        "acme/app",
        "CI",
        "refs/heads/main",
        "writ",
        HOUR,
    );
    let c = decode_claims(&token);
    assert_eq!(c["iss"], issuer.issuer());
    assert_eq!(c["sub"], "repo:acme/app:ref:refs/heads/main");
    assert_eq!(c["aud"], "writ");
    assert_eq!(c["repository"], "acme/app");
    assert_eq!(c["repository_owner"], "acme");
    assert_eq!(c["workflow"], "CI");
    assert_eq!(c["ref"], "refs/heads/main");
    assert_eq!(c["sha"].as_str().unwrap().len(), 40);
    assert_eq!(
        c["job_workflow_ref"],
        "acme/app/.github/workflows/ci.yml@refs/heads/main"
    );
    assert_eq!(c["event_name"], "push");
    assert!(c["run_id"].is_string());
    for claim in ["iat", "nbf", "exp"] {
        assert!(c[claim].is_u64(), "{claim}");
    }
    let again = issuer.github_token(
        Alg::Es256,
        "acme/app",
        "CI",
        "refs/heads/main",
        "writ",
        HOUR,
    );
    assert_ne!(decode_claims(&again)["jti"], c["jti"], "jti is unique");
}

#[tokio::test]
async fn forged_tokens_have_the_shape_they_claim() {
    let issuer = TestIssuer::start().await;
    let jwks = get_json(&issuer.jwks_url()).await;
    let claims = claims_base(&issuer.issuer(), "attacker", "writ", HOUR);

    let none = issuer.forge_alg_none(&claims);
    assert!(none.ends_with('.'), "empty signature");
    assert_eq!(none.split('.').count(), 3);
    assert_eq!(decode_header(&none)["alg"], "none");
    assert_eq!(decode_claims(&none), claims);
    assert!(!verifies(&none, &jwks));

    let hs = issuer.forge_hs256_with_public_key(&claims);
    let header = decode_header(&hs);
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["kid"], issuer.kid(Alg::Rs256));
    // The MAC really is keyed with the PEM bytes, so a confused verifier would accept it.
    let (input, mac) = hs.rsplit_once('.').unwrap();
    let mut expected =
        Hmac::<Sha256>::new_from_slice(issuer.public_key_pem(Alg::Rs256).as_bytes()).unwrap();
    expected.update(input.as_bytes());
    expected.verify_slice(&b64d(mac)).unwrap();
    assert!(!verifies(&hs, &jwks));

    let unknown = issuer.forge_unknown_kid(&claims);
    let header = decode_header(&unknown);
    assert_eq!(header["alg"], "RS256");
    let kid = header["kid"].as_str().unwrap();
    assert!(
        !kids(&jwks).iter().any(|k| k == kid),
        "kid is not published"
    );
    assert_eq!(b64d(unknown.split('.').nth(2).unwrap()).len(), 256);
    assert!(!verifies(&unknown, &jwks));

    let valid = issuer.sign(Alg::Rs256, &claims);
    let tampered = TestIssuer::tamper(&valid);
    let (v, t): (Vec<&str>, Vec<&str>) =
        (valid.split('.').collect(), tampered.split('.').collect());
    assert_eq!(t[0], v[0], "header kept");
    assert_eq!(t[2], v[2], "signature kept");
    assert_ne!(t[1], v[1]);
    assert_eq!(decode_claims(&tampered)["sub"], "attacker:tampered");
    assert!(verifies(&valid, &jwks));
    assert!(!verifies(&tampered, &jwks));

    // Deterministic.
    assert_eq!(issuer.forge_alg_none(&claims), none);
    assert_eq!(issuer.forge_hs256_with_public_key(&claims), hs);
    assert_eq!(issuer.forge_unknown_kid(&claims), unknown);
    assert_eq!(TestIssuer::tamper(&valid), tampered);
}

#[tokio::test]
async fn rotation_publishes_a_new_kid() {
    for keep in [true, false] {
        let issuer = TestIssuer::start_with(IssuerOptions {
            keep_old_key_on_rotation: keep,
            ..IssuerOptions::default()
        })
        .await;
        let old_kid = issuer.kid(Alg::Rs256);
        let old_token = issuer.kubernetes_token(Alg::Rs256, "ns", "sa", "writ", HOUR);
        let old_pem = issuer.public_key_pem(Alg::Rs256);
        let before = get_json(&issuer.jwks_url()).await;

        issuer.rotate_rsa_key();
        let new_kid = issuer.kid(Alg::Rs256);
        assert_ne!(new_kid, old_kid);
        assert_ne!(issuer.public_key_pem(Alg::Rs256), old_pem);
        let new_token = issuer.kubernetes_token(Alg::Rs256, "ns", "sa", "writ", HOUR);
        assert_eq!(decode_header(&new_token)["kid"], new_kid);
        // A verifier holding the old key set cannot find the new kid: it must refetch.
        assert!(!verifies(&new_token, &before));

        let after = get_json(&issuer.jwks_url()).await;
        assert!(verifies(&new_token, &after));
        assert_eq!(verifies(&old_token, &after), keep, "keep = {keep}");
        assert_eq!(kids(&after).contains(&old_kid), keep);
        assert_eq!(issuer.jwks_fetches(), 2);

        // ES256 is not rotated.
        assert!(verifies(
            &issuer.kubernetes_token(Alg::Es256, "ns", "sa", "writ", HOUR),
            &after
        ));
    }
}

/// True once connecting to `addr` is refused, polling for up to 5 s.
async fn refused_soon(addr: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn stops_on_drop_and_on_shutdown() {
    let issuer = TestIssuer::start().await;
    // Keep a pooled keep-alive connection open: it must not hold the server up.
    let client = client();
    client.get(issuer.jwks_url()).send().await.unwrap();
    let addr = issuer.issuer().trim_start_matches("http://").to_owned();
    issuer.shutdown().await;
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
    assert!(
        client
            .get(format!("http://{addr}/jwks"))
            .send()
            .await
            .is_err()
    );

    let issuer = TestIssuer::start().await;
    get_json(&issuer.jwks_url()).await;
    let addr = issuer.issuer().trim_start_matches("http://").to_owned();
    drop(issuer);
    assert!(refused_soon(&addr).await, "port still open after drop");
}

#[tokio::test]
async fn binary_writes_token_and_key_then_serves_until_terminated() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = std::env::temp_dir().join(format!("writ-test-issuer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_path = dir.join("token");
    let pubkey_path = dir.join("pubkey.pem");
    let mut child = Command::new(env!("CARGO_BIN_EXE_writ-test-issuer"))
        .args(["--ttl", "2h", "--audience", "bench", "--token-out"])
        .arg(&token_path)
        .arg("--pubkey-out")
        .arg(&pubkey_path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let issuer = line
        .trim_end()
        .strip_prefix("issuer=")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(issuer.starts_with("http://127.0.0.1:"));

    let token = std::fs::read_to_string(&token_path).unwrap();
    let claims = decode_claims(&token);
    assert_eq!(claims["iss"], issuer);
    assert_eq!(claims["aud"], json!(["bench"]));
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        7200
    );
    assert_eq!(decode_header(&token)["alg"], "RS256");
    let doc = get_json(&format!("{issuer}/.well-known/openid-configuration")).await;
    let jwks = get_json(doc["jwks_uri"].as_str().unwrap()).await;
    assert!(verifies(&token, &jwks));
    let pem = std::fs::read_to_string(&pubkey_path).unwrap();
    assert!(RsaPublicKey::from_public_key_pem(&pem).is_ok());

    // SIGTERM ends it cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
