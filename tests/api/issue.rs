//! Issuance end to end: identity in, a writ out, verified offline by the SDK as a downstream
//! service would; refusals name what they refuse; hostile text stays text.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use writ_testkit::{Alg, TestIssuer};
use writ_verify::biscuit_auth::KeyPair;
use writ_verify::{Attenuation, Denial, ResourcePattern, Verifier, attenuate, inspect};

use crate::helpers::{AUDIENCE, TestBroker, client, orders_request, problem_type};

pub async fn verifier_for(broker: &TestBroker, service: &str) -> Verifier {
    Verifier::builder(service)
        .key_set_url(format!("{}/.well-known/writ-keys", broker.url))
        .no_revocation()
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_granted_writ_allows_exactly_what_was_granted() {
    let broker = TestBroker::start().await;
    let answer = broker
        .issue(&broker.orders_identity(), &orders_request())
        .await;
    let writ = answer["writ"].as_str().unwrap();
    assert_eq!(answer["task"], "nightly report");
    assert_eq!(answer["ttl"], 300, "the policy's default lifetime");
    assert_eq!(
        answer["rights"],
        json!([{"resource": "orders/42", "operations": ["read"]}])
    );
    assert!(answer["writ_id"].as_str().unwrap().starts_with("wr_"));

    let orders = verifier_for(&broker, "orders-api").await;
    let grant = orders.authorize(writ, "orders/42", "read").unwrap();
    assert_eq!(grant.agent, "k8s:orders/report-bot");
    assert_eq!(grant.writ_id, answer["writ_id"].as_str().unwrap());
    assert_eq!(grant.attenuation_depth, 0);
    assert_eq!(grant.root_key_id, 1);
    assert_eq!(
        humantime::format_rfc3339_seconds(grant.expires_at).to_string(),
        answer["expires_at"].as_str().unwrap()
    );

    assert_eq!(
        orders.authorize(writ, "orders/43", "read"),
        Err(Denial::NotPermitted)
    );
    assert_eq!(
        orders.authorize(writ, "orders/42", "write"),
        Err(Denial::NotPermitted)
    );
    let billing = verifier_for(&broker, "billing-api").await;
    assert_eq!(
        billing.authorize(writ, "orders/42", "read"),
        Err(Denial::WrongAudience)
    );
    let later = SystemTime::now() + Duration::from_secs(301);
    assert!(matches!(
        orders.authorize_at(writ, "orders/42", "read", later),
        Err(Denial::Expired { .. })
    ));
    broker.stop().await;
}

#[tokio::test]
async fn writs_from_unknown_keys_and_tampered_writs_are_refused() {
    let broker = TestBroker::start().await;
    let answer = broker
        .issue(&broker.orders_identity(), &orders_request())
        .await;
    let writ = answer["writ"].as_str().unwrap();
    let impostor = Verifier::builder("orders-api")
        .static_keys([(1, KeyPair::new().public())])
        .no_revocation()
        .build()
        .await
        .unwrap();
    assert_eq!(
        impostor.authorize(writ, "orders/42", "read"),
        Err(Denial::InvalidSignature)
    );
    let other_kid = Verifier::builder("orders-api")
        .static_keys([(7, KeyPair::new().public())])
        .no_revocation()
        .build()
        .await
        .unwrap();
    assert!(matches!(
        other_kid.authorize(writ, "orders/42", "read"),
        Err(Denial::UnknownKey { .. })
    ));

    let orders = verifier_for(&broker, "orders-api").await;
    let mut bytes = writ.as_bytes().to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert!(matches!(
        orders.authorize(&tampered, "orders/42", "read"),
        Err(Denial::InvalidSignature | Denial::Malformed { .. })
    ));
    broker.stop().await;
}

#[tokio::test]
async fn github_identities_get_prefix_grants() {
    let broker = TestBroker::start().await;
    let identity = broker.github.github_token(
        Alg::Es256,
        "acme/orders",
        "deploy",
        "refs/heads/main",
        AUDIENCE,
        Duration::from_secs(600),
    );
    let body = json!({"task": "publish Q1", "rights": [{"resource": "reports/2026/*", "operations": ["read", "write"]}],
                      "services": ["reports-api"], "ttl": 600});
    let answer = broker.issue(&identity, &body).await;
    assert_eq!(answer["agent"], "github:acme/orders@deploy");
    let writ = answer["writ"].as_str().unwrap();
    let reports = verifier_for(&broker, "reports-api").await;
    assert!(
        reports
            .authorize(writ, "reports/2026/q1.pdf", "write")
            .is_ok()
    );
    assert_eq!(
        reports.authorize(writ, "reports/2025/q1.pdf", "read"),
        Err(Denial::NotPermitted)
    );
    assert_eq!(
        reports.authorize(writ, "reports/2026", "read"),
        Err(Denial::NotPermitted)
    );
    // Another branch does not match the policy at all.
    let feature = broker.github.github_token(
        Alg::Rs256,
        "acme/orders",
        "deploy",
        "refs/heads/feature",
        AUDIENCE,
        Duration::from_secs(600),
    );
    let refused: Value = broker.request(&feature, &body).await.json().await.unwrap();
    assert_eq!(refused["reason"], "no_matching_policy");
    broker.stop().await;
}

#[tokio::test]
async fn everything_policy_does_not_allow_is_refused_by_name() {
    let broker = TestBroker::start().await;
    let body = json!({
        "task": "too much",
        "rights": [{"resource": "orders/42", "operations": ["read", "delete"]}, {"resource": "billing/*", "operations": ["read"]}],
        "services": ["orders-api", "billing-api"],
        "ttl": 3600,
    });
    let response = broker.request(&broker.orders_identity(), &body).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:writ:problem:policy_refused");
    assert_eq!(problem["reason"], "not_allowed");
    assert_eq!(
        problem["refused_rights"],
        json!([{"resource": "orders/42", "operation": "delete"}, {"resource": "billing/*", "operation": "read"}])
    );
    assert_eq!(problem["refused_services"], json!(["billing-api"]));
    assert_eq!(
        problem["refused_ttl"],
        json!({"requested": 3600, "max": 600})
    );
    assert!(problem.get("writ").is_none());
    // A request that asks for the wider prefix than the policy grants is refused, not narrowed.
    let wider = json!({"task": "t", "rights": [{"resource": "*", "operations": ["read"]}], "services": ["orders-api"]});
    let problem: Value = broker
        .request(&broker.orders_identity(), &wider)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        problem["refused_rights"],
        json!([{"resource": "*", "operation": "read"}])
    );
    broker.stop().await;
}

#[tokio::test]
async fn an_identity_no_policy_matches_is_refused() {
    let broker = TestBroker::start().await;
    let billing = broker.kubernetes.kubernetes_token(
        Alg::Rs256,
        "billing",
        "bot",
        AUDIENCE,
        Duration::from_secs(600),
    );
    let response = broker.request(&billing, &orders_request()).await;
    assert_eq!(response.status(), 403);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["reason"], "no_matching_policy");
    broker.stop().await;
}

#[tokio::test]
async fn datalog_in_task_names_and_resources_is_only_text() {
    let broker = TestBroker::start().await;
    let task = r#"x"); right("*", "write"); agent("root") // ) /*"#;
    // Canonical resources carry no raw quotes or spaces: Datalog-looking text arrives encoded.
    let resource = r#"orders/1%22),right(%22orders/2%22,%22write%22)"#;
    let body = json!({"task": task, "rights": [{"resource": resource, "operations": ["read"]}], "services": ["orders-api"]});
    let answer = broker.issue(&broker.orders_identity(), &body).await;
    let writ = answer["writ"].as_str().unwrap();
    let orders = verifier_for(&broker, "orders-api").await;
    let grant = orders.authorize(writ, resource, "read").unwrap();
    assert_eq!(grant.task, task);
    assert_eq!(grant.agent, "k8s:orders/report-bot");
    // `*` is no resource at all (it is not canonical): refused before any grant is read.
    assert!(matches!(
        orders.authorize(writ, "*", "write"),
        Err(Denial::NonCanonicalResource { .. })
    ));
    for (resource, operation) in [
        ("orders/2", "write"),
        ("orders/%2A", "write"),
        ("orders/1", "read"),
        (resource, "write"),
    ] {
        assert_eq!(
            orders.authorize(writ, resource, operation),
            Err(Denial::NotPermitted),
            "{resource} {operation}"
        );
    }
    let inspection = inspect(writ).unwrap();
    assert_eq!(inspection.rights.len(), 1);
    assert_eq!(inspection.task.as_deref(), Some(task));

    // Claims are attacker input too: a service account name full of Datalog is just a name.
    let account = r#"bot"); right("orders/9", "write"); agent("root"#;
    let identity = broker.kubernetes.kubernetes_token(
        Alg::Rs256,
        "orders",
        account,
        AUDIENCE,
        Duration::from_secs(600),
    );
    let answer = broker.issue(&identity, &orders_request()).await;
    let writ = answer["writ"].as_str().unwrap();
    let grant = orders.authorize(writ, "orders/42", "read").unwrap();
    assert_eq!(grant.agent, format!("k8s:orders/{account}"));
    assert_eq!(
        orders.authorize(writ, "orders/9", "write"),
        Err(Denial::NotPermitted)
    );

    for bad_task in ["line one\nright(\"*\", \"write\")", "tab\there", ""] {
        let body = json!({"task": bad_task, "rights": [{"resource": "orders/1", "operations": ["read"]}], "services": ["orders-api"]});
        let response = broker.request(&broker.orders_identity(), &body).await;
        assert_eq!(response.status(), 400, "{bad_task:?}");
    }
    broker.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_clear_errors() {
    let broker = TestBroker::start().await;
    let identity = broker.orders_identity();
    let url = format!("{}/v1/writs", broker.url);
    let send = |body: String, content_type: &'static str| {
        client()
            .post(&url)
            .bearer_auth(&identity)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases = [
        ("{not json", "application/json", 400, "invalid_request"),
        (
            r#"{"task":"t","rights":[],"services":["orders-api"]}"#,
            "application/json",
            400,
            "invalid_request",
        ),
        (
            r#"{"task":"t","rights":[{"resource":"orders/1","operations":["read"]}],"services":["orders-api"],"admin":true}"#,
            "application/json",
            400,
            "invalid_request",
        ),
        (
            r#"{"task":"t","rights":[{"resource":"orders/*/x","operations":["read"]}],"services":["orders-api"]}"#,
            "application/json",
            400,
            "invalid_request",
        ),
        (
            r#"{"task":"t","rights":[{"resource":"orders/1","operations":["re ad"]}],"services":["orders-api"]}"#,
            "application/json",
            400,
            "invalid_request",
        ),
        (
            r#"{"task":"t","rights":[{"resource":"orders/1","operations":["read"]}],"services":["orders-api"],"ttl":0}"#,
            "application/json",
            400,
            "invalid_request",
        ),
        (
            r#"{"task":"t"}"#,
            "text/plain",
            415,
            "unsupported_media_type",
        ),
    ];
    for (body, content_type, status, code) in cases {
        let response = send(body.to_owned(), content_type).await.unwrap();
        assert_eq!(
            problem_type(response).await,
            (status, format!("urn:writ:problem:{code}")),
            "{body}"
        );
    }
    let huge = format!(r#"{{"task":"{}"}}"#, "a".repeat(100_000));
    let response = send(huge, "application/json").await.unwrap();
    assert_eq!(response.status(), 413);
    let unknown = broker.get("/v2/nothing").await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.headers()["content-type"],
        "application/problem+json"
    );
    let wrong_method = client().get(&url).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    broker.stop().await;
}

#[tokio::test]
async fn attenuation_narrows_what_the_verifier_accepts() {
    let broker = TestBroker::start().await;
    let body = json!({"task": "t", "rights": [{"resource": "orders/*", "operations": ["read"]}], "services": ["orders-api"]});
    let (writ, _) = broker.issue_writ(&broker.orders_identity(), &body).await;
    let narrower = attenuate(
        &writ,
        &Attenuation {
            resources: Some(vec![ResourcePattern::parse("orders/7*").unwrap()]),
            expires_at: Some(SystemTime::now() + Duration::from_secs(60)),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let orders = verifier_for(&broker, "orders-api").await;
    assert!(orders.authorize(&writ, "orders/1", "read").is_ok());
    assert_eq!(
        orders
            .authorize(&narrower, "orders/71", "read")
            .unwrap()
            .attenuation_depth,
        1
    );
    assert!(matches!(
        orders.authorize(&narrower, "orders/1", "read"),
        Err(Denial::RestrictedByAttenuation { .. })
    ));
    let after_attenuated_expiry = SystemTime::now() + Duration::from_secs(120);
    assert!(
        orders
            .authorize_at(&narrower, "orders/71", "read", after_attenuated_expiry)
            .is_err()
    );
    assert!(
        orders
            .authorize_at(&writ, "orders/71", "read", after_attenuated_expiry)
            .is_ok()
    );
    broker.stop().await;
}

#[tokio::test]
async fn key_rotation_keeps_old_writs_verifiable_and_signs_new_ones_with_the_new_key() {
    let broker = TestBroker::start().await;
    let old = broker
        .issue(&broker.orders_identity(), &orders_request())
        .await;
    let dir = writ::keys::KeyDir::open(&broker.key_dir()).unwrap();
    dir.rotate(Duration::from_secs(16 * 60), SystemTime::now())
        .unwrap();
    let mut new = old.clone();
    for _ in 0..50 {
        new = broker
            .issue(&broker.orders_identity(), &orders_request())
            .await;
        if new["root_key_id"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(new["root_key_id"], 2, "the broker picked up the rotation");
    let keys = broker.get_json("/.well-known/writ-keys").await;
    let kids: Vec<_> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_u64().unwrap())
        .collect();
    assert_eq!(kids, vec![1, 2]);
    assert!(
        keys["keys"][0]["not_after"].is_string(),
        "the retired key says until when"
    );
    let orders = verifier_for(&broker, "orders-api").await;
    for writ in [&old, &new] {
        assert!(
            orders
                .authorize(writ["writ"].as_str().unwrap(), "orders/42", "read")
                .is_ok()
        );
    }
    broker.stop().await;
}

#[tokio::test]
async fn tokens_signed_by_the_real_issuer_for_another_issuer_are_refused() {
    // The GitHub issuer is configured; a token whose iss is GitHub's but whose keys are not
    // published there is refused even though its claims look right.
    let broker = TestBroker::start().await;
    let rogue = TestIssuer::start().await;
    let mut claims = writ_testkit::claims_base(
        &broker.github.issuer(),
        "repo:acme/orders:ref:refs/heads/main",
        AUDIENCE,
        Duration::from_secs(600),
    );
    claims["repository"] = json!("acme/orders");
    let forged = rogue.forge_unknown_kid(&claims);
    let response = broker.request(&forged, &orders_request()).await;
    assert_eq!(response.status(), 401);
    broker.stop().await;
}

#[tokio::test]
async fn private_keys_stay_in_owner_only_files_and_are_never_served() {
    use std::os::unix::fs::PermissionsExt;
    let broker = TestBroker::start().await;
    let keys = broker.get("/.well-known/writ-keys").await;
    assert_eq!(keys.headers()["cache-control"], "public, max-age=60");
    let served = keys.text().await.unwrap();
    let pem = std::fs::read_to_string(broker.key_dir().join("root-1.pem")).unwrap();
    let private = writ_verify::biscuit_auth::PrivateKey::from_pem(&pem).unwrap();
    assert!(!served.contains(&private.to_bytes_hex()));
    assert!(!served.to_lowercase().contains("private"));
    for entry in std::fs::read_dir(broker.key_dir()).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", entry.path().display());
    }
    broker.stop().await;
}
