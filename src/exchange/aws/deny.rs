//! The role's `writ-revoked-sessions` inline policy: one Deny statement per revoked writ.
//!
//! STS credentials cannot be revoked, but a role's policies are evaluated on every request its
//! sessions make. Each session carries the session tag `writ-id`, so a statement
//!
//! ```json
//! {"Sid":"WritRevoked1767225600W0123456789abcdef","Effect":"Deny","Action":"*","Resource":"*",
//!  "Condition":{"StringEquals":{"aws:PrincipalTag/writ-id":"wr_..."}}}
//! ```
//!
//! stops every session issued for that writ. The Sid says until when the statement is needed
//! (the Unix second the credentials expire), so [`DenyDocument::prune`] can drop it afterwards.
//!
//! AWS caps a role's inline policies at 10,240 characters. When adding a statement would go over,
//! the document falls back to one statement denying every session of the role issued before now
//! (`DateLessThan aws:TokenIssueTime`, what the console's "revoke active sessions" writes): it
//! also stops honest sessions, which then exchange again, but a deny is never dropped.

use std::time::SystemTime;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::names::tag_value;

/// The name of the role inline policy holding the deny statements.
pub const ROLE_POLICY_NAME: &str = "writ-revoked-sessions";
/// AWS's limit on a role's inline policies, in characters.
pub const INLINE_POLICY_MAX: usize = 10_240;

const SID_WRIT: &str = "WritRevoked";
const SID_ALL: &str = "WritRevokedAll";

/// The deny document: its statements, in order. Statements it did not write are kept as they
/// are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DenyDocument {
    statements: Vec<Value>,
}

/// The stored policy is not a JSON policy document.
#[derive(Debug, thiserror::Error)]
#[error("the {ROLE_POLICY_NAME} role policy is not a policy document: {0}")]
pub struct DenyDocumentError(String);

/// What a statement's Sid says.
enum Sid {
    /// Denies the sessions of one writ (by the hash of its id) until a Unix second.
    Writ { until: u64, writ: String },
    /// Denies every session issued before a cut-off, until a Unix second.
    All { until: u64 },
    /// Not a statement of ours.
    Foreign,
}

fn read_sid(statement: &Value) -> Sid {
    let Some(sid) = statement.get("Sid").and_then(Value::as_str) else {
        return Sid::Foreign;
    };
    if let Some(rest) = sid.strip_prefix(SID_ALL) {
        return rest
            .parse()
            .map_or(Sid::Foreign, |until| Sid::All { until });
    }
    if let Some((until, writ)) = sid.strip_prefix(SID_WRIT).and_then(|r| r.split_once('W'))
        && let Ok(until) = until.parse()
    {
        return Sid::Writ {
            until,
            writ: writ.to_owned(),
        };
    }
    Sid::Foreign
}

/// The hash naming a writ in Sids (Sids are letters and digits only).
fn writ_hash(writ_id: &str) -> String {
    hex::encode(&Sha256::digest(writ_id.as_bytes())[..8])
}

impl DenyDocument {
    /// A document with no statements.
    pub fn new() -> DenyDocument {
        DenyDocument::default()
    }

    /// Reads a stored document (already percent-decoded).
    pub fn parse(json: &str) -> Result<DenyDocument, DenyDocumentError> {
        let value: Value =
            serde_json::from_str(json).map_err(|e| DenyDocumentError(e.to_string()))?;
        let statements = match value.get("Statement") {
            Some(Value::Array(statements)) => statements.clone(),
            Some(statement @ Value::Object(_)) => vec![statement.clone()],
            None => Vec::new(),
            Some(_) => return Err(DenyDocumentError("Statement is not a list".into())),
        };
        Ok(DenyDocument { statements })
    }

    /// The document as stored: compact JSON.
    pub fn to_json(&self) -> String {
        json!({ "Version": "2012-10-17", "Statement": self.statements }).to_string()
    }

    /// Whether there is nothing left to deny (the policy can be deleted).
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// Number of statements.
    pub fn len(&self) -> usize {
        self.statements.len()
    }

    /// Whether the sessions of `writ_id` are denied by a statement of their own, or by a
    /// cut-off statement (which denies every session issued before it).
    pub fn denies(&self, writ_id: &str) -> bool {
        let hash = writ_hash(&tag_value(writ_id));
        self.statements.iter().any(|s| match read_sid(s) {
            Sid::Writ { writ, .. } => writ == hash,
            Sid::All { .. } => true,
            Sid::Foreign => false,
        })
    }

    /// The document with the sessions of `writ_id` denied until `until` (their credentials'
    /// expiry). Adding a writ already denied keeps the later `until`. When the result would be
    /// over [`INLINE_POLICY_MAX`], every session issued before `now` is denied instead
    /// ([`DenyDocument::cut_off`]).
    pub fn add(&self, writ_id: &str, until: SystemTime, now: SystemTime) -> DenyDocument {
        let tag = tag_value(writ_id);
        let hash = writ_hash(&tag);
        let mut until = crate::time::unix(until);
        let mut statements = Vec::with_capacity(self.statements.len() + 1);
        for statement in &self.statements {
            match read_sid(statement) {
                Sid::Writ { until: old, writ } if writ == hash => until = until.max(old),
                _ => statements.push(statement.clone()),
            }
        }
        statements.push(json!({
            "Sid": format!("{SID_WRIT}{until}W{hash}"),
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": { "StringEquals": { "aws:PrincipalTag/writ-id": tag } },
        }));
        let added = DenyDocument { statements };
        if added.fits() {
            added
        } else {
            added.cut_off(now)
        }
    }

    /// The document with all of its own statements replaced by one denying every session of
    /// the role issued before `now`, needed until the latest of theirs.
    pub fn cut_off(&self, now: SystemTime) -> DenyDocument {
        let mut until = 0;
        let mut statements = Vec::new();
        for statement in &self.statements {
            match read_sid(statement) {
                Sid::Writ { until: u, .. } | Sid::All { until: u } => until = until.max(u),
                Sid::Foreign => statements.push(statement.clone()),
            }
        }
        let cut_off = crate::time::rfc3339(crate::time::unix_seconds(now));
        let mut condition = Map::new();
        condition.insert(
            "DateLessThan".into(),
            json!({ "aws:TokenIssueTime": cut_off }),
        );
        statements.push(json!({
            "Sid": format!("{SID_ALL}{until}"),
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": condition,
        }));
        DenyDocument { statements }
    }

    /// The document without its statements needed only until before `now`.
    pub fn prune(&self, now: SystemTime) -> DenyDocument {
        let now = crate::time::unix(now);
        let statements = self
            .statements
            .iter()
            .filter(|s| match read_sid(s) {
                Sid::Writ { until, .. } | Sid::All { until } => until > now,
                Sid::Foreign => true,
            })
            .cloned()
            .collect();
        DenyDocument { statements }
    }

    /// Whether the document is within [`INLINE_POLICY_MAX`].
    pub fn fits(&self) -> bool {
        self.to_json().chars().count() <= INLINE_POLICY_MAX
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    fn at(unix: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
    }

    #[test]
    fn add_writes_one_deny_per_writ_with_its_expiry_in_the_sid() {
        let document = DenyDocument::new().add("wr_one", at(2_000), at(1_000));
        let stored: Value = serde_json::from_str(&document.to_json()).unwrap();
        assert_eq!(
            stored,
            json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": format!("WritRevoked2000W{}", writ_hash("wr_one")),
                    "Effect": "Deny",
                    "Action": "*",
                    "Resource": "*",
                    "Condition": { "StringEquals": { "aws:PrincipalTag/writ-id": "wr_one" } },
                }]
            })
        );
        assert!(document.denies("wr_one"));
        assert!(!document.denies("wr_two"));
        let sid = stored["Statement"][0]["Sid"].as_str().unwrap();
        assert!(sid.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn adding_again_keeps_one_statement_and_the_later_expiry() {
        let document = DenyDocument::new().add("wr_one", at(3_000), at(1_000)).add(
            "wr_one",
            at(2_000),
            at(1_000),
        );
        assert_eq!(document.len(), 1);
        assert!(document.to_json().contains("WritRevoked3000W"));
    }

    #[test]
    fn prune_drops_expired_statements_only() {
        let document = DenyDocument::new().add("wr_one", at(2_000), at(1_000)).add(
            "wr_two",
            at(4_000),
            at(1_000),
        );
        let pruned = document.prune(at(3_000));
        assert!(!pruned.denies("wr_one") && pruned.denies("wr_two"));
        assert!(pruned.prune(at(4_000)).is_empty());
        assert_eq!(document.prune(at(1_500)), document);
    }

    #[test]
    fn foreign_statements_are_kept() {
        let stored = r#"{"Version":"2012-10-17","Statement":{"Sid":"Ops","Effect":"Deny","Action":"s3:*","Resource":"*"}}"#;
        let document = DenyDocument::parse(stored).unwrap();
        assert_eq!(document.len(), 1);
        let pruned = document.add("wr_one", at(10), at(5)).prune(at(100));
        assert_eq!(pruned, document);
        assert!(DenyDocument::parse("not json").is_err());
        assert!(DenyDocument::parse(r#"{"Statement":3}"#).is_err());
    }

    #[test]
    fn hostile_writ_ids_are_matched_as_tagged() {
        let document = DenyDocument::new().add("wr_\"}\n${aws:username}", at(10), at(5));
        let stored: Value = serde_json::from_str(&document.to_json()).unwrap();
        assert_eq!(
            stored["Statement"][0]["Condition"]["StringEquals"]["aws:PrincipalTag/writ-id"],
            tag_value("wr_\"}\n${aws:username}")
        );
    }

    #[test]
    fn a_full_document_falls_back_to_denying_every_earlier_session() {
        let mut document = DenyDocument::new();
        let mut ids = Vec::new();
        let mut i = 0;
        while document
            .statements
            .iter()
            .all(|s| !matches!(read_sid(s), Sid::All { .. }))
        {
            let id = format!("wr_{i:026}");
            document = document.add(&id, at(5_000 + i), at(1_000));
            ids.push(id);
            i += 1;
            assert!(document.fits());
        }
        assert_eq!(document.len(), 1);
        // Every writ denied so far is still denied: by the cut-off, until the latest expiry.
        assert!(ids.iter().all(|id| document.denies(id)));
        let stored: Value = serde_json::from_str(&document.to_json()).unwrap();
        assert_eq!(
            stored["Statement"][0],
            json!({
                "Sid": format!("WritRevokedAll{}", 5_000 + i - 1),
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": { "DateLessThan": { "aws:TokenIssueTime": "1970-01-01T00:16:40Z" } },
            })
        );
        // Later writs are added beside it; pruning drops the cut-off once it expired.
        let later = document.add("wr_later", at(9_000), at(2_000));
        assert_eq!(later.len(), 2);
        assert_eq!(later.prune(at(8_000)).len(), 1);
    }
}
