//! Deriving the agent's identity from verified claims with a template from the issuer's config,
//! e.g. `k8s:{kubernetes.io/namespace}/{kubernetes.io/serviceaccount/name}` or
//! `github:{repository}@{workflow}`. Path segments are split on `/` so claim names may hold dots.

use serde_json::{Map, Value};

use super::IdentityError;
use super::text::display_name_problem;

/// A piece of a claim template: literal text, or the claim at a path (`kubernetes.io/namespace`
/// is `["kubernetes.io", "namespace"]`). Agent templates and policy templates share the syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Claim(Vec<String>),
}

/// Splits a template into its pieces; `what` names it in errors (`agent template`).
pub fn split_template(template: &str, what: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if rest[..open].contains('}') {
            return Err(format!("{what} {template:?} has a stray '}}'"));
        }
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_owned()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("{what} {template:?} has an unclosed '{{'"))?;
        let path = &rest[open + 1..open + close];
        if path.is_empty() || path.split('/').any(str::is_empty) || path.contains('{') {
            return Err(format!("{what} {template:?} has an empty claim path"));
        }
        pieces.push(Piece::Claim(path.split('/').map(str::to_owned).collect()));
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("{what} {template:?} has a stray '}}'"));
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_owned()));
    }
    Ok(pieces)
}

/// The value at a claim path, if every step of it is there.
pub fn claim_at<'a>(claims: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(claims.get(first)?, |value, segment| value.get(segment))
}

/// A parsed agent template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTemplate {
    pieces: Vec<Piece>,
}

/// Longest agent identity accepted.
pub const MAX_AGENT_LEN: usize = 256;

impl AgentTemplate {
    pub fn parse(template: &str) -> Result<AgentTemplate, String> {
        let pieces = split_template(template, "agent template")?;
        if !pieces.iter().any(|p| matches!(p, Piece::Claim(_))) {
            return Err(format!("agent template {template:?} uses no claim"));
        }
        Ok(AgentTemplate { pieces })
    }

    /// Renders the agent identity. A missing, empty or non-scalar claim is an error, as is a
    /// result over [`MAX_AGENT_LEN`] bytes or one that is not an unambiguous display name
    /// ([`super::text`]: control characters would forge log lines; bidi overrides, zero-width
    /// and other invisible characters, or another encoding of the same text, would let a second
    /// agent look exactly like a suspended one).
    pub fn render(&self, claims: &Map<String, Value>) -> Result<String, IdentityError> {
        let mut agent = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => agent.push_str(text),
                Piece::Claim(path) => agent.push_str(&claim_text(claims, path)?),
            }
        }
        let problem = if agent.len() > MAX_AGENT_LEN {
            Some("the agent identity would be too long")
        } else {
            display_name_problem(&agent)
        };
        if let Some(why) = problem {
            return Err(IdentityError::ClaimInvalid(format!(
                "{} ({why})",
                self.claim_names()
            )));
        }
        Ok(agent)
    }

    fn claim_names(&self) -> String {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Claim(path) => Some(path.join("/")),
                Piece::Text(_) => None,
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn claim_text(claims: &Map<String, Value>, path: &[String]) -> Result<String, IdentityError> {
    let missing = || IdentityError::ClaimMissing(path.join("/"));
    match claim_at(claims, path).ok_or_else(missing)? {
        Value::String(text) if !text.is_empty() => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn renders_nested_claims_with_dotted_names() {
        let t = AgentTemplate::parse(
            "k8s:{kubernetes.io/namespace}/{kubernetes.io/serviceaccount/name}",
        )
        .unwrap();
        let c = claims(
            json!({"kubernetes.io": {"namespace": "orders", "serviceaccount": {"name": "bot"}}}),
        );
        assert_eq!(t.render(&c).unwrap(), "k8s:orders/bot");
    }

    #[test]
    fn missing_and_hostile_claims_are_errors() {
        let t = AgentTemplate::parse("github:{repository}").unwrap();
        assert!(matches!(
            t.render(&claims(json!({}))),
            Err(IdentityError::ClaimMissing(_))
        ));
        assert!(matches!(
            t.render(&claims(json!({"repository": ""}))),
            Err(IdentityError::ClaimMissing(_))
        ));
        assert!(matches!(
            t.render(&claims(
                json!({"repository": "a\n\"); right(\"*\",\"admin\")"})
            )),
            Err(IdentityError::ClaimInvalid(_))
        ));
        // Quotes and parentheses are only text.
        assert_eq!(
            t.render(&claims(json!({"repository": "a\"); right(\"*\")"})))
                .unwrap(),
            "github:a\"); right(\"*\")"
        );
    }

    #[test]
    fn look_alike_identities_are_refused() {
        let t = AgentTemplate::parse("k8s:{ns}/{sa}").unwrap();
        for sa in [
            "bot\u{202E}",
            "b\u{200B}ot",
            "bot\u{FE0F}",
            "bot ",
            "bo\u{0308}t",
        ] {
            let error = t
                .render(&claims(json!({"ns": "orders", "sa": sa})))
                .unwrap_err();
            assert!(matches!(error, IdentityError::ClaimInvalid(_)), "{sa:?}");
            assert!(error.to_string().contains("ns, sa ("), "{error}");
        }
        assert!(matches!(
            t.render(&claims(
                json!({"ns": "orders", "sa": "x".repeat(MAX_AGENT_LEN)})
            )),
            Err(IdentityError::ClaimInvalid(_))
        ));
        assert_eq!(
            t.render(&claims(json!({"ns": "orders", "sa": "böt"})))
                .unwrap(),
            "k8s:orders/böt"
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(AgentTemplate::parse("static").is_err());
        assert!(AgentTemplate::parse("{sub").is_err());
        assert!(AgentTemplate::parse("{}").is_err());
        assert!(AgentTemplate::parse("{a//b}").is_err());
        assert!(AgentTemplate::parse("x}{sub}").is_err());
    }
}
