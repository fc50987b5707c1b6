//! One error vocabulary for every layer. Each failure the broker can answer has a stable
//! [`ErrorCode`]: its name (what clients, logs and audit records call it), its [`ErrorKind`] and a
//! title. Domain errors say which code they are through [`DomainError`]; the HTTP layer maps kinds
//! to statuses in one match (`http/error.rs`) and nothing else decides a status.
//!
//! Every code is declared once, in the table below, so a code string is never written twice and
//! [`codes::ALL`] lists every problem type the broker can answer (the OpenAPI test holds the
//! document to it).

/// What sort of failure a code is; the HTTP layer turns it into a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong (shape, names, limits).
    Invalid,
    /// The caller did not prove who it is.
    Unauthorized,
    /// The caller is known but may not do this.
    Forbidden,
    /// What the request names does not exist.
    NotFound,
    /// What the request names is in a state that no longer allows it (a decided approval).
    Conflict,
    /// The caller has too much outstanding (pending approval requests).
    TooManyRequests,
    /// The protocol's own refusals: a method the route does not serve, a body too large or not
    /// JSON. Only the HTTP layer uses them.
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    /// Something the broker depends on failed; retrying later may work.
    Unavailable,
    /// A system the broker asks on the caller's behalf (STS, Vault) refused or answered
    /// something unusable.
    BadGateway,
    /// The broker itself failed.
    Internal,
}

impl ErrorKind {
    /// A failure on the broker's side rather than a refusal of the caller: its cause is logged,
    /// and the audit log records it as `failed` rather than `refused`.
    pub fn is_server_side(self) -> bool {
        matches!(
            self,
            ErrorKind::Unavailable | ErrorKind::BadGateway | ErrorKind::Internal
        )
    }
}

/// A stable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    /// The stable name: `urn:writ:problem:<name>` on the wire, the `reason` of audit events.
    pub name: &'static str,
    pub kind: ErrorKind,
    /// A short summary, the same for every occurrence.
    pub title: &'static str,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// An error that names its stable code. `Display` is the detail a caller may read, except for
/// server-side kinds, whose detail is [`DomainError::public_detail`] (the cause stays in the
/// log).
pub trait DomainError: std::error::Error {
    fn code(&self) -> ErrorCode;

    /// What the caller is told. Server-side failures must not echo their cause (a database
    /// error names hosts and tables), so they override this or get the generic text.
    fn public_detail(&self) -> String {
        if self.code().kind.is_server_side() {
            "the broker failed; the cause is in its log".to_owned()
        } else {
            self.to_string()
        }
    }

    /// Members a problem document carries beyond the standard ones (a policy refusal lists what
    /// it refused).
    fn extension(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        None
    }
}

macro_rules! error_codes {
    ($($constant:ident = $name:literal, $kind:ident, $title:literal;)*) => {
        $(
            pub const $constant: ErrorCode = ErrorCode {
                name: $name,
                kind: ErrorKind::$kind,
                title: $title,
            };
        )*
        /// Every code, in the order of the table.
        pub const ALL: &[ErrorCode] = &[$($constant),*];
    };
}

/// The table of every code the broker answers.
pub mod codes {
    use super::{ErrorCode, ErrorKind};

    error_codes! {
        INVALID_REQUEST = "invalid_request", Invalid, "Invalid request";
        CREDENTIAL_MISSING = "credential_missing", Unauthorized, "Credential missing";
        CREDENTIAL_MALFORMED = "credential_malformed", Unauthorized, "Credential malformed";
        IDENTITY_MALFORMED = "identity_malformed", Unauthorized, "Identity refused";
        IDENTITY_ISSUER_UNKNOWN = "identity_issuer_unknown", Unauthorized, "Identity refused";
        IDENTITY_ALGORITHM_REFUSED = "identity_algorithm_refused", Unauthorized, "Identity refused";
        IDENTITY_KEY_UNKNOWN = "identity_key_unknown", Unauthorized, "Identity refused";
        IDENTITY_SIGNATURE_INVALID = "identity_signature_invalid", Unauthorized, "Identity refused";
        IDENTITY_EXPIRED = "identity_expired", Unauthorized, "Identity refused";
        IDENTITY_NOT_YET_VALID = "identity_not_yet_valid", Unauthorized, "Identity refused";
        IDENTITY_ISSUED_IN_FUTURE = "identity_issued_in_future", Unauthorized, "Identity refused";
        IDENTITY_AUDIENCE_INVALID = "identity_audience_invalid", Unauthorized, "Identity refused";
        IDENTITY_CLAIM_MISSING = "identity_claim_missing", Unauthorized, "Identity refused";
        IDENTITY_CLAIM_INVALID = "identity_claim_invalid", Unauthorized, "Identity refused";
        ADMIN_CREDENTIAL_MALFORMED = "admin_credential_malformed", Unauthorized, "Admin credential refused";
        ADMIN_CREDENTIAL_INVALID = "admin_credential_invalid", Unauthorized, "Admin credential refused";
        ADMIN_CREDENTIAL_EXPIRED = "admin_credential_expired", Unauthorized, "Admin credential refused";
        ADMIN_CREDENTIAL_REVOKED = "admin_credential_revoked", Unauthorized, "Admin credential refused";
        POLICY_REFUSED = "policy_refused", Forbidden, "Refused by policy";
        AGENT_SUSPENDED = "agent_suspended", Forbidden, "Agent suspended";
        ADMIN_ROLE_MISSING = "admin_role_missing", Forbidden, "Role missing";
        APPROVAL_REQUIRED = "approval_required", Forbidden, "Approval required";
        APPROVAL_NOT_NEEDED = "approval_not_needed", Invalid, "Approval not needed";
        APPROVER_NOT_ALLOWED = "approver_not_allowed", Forbidden, "Approver not allowed";
        SELF_APPROVAL = "self_approval", Forbidden, "Self-approval refused";
        NARROWING_INVALID = "narrowing_invalid", Invalid, "Invalid narrowing";
        APPROVAL_UNKNOWN = "approval_unknown", NotFound, "Not found";
        APPROVAL_CLOSED = "approval_closed", Conflict, "Approval closed";
        ALREADY_DECIDED = "already_decided", Conflict, "Already decided";
        TOO_MANY_PENDING = "too_many_pending", TooManyRequests, "Too many pending requests";
        WRIT_UNKNOWN = "writ_unknown", NotFound, "Not found";
        WRIT_REFUSED = "writ_refused", Unauthorized, "Writ refused";
        EXCHANGE_NOT_GRANTED = "exchange_not_granted", Forbidden, "Not granted by the writ";
        EXCHANGE_ROLE_UNKNOWN = "exchange_role_unknown", NotFound, "Not found";
        EXCHANGE_SCOPE_INVALID = "exchange_scope_invalid", Invalid, "Invalid exchange scope";
        EXCHANGE_CONFLICT = "exchange_conflict", Conflict, "Already exchanged";
        EXCHANGE_UPSTREAM_REFUSED = "exchange_upstream_refused", BadGateway, "Upstream refused";
        EXCHANGE_UPSTREAM_UNAVAILABLE = "exchange_upstream_unavailable", Unavailable, "Upstream unavailable";
        AGENT_NOT_SUSPENDED = "agent_not_suspended", NotFound, "Not found";
        NOT_FOUND = "not_found", NotFound, "Not found";
        METHOD_NOT_ALLOWED = "method_not_allowed", MethodNotAllowed, "Method not allowed";
        PAYLOAD_TOO_LARGE = "payload_too_large", PayloadTooLarge, "Payload too large";
        UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type", UnsupportedMediaType, "Unsupported media type";
        INTERNAL = "internal", Internal, "Internal error";
        MINT_FAILED = "mint_failed", Internal, "Internal error";
        STORAGE_UNAVAILABLE = "storage_unavailable", Unavailable, "Storage unavailable";
        IDENTITY_ISSUER_UNAVAILABLE = "identity_issuer_unavailable", Unavailable, "Identity issuer unavailable";
        NOT_READY = "not_ready", Unavailable, "Not ready";
        TIMEOUT = "timeout", Unavailable, "Timeout";
        OVER_CAPACITY = "over_capacity", Unavailable, "Over capacity";
    }
}

#[cfg(test)]
mod tests {
    use super::codes::ALL;

    #[test]
    fn every_code_is_declared_once() {
        let mut names: Vec<&str> = ALL.iter().map(|code| code.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }

    #[test]
    fn names_are_lowercase_words() {
        for code in ALL {
            assert!(
                code.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                code.name
            );
        }
    }
}
