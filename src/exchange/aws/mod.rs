//! Exchanging a writ for AWS credentials: STS AssumeRole with a session policy made from the
//! writ's rights, and revocation through deny statements on the role.
//!
//! The broker's own AWS credentials are read once, at start, from the standard environment
//! variables `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and (for temporary credentials)
//! `AWS_SESSION_TOKEN` ([`BrokerAwsCredentials::from_env`]); no profile files, instance metadata
//! or web identity are consulted. They need `sts:AssumeRole`, `sts:TagSession` and
//! `sts:SetSourceIdentity` on each configured role (and the role's trust policy must allow
//! them), and `iam:GetRolePolicy`, `iam:PutRolePolicy` and `iam:DeleteRolePolicy` on the roles
//! for revocation.
//!
//! - [`policy`]: the session policy (pure).
//! - [`names`]: role session name, source identity and session tags made to fit AWS (pure).
//! - [`deny`]: the role's deny document for revoked writs (pure).
//! - [`AwsExchange`]: the client calling STS and IAM.

pub mod config;
pub mod deny;
pub mod names;
pub mod policy;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use aws_sdk_iam::operation::get_role_policy::GetRolePolicyError;
use aws_sdk_iam::operation::put_role_policy::PutRolePolicyError;
use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::timeout::TimeoutConfig;
use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region, SharedHttpClient};
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use writ_verify::ResourcePattern;

pub use config::{AwsExchangeConfig, AwsRoleConfig, STS_MIN_SESSION};
pub use deny::{DenyDocument, INLINE_POLICY_MAX, ROLE_POLICY_NAME};
pub use policy::{SESSION_POLICY_MAX, ScopeError, SessionPolicy, session_policy};

/// A TCP (and TLS) connection to STS or IAM must be up within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One attempt of a call, from sending to the whole answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// A call with its retries.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per call (the first and one retry of a transient failure).
pub const MAX_ATTEMPTS: u32 = 2;

/// The broker's own AWS credentials. `Debug` shows the access key id only.
#[derive(Clone)]
pub struct BrokerAwsCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl BrokerAwsCredentials {
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> BrokerAwsCredentials {
        BrokerAwsCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token,
        }
    }

    /// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, if set, `AWS_SESSION_TOKEN`.
    /// The error names the missing variable (never a value).
    pub fn from_env() -> Result<BrokerAwsCredentials, String> {
        let read = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        };
        let missing = |name: &str| {
            format!(
                "[exchange.aws] is configured but {name} is not set: the broker reads its AWS \
                 credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN"
            )
        };
        Ok(BrokerAwsCredentials {
            access_key_id: read("AWS_ACCESS_KEY_ID").ok_or_else(|| missing("AWS_ACCESS_KEY_ID"))?,
            secret_access_key: read("AWS_SECRET_ACCESS_KEY")
                .ok_or_else(|| missing("AWS_SECRET_ACCESS_KEY"))?,
            session_token: read("AWS_SESSION_TOKEN"),
        })
    }
}

/// The `credential_process` shape of a credentials file.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CredentialsFile {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
}

impl BrokerAwsCredentials {
    /// Reads the broker's credentials from `path` (mode 0600, JSON in the `credential_process`
    /// shape). The error names the file and what is wrong, never a value.
    pub fn from_file(path: &std::path::Path) -> Result<BrokerAwsCredentials, String> {
        let name = path.display();
        crate::keys::check_private_file(path)
            .map_err(|e| format!("exchange.aws.credentials_file: {e}"))?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("exchange.aws.credentials_file {name}: {e}"))?;
        let file: CredentialsFile = serde_json::from_str(&text).map_err(|_| {
            format!(
                "exchange.aws.credentials_file {name}: not JSON with AccessKeyId and SecretAccessKey"
            )
        })?;
        if file.access_key_id.trim().is_empty() || file.secret_access_key.trim().is_empty() {
            return Err(format!(
                "exchange.aws.credentials_file {name}: AccessKeyId and SecretAccessKey must not be empty"
            ));
        }
        Ok(BrokerAwsCredentials::new(
            file.access_key_id,
            file.secret_access_key,
            file.session_token.filter(|token| !token.trim().is_empty()),
        ))
    }

    /// The credentials `config` names: its file, or else the environment.
    pub fn configured(config: &AwsExchangeConfig) -> Result<BrokerAwsCredentials, String> {
        match &config.credentials_file {
            Some(path) => BrokerAwsCredentials::from_file(path),
            None => BrokerAwsCredentials::from_env(),
        }
    }
}

impl fmt::Debug for BrokerAwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerAwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// What a writ is exchanged with: who holds it, for which task, what it grants, until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssumeRequest {
    pub writ_id: String,
    pub task: String,
    pub agent: String,
    /// The writ's rights; those outside the role's resources are left out.
    pub rights: Vec<(ResourcePattern, String)>,
    pub writ_expires_at: SystemTime,
}

/// Credentials issued for a writ. `Debug` redacts the secret key and the session token.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// When the caller must stop using them: the writ's expiry (or STS's, if earlier). The
    /// session policy denies everything from then on.
    pub expiration: SystemTime,
    /// When STS lets them expire (at least 15 minutes after issue): until then a revocation
    /// must deny them on the role ([`AwsExchange::deny_writ`] with this as `until`).
    pub sts_expiration: SystemTime,
    /// The session's ARN (`arn:aws:sts::<account>:assumed-role/<role>/<session name>`).
    pub assumed_role_arn: Option<String>,
    /// The rights the session policy grants (the writ's, narrowed to the role's resources).
    pub granted: Vec<(ResourcePattern, String)>,
    /// The session policy sent to STS.
    pub session_policy: SessionPolicy,
    pub role_session_name: String,
    pub source_identity: String,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .field("expiration", &self.expiration)
            .field("sts_expiration", &self.sts_expiration)
            .field("assumed_role_arn", &self.assumed_role_arn)
            .field("granted", &self.granted)
            .field("role_session_name", &self.role_session_name)
            .field("source_identity", &self.source_identity)
            .finish_non_exhaustive()
    }
}

/// Why an exchange, deny or prune failed.
#[derive(Debug, thiserror::Error)]
pub enum AwsExchangeError {
    /// No role of that name is configured (the caller answers 404 or 403).
    #[error("no AWS role {0:?} is configured")]
    UnknownRole(String),
    /// The writ's rights cannot become AWS credentials (403).
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// STS or IAM could not be reached, timed out or is throttling (503).
    #[error("AWS {service} is unavailable: {detail}")]
    Unavailable {
        service: &'static str,
        detail: String,
    },
    /// STS or IAM answered with a refusal or an answer that cannot be read (502).
    #[error("AWS {service} refused: {code}: {message}")]
    Refused {
        service: &'static str,
        code: String,
        message: String,
    },
}

/// Turns an SDK failure into [`AwsExchangeError::Unavailable`] (no answer, timeout, throttled,
/// AWS's 5xx) or [`AwsExchangeError::Refused`] (any other answer).
fn sdk_error<E>(service: &'static str, error: SdkError<E>) -> AwsExchangeError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let unavailable = |detail: String| AwsExchangeError::Unavailable { service, detail };
    match &error {
        SdkError::TimeoutError(_) => unavailable("timed out".into()),
        SdkError::DispatchFailure(failure) => {
            let detail = if failure.is_timeout() {
                "timed out".into()
            } else {
                DisplayErrorContext(&error).to_string()
            };
            unavailable(detail)
        }
        SdkError::ServiceError(failure) => {
            let code = failure.err().code().unwrap_or("Unknown").to_owned();
            let message = failure.err().message().unwrap_or_default().to_owned();
            let server_error = failure.raw().status().is_server_error();
            let throttled = matches!(
                code.as_str(),
                "Throttling"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "ServiceUnavailable"
            );
            if throttled || server_error {
                unavailable(format!("{code}: {message}"))
            } else {
                AwsExchangeError::Refused {
                    service,
                    code,
                    message,
                }
            }
        }
        _ => AwsExchangeError::Refused {
            service,
            code: "UnreadableResponse".into(),
            message: DisplayErrorContext(&error).to_string(),
        },
    }
}

/// The client exchanging writs for credentials of the configured roles.
pub struct AwsExchange {
    sts: aws_sdk_sts::Client,
    iam: aws_sdk_iam::Client,
    roles: BTreeMap<String, AwsRoleConfig>,
    /// Deny documents are read, changed and written back: one change at a time in this
    /// process (IAM has no compare-and-set).
    deny_lock: tokio::sync::Mutex<()>,
}

impl fmt::Debug for AwsExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsExchange")
            .field("roles", &self.roles.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// An HTTPS client on rustls with ring (plain HTTP only to the loopback endpoint the
/// configuration allows).
fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

impl AwsExchange {
    /// A client for `config` (validated) acting with `credentials`.
    pub fn new(config: &AwsExchangeConfig, credentials: BrokerAwsCredentials) -> AwsExchange {
        let http = http_client();
        let credentials = Credentials::new(
            credentials.access_key_id,
            credentials.secret_access_key,
            credentials.session_token,
            None,
            "writ-broker-environment",
        );
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let retries = RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS);
        let region = Region::new(config.region.clone());

        let mut sts = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http.clone())
            .credentials_provider(credentials.clone())
            .region(region.clone())
            .timeout_config(timeouts.clone())
            .retry_config(retries.clone());
        let mut iam = aws_sdk_iam::Config::builder()
            .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
            .http_client(http)
            .credentials_provider(credentials)
            .region(region)
            .timeout_config(timeouts)
            .retry_config(retries);
        if let Some(endpoint) = &config.endpoint {
            sts = sts.endpoint_url(endpoint);
            iam = iam.endpoint_url(endpoint);
        }
        AwsExchange {
            sts: aws_sdk_sts::Client::from_conf(sts.build()),
            iam: aws_sdk_iam::Client::from_conf(iam.build()),
            roles: config
                .roles
                .iter()
                .map(|role| (role.name.clone(), role.clone()))
                .collect(),
            deny_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The configured role named `name`.
    pub fn role(&self, name: &str) -> Option<&AwsRoleConfig> {
        self.roles.get(name)
    }

    fn known_role(&self, name: &str) -> Result<&AwsRoleConfig, AwsExchangeError> {
        self.role(name)
            .ok_or_else(|| AwsExchangeError::UnknownRole(name.to_owned()))
    }

    /// Assumes `role` for the writ in `request`: a session limited by a session policy to the
    /// writ's rights within the role's resources and to the writ's lifetime, named after the
    /// task, with the agent as source identity and the session tags `writ-id`, `writ-task` and
    /// `writ-agent`. It lasts as long as the writ has left, within 15 minutes and the role's
    /// `max_session`.
    pub async fn assume(
        &self,
        role: &str,
        request: &AssumeRequest,
    ) -> Result<AwsCredentials, AwsExchangeError> {
        let role = self.known_role(role)?;
        let now = SystemTime::now();
        let remaining = request
            .writ_expires_at
            .duration_since(now)
            .map_err(|_| ScopeError::Expired)?;
        if remaining.is_zero() {
            return Err(ScopeError::Expired.into());
        }
        let granted = policy::within_role(&role.resources, &request.rights);
        let session_policy =
            policy::session_policy_in(role.partition(), &granted, request.writ_expires_at)?;
        let duration = session_duration(remaining, role.max_session);
        let role_session_name = names::role_session_name(&request.task);
        let source_identity = names::source_identity(&request.agent);
        let mut call = self
            .sts
            .assume_role()
            .role_arn(&role.role_arn)
            .role_session_name(&role_session_name)
            .policy(session_policy.as_json())
            .duration_seconds(duration)
            .source_identity(&source_identity);
        for (key, value) in [
            ("writ-id", &request.writ_id),
            ("writ-task", &request.task),
            ("writ-agent", &request.agent),
        ] {
            let tag = aws_sdk_sts::types::Tag::builder()
                .key(key)
                .value(names::tag_value(value))
                .build()
                .map_err(|e| AwsExchangeError::Refused {
                    service: "sts",
                    code: "InvalidTag".into(),
                    message: e.to_string(),
                })?;
            call = call.tags(tag);
        }
        let answer = call.send().await.map_err(|e| sdk_error("sts", e))?;
        let Some(issued) = answer.credentials() else {
            return Err(AwsExchangeError::Refused {
                service: "sts",
                code: "NoCredentials".into(),
                message: "AssumeRole answered without credentials".into(),
            });
        };
        let sts_expiration =
            SystemTime::try_from(*issued.expiration()).unwrap_or(request.writ_expires_at);
        Ok(AwsCredentials {
            access_key_id: issued.access_key_id().to_owned(),
            secret_access_key: issued.secret_access_key().to_owned(),
            session_token: issued.session_token().to_owned(),
            expiration: sts_expiration.min(request.writ_expires_at),
            sts_expiration,
            assumed_role_arn: answer.assumed_role_user().map(|user| user.arn().to_owned()),
            granted,
            session_policy,
            role_session_name,
            source_identity,
        })
    }

    /// Denies every session issued for `writ_id` on `role` until `until` (the credentials'
    /// [`AwsCredentials::sts_expiration`]), in the role's `writ-revoked-sessions` inline policy.
    /// Idempotent: run it again to heal a lost update (another broker replica writing the same
    /// policy at once). A document that would exceed AWS's limit, or that AWS refuses as over
    /// its limit, becomes one statement denying every session of the role issued before now.
    pub async fn deny_writ(
        &self,
        role: &str,
        writ_id: &str,
        until: SystemTime,
    ) -> Result<(), AwsExchangeError> {
        let role = self.known_role(role)?;
        let role_name = role_name(&role.role_arn);
        let _one_at_a_time = self.deny_lock.lock().await;
        let now = SystemTime::now();
        let current = self.read_denies(role_name).await?.unwrap_or_default();
        let document = current.prune(now).add(writ_id, until, now);
        match self.write_denies(role_name, &document).await {
            Err(WriteError::LimitExceeded(_)) => {
                let cut_off = document.cut_off(now);
                self.write_denies(role_name, &cut_off)
                    .await
                    .map_err(WriteError::into_error)
            }
            other => other.map_err(WriteError::into_error),
        }
    }

    /// Drops the deny statements of `role` no longer needed at `now` (their credentials have
    /// expired), and the policy itself when none is left.
    pub async fn prune_denies(&self, role: &str, now: SystemTime) -> Result<(), AwsExchangeError> {
        let role = self.known_role(role)?;
        let role_name = role_name(&role.role_arn);
        let _one_at_a_time = self.deny_lock.lock().await;
        let Some(current) = self.read_denies(role_name).await? else {
            return Ok(());
        };
        let pruned = current.prune(now);
        if pruned == current {
            return Ok(());
        }
        if pruned.is_empty() {
            let deleted = self
                .iam
                .delete_role_policy()
                .role_name(role_name)
                .policy_name(ROLE_POLICY_NAME)
                .send()
                .await;
            return match deleted {
                Ok(_) => Ok(()),
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_no_such_entity_exception()) =>
                {
                    Ok(())
                }
                Err(error) => Err(sdk_error("iam", error)),
            };
        }
        self.write_denies(role_name, &pruned)
            .await
            .map_err(WriteError::into_error)
    }

    /// Which of `writ_ids` the deny document of `role` does not deny (all of them when there
    /// is no document): what a lost update (two replicas writing the policy at once) dropped,
    /// to be denied again.
    pub async fn missing_denies(
        &self,
        role: &str,
        writ_ids: &[String],
    ) -> Result<Vec<String>, AwsExchangeError> {
        let role = self.known_role(role)?;
        let document = self
            .read_denies(role_name(&role.role_arn))
            .await?
            .unwrap_or_default();
        Ok(writ_ids
            .iter()
            .filter(|writ_id| !document.denies(writ_id))
            .cloned()
            .collect())
    }

    /// The role's deny document as stored (percent-decoded), `None` when there is none.
    pub async fn read_denies(
        &self,
        role_name: &str,
    ) -> Result<Option<DenyDocument>, AwsExchangeError> {
        let answer = self
            .iam
            .get_role_policy()
            .role_name(role_name)
            .policy_name(ROLE_POLICY_NAME)
            .send()
            .await;
        let stored = match answer {
            Ok(answer) => answer.policy_document,
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(GetRolePolicyError::is_no_such_entity_exception) =>
            {
                return Ok(None);
            }
            Err(error) => return Err(sdk_error("iam", error)),
        };
        let unreadable = |message: String| AwsExchangeError::Refused {
            service: "iam",
            code: "UnreadablePolicy".into(),
            message,
        };
        let decoded = percent_encoding::percent_decode_str(&stored)
            .decode_utf8()
            .map_err(|e| unreadable(e.to_string()))?;
        DenyDocument::parse(&decoded)
            .map(Some)
            .map_err(|e| unreadable(e.to_string()))
    }

    async fn write_denies(
        &self,
        role_name: &str,
        document: &DenyDocument,
    ) -> Result<(), WriteError> {
        self.iam
            .put_role_policy()
            .role_name(role_name)
            .policy_name(ROLE_POLICY_NAME)
            .policy_document(document.to_json())
            .send()
            .await
            .map(|_| ())
            .map_err(|error| {
                if error
                    .as_service_error()
                    .is_some_and(PutRolePolicyError::is_limit_exceeded_exception)
                {
                    WriteError::LimitExceeded(sdk_error("iam", error))
                } else {
                    WriteError::Other(sdk_error("iam", error))
                }
            })
    }
}

enum WriteError {
    LimitExceeded(AwsExchangeError),
    Other(AwsExchangeError),
}

impl WriteError {
    fn into_error(self) -> AwsExchangeError {
        match self {
            WriteError::LimitExceeded(e) | WriteError::Other(e) => e,
        }
    }
}

/// The role's name: the last segment of its ARN.
fn role_name(role_arn: &str) -> &str {
    role_arn.rsplit('/').next().unwrap_or(role_arn)
}

/// `DurationSeconds`: the writ's remaining life in whole seconds (rounded up), at least STS's
/// 15 minutes, at most `max_session`.
pub fn session_duration(remaining: Duration, max_session: Duration) -> i32 {
    let seconds = remaining
        .as_secs()
        .saturating_add(u64::from(remaining.subsec_nanos() > 0));
    let low = STS_MIN_SESSION.as_secs();
    let high = max_session.as_secs().max(low);
    i32::try_from(seconds.clamp(low, high)).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_duration_is_the_writs_life_within_sts_bounds() {
        let hour = Duration::from_secs(3600);
        assert_eq!(session_duration(Duration::from_secs(60), hour), 900);
        assert_eq!(
            session_duration(Duration::from_millis(1_200_500), hour),
            1201
        );
        assert_eq!(session_duration(Duration::from_secs(7200), hour), 3600);
        assert_eq!(session_duration(Duration::MAX, hour), 3600);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let broker = BrokerAwsCredentials::new("AKIDBROKER", "broker-secret", Some("tok".into()));
        let shown = format!("{broker:?}");
        assert!(shown.contains("AKIDBROKER"));
        assert!(!shown.contains("broker-secret") && !shown.contains("tok\""));
    }

    #[test]
    fn role_names_come_from_arns() {
        assert_eq!(
            role_name("arn:aws:iam::123456789012:role/a/b/writ-r"),
            "writ-r"
        );
        assert_eq!(role_name("arn:aws:iam::123456789012:role/writ-r"), "writ-r");
    }
}
