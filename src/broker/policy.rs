//! The policy set the broker decides with, and its live reload.
//!
//! Each decision takes one snapshot (an `Arc`) of the running set, so a reload never changes a
//! decision halfway and the hash an issued writ records is the hash of the set that allowed it.
//! A reload reads the policy directory, checks the new set in full (every file parses, every
//! issuer is configured, it holds at least one policy) and only then swaps it in. A refused set
//! leaves the running one deciding and says why: in the log, in the policy status (`GET
//! /v1/policy`, `/readyz`) and in the audit log. An empty or unreadable directory is refused like
//! any invalid set: at run time it is a half-finished deploy far more often than an intent to
//! refuse everything (to stop issuance, revoke or stop the broker).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use serde::{Deserialize, Serialize};

use super::Broker;
use crate::audit::{AuditEvent, Outcome, actions};
use crate::error::{DomainError, ErrorCode, codes};
use crate::policy::{
    Channel, DEV_POLICY, Explanation, PolicyError, PolicyFileDigest, PolicyFiles, PolicySet,
    RawWritRequest, RequestError, Subject, WritRequest,
};
use crate::time::unix_seconds;

/// The file name the built-in playground policy is hashed under.
const DEV_POLICY_FILE: &str = "dev-playground.toml";

/// The longest reload error kept and reported, in bytes.
const MAX_ERROR_BYTES: usize = 1024;

/// File digests named in one audit event; the rest are counted (the set's hash covers them all).
const MAX_AUDITED_FILES: usize = 32;

/// Most top-level claims an explained identity may carry (a real token has a few dozen).
const MAX_EXPLAIN_CLAIMS: usize = 64;

/// A question to the running policy set: this identity, this request, on this channel, then.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExplain {
    /// The configured issuer name, as policies name it.
    pub issuer: String,
    pub claims: serde_json::Map<String, Value>,
    /// As the body of `POST /v1/writs`.
    pub request: RawWritRequest,
    /// Decide as `POST /v1/approvals` would.
    #[serde(default)]
    pub approval: bool,
    /// RFC 3339; default now.
    #[serde(default)]
    pub at: Option<String>,
}

/// The explanation, with the hash of the set that gave it.
#[derive(Debug, Serialize)]
pub struct ExplainAnswer {
    pub policy_hash: String,
    #[serde(flatten)]
    pub explanation: Explanation,
}

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("{0}")]
    Request(#[from] RequestError),
    #[error("{0}")]
    Invalid(String),
}

impl DomainError for ExplainError {
    fn code(&self) -> ErrorCode {
        codes::INVALID_REQUEST
    }
}

/// What the audit log records as the actor of a reload.
const BROKER: &str = "broker";

/// The policy set the broker runs, and where a new one comes from.
pub struct Policies {
    /// `None` for the built-in playground policy, which is never reloaded.
    dir: Option<PolicyDir>,
    running: RwLock<Arc<LoadedPolicies>>,
    last_error: Mutex<Option<ReloadFailure>>,
    /// One reload at a time (the poll and a signal may come together).
    reloading: tokio::sync::Mutex<()>,
}

/// A policy directory and what its sets are checked against.
#[derive(Debug, Clone)]
struct PolicyDir {
    path: PathBuf,
    max_ttl: Duration,
    /// The configured issuers' names: a policy naming another could never match.
    issuers: Vec<String>,
}

/// A policy set as it runs: the set, and when it was loaded.
#[derive(Debug)]
pub struct LoadedPolicies {
    pub set: PolicySet,
    /// Unix seconds.
    pub loaded_at: i64,
}

/// A reload that was refused: why (files named relative to the policy directory), when, and
/// the hash of the files refused (`None` when they could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadFailure {
    pub message: String,
    /// Unix seconds.
    pub at: i64,
    pub hash: Option<String>,
}

/// What a broker reports of its policies.
#[derive(Debug, Clone)]
pub struct PolicyStatus {
    pub hash: String,
    /// Unix seconds.
    pub loaded_at: i64,
    pub files: Vec<PolicyFileDigest>,
    /// The last reload refused since the running set was loaded, while the files still differ.
    pub last_error: Option<ReloadFailure>,
}

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadTrigger {
    /// The periodic poll: a change is acted on once, not at every poll.
    Poll,
    /// SIGHUP: the files are read and checked again even if a poll already refused them.
    Signal,
}

impl ReloadTrigger {
    fn as_str(self) -> &'static str {
        match self {
            ReloadTrigger::Poll => "poll",
            ReloadTrigger::Signal => "signal",
        }
    }
}

/// What a reload did, before it is reported.
enum Attempt {
    /// The files are those of the running set.
    Unchanged,
    /// Refused at an earlier poll already: reported then.
    Known,
    Reloaded {
        old: Arc<LoadedPolicies>,
        new: Arc<LoadedPolicies>,
    },
    Refused {
        failure: ReloadFailure,
        files: Vec<PolicyFileDigest>,
    },
}

impl Policies {
    /// The policies of `dir` (reloaded as they change), or without one the built-in playground
    /// policy, checked against the configured `issuers`.
    pub fn load(
        dir: Option<&Path>,
        max_ttl: Duration,
        issuers: Vec<String>,
    ) -> Result<Policies, PolicyError> {
        let (set, dir) = match dir {
            Some(path) => {
                let dir = PolicyDir {
                    path: path.to_owned(),
                    max_ttl,
                    issuers,
                };
                (dir.load()?, Some(dir))
            }
            None => {
                let set = PolicySet::parse(Path::new(DEV_POLICY_FILE), DEV_POLICY, max_ttl)?;
                check_issuers(&set, &issuers)?;
                (set, None)
            }
        };
        tracing::info!(count = set.policies().len(), hash = %set.source.hash, "policies loaded");
        Ok(Policies {
            dir,
            running: RwLock::new(Arc::new(LoadedPolicies {
                set,
                loaded_at: unix_seconds(SystemTime::now()),
            })),
            last_error: Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The running set: one snapshot per decision.
    pub fn current(&self) -> Arc<LoadedPolicies> {
        Arc::clone(&self.running.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn status(&self) -> PolicyStatus {
        let running = self.current();
        PolicyStatus {
            hash: running.set.source.hash.clone(),
            loaded_at: running.loaded_at,
            files: running.set.source.files.clone(),
            last_error: self.last_error().clone(),
        }
    }

    fn last_error(&self) -> std::sync::MutexGuard<'_, Option<ReloadFailure>> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the directory and swaps in its set if it changed and is valid; `None` for the
    /// built-in policy, which has nothing to reload.
    async fn reload(&self, trigger: ReloadTrigger) -> Option<Attempt> {
        let dir = self.dir.clone()?;
        let _one = self.reloading.lock().await;
        let running = self.current();
        let at = || unix_seconds(SystemTime::now());
        let reading = dir.clone();
        // Read once: what is hashed (and compared, and reported) is what is parsed.
        let read = blocking(move || PolicyFiles::read(&reading.path)).await;
        let files = match read {
            Ok(files) if files.source.hash == running.set.source.hash => {
                // Back to the running set's files (or never left): nothing is wrong any more.
                self.clear_error();
                return Some(Attempt::Unchanged);
            }
            Ok(files) => files,
            Err(error) => {
                let failure = ReloadFailure {
                    message: dir.describe(&error),
                    at: at(),
                    hash: None,
                };
                return Some(self.refuse(trigger, failure, Vec::new()));
            }
        };
        let refused_already = self
            .last_error()
            .as_ref()
            .is_some_and(|failure| failure.hash.as_ref() == Some(&files.source.hash));
        if trigger == ReloadTrigger::Poll && refused_already {
            return Some(Attempt::Known);
        }
        let source = files.source.clone();
        let loading = dir.clone();
        match blocking(move || loading.reload(files)).await {
            Ok(set) => {
                let new = Arc::new(LoadedPolicies {
                    set,
                    loaded_at: at(),
                });
                *self.running.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&new);
                *self.last_error() = None;
                Some(Attempt::Reloaded { old: running, new })
            }
            Err(error) => {
                let failure = ReloadFailure {
                    message: dir.describe(&error),
                    at: at(),
                    hash: Some(source.hash),
                };
                Some(self.refuse(trigger, failure, source.files))
            }
        }
    }

    /// Forgets the last refused change, saying so in the log when there was one: the files are
    /// back to what runs.
    fn clear_error(&self) {
        if let Some(refused) = self.last_error().take() {
            tracing::info!(
                refused_hash = refused.hash.as_deref().unwrap_or("unreadable"),
                "policy files are back to the running set; the refused change is gone"
            );
        }
    }

    /// Records `failure` as the last error, unless a poll finds the very same one again (an
    /// unreadable directory stays unreadable): that was reported already.
    fn refuse(
        &self,
        trigger: ReloadTrigger,
        failure: ReloadFailure,
        files: Vec<PolicyFileDigest>,
    ) -> Attempt {
        let mut last = self.last_error();
        let reported = last
            .as_ref()
            .is_some_and(|known| known.hash == failure.hash && known.message == failure.message);
        if trigger == ReloadTrigger::Poll && reported {
            return Attempt::Known;
        }
        *last = Some(failure.clone());
        Attempt::Refused { failure, files }
    }
}

impl PolicyDir {
    /// The directory's set, checked in full.
    fn load(&self) -> Result<PolicySet, PolicyError> {
        self.checked(PolicyFiles::read(&self.path)?)
    }

    fn checked(&self, files: PolicyFiles) -> Result<PolicySet, PolicyError> {
        let set = PolicySet::from_files(files, self.max_ttl)?;
        check_issuers(&set, &self.issuers)?;
        Ok(set)
    }

    /// The set of a reload, from the files it read: checked in full, and never empty.
    fn reload(&self, files: PolicyFiles) -> Result<PolicySet, PolicyError> {
        let set = self.checked(files)?;
        if set.policies().is_empty() {
            return Err(PolicyError {
                location: self.path.display().to_string(),
                message: "no policies: [[policy]] tables in *.toml files (not *.test.toml); \
                          an empty set is refused and the running one stays"
                    .into(),
            });
        }
        Ok(set)
    }

    /// `error` with file names relative to the directory (as `files` names them: the
    /// directory's own path is the operator's business, not every reader's), bounded.
    fn describe(&self, error: &PolicyError) -> String {
        let dir = self.path.join("").display().to_string();
        let text = error.to_string().replace(&dir, "");
        let bare = self.path.display().to_string();
        let text = match text.strip_prefix(&bare) {
            Some(rest) => format!("policy_dir{rest}"),
            None => text,
        };
        truncate(text, MAX_ERROR_BYTES)
    }
}

/// A policy naming an issuer that is not configured could never match: that is a typo, refuse
/// it (at start and on reload alike).
fn check_issuers(set: &PolicySet, known: &[String]) -> Result<(), PolicyError> {
    for (issuer, origin) in set.issuers() {
        if !known.iter().any(|name| name == issuer) {
            return Err(PolicyError {
                location: origin.to_owned(),
                message: format!(
                    "issuer {issuer:?} is not a configured issuer ({})",
                    if known.is_empty() {
                        "none is: add an [[issuer]] to the configuration".to_owned()
                    } else {
                        format!("known: {}", known.join(", "))
                    }
                ),
            });
        }
    }
    Ok(())
}

/// Runs file reading off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PolicyError> + Send + 'static,
) -> Result<T, PolicyError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|error| {
            Err(PolicyError {
                location: "policy_dir".into(),
                message: format!("the reload stopped: {error}"),
            })
        })
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The first [`MAX_AUDITED_FILES`] digests, for an audit event.
fn audited_files(files: &[PolicyFileDigest]) -> Value {
    json!(&files[..files.len().min(MAX_AUDITED_FILES)])
}

impl Broker {
    /// The policy set this broker runs and the last reload it refused.
    pub fn policy_status(&self) -> PolicyStatus {
        self.policies.status()
    }

    /// How the running policy set decides one request, rule by rule (`POST /v1/policy/explain`).
    /// Nothing is issued or recorded: the caller is an admin or auditor asking a question.
    pub fn explain_policy(&self, raw: &RawExplain) -> Result<ExplainAnswer, ExplainError> {
        let request = WritRequest::parse(&raw.request)?;
        let at = match &raw.at {
            Some(text) => crate::time::parse_rfc3339(text)
                .map_err(|e| ExplainError::Invalid(format!("at: {e}")))?,
            None => SystemTime::now(),
        };
        if raw.claims.len() > MAX_EXPLAIN_CLAIMS {
            return Err(ExplainError::Invalid(format!(
                "claims: at most {MAX_EXPLAIN_CLAIMS} top-level claims"
            )));
        }
        let subject = Subject {
            issuer: &raw.issuer,
            claims: &raw.claims,
        };
        let channel = if raw.approval {
            Channel::Approval
        } else {
            Channel::Direct
        };
        let running = self.policies.current();
        let mut explanation = running.set.explain(subject, &request, channel, at);
        // Rules are named by file and line as `GET /v1/policy` names files: relative to the
        // policy directory, whose path is the operator's business.
        if let Some(dir) = &self.policies.dir {
            let prefix = dir.path.join("").display().to_string();
            for trace in explanation
                .denies
                .iter_mut()
                .chain(&mut explanation.policies)
            {
                if let Some(relative) = trace.origin.strip_prefix(&prefix) {
                    trace.origin = relative.to_owned();
                }
            }
        }
        Ok(ExplainAnswer {
            policy_hash: running.set.source.hash.clone(),
            explanation,
        })
    }

    /// Re-reads the policy directory and runs its set if it changed and is valid; a refused
    /// set is logged, kept as the status's `last_error` and audited, once per change on the
    /// poll and at every signal.
    pub async fn reload_policies(&self, trigger: ReloadTrigger) {
        let Some(attempt) = self.policies.reload(trigger).await else {
            return;
        };
        match attempt {
            Attempt::Unchanged => {
                if trigger == ReloadTrigger::Signal {
                    tracing::info!("policies unchanged");
                }
            }
            Attempt::Known => {}
            Attempt::Reloaded { old, new } => {
                let source = &new.set.source;
                tracing::info!(
                    count = new.set.policies().len(), old_hash = %old.set.source.hash,
                    hash = %source.hash, trigger = trigger.as_str(), "policies reloaded"
                );
                let event = AuditEvent::new(actions::POLICY_RELOADED, Outcome::Success, BROKER)
                    .with_details(json!({
                        "trigger": trigger.as_str(),
                        "old_hash": old.set.source.hash,
                        "new_hash": source.hash,
                        "policies": new.set.policies().len(),
                        "files": audited_files(&source.files),
                        "files_total": source.files.len(),
                    }));
                self.audit_best_effort(event).await;
            }
            Attempt::Refused { failure, files } => {
                let running = self.policies.current();
                tracing::warn!(
                    error = %failure.message,
                    hash = failure.hash.as_deref().unwrap_or("unreadable"),
                    running_hash = %running.set.source.hash, trigger = trigger.as_str(),
                    "policy reload refused; the running policies stay"
                );
                let event =
                    AuditEvent::new(actions::POLICY_RELOAD_REFUSED, Outcome::Refused, BROKER)
                        .with_details(json!({
                            "trigger": trigger.as_str(),
                            "error": failure.message,
                            "hash": failure.hash,
                            "running_hash": running.set.source.hash,
                            "files": audited_files(&files),
                            "files_total": files.len(),
                        }));
                self.audit_best_effort(event).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    const ONE: &str = "[[policy]]\nname = \"one\"\nissuer = \"k8s\"\nresources = [\"a/*\"]\n\
        operations = [\"read\"]\nservices = [\"api\"]\nmax_ttl = \"5m\"\n";

    fn policies(dir: &Path) -> Policies {
        Policies::load(Some(dir), Duration::from_secs(900), vec!["k8s".into()]).unwrap()
    }

    #[test]
    fn the_set_is_checked_against_the_configured_issuers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), ONE.replace("k8s", "gitlab")).unwrap();
        let error = Policies::load(
            Some(dir.path()),
            Duration::from_secs(900),
            vec!["k8s".into()],
        )
        .err()
        .unwrap();
        assert!(error.location.ends_with("a.toml:1"), "{error}");
        assert!(error.message.contains("\"gitlab\""), "{error}");
    }

    #[test]
    fn the_built_in_policy_is_hashed_as_its_file_and_never_reloaded() {
        let policies = Policies::load(
            None,
            Duration::from_secs(900),
            vec![crate::config::DEV_ISSUER_NAME.into()],
        )
        .unwrap();
        let status = policies.status();
        assert_eq!(status.files.len(), 1);
        assert_eq!(status.files[0].name, DEV_POLICY_FILE);
        let expected = crate::policy::PolicySource::of(&[(DEV_POLICY_FILE.to_owned(), DEV_POLICY)]);
        assert_eq!(status.hash, expected.hash);
        assert!(policies.dir.is_none());
    }

    #[tokio::test]
    async fn a_valid_change_is_swapped_in_and_an_invalid_one_keeps_the_running_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), ONE).unwrap();
        let policies = policies(dir.path());
        let first = policies.current();
        assert!(matches!(
            policies.reload(ReloadTrigger::Poll).await,
            Some(Attempt::Unchanged)
        ));

        std::fs::write(dir.path().join("b.toml"), ONE.replace("one", "two")).unwrap();
        let Some(Attempt::Reloaded { old, new }) = policies.reload(ReloadTrigger::Poll).await
        else {
            panic!("not reloaded");
        };
        assert_eq!(old.set.source.hash, first.set.source.hash);
        assert_eq!(new.set.policies().len(), 2);
        assert_eq!(policies.current().set.source.hash, new.set.source.hash);
        // A snapshot taken before keeps deciding with its own set.
        assert_eq!(first.set.policies().len(), 1);

        std::fs::write(dir.path().join("b.toml"), "[[policy]\n").unwrap();
        let Some(Attempt::Refused { failure, files }) = policies.reload(ReloadTrigger::Poll).await
        else {
            panic!("not refused");
        };
        assert!(failure.message.starts_with("b.toml:1:"), "{failure:?}");
        assert_eq!(files.len(), 2);
        assert_eq!(policies.current().set.source.hash, new.set.source.hash);
        assert_eq!(policies.status().last_error, Some(failure.clone()));
        // The next poll finds the same files: reported already.
        assert!(matches!(
            policies.reload(ReloadTrigger::Poll).await,
            Some(Attempt::Known)
        ));
        assert_eq!(policies.status().last_error, Some(failure));
        // A signal checks them again and reports again.
        assert!(matches!(
            policies.reload(ReloadTrigger::Signal).await,
            Some(Attempt::Refused { .. })
        ));
        // Put back as they run: nothing is wrong any more.
        std::fs::write(dir.path().join("b.toml"), ONE.replace("one", "two")).unwrap();
        assert!(matches!(
            policies.reload(ReloadTrigger::Poll).await,
            Some(Attempt::Unchanged)
        ));
        assert_eq!(policies.status().last_error, None);
    }

    #[tokio::test]
    async fn a_reload_naming_an_unknown_issuer_is_refused_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), ONE).unwrap();
        let policies = policies(dir.path());
        let text = format!(
            "{ONE}\n{}",
            ONE.replace("one", "two").replace("k8s", "gitlab")
        );
        std::fs::write(dir.path().join("a.toml"), text).unwrap();
        let Some(Attempt::Refused { failure, .. }) = policies.reload(ReloadTrigger::Poll).await
        else {
            panic!("not refused");
        };
        assert_eq!(
            failure.message,
            "a.toml:9: issuer \"gitlab\" is not a configured issuer (known: k8s)"
        );
        assert_eq!(policies.current().set.policies().len(), 1);
    }

    #[tokio::test]
    async fn an_empty_or_unreadable_directory_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("policies");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.toml"), ONE).unwrap();
        let policies = policies(&dir);
        let running = policies.current().set.source.hash.clone();

        std::fs::write(dir.join("a.toml"), "# nothing yet\n").unwrap();
        let Some(Attempt::Refused { failure, .. }) = policies.reload(ReloadTrigger::Poll).await
        else {
            panic!("an empty set was not refused");
        };
        assert!(
            failure.message.starts_with("policy_dir: no policies"),
            "{failure:?}"
        );
        assert!(failure.hash.is_some());

        std::fs::remove_dir_all(&dir).unwrap();
        let Some(Attempt::Refused { failure, files }) = policies.reload(ReloadTrigger::Poll).await
        else {
            panic!("an unreadable directory was not refused");
        };
        assert!(failure.message.starts_with("policy_dir: "), "{failure:?}");
        assert!(!failure.message.contains(&*root.path().to_string_lossy()));
        assert_eq!(failure.hash, None);
        assert!(files.is_empty());
        assert!(matches!(
            policies.reload(ReloadTrigger::Poll).await,
            Some(Attempt::Known)
        ));
        assert_eq!(policies.current().set.source.hash, running);
    }

    #[test]
    fn errors_are_bounded_on_a_character_boundary() {
        let text = truncate("é".repeat(1000), MAX_ERROR_BYTES);
        assert!(text.len() <= MAX_ERROR_BYTES + '…'.len_utf8());
        assert!(text.ends_with('…'));
        assert_eq!(truncate("short".into(), 10), "short");
    }
}
