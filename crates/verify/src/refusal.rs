//! Naming the reason of a refusal.
//!
//! biscuit-auth says "denied" and lists failed checks; a service wants to know why. The reason is
//! refined from the broker-signed values (expired, wrong audience) and from which block's check
//! failed (an attenuation), but these functions run only after biscuit refused: they never turn
//! a refusal into a grant.

use std::time::UNIX_EPOCH;

use biscuit_auth::error::{FailedCheck, Format, Logic, MatchedPolicy, Token};

use crate::Denial;
use crate::authority::AuthorityValues;

/// Why biscuit refused, for a verified writ with these `values`, at `now_secs`;
/// `approval_operation` is the request's operation when the verifier required approval for it
/// (the approval check is then the authorizer's only check).
pub(crate) fn explain(
    error: &Token,
    values: &AuthorityValues,
    service: &str,
    now_secs: u64,
    approval_operation: Option<&str>,
) -> Denial {
    if let Some(denial) = run_failure(error) {
        return denial;
    }
    let expires_secs = values
        .effective_expires_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // The same comparisons the time checks make, at Datalog's one-second precision. Past an
    // attenuation's own limit the writ is expired too: that check failed, whatever else did.
    if now_secs > expires_secs {
        return Denial::Expired {
            expired_at: values.effective_expires_at,
        };
    }
    if !values.services.iter().any(|s| s == service) {
        return Denial::WrongAudience;
    }
    if let Token::FailedLogic(
        Logic::Unauthorized { checks, .. } | Logic::NoMatchingPolicy { checks },
    ) = error
    {
        let attenuation_block = checks.iter().find_map(|check| match check {
            FailedCheck::Block(block) if block.block_id > 0 => Some(block.block_id),
            _ => None,
        });
        if let Some(block) = attenuation_block {
            return Denial::RestrictedByAttenuation { block: Some(block) };
        }
    }
    // The writ grants the request (the allow policy matched) but the approval check failed. When
    // no policy matched, the writ does not grant it at all: approval would not help.
    if let (
        Some(operation),
        Token::FailedLogic(Logic::Unauthorized {
            policy: MatchedPolicy::Allow(_),
            checks,
        }),
    ) = (approval_operation, error)
        && checks
            .iter()
            .any(|check| matches!(check, FailedCheck::Authorizer(_)))
    {
        return Denial::ApprovalRequired {
            operation: operation.to_owned(),
        };
    }
    Denial::NotPermitted
}

/// Denials for a Datalog run that failed rather than refused.
pub(crate) fn run_failure(error: &Token) -> Option<Denial> {
    match error {
        Token::RunLimit(_) => Some(Denial::LimitsExceeded {
            limit: "Datalog run limits",
        }),
        // An expression that cannot be evaluated; the broker's authority block uses only
        // well-typed comparisons, so this comes from an appended block.
        Token::Execution(_) => Some(Denial::RestrictedByAttenuation { block: None }),
        Token::FailedLogic(_) => None,
        _ => Some(Denial::Internal {
            reason: "authorization could not be evaluated",
        }),
    }
}

pub(crate) fn decode_denial(error: Token) -> Denial {
    match error {
        Token::Base64(_) => Denial::Malformed {
            reason: "not URL-safe base64",
        },
        Token::Format(Format::Version { .. }) => Denial::UnsupportedFormat {
            reason: "unsupported block format version",
        },
        _ => Denial::Malformed {
            reason: "not a Biscuit token",
        },
    }
}

pub(crate) fn signature_denial(error: Format) -> Denial {
    match error {
        Format::Signature(_)
        | Format::SealedSignature
        | Format::InvalidSignatureSize(_)
        | Format::SignatureDeserializationError(_)
        | Format::BlockSignatureDeserializationError(_) => Denial::InvalidSignature,
        _ => Denial::Malformed {
            reason: "not a Biscuit token",
        },
    }
}
