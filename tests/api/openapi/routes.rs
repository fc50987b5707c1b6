//! The router and the document list the same routes, and a broker serves exactly the documented
//! operations.

use std::collections::BTreeSet;

use super::{METHODS, Probe, Request, SPEC, spec_methods, spec_paths};
use crate::helpers::{TestBroker, client};

/// An instance of a documented path: its parameters filled in (`{id}` with an approval id no
/// request has).
fn instance(path: &str) -> String {
    path.replace("{id}", &format!("ap_{}", "0".repeat(32)))
        .replace("{name}", "orders-db")
}

/// The routes the router serves, as (path, methods), from the table it is built from.
fn router_routes() -> Vec<(String, BTreeSet<String>)> {
    writ::http::routes()
        .into_iter()
        .map(|route| {
            let methods = route.methods.iter().map(ToString::to_string).collect();
            (route.path.to_owned(), methods)
        })
        .collect()
}

#[test]
fn the_router_and_the_document_list_the_same_routes() {
    let served: Vec<(String, BTreeSet<String>)> = router_routes();
    let documented: Vec<(String, BTreeSet<String>)> = spec_paths()
        .into_iter()
        .map(|path| {
            let methods = spec_methods(&path);
            (path, methods)
        })
        .collect();
    let sorted = |mut routes: Vec<(String, BTreeSet<String>)>| {
        routes.sort();
        routes
    };
    assert_eq!(sorted(served), sorted(documented));
}

/// A long-poll route (one whose GET may wait, with a longer time limit) is documented as one
/// (`x-writ-long-poll`, the most seconds it waits), on its GET and HEAD, and no other is.
#[test]
fn the_document_marks_exactly_the_long_polls() {
    for route in writ::http::routes() {
        for method in spec_methods(route.path) {
            let operation = &SPEC["paths"][route.path][method.to_lowercase()];
            let documented = operation.get("x-writ-long-poll").and_then(|v| v.as_u64());
            let expected = (route.long_poll && (method == "GET" || method == "HEAD"))
                .then(|| writ::broker::MAX_WAIT.as_secs());
            assert_eq!(
                documented, expected,
                "x-writ-long-poll of {method} {}",
                route.path
            );
        }
    }
}

#[tokio::test]
async fn documented_operations_are_served_and_other_methods_refused() {
    let broker = TestBroker::start().await;
    let mut probe = Probe::new(&broker);
    for template in spec_paths() {
        let documented = spec_methods(&template);
        let path = instance(&template);
        assert!(
            !path.contains('{'),
            "{template}: teach this test to fill in its path parameters"
        );
        for method in METHODS {
            // No credential: every documented operation still answers something documented.
            let (status, body) = probe.send(method, &path, Request::default()).await;
            if documented.contains(method) {
                assert!(
                    status != 404 && status != 405,
                    "{method} {path} is documented but answered {status}: {body}"
                );
            } else {
                assert_eq!(status, 405, "{method} {path} is not documented: {body}");
            }
        }
        // The Allow header of a 405 lists exactly the documented methods.
        let refused = METHODS
            .into_iter()
            .find(|method| !documented.contains(*method))
            .unwrap();
        let response = client()
            .request(
                reqwest::Method::from_bytes(refused.as_bytes()).unwrap(),
                format!("{}{path}", broker.url),
            )
            .send()
            .await
            .unwrap();
        let allow: BTreeSet<String> = response.headers()["allow"]
            .to_str()
            .unwrap()
            .split(',')
            .map(|method| method.trim().to_owned())
            .collect();
        assert_eq!(allow, documented, "Allow of {path}");
    }
    for path in [
        "/",
        "/v1/writs/",
        "/v1/writ",
        "/v2/writs",
        "/v1/writs/wr_00",
        "/.well-known/writ-keys/1",
        "/healthz/",
        "/openapi.yaml",
        "/v1/revocations/",
        "/v1/revocations/rv_00",
        "/v1/suspensions",
        "/v1/admin/writs/ad_00",
        "/v1/audit/checkpoints/1",
        "/v1/approvals/",
        "/v1/approvals/ap_00/decision/",
        "/v1/approvals/ap_00/decisions",
        "/v1/exchange",
        "/v1/exchange/vault",
        "/v1/exchange/vault/orders-db/x",
        "/v1/exchange/aws/orders-db",
    ] {
        for method in ["GET", "POST", "DELETE", "HEAD"] {
            let (status, _) = probe.send(method, path, Request::default()).await;
            assert_eq!(status, 404, "{method} {path}");
        }
    }
    broker.stop().await;
}
