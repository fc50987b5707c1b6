//! A real moto server (AWS STS, IAM, S3, ... emulated) on loopback, recording every request.
//!
//! ```no_run
//! # async fn demo() {
//! let moto = writ_testkit::Moto::start().await;
//! // point the AWS SDK's endpoint at moto.endpoint(), make calls, then:
//! let assume = moto.recorded_action("AssumeRole").await;
//! # }
//! ```
//!
//! moto accepts any credentials and enforces no policy: tests assert what reached it (the
//! recording of `GET /moto-api/recorder/download-recording`) and what its answers allow.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// A running `moto_server -H 127.0.0.1 -p PORT`, killed when dropped.
pub struct Moto {
    child: Child,
    port: u16,
    dir: PathBuf,
}

/// One request moto received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub url: String,
    pub headers: Value,
    /// The body as text (form-encoded for the query protocol of STS and IAM).
    pub body: String,
}

impl RecordedRequest {
    /// The form fields of a query-protocol request (`Action`, `RoleArn`, `Tags.member.1.Key`...),
    /// decoded, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// The value of form field `name`.
    pub fn field(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// The query-protocol action (`AssumeRole`, `PutRolePolicy`, ...).
    pub fn action(&self) -> Option<String> {
        self.field("Action")
    }
}

impl Moto {
    /// Starts moto on a free loopback port and waits until it answers. Panics (never skips)
    /// when `moto_server` is not installed.
    pub async fn start() -> Moto {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "writ-moto-{}-{port}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a directory for moto's recording");
        let log = std::fs::File::create(dir.join("moto.log")).expect("moto's log file");
        let child = match Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ENABLE_RECORDING", "true")
            .env("MOTO_RECORDER_FILEPATH", dir.join("recording.jsonl"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("moto's log file"))
            .stderr(log)
            .spawn()
        {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                "moto_server is not installed, and the AWS exchange tests need a real moto: \
                 run scripts/test.sh, which installs it (pip install \"moto[server]\")"
            ),
            Err(error) => panic!("cannot start moto_server: {error}"),
        };
        let mut moto = Moto { child, port, dir };
        moto.wait_until_ready().await;
        moto
    }

    async fn wait_until_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "moto_server exited ({status}) before answering:\n{}",
                    std::fs::read_to_string(self.dir.join("moto.log")).unwrap_or_default()
                );
            }
            let answer = client
                .get(format!("{}/moto-api/", self.endpoint()))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on port {} within 30 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops moto now (tests of AWS out of reach); dropping it does the same.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// An IAM client of this moto, with keys of its own (moto takes any while its
    /// authentication is off, as it is by default).
    pub fn iam(&self) -> aws_sdk_iam::Client {
        let config = aws_sdk_iam::Config::builder()
            .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
            .http_client(http_client())
            .credentials_provider(aws_sdk_iam::config::Credentials::new(
                "AKIAIOSFODNN7EXAMPLE",
                "test",
                None,
                None,
                "writ-testkit",
            ))
            .region(aws_sdk_iam::config::Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_iam::Client::from_conf(config)
    }

    /// An STS client acting with the keys of `credential`, a `credential_process` answer
    /// (`AccessKeyId`, `SecretAccessKey`, `SessionToken`).
    pub fn sts_as(&self, credential: &Value) -> aws_sdk_sts::Client {
        let text = |member: &str| credential[member].as_str().map(str::to_owned);
        let config = aws_sdk_sts::Config::builder()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
            .http_client(http_client())
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                text("AccessKeyId").expect("an AccessKeyId"),
                text("SecretAccessKey").expect("a SecretAccessKey"),
                text("SessionToken"),
                None,
                "writ-testkit",
            ))
            .region(aws_sdk_sts::config::Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_sts::Client::from_conf(config)
    }

    /// What GetCallerIdentity answers to the keys of `credential` (moto knows the sessions it
    /// issued: an assumed role's ARN).
    pub async fn caller_arn(&self, credential: &Value) -> String {
        let identity = self
            .sts_as(credential)
            .get_caller_identity()
            .send()
            .await
            .expect("GetCallerIdentity");
        identity.arn().unwrap_or_default().to_owned()
    }

    /// Creates the IAM role `name` under `path` (`/writ/`), which account 123456789012 may
    /// assume with session tags and a source identity, as the broker does.
    pub async fn create_role(&self, path: &str, name: &str) {
        let trust = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": { "AWS": "arn:aws:iam::123456789012:root" },
                "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
            }]
        });
        self.iam()
            .create_role()
            .role_name(name)
            .path(path)
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .expect("moto creates the role");
    }

    /// `http://127.0.0.1:PORT`: the endpoint for every AWS service.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every request moto received so far, in order.
    pub async fn recording(&self) -> Vec<RecordedRequest> {
        let text = reqwest::get(format!(
            "{}/moto-api/recorder/download-recording",
            self.endpoint()
        ))
        .await
        .expect("moto's recording")
        .text()
        .await
        .expect("moto's recording");
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let entry: Value = serde_json::from_str(line).expect("a recorded request");
                let raw = entry["body"].as_str().unwrap_or_default();
                let body = if entry["body_encoded"].as_bool().unwrap_or(false) {
                    String::from_utf8(STANDARD.decode(raw).expect("a base64 body"))
                        .expect("a text body")
                } else {
                    raw.to_owned()
                };
                RecordedRequest {
                    method: entry["method"].as_str().unwrap_or_default().to_owned(),
                    url: entry["url"].as_str().unwrap_or_default().to_owned(),
                    headers: entry["headers"].clone(),
                    body,
                }
            })
            .collect()
    }

    /// The query-protocol requests with `Action=<action>`, in order.
    pub async fn recorded_action(&self, action: &str) -> Vec<RecordedRequest> {
        self.recording()
            .await
            .into_iter()
            .filter(|request| request.action().as_deref() == Some(action))
            .collect()
    }
}

/// The HTTP client the AWS SDK runs on: rustls with ring, as in the broker.
fn http_client() -> aws_sdk_sts::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
