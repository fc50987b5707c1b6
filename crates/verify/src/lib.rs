//! Offline verification of **writs**, the short-lived Biscuit tokens the writ broker issues to AI
//! agents, for the services those agents call.
//!
//! A writ names one agent and task, the services that may accept it (`service(..)`), the rights
//! it grants (`right(resource, operation)`, exact or by prefix) and its expiry, signed by a
//! broker root key (Ed25519, identified by the token's `root_key_id`). A holder may attenuate it
//! (append blocks of checks) but never widen it. A service checks every request offline with the
//! broker's public keys:
//!
//! - [`Verifier`]: built once per service ([`Verifier::builder`]) with static keys or the
//!   broker's key set URL; [`Verifier::authorize`] answers a [`Grant`] or a [`Denial`] with a
//!   stable code. There is no way to authorize without a time: the clock is read for you, or
//!   given explicitly to [`Verifier::authorize_at`].
//! - [`WritLayer`] / [`WritService`]: tower middleware reading `Authorization: Bearer`, with
//!   problem+json refusals; with feature `axum`, the `WritGrant` extractor.
//! - [`Verifier::authorize_pattern`] (and [`authorize_pattern_at`](Verifier::authorize_pattern_at)):
//!   whether a writ grants an operation on **every** resource a [`ResourcePattern`] names, for
//!   services that hand out access to a whole prefix at once (the broker exchanging a writ for
//!   cloud credentials on a key prefix); see [below](#whole-prefixes).
//! - [`attenuate`] narrows a writ offline; [`inspect`] decodes one for display (unverified).
//! - [`check_canonical_resource`]: the canonical resource form of the writ contract. Resources
//!   are matched as text, so a verifier refuses a request for a non-canonical resource
//!   (`orders/../admin`, `orders/%2E%2E/x`, `a//b`) with [`Denial::NonCanonicalResource`]
//!   before it looks at any grant; the broker refuses them in requests and policies.
//! - Revocation ([`VerifierBuilder::revocation_feed`], required unless the builder is told
//!   [`no_revocation`](VerifierBuilder::no_revocation)): the verifier keeps a [`RevocationView`]
//!   of the broker's live revocations, by writ (its id, or the revocation id of any of its
//!   blocks, so revoking a writ revokes every attenuation of it), by agent and by task (writs
//!   issued up to a cutoff; a suspended agent loses every writ), and refuses matching writs with
//!   [`Denial::Revoked`]. [`Verifier::revocation_status`] reports the view's age and cursor.
//! - Human approval ([`VerifierBuilder::require_approval_for`]): operations that need an
//!   **elevated writ**, one carrying approval evidence signed by a broker approval key; see
//!   [below](#human-approval-elevated-writs).
//!
//! ```
//! use std::collections::HashMap;
//! use std::time::{Duration, SystemTime};
//! use biscuit_auth::{builder::Term, Biscuit, KeyPair};
//! use writ_verify::{Denial, Verifier};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The broker's side, shown here only to have a writ: the authority block of the format,
//! // every value a parameter.
//! let root = KeyPair::new();
//! let now = SystemTime::now();
//! let params = HashMap::from([
//!     ("id".to_owned(), Term::Str("wr_1".into())),
//!     ("agent".to_owned(), Term::Str("agent-7".into())),
//!     ("task".to_owned(), Term::Str("refund-42".into())),
//!     ("iat".to_owned(), Term::from(now)),
//!     ("exp".to_owned(), Term::from(now + Duration::from_secs(300))),
//!     ("svc".to_owned(), Term::Str("orders-api".into())),
//!     ("res".to_owned(), Term::Str("orders/42".into())),
//!     ("op".to_owned(), Term::Str("read".into())),
//! ]);
//! let writ = Biscuit::builder()
//!     .code_with_params(
//!         r#"writ(1); writ_id({id}); agent({agent}); task({task});
//!            issued_at({iat}); expires_at({exp}); service({svc}); right({res}, {op});
//!            check if time($t), $t <= {exp};
//!            check if audience($a), service($a);"#,
//!         params,
//!         HashMap::new(),
//!     )?
//!     .root_key_id(1)
//!     .build(&root)?
//!     .to_base64()?;
//!
//! // The service's side. A service follows the broker's revocation feed
//! // (`.revocation_feed("http://127.0.0.1:8080")`); this example has no broker, so it says
//! // explicitly that it does without: a builder given neither is refused.
//! let verifier = Verifier::builder("orders-api")
//!     .static_keys([(1, root.public())])
//!     .no_revocation()
//!     .build()
//!     .await?;
//! let grant = verifier.authorize(&writ, "orders/42", "read")?;
//! assert_eq!(grant.task, "refund-42");
//! assert_eq!(
//!     verifier.authorize(&writ, "orders/42", "write"),
//!     Err(Denial::NotPermitted)
//! );
//! # Ok(())
//! # }
//! ```
//!
//! # Human approval (elevated writs)
//!
//! For high-risk operations the broker asks humans first. When they approve, it issues an
//! **elevated writ**: an ordinary writ followed, as block 1, by a Biscuit third-party block
//! signed by a separate Ed25519 **approval key** (published in the key set's `approval_keys`).
//! The block holds only facts: `approval(request_id, approver, decided_at)` per approving
//! human, `approved_writ(writ_id)`, and the approved grants, `approved_right(resource,
//! operation)` and `approved_prefix(prefix, operation)`. A service opts in per operation:
//!
//! ```no_run
//! # use writ_verify::{Denial, Verifier};
//! # async fn example(writ: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::builder("orders-api")
//!     .key_set_url("http://127.0.0.1:8080/.well-known/writ-keys") // brings the approval keys
//!     .revocation_feed("http://127.0.0.1:8080")
//!     .require_approval_for(["delete", "refund"])
//!     .build()
//!     .await?;
//! match verifier.authorize_with_refresh(writ, "orders/42", "delete").await {
//!     Ok(grant) => {
//!         // Always present for an operation that requires approval.
//!         if let Some(evidence) = &grant.approval {
//!             println!("approved in {} by {:?}", evidence.request_id, evidence.approvals);
//!         }
//!     }
//!     Err(Denial::ApprovalRequired { .. }) => { /* ask for approval, HTTP 403 */ }
//!     Err(other) => return Err(other.into()),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! A request for such an operation is granted only if the writ grants it **and** its evidence
//! covers it: signed by a trusted approval key, naming this writ's id, with at least one
//! approval, approving this exact resource (or a prefix of it) and operation. Otherwise it is
//! refused with [`Denial::ApprovalRequired`] (code `approval_required`, HTTP 403). The check is
//! Datalog trusting only blocks signed by an approval key, so evidence written by a holder (an
//! attenuation block), signed by any other key, or put in the authority block counts for
//! nothing; evidence never grants by itself. Other operations, and ordinary writs, are
//! unaffected; an elevated writ can be attenuated like any writ, keeping its evidence. Without
//! any approval key the verifier fails closed: a static builder is refused
//! ([`BuildError::NoApprovalKeys`]), and a key set without approval keys refuses every request
//! for those operations until it has one.
//!
//! # Whole prefixes
//!
//! A Datalog run decides one request, for one resource. [`Verifier::authorize_pattern`] with a
//! prefix pattern `P*` decides for all of them: it grants only if the writ provably grants the
//! operation on every resource starting with `P`, and otherwise refuses with
//! [`Denial::PrefixNotProvable`] (code `prefix_not_provable`, HTTP 403) when biscuit alone would
//! have granted the resource it was run for.
//!
//! - Everything [`Verifier::authorize`] checks applies (keys, limits, expiry, audience,
//!   revocation, approval), and biscuit runs for a canonical resource under `P` and has the last
//!   word; the proof below only ever adds refusals.
//! - The broker-signed authority block must grant the operation on a **prefix** `R*` that `P`
//!   starts with: an exact right never counts for a prefix, even one whose text is `P`.
//! - Every attenuation block must hold only the checks [`attenuate`] writes (resources,
//!   operations, services, expiry: recognised by decoding each check and comparing it with the
//!   one `attenuate` builds from its values), no facts and no rules, and each resource check
//!   must allow a prefix that `P` starts with. Any other Datalog a holder appends, even a check
//!   that would refuse nothing, makes every prefix unprovable: a check such as
//!   `$r != "reports/secret"` would exclude a resource under the prefix that a single run cannot
//!   see.
//! - An operation that [requires approval](VerifierBuilder::require_approval_for) needs
//!   evidence approving a prefix that `P` starts with; evidence for single resources covers no
//!   prefix.
//!
//! An exact pattern is [`Verifier::authorize`] of its resource. [`Grant::revocation_ids`] names
//! every block's revocation id, so a service that keeps its own revocation list can check it.
//!
//! # Trade-offs
//! - **Signature cache.** A verified writ is remembered by its exact text until it expires
//!   (bounded in entries and bytes, oldest first when full), so a repeat request skips the
//!   signature checks that are most of the cost. Datalog authorization still runs on every
//!   request. The cache holds only verified writs; one whose key leaves the key set stops
//!   working at once. A holder can flood it with attenuations of its own writ: that costs
//!   cache hits (speed), never memory beyond the bound or correctness.
//! - **Key refresh.** A remote key set is refreshed every 5 minutes and when a writ names an
//!   unknown key id, at most once per 10 s so made-up key ids cannot turn the verifier against
//!   the broker. [`Verifier::authorize`] never waits on the network (it starts the fetch and
//!   refuses); [`Verifier::authorize_with_refresh`] waits for it.
//! - **Run limits.** biscuit-auth's defaults (1 ms) refuse valid writs on a busy machine; the
//!   verifier sets its own ([`default_run_limits`]), on the authorizer builder because
//!   biscuit-auth 6.0.0 ignores limits passed later.
//! - **Trusted values** (writ id, agent, task, issue and expiry times, services) are read from
//!   the facts of the signed authority block only, never from blocks a holder appended; approval
//!   evidence only from the block a trusted approval key signed, once per writ (it is cached
//!   with the signatures, and read again if its key joins or leaves the key set).
//! - **Reasons.** The refusal reason is refined from the broker-signed values (expired, wrong
//!   audience, restricted by an attenuation block) but biscuit's verdict always decides.
//! - **Revocation staleness.** The revocation view is an offline copy: the verifier follows the
//!   broker's event stream (polling while it is down) and the view counts as fresh for a bound
//!   after the feed last confirmed it complete (default 15 s, [`max_revocation_staleness`]).
//!   Past the bound every writ is refused with [`Denial::RevocationViewStale`] (fail closed).
//!   A short bound means a broker outage soon stops every service that needs writs; a long one
//!   means that a verifier cut off from the broker, but not from its callers, may honour a
//!   revoked writ for that long. The view is consulted on every request, signature-cache hits
//!   included, and is bounded in entries ([`revocation::DEFAULT_MAX_REVOCATION_ENTRIES`]) and
//!   in what it reads from the network; a feed it cannot read or hold leaves it stale, never
//!   silently incomplete.
//!
//! [`max_revocation_staleness`]: VerifierBuilder::max_revocation_staleness

mod approval;
mod attenuate;
mod authority;
mod builder;
mod cache;
mod canonical;
mod denial;
#[cfg(feature = "axum")]
mod extract;
mod grant;
mod http_fetch;
mod inspect;
mod key_source;
mod keys;
mod layer;
mod prefix;
mod problem;
mod refusal;
mod request;
mod resource_pattern;
pub mod revocation;
mod service;
mod time_limit;
mod verifier;

pub use approval::{ApprovalEvidence, Approver};
pub use attenuate::{AttenuateError, Attenuation, attenuate};
pub use builder::{
    BuildError, DEFAULT_CACHE_BYTES, DEFAULT_CACHE_CAPACITY, DEFAULT_KEY_REFRESH,
    DEFAULT_MAX_ATTENUATION_DEPTH, DEFAULT_MAX_REVOCATION_STALENESS, DEFAULT_MAX_WRIT_BYTES,
    DEFAULT_REVOCATION_POLL_INTERVAL, DEFAULT_UNKNOWN_KEY_REFETCH, MAX_REVOCATION_STALENESS,
    VerifierBuilder, default_run_limits,
};
pub use canonical::{ResourceError, check_canonical_resource};
pub use denial::Denial;
#[cfg(feature = "axum")]
pub use extract::WritGrant;
pub use grant::Grant;
pub use inspect::{
    InspectError, InspectedApproval, InspectedApprover, InspectedRight, Inspection, RightResource,
    inspect,
};
pub use key_source::KEY_SET_PATH;
pub use keys::{KeySetDocument, KeySetError, PublishedKey};
pub use layer::WritLayer;
pub use resource_pattern::{MAX_RESOURCE_LEN, PatternError, ResourcePattern};
pub use revocation::{RevocationStatus, RevocationSyncError, RevocationView, WritIdentity};
pub use service::WritService;
pub use verifier::Verifier;

/// The biscuit-auth version this crate is built on (for `PublicKey`, `KeyPair`, run limits).
pub use biscuit_auth;

#[cfg(test)]
mod tests;
