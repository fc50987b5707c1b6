//! Who an admin writ was issued to: a person or an automation, by name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest principal name, in bytes.
pub const MAX_PRINCIPAL_LEN: usize = 128;

/// A validated principal name such as `alice@example.com` or `svc:deployer`.
///
/// Only `[A-Za-z0-9._@+:-]`: enough for emails and `svc:name`, and nothing that could mislead a
/// reader of logs or audit records (no spaces, quotes, control characters or look-alikes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Principal(String);

/// Why a principal name was refused. Never echoes the name: it may be anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    #[error("the principal is empty")]
    Empty,
    #[error("the principal is {len} bytes long (at most {MAX_PRINCIPAL_LEN})")]
    TooLong { len: usize },
    #[error(
        "the principal has a character not allowed at byte {position} \
         (allowed: letters, digits and . _ @ + : -)"
    )]
    InvalidCharacter { position: usize },
}

fn allowed(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'@' | b'+' | b':' | b'-')
}

impl Principal {
    pub fn parse(value: &str) -> Result<Principal, PrincipalError> {
        if value.is_empty() {
            return Err(PrincipalError::Empty);
        }
        if value.len() > MAX_PRINCIPAL_LEN {
            return Err(PrincipalError::TooLong { len: value.len() });
        }
        // Bytes, not chars: any non-ASCII byte is refused, so multi-byte characters are too.
        if let Some(position) = value.bytes().position(|byte| !allowed(byte)) {
            return Err(PrincipalError::InvalidCharacter { position });
        }
        Ok(Principal(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Principal {
    type Err = PrincipalError;

    fn from_str(value: &str) -> Result<Principal, PrincipalError> {
        Principal::parse(value)
    }
}

impl TryFrom<String> for Principal {
    type Error = PrincipalError;

    fn try_from(value: String) -> Result<Principal, PrincipalError> {
        Principal::parse(&value)
    }
}

impl From<Principal> for String {
    fn from(principal: Principal) -> String {
        principal.0
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn emails_and_service_names_are_accepted() {
        for name in [
            "alice@example.com",
            "bob+ops@example.co.uk",
            "svc:deployer",
            "ci_bot-2",
            "a",
        ] {
            assert_eq!(Principal::parse(name).unwrap().as_str(), name);
        }
        assert!(Principal::parse(&"a".repeat(MAX_PRINCIPAL_LEN)).is_ok());
    }

    #[test]
    fn empty_long_and_odd_names_are_refused() {
        assert_eq!(Principal::parse(""), Err(PrincipalError::Empty));
        assert_eq!(
            Principal::parse(&"a".repeat(MAX_PRINCIPAL_LEN + 1)),
            Err(PrincipalError::TooLong {
                len: MAX_PRINCIPAL_LEN + 1
            })
        );
        for name in [
            "alice smith",
            "alice\n",
            "al\u{0}ice",
            "\"alice\"",
            "alice'",
            "ålice",
            "alice\u{202e}",
            "a/b",
        ] {
            assert!(
                matches!(
                    Principal::parse(name),
                    Err(PrincipalError::InvalidCharacter { .. })
                ),
                "{name:?}"
            );
        }
    }

    #[test]
    fn datalog_looking_names_are_refused() {
        for name in [
            r#"x"); role("admin"#,
            r#"alice"), role("admin")"#,
            "x\\\"); writ_admin(1",
            "role($r)",
        ] {
            assert!(Principal::parse(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn deserialising_validates() {
        let ok: Principal = serde_json::from_str("\"svc:deployer\"").unwrap();
        assert_eq!(ok.as_str(), "svc:deployer");
        assert!(serde_json::from_str::<Principal>("\"a b\"").is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"svc:deployer\"");
    }
}
