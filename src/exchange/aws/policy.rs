//! The session policy: what the writ's rights on `aws:s3/` resources become in IAM terms.
//!
//! AWS grants an assumed-role session the intersection of the role's own policies and the
//! session policy passed with AssumeRole, so the session policy is where a writ's scope is
//! enforced. Only S3 is translated:
//!
//! | writ right | IAM |
//! | --- | --- |
//! | `aws:s3/<bucket>/<key>` `read` | `s3:GetObject`, `s3:GetObjectVersion` on `arn:aws:s3:::<bucket>/<key>` |
//! | `aws:s3/<bucket>/<prefix>*` `write` | `s3:PutObject` on `arn:aws:s3:::<bucket>/<prefix>*` |
//! | ... `delete` | `s3:DeleteObject` |
//! | ... `list` | `s3:ListBucket` on `arn:aws:s3:::<bucket>`, `StringLike s3:prefix "<prefix>*"` |
//!
//! Every statement also holds only while `aws:CurrentTime` is before the writ's expiry, so the
//! credentials stop working with the writ even though STS issues them for 15 minutes at least.
//! Anything else is refused by name ([`ScopeError`]); nothing is silently widened or dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde_json::{Value, json};
use writ_verify::ResourcePattern;

/// AWS's limit on a session policy's plain text (2048 characters). The JSON is checked against
/// it before AWS packs it, which can only be smaller.
pub const SESSION_POLICY_MAX: usize = 2048;

/// A session policy document, compact JSON within [`SESSION_POLICY_MAX`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPolicy(String);

impl SessionPolicy {
    /// The document as sent to STS.
    pub fn as_json(&self) -> &str {
        &self.0
    }
}

/// Why rights cannot be exchanged for AWS credentials (the caller answers 403).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Nothing would be granted: no rights, or none the role serves.
    #[error("the writ grants nothing this role serves (rights on aws:s3/<bucket>/... resources)")]
    NoRights,
    /// The resource is not `aws:<service>/...`.
    #[error("{0:?} is not an AWS resource (aws:s3/<bucket>/<key>)")]
    NotAws(String),
    /// An AWS service other than S3.
    #[error("{resource:?} is on AWS service {service:?}; only s3 is exchanged")]
    UnsupportedService { resource: String, service: String },
    /// An operation with no S3 meaning here.
    #[error("operation {0:?} is not exchanged for AWS credentials (read, write, delete or list)")]
    UnknownOperation(String),
    /// The resource names no bucket and object key or key prefix (`aws:s3/*`,
    /// `aws:s3/reports*`, `aws:s3/reports`).
    #[error(
        "{0:?} does not name a bucket and a key: write aws:s3/<bucket>/<key> or \
         aws:s3/<bucket>/<key prefix>*"
    )]
    NoBucket(String),
    /// Not a valid S3 bucket name.
    #[error("{bucket:?} (in {resource:?}) is not a valid S3 bucket name")]
    InvalidBucket { resource: String, bucket: String },
    /// A character IAM would read as a wildcard (`*`, `?`) or a policy variable (`$`) in the
    /// object key.
    #[error(
        "{resource:?}: {character:?} in an object key would be read by IAM as a wildcard or variable"
    )]
    IamSpecialCharacter { resource: String, character: char },
    /// `list` on one object: S3 lists by key prefix, so listing "one key" would show the names
    /// of every key that starts with it.
    #[error(
        "{0:?}: list is granted on key prefixes (aws:s3/<bucket>/<prefix>*), not on one object"
    )]
    ListOnObject(String),
    /// The writ has expired.
    #[error("the writ has expired")]
    Expired,
    /// The policy would exceed AWS's session policy limit.
    #[error(
        "the session policy would be {length} characters, over AWS's limit of \
         {SESSION_POLICY_MAX}: exchange a writ with fewer rights"
    )]
    TooLong { length: usize },
}

/// An S3 object, object prefix or whole bucket named by a writ resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Target {
    pub bucket: String,
    /// The object key (exact) or key prefix (empty: the whole bucket).
    pub key: String,
    pub prefix: bool,
}

/// Reads `aws:s3/<bucket>/<key>` or `aws:s3/<bucket>/<key prefix>*`; the key is the resource's
/// percent-decoded text.
pub fn s3_target(pattern: &ResourcePattern) -> Result<S3Target, ScopeError> {
    let (text, prefix) = match (pattern.exact(), pattern.prefix()) {
        (Some(exact), _) => (exact, false),
        (None, Some(prefix)) => (prefix, true),
        (None, None) => return Err(ScopeError::NotAws(pattern.to_string())),
    };
    let resource = || pattern.to_string();
    let Some(rest) = text.strip_prefix("aws:") else {
        return Err(ScopeError::NotAws(resource()));
    };
    let tail = match rest.split_once('/') {
        Some(("s3", tail)) => tail,
        Some((service, _)) => {
            return Err(ScopeError::UnsupportedService {
                resource: resource(),
                service: service.to_owned(),
            });
        }
        None if rest == "s3" || prefix => return Err(ScopeError::NoBucket(resource())),
        None => {
            return Err(ScopeError::UnsupportedService {
                resource: resource(),
                service: rest.to_owned(),
            });
        }
    };
    let Some((bucket, key)) = tail.split_once('/') else {
        return Err(ScopeError::NoBucket(resource()));
    };
    if !valid_bucket_name(bucket) {
        return Err(ScopeError::InvalidBucket {
            resource: resource(),
            bucket: bucket.to_owned(),
        });
    }
    if key.is_empty() && !prefix {
        return Err(ScopeError::NoBucket(resource()));
    }
    // A canonical resource is written as in a URL path: the object key is its decoded text
    // (`my%20file.csv` is the key `my file.csv`). Canonical resources never encode `/`.
    let key = percent_encoding::percent_decode_str(key)
        .decode_utf8()
        .map_err(|_| ScopeError::NotAws(resource()))?;
    if let Some(character) = key.chars().find(|c| matches!(c, '*' | '?' | '$')) {
        return Err(ScopeError::IamSpecialCharacter {
            resource: resource(),
            character,
        });
    }
    Ok(S3Target {
        bucket: bucket.to_owned(),
        key: key.into_owned(),
        prefix,
    })
}

/// S3's general purpose bucket naming rules: 3 to 63 lowercase letters, digits, `.` and `-`,
/// starting and ending with a letter or digit, no `..`, not an IP address, none of the
/// reserved prefixes and suffixes.
pub fn valid_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (3..=63).contains(&bytes.len())
        && bytes.iter().all(|b| edge(b) || *b == b'.' || *b == b'-')
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
        && !["xn--", "sthree-", "amzn-s3-demo-"]
            .iter()
            .any(|p| name.starts_with(p))
        && !["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// The rights of a writ that fall within a role's resources: each right narrowed to the part a
/// role pattern serves (a right on `aws:s3/b/*` and a role serving `aws:s3/b/2026/*` give a
/// right on `aws:s3/b/2026/*`). Rights outside every role pattern are left out: they are for
/// other roles or services.
pub fn within_role(
    role_resources: &[ResourcePattern],
    rights: &[(ResourcePattern, String)],
) -> Vec<(ResourcePattern, String)> {
    let mut narrowed = BTreeSet::new();
    for (right, operation) in rights {
        for served in role_resources {
            if let Some(both) = intersection(right, served) {
                narrowed.insert((both.clone(), operation.clone()));
            }
        }
    }
    narrowed.into_iter().collect()
}

/// The pattern naming exactly the resources both name, when it is one of them (it always is for
/// exact and prefix patterns), or `None` when they share none.
fn intersection<'a>(a: &'a ResourcePattern, b: &'a ResourcePattern) -> Option<&'a ResourcePattern> {
    match (a.exact(), b.exact()) {
        (Some(x), _) if b.matches(x) => Some(a),
        (_, Some(y)) if a.matches(y) => Some(b),
        (Some(_), _) | (_, Some(_)) => None,
        (None, None) => {
            let (pa, pb) = (
                a.prefix().unwrap_or_default(),
                b.prefix().unwrap_or_default(),
            );
            if pa.starts_with(pb) {
                Some(a)
            } else if pb.starts_with(pa) {
                Some(b)
            } else {
                None
            }
        }
    }
}

/// The session policy granting exactly `rights` (S3 only) until `writ_expires_at`, in the
/// `aws` partition.
pub fn session_policy(
    rights: &[(ResourcePattern, String)],
    writ_expires_at: SystemTime,
) -> Result<SessionPolicy, ScopeError> {
    session_policy_in("aws", rights, writ_expires_at)
}

/// [`session_policy`] in an AWS partition (`aws`, `aws-cn`, `aws-us-gov`: the role ARN's).
pub fn session_policy_in(
    partition: &str,
    rights: &[(ResourcePattern, String)],
    writ_expires_at: SystemTime,
) -> Result<SessionPolicy, ScopeError> {
    if rights.is_empty() {
        return Err(ScopeError::NoRights);
    }
    let mut objects: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    // Per bucket: `None` lists the whole bucket, else the `s3:prefix` values allowed.
    let mut lists: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
    for (pattern, operation) in rights {
        let target = s3_target(pattern)?;
        let object_arn = || {
            let star = if target.prefix { "*" } else { "" };
            format!(
                "arn:{partition}:s3:::{}/{}{star}",
                target.bucket, target.key
            )
        };
        match operation.as_str() {
            "read" | "write" | "delete" => {
                objects
                    .entry(match operation.as_str() {
                        "read" => "read",
                        "write" => "write",
                        _ => "delete",
                    })
                    .or_default()
                    .insert(object_arn());
            }
            "list" => {
                let entry = lists
                    .entry(target.bucket.clone())
                    .or_insert_with(|| Some(BTreeSet::new()));
                if !target.prefix {
                    return Err(ScopeError::ListOnObject(pattern.to_string()));
                }
                if target.key.is_empty() {
                    *entry = None;
                } else if let Some(prefixes) = entry {
                    prefixes.insert(format!("{}*", target.key));
                }
            }
            other => return Err(ScopeError::UnknownOperation(other.to_owned())),
        }
    }
    let until = crate::time::rfc3339(crate::time::unix_seconds(writ_expires_at));
    let before_expiry = json!({ "aws:CurrentTime": until });
    let mut statements: Vec<Value> = Vec::new();
    for (operation, arns) in &objects {
        let actions: &[&str] = match *operation {
            "read" => &["s3:GetObject", "s3:GetObjectVersion"],
            "write" => &["s3:PutObject"],
            _ => &["s3:DeleteObject"],
        };
        statements.push(json!({
            "Effect": "Allow",
            "Action": actions,
            "Resource": arns,
            "Condition": { "DateLessThan": before_expiry },
        }));
    }
    for (bucket, prefixes) in &lists {
        let mut condition = serde_json::Map::new();
        condition.insert("DateLessThan".into(), before_expiry.clone());
        if let Some(prefixes) = prefixes {
            condition.insert("StringLike".into(), json!({ "s3:prefix": prefixes }));
        }
        statements.push(json!({
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [format!("arn:{partition}:s3:::{bucket}")],
            "Condition": condition,
        }));
    }
    let document = json!({ "Version": "2012-10-17", "Statement": statements }).to_string();
    let length = document.chars().count();
    if length > SESSION_POLICY_MAX {
        return Err(ScopeError::TooLong { length });
    }
    Ok(SessionPolicy(document))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn p(text: &str) -> ResourcePattern {
        ResourcePattern::parse(text).unwrap()
    }

    fn right(resource: &str, operation: &str) -> (ResourcePattern, String) {
        (p(resource), operation.to_owned())
    }

    /// 2026-01-01T00:00:00Z
    fn expiry() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    fn policy(rights: &[(ResourcePattern, String)]) -> Value {
        serde_json::from_str(session_policy(rights, expiry()).unwrap().as_json()).unwrap()
    }

    #[test]
    fn each_operation_becomes_its_s3_actions_until_the_writ_expires() {
        let document = policy(&[
            right("aws:s3/reports-bucket/2026/*", "read"),
            right("aws:s3/reports-bucket/2026/q1.csv", "write"),
            right("aws:s3/reports-bucket/tmp/*", "delete"),
        ]);
        let until = json!({ "DateLessThan": { "aws:CurrentTime": "2026-01-01T00:00:00Z" } });
        assert_eq!(
            document,
            json!({
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["s3:DeleteObject"],
                        "Resource": ["arn:aws:s3:::reports-bucket/tmp/*"],
                        "Condition": until,
                    },
                    {
                        "Effect": "Allow",
                        "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                        "Resource": ["arn:aws:s3:::reports-bucket/2026/*"],
                        "Condition": until,
                    },
                    {
                        "Effect": "Allow",
                        "Action": ["s3:PutObject"],
                        "Resource": ["arn:aws:s3:::reports-bucket/2026/q1.csv"],
                        "Condition": until,
                    },
                ]
            })
        );
    }

    #[test]
    fn list_on_one_object_is_refused() {
        assert_eq!(
            session_policy(
                &[right("aws:s3/reports-bucket/archive", "list")],
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
            ),
            Err(ScopeError::ListOnObject(
                "aws:s3/reports-bucket/archive".into()
            ))
        );
    }

    #[test]
    fn list_is_on_the_bucket_limited_to_the_prefix() {
        let document = policy(&[
            right("aws:s3/reports-bucket/2026/*", "list"),
            right("aws:s3/reports-bucket/archive/*", "list"),
            right("aws:s3/other-bucket/*", "list"),
        ]);
        assert_eq!(
            document["Statement"],
            json!([
                {
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket"],
                    "Resource": ["arn:aws:s3:::other-bucket"],
                    "Condition": {
                        "DateLessThan": { "aws:CurrentTime": "2026-01-01T00:00:00Z" },
                    },
                },
                {
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket"],
                    "Resource": ["arn:aws:s3:::reports-bucket"],
                    "Condition": {
                        "DateLessThan": { "aws:CurrentTime": "2026-01-01T00:00:00Z" },
                        "StringLike": { "s3:prefix": ["2026/*", "archive/*"] },
                    },
                },
            ])
        );
    }

    #[test]
    fn object_keys_are_the_decoded_resource() {
        let policy = session_policy(
            &[
                right("aws:s3/b-1/my%20file%C3%A9.csv", "read"),
                right("aws:s3/b-1/a%20b/*", "list"),
            ],
            expiry(),
        )
        .unwrap();
        let document: Value = serde_json::from_str(policy.as_json()).unwrap();
        assert_eq!(
            document["Statement"][0]["Resource"][0],
            "arn:aws:s3:::b-1/my fileé.csv"
        );
        assert_eq!(
            document["Statement"][1]["Condition"]["StringLike"]["s3:prefix"][0],
            "a b/*"
        );
    }

    #[test]
    fn the_partition_follows_the_role() {
        let policy =
            session_policy_in("aws-cn", &[right("aws:s3/b-1/k", "read")], expiry()).unwrap();
        assert!(policy.as_json().contains("arn:aws-cn:s3:::b-1/k"));
    }

    #[test]
    fn anything_else_is_refused_by_name() {
        let refused = |resource: &str, operation: &str| {
            session_policy(&[right(resource, operation)], expiry()).unwrap_err()
        };
        assert_eq!(session_policy(&[], expiry()), Err(ScopeError::NoRights));
        assert!(matches!(
            refused("aws:dynamodb/table/orders", "read"),
            ScopeError::UnsupportedService { service, .. } if service == "dynamodb"
        ));
        assert!(matches!(
            refused("aws:iam*", "read"),
            ScopeError::NoBucket(_)
        ));
        assert!(matches!(
            refused("aws:ec2", "read"),
            ScopeError::UnsupportedService { .. }
        ));
        assert!(matches!(
            refused("orders/42", "read"),
            ScopeError::NotAws(_)
        ));
        assert!(matches!(refused("*", "read"), ScopeError::NotAws(_)));
        assert!(matches!(refused("aws:*", "read"), ScopeError::NoBucket(_)));
        assert!(matches!(
            refused("aws:s3/*", "read"),
            ScopeError::NoBucket(_)
        ));
        assert!(matches!(
            refused("aws:s3/reports*", "read"),
            ScopeError::NoBucket(_)
        ));
        assert!(matches!(
            refused("aws:s3/reports", "list"),
            ScopeError::NoBucket(_)
        ));
        assert_eq!(
            refused("aws:s3/reports-bucket/x", "admin"),
            ScopeError::UnknownOperation("admin".into())
        );
        for bucket in [
            "Reports",
            "ab",
            "a_b",
            "-ab",
            "ab-",
            "a..b",
            "192.168.1.1",
            "xn--ab",
            "ab-s3alias",
        ] {
            assert!(
                matches!(
                    refused(&format!("aws:s3/{bucket}/k"), "read"),
                    ScopeError::InvalidBucket { .. }
                ),
                "{bucket}"
            );
        }
        for (key, character) in [
            ("a%3Fb", '?'),
            ("a%2Ab", '*'),
            ("a$b", '$'),
            ("%24%7Baws:username%7D/x", '$'),
        ] {
            assert_eq!(
                refused(&format!("aws:s3/reports-bucket/{key}"), "read"),
                ScopeError::IamSpecialCharacter {
                    resource: format!("aws:s3/reports-bucket/{key}"),
                    character
                }
            );
        }
    }

    #[test]
    fn a_policy_over_the_limit_is_refused() {
        let rights: Vec<_> = (0..40)
            .map(|i| {
                right(
                    &format!("aws:s3/reports-bucket/some/longer/path/{i}/*"),
                    "read",
                )
            })
            .collect();
        assert!(matches!(
            session_policy(&rights, expiry()),
            Err(ScopeError::TooLong { length }) if length > SESSION_POLICY_MAX
        ));
    }

    #[test]
    fn rights_are_narrowed_to_the_role() {
        let role = [
            p("aws:s3/reports-bucket/2026/*"),
            p("aws:s3/logs-bucket/app.log"),
        ];
        let rights = [
            right("aws:s3/reports-bucket/*", "read"),
            right("aws:s3/reports-bucket/2026/q1/*", "write"),
            right("aws:s3/reports-bucket/2025/x", "read"),
            right("aws:s3/logs-bucket/*", "read"),
            right("orders/42", "read"),
        ];
        assert_eq!(
            within_role(&role, &rights),
            vec![
                right("aws:s3/logs-bucket/app.log", "read"),
                right("aws:s3/reports-bucket/2026/*", "read"),
                right("aws:s3/reports-bucket/2026/q1/*", "write"),
            ]
        );
        assert!(within_role(&role, &[right("aws:s3/reports-bucket/2025/*", "read")]).is_empty());
    }

    fn pattern_strategy() -> impl Strategy<Value = ResourcePattern> {
        ("[ab]{1,3}(/[ab]{1,2}){0,2}", any::<bool>())
            .prop_map(|(text, prefix)| p(&if prefix { format!("{text}*") } else { text }))
    }

    proptest! {
        #[test]
        fn narrowing_never_widens(
            a in pattern_strategy(),
            b in pattern_strategy(),
            resource in "[ab]{1,3}(/[ab]{1,2}){0,3}",
        ) {
            if let Some(both) = intersection(&a, &b) {
                if both.matches(&resource) {
                    prop_assert!(a.matches(&resource) && b.matches(&resource));
                }
            } else {
                prop_assert!(!(a.matches(&resource) && b.matches(&resource)));
            }
        }

        #[test]
        fn policies_are_valid_json_within_the_limit_or_refused(
            keys in prop::collection::vec("[a-z0-9/._+=-]{1,60}", 1..30),
            operation in prop::sample::select(vec!["read", "write", "delete", "list", "admin"]),
        ) {
            let rights: Vec<_> = keys
                .iter()
                .filter_map(|key| ResourcePattern::parse(&format!("aws:s3/bucket-1/{key}")).ok())
                .map(|pattern| (pattern, operation.to_owned()))
                .collect();
            match session_policy(&rights, expiry()) {
                Ok(policy) => {
                    prop_assert!(policy.as_json().chars().count() <= SESSION_POLICY_MAX);
                    let value: Value = serde_json::from_str(policy.as_json()).unwrap();
                    for statement in value["Statement"].as_array().unwrap() {
                        prop_assert_eq!(
                            &statement["Condition"]["DateLessThan"]["aws:CurrentTime"],
                            "2026-01-01T00:00:00Z"
                        );
                    }
                }
                Err(ScopeError::NoRights | ScopeError::TooLong { .. }) => {}
                Err(ScopeError::UnknownOperation(op)) => prop_assert_eq!(op, "admin"),
                Err(ScopeError::ListOnObject(_)) => prop_assert_eq!(operation, "list"),
                Err(other) => prop_assert!(false, "{other}"),
            }
        }
    }
}
