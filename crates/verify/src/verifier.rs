//! The verifier: signature, then Datalog authorization of one request, then the grant.
//!
//! Order of a decision: the resource's canonical form (before anything of the writ is read, so
//! no grant ever meets a resource that could resolve elsewhere), size and shape limits, signatures and trusted values (or the signature
//! cache), the revocation view (when configured; on cache hits too), the request authorizer run,
//! and finally biscuit's verdict. Denial reasons are refined with the trusted values (expired,
//! wrong audience, restricted), but biscuit's verdict is the last word: nothing here turns a
//! biscuit refusal into a grant.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use biscuit_auth::error::Token;
use biscuit_auth::{
    Authorizer, AuthorizerBuilder, AuthorizerLimits, Biscuit, PublicKey, UnverifiedBiscuit,
};

use crate::authority::{self, AuthorityValues};
use crate::cache::SignatureCache;
use crate::key_source::KeySource;
use crate::keys::Lookup;
use crate::refusal::{self, decode_denial, signature_denial};
use crate::request::RequestFacts;
use crate::revocation::{RevocationStatus, RevocationSyncError, Revocations, WritIdentity};
use crate::{Denial, Grant, VerifierBuilder, check_canonical_resource};

/// Verifies writs for one service. Build it once (see [`Verifier::builder`]), share it behind an
/// `Arc`, and call [`authorize`](Verifier::authorize) per request.
#[derive(Debug)]
pub struct Verifier {
    pub(crate) service: String,
    pub(crate) keys: Arc<KeySource>,
    pub(crate) cache: SignatureCache<VerifiedWrit>,
    /// Limits, policy and `audience(service)`, prepared once; cloned per request.
    pub(crate) base: AuthorizerBuilder,
    pub(crate) limits: AuthorizerLimits,
    pub(crate) max_writ_bytes: usize,
    pub(crate) max_attenuation_depth: usize,
    pub(crate) refresher: Option<tokio::task::AbortHandle>,
    /// The revocation view and its sync task, when configured (the task stops with it).
    pub(crate) revocations: Option<Revocations>,
}

/// A writ whose signatures verified, with its trusted values: what the cache holds.
#[derive(Debug)]
pub(crate) struct VerifiedWrit {
    token: Biscuit,
    root_key_id: u32,
    key: PublicKey,
    values: AuthorityValues,
    /// Every block's revocation id, lowercase hex; empty when the verifier has no revocations.
    revocation_ids: Vec<String>,
}

impl VerifiedWrit {
    fn identity(&self) -> WritIdentity<'_> {
        WritIdentity {
            writ_id: &self.values.writ_id,
            agent: &self.values.agent,
            task: &self.values.task,
            issued_at: self.values.issued_at,
            revocation_ids: &self.revocation_ids,
        }
    }
}

/// Whether a synchronous call that meets an unknown key id starts a background key fetch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnUnknownKey {
    RefetchInBackground,
    Deny,
}

impl Verifier {
    /// Starts building a verifier for `service`, the name writs must list in `service(..)`.
    pub fn builder(service: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder::new(service.into())
    }

    /// The service name this verifier answers for (its `audience`).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The Datalog run limits applied to every authorization.
    pub fn run_limits(&self) -> &AuthorizerLimits {
        &self.limits
    }

    /// Number of writs in the signature cache (for metrics and tests).
    pub fn cached_writs(&self) -> usize {
        self.cache.len()
    }

    /// Fetches the remote key set now (no-op for static keys). The scheduled and on-demand
    /// refreshes make this unnecessary in normal operation.
    pub async fn refresh_keys(&self) -> Result<(), crate::KeySetError> {
        self.keys.refresh().await
    }

    /// The state of the revocation view, or `None` when the verifier has none (no feed and no
    /// static view).
    pub fn revocation_status(&self) -> Option<RevocationStatus> {
        self.revocations
            .as_ref()
            .map(|revocations| revocations.state.status())
    }

    /// Polls the revocation feed once now: reads every page after the view's cursor (or, if the
    /// view is stale, rebuilds it from the start of the feed) and confirms the view when done.
    /// No-op without a feed. The background sync makes this unnecessary in normal operation; it
    /// serves tests and tools.
    pub async fn sync_revocations_now(&self) -> Result<(), RevocationSyncError> {
        match &self.revocations {
            Some(revocations) => revocations.sync_now().await,
            None => Ok(()),
        }
    }

    /// Decides whether `writ` allows `operation` on `resource` now (by the system clock).
    ///
    /// Never blocks on I/O. With a remote key set, an unknown key id starts a background fetch
    /// (rate-limited) and this request is refused; see [`authorize_with_refresh`] to wait instead.
    ///
    /// [`authorize_with_refresh`]: Verifier::authorize_with_refresh
    pub fn authorize(&self, writ: &str, resource: &str, operation: &str) -> Result<Grant, Denial> {
        self.authorize_at(writ, resource, operation, SystemTime::now())
    }

    /// As [`authorize`](Verifier::authorize), at the time `now` (tests, replaying a decision).
    /// The revocation view is consulted as it is now, and its age measured now: `now` moves
    /// only the writ's clock.
    pub fn authorize_at(
        &self,
        writ: &str,
        resource: &str,
        operation: &str,
        now: SystemTime,
    ) -> Result<Grant, Denial> {
        self.decide(
            writ,
            resource,
            operation,
            now,
            OnUnknownKey::RefetchInBackground,
        )
    }

    /// As [`authorize`](Verifier::authorize), but when a remote key set does not know the writ's
    /// key id, waits for one rate-limited refetch (shared with concurrent callers) and tries
    /// again. The tower layer uses this, so a key rotation costs no refused request.
    pub async fn authorize_with_refresh(
        &self,
        writ: &str,
        resource: &str,
        operation: &str,
    ) -> Result<Grant, Denial> {
        let first = self.decide(
            writ,
            resource,
            operation,
            SystemTime::now(),
            OnUnknownKey::Deny,
        );
        match first {
            Err(Denial::UnknownKey { kid: Some(kid) }) if self.keys.is_remote() => {
                if self.keys.refetch_for(kid).await {
                    self.decide(
                        writ,
                        resource,
                        operation,
                        SystemTime::now(),
                        OnUnknownKey::Deny,
                    )
                } else {
                    first
                }
            }
            other => other,
        }
    }

    fn decide(
        &self,
        writ: &str,
        resource: &str,
        operation: &str,
        now: SystemTime,
        on_unknown: OnUnknownKey,
    ) -> Result<Grant, Denial> {
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Denial::Internal {
                reason: "the time is before 1970",
            })?
            .as_secs();
        check_canonical_resource(resource)
            .map_err(|reason| Denial::NonCanonicalResource { reason })?;
        let writ = writ.trim();
        if writ.is_empty() {
            return Err(Denial::Malformed {
                reason: "the writ is empty",
            });
        }
        if writ.len() > self.max_writ_bytes {
            return Err(Denial::LimitsExceeded { limit: "writ size" });
        }
        let facts = RequestFacts::new(resource, operation, now_secs);

        let verified = match self.cached(writ, now) {
            Some(cached) => cached,
            None => self.verify(writ, now, on_unknown)?,
        };
        // Revocation is checked for every request, cached or not, and before Datalog: a revoked
        // writ is refused as revoked whatever it asks.
        if let Some(revocations) = &self.revocations {
            revocations.state.check(&verified.identity())?;
        }
        // Datalog runs for every request, cached or not.
        let verdict = self.request_authorizer(&verified.token, facts)?.authorize();
        self.conclude(&verified, verdict, now_secs)
    }

    /// Verifies `writ` (signatures, then the v1 values) and caches the result: what is cached is
    /// "signatures verified, a v1 writ", true whatever a request asks.
    fn verify(
        &self,
        writ: &str,
        now: SystemTime,
        on_unknown: OnUnknownKey,
    ) -> Result<Arc<VerifiedWrit>, Denial> {
        let (token, root_key_id, key) = self.verify_signatures(writ, now, on_unknown)?;
        let values = authority::read(&token)?;
        let revocation_ids = if self.revocations.is_some() {
            token
                .revocation_identifiers()
                .iter()
                .map(hex::encode)
                .collect()
        } else {
            Vec::new()
        };
        let verified = Arc::new(VerifiedWrit {
            token,
            root_key_id,
            key,
            values,
            revocation_ids,
        });
        self.cache.insert(
            writ,
            verified.values.effective_expires_at,
            Arc::clone(&verified),
            now,
        );
        Ok(verified)
    }

    /// The cached verification of `writ`, if its key is still trusted with the same bytes.
    fn cached(&self, writ: &str, now: SystemTime) -> Option<Arc<VerifiedWrit>> {
        let cached = self.cache.get(writ, now)?;
        // A key removed from (or retired in) the key set must stop cached writs at once too.
        if self.keys.lookup(cached.root_key_id, now) == Lookup::Usable(cached.key) {
            Some(cached)
        } else {
            self.cache.remove(writ);
            None
        }
    }

    /// Decodes `writ` and verifies every block signature against the root key it names.
    fn verify_signatures(
        &self,
        writ: &str,
        now: SystemTime,
        on_unknown: OnUnknownKey,
    ) -> Result<(Biscuit, u32, PublicKey), Denial> {
        let unverified = UnverifiedBiscuit::from_base64(writ).map_err(decode_denial)?;
        if unverified.block_count() > self.max_attenuation_depth + 1 {
            return Err(Denial::LimitsExceeded {
                limit: "attenuation depth",
            });
        }
        if unverified
            .external_public_keys()
            .iter()
            .any(Option::is_some)
        {
            return Err(Denial::UnsupportedFormat {
                reason: "writs have no third-party blocks",
            });
        }
        let Some(kid) = unverified.root_key_id() else {
            return Err(Denial::UnknownKey { kid: None });
        };
        let key = match self.keys.lookup(kid, now) {
            Lookup::Usable(key) => key,
            Lookup::Retired => return Err(Denial::KeyRetired { kid }),
            Lookup::Unknown => {
                if on_unknown == OnUnknownKey::RefetchInBackground {
                    self.keys.refetch_in_background();
                }
                return Err(Denial::UnknownKey { kid: Some(kid) });
            }
        };
        let token = unverified.verify(key).map_err(signature_denial)?;
        Ok((token, kid, key))
    }

    /// The authorizer for one request: prepared policy and limits, plus this request's facts.
    pub(crate) fn request_authorizer(
        &self,
        token: &Biscuit,
        facts: RequestFacts,
    ) -> Result<Authorizer, Denial> {
        let internal = |_| Denial::Internal {
            reason: "cannot add the request facts",
        };
        self.base
            .clone()
            .fact(facts.time)
            .map_err(internal)?
            .fact(facts.resource)
            .map_err(internal)?
            .fact(facts.operation)
            .map_err(internal)?
            .build(token)
            // The token verified, so a block that cannot be loaded was built wrongly, typically
            // an appended rule with unbound variables.
            .map_err(|_| Denial::UnsupportedFormat {
                reason: "a block cannot be loaded",
            })
    }

    /// Turns biscuit's verdict into the answer.
    fn conclude(
        &self,
        verified: &VerifiedWrit,
        verdict: Result<usize, Token>,
        now_secs: u64,
    ) -> Result<Grant, Denial> {
        let error = match verdict {
            Ok(_) => {
                let values = &verified.values;
                return Ok(Grant {
                    writ_id: values.writ_id.clone(),
                    agent: values.agent.clone(),
                    task: values.task.clone(),
                    expires_at: values.effective_expires_at,
                    attenuation_depth: verified.token.block_count() - 1,
                    root_key_id: verified.root_key_id,
                });
            }
            Err(error) => error,
        };
        Err(refusal::explain(
            &error,
            &verified.values,
            &self.service,
            now_secs,
        ))
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        if let Some(refresher) = &self.refresher {
            refresher.abort();
        }
    }
}
