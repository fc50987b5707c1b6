//! What the broker records about one decision, before it is placed in the chain.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ParseError;

/// How a decision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The broker did what was asked.
    Success,
    /// The broker declined: the caller was not entitled (bad identity, policy, revoked).
    Refused,
    /// The broker could not decide or act (storage down, signing failed).
    Failed,
}

impl Outcome {
    /// The outcome of an operation that failed with `code`: `failed` when the broker failed,
    /// `refused` when it said no.
    pub fn of(code: crate::error::ErrorCode) -> Outcome {
        if code.kind.is_server_side() {
            Outcome::Failed
        } else {
            Outcome::Refused
        }
    }

    /// The stored (and hashed) name: `success`, `refused` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Outcome, ParseError> {
        match text {
            "success" => Ok(Outcome::Success),
            "refused" => Ok(Outcome::Refused),
            "failed" => Ok(Outcome::Failed),
            other => Err(ParseError::Outcome(other.to_owned())),
        }
    }
}

/// One decision of the broker, as the audit log records it.
///
/// **Never put a token, key or other secret in an event**: not in `details`, not in `reason`,
/// not as an id. The log is read by operators and exported to other systems; it records *that* a
/// writ was issued and its id, never the writ itself. Identities are recorded by their subject
/// (an agent id), never by the workload token that proved them.
///
/// Every field is covered by the event's hash (see the [module documentation](super)), so a
/// stored event must be read back exactly as written: `details` is kept as the text it was
/// stored as, not re-serialised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When the decision was made, in unix milliseconds.
    pub at_ms: i64,
    /// What was decided: one of the stable dotted names in [`actions`](super::actions).
    pub action: String,
    pub outcome: Outcome,
    /// Who asked: an agent id, an admin principal, `cli:<user>`, or `anonymous`.
    pub actor: String,
    pub writ_id: Option<String>,
    pub task: Option<String>,
    pub agent: Option<String>,
    /// For refusals and failures: a stable code (such as `policy_refused`), not prose.
    pub reason: Option<String>,
    /// A JSON object's text, exactly as stored; `{}` when there is nothing more to say.
    pub details: String,
}

/// What an actor that could not be identified is recorded as.
pub const ANONYMOUS: &str = "anonymous";

impl AuditEvent {
    /// An event of `action` by `actor`, made now, with no ids and empty details.
    pub fn new(action: impl Into<String>, outcome: Outcome, actor: impl Into<String>) -> Self {
        AuditEvent {
            at_ms: crate::time::unix_ms(std::time::SystemTime::now()),
            action: action.into(),
            outcome,
            actor: actor.into(),
            writ_id: None,
            task: None,
            agent: None,
            reason: None,
            details: EMPTY_DETAILS.to_owned(),
        }
    }

    /// The same event, made at `at_ms` (unix milliseconds) instead of now.
    pub fn at(mut self, at_ms: i64) -> Self {
        self.at_ms = at_ms;
        self
    }

    pub fn with_writ(mut self, writ_id: impl Into<String>) -> Self {
        self.writ_id = Some(writ_id.into());
        self
    }

    pub fn with_task(mut self, task: impl Into<String>) -> Self {
        self.task = Some(task.into());
        self
    }

    pub fn with_agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// The stable code of a refusal or failure.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Sets the details from a JSON object (`serde_json::json!({ .. })`). Details are always an
    /// object, so that readers can add keys over time; any other value is kept under `"value"`.
    /// Sets the details (an object; anything else is wrapped as `{"value": ..}`). Details over
    /// [`MAX_DETAILS_BYTES`] are replaced by `{"truncated": true, "bytes": <their size>}`: an
    /// event's size is bounded whatever a caller sent.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        let object = match details {
            serde_json::Value::Object(object) => object,
            other => serde_json::Map::from_iter([("value".to_owned(), other)]),
        };
        let text = serde_json::Value::Object(object).to_string();
        self.details = if text.len() > MAX_DETAILS_BYTES {
            serde_json::json!({ "truncated": true, "bytes": text.len() }).to_string()
        } else {
            text
        };
        self
    }

    /// The details parsed, for readers; `None` if the stored text is not JSON.
    pub fn details_json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.details).ok()
    }
}

/// The largest details an event records.
pub const MAX_DETAILS_BYTES: usize = 16 * 1024;

/// The details of an event that has none.
pub const EMPTY_DETAILS: &str = "{}";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn outcomes_round_trip_as_snake_case() {
        for outcome in [Outcome::Success, Outcome::Refused, Outcome::Failed] {
            assert_eq!(outcome.as_str().parse::<Outcome>().unwrap(), outcome);
            assert_eq!(
                serde_json::to_string(&outcome).unwrap(),
                format!("\"{outcome}\"")
            );
        }
        assert!(matches!(
            "Success".parse::<Outcome>(),
            Err(ParseError::Outcome(_))
        ));
    }

    #[test]
    fn the_builder_fills_every_field() {
        let event = AuditEvent::new("writ.issued", Outcome::Success, "agent-1")
            .at(1_700_000_000_000)
            .with_writ("wr_1")
            .with_task("deploy")
            .with_agent("agent-1")
            .with_reason("none")
            .with_details(json!({"services": ["orders"]}));
        assert_eq!(event.at_ms, 1_700_000_000_000);
        assert_eq!(event.writ_id.as_deref(), Some("wr_1"));
        assert_eq!(event.task.as_deref(), Some("deploy"));
        assert_eq!(event.agent.as_deref(), Some("agent-1"));
        assert_eq!(event.reason.as_deref(), Some("none"));
        assert_eq!(event.details, r#"{"services":["orders"]}"#);
        assert_eq!(event.details_json(), Some(json!({"services": ["orders"]})));
    }

    #[test]
    fn details_default_to_an_empty_object_and_stay_objects() {
        let event = AuditEvent::new("audit.read", Outcome::Success, ANONYMOUS);
        assert_eq!(event.details, "{}");
        let event = event.with_details(json!(["a"]));
        assert_eq!(event.details, r#"{"value":["a"]}"#);
    }

    #[test]
    fn events_round_trip_through_json() {
        let event = AuditEvent::new("writ.refused", Outcome::Refused, "agent-1")
            .with_reason("policy_refused");
        let text = serde_json::to_string(&event).unwrap();
        let back: AuditEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back, event);
    }
}
