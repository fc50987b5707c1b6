//! The roles an admin writ can carry.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What the holder of an admin writ may do on the admin routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages the broker: revocations, admin writs, keys.
    Admin,
    /// Decides pending writ requests.
    Approver,
    /// Reads the audit log.
    Auditor,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (expected admin, approver or auditor)")]
pub struct RoleError(String);

/// Longest input echoed back in a [`RoleError`]: enough to recognise a typo, never a whole blob.
const ECHO_LIMIT: usize = 32;

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Approver, Role::Auditor];

    /// The name used in tokens, configuration and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
        }
    }
}

impl FromStr for Role {
    type Err = RoleError;

    fn from_str(value: &str) -> Result<Role, RoleError> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == value)
            .ok_or_else(|| RoleError(value.chars().take(ECHO_LIMIT).collect()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_round_trip_through_str_and_serde() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), role);
        }
    }

    #[test]
    fn unknown_and_differently_cased_names_are_refused() {
        assert!("Admin".parse::<Role>().is_err());
        assert!("superuser".parse::<Role>().is_err());
        assert!("".parse::<Role>().is_err());
        let error = "root".parse::<Role>().unwrap_err().to_string();
        assert!(
            error.contains("expected admin, approver or auditor"),
            "{error}"
        );
    }
}
