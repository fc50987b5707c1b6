//! What can go wrong talking to Vault, sorted by what a caller does about it: Vault could not be
//! reached in time ([`VaultError::is_unavailable`], a 503 to the broker's callers), Vault
//! answered and refused ([`VaultError::Refused`], a 502), or the thing asked for is not there.
//! No variant ever holds a response body or a token: only statuses and Vault's own error
//! messages ("permission denied", "check-and-set parameter did not match the current version").

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The configuration cannot be used: a token or secret id file is missing, empty or
    /// readable by others, a path is not a Vault path.
    #[error("vault configuration: {0}")]
    Config(String),
    /// No connection could be made, or it broke (DNS, refused, TLS, reset).
    #[error("Vault is unreachable: {0}")]
    Unreachable(String),
    /// Vault did not answer within the configured timeout.
    #[error("Vault did not answer within {0:?}")]
    Timeout(Duration),
    /// Vault answered that it cannot serve now: sealed, standby without forwarding, rate
    /// limited, or a gateway in front of it failed (429, 502, 503, 504).
    #[error("Vault is unavailable (status {status})")]
    Unavailable { status: u16 },
    /// Nothing at that path (404).
    #[error("not found in Vault")]
    NotFound,
    /// A check-and-set write lost: the secret's version is no longer the one given.
    #[error("the secret changed since it was read (check-and-set mismatch)")]
    CasConflict,
    /// Vault answered and refused: 403 permission denied, 400 invalid request, 500 (a secrets
    /// engine failed, such as a database it could not reach), and any other status.
    #[error("Vault refused (status {status}): {message}")]
    Refused { status: u16, message: String },
    /// Vault answered with something that is not what the API documents.
    #[error("unexpected answer from Vault: {0}")]
    InvalidResponse(String),
}

impl VaultError {
    /// Whether the failure is Vault being out of reach or out of service (retry later; a 503
    /// for the broker's callers), rather than Vault refusing what was asked.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            VaultError::Unreachable(_) | VaultError::Timeout(_) | VaultError::Unavailable { .. }
        )
    }

    /// The error for an HTTP status Vault answered with (never a success), with the `errors`
    /// list of its body.
    pub(super) fn from_status(status: u16, errors: &[String]) -> VaultError {
        match status {
            404 => VaultError::NotFound,
            429 | 502 | 503 | 504 => VaultError::Unavailable { status },
            400 if errors.iter().any(|e| e.contains("check-and-set")) => VaultError::CasConflict,
            _ => VaultError::Refused {
                status,
                message: summary(errors),
            },
        }
    }

    pub(super) fn from_vaultrs(error: vaultrs::error::ClientError, timeout: Duration) -> Self {
        use vaultrs::error::ClientError;
        match error {
            ClientError::APIError { code, errors } => VaultError::from_status(code, &errors),
            ClientError::RestClientError { source } => VaultError::from_rustify(source, timeout),
            ClientError::ResponseEmptyError
            | ClientError::ResponseDataEmptyError
            | ClientError::JsonParseError { .. } => {
                VaultError::InvalidResponse("the answer lacks the expected fields".into())
            }
            // The remaining variants' texts name no body (files, builders, wrapping).
            other => VaultError::InvalidResponse(other.to_string()),
        }
    }

    fn from_rustify(error: rustify::errors::ClientError, timeout: Duration) -> Self {
        use rustify::errors::ClientError;
        match error {
            ClientError::RequestError { source, .. } | ClientError::ResponseError { source } => {
                match source.downcast_ref::<reqwest_vault::Error>() {
                    Some(error) => VaultError::from_http(error, timeout),
                    None => VaultError::Unreachable(format!("{source:#}")),
                }
            }
            // A non-JSON error body (a proxy's page): only its status is kept.
            ClientError::ServerResponseError { code, .. } => VaultError::from_status(code, &[]),
            ClientError::ResponseParseError { .. }
            | ClientError::ResponseConversionError { .. } => {
                VaultError::InvalidResponse("the answer is not the JSON expected".into())
            }
            other => VaultError::InvalidResponse(other.to_string()),
        }
    }

    pub(super) fn from_http(error: &reqwest_vault::Error, timeout: Duration) -> Self {
        if error.is_timeout() {
            return VaultError::Timeout(timeout);
        }
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        VaultError::Unreachable(text)
    }
}

/// Vault's error messages on one line, bounded: at most three, 300 characters, no control
/// characters (they end up in logs).
fn summary(errors: &[String]) -> String {
    if errors.is_empty() {
        return "no reason given".into();
    }
    let joined = errors
        .iter()
        .take(3)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("; ");
    let clean: String = joined
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_sort_into_what_a_caller_does() {
        assert!(matches!(
            VaultError::from_status(404, &[]),
            VaultError::NotFound
        ));
        assert!(VaultError::from_status(503, &["Vault is sealed".into()]).is_unavailable());
        assert!(VaultError::from_status(429, &[]).is_unavailable());
        let cas = ["check-and-set parameter did not match the current version".to_owned()];
        assert!(matches!(
            VaultError::from_status(400, &cas),
            VaultError::CasConflict
        ));
        let denied =
            VaultError::from_status(403, &["1 error occurred:\n\t* permission denied\n".into()]);
        assert!(!denied.is_unavailable());
        assert!(
            matches!(&denied, VaultError::Refused { status: 403, message } if !message.contains('\n')),
            "{denied:?}"
        );
        assert!(matches!(
            VaultError::from_status(500, &[]),
            VaultError::Refused { status: 500, .. }
        ));
    }

    #[test]
    fn long_error_lists_are_bounded() {
        let many: Vec<String> = (0..10).map(|i| format!("{i}{}", "x".repeat(200))).collect();
        let VaultError::Refused { message, .. } = VaultError::from_status(400, &many) else {
            panic!("a 400 is a refusal")
        };
        assert!(message.chars().count() <= 300);
    }
}
