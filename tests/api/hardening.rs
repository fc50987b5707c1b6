//! Hostile clients, with real sockets: idle and slow-header connections are closed, connections
//! past the cap are answered `over_capacity` at once, revocation streams have their own cap, and
//! an agent is refused before its body is read. Honest issuance keeps working throughout.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, Setup, TestBroker, client, orders_request};

/// A broker with small connection bounds, so tests reach them with a few sockets.
async fn bounded_broker(max: usize, streams: usize) -> TestBroker {
    let mut setup = Setup::new(Backend::Sqlite);
    setup.tweak = Box::new(move |config| {
        config.connections.max = max;
        config.connections.max_revocation_streams = streams;
        config.connections.header_read_timeout = Duration::from_secs(1);
        config.connections.write_timeout = Duration::from_secs(1);
    });
    TestBroker::start_with(setup).await
}

fn address(broker: &TestBroker) -> String {
    broker.url.trim_start_matches("http://").to_owned()
}

/// Reads until the peer closes or `limit` passes; answers what was read and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut received = Vec::new();
    let deadline = Instant::now() + limit;
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (received, true),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => return (received, false),
        }
    }
}

#[tokio::test]
async fn idle_and_slow_header_connections_are_closed_after_the_header_timeout() {
    let broker = bounded_broker(64, 8).await;
    let mut idle = TcpStream::connect(address(&broker)).await.unwrap();
    let mut slow = TcpStream::connect(address(&broker)).await.unwrap();
    let started = Instant::now();
    let dribble = async {
        // One header byte every 200 ms: never a complete head.
        for byte in b"POST /v1/writs HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa" {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let (_, (_, idle_closed)) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(4), dribble),
        read_until_closed(&mut idle, Duration::from_secs(4))
    );
    assert!(idle_closed, "an idle connection is closed");
    let (_, slow_closed) = read_until_closed(&mut slow, Duration::from_secs(1)).await;
    assert!(slow_closed, "a slow-header connection is closed");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed after about the 1s header timeout, not held: {:?}",
        started.elapsed()
    );
    broker.stop().await;
}

#[tokio::test]
async fn a_keep_alive_connection_idle_between_requests_is_closed() {
    let broker = bounded_broker(64, 8).await;
    let mut stream = TcpStream::connect(address(&broker)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 1024];
    let n = stream.read(&mut buffer).await.unwrap();
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"), "answered first");
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(closed, "then closed once idle for the header timeout");
    broker.stop().await;
}

#[tokio::test]
async fn connections_past_the_cap_are_answered_over_capacity_and_issuance_resumes() {
    let broker = bounded_broker(16, 4).await;
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(TcpStream::connect(address(&broker)).await.unwrap());
    }
    // Every slot is held by an idle socket: one more is answered at once, and closed.
    let mut extra = TcpStream::connect(address(&broker)).await.unwrap();
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut extra, Duration::from_secs(2)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        closed && started.elapsed() < Duration::from_millis(900),
        "{answer}"
    );
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["type"], "urn:writ:problem:over_capacity");
    // The held sockets time out (header_read_timeout 1s), the slots free, issuance works.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let identity = broker.orders_identity();
    broker.issue(&identity, &orders_request()).await;
    drop(held);
    broker.stop().await;
}

#[tokio::test]
async fn revocation_streams_have_their_own_cap_and_issuance_goes_on_beside_them() {
    let broker = bounded_broker(64, 3).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let stream = client()
            .get(format!("{}/v1/revocations/stream", broker.url))
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        streams.push(stream);
    }
    let refused = client()
        .get(format!("{}/v1/revocations/stream", broker.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "urn:writ:problem:over_capacity");
    // Issuance and the feed are unaffected while the streams are held.
    let identity = broker.orders_identity();
    for _ in 0..5 {
        broker.issue(&identity, &orders_request()).await;
    }
    assert_eq!(broker.get("/v1/revocations").await.status(), 200);
    // A stream that ends gives its slot back.
    drop(streams.pop());
    let mut reopened = None;
    for _ in 0..50 {
        let response = client()
            .get(format!("{}/v1/revocations/stream", broker.url))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            reopened = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reopened.is_some(), "the freed slot is taken again");
    drop(streams);
    drop(reopened);
    broker.stop().await;
}

#[tokio::test]
async fn an_unauthenticated_agent_is_refused_before_its_body_is_read() {
    let broker = bounded_broker(64, 8).await;
    let mut stream = TcpStream::connect(address(&broker)).await.unwrap();
    // Headers announcing a body that never comes, with a token that is not a JWT.
    stream
        .write_all(
            b"POST /v1/writs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer garbage\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"task\":",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buffer))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&buffer[..n]);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("identity_malformed"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
    broker.stop().await;
}

/// The audit events with `action`, read as an auditor.
async fn events(broker: &TestBroker, action: &str) -> Vec<Value> {
    let auditor = broker
        .admin_token("auditor@example.com", &["auditor"])
        .await;
    let page = broker
        .admin_get_json(&format!("/v1/audit?action={action}&limit=1000"), &auditor)
        .await;
    page["events"].as_array().unwrap().clone()
}

fn details(event: &Value) -> Value {
    serde_json::from_str(event["details"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn refusals_of_unverified_credentials_are_counted_exactly_not_recorded_one_by_one() {
    let mut setup = Setup::new(Backend::Sqlite);
    setup.tweak = Box::new(|config| config.audit_refusal_window = Duration::from_secs(1));
    let broker = TestBroker::start_with(setup).await;
    let garbage = [("Bearer garbage", 120), ("Bearer a.b.c", 80)];
    for (header, times) in garbage {
        for _ in 0..times {
            let response = client()
                .post(format!("{}/v1/writs", broker.url))
                .header("authorization", header)
                .json(&orders_request())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401);
        }
    }
    for _ in 0..30 {
        let response = broker
            .admin_post(
                "/v1/revocations",
                "not-an-admin-writ",
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(response.status(), 401);
    }
    // No credential at all, or not Bearer: counted too.
    for header in [None, Some("Basic b3JkZXJzOmJvdA==")] {
        for _ in 0..5 {
            let mut request = client()
                .post(format!("{}/v1/writs", broker.url))
                .json(&orders_request());
            if let Some(value) = header {
                request = request.header("authorization", value);
            }
            assert_eq!(request.send().await.unwrap().status(), 401);
        }
    }
    // A token whose signature verified but that names no agent is recorded on its own.
    let unnamed = broker.kubernetes.sign(
        writ_testkit::Alg::Rs256,
        &broker.orders_claims(|c| {
            c.as_object_mut().unwrap().remove("kubernetes.io");
        }),
    );
    assert_eq!(
        broker.request(&unnamed, &orders_request()).await.status(),
        401
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let identity = events(&broker, "identity.refused").await;
    let counted: Vec<&Value> = identity
        .iter()
        .filter(|event| details(event)["aggregated"] == true)
        .collect();
    assert!(
        counted.len() <= 4,
        "a few count events, not 200: {identity:#?}"
    );
    let total: u64 = counted
        .iter()
        .map(|event| details(event)["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 210, "exact counts: {identity:#?}");
    assert!(counted.iter().all(|event| event["actor"] == "anonymous"));
    let single: Vec<&Value> = identity
        .iter()
        .filter(|event| details(event)["aggregated"] != true)
        .collect();
    assert_eq!(single.len(), 1, "{identity:#?}");
    assert_eq!(single[0]["reason"], "identity_claim_missing");
    let admin: u64 = events(&broker, "admin.refused")
        .await
        .iter()
        .filter(|event| details(event)["aggregated"] == true)
        .map(|event| details(event)["count"].as_u64().unwrap())
        .sum();
    assert_eq!(admin, 30);
    broker.stop().await;
}

#[tokio::test]
async fn a_huge_refused_request_answers_and_records_a_bounded_refusal() {
    let broker = TestBroker::start().await;
    let operations: Vec<String> = (0..16).map(|n| format!("op{n}")).collect();
    let rights: Vec<Value> = (0..32)
        .map(|n| {
            serde_json::json!({
                "resource": format!("elsewhere/{n}/{}", "x".repeat(480)),
                "operations": operations,
            })
        })
        .collect();
    let request = serde_json::json!({
        "task": "everything",
        "rights": rights,
        "services": (0..16).map(|n| format!("svc-{n}")).collect::<Vec<_>>(),
    });
    let response = broker.request(&broker.orders_identity(), &request).await;
    assert_eq!(response.status(), 403);
    let body = response.bytes().await.unwrap();
    assert!(body.len() < 16 * 1024, "answer of {} bytes", body.len());
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["refused_rights"].as_array().unwrap().len(), 8);
    assert_eq!(problem["refused_rights_total"], 512);
    assert_eq!(problem["refused_services"].as_array().unwrap().len(), 8);
    assert!(problem["detail"].as_str().unwrap().contains("and 504 more"));
    let refused = events(&broker, "writ.refused").await;
    let event = refused.last().unwrap();
    let text = serde_json::to_string(event).unwrap();
    assert!(
        text.len() < 16 * 1024,
        "audit event of {} bytes",
        text.len()
    );
    assert_eq!(details(event)["refusal"]["refused_rights_total"], 512);
    broker.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_its_answers_is_disconnected() {
    let broker = bounded_broker(16, 4).await;
    let mut held = Vec::new();
    for _ in 0..16 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(2048).unwrap();
        let mut stream = socket
            .connect(address(&broker).parse().unwrap())
            .await
            .unwrap();
        // Thousands of pipelined requests whose answers are never read.
        let burst = b"GET /.well-known/writ-keys HTTP/1.1\r\nHost: x\r\n\r\n".repeat(5000);
        // The broker may stop reading (its answers are not being read) and then drop us: the
        // burst needs to get only as far as it can.
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(&burst)).await;
        held.push(stream);
    }
    // Every slot is held by a client that stopped reading; within the write timeout (1s) they
    // are dropped and an honest agent is served again.
    let identity = broker.orders_identity();
    let mut served = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let sent = client()
            .post(format!("{}/v1/writs", broker.url))
            .bearer_auth(&identity)
            .json(&orders_request())
            .send()
            .await;
        // Refused at the cap (or cut off as the 503 races the request) until slots free.
        if sent.is_ok_and(|response| response.status() == 201) {
            served = true;
            break;
        }
    }
    assert!(served, "clients that stop reading keep their slots");
    drop(held);
    broker.stop().await;
}

#[tokio::test]
async fn a_body_announced_over_the_limit_is_refused_before_it_is_read() {
    let broker = bounded_broker(64, 8).await;
    let mut stream = TcpStream::connect(address(&broker)).await.unwrap();
    let identity = broker.orders_identity();
    let head = format!(
        "POST /v1/writs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {identity}\r\n\
         Content-Type: application/json\r\nContent-Length: 99999999\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buffer = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buffer))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&buffer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    broker.stop().await;
}
