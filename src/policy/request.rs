//! What an agent asks for, parsed from untrusted input into validated types.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::names::{NameError, Operation, ServiceName, TaskName};
use super::pattern::ResourcePattern;
use writ_verify::PatternError;

/// Caps on request size: a request is for one task, not an inventory.
pub const MAX_RIGHTS: usize = 32;
pub const MAX_OPERATIONS: usize = 16;
pub const MAX_SERVICES: usize = 16;

/// The request as it arrives (JSON body or policy test case). Unknown fields are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWritRequest {
    pub task: String,
    pub rights: Vec<RawRight>,
    pub services: Vec<String>,
    /// Lifetime in seconds; the policy's default when absent.
    #[serde(default, with = "crate::time::whole_seconds")]
    pub ttl: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRight {
    pub resource: String,
    pub operations: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedRight {
    pub resource: ResourcePattern,
    pub operations: BTreeSet<Operation>,
}

/// A well-formed request (not yet a permitted one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritRequest {
    pub task: TaskName,
    pub rights: Vec<RequestedRight>,
    pub services: BTreeSet<ServiceName>,
    pub ttl: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("resource: {0}")]
    Resource(#[from] PatternError),
    #[error("{0}")]
    Shape(String),
}

impl WritRequest {
    pub fn parse(raw: &RawWritRequest) -> Result<WritRequest, RequestError> {
        let shape = |m: String| Err(RequestError::Shape(m));
        if raw.rights.is_empty() || raw.rights.len() > MAX_RIGHTS {
            return shape(format!("rights must list 1 to {MAX_RIGHTS} entries"));
        }
        if raw.services.is_empty() || raw.services.len() > MAX_SERVICES {
            return shape(format!("services must list 1 to {MAX_SERVICES} entries"));
        }
        let rights = raw
            .rights
            .iter()
            .map(parse_right)
            .collect::<Result<Vec<_>, _>>()?;
        let services = raw
            .services
            .iter()
            .map(|s| ServiceName::parse(s))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let ttl = match raw.ttl {
            Some(0) => return shape("ttl must be at least 1 second".into()),
            Some(seconds) => Some(Duration::from_secs(seconds)),
            None => None,
        };
        Ok(WritRequest {
            task: TaskName::parse(&raw.task)?,
            rights,
            services,
            ttl,
        })
    }
}

/// Parses a list of rights: 1 to [`MAX_RIGHTS`] entries.
pub fn parse_rights(raw: &[RawRight]) -> Result<Vec<RequestedRight>, RequestError> {
    if raw.is_empty() || raw.len() > MAX_RIGHTS {
        return Err(RequestError::Shape(format!(
            "rights must list 1 to {MAX_RIGHTS} entries"
        )));
    }
    raw.iter().map(parse_right).collect()
}

/// One right as it was granted or asked for: a resource pattern and the operations on it, as
/// text (what records, answers and audit events carry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RightRecord {
    pub resource: String,
    pub operations: Vec<String>,
}

impl From<&RequestedRight> for RightRecord {
    fn from(right: &RequestedRight) -> RightRecord {
        RightRecord {
            resource: right.resource.to_string(),
            operations: right.operations.iter().map(ToString::to_string).collect(),
        }
    }
}

impl RightRecord {
    /// Back to a validated right (records were validated when written; a record that no longer
    /// parses is refused rather than trusted).
    pub fn parse(&self) -> Result<RequestedRight, RequestError> {
        parse_right(&RawRight {
            resource: self.resource.clone(),
            operations: self.operations.clone(),
        })
    }
}

fn parse_right(raw: &RawRight) -> Result<RequestedRight, RequestError> {
    if raw.operations.is_empty() || raw.operations.len() > MAX_OPERATIONS {
        return Err(RequestError::Shape(format!(
            "each right must list 1 to {MAX_OPERATIONS} operations"
        )));
    }
    Ok(RequestedRight {
        resource: ResourcePattern::parse(&raw.resource)?,
        operations: raw
            .operations
            .iter()
            .map(|op| Operation::parse(op))
            .collect::<Result<_, _>>()?,
    })
}
