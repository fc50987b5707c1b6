//! The approval page's routes without a browser: headers, visitors without a session, logins
//! refused before the provider is asked, bounds.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::approvals::open_pending;
use crate::helpers::problem_type;

const HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];

fn assert_page_headers(response: &reqwest::Response, what: &str) {
    for (name, value) in HEADERS {
        assert_eq!(
            response.headers().get(*name).map(|v| v.to_str().unwrap()),
            Some(*value),
            "{what}: {name}"
        );
    }
}

#[tokio::test]
async fn every_answer_of_the_page_carries_its_security_headers() {
    let page = PageBroker::start(Backend::Sqlite).await;
    let id = open_pending(
        &page.broker,
        &page.broker.orders_identity(),
        &delete_orders("a task", "a reason"),
    )
    .await;
    let decision = format!("/approvals/{id}/decision");
    let answers = [
        ("GET /approvals", page.get("/approvals", None).await, 200),
        (
            "GET /approvals/history",
            page.get("/approvals/history", None).await,
            303,
        ),
        (
            "GET /approvals/{id}",
            page.get(&format!("/approvals/{id}"), None).await,
            303,
        ),
        (
            "GET /approvals/login",
            page.get("/approvals/login", None).await,
            303,
        ),
        (
            "GET /approvals/callback",
            page.get("/approvals/callback?code=x&state=y", None).await,
            400,
        ),
        (
            "GET /approvals/static/style.css",
            page.get("/approvals/static/style.css", None).await,
            200,
        ),
        (
            "POST /approvals/{id}/decision",
            page.post_form(&decision, None, &[], &[]).await,
            401,
        ),
        (
            "POST /approvals/logout",
            page.post_form("/approvals/logout", None, &[], &[]).await,
            303,
        ),
    ];
    for (what, response, status) in answers {
        assert_eq!(response.status(), status, "{what}");
        assert_page_headers(&response, what);
        let cache = response.headers()["cache-control"].to_str().unwrap();
        if what.ends_with("style.css") {
            assert_eq!(
                response.headers()["content-type"],
                "text/css; charset=utf-8"
            );
        } else {
            assert_eq!(cache, "no-store", "{what}");
        }
        if status == 200 && !what.ends_with("style.css") {
            assert_eq!(
                response.headers()["content-type"],
                "text/html; charset=utf-8",
                "{what}"
            );
            let html = response.text().await.unwrap();
            assert!(
                html.starts_with("<!DOCTYPE html><html lang=\"en\">"),
                "{what}"
            );
            assert!(!html.contains("<script"), "{what}");
        }
    }
    page.stop().await;
}

#[tokio::test]
async fn visitors_without_a_session_are_offered_a_login_and_decide_nothing() {
    let page = PageBroker::start(Backend::Sqlite).await;
    let identity = page.broker.orders_identity();
    let id = open_pending(
        &page.broker,
        &identity,
        &delete_orders("a secret task", "a secret reason"),
    )
    .await;
    // A missing, malformed, or unknown session cookie: the same.
    for session in [None, Some("garbage"), Some("A".repeat(43).as_str())] {
        let list = page.get("/approvals", session).await;
        assert_eq!(list.status(), 200);
        let html = list.text().await.unwrap();
        assert!(
            html.contains("href=\"/approvals/login?next=%2Fapprovals\""),
            "{html}"
        );
        assert!(!html.contains("a secret task"));

        let detail = page.get(&format!("/approvals/{id}"), session).await;
        assert_eq!(detail.status(), 303);
        assert_eq!(
            detail.headers()["location"],
            format!("/approvals/login?next=%2Fapprovals%2F{id}").as_str()
        );
        let decided = page
            .post_form(
                &format!("/approvals/{id}/decision"),
                session,
                &[("origin", &page.origin)],
                &[
                    ("decision", "approve"),
                    ("reason", "no session"),
                    ("csrf", "x"),
                ],
            )
            .await;
        assert_eq!(decided.status(), 401);
    }
    let (_, read) = crate::approvals::poll(&page.broker, &identity, &id, Duration::ZERO).await;
    assert_eq!(read["status"], "pending");

    // A login starts at the provider, with the state in a cookie for the page alone, and
    // writes nothing.
    let auditor = page.broker.admin_token("auditor", &["auditor"]).await;
    let before = page
        .broker
        .admin_get_json("/v1/audit?limit=1000", &auditor)
        .await;
    let login = page
        .get(&format!("/approvals/login?next=%2Fapprovals%2F{id}"), None)
        .await;
    assert_eq!(login.status(), 303);
    let location = reqwest::Url::parse(login.headers()["location"].to_str().unwrap()).unwrap();
    assert!(
        location.as_str().starts_with(page.provider().issuer()),
        "{location}"
    );
    let query: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["redirect_uri"], page.page("/approvals/callback"));
    assert!(query["scope"].split(' ').any(|scope| scope == "openid"));
    assert!(query["state"].len() >= 43 && query["nonce"].len() >= 43);
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("writ_login="), "{cookie}");
    for attribute in ["Path=/approvals", "Max-Age=600", "HttpOnly", "SameSite=Lax"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain http on loopback: {cookie}"
    );
    let after = page
        .broker
        .admin_get_json("/v1/audit?limit=1000", &auditor)
        .await;
    let reads = |answer: &Value| {
        answer["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|event| event["action"] != "audit.read")
            .count()
    };
    assert_eq!(
        reads(&before),
        reads(&after),
        "starting a login writes nothing"
    );
    page.stop().await;
}

/// `writ_login=<value>` of a login started now.
async fn login_cookie(page: &PageBroker) -> (String, String) {
    let login = page.get("/approvals/login", None).await;
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("writ_login=")
        .unwrap()
        .to_owned();
    let location = reqwest::Url::parse(login.headers()["location"].to_str().unwrap()).unwrap();
    let state = location
        .query_pairs()
        .find(|(key, _)| key == "state")
        .unwrap()
        .1
        .into_owned();
    (value, state)
}

async fn callback(page: &PageBroker, query: &str, cookie: Option<&str>) -> (u16, String) {
    let mut request = no_redirects().get(format!("{}/approvals/callback?{query}", page.url));
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("writ_login={cookie}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn callbacks_without_their_login_state_are_refused_before_the_provider_is_asked() {
    let page = PageBroker::start_with(Backend::Sqlite, |config| {
        config.audit_refusal_window = Duration::from_secs(1);
    })
    .await;
    let (sealed, state) = login_cookie(&page).await;
    // The provider answers a code it never issued with an error: the code was sent to it.
    let (status, html) =
        callback(&page, &format!("code=forged&state={state}"), Some(&sealed)).await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("code_refused"), "{html}");

    // Without the provider, nothing below needs it: each is refused on its own.
    let mut page = page;
    page.stop_provider();
    let altered = format!("{}x", &sealed[..sealed.len() - 1]);
    let started = Instant::now();
    let sealed = Some(sealed.as_str());
    for (query, cookie, status, reason) in [
        (
            "code=c&state=s".to_owned(),
            None,
            400,
            "login_state_missing",
        ),
        (
            "code=c&state=s".to_owned(),
            Some("garbage"),
            400,
            "login_state_invalid",
        ),
        (
            format!("code=c&state={state}"),
            Some(altered.as_str()),
            400,
            "login_state_invalid",
        ),
        (
            "code=c&state=another".to_owned(),
            sealed,
            400,
            "login_state_invalid",
        ),
        ("code=c".to_owned(), sealed, 400, "login_state_invalid"),
        (
            format!("code=c&state={state}&iss=http%3A%2F%2F127.0.0.1%3A1"),
            sealed,
            400,
            "issuer_mismatch",
        ),
        (
            format!("error=access_denied&state={state}"),
            sealed,
            400,
            "provider_refused",
        ),
        (format!("state={state}"), sealed, 400, "code_missing"),
        // Everything in order: only now is the provider asked, and it is gone.
        (
            format!("code=c&state={state}&state=other"),
            sealed,
            503,
            "provider_unavailable",
        ),
    ] {
        let (answered, html) = callback(&page, &query, cookie).await;
        assert_eq!(answered, status, "{query}: {html}");
        assert!(html.contains(reason), "{query}: {reason} not in {html}");
        assert!(html.contains("href=\"/approvals/login\""), "{html}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused without waiting on the provider"
    );

    // Refusals before an ID token verified are counted, not written one by one.
    let auditor = page.broker.admin_token("auditor", &["auditor"]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let counted = loop {
        let events = page
            .broker
            .admin_get_json("/v1/audit?action=approver.login", &auditor)
            .await;
        let events = events["events"].as_array().unwrap().clone();
        let total: u64 = events
            .iter()
            .map(|event| {
                let details: Value =
                    serde_json::from_str(event["details"].as_str().unwrap()).unwrap();
                assert_eq!(details["aggregated"], true, "{event}");
                details["count"].as_u64().unwrap()
            })
            .sum();
        if total >= 10 || Instant::now() > deadline {
            break total;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(counted, 10, "every refusal counted once");
    page.stop().await;
}

#[tokio::test]
async fn forms_of_the_page_are_bounded_and_of_the_form_type() {
    let page = PageBroker::start(Backend::Sqlite).await;
    let large = "x".repeat(17 * 1024);
    let response = page
        .post_form("/approvals/logout", None, &[], &[("csrf", large.as_str())])
        .await;
    assert_eq!(response.status(), 413);
    let json = no_redirects()
        .post(format!("{}/approvals/logout", page.url))
        .json(&serde_json::json!({"csrf": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 415);
    page.stop().await;
}

#[tokio::test]
async fn without_a_login_provider_the_page_is_not_served() {
    let broker = crate::approvals::broker_on(Backend::Sqlite).await;
    for path in [
        "/approvals",
        "/approvals/login",
        "/approvals/static/style.css",
    ] {
        let (status, kind) = problem_type(broker.get(path).await).await;
        assert_eq!(
            (status, kind.as_str()),
            (404, "urn:writ:problem:not_found"),
            "{path}"
        );
    }
    broker.stop().await;
}

/// Sessions as the store keeps them, on both databases: found by the hash of their secret
/// until they expire, at most 16 per principal, ended with an audit event.
async fn sessions_are_kept_by_hash_and_bounded(database_url: &str) {
    use writ::audit::{AuditEvent, Outcome};
    use writ::login::{ApproverSession, LoginIdentity, SessionSecret};
    use writ::store::MAX_SESSIONS_PER_PRINCIPAL;

    let store = writ::store::connect(database_url).await.unwrap();
    let identity = |name: &str| LoginIdentity {
        principal: writ::admin::Principal::parse(name).unwrap(),
        groups: vec!["approvers".into()],
        issuer: "https://idp.example".into(),
        subject: name.into(),
        approver: true,
    };
    let event = || AuditEvent::new("approver.login", Outcome::Success, "test");
    let now = 1_000_000;
    let ttl = Duration::from_secs(300);
    let mut opened = Vec::new();
    for n in 0..MAX_SESSIONS_PER_PRINCIPAL + 2 {
        let (secret, session) = ApproverSession::open(identity("alice"), now + n, ttl).unwrap();
        store
            .open_session(&secret.id_hash(), &session, event())
            .await
            .unwrap();
        opened.push((secret, session));
    }
    let at = now + MAX_SESSIONS_PER_PRINCIPAL + 2;
    for (n, (secret, session)) in opened.iter().enumerate() {
        let found = store.approver_session(&secret.id_hash(), at).await.unwrap();
        if n < 2 {
            assert_eq!(found, None, "session {n} was ended by newer ones");
        } else {
            assert_eq!(found.as_ref(), Some(session), "session {n}");
        }
    }
    // Only the hash opens it: the secret itself is no key.
    let (newest, _) = opened.last().unwrap();
    assert_eq!(
        store.approver_session(newest.expose(), at).await.unwrap(),
        None
    );
    // An expired session is never answered.
    let (bob, bob_session) = ApproverSession::open(identity("bob"), now, ttl).unwrap();
    store
        .open_session(&bob.id_hash(), &bob_session, event())
        .await
        .unwrap();
    assert!(
        store
            .approver_session(&bob.id_hash(), now + 299)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .approver_session(&bob.id_hash(), now + 300)
            .await
            .unwrap(),
        None
    );
    // Ending one: the event is written with it, once.
    let ended = store
        .close_session(&newest.id_hash(), at, |session| {
            AuditEvent::new(
                "approver.login",
                Outcome::Success,
                session.principal.as_str(),
            )
        })
        .await
        .unwrap();
    assert_eq!(ended.unwrap().principal.as_str(), "alice");
    assert_eq!(
        store.approver_session(&newest.id_hash(), at).await.unwrap(),
        None
    );
    let again = store
        .close_session(&newest.id_hash(), at, |_| panic!("no event for no session"))
        .await
        .unwrap();
    assert!(again.is_none());
    assert!(SessionSecret::parse(newest.expose()).is_some());
}

#[tokio::test]
async fn sessions_are_kept_by_hash_and_bounded_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    sessions_are_kept_by_hash_and_bounded(&format!(
        "sqlite://{}",
        dir.path().join("writ.db").display()
    ))
    .await;
}

#[tokio::test]
async fn sessions_are_kept_by_hash_and_bounded_on_postgres() {
    let database = crate::helpers::PostgresDatabase::create().await;
    sessions_are_kept_by_hash_and_bounded(&database.url()).await;
}

/// A session for `name` in the page broker's store, as a login would open it; answers the
/// cookie's secret.
async fn session_for(page: &PageBroker, name: &str, approver: bool) -> String {
    use writ::audit::{AuditEvent, Outcome};
    use writ::login::{ApproverSession, LoginIdentity};
    let store = writ::store::connect(&page.broker.database_url)
        .await
        .unwrap();
    let identity = LoginIdentity {
        principal: writ::admin::Principal::parse(name).unwrap(),
        groups: vec!["approvers".into()],
        issuer: "https://idp.example".into(),
        subject: name.into(),
        approver,
    };
    let now = writ::time::unix_seconds(std::time::SystemTime::now());
    let (secret, session) = ApproverSession::open(identity, now, Duration::from_secs(600)).unwrap();
    store
        .open_session(
            &secret.id_hash(),
            &session,
            AuditEvent::new("approver.login", Outcome::Success, name),
        )
        .await
        .unwrap();
    secret.expose().to_owned()
}

#[tokio::test]
async fn hostile_decision_forms_and_queries_are_refused_and_decide_nothing() {
    let page = PageBroker::start(Backend::Sqlite).await;
    let identity = page.broker.orders_identity();
    let id = open_pending(
        &page.broker,
        &identity,
        &delete_orders("remove duplicates", "entered twice"),
    )
    .await;
    let carol = session_for(&page, "carol@example.test", true).await;
    let detail = page.get(&format!("/approvals/{id}"), Some(&carol)).await;
    assert_eq!(detail.status(), 200);
    let csrf = csrf_token(&detail.text().await.unwrap());
    let path = format!("/approvals/{id}/decision");
    let origin = [("origin", page.origin.as_str())];
    for form in [
        // A right that was never offered: a widening, whatever the form says.
        vec![
            ("decision", "approve"),
            ("right", "admin *"),
            ("reason", "r"),
        ],
        vec![
            ("decision", "approve"),
            ("right", "nospace"),
            ("reason", "r"),
        ],
        vec![("decision", "approve"), ("reason", "no right checked")],
        vec![
            ("decision", "approve"),
            ("right", "delete orders/42"),
            ("ttl", "abc"),
            ("reason", "r"),
        ],
        vec![
            ("decision", "approve"),
            ("right", "delete orders/42"),
            ("ttl", "0"),
            ("reason", "r"),
        ],
        vec![
            ("decision", "approve"),
            ("right", "delete orders/42"),
            ("ttl", "99999"),
            ("reason", "r"),
        ],
        vec![("decision", "maybe"), ("reason", "r")],
        vec![("decision", "approve"), ("right", "delete orders/42")],
    ] {
        let mut form = form;
        form.push(("csrf", csrf.as_str()));
        let response = page.post_form(&path, Some(&carol), &origin, &form).await;
        assert!(
            response.status().is_client_error(),
            "{form:?} answered {}",
            response.status()
        );
    }
    let (_, read) = crate::approvals::poll(&page.broker, &identity, &id, Duration::ZERO).await;
    assert_eq!(read["status"], "pending", "nothing was decided: {read:#}");
    assert_eq!(read["decisions"], serde_json::json!([]));

    for query in [
        "/approvals/history?status=bogus",
        "/approvals?before=garbage",
    ] {
        let response = page.get(query, Some(&carol)).await;
        assert!(
            response.status().is_client_error(),
            "{query} answered {}",
            response.status()
        );
    }
    // The same session and token do decide a well-formed form: the refusals above were the forms'.
    let denied = page
        .post_form(
            &path,
            Some(&carol),
            &origin,
            &[
                ("decision", "deny"),
                ("reason", "not today"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(denied.status(), 303);
    let (_, read) = crate::approvals::poll(&page.broker, &identity, &id, Duration::ZERO).await;
    assert_eq!(read["status"], "denied");
    // Logging out takes the session's CSRF token: without it (or with another) the session lives.
    for token in [None, Some("0".repeat(43))] {
        let mut form = Vec::new();
        if let Some(token) = &token {
            form.push(("csrf", token.as_str()));
        }
        let response = page
            .post_form("/approvals/logout", Some(&carol), &origin, &form)
            .await;
        assert_eq!(response.status(), 403, "{token:?}");
        assert_eq!(page.get("/approvals", Some(&carol)).await.status(), 200);
    }
    page.stop().await;
}
