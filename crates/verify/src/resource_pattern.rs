//! Resource patterns, in the broker's grants and policies and in attenuations: an exact resource
//! (`orders/42`) or a prefix (`orders/*`: everything starting with `orders/`).
//!
//! Both must be canonical (see [`check_canonical_resource`]): an exact pattern is a canonical
//! resource; a prefix pattern's text before the `*` is empty, a canonical resource, or one
//! followed by `/`. The values only ever reach Datalog as parameters, so the form is about what
//! services later make of a resource, not about Datalog.

use std::fmt;
use std::str::FromStr;

use crate::canonical::{ResourceError, check_canonical_prefix, check_canonical_resource};

/// Longest pattern accepted, in bytes (the broker uses the same bound).
pub const MAX_RESOURCE_LEN: usize = 512;

/// A validated resource pattern: exact, or a prefix written with a trailing `*`.
///
/// ```
/// use writ_verify::ResourcePattern;
/// let p = ResourcePattern::parse("orders/*").unwrap();
/// assert_eq!(p.prefix(), Some("orders/"));
/// assert!(p.matches("orders/42") && !p.matches("invoices/1"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourcePattern(Kind);

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Exact(String),
    Prefix(String),
}

/// Why a resource pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern is empty.
    #[error("a resource pattern may not be empty")]
    Empty,
    /// The pattern is longer than [`MAX_RESOURCE_LEN`] bytes.
    #[error("a resource pattern may be at most {MAX_RESOURCE_LEN} bytes")]
    TooLong,
    /// The pattern contains a control character (newline, NUL, ...).
    #[error("a resource pattern may not contain control characters")]
    ControlCharacter,
    /// A `*` appears somewhere other than at the very end.
    #[error("'*' may only end a prefix pattern")]
    MisplacedWildcard,
    /// The resource (or the prefix before the `*`) is not canonical.
    #[error("not a canonical resource: {0}")]
    NotCanonical(ResourceError),
}

impl ResourcePattern {
    /// Parses `orders/42` (exact) or `orders/*`, `orders*`, `*` (prefixes `orders/`, `orders`, and
    /// everything). Non-canonical resources (`orders/../x`, `orders//*`, `a%2Fb`) are refused.
    pub fn parse(text: &str) -> Result<ResourcePattern, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text.len() > MAX_RESOURCE_LEN {
            return Err(PatternError::TooLong);
        }
        if text.chars().any(char::is_control) {
            return Err(PatternError::ControlCharacter);
        }
        let (body, is_prefix) = match text.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (text, false),
        };
        if body.contains('*') {
            return Err(PatternError::MisplacedWildcard);
        }
        if is_prefix {
            check_canonical_prefix(body)
        } else {
            check_canonical_resource(body)
        }
        .map_err(PatternError::NotCanonical)?;
        Ok(ResourcePattern(if is_prefix {
            Kind::Prefix(body.to_owned())
        } else {
            Kind::Exact(body.to_owned())
        }))
    }

    /// The resource, if this pattern names exactly one.
    pub fn exact(&self) -> Option<&str> {
        match &self.0 {
            Kind::Exact(resource) => Some(resource),
            Kind::Prefix(_) => None,
        }
    }

    /// The prefix (without the `*`), if this is a prefix pattern.
    pub fn prefix(&self) -> Option<&str> {
        match &self.0 {
            Kind::Prefix(prefix) => Some(prefix),
            Kind::Exact(_) => None,
        }
    }

    /// Whether `resource` is named by this pattern (the same test the writ's Datalog makes).
    pub fn matches(&self, resource: &str) -> bool {
        match &self.0 {
            Kind::Exact(exact) => exact == resource,
            Kind::Prefix(prefix) => resource.starts_with(prefix.as_str()),
        }
    }
}

impl fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Exact(resource) => f.write_str(resource),
            Kind::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

impl FromStr for ResourcePattern {
    type Err = PatternError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ResourcePattern::parse(text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn exact_and_prefix_forms() {
        let exact = ResourcePattern::parse("orders/42").unwrap();
        assert_eq!(exact.exact(), Some("orders/42"));
        assert_eq!(exact.prefix(), None);
        assert!(exact.matches("orders/42"));
        assert!(!exact.matches("orders/420"));

        let slash = ResourcePattern::parse("orders/*").unwrap();
        assert_eq!(slash.prefix(), Some("orders/"));
        assert!(slash.matches("orders/42"));
        assert!(!slash.matches("orders"));

        let bare = ResourcePattern::parse("orders*").unwrap();
        assert_eq!(bare.prefix(), Some("orders"));
        assert!(bare.matches("orders-archive/1"));

        let all = ResourcePattern::parse("*").unwrap();
        assert_eq!(all.prefix(), Some(""));
        assert!(all.matches("anything"));
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "orders/42",
            "orders/*",
            "a*",
            "*",
            "x%22);%20right(%22y%22,%20%22write",
        ] {
            let pattern = ResourcePattern::parse(text).unwrap();
            assert_eq!(pattern.to_string(), text);
            assert_eq!(text.parse::<ResourcePattern>().unwrap(), pattern);
        }
    }

    #[test]
    fn rejects_empty_control_and_misplaced_wildcards() {
        assert_eq!(ResourcePattern::parse(""), Err(PatternError::Empty));
        assert_eq!(
            ResourcePattern::parse("orders/\n42"),
            Err(PatternError::ControlCharacter)
        );
        assert_eq!(
            ResourcePattern::parse("orders\u{0}"),
            Err(PatternError::ControlCharacter)
        );
        for bad in ["*/orders", "orders/*/items", "**", "a*b", "orders/**"] {
            assert_eq!(
                ResourcePattern::parse(bad),
                Err(PatternError::MisplacedWildcard),
                "{bad}"
            );
        }
        let long = "a".repeat(MAX_RESOURCE_LEN + 1);
        assert_eq!(ResourcePattern::parse(&long), Err(PatternError::TooLong));
    }

    #[test]
    fn non_canonical_resources_and_prefixes_are_refused() {
        use ResourceError::*;
        for (bad, why) in [
            ("orders/../admin", DotSegment),
            ("orders/..*", DotSegment),
            ("orders//*", EmptySegment),
            ("/orders/*", EmptySegment),
            ("/*", EmptySegment),
            ("orders/", EmptySegment),
            ("orders/%2E%2E/*", NeedlessEncoding),
            ("orders/..%2F*", EncodedDelimiter),
            ("orders\\*", UnencodedCharacter),
            ("a\"); right(\"x\", \"write\"); // c", UnencodedCharacter),
        ] {
            assert_eq!(
                ResourcePattern::parse(bad),
                Err(PatternError::NotCanonical(why)),
                "{bad}"
            );
        }
    }
}
