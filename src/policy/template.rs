//! Rights and services templated from the identity: `tenants/{kubernetes.io/namespace}/*` or
//! `{repository_owner}-api`, with the agent template's claim-path syntax (segments split on `/`,
//! so claim names may hold dots).
//!
//! Rendering is safe by construction: it can make a policy not match, never match wider.
//! - A claim value must be a non-empty JSON string of at most [`MAX_CLAIM_VALUE`] bytes, made only
//!   of ASCII letters, digits and `-._~@+:`, and not `.` or `..`: no `*`, no separator, no
//!   percent-encoding, nothing a server could resolve into another path.
//! - In a resource a claim fills a whole path segment and never the `*`, so no two identities'
//!   renderings overlap unless their claim values are equal: `tenants/{ns}*` would let namespace
//!   `a` reach `tenants/ab/...`, and `{a}-{b}` would let `x-y`,`z` stand for `x`,`y-z`.
//! - In a service a template holds at most one claim, for the same reason.
//! - The rendered text must still parse as a canonical resource pattern or a service name.
//!
//! A value that breaks any rule makes the policy not match this identity.

use serde_json::{Map, Value};

use super::names::ServiceName;
use super::pattern::ResourcePattern;
use crate::identity::agent::{Piece, claim_at, split_template};

/// Longest claim value a template accepts.
pub const MAX_CLAIM_VALUE: usize = 128;

/// A string with `{claim/path}` placeholders, or a literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template<T> {
    /// The text as written in the policy, for messages.
    source: String,
    pieces: Vec<Piece>,
    /// The parsed value when the text has no placeholder.
    literal: Option<T>,
}

/// What a template renders into.
pub trait Rendered: Sized {
    const WHAT: &'static str;
    fn parse_rendered(text: &str) -> Result<Self, String>;
    /// Checks where the placeholders sit, given the pieces between them.
    fn check_placement(source: &str, pieces: &[Piece]) -> Result<(), String>;
}

impl Rendered for ResourcePattern {
    const WHAT: &'static str = "resource";

    fn parse_rendered(text: &str) -> Result<Self, String> {
        ResourcePattern::parse(text).map_err(|e| e.to_string())
    }

    fn check_placement(source: &str, pieces: &[Piece]) -> Result<(), String> {
        for (index, piece) in pieces.iter().enumerate() {
            if !matches!(piece, Piece::Claim(_)) {
                continue;
            }
            let before_ok = match index.checked_sub(1).map(|i| &pieces[i]) {
                None => true,
                Some(Piece::Text(text)) => text.ends_with('/'),
                Some(Piece::Claim(_)) => false,
            };
            let after_ok = match pieces.get(index + 1) {
                None => true,
                Some(Piece::Text(text)) => text.starts_with('/'),
                Some(Piece::Claim(_)) => false,
            };
            if !(before_ok && after_ok) {
                return Err(format!(
                    "resource {source:?}: a claim must fill a whole path segment \
                     (\"tenants/{{ns}}/*\"), so that one identity's rendering never names another's"
                ));
            }
        }
        Ok(())
    }
}

impl Rendered for ServiceName {
    const WHAT: &'static str = "service";

    fn parse_rendered(text: &str) -> Result<Self, String> {
        ServiceName::parse(text).map_err(|e| e.to_string())
    }

    fn check_placement(source: &str, pieces: &[Piece]) -> Result<(), String> {
        let claims = pieces
            .iter()
            .filter(|p| matches!(p, Piece::Claim(_)))
            .count();
        if claims > 1 {
            return Err(format!(
                "service {source:?}: a service template holds at most one claim, \
                 so that one identity's rendering never names another's"
            ));
        }
        Ok(())
    }
}

impl<T: Rendered + Clone> Template<T> {
    pub fn parse(source: &str) -> Result<Template<T>, String> {
        let pieces = split_template(source, T::WHAT)?;
        let literal = match pieces.as_slice() {
            [] => Some(""),
            [Piece::Text(text)] => Some(text.as_str()),
            _ => None,
        };
        if let Some(text) = literal {
            return Ok(Template {
                source: source.to_owned(),
                literal: Some(T::parse_rendered(text)?),
                pieces,
            });
        }
        T::check_placement(source, &pieces)?;
        // A sample rendering must parse, or no identity could ever match: a typo, refuse it.
        let sample = render_with(&pieces, |_| Some("x"));
        T::parse_rendered(&sample).map_err(|e| format!("{} {source:?}: {e}", T::WHAT))?;
        Ok(Template {
            source: source.to_owned(),
            pieces,
            literal: None,
        })
    }

    /// The value for this identity, or `None` when a claim is missing or unsafe.
    pub fn render(&self, claims: &Map<String, Value>) -> Option<T> {
        if let Some(literal) = &self.literal {
            return Some(literal.clone());
        }
        let mut failed = false;
        let text = render_with(&self.pieces, |path| {
            let value = claim_value(claims, path);
            failed |= value.is_none();
            value
        });
        if failed {
            return None;
        }
        T::parse_rendered(&text).ok()
    }

    /// The literal value, when the template has no placeholder.
    pub fn literal(&self) -> Option<&T> {
        self.literal.as_ref()
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

fn render_with<'a>(
    pieces: &'a [Piece],
    mut value: impl FnMut(&'a [String]) -> Option<&'a str>,
) -> String {
    let mut text = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(literal) => text.push_str(literal),
            Piece::Claim(path) => text.push_str(value(path).unwrap_or_default()),
        }
    }
    text
}

/// The claim's value if it is safe to place in a resource or service name.
fn claim_value<'a>(claims: &'a Map<String, Value>, path: &[String]) -> Option<&'a str> {
    let text = claim_at(claims, path)?.as_str()?;
    safe_claim_value(text).then_some(text)
}

/// Whether a claim value may stand in a template: see the module documentation.
pub fn safe_claim_value(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_CLAIM_VALUE
        && text != "."
        && text != ".."
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~@+:".contains(&b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn resource(text: &str) -> Template<ResourcePattern> {
        Template::parse(text).unwrap()
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn renders_nested_claims_into_whole_segments() {
        let t = resource("tenants/{kubernetes.io/namespace}/*");
        let c = claims(json!({"kubernetes.io": {"namespace": "orders"}}));
        assert_eq!(t.render(&c).unwrap().to_string(), "tenants/orders/*");
        let s: Template<ServiceName> = Template::parse("{owner}-api").unwrap();
        assert_eq!(
            s.render(&claims(json!({"owner": "octo"})))
                .unwrap()
                .as_str(),
            "octo-api"
        );
    }

    #[test]
    fn placements_that_could_overlap_are_refused_at_load() {
        for bad in [
            "tenants/{ns}*",
            "tenants/{ns}-x/*",
            "tenants/x{ns}/*",
            "tenants/{a}{b}/*",
            "t/{ns",
            "t/{}/x",
            "t/{a//b}",
            "t/}{a}",
        ] {
            assert!(Template::<ResourcePattern>::parse(bad).is_err(), "{bad}");
        }
        assert!(Template::<ServiceName>::parse("{a}-{b}").is_err());
        assert!(Template::<ServiceName>::parse("{a}/api").is_err());
        assert!(resource("{ns}").literal().is_none());
        assert!(
            resource("{ns}/reports")
                .render(&claims(json!({"ns": "a"})))
                .is_some()
        );
    }

    #[test]
    fn unsafe_claim_values_never_match() {
        let t = resource("tenants/{ns}/*");
        for value in [
            json!(""),
            json!("*"),
            json!("a*"),
            json!("a/b"),
            json!("."),
            json!(".."),
            json!("a%2Fb"),
            json!("a\nb"),
            json!("a\u{200B}"),
            json!("ü"),
            json!("a b"),
            json!("a;b"),
            json!(7),
            json!(["a"]),
            json!({"a": "b"}),
            json!(null),
            json!("x".repeat(MAX_CLAIM_VALUE + 1)),
        ] {
            assert!(t.render(&claims(json!({"ns": value}))).is_none(), "{value}");
        }
        assert!(t.render(&claims(json!({}))).is_none());
        assert!(
            t.render(&claims(json!({"ns": "a.b-c_d~e@f+g:h"})))
                .is_some()
        );
    }

    proptest! {
        /// Whatever the claim value, a rendering is either refused or exactly the template with
        /// that value in its segment: never a prefix of another tenant's, never wider.
        #[test]
        fn hostile_values_never_widen(value in any::<String>(), other in "[a-z]{1,8}") {
            let t = resource("tenants/{ns}/*");
            if let Some(rendered) = t.render(&claims(json!({"ns": value.clone()}))) {
                prop_assert_eq!(rendered.to_string(), format!("tenants/{value}/*"));
                prop_assert!(!value.contains('/') && !value.contains('*'));
                let another = format!("tenants/{other}/x");
                prop_assert_eq!(rendered.matches(&another), value == other);
            }
        }

        #[test]
        fn hostile_service_values_stay_one_name(value in any::<String>()) {
            let t: Template<ServiceName> = Template::parse("{owner}-api").unwrap();
            if let Some(rendered) = t.render(&claims(json!({"owner": value.clone()}))) {
                prop_assert_eq!(rendered.as_str(), format!("{value}-api"));
                prop_assert!(safe_claim_value(&value));
            }
        }
    }
}
