//! The approval page: approvers log in through a real OpenID Provider (oidc-provider on
//! loopback) and decide in a real headless Chromium (`browser.rs`); what its routes answer
//! without a browser, headers, refusals and bounds (`http.rs`).
//!
//! The browser reaches the broker as `localhost` while the provider is `127.0.0.1`: two sites,
//! as in production, so the login's way back is a cross-site navigation and the cookies'
//! `SameSite` rules apply as they would there.

mod browser;
mod http;

use std::time::Duration;

use serde_json::{Value, json};
use writ::config::LoginConfig;

use crate::approvals::APPROVAL_POLICIES;
use crate::browser::{Browser, OidcProvider, login};
use crate::helpers::{Backend, POLICIES, Setup, TestBroker, client};

pub const CLIENT_ID: &str = "writ-approval-page";

/// Logins of the test provider: alice and bob approve, mallory is in no approver group.
pub const PEOPLE: &[(&str, &[&str])] = &[
    ("alice", &["approvers", "staff"]),
    ("bob", &["approvers"]),
    ("mallory", &["staff"]),
];

/// A broker serving the approval page, and the provider its approvers log in with.
pub struct PageBroker {
    pub broker: TestBroker,
    provider: Option<OidcProvider>,
    /// The page's origin as the browser sees it: `http://localhost:<port>`.
    pub origin: String,
    /// The same broker at `http://127.0.0.1:<port>`.
    pub url: String,
    _secret_dir: tempfile::TempDir,
}

impl PageBroker {
    pub async fn start(backend: Backend) -> PageBroker {
        PageBroker::start_with(backend, |_| {}).await
    }

    /// As [`PageBroker::start`], with `tweak` applied to the configuration.
    pub async fn start_with(
        backend: Backend,
        tweak: impl FnOnce(&mut writ::config::Config) + Send + 'static,
    ) -> PageBroker {
        PageBroker::start_client(backend, None, tweak).await
    }

    /// As [`PageBroker::start_with`], the broker a confidential client of the provider when
    /// `secret` is given (in a file of mode 0600, as `client_secret_file` wants it).
    pub async fn start_client(
        backend: Backend,
        secret: Option<&str>,
        tweak: impl FnOnce(&mut writ::config::Config) + Send + 'static,
    ) -> PageBroker {
        // The port is chosen first: the provider must know the redirect URI, and the broker the
        // provider.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let origin = format!("http://localhost:{port}");
        let redirect_url = format!("{origin}/approvals/callback");
        let provider = OidcProvider::start_with(CLIENT_ID, secret, &redirect_url, PEOPLE);
        let issuer = provider.issuer().to_owned();
        let secret_dir = tempfile::tempdir().unwrap();
        let client_secret_file = secret.map(|secret| {
            use std::os::unix::fs::PermissionsExt;
            let path = secret_dir.path().join("client-secret");
            std::fs::write(&path, format!("{secret}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            path
        });
        let mut setup = Setup::new(backend);
        setup.policies = format!("{POLICIES}\n{APPROVAL_POLICIES}");
        setup.tweak = Box::new(move |config| {
            config.listen = format!("127.0.0.1:{port}").parse().unwrap();
            config.approvals.login = Some(LoginConfig {
                issuer,
                client_id: CLIENT_ID.into(),
                client_secret_file,
                redirect_url,
                principal_claim: "email".into(),
                groups_claim: "groups".into(),
                approver_groups: vec!["approvers".into()],
                session_ttl: Duration::from_secs(3600),
                scopes: vec!["email".into(), "groups".into()],
            });
            tweak(config);
        });
        let broker = TestBroker::start_with(setup).await;
        let url = broker.url.clone();
        PageBroker {
            broker,
            provider: Some(provider),
            origin,
            url,
            _secret_dir: secret_dir,
        }
    }

    pub fn provider(&self) -> &OidcProvider {
        self.provider.as_ref().expect("the provider runs")
    }

    /// Stops the OpenID Provider; the broker goes on.
    pub fn stop_provider(&mut self) {
        if let Some(provider) = self.provider.take() {
            provider.stop();
        }
    }

    /// `path` on the page, as the browser reaches it.
    pub fn page(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// GETs `path` from the broker without following redirects, with `session` as the
    /// `writ_session` cookie when given.
    pub async fn get(&self, path: &str, session: Option<&str>) -> reqwest::Response {
        let mut request = no_redirects().get(format!("{}{path}", self.url));
        if let Some(session) = session {
            request = request.header("cookie", format!("writ_session={session}"));
        }
        request.send().await.unwrap()
    }

    /// POSTs `form` to `path` as a browser form would, with `session` as the session cookie
    /// when given, and `headers` (such as `Origin`).
    pub async fn post_form(
        &self,
        path: &str,
        session: Option<&str>,
        headers: &[(&str, &str)],
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = no_redirects()
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish(),
            );
        if let Some(session) = session {
            request = request.header("cookie", format!("writ_session={session}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    pub async fn stop(mut self) {
        self.stop_provider();
        self.broker.stop().await;
    }
}

/// A client that answers redirects instead of following them.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs `person` in to the page in `browser`: from the sign-in link of the list, through the
/// provider, back to the list. Answers the session cookie's value.
pub async fn sign_in(browser: &Browser, page: &PageBroker, person: &str) -> String {
    browser.goto(&page.page("/approvals")).await;
    browser
        .click("a.button.primary[href^='/approvals/login']")
        .await;
    let provider = page.provider();
    browser
        .wait_for_url("the OpenID Provider", |url| {
            url.starts_with(provider.issuer())
        })
        .await;
    login(browser, provider, person).await;
    // The callback's page continues to the list by itself, from the page's own site: the
    // SameSite=Strict session cookie goes with that navigation.
    let landed = browser
        .wait_for_url("the approval page", |url| {
            url == page.page("/approvals") || url.starts_with(&page.page("/approvals?"))
        })
        .await;
    assert!(landed.starts_with(&page.origin), "{landed}");
    let who = browser.text(".who strong").await;
    assert_eq!(who, format!("{person}@example.test"));
    browser
        .client()
        .get_named_cookie("writ_session")
        .await
        .unwrap()
        .value()
        .to_owned()
}

/// An approval request's body with `task` and `justification`, deleting `orders/42` and
/// `orders/43` (the orders-cleanup policy: one approver).
pub fn delete_orders(task: &str, justification: &str) -> Value {
    json!({
        "task": task,
        "rights": [
            {"resource": "orders/42", "operations": ["delete"]},
            {"resource": "orders/43", "operations": ["delete"]},
        ],
        "services": ["orders-api"],
        "justification": justification,
    })
}

/// The agent's long-poll, as a task: it waits up to 30 s and answers status and body.
pub fn wait_for_decision(
    broker: &TestBroker,
    identity: &str,
    id: &str,
) -> tokio::task::JoinHandle<(u16, Value)> {
    let url = format!("{}/v1/approvals/{id}?wait=30s", broker.url);
    let identity = identity.to_owned();
    tokio::spawn(async move {
        let response = client()
            .get(url)
            .bearer_auth(identity)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    })
}

/// The value of the hidden `csrf` field of the page's first form.
pub fn csrf_token(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a form with a CSRF token") + marker.len();
    let end = html[start..].find('"').unwrap();
    html[start..start + end].to_owned()
}
