//! Configuring a [`Verifier`]: its service name, where keys come from, the revocation feed, the
//! cache and limits.
//!
//! Defaults are chosen to be safe under load: biscuit-auth's own run limits (1 ms) refuse valid
//! writs on a busy machine, so the verifier always sets its own.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use biscuit_auth::{AuthorizerLimits, PublicKey};

use crate::Verifier;
use crate::cache::SignatureCache;
use crate::key_source::{KeySource, spawn_scheduled_refresh};
use crate::keys::{KeySetError, KeyTable, TrustedKey};
use crate::request::base_authorizer;
use crate::revocation::{RevocationSettings, RevocationSyncError, RevocationView, Revocations};

/// Default signature cache capacity (writs).
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;
/// Default signature cache budget, in bytes of writ text (parsed tokens take a few times more).
pub const DEFAULT_CACHE_BYTES: usize = 16 * 1024 * 1024;
/// Default interval of the scheduled key set refresh.
pub const DEFAULT_KEY_REFRESH: Duration = Duration::from_secs(300);
/// Default minimum time between two fetches triggered by unknown key ids.
pub const DEFAULT_UNKNOWN_KEY_REFETCH: Duration = Duration::from_secs(10);
/// Default largest writ accepted, in bytes of base64 text.
pub const DEFAULT_MAX_WRIT_BYTES: usize = 32 * 1024;
/// Default largest number of attenuation blocks.
pub const DEFAULT_MAX_ATTENUATION_DEPTH: usize = 16;
/// Default bound on the age of the revocation view, past which every writ is refused.
pub const DEFAULT_MAX_REVOCATION_STALENESS: Duration = Duration::from_secs(15);
/// Longest revocation staleness bound accepted: 30 minutes. Writs live minutes, and a view that
/// is never older than this cannot miss an entry's replacement (a lifted suspension is served
/// for 65 minutes), so it never holds a stale entry forever.
pub const MAX_REVOCATION_STALENESS: Duration = Duration::from_secs(30 * 60);
/// Default interval between polls of the revocation feed while its stream is down.
pub const DEFAULT_REVOCATION_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Default Datalog run limits: room for writs with many rights, and a time bound generous enough
/// that a loaded 2-core machine does not refuse valid writs (biscuit's default is 1 ms).
pub fn default_run_limits() -> AuthorizerLimits {
    AuthorizerLimits {
        max_facts: 1000,
        max_iterations: 100,
        max_time: Duration::from_millis(20),
    }
}

/// Builds a [`Verifier`]; start with [`Verifier::builder`]. Exactly one key source is required:
/// [`static_keys`](Self::static_keys) (with [`approval_keys`](Self::approval_keys) if approval
/// is required) or [`key_set_url`](Self::key_set_url); and exactly one
/// revocation choice: [`revocation_feed`](Self::revocation_feed) (what a service should do),
/// a static [`revocations`](Self::revocations) view, or [`no_revocation`](Self::no_revocation)
/// (revoked writs are then granted until they expire).
#[derive(Debug)]
pub struct VerifierBuilder {
    service: String,
    static_keys: Option<Vec<(u32, PublicKey)>>,
    approval_keys: Option<Vec<PublicKey>>,
    key_set_url: Option<String>,
    approval_operations: BTreeSet<String>,
    key_refresh: Duration,
    unknown_key_refetch: Duration,
    http_timeout: Duration,
    cache_capacity: usize,
    cache_bytes: usize,
    limits: AuthorizerLimits,
    max_writ_bytes: usize,
    max_attenuation_depth: usize,
    revocation_feed: Option<String>,
    revocations: Option<RevocationView>,
    no_revocation: bool,
    max_revocation_staleness: Duration,
    revocation_poll_interval: Duration,
}

/// Why a verifier could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The service name is empty.
    #[error("the service name may not be empty")]
    EmptyServiceName,
    /// Neither static keys nor a key set URL was given.
    #[error("no key source: call static_keys or key_set_url")]
    NoKeySource,
    /// Both static keys (or static approval keys) and a key set URL were given.
    #[error("give either static keys or a key set URL, not both")]
    ConflictingKeySources,
    /// A static approval key is not an Ed25519 key.
    #[error("an approval key is not an Ed25519 key")]
    UnsupportedApprovalKeyAlgorithm,
    /// A static approval key is also a static root key: the key that mints writs may not
    /// approve them.
    #[error("an approval key is also a root key")]
    ApprovalKeyIsRootKey,
    /// Approval is required for some operation, with static keys but no static approval key:
    /// every such request would be refused.
    #[error("approval is required for some operations but no approval key is given")]
    NoApprovalKeys,
    /// A static key is not Ed25519.
    #[error("key {kid} is not an Ed25519 key")]
    UnsupportedKeyAlgorithm {
        /// The offending key id.
        kid: u32,
    },
    /// Two static keys share an id.
    #[error("key id {0} is given twice")]
    DuplicateKid(u32),
    /// The key refresh interval is zero.
    #[error("the key refresh interval must be longer than zero")]
    ZeroRefreshInterval,
    /// A remote key set needs a Tokio runtime (for the HTTP client and refreshes).
    #[error("a remote key set must be built inside a Tokio runtime")]
    NoRuntime,
    /// The HTTP client could not be created.
    #[error("cannot create the HTTP client: {0}")]
    HttpClient(String),
    /// The key set could not be fetched or read at build.
    #[error(transparent)]
    KeySet(#[from] KeySetError),
    /// The revocation staleness bound is zero or longer than [`MAX_REVOCATION_STALENESS`].
    #[error(
        "the revocation staleness bound must be longer than zero and at most {}",
        humantime::format_duration(MAX_REVOCATION_STALENESS)
    )]
    RevocationStaleness,
    /// The revocation poll interval is zero, or not shorter than the staleness bound (polling
    /// could then never keep the view fresh).
    #[error(
        "the revocation poll interval must be longer than zero and shorter than the staleness bound"
    )]
    RevocationPollInterval,
    /// Neither a revocation feed, nor a static revocation view, nor `no_revocation` was chosen.
    #[error(
        "no revocation source: call revocation_feed with the broker's base URL, or no_revocation \
         to accept revoked writs until they expire"
    )]
    NoRevocationSource,
    /// More than one of a revocation feed, a static revocation view and `no_revocation`.
    #[error("choose one of a revocation feed, a static revocation view or no_revocation")]
    ConflictingRevocationSources,
    /// The revocation feed URL is not an http(s) base URL.
    #[error("the revocation feed URL is not usable: {0}")]
    InvalidRevocationFeed(String),
    /// The revocation feed could not be read at build.
    #[error("reading the revocation feed failed: {0}")]
    RevocationFeed(RevocationSyncError),
    /// The verifier's own Datalog did not parse (a bug).
    #[error("internal Datalog error: {0}")]
    Internal(String),
}

impl VerifierBuilder {
    pub(crate) fn new(service: String) -> VerifierBuilder {
        VerifierBuilder {
            service,
            static_keys: None,
            approval_keys: None,
            key_set_url: None,
            approval_operations: BTreeSet::new(),
            key_refresh: DEFAULT_KEY_REFRESH,
            unknown_key_refetch: DEFAULT_UNKNOWN_KEY_REFETCH,
            http_timeout: Duration::from_secs(10),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            cache_bytes: DEFAULT_CACHE_BYTES,
            limits: default_run_limits(),
            max_writ_bytes: DEFAULT_MAX_WRIT_BYTES,
            max_attenuation_depth: DEFAULT_MAX_ATTENUATION_DEPTH,
            revocation_feed: None,
            revocations: None,
            no_revocation: false,
            max_revocation_staleness: DEFAULT_MAX_REVOCATION_STALENESS,
            revocation_poll_interval: DEFAULT_REVOCATION_POLL_INTERVAL,
        }
    }

    /// Trusts exactly these Ed25519 keys, by key id; no refresh.
    pub fn static_keys(mut self, keys: impl IntoIterator<Item = (u32, PublicKey)>) -> Self {
        self.static_keys = Some(keys.into_iter().collect());
        self
    }

    /// Trusts these Ed25519 keys to sign approval evidence (with [`static_keys`](Self::static_keys);
    /// a key set URL brings the broker's approval keys with its root keys). See
    /// [`require_approval_for`](Self::require_approval_for).
    pub fn approval_keys(mut self, keys: impl IntoIterator<Item = PublicKey>) -> Self {
        self.approval_keys = Some(keys.into_iter().collect());
        self
    }

    /// Requires human approval for requests whose operation is one of `operations` (added to
    /// those of earlier calls). Such a request is granted only if the writ grants it, as always,
    /// **and** the writ is an elevated writ whose approval evidence covers it: a third-party
    /// block right after the authority block, signed by a trusted approval key (static
    /// [`approval_keys`](Self::approval_keys), or the key set's `approval_keys`), naming this
    /// writ's id, with at least one approval, and approving this resource (exactly, or by a
    /// prefix it starts with) and this operation. Otherwise it is refused with
    /// [`Denial::ApprovalRequired`](crate::Denial::ApprovalRequired), and the
    /// [`Grant`](crate::Grant) of an approved request carries the evidence (who approved, when).
    /// Requests for other operations are unaffected, whether or not the writ is elevated.
    ///
    /// Fails closed without approval keys: with static keys, a builder that requires approval
    /// but has no approval key is refused ([`BuildError::NoApprovalKeys`]); with a key set URL,
    /// a key set that holds no usable approval key (yet, or any more) makes every request for
    /// these operations refused until a refresh brings one.
    pub fn require_approval_for(
        mut self,
        operations: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.approval_operations
            .extend(operations.into_iter().map(Into::into));
        self
    }

    /// Trusts the broker's key set at `url` (`.../.well-known/writ-keys`): fetched at build,
    /// refreshed on a schedule and, rate-limited, when a writ names an unknown key id.
    pub fn key_set_url(mut self, url: impl Into<String>) -> Self {
        self.key_set_url = Some(url.into());
        self
    }

    /// Follows the broker's revocation feed at `base_url` (the broker's base URL; the verifier
    /// reads `{base_url}/v1/revocations` and `{base_url}/v1/revocations/stream`). The feed is
    /// read at build, then followed in the background: a revoked writ is refused with
    /// [`Denial::Revoked`](crate::Denial::Revoked), and while the view is older than
    /// [`max_revocation_staleness`](Self::max_revocation_staleness) every writ is refused with
    /// [`Denial::RevocationViewStale`](crate::Denial::RevocationViewStale).
    pub fn revocation_feed(mut self, base_url: impl Into<String>) -> Self {
        self.revocation_feed = Some(base_url.into());
        self
    }

    /// Uses `view` as a static revocation view: consulted on every request, never updated, its
    /// age not enforced (tests, or a service that learns revocations another way). Exclusive
    /// with [`revocation_feed`](Self::revocation_feed).
    pub fn revocations(mut self, view: RevocationView) -> Self {
        self.revocations = Some(view);
        self
    }

    /// Builds a verifier that knows nothing of revocations: a revoked writ is granted until it
    /// expires. For tests, tools and services that take that risk knowingly; a service should
    /// follow the broker's [`revocation_feed`](Self::revocation_feed). Exclusive with it and
    /// with [`revocations`](Self::revocations).
    pub fn no_revocation(mut self) -> Self {
        self.no_revocation = true;
        self
    }

    /// Longest time the revocation view may go without being confirmed complete by the feed
    /// before every writ is refused (default 15 s; above zero, at most
    /// [`MAX_REVOCATION_STALENESS`], and well above twice the broker's heartbeat interval of
    /// about 2 s, or the stream is taken for silent and polling takes over).
    ///
    /// The trade-off: a short bound stops every service when the broker is unreachable; a long
    /// one lets a revoked writ be honoured that long by a verifier cut off from the broker but
    /// not from its callers.
    pub fn max_revocation_staleness(mut self, bound: Duration) -> Self {
        self.max_revocation_staleness = bound;
        self
    }

    /// Interval between polls of the revocation feed while its stream is down (default 1 s;
    /// above zero and below the staleness bound). The stream is retried meanwhile, with a backoff
    /// starting at this interval and capped at 30 s.
    pub fn revocation_poll_interval(mut self, every: Duration) -> Self {
        self.revocation_poll_interval = every;
        self
    }

    /// Interval of the scheduled key set refresh (default 5 minutes).
    pub fn key_refresh_interval(mut self, every: Duration) -> Self {
        self.key_refresh = every;
        self
    }

    /// Minimum time between two key set fetches triggered by unknown key ids (default 10 s), so
    /// tokens with made-up key ids cannot make the verifier hammer the broker. Zero disables the
    /// limit (tests only).
    pub fn unknown_key_refetch_interval(mut self, window: Duration) -> Self {
        self.unknown_key_refetch = window;
        self
    }

    /// Timeout of one key set request, and of connecting to the revocation feed (default 10 s;
    /// a revocation poll is also bounded by the staleness bound).
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// How many verified writs to remember (default 10 000); 0 disables the signature cache.
    pub fn signature_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Most bytes of writ text the signature cache holds (default 16 MiB); oldest writs leave
    /// first. Bounds memory even when a holder mints many distinct writs by attenuation.
    pub fn signature_cache_bytes(mut self, max_bytes: usize) -> Self {
        self.cache_bytes = max_bytes;
        self
    }

    /// Datalog run limits for every authorization (default [`default_run_limits`]).
    pub fn run_limits(mut self, limits: AuthorizerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Largest writ accepted, in bytes (default 32 KiB); larger ones are refused unparsed.
    pub fn max_writ_bytes(mut self, max: usize) -> Self {
        self.max_writ_bytes = max;
        self
    }

    /// Largest number of attenuation blocks accepted (default 16); each costs a signature check.
    pub fn max_attenuation_depth(mut self, max: usize) -> Self {
        self.max_attenuation_depth = max;
        self
    }

    /// Builds the verifier; with a key set URL this fetches the key set first and starts the
    /// scheduled refresh on the current Tokio runtime; with a revocation feed it reads the feed
    /// and starts following it there.
    pub async fn build(self) -> Result<Verifier, BuildError> {
        if self.service.is_empty() {
            return Err(BuildError::EmptyServiceName);
        }
        match (
            self.revocation_feed.is_some(),
            self.revocations.is_some(),
            self.no_revocation,
        ) {
            (false, false, false) => return Err(BuildError::NoRevocationSource),
            (true, false, false) | (false, true, false) | (false, false, true) => {}
            _ => return Err(BuildError::ConflictingRevocationSources),
        }
        let revocation_settings = RevocationSettings {
            feed_url: self.revocation_feed,
            view: self.revocations,
            max_staleness: self.max_revocation_staleness,
            poll_interval: self.revocation_poll_interval,
            http_timeout: self.http_timeout,
        };
        revocation_settings.validate()?;
        let (keys, refresher) = match (self.static_keys, self.key_set_url) {
            (None, None) => return Err(BuildError::NoKeySource),
            (Some(_), Some(_)) => return Err(BuildError::ConflictingKeySources),
            (None, Some(_)) if self.approval_keys.is_some() => {
                return Err(BuildError::ConflictingKeySources);
            }
            (Some(keys), None) => {
                let approval_keys = self.approval_keys.unwrap_or_default();
                if !self.approval_operations.is_empty() && approval_keys.is_empty() {
                    return Err(BuildError::NoApprovalKeys);
                }
                let table = static_table(keys, approval_keys)?;
                (Arc::new(KeySource::fixed(table)), None)
            }
            (None, Some(url)) => {
                if self.key_refresh.is_zero() {
                    return Err(BuildError::ZeroRefreshInterval);
                }
                let runtime =
                    tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
                let client = reqwest::Client::builder()
                    // The key set is the root of trust: never follow a redirect elsewhere.
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(self.http_timeout)
                    .connect_timeout(self.http_timeout)
                    .build()
                    .map_err(|e| BuildError::HttpClient(e.to_string()))?;
                let source =
                    KeySource::remote(url, client, self.unknown_key_refetch, runtime.clone())
                        .await?;
                if !self.approval_operations.is_empty()
                    && source
                        .approval_keys(std::time::SystemTime::now())
                        .is_empty()
                {
                    tracing::warn!(
                        "approval is required for some operations but the key set holds no \
                         usable approval key: those requests are refused until it does"
                    );
                }
                let source = Arc::new(source);
                let refresher = spawn_scheduled_refresh(&source, self.key_refresh, &runtime);
                (source, Some(refresher))
            }
        };
        let base = base_authorizer(&self.service, self.limits.clone())
            .map_err(|e| BuildError::Internal(e.to_string()))?;
        let revocations = Revocations::start(revocation_settings).await?;
        Ok(Verifier {
            service: self.service,
            keys,
            cache: SignatureCache::new(self.cache_capacity, self.cache_bytes),
            base,
            limits: self.limits,
            max_writ_bytes: self.max_writ_bytes,
            max_attenuation_depth: self.max_attenuation_depth,
            approval_operations: self.approval_operations,
            refresher,
            revocations,
        })
    }
}

fn static_table(
    keys: Vec<(u32, PublicKey)>,
    approval_keys: Vec<PublicKey>,
) -> Result<KeyTable, BuildError> {
    let mut table = HashMap::new();
    for (kid, key) in keys {
        if !matches!(key, PublicKey::Ed25519(_)) {
            return Err(BuildError::UnsupportedKeyAlgorithm { kid });
        }
        let trusted = TrustedKey {
            key,
            not_after: None,
        };
        if table.insert(kid, trusted).is_some() {
            return Err(BuildError::DuplicateKid(kid));
        }
    }
    let mut approval = Vec::with_capacity(approval_keys.len());
    for key in approval_keys {
        if !matches!(key, PublicKey::Ed25519(_)) {
            return Err(BuildError::UnsupportedApprovalKeyAlgorithm);
        }
        if table.values().any(|root| root.key == key) {
            return Err(BuildError::ApprovalKeyIsRootKey);
        }
        approval.push(TrustedKey {
            key,
            not_after: None,
        });
    }
    Ok(KeyTable::new(table, approval))
}
