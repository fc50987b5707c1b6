//! Resource patterns: an exact resource (`orders/42`) or a prefix (`reports/2026/*`, everything
//! that starts with `reports/2026/`). The same syntax is used in policies, requests and writs.

use std::fmt;

use super::names::{NameError, check_text};

/// Longest resource pattern accepted, in bytes.
pub const MAX_RESOURCE_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourcePattern {
    Exact(String),
    /// The prefix without the trailing `*`.
    Prefix(String),
}

impl ResourcePattern {
    pub fn parse(text: &str) -> Result<ResourcePattern, NameError> {
        check_text("resource", text, MAX_RESOURCE_LEN)?;
        let (body, is_prefix) = match text.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (text, false),
        };
        if body.contains('*') {
            return Err(NameError {
                what: "resource",
                value: text.chars().take(64).collect(),
                why: "'*' may only end a prefix pattern",
            });
        }
        Ok(if is_prefix {
            ResourcePattern::Prefix(body.to_owned())
        } else {
            ResourcePattern::Exact(body.to_owned())
        })
    }

    /// Whether everything this pattern names is also named by `self`.
    pub fn covers(&self, other: &ResourcePattern) -> bool {
        match (self, other) {
            (ResourcePattern::Exact(a), ResourcePattern::Exact(b)) => a == b,
            (ResourcePattern::Exact(_), ResourcePattern::Prefix(_)) => false,
            (ResourcePattern::Prefix(p), ResourcePattern::Exact(b)) => b.starts_with(p.as_str()),
            (ResourcePattern::Prefix(p), ResourcePattern::Prefix(q)) => q.starts_with(p.as_str()),
        }
    }
}

impl fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourcePattern::Exact(resource) => f.write_str(resource),
            ResourcePattern::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn p(text: &str) -> ResourcePattern {
        ResourcePattern::parse(text).unwrap()
    }

    #[test]
    fn parses_exact_and_prefix() {
        assert_eq!(p("orders/42"), ResourcePattern::Exact("orders/42".into()));
        assert_eq!(p("orders/*"), ResourcePattern::Prefix("orders/".into()));
        assert_eq!(p("*"), ResourcePattern::Prefix(String::new()));
        assert_eq!(p("orders/*").to_string(), "orders/*");
    }

    #[test]
    fn refuses_inner_stars_empty_and_control_characters() {
        assert!(ResourcePattern::parse("orders/*/items").is_err());
        assert!(ResourcePattern::parse("").is_err());
        assert!(ResourcePattern::parse("orders/1\n").is_err());
        assert!(ResourcePattern::parse(&"a".repeat(MAX_RESOURCE_LEN + 1)).is_err());
    }

    #[test]
    fn hostile_text_is_just_a_resource() {
        let hostile = r#"x"), right("orders/1", "admin") //"#;
        assert_eq!(p(hostile), ResourcePattern::Exact(hostile.into()));
    }

    #[test]
    fn coverage() {
        assert!(p("orders/*").covers(&p("orders/42")));
        assert!(p("orders/*").covers(&p("orders/2026/*")));
        assert!(!p("orders/2026/*").covers(&p("orders/*")));
        assert!(!p("orders/42").covers(&p("orders/*")));
        assert!(!p("orders/4").covers(&p("orders/42")));
        assert!(p("orders/42").covers(&p("orders/42")));
    }
}
