//! Validated names that appear in requests and policies. Parse, don't validate: once a value has
//! one of these types it is known to be well-formed. They still reach Datalog only as parameters.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is invalid: {why}")]
pub struct NameError {
    pub what: &'static str,
    pub value: String,
    pub why: &'static str,
}

/// The checks every name shares (not empty, not too long), then the kind's own `refuse` rule,
/// which answers why a value is refused, if it is.
fn check(
    what: &'static str,
    value: &str,
    max: usize,
    refuse: fn(&str) -> Option<&'static str>,
) -> Result<(), NameError> {
    let why = if value.is_empty() {
        Some("it is empty")
    } else if value.len() > max {
        Some("it is too long")
    } else {
        refuse(value)
    };
    match why {
        None => Ok(()),
        Some(why) => Err(NameError {
            what,
            value: value.chars().take(64).collect(),
            why,
        }),
    }
}

fn check_token(what: &'static str, value: &str, max: usize) -> Result<(), NameError> {
    check(what, value, max, |value| {
        let token = value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        (!token).then_some("only letters, digits, '_', '-' and '.' are allowed")
    })
}

/// Rejects what would make a value unprintable or ambiguous in logs, audit records and the
/// approval page: control and invisible characters, bidi overrides, odd spaces, non-NFC text.
fn check_text(what: &'static str, value: &str, max: usize) -> Result<(), NameError> {
    check(what, value, max, crate::identity::display_name_problem)
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, NameError> {
                $check($what, value, $max)?;
                Ok(Self(value.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// What the agent says it is doing; free text (quotes and parentheses are fine), one line.
    TaskName, "task", check_text, 200
);
name_type!(
    /// An operation on a resource, such as `read`.
    Operation, "operation", check_token, 64
);
name_type!(
    /// A downstream service that may accept a writ (its audience name).
    ServiceName, "service", check_token, 128
);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn task_names_allow_punctuation_but_not_control_characters() {
        assert!(TaskName::parse(r#"x"); right("*", "admin") // (y)"#).is_ok());
        assert!(TaskName::parse("nightly\nright(\"*\",\"admin\")").is_err());
        assert!(TaskName::parse("").is_err());
        assert!(TaskName::parse(&"a".repeat(201)).is_err());
    }

    #[test]
    fn operations_and_services_are_tokens() {
        assert!(Operation::parse("read").is_ok());
        assert!(Operation::parse("re\"ad").is_err());
        assert!(Operation::parse("read write").is_err());
        assert!(ServiceName::parse("orders-api.v2").is_ok());
        assert!(ServiceName::parse("orders/api").is_err());
    }
}
