//! The request side of an authorization: the verifier's fixed part (policy, limits, its own
//! audience), prepared once, and the facts of one request, built as terms.
//!
//! No Datalog text is formatted here: resources and operations come from requests and are
//! attacker input, so they enter only as `Term::Str` values.

use biscuit_auth::builder::{Fact, Policy, Term};
use biscuit_auth::error::Token;
use biscuit_auth::{AuthorizerBuilder, AuthorizerLimits};

/// The one policy of every writ verifier.
pub(crate) const POLICY: &str = "allow if resource($r), operation($op), right($r, $op)";

/// The facts describing one request, built as terms (never by formatting Datalog text).
pub(crate) struct RequestFacts {
    pub(crate) time: Fact,
    pub(crate) resource: Fact,
    pub(crate) operation: Fact,
}

impl RequestFacts {
    pub(crate) fn new(resource: &str, operation: &str, now_secs: u64) -> RequestFacts {
        RequestFacts {
            time: Fact::new("time".to_owned(), vec![Term::Date(now_secs)]),
            resource: Fact::new("resource".to_owned(), vec![Term::Str(resource.to_owned())]),
            operation: Fact::new(
                "operation".to_owned(),
                vec![Term::Str(operation.to_owned())],
            ),
        }
    }
}

/// Builds the per-verifier part of every request authorizer.
pub(crate) fn base_authorizer(
    service: &str,
    limits: AuthorizerLimits,
) -> Result<AuthorizerBuilder, Token> {
    let policy: Policy = POLICY.try_into()?;
    AuthorizerBuilder::new()
        // biscuit-auth 6.0.0 ignores limits given to `authorize_with_limits` while generating
        // facts (#311); only limits set on the builder apply to the whole run.
        .set_limits(limits)
        .fact(Fact::new(
            "audience".to_owned(),
            vec![Term::Str(service.to_owned())],
        ))?
        .policy(policy)
}
