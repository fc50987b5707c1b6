//! Hardening through the broker's surfaces: canonical resources in requests (HTTP) and policies
//! (`writ policy check`), and `writ inspect` / `writ verify` / `writ attenuate` on crafted writs:
//! dates no `SystemTime` holds or no RFC 3339 formatter writes, and attenuated expiries.

use std::collections::HashMap;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use writ_verify::biscuit_auth::builder::Term;
use writ_verify::biscuit_auth::{Biscuit, KeyPair};
use writ_verify::{Attenuation, attenuate};

use crate::helpers::{TestBroker, writ_with_input};

/// 10000-01-01T00:00:00Z.
const YEAR_10000: u64 = 253_402_300_800;

fn run(args: &[&str], input: &str) -> Output {
    writ_with_input(std::path::Path::new("."), args, input)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A v1 writ granting `orders/*` read, with raw dates, signed by `root` under key id 1.
fn writ_with_dates(root: &KeyPair, issued: u64, expires: u64) -> String {
    let params = HashMap::from([
        ("iat".to_owned(), Term::Date(issued)),
        ("exp".to_owned(), Term::Date(expires)),
    ]);
    Biscuit::builder()
        .code_with_params(
            r#"writ(1); writ_id("wr_dates"); agent("a"); task("t");
               issued_at({iat}); expires_at({exp}); service("orders-api");
               right($r, "read") <- resource($r), $r.starts_with("orders/");
               check if time($t), $t <= {exp};
               check if audience($a), service($a);"#,
            params,
            HashMap::new(),
        )
        .unwrap()
        .root_key_id(1)
        .build(root)
        .unwrap()
        .to_base64()
        .unwrap()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn verify(root: &KeyPair, writ: &str, resource: &str) -> Output {
    let key = format!("1={}", root.public());
    run(
        &[
            "verify",
            "--public-key",
            &key,
            "--no-revocation",
            "--audience",
            "orders-api",
            "--resource",
            resource,
            "--operation",
            "read",
            "-",
        ],
        writ,
    )
}

#[tokio::test]
async fn requests_for_non_canonical_resources_are_refused() {
    let broker = TestBroker::start().await;
    let identity = broker.orders_identity();
    let body = |resource: &str| json!({"task": "t", "rights": [{"resource": resource, "operations": ["read"]}], "services": ["orders-api"]});
    for resource in [
        "orders/../admin",
        "orders/%2E%2E/admin",
        "orders/..%2Fadmin",
        "orders/%252E%252E/admin",
        "orders/..;/admin",
        "orders\\..\\admin",
        "orders//42",
        "orders/42/",
        "/orders/42",
        "orders/..%2F*",
        "orders//*",
        "orders/%EF%BC%8E%EF%BC%8E/admin",
    ] {
        let response = broker.request(&identity, &body(resource)).await;
        assert_eq!(response.status(), 400, "{resource}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:writ:problem:invalid_request");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("not a canonical resource"),
            "{resource}: {problem}"
        );
    }
    // Encoded text that is canonical is granted as it is written.
    let answer = broker
        .issue(&identity, &body("orders/caf%C3%A9%20menu"))
        .await;
    assert_eq!(answer["rights"][0]["resource"], "orders/caf%C3%A9%20menu");
    broker.stop().await;
}

#[test]
fn policies_with_non_canonical_resources_do_not_load() {
    let dir = tempfile::tempdir().unwrap();
    for (resource, line) in [("orders/../*", 5), ("/orders/*", 5), ("orders/%2e%2e/*", 5)] {
        let policy = format!(
            "[[policy]]\nname = \"p\"\nissuer = \"kubernetes\"\n\
             operations = [\"read\"]\nresources = [\"orders/*\", {resource:?}]\n\
             services = [\"orders-api\"]\nmax_ttl = \"5m\"\n"
        );
        std::fs::write(dir.path().join("orders.toml"), policy).unwrap();
        let dir_arg = dir.path().to_str().unwrap();
        let checked = run(&["policy", "check", dir_arg], "");
        assert_eq!(checked.status.code(), Some(1), "{resource}");
        let stderr = text(&checked.stderr);
        assert!(
            stderr.contains(&format!("orders.toml:{line}:"))
                && stderr.contains("not a canonical resource"),
            "{resource}: {stderr}"
        );
    }
}

#[test]
fn verify_refuses_non_canonical_resources_before_the_writ() {
    let root = KeyPair::new();
    let now = unix_now();
    let writ = writ_with_dates(&root, now, now + 600);
    assert!(verify(&root, &writ, "orders/42").status.success());
    for resource in [
        "orders/../admin",
        "orders/%2E%2E/admin",
        "orders/..%2Fadmin",
    ] {
        let refused = verify(&root, &writ, resource);
        assert_eq!(refused.status.code(), Some(1));
        assert!(
            text(&refused.stdout).starts_with("denied (non_canonical_resource)"),
            "{resource}: {refused:?}"
        );
    }
}

#[test]
fn inspect_and_verify_survive_dates_beyond_the_calendar() {
    let root = KeyPair::new();
    let now = unix_now();
    let cases = [
        (u64::MAX, u64::MAX, "expires at   -"),
        (now, 1 << 63, "expires at   -"),
        (
            now,
            YEAR_10000,
            "expires at   +10000-01-01T00:00:00Z (valid)",
        ),
        (
            YEAR_10000,
            i64::MAX as u64,
            "expires at   9223372036854775807 s after 1970-01-01T00:00:00Z (valid)",
        ),
    ];
    for (issued, expires, shown) in cases {
        let writ = writ_with_dates(&root, issued, expires);
        let inspected = run(&["inspect", "-"], &writ);
        assert!(inspected.status.success(), "{inspected:?}");
        assert!(text(&inspected.stdout).contains(shown), "{inspected:?}");

        // `verify` decides without panicking (a panic exits with 101).
        let verified = verify(&root, &writ, "orders/42");
        assert!(
            matches!(verified.status.code(), Some(0 | 1)),
            "{verified:?}"
        );
    }
    let far = verify(&root, &writ_with_dates(&root, now, YEAR_10000), "orders/42");
    assert!(far.status.success(), "{far:?}");
    assert!(text(&far.stdout).contains("expires +10000-01-01T00:00:00Z"));
    let endless = verify(&root, &writ_with_dates(&root, now, u64::MAX), "orders/42");
    assert!(
        text(&endless.stdout).starts_with("denied (unsupported_format)"),
        "{endless:?}"
    );
}

#[test]
fn inspect_shows_the_expiry_verify_decides_by() {
    let root = KeyPair::new();
    let now = unix_now();
    let writ = writ_with_dates(&root, now, now + 600);
    let lapsed = attenuate(
        &writ,
        &Attenuation {
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(now - 60)),
            ..Attenuation::default()
        },
    )
    .unwrap();

    let inspected = text(&run(&["inspect", "-"], &lapsed).stdout);
    let line = inspected
        .lines()
        .find(|line| line.starts_with("expires at"))
        .unwrap();
    assert!(
        line.contains("(expired; set by block 1, issued to expire "),
        "{inspected}"
    );

    let verified = verify(&root, &lapsed, "orders/42");
    assert_eq!(verified.status.code(), Some(1));
    assert!(
        text(&verified.stdout).starts_with("denied (expired)"),
        "{verified:?}"
    );

    // A live attenuation: `verify` reports the expiry `inspect` shows.
    let short = attenuate(
        &writ,
        &Attenuation {
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(now + 120)),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let inspected = text(&run(&["inspect", "-"], &short).stdout);
    let shown = inspected
        .lines()
        .find_map(|line| line.strip_prefix("expires at   "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(inspected.contains("(valid; set by block 1"), "{inspected}");
    let granted = text(&verify(&root, &short, "orders/42").stdout);
    assert!(
        granted.contains(&format!("expires {shown})")),
        "{granted} / {shown}"
    );
}

#[test]
fn attenuate_refuses_absurd_lifetimes_and_non_canonical_resources() {
    let root = KeyPair::new();
    let now = unix_now();
    let writ = writ_with_dates(&root, now, now + 600);
    let far = run(
        &["attenuate", "--expires-in", "500000000000years", "-"],
        &writ,
    );
    assert_eq!(far.status.code(), Some(1), "{far:?}");
    assert!(
        text(&far.stderr).contains("too far in the future"),
        "{far:?}"
    );

    let escaping = run(&["attenuate", "--resource", "orders/../admin", "-"], &writ);
    assert_eq!(escaping.status.code(), Some(1), "{escaping:?}");
    assert!(
        text(&escaping.stderr).contains("not a canonical resource"),
        "{escaping:?}"
    );
}
