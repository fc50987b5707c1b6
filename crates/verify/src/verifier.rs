//! The verifier: signature, then Datalog authorization of one request, then the grant.
//!
//! Order of a decision: the resource's canonical form (before anything of the writ is read, so
//! no grant ever meets a resource that could resolve elsewhere), size and shape limits, signatures and trusted values (or the signature
//! cache), the revocation view (when configured; on cache hits too), the request authorizer run,
//! and finally biscuit's verdict (with the approval check added to the run when the operation
//! requires approval). Denial reasons are refined with the trusted values (expired,
//! wrong audience, restricted), but biscuit's verdict is the last word: nothing here turns a
//! biscuit refusal into a grant.
//!
//! A prefix request (`authorize_pattern` with `P*`) takes the same path for one canonical
//! resource under `P`, with the approval check in its prefix form, and once biscuit granted it,
//! must also pass the proof of [`crate::prefix`] that every other resource under `P` would be
//! granted too. The proof can only refuse.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use biscuit_auth::error::Token;
use biscuit_auth::{
    Authorizer, AuthorizerBuilder, AuthorizerLimits, Biscuit, PublicKey, UnverifiedBiscuit,
};

use crate::approval::{self, ApprovalEvidence};
use crate::authority::{self, AuthorityValues};
use crate::cache::SignatureCache;
use crate::key_source::KeySource;
use crate::keys::Lookup;
use crate::refusal::{self, decode_denial, signature_denial};
use crate::request::RequestFacts;
use crate::revocation::{RevocationStatus, RevocationSyncError, Revocations, WritIdentity};
use crate::{Denial, Grant, ResourcePattern, VerifierBuilder, check_canonical_resource, prefix};

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
    /// Operations that need approval evidence (`require_approval_for`).
    pub(crate) approval_operations: BTreeSet<String>,
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
    /// Every block's revocation id, lowercase hex, authority first (in every grant).
    revocation_ids: Vec<String>,
    /// The key that signed the approval block (block 1, a third-party block), if any, and
    /// whether it was a trusted approval key when the evidence was read: a cache hit whose trust
    /// changed since is verified again.
    approval_block_key: Option<(PublicKey, bool)>,
    /// The evidence read from the approval block, if its key was trusted and it names this writ.
    approval: Option<ApprovalEvidence>,
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

/// The approval check of one request: the writ id the evidence must name, the approval keys
/// trusted now, and for a prefix request the prefix the evidence must cover whole.
pub(crate) struct ApprovalCheck<'a> {
    pub(crate) writ_id: &'a str,
    pub(crate) keys: &'a [PublicKey],
    pub(crate) prefix: Option<&'a str>,
}

/// What one decision is about: one resource, or every resource under a prefix.
#[derive(Clone, Copy)]
enum Target<'a> {
    Resource(&'a str),
    /// The prefix of a validated (canonical) prefix pattern, without its `*`.
    Prefix(&'a str),
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
            Target::Resource(resource),
            operation,
            now,
            OnUnknownKey::RefetchInBackground,
        )
    }

    /// Decides whether `writ` allows `operation` on **every** resource `pattern` names, now (by
    /// the system clock). An exact pattern is [`authorize`](Verifier::authorize) of its
    /// resource. A prefix pattern `P*` is granted only if the writ provably grants `operation`
    /// on every resource starting with `P`: for a service that hands out access to a whole
    /// prefix at once (the broker exchanging a writ for cloud credentials on a key prefix).
    ///
    /// Everything [`authorize`](Verifier::authorize) checks applies (signatures, limits,
    /// expiry, this service as audience, the revocation view, and for an operation that
    /// [requires approval](crate::VerifierBuilder::require_approval_for) evidence approving a
    /// prefix that covers `P`), and biscuit is run for a resource under `P` and has the last
    /// word. On top of that, the writ's shape must prove that the answer is the same for every
    /// resource under `P`, or the request is refused with [`Denial::PrefixNotProvable`]:
    ///
    /// - the broker-signed authority block grants `operation` on a **prefix** `R*` that `P`
    ///   starts with (an exact right never counts, even one whose text is `P`);
    /// - every attenuation block holds only checks of the forms [`attenuate`](crate::attenuate())
    ///   writes (resources, operations, services, expiry), no facts and no rules, and each of
    ///   its resource checks allows a prefix that `P` starts with (its exact resources never
    ///   cover a prefix). A block with any other Datalog (`$r != "P/secret"`, `reject if`, a
    ///   rule...) makes every prefix unprovable, even if it would not refuse anything.
    ///
    /// The argument for why this is sound is in the source (`src/prefix.rs`).
    ///
    /// ```
    /// # use writ_verify::{Denial, ResourcePattern, Verifier};
    /// # fn example(verifier: &Verifier, writ: &str) -> Result<(), Denial> {
    /// let reports = ResourcePattern::parse("reports/2026/*").expect("a valid pattern");
    /// let grant = verifier.authorize_pattern(writ, &reports, "read")?;
    /// println!("writ {} grants read on all of {reports}", grant.writ_id);
    /// # Ok(())
    /// # }
    /// ```
    pub fn authorize_pattern(
        &self,
        writ: &str,
        pattern: &ResourcePattern,
        operation: &str,
    ) -> Result<Grant, Denial> {
        self.authorize_pattern_at(writ, pattern, operation, SystemTime::now())
    }

    /// As [`authorize_pattern`](Verifier::authorize_pattern), at the time `now`, as
    /// [`authorize_at`](Verifier::authorize_at) is to [`authorize`](Verifier::authorize).
    pub fn authorize_pattern_at(
        &self,
        writ: &str,
        pattern: &ResourcePattern,
        operation: &str,
        now: SystemTime,
    ) -> Result<Grant, Denial> {
        let target = match (pattern.exact(), pattern.prefix()) {
            (Some(resource), _) => Target::Resource(resource),
            (None, Some(prefix)) => Target::Prefix(prefix),
            (None, None) => {
                return Err(Denial::Internal {
                    reason: "a resource pattern is neither exact nor a prefix",
                });
            }
        };
        self.decide(
            writ,
            target,
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
            Target::Resource(resource),
            operation,
            SystemTime::now(),
            OnUnknownKey::Deny,
        );
        match first {
            Err(Denial::UnknownKey { kid: Some(kid) }) if self.keys.is_remote() => {
                if self.keys.refetch_for(kid).await {
                    self.decide(
                        writ,
                        Target::Resource(resource),
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
        target: Target<'_>,
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
        // A prefix request runs biscuit for one canonical resource under the prefix.
        let resource = match target {
            Target::Resource(resource) => {
                check_canonical_resource(resource)
                    .map_err(|reason| Denial::NonCanonicalResource { reason })?;
                Cow::Borrowed(resource)
            }
            Target::Prefix(prefix) => {
                Cow::Owned(prefix::resource_under(prefix).ok_or(Denial::Internal {
                    reason: "no canonical resource under the prefix",
                })?)
            }
        };
        let writ = writ.trim();
        if writ.is_empty() {
            return Err(Denial::Malformed {
                reason: "the writ is empty",
            });
        }
        if writ.len() > self.max_writ_bytes {
            return Err(Denial::LimitsExceeded { limit: "writ size" });
        }
        let facts = RequestFacts::new(&resource, operation, now_secs);

        let verified = match self.cached(writ, now) {
            Some(cached) => cached,
            None => self.verify(writ, now, on_unknown)?,
        };
        // Revocation is checked for every request, cached or not, and before Datalog: a revoked
        // writ is refused as revoked whatever it asks.
        if let Some(revocations) = &self.revocations {
            revocations.state.check(&verified.identity())?;
        }
        // Datalog runs for every request, cached or not. The approval check trusts the approval
        // keys in force now, whatever they were when the writ was cached.
        let approval_keys = self
            .approval_operations
            .contains(operation)
            .then(|| self.keys.approval_keys(now));
        let prefix = match target {
            Target::Resource(_) => None,
            Target::Prefix(prefix) => Some(prefix),
        };
        let approval_check = approval_keys.as_deref().map(|keys| ApprovalCheck {
            writ_id: &verified.values.writ_id,
            keys,
            prefix,
        });
        let verdict = self
            .request_authorizer(&verified.token, facts, approval_check)?
            .authorize();
        let approval_operation = approval_keys.is_some().then_some(operation);
        let grant = self.conclude(&verified, verdict, now_secs, approval_operation)?;
        // Biscuit granted the one resource it was asked about; a prefix also needs the proof
        // that it would grant every other one under the prefix. Only ever a further refusal.
        if let Some(prefix) = prefix {
            prefix::prove(&verified.token, prefix, operation, &self.service)
                .map_err(|reason| Denial::PrefixNotProvable { reason })?;
        }
        Ok(grant)
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
        let approval_block_key = approval::approval_block_key(&token.external_public_keys())?
            .map(|block_key| (block_key, self.keys.is_approval_key(&block_key, now)));
        // Read only by a verifier that will report it (it requires approval for something).
        let approval = match approval_block_key {
            Some((block_key, true)) if !self.approval_operations.is_empty() => {
                approval::read_evidence(&token, &values.writ_id, block_key, self.limits.clone())?
            }
            _ => None,
        };
        let revocation_ids = token
            .revocation_identifiers()
            .iter()
            .map(hex::encode)
            .collect();
        let verified = Arc::new(VerifiedWrit {
            token,
            root_key_id,
            key,
            values,
            revocation_ids,
            approval_block_key,
            approval,
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
        // A key removed from (or retired in) the key set must stop cached writs at once too; an
        // approval key that left or joined the key set changes what the evidence says.
        let root_key_usable =
            self.keys.lookup(cached.root_key_id, now) == Lookup::Usable(cached.key);
        let approval_trust_unchanged = cached
            .approval_block_key
            .is_none_or(|(key, trusted)| self.keys.is_approval_key(&key, now) == trusted);
        if root_key_usable && approval_trust_unchanged {
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
        // One third-party block is allowed, right after the authority block: an elevated writ's
        // approval evidence. It is not an attenuation, so it does not count against the depth.
        let approval_blocks =
            approval::approval_block_key(&unverified.external_public_keys())?.map_or(0, |_| 1);
        if unverified.block_count() > self.max_attenuation_depth + 1 + approval_blocks {
            return Err(Denial::LimitsExceeded {
                limit: "attenuation depth",
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

    /// The authorizer for one request: prepared policy and limits, plus this request's facts,
    /// plus the approval check when the request's operation requires approval.
    pub(crate) fn request_authorizer(
        &self,
        token: &Biscuit,
        facts: RequestFacts,
        approval_check: Option<ApprovalCheck<'_>>,
    ) -> Result<Authorizer, Denial> {
        let internal = |_| Denial::Internal {
            reason: "cannot add the request facts",
        };
        let mut builder = self
            .base
            .clone()
            .fact(facts.time)
            .map_err(internal)?
            .fact(facts.resource)
            .map_err(internal)?
            .fact(facts.operation)
            .map_err(internal)?;
        if let Some(check) = approval_check {
            builder = approval::add_check(builder, check.writ_id, check.keys, check.prefix)
                .map_err(|_| Denial::Internal {
                    reason: "cannot add the approval check",
                })?;
        }
        builder
            .build(token)
            // The token verified, so a block that cannot be loaded was built wrongly, typically
            // an appended rule with unbound variables.
            .map_err(|_| Denial::UnsupportedFormat {
                reason: "a block cannot be loaded",
            })
    }

    /// Turns biscuit's verdict into the answer; `approval_operation` is the request's operation
    /// when it required approval.
    fn conclude(
        &self,
        verified: &VerifiedWrit,
        verdict: Result<usize, Token>,
        now_secs: u64,
        approval_operation: Option<&str>,
    ) -> Result<Grant, Denial> {
        let error = match verdict {
            Ok(_) => {
                // The check passed, so trusted evidence exists; it was also read when the writ
                // was verified. Both or neither: a grant without readable evidence is refused.
                let approval = match (approval_operation, &verified.approval) {
                    (None, _) => None,
                    (Some(_), Some(evidence)) => Some(evidence.clone()),
                    (Some(operation), None) => {
                        return Err(Denial::ApprovalRequired {
                            operation: operation.to_owned(),
                        });
                    }
                };
                let values = &verified.values;
                let approval_blocks = usize::from(verified.approval_block_key.is_some());
                return Ok(Grant {
                    writ_id: values.writ_id.clone(),
                    agent: values.agent.clone(),
                    task: values.task.clone(),
                    expires_at: values.effective_expires_at,
                    attenuation_depth: verified
                        .token
                        .block_count()
                        .saturating_sub(1 + approval_blocks),
                    root_key_id: verified.root_key_id,
                    approval,
                    revocation_ids: verified.revocation_ids.clone(),
                });
            }
            Err(error) => error,
        };
        Err(refusal::explain(
            &error,
            &verified.values,
            &self.service,
            now_secs,
            approval_operation,
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
