//! People using the approval page in headless Chromium, logged in through the OpenID Provider.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::Value;

use super::*;
use crate::approvals::open_pending;
use crate::browser::Browser;

/// Waits until the page in `browser` shows `text` somewhere in its body (the page may still be
/// changing: a body that goes stale while it is read is read again).
async fn wait_for_text(browser: &Browser, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body = match browser.client().find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if body.contains(text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the page never said {text:?}; it says:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many elements match `css` on the page now.
async fn count(browser: &Browser, css: &str) -> usize {
    browser
        .client()
        .find_all(Locator::Css(css))
        .await
        .unwrap()
        .len()
}

async fn audit(page: &PageBroker, query: &str) -> Vec<Value> {
    let auditor = page.broker.admin_token("auditor", &["auditor"]).await;
    let answer = page
        .broker
        .admin_get_json(&format!("/v1/audit?{query}"), &auditor)
        .await;
    answer["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_approver_signs_in_and_approves_what_a_waiting_agent_asked_for() {
    let started = Instant::now();
    let page = PageBroker::start(Backend::Sqlite).await;
    let identity = page.broker.orders_identity();
    let id = open_pending(
        &page.broker,
        &identity,
        &delete_orders(
            "remove duplicate orders 42 and 43",
            "Orders 42 and 43 were entered twice when the shop retried a payment. \
             The customer asked us to remove the duplicates before the nightly invoice run.",
        ),
    )
    .await;
    let waiting = wait_for_decision(&page.broker, &identity, &id);

    let browser = Browser::start().await;
    // Not signed in: the page offers a login, and nothing else.
    browser.goto(&page.page("/approvals")).await;
    assert_eq!(browser.text("h1").await, "Sign in to decide");
    assert_eq!(count(&browser, "table").await, 0);
    browser.screenshot("approvals-sign-in").await;

    let session = sign_in(&browser, &page, "alice").await;
    assert_eq!(session.len(), 43, "a 256-bit secret");
    let row = browser.text("table.requests tbody tr").await;
    for expected in [
        "remove duplicate orders 42 and 43",
        "k8s:orders/report-bot",
        "delete orders/42",
        "delete orders/43",
        "Orders 42 and 43 were entered twice",
        "0 of 1",
        "yours to decide",
    ] {
        assert!(row.contains(expected), "{expected:?} not in {row:?}");
    }
    browser.screenshot("approvals-list").await;

    browser.click(&format!("a[href='/approvals/{id}']")).await;
    browser.wait_for("form.approve").await;
    let title = browser.client().title().await.unwrap();
    assert_eq!(
        title,
        "Request: remove duplicate orders 42 and 43 · writ approvals"
    );
    assert!(
        browser
            .text("blockquote.justification")
            .await
            .contains("before the nightly invoice run")
    );
    assert_eq!(browser.text(".status-line .badge").await, "pending");
    assert!(
        browser
            .text("body")
            .await
            .contains("No one has decided yet.")
    );
    // Tall enough for the whole request and both forms.
    browser.client().set_window_size(1280, 1800).await.unwrap();
    browser.screenshot("approval-detail").await;
    browser.client().set_window_size(1280, 900).await.unwrap();

    browser
        .fill("#approve-reason", "duplicates confirmed with the shop")
        .await;
    browser.click("form.approve button[type=submit]").await;
    wait_for_text(&browser, "duplicates confirmed with the shop").await;
    assert_eq!(
        browser.current_url().await,
        page.page(&format!("/approvals/{id}"))
    );
    assert_eq!(browser.text(".status-line .badge").await, "approved");
    assert_eq!(count(&browser, "form.approve").await, 0);
    assert!(
        browser
            .text("body")
            .await
            .contains("You approved this request.")
    );
    browser.screenshot("approval-approved").await;

    // The agent waiting on its long-poll receives the elevated writ.
    let (status, answer) = waiting.await.unwrap();
    assert_eq!(status, 200, "{answer:#}");
    assert_eq!(answer["status"], "approved");
    assert_eq!(answer["decisions"][0]["approver"], "alice@example.test");
    assert_eq!(
        answer["decisions"][0]["reason"],
        "duplicates confirmed with the shop"
    );
    let writ = answer["writ"].as_str().expect("the writ is handed over");
    let inspected = writ_verify::inspect(writ).unwrap();
    assert_eq!(inspected.blocks.len(), 2, "authority and approval evidence");

    // The request has left the pending list for the history, collected.
    browser
        .click("header nav a[href='/approvals/history']")
        .await;
    wait_for_text(&browser, "Requests that were decided or expired").await;
    let row = browser.text("table.requests tbody tr").await;
    for expected in [
        "remove duplicate orders 42 and 43",
        "approved",
        "1 of 1",
        "collected",
    ] {
        assert!(row.contains(expected), "{expected:?} not in {row:?}");
    }
    browser.screenshot("approvals-history").await;
    browser.click("header nav a[href='/approvals']").await;
    wait_for_text(&browser, "Nothing is waiting for a decision.").await;

    // Signing out ends the session: its cookie no longer opens the list.
    browser.click(".who button[type=submit]").await;
    wait_for_text(&browser, "You are signed out.").await;
    assert!(
        browser
            .client()
            .get_named_cookie("writ_session")
            .await
            .is_err()
    );
    let after = page.get("/approvals", Some(&session)).await;
    assert_eq!(after.status(), 200);
    let text = after.text().await.unwrap();
    assert!(text.contains("Sign in to decide"), "{text}");
    assert!(!text.contains("Pending requests"));

    let logins = audit(&page, "action=approver.login").await;
    let outcomes: Vec<(String, String)> = logins
        .iter()
        .map(|event| {
            let details: Value = serde_json::from_str(event["details"].as_str().unwrap()).unwrap();
            (
                event["actor"].as_str().unwrap().to_owned(),
                details["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("alice@example.test".into(), "logged_in".into()),
            ("alice@example.test".into(), "logged_out".into())
        ]
    );
    let decided = audit(&page, "action=approval.decided").await;
    let details: Value = serde_json::from_str(decided[0]["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["via"], "login");

    browser.stop().await;
    page.stop().await;
    eprintln!(
        "signed in, approved and signed out in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn what_agents_write_stays_text_and_forms_need_their_csrf_token() {
    let page = PageBroker::start(Backend::Sqlite).await;
    let identity = page.broker.orders_identity();
    let hostile_task = "<script>alert(1)</script> purge <img src=x onerror=alert(1)>";
    let hostile_justification =
        "<img src=x onerror=alert(2)> trust me\n<script>alert(3)</script><b>bold</b>";
    let id = open_pending(
        &page.broker,
        &identity,
        &delete_orders(hostile_task, hostile_justification),
    )
    .await;

    let browser = Browser::start().await;
    let session = sign_in(&browser, &page, "alice").await;
    for path in ["/approvals".to_owned(), format!("/approvals/{id}")] {
        browser.goto(&page.page(&path)).await;
        browser.wait_for("main h1").await;
        let source = browser.page_source().await;
        assert!(
            source.contains(
                "&lt;script&gt;alert(1)&lt;/script&gt; purge &lt;img src=x onerror=alert(1)&gt;"
            ),
            "{path}: the task is shown as text:\n{source}"
        );
        assert_eq!(count(&browser, "script").await, 0, "{path}");
        assert_eq!(count(&browser, "img").await, 0, "{path}");
        assert_eq!(count(&browser, "b").await, 0, "{path}");
        assert!(
            browser.client().get_alert_text().await.is_err(),
            "{path}: no alert"
        );
        assert!(
            browser
                .text("main")
                .await
                .contains("<script>alert(1)</script> purge")
        );
    }
    browser.screenshot("approval-hostile-text").await;
    assert_eq!(
        browser.text("blockquote.justification").await,
        "<img src=x onerror=alert(2)> trust me\n<script>alert(3)</script><b>bold</b>"
    );

    // Forms without the session's CSRF token, or from another origin, are refused.
    let html = page
        .get(&format!("/approvals/{id}"), Some(&session))
        .await
        .text()
        .await
        .unwrap();
    let csrf = csrf_token(&html);
    let decision = format!("/approvals/{id}/decision");
    let approve = [("decision", "approve"), ("reason", "forged")];
    let own = [("origin", page.origin.as_str())];
    fn with<'a>(approve: &[(&'a str, &'a str)], csrf: &'a str) -> Vec<(&'a str, &'a str)> {
        [approve, &[("csrf", csrf)]].concat()
    }
    for (form, headers) in [
        (approve.to_vec(), own.to_vec()),
        (with(&approve, "not-the-token"), vec![]),
        (with(&approve, &session), own.to_vec()),
        (
            with(&approve, &csrf),
            vec![("origin", "http://evil.localhost:1")],
        ),
        (
            with(&approve, &csrf),
            vec![("origin", "null"), ("sec-fetch-site", "cross-site")],
        ),
    ] {
        let refused = page
            .post_form(&decision, Some(&session), &headers, &form)
            .await;
        assert_eq!(refused.status(), 403, "{form:?} with {headers:?}");
        let text = refused.text().await.unwrap();
        assert!(text.contains("was not accepted"), "{text}");
    }
    let approver = page.broker.admin_token("carol", &["approver"]).await;
    let still = page
        .broker
        .admin_get_json("/v1/approvals?status=pending", &approver)
        .await;
    assert_eq!(still["approvals"][0]["id"], id.as_str());
    assert_eq!(still["approvals"][0]["decisions"], serde_json::json!([]));

    // Narrowing through the form: one of the two rights, and a shorter lifetime.
    browser.goto(&page.page(&format!("/approvals/{id}"))).await;
    browser.click("#right-1-0").await;
    browser.fill("#ttl", "120").await;
    browser
        .fill("#approve-reason", "only the first duplicate, briefly")
        .await;
    browser.click("form.approve button[type=submit]").await;
    wait_for_text(&browser, "only the first duplicate, briefly").await;
    assert_eq!(browser.text(".status-line .badge").await, "approved");
    let decided = page
        .broker
        .admin_get_json("/v1/approvals?status=approved", &approver)
        .await;
    let request = &decided["approvals"][0];
    assert_eq!(
        request["rights"],
        serde_json::json!([{"resource": "orders/42", "operations": ["delete"]}])
    );
    assert_eq!(request["ttl"], 120);
    assert_eq!(
        request["decisions"][0]["narrowed_to"],
        serde_json::json!([{"resource": "orders/42", "operations": ["delete"]}])
    );
    let (_, collected) = crate::approvals::poll(&page.broker, &identity, &id, Duration::ZERO).await;
    let writ = collected["writ"].as_str().unwrap();
    let inspected = writ_verify::inspect(writ).unwrap();
    let authority = &inspected.blocks[0];
    assert!(
        authority.contains(r#"right("orders/42", "delete")"#),
        "{authority}"
    );
    assert!(!authority.contains("orders/43"), "{authority}");

    browser.stop().await;
    page.stop().await;
}

#[tokio::test]
async fn a_login_without_an_approver_group_sees_nothing_to_approve() {
    let page = PageBroker::start(Backend::Sqlite).await;
    let identity = page.broker.orders_identity();
    let id = open_pending(
        &page.broker,
        &identity,
        &delete_orders("remove duplicate orders", "entered twice"),
    )
    .await;
    let browser = Browser::start().await;
    let session = sign_in(&browser, &page, "mallory").await;
    assert_eq!(browser.text("main h1").await, "Nothing for you to approve");
    assert!(browser.text("main").await.contains("staff"));
    assert_eq!(count(&browser, "table").await, 0);
    assert_eq!(count(&browser, "header nav").await, 0);
    assert!(!browser.page_source().await.contains(&id));
    browser.screenshot("approvals-not-an-approver").await;

    // Nor does she get the request, or a decision on it, by its address.
    let detail = page.get(&format!("/approvals/{id}"), Some(&session)).await;
    assert_eq!(detail.status(), 403);
    let html = detail.text().await.unwrap();
    assert!(html.contains("Nothing for you to approve"));
    assert!(!html.contains("remove duplicate orders"));
    let history = page.get("/approvals/history", Some(&session)).await;
    assert_eq!(history.status(), 403);
    let csrf = csrf_token(&html);
    let refused = page
        .post_form(
            &format!("/approvals/{id}/decision"),
            Some(&session),
            &[("origin", &page.origin)],
            &[
                ("csrf", &csrf),
                ("decision", "approve"),
                ("reason", "mine now"),
            ],
        )
        .await;
    assert_eq!(refused.status(), 403);
    let (_, pending) = crate::approvals::poll(&page.broker, &identity, &id, Duration::ZERO).await;
    assert_eq!(pending["status"], "pending");
    let refusals = audit(&page, "action=approval.decision_refused").await;
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0]["actor"], "mallory@example.test");
    assert_eq!(refusals[0]["reason"], "admin_role_missing");
    let logins = audit(&page, "action=approver.login").await;
    let details: Value = serde_json::from_str(logins[0]["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["approver"], false);
    assert_eq!(details["groups"], serde_json::json!(["staff"]));

    browser.stop().await;
    page.stop().await;
}

#[tokio::test]
async fn a_login_without_the_principal_claim_is_refused_and_recorded() {
    // A confidential client (its secret from a 0600 file, sent at the token endpoint) that
    // names approvers by a claim this provider does not send.
    let page = PageBroker::start_client(Backend::Sqlite, Some("approval-page-secret"), |config| {
        if let Some(login) = config.approvals.login.as_mut() {
            login.principal_claim = "upn".into();
        }
    })
    .await;
    let browser = Browser::start().await;
    browser.goto(&page.page("/approvals")).await;
    browser.click("a.button.primary").await;
    let provider = page.provider();
    browser
        .wait_for_url("the OpenID Provider", |url| {
            url.starts_with(provider.issuer())
        })
        .await;
    login(&browser, provider, "alice").await;
    wait_for_text(&browser, "Sign-in refused").await;
    let text = browser.text("main").await;
    assert!(text.contains("no \"upn\" claim"), "{text}");
    assert!(text.contains("principal_claim_missing"), "{text}");
    assert!(
        browser
            .client()
            .get_named_cookie("writ_session")
            .await
            .is_err()
    );
    assert!(
        browser
            .client()
            .get_named_cookie("writ_login")
            .await
            .is_err()
    );

    let logins = audit(&page, "action=approver.login").await;
    assert_eq!(logins.len(), 1, "{logins:#?}");
    assert_eq!(logins[0]["outcome"], "refused");
    assert_eq!(logins[0]["reason"], "principal_claim_missing");
    let details: Value = serde_json::from_str(logins[0]["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["subject"], "alice");
    assert_eq!(details["issuer"], page.provider().issuer());
    browser.stop().await;
    page.stop().await;
}
