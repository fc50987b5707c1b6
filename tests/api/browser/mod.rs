//! The harness of writ's browser tests: a real OpenID Provider on loopback (oidc-provider under
//! Node, `tests/oidc-provider`) that people log in to with the authorization code flow and PKCE,
//! and a real headless Chromium driven through chromedriver (WebDriver) on loopback.
//!
//! Needs `/usr/bin/chromium`, `/usr/bin/chromedriver`, `node` and the provider's node modules:
//! `scripts/browser-deps.sh` installs them. Logs go to `target/test-artifacts/<test>.<what>.log`,
//! screenshots to `target/test-artifacts/<name>.png`.

mod oidc_login;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tempfile::TempDir;

/// The provider's script; its node modules are installed beside it by `scripts/browser-deps.sh`.
const PROVIDER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc-provider");
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a process may take to announce itself, and a page or an element to show up.
const STARTUP: Duration = Duration::from_secs(60);
const PAGE_WAIT: Duration = Duration::from_secs(15);

/// `target/test-artifacts`: logs and screenshots kept after the tests for a person to look at.
pub fn artifacts_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target dir>/tmp`.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A log file in [`artifacts_dir`] named after the running test and `what`, distinct within this
/// run (`<test>.<what>.log`, then `<test>.<what>.2.log`...).
fn artifact_log(what: &str) -> PathBuf {
    static TAKEN: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let test = std::thread::current()
        .name()
        .unwrap_or("test")
        .replace("::", ".");
    let mut taken = TAKEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    let dir = artifacts_dir();
    let mut path = dir.join(format!("{test}.{what}.log"));
    let mut n = 1;
    while !taken.insert(path.clone()) {
        n += 1;
        path = dir.join(format!("{test}.{what}.{n}.log"));
    }
    path
}

/// Waits for the first line of `child`'s standard output that `announce` recognises, and
/// answers what it made of it; the rest of the output is read and dropped. Panics with `log`'s
/// text when the process exits or stays silent.
fn await_announcement<T: Send + 'static>(
    child: &mut Child,
    name: &str,
    log: &Path,
    announce: impl Fn(&str) -> Option<T> + Send + 'static,
) -> T {
    let stdout = child.stdout.take().unwrap();
    let (sender, announced) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(found) = announce(&line) {
                let _ = sender.send(found);
                break;
            }
        }
        // Drained to the end, so that the process never blocks on a full pipe.
        lines.for_each(drop);
    });
    match announced.recv_timeout(STARTUP) {
        Ok(found) => found,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} did not announce where it listens; its log ({}):\n{}",
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

/// Sends `signal` to the process (or, with a `-` before the id, the process group) `target`.
fn send_signal(signal: &str, target: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", target])
        .stderr(Stdio::null())
        .status();
}

/// Stops `child` with SIGTERM, then SIGKILL if it is still running after a few seconds.
fn terminate(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    send_signal("-TERM", &child.id().to_string());
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A test OpenID Provider (`tests/oidc-provider/provider.mjs`) on a free port of 127.0.0.1,
/// with one client; stopped on drop.
pub struct OidcProvider {
    child: Child,
    issuer: String,
    client_id: String,
    log: PathBuf,
}

impl OidcProvider {
    /// A provider with one public client (PKCE, no secret) redirecting to `redirect_uri` exactly.
    /// Any login name signs in (with any password); `groups` gives the `groups` claim of some
    /// (others have none).
    pub fn start(client_id: &str, redirect_uri: &str, groups: &[(&str, &[&str])]) -> OidcProvider {
        OidcProvider::start_with(client_id, None, redirect_uri, groups)
    }

    /// As [`OidcProvider::start`], with a confidential client authenticating with
    /// `client_secret` in HTTP Basic (client_secret_basic) at the token endpoint, besides PKCE.
    pub fn start_with(
        client_id: &str,
        client_secret: Option<&str>,
        redirect_uri: &str,
        groups: &[(&str, &[&str])],
    ) -> OidcProvider {
        let groups: serde_json::Map<String, Value> = groups
            .iter()
            .map(|(login, groups)| ((*login).to_owned(), json!(groups)))
            .collect();
        let log = artifact_log("oidc-provider");
        let mut command = Command::new("node");
        command
            .arg("provider.mjs")
            .current_dir(PROVIDER_DIR)
            .env("PORT", "0")
            .env("CLIENT_ID", client_id)
            .env("REDIRECT_URI", redirect_uri)
            .env("GROUPS_JSON", Value::Object(groups).to_string())
            .env_remove("CLIENT_SECRET")
            .env_remove("NODE_OPTIONS")
            .env_remove("DEBUG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(secret) = client_secret {
            command.env("CLIENT_SECRET", secret);
        }
        let mut child = command.spawn().unwrap_or_else(|error| {
            panic!("node cannot start (scripts/browser-deps.sh installs what is needed): {error}")
        });
        let issuer = await_announcement(&mut child, "the OpenID Provider", &log, |line| {
            let announcement: Value = serde_json::from_str(line).ok()?;
            announcement["issuer"].as_str().map(str::to_owned)
        });
        OidcProvider {
            child,
            issuer,
            client_id: client_id.to_owned(),
            log,
        }
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Where the provider's standard error goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The provider's discovery document (`/.well-known/openid-configuration`).
    pub async fn discovery(&self) -> Value {
        let response = crate::helpers::client()
            .get(format!("{}/.well-known/openid-configuration", self.issuer))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Stops the provider with SIGTERM and expects it to exit cleanly.
    pub fn stop(mut self) {
        send_signal("-TERM", &self.child.id().to_string());
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the OpenID Provider ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "the OpenID Provider exited with {status}; its log ({}):\n{}",
            self.log.display(),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// A headless Chromium driven through its own chromedriver on a free port of 127.0.0.1, with a
/// profile of its own (no cookies from elsewhere). Closed with [`Browser::stop`], or on drop.
pub struct Browser {
    client: Option<Client>,
    chromedriver: Child,
    webdriver_url: String,
    session_id: Option<String>,
    log: PathBuf,
    _profile: TempDir,
}

impl Browser {
    pub async fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let log = artifact_log("chromedriver");
        let mut command = Command::new(CHROMEDRIVER);
        command
            .arg("--port=0")
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // A process group of its own: Chromium's processes are stopped with it on drop.
            .process_group(0);
        let mut chromedriver = command.spawn().unwrap_or_else(|error| {
            panic!("{CHROMEDRIVER} cannot start (scripts/browser-deps.sh installs it): {error}")
        });
        let port = await_announcement(&mut chromedriver, "chromedriver", &log, |line| {
            line.strip_prefix("ChromeDriver was started successfully on port ")?
                .trim_end_matches('.')
                .parse::<u16>()
                .ok()
        });
        let webdriver_url = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            client: None,
            chromedriver,
            webdriver_url,
            session_id: None,
            log,
            _profile: profile,
        };
        let mut capabilities = Capabilities::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    "--no-first-run",
                    "--no-default-browser-check",
                    // Traffic to the pages under test only: no proxy, no calls home.
                    "--no-proxy-server",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-domain-reliability",
                    "--disable-client-side-phishing-detection",
                    "--disable-sync",
                    "--disable-features=Translate,MediaRouter,OptimizationHints",
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&browser.webdriver_url)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "no Chromium session: {error}; chromedriver's log ({}):\n{}",
                    browser.log.display(),
                    std::fs::read_to_string(&browser.log).unwrap_or_default()
                )
            });
        browser.session_id = client.session_id().await.unwrap();
        browser.client = Some(client);
        browser
    }

    /// The WebDriver client, for what the methods here do not cover.
    pub fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    pub async fn goto(&self, url: &str) {
        self.client()
            .goto(url)
            .await
            .unwrap_or_else(|error| panic!("cannot open {url}: {error}"));
    }

    pub async fn current_url(&self) -> String {
        self.client().current_url().await.unwrap().to_string()
    }

    pub async fn page_source(&self) -> String {
        self.client().source().await.unwrap()
    }

    /// The first element matching `css`, waiting for it to show up.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client()
            .wait()
            .at_most(PAGE_WAIT)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(error) => panic!(
                "no element matches {css} on {} ({error}); the page:\n{}",
                self.current_url().await,
                self.page_source().await
            ),
        }
    }

    /// The first element matching `css` now, if any.
    pub async fn find(&self, css: &str) -> Option<fantoccini::elements::Element> {
        self.client()
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .into_iter()
            .next()
    }

    /// Types `text` into the field matching `css`, replacing what it held.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.wait_for(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.wait_for(css).await.click().await.unwrap();
    }

    /// The rendered text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.unwrap()
    }

    /// Waits until the page's URL satisfies `done`, and answers it.
    pub async fn wait_for_url(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let url = self.current_url().await;
            if done(&url) {
                return url;
            }
            if Instant::now() > deadline {
                panic!(
                    "the browser never reached {what}: it is on {url}; the page:\n{}",
                    self.page_source().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Writes a PNG of the window to `target/test-artifacts/<name>.png`, and answers its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client().screenshot().await.unwrap();
        let path = artifacts_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Ends the WebDriver session (Chromium quits), then chromedriver.
    pub async fn stop(mut self) {
        if let Some(client) = self.client.take() {
            client.close().await.unwrap();
            self.session_id = None;
        }
        self.stop_processes();
    }

    /// Kills chromedriver's process group (chromedriver and whatever Chromium left behind), then
    /// reaps chromedriver: the group's id stays chromedriver's until then, so no other process
    /// can be hit.
    fn stop_processes(&mut self) {
        if matches!(self.chromedriver.try_wait(), Ok(Some(_))) {
            return;
        }
        send_signal("-KILL", &format!("-{}", self.chromedriver.id()));
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
    }

    /// Ends the session from synchronous code (a drop, inside a Tokio runtime or not): on a
    /// thread of its own with its own runtime.
    fn delete_session_blocking(&self, session_id: &str) {
        let url = format!("{}/session/{session_id}", self.webdriver_url);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let _ = crate::helpers::client()
                    .delete(url)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
            });
        })
        .join();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(session_id) = self.session_id.take() {
            self.delete_session_blocking(&session_id);
        }
        self.stop_processes();
    }
}

/// Where a sign-in through [`login`] ended, and the screens it went through.
#[derive(Debug)]
pub struct SignedIn {
    /// The URL the browser left the provider for: the client's redirect URI, with `code`,
    /// `state` and `iss`.
    pub url: String,
    /// Consent screens clicked through (none with `tests/oidc-provider`, which grants what is
    /// asked).
    pub consent_screens: usize,
}

/// Signs in as `login` on `provider`'s development screens, where the browser is or is going
/// (an authorization request): fills the login form (any password does), goes through a consent
/// screen if one shows, and waits until the browser has left the provider. A browser with a
/// session at the provider may see no login form: the provider sends it straight back. Panics
/// on a provider's error page.
pub async fn login(browser: &Browser, provider: &OidcProvider, login: &str) -> SignedIn {
    let inside = format!("{}/", provider.issuer());
    let deadline = Instant::now() + PAGE_WAIT;
    // The pages whose form was sent: a page is submitted once, even while it is still shown.
    let mut submitted = HashSet::new();
    let mut consent_screens = 0;
    loop {
        let url = browser.current_url().await;
        if !url.starts_with(&inside) {
            return SignedIn {
                url,
                consent_screens,
            };
        }
        if browser.find("#oidc-provider-error").await.is_some() {
            panic!(
                "the OpenID Provider answered an error on {url}:\n{}\nits log ({}):\n{}",
                browser.text("body").await,
                provider.log_path().display(),
                std::fs::read_to_string(provider.log_path()).unwrap_or_default()
            );
        }
        if !submitted.contains(&url) {
            if browser
                .find("form input[name=prompt][value=login]")
                .await
                .is_some()
            {
                browser.fill("input[name=login]", login).await;
                browser.fill("input[name=password]", "any password").await;
                submitted.insert(url.clone());
                browser.click("form button[type=submit]").await;
                continue;
            }
            if browser
                .find("form input[name=prompt][value=consent]")
                .await
                .is_some()
            {
                submitted.insert(url.clone());
                consent_screens += 1;
                browser.click("form button[type=submit]").await;
                continue;
            }
        }
        if Instant::now() > deadline {
            panic!(
                "signing in as {login} never left the OpenID Provider: the browser is on {url}; \
                 the page:\n{}",
                browser.page_source().await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
