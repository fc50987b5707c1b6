//! Deny rules: `[[deny]]` tables that override every permit, direct or through approval, for
//! rules like "no `delete` on `prod/*` for anyone" or "nothing for this compromised repository".
//!
//! ```toml
//! [[deny]]
//! name = "no-prod-deletes"
//! issuer = "kubernetes"     # optional: absent, every issuer
//! claims = { ... }          # optional: absent, every identity
//! resources = ["prod/*"]    # optional: absent, every resource
//! operations = ["delete"]   # optional: absent, every operation
//! services = ["prod-api"]   # optional: absent, whatever the request names
//! [deny.when]               # optional: the rule holds only inside this window (a change freeze)
//! days = ["sat", "sun"]
//! ```
//!
//! A rule refuses every requested right whose resource *overlaps* one of its resources (a request
//! for `prod/*` touches a rule on `prod/db/*`) with an operation it names, and every requested
//! service it names; a rule that names services refuses rights only in requests for one of them.
//! Resources are literal: a deny is the safety net, and no claim value may steer it.

use std::time::SystemTime;

use super::claims::ClaimMatcher;
use super::condition::TimeWindow;
use super::names::{Operation, ServiceName};
use super::pattern::{ResourcePattern, overlaps};
use super::{RefusedRight, Subject, WritRequest};

#[derive(Debug, Clone)]
pub struct DenyRule {
    pub name: String,
    /// `file:line` of its definition, for messages.
    pub origin: String,
    /// `None`: every issuer.
    pub issuer: Option<String>,
    pub claims: ClaimMatcher,
    pub resources: Option<Vec<ResourcePattern>>,
    pub operations: Option<Vec<Operation>>,
    pub services: Option<Vec<ServiceName>>,
    pub window: Option<TimeWindow>,
}

/// What one deny rule refuses of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub rights: Vec<RefusedRight>,
    pub services: Vec<String>,
}

impl DenyRule {
    /// Whether the rule holds at `at`: always, or inside its window.
    pub fn holds_at(&self, at: SystemTime) -> bool {
        self.window.as_ref().is_none_or(|w| w.contains(at))
    }

    /// Whether the rule is for this identity, whatever the time.
    pub fn matches_identity(&self, subject: Subject<'_>) -> bool {
        self.issuer.as_deref().is_none_or(|i| i == subject.issuer)
            && self.claims.matches(subject.claims)
    }

    /// What this rule refuses of `request`, if anything (the identity is known to match).
    pub fn refuse(&self, request: &WritRequest) -> Option<Denial> {
        let services: Vec<String> = match &self.services {
            None => Vec::new(),
            Some(named) => {
                let hit: Vec<String> = request
                    .services
                    .iter()
                    .filter(|s| named.contains(s))
                    .map(ToString::to_string)
                    .collect();
                if hit.is_empty() {
                    return None;
                }
                hit
            }
        };
        let rights: Vec<RefusedRight> = request
            .rights
            .iter()
            .filter(|right| {
                self.resources
                    .as_ref()
                    .is_none_or(|denied| denied.iter().any(|d| overlaps(d, &right.resource)))
            })
            .flat_map(|right| {
                right
                    .operations
                    .iter()
                    .filter(|op| self.operations.as_ref().is_none_or(|ops| ops.contains(op)))
                    .map(|op| RefusedRight {
                        resource: right.resource.to_string(),
                        operation: op.to_string(),
                    })
            })
            .collect();
        // A rule that names no right refuses every right of the requests it covers.
        (!rights.is_empty()).then_some(Denial { rights, services })
    }
}
