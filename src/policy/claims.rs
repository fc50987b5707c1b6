//! Matching an identity's claims against a policy's `claims` table. The table mirrors the token's
//! JSON shape (`claims = { "kubernetes.io" = { namespace = "orders" } }`), so claim names that
//! contain dots need no escaping. A string matches exactly, or as a prefix when it ends in `*`; an
//! array matches when any of its strings does; a table matches a nested object. Claims the table
//! does not mention are not looked at. A claim that is absent or not a string never matches.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimMatcher {
    Any(Vec<StringMatch>),
    Object(Vec<(String, ClaimMatcher)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
}

impl ClaimMatcher {
    /// Matches everything (a policy without `claims`).
    pub fn everything() -> ClaimMatcher {
        ClaimMatcher::Object(Vec::new())
    }

    /// Builds a matcher from a policy table, naming the first value of an unsupported type.
    pub fn from_table(table: &toml::Table) -> Result<ClaimMatcher, String> {
        let mut fields = Vec::with_capacity(table.len());
        for (name, value) in table {
            fields.push((name.clone(), Self::from_value(name, value)?));
        }
        Ok(ClaimMatcher::Object(fields))
    }

    fn from_value(name: &str, value: &toml::Value) -> Result<ClaimMatcher, String> {
        match value {
            toml::Value::String(text) => Ok(ClaimMatcher::Any(vec![StringMatch::new(text)])),
            toml::Value::Array(items) if !items.is_empty() => items
                .iter()
                .map(|item| match item {
                    toml::Value::String(text) => Ok(StringMatch::new(text)),
                    _ => Err(format!("claim {name:?}: arrays may hold only strings")),
                })
                .collect::<Result<_, _>>()
                .map(ClaimMatcher::Any),
            toml::Value::Table(table) => Self::from_table(table),
            _ => Err(format!(
                "claim {name:?}: expected a string, a non-empty array of strings or a table"
            )),
        }
    }

    pub fn matches(&self, claims: &Map<String, Value>) -> bool {
        match self {
            ClaimMatcher::Object(fields) => fields.iter().all(|(name, matcher)| {
                claims
                    .get(name)
                    .is_some_and(|value| matcher.matches_value(value))
            }),
            ClaimMatcher::Any(_) => false,
        }
    }

    /// The path of the first claim that does not match (`kubernetes.io/namespace`), for
    /// explanations; `None` when the claims match.
    pub fn mismatch(&self, claims: &Map<String, Value>) -> Option<String> {
        let ClaimMatcher::Object(fields) = self else {
            return Some(String::new());
        };
        fields.iter().find_map(|(name, matcher)| {
            let inner = match (matcher, claims.get(name)) {
                (ClaimMatcher::Object(_), Some(Value::Object(object))) => matcher.mismatch(object),
                (_, Some(value)) if matcher.matches_value(value) => None,
                _ => Some(String::new()),
            }?;
            Some(if inner.is_empty() {
                name.clone()
            } else {
                format!("{name}/{inner}")
            })
        })
    }

    /// Every claim path this matcher pins to exact strings, with those strings: whenever the
    /// matcher matches some claims, the value at each such path is a string equal to one of its
    /// strings. A path with a prefix alternative is left out (it pins nothing exact). The
    /// policy index relies on this promise.
    pub fn exact_paths(&self) -> Vec<(Vec<&str>, Vec<&str>)> {
        let mut found = Vec::new();
        if let ClaimMatcher::Object(fields) = self {
            Self::collect_exact(fields, &mut Vec::new(), &mut found);
        }
        found
    }

    fn collect_exact<'a>(
        fields: &'a [(String, ClaimMatcher)],
        path: &mut Vec<&'a str>,
        found: &mut Vec<(Vec<&'a str>, Vec<&'a str>)>,
    ) {
        for (name, matcher) in fields {
            path.push(name);
            match matcher {
                ClaimMatcher::Object(inner) => Self::collect_exact(inner, path, found),
                ClaimMatcher::Any(options) => {
                    let exact: Option<Vec<&str>> = options
                        .iter()
                        .map(|option| match option {
                            StringMatch::Exact(text) => Some(text.as_str()),
                            StringMatch::Prefix(_) => None,
                        })
                        .collect();
                    if let Some(exact) = exact {
                        found.push((path.clone(), exact));
                    }
                }
            }
            path.pop();
        }
    }

    fn matches_value(&self, value: &Value) -> bool {
        match (self, value) {
            (ClaimMatcher::Any(options), Value::String(text)) => {
                options.iter().any(|option| option.matches(text))
            }
            (ClaimMatcher::Object(_), Value::Object(object)) => self.matches(object),
            _ => false,
        }
    }
}

impl StringMatch {
    fn new(text: &str) -> StringMatch {
        match text.strip_suffix('*') {
            Some(prefix) => StringMatch::Prefix(prefix.to_owned()),
            None => StringMatch::Exact(text.to_owned()),
        }
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            StringMatch::Exact(expected) => text == expected,
            StringMatch::Prefix(prefix) => text.starts_with(prefix.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn matcher(toml_text: &str) -> ClaimMatcher {
        ClaimMatcher::from_table(&toml_text.parse::<toml::Table>().unwrap()).unwrap()
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn nested_kubernetes_claims() {
        let m = matcher(
            "\"kubernetes.io\" = { namespace = \"orders\", serviceaccount = { name = \"bot-*\" } }",
        );
        let good = claims(
            json!({"kubernetes.io": {"namespace": "orders", "serviceaccount": {"name": "bot-7"}}}),
        );
        let other_ns = claims(
            json!({"kubernetes.io": {"namespace": "billing", "serviceaccount": {"name": "bot-7"}}}),
        );
        let flat = claims(json!({"kubernetes.io.namespace": "orders"}));
        assert!(m.matches(&good));
        assert!(!m.matches(&other_ns));
        assert!(!m.matches(&flat));
    }

    #[test]
    fn arrays_are_alternatives_and_non_strings_never_match() {
        let m = matcher("workflow = [\"deploy\", \"release\"]");
        assert!(m.matches(&claims(json!({"workflow": "release"}))));
        assert!(!m.matches(&claims(json!({"workflow": "test"}))));
        assert!(!m.matches(&claims(json!({"workflow": ["deploy"]}))));
        assert!(!m.matches(&claims(json!({}))));
    }

    #[test]
    fn a_mismatch_names_the_claim_path() {
        let m = matcher("\"kubernetes.io\" = { namespace = \"orders\" }\nsub = \"a*\"");
        let wrong_ns = claims(json!({"kubernetes.io": {"namespace": "billing"}, "sub": "ab"}));
        assert_eq!(
            m.mismatch(&wrong_ns).as_deref(),
            Some("kubernetes.io/namespace")
        );
        let no_sub = claims(json!({"kubernetes.io": {"namespace": "orders"}}));
        assert_eq!(m.mismatch(&no_sub).as_deref(), Some("sub"));
        let good = claims(json!({"kubernetes.io": {"namespace": "orders"}, "sub": "ab"}));
        assert_eq!(m.mismatch(&good), None);
        assert!(m.matches(&good));
    }

    #[test]
    fn exact_paths_name_only_exact_alternatives() {
        let m = matcher(
            "repository = [\"acme/a\", \"acme/b\"]\nref = \"refs/heads/*\"\n\
             \"kubernetes.io\" = { namespace = \"orders\", pod = [\"x\", \"y-*\"] }",
        );
        let mut paths = m.exact_paths();
        paths.sort();
        assert_eq!(
            paths,
            vec![
                (vec!["kubernetes.io", "namespace"], vec!["orders"]),
                (vec!["repository"], vec!["acme/a", "acme/b"]),
            ]
        );
        assert!(ClaimMatcher::everything().exact_paths().is_empty());
    }

    #[test]
    fn unsupported_values_are_refused_at_load() {
        let table = "n = 3".parse::<toml::Table>().unwrap();
        assert!(ClaimMatcher::from_table(&table).is_err());
        let table = "n = []".parse::<toml::Table>().unwrap();
        assert!(ClaimMatcher::from_table(&table).is_err());
    }
}
