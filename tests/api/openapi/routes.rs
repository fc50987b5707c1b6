//! The router and the document list the same routes, and a broker serves exactly the documented
//! operations.

use std::collections::BTreeSet;

use super::{METHODS, Probe, Request, spec_methods, spec_paths};
use crate::helpers::{TestBroker, client};

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

#[tokio::test]
async fn documented_operations_are_served_and_other_methods_refused() {
    let broker = TestBroker::start().await;
    let mut probe = Probe::new(&broker);
    for path in spec_paths() {
        assert!(
            !path.contains('{'),
            "{path}: teach this test to fill in path parameters"
        );
        let documented = spec_methods(&path);
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
    ] {
        for method in ["GET", "POST", "DELETE", "HEAD"] {
            let (status, _) = probe.send(method, path, Request::default()).await;
            assert_eq!(status, 404, "{method} {path}");
        }
    }
    broker.stop().await;
}
