//! Why a writ was refused.
//!
//! Every refusal carries a stable machine code ([`Denial::code`]) for logs, metrics and the
//! `type` of problem+json answers. Nothing in a `Denial` comes from the presented token's text:
//! its `Display` may be shown to the caller without echoing attacker-chosen strings.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::ResourceError;

/// The reason a writ does not authorize a request.
///
/// Codes are stable; new variants may be added (the enum is `#[non_exhaustive]`), so match with a
/// wildcard arm and prefer [`Denial::code`] for anything that leaves the process.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// No writ was presented (no `Authorization: Bearer` header). Code `missing_credential`.
    MissingCredential,
    /// The request names a resource that is not in canonical form (dot or empty segments,
    /// encoded separators or dots, characters that must be encoded; see
    /// [`check_canonical_resource`](crate::check_canonical_resource)). Refused before the writ
    /// is read or any grant considered, whatever the writ grants. HTTP 400.
    /// Code `non_canonical_resource`.
    NonCanonicalResource {
        /// What is wrong with the resource.
        reason: ResourceError,
    },
    /// The input is not a Biscuit token at all: empty, not base64, not a valid container.
    /// Code `malformed`.
    Malformed {
        /// What was wrong, in fixed words.
        reason: &'static str,
    },
    /// A correctly signed Biscuit that is not a version-1 writ (wrong or missing `writ(..)`,
    /// missing authority values, a third-party block other than an elevated writ's approval
    /// block, approval evidence of the wrong shape, an unknown block format version).
    /// Code `unsupported_format`.
    UnsupportedFormat {
        /// What was wrong, in fixed words.
        reason: &'static str,
    },
    /// The token names a root key id this verifier does not know (after a refresh, for a remote
    /// key set), or names none. Code `unknown_key`.
    UnknownKey {
        /// The token's `root_key_id`, if it has one.
        kid: Option<u32>,
    },
    /// The key is known but retired: its `not_after` has passed, so nothing it signed can still
    /// be valid. Code `key_retired`.
    KeyRetired {
        /// The retired key's id.
        kid: u32,
    },
    /// A block signature does not verify (tampered bytes, or signed by another key under a known
    /// key id). Code `invalid_signature`.
    InvalidSignature,
    /// The writ's lifetime is over: past its `expires_at` (authority block), or past the
    /// earlier time limit an attenuation block set. Code `expired`.
    Expired {
        /// When it expired: the earliest of those limits.
        expired_at: SystemTime,
    },
    /// The writ does not name this verifier's service among those that may accept it.
    /// Code `wrong_audience`.
    WrongAudience,
    /// The writ grants no right for this resource and operation. Code `not_permitted`.
    NotPermitted,
    /// A check added by attenuation (a block after the authority block) refused the request, or
    /// could not be evaluated. Code `restricted_by_attenuation`.
    RestrictedByAttenuation {
        /// Index of the first refusing block (1 = first attenuation), when biscuit names it.
        block: Option<u32>,
    },
    /// The verifier requires human approval for this operation
    /// ([`require_approval_for`](crate::VerifierBuilder::require_approval_for)), and the writ
    /// carries no approval evidence covering this request: none, evidence signed by a key that
    /// is not a trusted approval key (or no approval key is trusted at all), or evidence for
    /// another writ, resource or operation. The writ may well grant the right; a human must
    /// approve first. HTTP 403. Code `approval_required`.
    ApprovalRequired {
        /// The request's operation: one of the operations the verifier was configured to
        /// require approval for, never text of the writ.
        operation: String,
    },
    /// A request for a whole resource prefix
    /// ([`Verifier::authorize_pattern`](crate::Verifier::authorize_pattern) with `p/*`) that the
    /// writ allows for the resource the verifier tried, but that cannot be proven for **every**
    /// resource under the prefix: the authority block grants the operation on no prefix
    /// covering it (exact rights never count), an attenuation block holds anything other than
    /// the checks [`attenuate`](crate::attenuate) writes, or one of its resource checks does not
    /// cover the whole prefix. The writ may still grant single resources under the prefix.
    /// HTTP 403. Code `prefix_not_provable`.
    PrefixNotProvable {
        /// What could not be proven, in fixed words.
        reason: &'static str,
    },
    /// The writ exceeds a configured limit: size, number of blocks, or the Datalog run limits
    /// (facts, iterations, time). Code `limits_exceeded`.
    LimitsExceeded {
        /// Which limit, in fixed words.
        limit: &'static str,
    },
    /// The writ, its task or its agent was revoked (the verifier's revocation view names it).
    /// Code `revoked`.
    Revoked,
    /// The verifier follows the broker's revocation feed, but its view of revocations was never
    /// confirmed or is older than its bound, so it cannot tell whether the writ was revoked:
    /// every writ is refused until the feed is reachable again (fail closed). The writ itself
    /// may be fine, hence HTTP 503. Code `revocation_view_stale`.
    RevocationViewStale {
        /// Time since the view was last confirmed complete; `None` if it never was.
        age: Option<Duration>,
        /// The configured bound (`max_revocation_staleness`).
        max_staleness: Duration,
    },
    /// The verifier itself failed (a bug or an impossible input such as a time before 1970); the
    /// request is refused. Code `internal`.
    Internal {
        /// What failed, in fixed words.
        reason: &'static str,
    },
}

impl Denial {
    /// The stable machine code, e.g. `"expired"`; used as `urn:writ:problem:<code>`.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::MissingCredential => "missing_credential",
            Denial::NonCanonicalResource { .. } => "non_canonical_resource",
            Denial::Malformed { .. } => "malformed",
            Denial::UnsupportedFormat { .. } => "unsupported_format",
            Denial::UnknownKey { .. } => "unknown_key",
            Denial::KeyRetired { .. } => "key_retired",
            Denial::InvalidSignature => "invalid_signature",
            Denial::Expired { .. } => "expired",
            Denial::WrongAudience => "wrong_audience",
            Denial::NotPermitted => "not_permitted",
            Denial::RestrictedByAttenuation { .. } => "restricted_by_attenuation",
            Denial::ApprovalRequired { .. } => "approval_required",
            Denial::PrefixNotProvable { .. } => "prefix_not_provable",
            Denial::LimitsExceeded { .. } => "limits_exceeded",
            Denial::Revoked => "revoked",
            Denial::RevocationViewStale { .. } => "revocation_view_stale",
            Denial::Internal { .. } => "internal",
        }
    }

    /// The HTTP status a service should answer: 400 when the request names a non-canonical
    /// resource, 401 when the credential itself is unusable (missing, malformed, unverifiable,
    /// expired, revoked), 403 when it is valid but does not permit this request, 500 when the
    /// verifier failed, 503 when it cannot decide for now (its revocation view is stale).
    pub fn http_status(&self) -> u16 {
        match self {
            Denial::NonCanonicalResource { .. } => 400,
            Denial::WrongAudience
            | Denial::NotPermitted
            | Denial::RestrictedByAttenuation { .. }
            | Denial::ApprovalRequired { .. }
            | Denial::PrefixNotProvable { .. } => 403,
            Denial::Internal { .. } => 500,
            Denial::RevocationViewStale { .. } => 503,
            _ => 401,
        }
    }

    /// A short human title for the code (the problem+json `title`).
    pub fn title(&self) -> &'static str {
        match self {
            Denial::MissingCredential => "No writ presented",
            Denial::NonCanonicalResource { .. } => "Resource not in canonical form",
            Denial::Malformed { .. } => "Malformed writ",
            Denial::UnsupportedFormat { .. } => "Unsupported writ format",
            Denial::UnknownKey { .. } => "Unknown signing key",
            Denial::KeyRetired { .. } => "Signing key retired",
            Denial::InvalidSignature => "Invalid writ signature",
            Denial::Expired { .. } => "Writ expired",
            Denial::WrongAudience => "Writ not meant for this service",
            Denial::NotPermitted => "Not permitted by the writ",
            Denial::RestrictedByAttenuation { .. } => "Restricted by attenuation",
            Denial::ApprovalRequired { .. } => "Human approval required",
            Denial::PrefixNotProvable { .. } => "Prefix grant not provable",
            Denial::LimitsExceeded { .. } => "Writ exceeds verifier limits",
            Denial::Revoked => "Writ revoked",
            Denial::RevocationViewStale { .. } => "Revocation status unknown",
            Denial::Internal { .. } => "Verifier failure",
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::MissingCredential => f.write_str("no writ was presented"),
            Denial::NonCanonicalResource { reason } => {
                write!(f, "the request's resource is not canonical: {reason}")
            }
            Denial::Malformed { reason } => write!(f, "malformed writ: {reason}"),
            Denial::UnsupportedFormat { reason } => write!(f, "not a version 1 writ: {reason}"),
            Denial::UnknownKey { kid: Some(kid) } => write!(f, "unknown root key id {kid}"),
            Denial::UnknownKey { kid: None } => f.write_str("the writ names no root key id"),
            Denial::KeyRetired { kid } => write!(f, "root key {kid} is retired"),
            Denial::InvalidSignature => f.write_str("a signature of the writ does not verify"),
            Denial::Expired { expired_at } => {
                write!(f, "the writ expired at {}", rfc3339(*expired_at))
            }
            Denial::WrongAudience => f.write_str("the writ may not be presented to this service"),
            Denial::NotPermitted => {
                f.write_str("the writ grants no right for this resource and operation")
            }
            Denial::RestrictedByAttenuation { block: Some(block) } => {
                write!(
                    f,
                    "a check in attenuation block {block} refused the request"
                )
            }
            Denial::RestrictedByAttenuation { block: None } => {
                f.write_str("an attenuation check refused the request")
            }
            Denial::ApprovalRequired { operation } => write!(
                f,
                "operation {operation:?} needs human approval: the writ carries no approval \
                 evidence for this resource and operation"
            ),
            Denial::PrefixNotProvable { reason } => write!(
                f,
                "the writ cannot be shown to grant this operation on every resource under the \
                 prefix: {reason}"
            ),
            Denial::LimitsExceeded { limit } => write!(f, "the writ exceeds a limit: {limit}"),
            Denial::Revoked => f.write_str("the writ was revoked"),
            Denial::RevocationViewStale {
                age: Some(age),
                max_staleness,
            } => write!(
                f,
                "the revocation view is {} old (bound {}): the broker's feed is unreachable",
                whole_millis(*age),
                whole_millis(*max_staleness)
            ),
            Denial::RevocationViewStale {
                age: None,
                max_staleness,
            } => write!(
                f,
                "the revocation view was never confirmed by the broker's feed (bound {})",
                whole_millis(*max_staleness)
            ),
            Denial::Internal { reason } => write!(f, "verifier failure: {reason}"),
        }
    }
}

impl std::error::Error for Denial {}

/// RFC 3339 to the second, for any time: humantime's formatter fails on years past 9999 (a
/// `Display` error, which panics `to_string`) and panics before 1970.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    const YEAR_10000: u64 = 253_402_300_800;
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) if since.as_secs() < YEAR_10000 => {
            humantime::format_rfc3339_seconds(time).to_string()
        }
        Ok(since) => format!("{} s after 1970-01-01T00:00:00Z", since.as_secs()),
        Err(before) => format!(
            "{} s before 1970-01-01T00:00:00Z",
            before.duration().as_secs()
        ),
    }
}

/// A duration printed to the millisecond ("1s 200ms"), not to the nanosecond.
fn whole_millis(duration: Duration) -> humantime::FormattedDuration {
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    humantime::format_duration(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_snake_case() {
        let all = [
            Denial::MissingCredential,
            Denial::NonCanonicalResource {
                reason: ResourceError::DotSegment,
            },
            Denial::Malformed { reason: "x" },
            Denial::UnsupportedFormat { reason: "x" },
            Denial::UnknownKey { kid: Some(1) },
            Denial::KeyRetired { kid: 1 },
            Denial::InvalidSignature,
            Denial::Expired {
                expired_at: SystemTime::UNIX_EPOCH,
            },
            Denial::WrongAudience,
            Denial::NotPermitted,
            Denial::RestrictedByAttenuation { block: Some(1) },
            Denial::ApprovalRequired {
                operation: "delete".into(),
            },
            Denial::PrefixNotProvable { reason: "x" },
            Denial::LimitsExceeded { limit: "x" },
            Denial::Revoked,
            Denial::RevocationViewStale {
                age: None,
                max_staleness: Duration::from_secs(15),
            },
            Denial::Internal { reason: "x" },
        ];
        let mut codes: Vec<_> = all.iter().map(Denial::code).collect();
        assert!(
            codes
                .iter()
                .all(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
        );
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }

    #[test]
    fn expiries_beyond_year_9999_are_displayed() {
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_800);
        assert_eq!(
            Denial::Expired { expired_at: far }.to_string(),
            "the writ expired at 253402300800 s after 1970-01-01T00:00:00Z"
        );
        let last = far - Duration::from_secs(1);
        assert_eq!(rfc3339(last), "9999-12-31T23:59:59Z");
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(rfc3339(before), "5 s before 1970-01-01T00:00:00Z");
    }

    #[test]
    fn statuses_split_credential_from_permission() {
        assert_eq!(Denial::InvalidSignature.http_status(), 401);
        assert_eq!(
            Denial::Expired {
                expired_at: SystemTime::UNIX_EPOCH
            }
            .http_status(),
            401
        );
        assert_eq!(Denial::WrongAudience.http_status(), 403);
        assert_eq!(Denial::NotPermitted.http_status(), 403);
        assert_eq!(
            Denial::RestrictedByAttenuation { block: None }.http_status(),
            403
        );
        let approval = Denial::ApprovalRequired {
            operation: "delete".into(),
        };
        assert_eq!(approval.http_status(), 403);
        assert_eq!(approval.code(), "approval_required");
        assert_eq!(
            approval.to_string(),
            "operation \"delete\" needs human approval: the writ carries no approval evidence \
             for this resource and operation"
        );
        let prefix = Denial::PrefixNotProvable {
            reason: "an attenuation block holds a check attenuate does not write",
        };
        assert_eq!(prefix.http_status(), 403);
        assert_eq!(prefix.code(), "prefix_not_provable");
        assert_eq!(prefix.title(), "Prefix grant not provable");
        let stale = Denial::RevocationViewStale {
            age: Some(Duration::from_millis(20_400)),
            max_staleness: Duration::from_secs(15),
        };
        assert_eq!(stale.http_status(), 503);
        assert_eq!(
            stale.to_string(),
            "the revocation view is 20s 400ms old (bound 15s): the broker's feed is unreachable"
        );
    }
}
