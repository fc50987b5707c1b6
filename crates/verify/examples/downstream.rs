//! A downstream service, "orders-api", that accepts writs.
//!
//! `GET /orders/{id}` needs the right (`orders/{id}`, `read`), `POST /orders/{id}` the right
//! (`orders/{id}`, `write`). Keys come from the broker's key set, and the broker's revocation
//! feed is followed: a revoked writ is refused within a second.
//!
//! ```text
//! WRIT_BROKER_URL=http://127.0.0.1:8080 LISTEN=127.0.0.1:8081 \
//!     cargo run -p writ-verify --features axum --example downstream
//! curl -H "Authorization: Bearer $WRIT" http://127.0.0.1:8081/orders/42
//! ```

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use http::Method;
use http::request::Parts;
use writ_verify::{KEY_SET_PATH, Verifier, WritGrant, WritLayer};

/// The broker, named as the `writ` command names it.
const DEFAULT_BROKER_URL: &str = "http://127.0.0.1:8080";
const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = std::env::var("WRIT_BROKER_URL").unwrap_or_else(|_| DEFAULT_BROKER_URL.into());
    let broker = broker.trim_end_matches('/');
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| DEFAULT_LISTEN.into());

    let verifier = Verifier::builder("orders-api")
        .key_set_url(format!("{broker}{KEY_SET_PATH}"))
        // Revoked writs are refused; if the feed goes unread for 15 s, every writ is.
        .revocation_feed(broker)
        .build()
        .await?;
    let app = Router::new()
        .route("/orders/{id}", get(read_order).post(write_order))
        // route_layer: only matched routes are guarded; unknown paths answer 404 without a writ.
        .route_layer(WritLayer::new(Arc::new(verifier), resource_and_operation));

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!(
        "orders-api on http://{}, keys and revocations from {broker}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}

/// `/orders/42` is the resource `orders/42`; reading methods are `read`, the rest `write`.
/// Exactly one leading `/` goes: the verifier refuses paths that are not canonical resources
/// (`//orders/42`, `/orders/%2E%2E/admin`) with 400 before it looks at the writ.
fn resource_and_operation(parts: &Parts) -> (String, String) {
    let path = parts.uri.path();
    let resource = path.strip_prefix('/').unwrap_or(path).to_owned();
    let operation = match parts.method {
        Method::GET | Method::HEAD => "read",
        _ => "write",
    };
    (resource, operation.to_owned())
}

async fn read_order(Path(id): Path<String>, WritGrant(grant): WritGrant) -> String {
    report("read", &id, &grant);
    format!("order {id}\n")
}

async fn write_order(Path(id): Path<String>, WritGrant(grant): WritGrant) -> String {
    report("write", &id, &grant);
    format!("order {id} updated\n")
}

fn report(operation: &str, id: &str, grant: &writ_verify::Grant) {
    // Debug formatting quotes the values: names are printed, never interpreted by the terminal.
    println!(
        "granted {operation} on orders/{id:?} to agent {:?} for task {:?} (writ {:?}, key {}, {} attenuation(s))",
        grant.agent, grant.task, grant.writ_id, grant.root_key_id, grant.attenuation_depth
    );
}
