//! Finding the policies that may match an identity without trying every one. A fleet's policies
//! mostly name an issuer and pin a claim to literal values (one policy per namespace, per
//! repository), so the index groups entries by issuer and, within an issuer, by the string they
//! require at a claim path. A decision then matches a handful of candidates rather than a
//! thousand policies. The index only narrows: every candidate is still matched in full.
//!
//! Why the candidates include every entry that matches. An entry matches only when its issuer
//! does (or it names none) and its claim matcher does. A lookup reads the group of its own issuer
//! and the group of entries that name none, so the issuer cannot make it miss an entry. Within a
//! group, an entry is placed in exactly one of two spots:
//! - a level's buckets, under each string its matcher pins at the level's path
//!   ([`ClaimMatcher::exact_paths`]). If the entry matches, the claim at that path is a string
//!   equal to one of those strings; the lookup reads that claim as the matcher does (through
//!   nested objects, strings only) and then the bucket of exactly that string;
//! - the scan list, which every lookup returns.
//!
//! Decisions depend on file order (the first direct permit wins), so candidates come out in
//! ascending order. No entry is returned twice: a lookup reads one bucket per level, an entry
//! sits in one level or in the scan list, and its strings are deduplicated.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::ClaimMatcher;

/// An index over entries (policies or deny rules), each an issuer and a claim matcher, that
/// finds by position the entries an identity may match.
#[derive(Debug, Clone, Default)]
pub struct ClaimIndex {
    entries: usize,
    by_issuer: HashMap<String, Group>,
    /// Entries that name no issuer: candidates whatever the issuer.
    any_issuer: Group,
}

/// The entries of one issuer, or of no issuer.
#[derive(Debug, Clone, Default)]
struct Group {
    /// Each level indexes entries the levels before it could not.
    levels: Vec<Level>,
    /// Entries no level indexes: candidates for every identity.
    scan: Vec<usize>,
}

/// Entries by the string they require at one claim path.
#[derive(Debug, Clone)]
struct Level {
    path: Vec<String>,
    buckets: HashMap<String, Vec<usize>>,
}

/// An entry while the index is built: its position, and each path its matcher pins with the
/// strings allowed there (paths and strings without repeats).
struct Pinned<'a> {
    entry: usize,
    paths: Vec<(Vec<&'a str>, Vec<&'a str>)>,
}

impl ClaimIndex {
    /// Indexes `entries`; an entry is then known by its position in them. `None` as issuer
    /// means any issuer.
    pub fn build<'a>(
        entries: impl IntoIterator<Item = (Option<&'a str>, &'a ClaimMatcher)>,
    ) -> ClaimIndex {
        let mut groups: HashMap<Option<&str>, Vec<Pinned<'_>>> = HashMap::new();
        let mut count = 0;
        for (entry, (issuer, claims)) in entries.into_iter().enumerate() {
            groups
                .entry(issuer)
                .or_default()
                .push(Pinned::new(entry, claims));
            count = entry + 1;
        }
        let mut index = ClaimIndex {
            entries: count,
            ..ClaimIndex::default()
        };
        for (issuer, pinned) in groups {
            let group = Group::build(pinned);
            match issuer {
                Some(issuer) => {
                    index.by_issuer.insert(issuer.to_owned(), group);
                }
                None => index.any_issuer = group,
            }
        }
        index
    }

    /// How many entries were indexed.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// The positions, in ascending order, of the entries that may match an identity from
    /// `issuer` with `claims`: at least every one that does.
    pub fn candidates(&self, issuer: &str, claims: &Map<String, Value>) -> Vec<usize> {
        let mut found = Vec::new();
        if let Some(group) = self.by_issuer.get(issuer) {
            group.collect(claims, &mut found);
        }
        self.any_issuer.collect(claims, &mut found);
        found.sort_unstable();
        found
    }
}

impl<'a> Pinned<'a> {
    fn new(entry: usize, claims: &'a ClaimMatcher) -> Pinned<'a> {
        let mut paths: Vec<(Vec<&str>, Vec<&str>)> = Vec::new();
        for (path, mut strings) in claims.exact_paths() {
            // A matcher built by hand may pin one path twice; either pin alone is a sound
            // constraint, so the first is kept.
            if paths.iter().all(|(known, _)| *known != path) {
                strings.sort_unstable();
                strings.dedup();
                paths.push((path, strings));
            }
        }
        Pinned { entry, paths }
    }

    fn strings_at(&self, path: &[&str]) -> Option<&[&'a str]> {
        self.paths
            .iter()
            .find(|(known, _)| known == path)
            .map(|(_, strings)| strings.as_slice())
    }
}

impl Group {
    /// Adds levels while one narrows the lookup, each on the path that splits best what the
    /// levels before it left; what is left then is scanned.
    fn build(mut left: Vec<Pinned<'_>>) -> Group {
        let mut levels = Vec::new();
        while let Some(path) = best_path(&left) {
            let mut buckets: HashMap<String, Vec<usize>> = HashMap::new();
            left.retain(|pinned| {
                let Some(strings) = pinned.strings_at(&path) else {
                    return true;
                };
                for string in strings {
                    buckets
                        .entry((*string).to_owned())
                        .or_default()
                        .push(pinned.entry);
                }
                false
            });
            levels.push(Level {
                path: path.into_iter().map(str::to_owned).collect(),
                buckets,
            });
        }
        Group {
            levels,
            scan: left.iter().map(|pinned| pinned.entry).collect(),
        }
    }

    fn collect(&self, claims: &Map<String, Value>, found: &mut Vec<usize>) {
        for level in &self.levels {
            let bucket = string_at(claims, &level.path).and_then(|s| level.buckets.get(s));
            if let Some(bucket) = bucket {
                found.extend_from_slice(bucket);
            }
        }
        found.extend_from_slice(&self.scan);
    }
}

/// The path to index `entries` on: the one that most lowers the worst lookup (its largest
/// bucket plus the entries it cannot index, against scanning them all), or none if no path
/// lowers it. Ties go to the first path in order, so the index does not depend on hashing.
fn best_path<'a>(entries: &[Pinned<'a>]) -> Option<Vec<&'a str>> {
    // For each path: how many entries it indexes, and how many land under each string.
    let mut counts: BTreeMap<&[&'a str], (usize, HashMap<&'a str, usize>)> = BTreeMap::new();
    for pinned in entries {
        for (path, strings) in &pinned.paths {
            let (indexed, buckets) = counts.entry(path.as_slice()).or_default();
            *indexed += 1;
            for string in strings {
                *buckets.entry(string).or_default() += 1;
            }
        }
    }
    let mut best: Option<(&[&'a str], usize)> = None;
    for (path, (indexed, buckets)) in counts {
        let largest = buckets.values().copied().max().unwrap_or(0);
        let gain = indexed.saturating_sub(largest);
        if gain > 0 && best.is_none_or(|(_, known)| gain > known) {
            best = Some((path, gain));
        }
    }
    best.map(|(path, _)| path.to_vec())
}

/// The string at `path` in `claims`, through nested objects, as a claim matcher reads it.
fn string_at<'c>(claims: &'c Map<String, Value>, path: &[String]) -> Option<&'c str> {
    let (last, parents) = path.split_last()?;
    let mut object = claims;
    for name in parents {
        object = object.get(name)?.as_object()?;
    }
    object.get(last)?.as_str()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::claims::StringMatch;
    use super::super::{
        Channel, PolicySet, RawRight, RawWritRequest, Subject, WritRequest, reasons,
    };
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::path::Path;
    use std::time::Duration;

    fn matcher(toml_text: &str) -> ClaimMatcher {
        ClaimMatcher::from_table(&toml_text.parse::<toml::Table>().unwrap()).unwrap()
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn index(entries: &[(Option<&str>, ClaimMatcher)]) -> ClaimIndex {
        ClaimIndex::build(entries.iter().map(|(issuer, m)| (*issuer, m)))
    }

    fn namespace(ns: &str) -> ClaimMatcher {
        matcher(&format!(
            "\"kubernetes.io\" = {{ namespace = \"{ns}\", serviceaccount = {{ name = \"agent\" }} }}"
        ))
    }

    fn k8s(ns: &str) -> Map<String, Value> {
        claims(json!({"kubernetes.io": {"namespace": ns, "serviceaccount": {"name": "agent"}}}))
    }

    #[test]
    fn literal_claims_find_their_own_entries_only() {
        let entries: Vec<_> = (0..1000)
            .map(|i| (Some("kubernetes"), namespace(&format!("ns-{i}"))))
            .collect();
        let index = index(&entries);
        assert_eq!(index.entries(), 1000);
        // The shared service account name would not split them: the namespace does.
        assert_eq!(index.candidates("kubernetes", &k8s("ns-917")), vec![917]);
        assert!(index.candidates("kubernetes", &k8s("ns-1000")).is_empty());
        assert!(index.candidates("github", &k8s("ns-917")).is_empty());
    }

    #[test]
    fn arrays_are_indexed_under_each_string_and_prefixes_are_scanned() {
        let entries = vec![
            (Some("github"), matcher("repository = \"acme/a\"")),
            (
                Some("github"),
                matcher("repository = [\"acme/b\", \"acme/c\"]"),
            ),
            (
                Some("github"),
                matcher("repository = [\"acme/d\", \"acme/e*\"]"),
            ),
            (Some("github"), matcher("repository = \"acme/f\"")),
        ];
        let index = index(&entries);
        let repo = |name: &str| claims(json!({ "repository": name }));
        assert_eq!(index.candidates("github", &repo("acme/c")), vec![1, 2]);
        assert_eq!(index.candidates("github", &repo("acme/b")), vec![1, 2]);
        assert_eq!(index.candidates("github", &repo("acme/a")), vec![0, 2]);
        assert_eq!(index.candidates("github", &repo("other")), vec![2]);
    }

    #[test]
    fn entries_without_issuer_are_candidates_for_every_issuer_in_file_order() {
        let entries = vec![
            (None, ClaimMatcher::everything()),
            (Some("kubernetes"), namespace("a")),
            (None, matcher("\"kubernetes.io\" = { namespace = \"a\" }")),
            (Some("kubernetes"), namespace("b")),
            (None, matcher("\"kubernetes.io\" = { namespace = \"b\" }")),
            (Some("kubernetes"), namespace("a")),
        ];
        let index = index(&entries);
        assert_eq!(index.candidates("kubernetes", &k8s("a")), vec![0, 1, 2, 5]);
        assert_eq!(index.candidates("spiffe", &k8s("a")), vec![0, 2]);
        assert_eq!(index.candidates("spiffe", &claims(json!({}))), vec![0]);
    }

    #[test]
    fn absent_and_non_string_claims_reach_only_the_scanned_entries() {
        let entries = vec![
            (Some("k"), namespace("a")),
            (Some("k"), namespace("b")),
            (Some("k"), ClaimMatcher::everything()),
        ];
        let index = index(&entries);
        for odd in [
            json!({}),
            json!({"kubernetes.io": "a"}),
            json!({"kubernetes.io": {"namespace": ["a"]}}),
            json!({"kubernetes.io": {"namespace": 7}}),
            json!({"kubernetes.io.namespace": "a"}),
        ] {
            assert_eq!(
                index.candidates("k", &claims(odd.clone())),
                vec![2],
                "{odd}"
            );
        }
    }

    #[test]
    fn what_one_path_cannot_index_is_indexed_on_another() {
        // Per-repository policies, then organization-wide ones: two levels, nothing scanned.
        let mut entries: Vec<_> = (0..50)
            .map(|i| {
                (
                    Some("github"),
                    matcher(&format!("repository = \"org/r{i}\"")),
                )
            })
            .collect();
        entries.extend((0..10).map(|i| {
            let m = matcher(&format!("repository_owner = \"org{i}\""));
            (Some("github"), m)
        }));
        let index = index(&entries);
        let identity = claims(json!({"repository": "org/r7", "repository_owner": "org3"}));
        assert_eq!(index.candidates("github", &identity), vec![7, 53]);
    }

    #[test]
    fn a_path_shared_by_every_entry_is_not_worth_a_level() {
        let entries: Vec<_> = (0..3)
            .map(|_| (Some("k"), matcher("team = \"all\"")))
            .collect();
        let index = index(&entries);
        assert_eq!(index.by_issuer["k"].levels.len(), 0);
        assert_eq!(
            index.candidates("k", &claims(json!({"team": "x"}))),
            vec![0, 1, 2]
        );
    }

    const FLEET: &str = r#"
[[policy]]
name = "team-wide"
issuer = "k"
claims = { team = "orders-*" }
resources = ["orders/*"]
operations = ["read"]
services = ["orders-api"]
max_ttl = "5m"

[[policy]]
name = "this-team"
issuer = "k"
claims = { team = "orders-eu" }
resources = ["orders/*"]
operations = ["read"]
services = ["orders-api"]
max_ttl = "5m"

[[policy]]
name = "other-team"
issuer = "k"
claims = { team = "billing" }
resources = ["invoices/*"]
operations = ["read"]
services = ["billing-api"]
max_ttl = "5m"
"#;

    fn decide(set: &PolicySet, team: &str) -> Result<String, &'static str> {
        let claims = claims(json!({ "team": team }));
        let request = WritRequest::parse(&RawWritRequest {
            task: "t".into(),
            rights: vec![RawRight {
                resource: "orders/1".into(),
                operations: vec!["read".into()],
            }],
            services: vec!["orders-api".into()],
            ttl: None,
        })
        .unwrap();
        let subject = Subject {
            issuer: "k",
            claims: &claims,
        };
        set.decide(
            subject,
            &request,
            Channel::Direct,
            std::time::SystemTime::now(),
        )
        .map(|permit| permit.policy)
        .map_err(|refusal| refusal.reason)
    }

    #[test]
    fn decisions_through_the_index_keep_file_order() {
        let set = PolicySet::parse(Path::new("p.toml"), FLEET, Duration::from_secs(900)).unwrap();
        // The scanned prefix policy comes first in the file, so it decides, not the indexed one.
        assert_eq!(decide(&set, "orders-eu"), Ok("team-wide".to_owned()));
        assert_eq!(decide(&set, "billing"), Err(reasons::NOT_ALLOWED));
        assert_eq!(decide(&set, "sales"), Err(reasons::NO_MATCHING_POLICY));
    }

    // Random entry sets over a few paths (nested ones too) and a small alphabet, so exact
    // strings, prefixes and claim values collide often.
    const PATHS: [(&str, Option<&str>); 4] =
        [("x", None), ("y", None), ("n", Some("x")), ("n", Some("z"))];
    const WORDS: [&str; 4] = ["", "p", "q", "pq"];

    fn option() -> impl Strategy<Value = StringMatch> {
        (0..WORDS.len(), any::<bool>()).prop_map(|(w, prefix)| {
            let word = WORDS[w].to_owned();
            if prefix {
                StringMatch::Prefix(word)
            } else {
                StringMatch::Exact(word)
            }
        })
    }

    /// A claim matcher built by hand, so repeated names and empty alternatives occur too.
    fn any_matcher() -> impl Strategy<Value = ClaimMatcher> {
        let field = (0..PATHS.len(), prop::collection::vec(option(), 0..3));
        prop::collection::vec(field, 0..4).prop_map(|fields| {
            let fields = fields
                .into_iter()
                .map(|(p, options)| {
                    let leaf = ClaimMatcher::Any(options);
                    match PATHS[p] {
                        (name, None) => (name.to_owned(), leaf),
                        (outer, Some(inner)) => (
                            outer.to_owned(),
                            ClaimMatcher::Object(vec![(inner.to_owned(), leaf)]),
                        ),
                    }
                })
                .collect();
            ClaimMatcher::Object(fields)
        })
    }

    fn any_value() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            (0..WORDS.len()).prop_map(|w| Some(json!(WORDS[w]))),
            (0..WORDS.len()).prop_map(|w| Some(json!(format!("{}q", WORDS[w])))),
            Just(Some(json!(1))),
            Just(Some(json!(["p"]))),
        ]
    }

    fn any_claims() -> impl Strategy<Value = Map<String, Value>> {
        (
            any_value(),
            any_value(),
            any_value(),
            any_value(),
            any::<bool>(),
        )
            .prop_map(|(x, y, nx, nz, nested)| {
                let object = |fields: [(&str, Option<Value>); 2]| -> Map<String, Value> {
                    fields
                        .into_iter()
                        .filter_map(|(name, value)| Some((name.to_owned(), value?)))
                        .collect()
                };
                let mut claims = object([("x", x), ("y", y)]);
                let n = if nested {
                    Value::Object(object([("x", nx), ("z", nz)]))
                } else {
                    json!("n")
                };
                claims.insert("n".to_owned(), n);
                claims
            })
    }

    fn any_issuer() -> impl Strategy<Value = Option<&'static str>> {
        prop_oneof![
            Just(None),
            Just(Some("a")),
            Just(Some("b")),
            Just(Some("c"))
        ]
    }

    proptest! {
        #[test]
        fn candidates_are_sorted_and_include_every_match(
            entries in prop::collection::vec((any_issuer(), any_matcher()), 0..40),
            issuer in prop_oneof![Just("a"), Just("b"), Just("d")],
            claims in any_claims(),
        ) {
            let found = index(&entries).candidates(issuer, &claims);
            prop_assert!(found.windows(2).all(|pair| pair[0] < pair[1]), "{found:?}");
            prop_assert!(found.iter().all(|&i| i < entries.len()));
            for (i, (entry_issuer, matcher)) in entries.iter().enumerate() {
                let matches = entry_issuer.is_none_or(|name| name == issuer)
                    && matcher.matches(&claims);
                prop_assert!(!matches || found.contains(&i), "entry {i} matches: {found:?}");
            }
        }
    }
}
