//! The rules of deciding an approval request, as pure functions over the stored request: the
//! store runs [`decide`] inside the transaction that records the decision, so two approvers
//! deciding at once are ordered and quorum is reached exactly once.

use std::time::Duration;

use super::{ApprovalRequest, Approver, DecisionRecord, MAX_REASON_BYTES, Status, Verdict, Via};
use crate::error::{DomainError, ErrorCode, codes};
use crate::identity::free_text_problem;
use crate::policy::pattern::covers;
use crate::policy::{ApproverRef, RequestedRight, RightRecord};

/// Why a decision was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error("the request is {0}: nothing can be decided on it any more")]
    Closed(Status),
    #[error("an agent cannot approve its own request")]
    SelfApproval,
    #[error("the request's policy does not name this approver")]
    NotAllowed,
    #[error("this approver has already decided on the request")]
    AlreadyDecided,
    #[error("narrowing can only remove: {0}")]
    Widening(String),
    #[error("{0}")]
    Invalid(String),
}

impl DomainError for DecisionError {
    fn code(&self) -> ErrorCode {
        match self {
            DecisionError::Closed(_) => codes::APPROVAL_CLOSED,
            DecisionError::SelfApproval => codes::SELF_APPROVAL,
            DecisionError::NotAllowed => codes::APPROVER_NOT_ALLOWED,
            DecisionError::AlreadyDecided => codes::ALREADY_DECIDED,
            DecisionError::Widening(_) => codes::NARROWING_INVALID,
            DecisionError::Invalid(_) => codes::INVALID_REQUEST,
        }
    }
}

/// One approver's decision, as asked.
#[derive(Debug, Clone)]
pub struct DecisionInput {
    pub verdict: Verdict,
    pub reason: String,
    /// Approve only: the rights to approve, each covered by the request's current rights.
    pub narrow_to: Option<Vec<RequestedRight>>,
    /// Approve only: a shorter lifetime for the elevated writ.
    pub ttl: Option<Duration>,
}

/// What a decision changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub record: DecisionRecord,
    pub status: Status,
    /// The request's rights after this decision.
    pub rights: Vec<RightRecord>,
    pub ttl: u64,
    /// Set when this decision closed the request.
    pub decided_at: Option<i64>,
}

/// Decides `input` by `approver` on `request` at `now` (unix seconds). `agent_issuer_url` is the
/// URL of the issuer that vouched for the requesting agent, to compare a login's identity with.
pub fn decide(
    request: &ApprovalRequest,
    agent_issuer_url: Option<&str>,
    approver: &Approver,
    input: DecisionInput,
    now: i64,
) -> Result<Decided, DecisionError> {
    let status = request.status_at(now);
    if status != Status::Pending {
        return Err(DecisionError::Closed(status));
    }
    if is_self_approval(request, agent_issuer_url, approver) {
        return Err(DecisionError::SelfApproval);
    }
    let who = ApproverRef {
        principal: &approver.principal,
        groups: &approver.groups,
    };
    if !request.approvers.iter().any(|spec| spec.admits(&who)) {
        return Err(DecisionError::NotAllowed);
    }
    let principal = approver_key(approver.principal.as_str());
    if request.decisions.iter().any(|d| d.approver == principal) {
        return Err(DecisionError::AlreadyDecided);
    }
    check_text("reason", &input.reason, MAX_REASON_BYTES, true).map_err(DecisionError::Invalid)?;
    let (rights, ttl, narrowed_to) = match input.verdict {
        Verdict::Deny if input.narrow_to.is_some() || input.ttl.is_some() => {
            return Err(DecisionError::Invalid(
                "a denial narrows nothing: send rights and ttl only when approving".into(),
            ));
        }
        Verdict::Deny => (request.rights.clone(), request.ttl, None),
        Verdict::Approve => narrow(request, input.narrow_to.as_deref(), input.ttl)?,
    };
    let record = DecisionRecord {
        approver: principal,
        via: approver.via,
        verdict: input.verdict,
        reason: input.reason,
        narrowed_to,
        decided_at: now,
    };
    let approvals = request.approvals() + usize::from(input.verdict == Verdict::Approve);
    let status = match input.verdict {
        Verdict::Deny => Status::Denied,
        Verdict::Approve if approvals >= request.quorum as usize => Status::Approved,
        Verdict::Approve => Status::Pending,
    };
    Ok(Decided {
        record,
        status,
        rights,
        ttl,
        decided_at: (status != Status::Pending).then_some(now),
    })
}

/// The approver is the agent: by principal (against the agent and its subject), or by a
/// login's issuer and subject (against the workload identity's). Display names never count.
fn is_self_approval(
    request: &ApprovalRequest,
    agent_issuer_url: Option<&str>,
    approver: &Approver,
) -> bool {
    let principal = approver.principal.as_str();
    if principal.eq_ignore_ascii_case(&request.agent)
        || principal.eq_ignore_ascii_case(&request.subject)
    {
        return true;
    }
    match (&approver.login, agent_issuer_url) {
        (Some((issuer, subject)), Some(agent_issuer)) => {
            same_issuer(issuer, agent_issuer) && *subject == request.subject
        }
        _ => false,
    }
}

fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

type Narrowed = (Vec<RightRecord>, u64, Option<Vec<RightRecord>>);

fn narrow(
    request: &ApprovalRequest,
    narrow_to: Option<&[RequestedRight]>,
    ttl: Option<Duration>,
) -> Result<Narrowed, DecisionError> {
    let ttl = match ttl {
        Some(ttl) if ttl.as_secs() == 0 || ttl.as_secs() > request.ttl => {
            return Err(DecisionError::Widening(format!(
                "ttl must be 1 to {} seconds",
                request.ttl
            )));
        }
        Some(ttl) => ttl.as_secs(),
        None => request.ttl,
    };
    let Some(narrowed) = narrow_to else {
        return Ok((request.rights.clone(), ttl, None));
    };
    let current = request
        .rights
        .iter()
        .map(RightRecord::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DecisionError::Invalid(format!("stored rights no longer parse: {e}")))?;
    for right in narrowed {
        for operation in &right.operations {
            let covered = current.iter().any(|granted| {
                granted.operations.contains(operation) && covers(&granted.resource, &right.resource)
            });
            if !covered {
                return Err(DecisionError::Widening(format!(
                    "{operation} {} is not among the rights requested",
                    right.resource
                )));
            }
        }
    }
    let records: Vec<RightRecord> = narrowed.iter().map(RightRecord::from).collect();
    Ok((records.clone(), ttl, Some(records)))
}

/// An approver as decisions record and count them: principals are compared without regard to
/// ASCII case (`Alice@Example.com` is `alice@example.com`), so one person cannot count twice by
/// spelling their name differently; the database's key on (request, approver) holds this under
/// concurrency too.
pub fn approver_key(principal: &str) -> String {
    principal.to_ascii_lowercase()
}

/// Plain text an agent or approver writes: bounded, and nothing invisible or misleading in it
/// (newlines allowed when `multiline`). Rendered as text wherever it is shown.
pub fn check_text(field: &str, text: &str, max: usize, multiline: bool) -> Result<(), String> {
    if text.len() > max {
        return Err(format!("{field} is longer than {max} bytes"));
    }
    match free_text_problem(text, multiline) {
        Some(why) => Err(format!("{field} has {why}")),
        None => Ok(()),
    }
}

/// Whether an approver's decision is recorded by a login (for audit detail).
pub fn via_name(via: Via) -> &'static str {
    match via {
        Via::AdminWrit => "admin_writ",
        Via::Login => "login",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::admin::Principal;
    use crate::policy::{ApproverSpec, RawRight, parse_rights};

    fn request(quorum: u32) -> ApprovalRequest {
        let rights = vec![RightRecord {
            resource: "orders/*".into(),
            operations: vec!["delete".into(), "read".into()],
        }];
        ApprovalRequest {
            id: "ap_1".into(),
            agent: "bot".into(),
            issuer: "kubernetes".into(),
            subject: "system:serviceaccount:orders:bot".into(),
            task: "cleanup".into(),
            requested_rights: rights.clone(),
            rights,
            services: vec!["orders-api".into()],
            ttl: 300,
            justification: "old orders".into(),
            policy: "cleanup".into(),
            policy_hash: None,
            approvers: vec![ApproverSpec::AnyApprover],
            quorum,
            created_at: 1000,
            expires_at: 1900,
            status: Status::Pending,
            decided_at: None,
            decisions: Vec::new(),
            writ_id: None,
        }
    }

    fn approver(name: &str) -> Approver {
        Approver {
            principal: Principal::parse(name).unwrap(),
            groups: Vec::new(),
            login: None,
            via: Via::AdminWrit,
        }
    }

    fn approve() -> DecisionInput {
        DecisionInput {
            verdict: Verdict::Approve,
            reason: "ok".into(),
            narrow_to: None,
            ttl: None,
        }
    }

    fn apply(request: &mut ApprovalRequest, decided: Decided) {
        request.decisions.push(decided.record);
        request.status = decided.status;
        request.rights = decided.rights;
        request.ttl = decided.ttl;
        request.decided_at = decided.decided_at;
    }

    #[test]
    fn one_approval_reaches_a_quorum_of_one() {
        let decided = decide(&request(1), None, &approver("alice"), approve(), 1100).unwrap();
        assert_eq!(decided.status, Status::Approved);
        assert_eq!(decided.decided_at, Some(1100));
    }

    #[test]
    fn a_quorum_of_two_needs_two_distinct_approvers() {
        let mut pending = request(2);
        let first = decide(&pending, None, &approver("alice"), approve(), 1100).unwrap();
        assert_eq!(first.status, Status::Pending);
        apply(&mut pending, first);
        assert_eq!(
            decide(&pending, None, &approver("alice"), approve(), 1101).unwrap_err(),
            DecisionError::AlreadyDecided
        );
        let second = decide(&pending, None, &approver("bob"), approve(), 1102).unwrap();
        assert_eq!(second.status, Status::Approved);
    }

    #[test]
    fn a_deny_vetoes_and_closes() {
        let mut pending = request(2);
        let deny = DecisionInput {
            verdict: Verdict::Deny,
            ..approve()
        };
        let denied = decide(&pending, None, &approver("alice"), deny, 1100).unwrap();
        assert_eq!(denied.status, Status::Denied);
        apply(&mut pending, denied);
        assert_eq!(
            decide(&pending, None, &approver("bob"), approve(), 1101).unwrap_err(),
            DecisionError::Closed(Status::Denied)
        );
    }

    #[test]
    fn one_person_in_another_case_is_the_same_approver() {
        let mut pending = request(2);
        let first = decide(
            &pending,
            None,
            &approver("alice@example.com"),
            approve(),
            1100,
        )
        .unwrap();
        apply(&mut pending, first);
        assert_eq!(
            decide(
                &pending,
                None,
                &approver("Alice@Example.COM"),
                approve(),
                1101
            )
            .unwrap_err(),
            DecisionError::AlreadyDecided
        );
        assert_eq!(
            decide(
                &request(1),
                None,
                &approver("SYSTEM:serviceaccount:orders:BOT"),
                approve(),
                1100
            )
            .unwrap_err(),
            DecisionError::SelfApproval
        );
    }

    #[test]
    fn expired_requests_cannot_be_decided() {
        assert_eq!(
            decide(&request(1), None, &approver("alice"), approve(), 1900).unwrap_err(),
            DecisionError::Closed(Status::Expired)
        );
    }

    #[test]
    fn the_agent_cannot_approve_itself() {
        for name in ["bot", "system:serviceaccount:orders:bot"] {
            assert_eq!(
                decide(&request(1), None, &approver(name), approve(), 1100).unwrap_err(),
                DecisionError::SelfApproval
            );
        }
        let login = Approver {
            principal: Principal::parse("someone-else").unwrap(),
            groups: Vec::new(),
            login: Some((
                "https://issuer.example/".into(),
                "system:serviceaccount:orders:bot".into(),
            )),
            via: Via::Login,
        };
        assert_eq!(
            decide(
                &request(1),
                Some("https://issuer.example"),
                &login,
                approve(),
                1100
            )
            .unwrap_err(),
            DecisionError::SelfApproval
        );
        assert!(decide(&request(1), Some("https://other"), &login, approve(), 1100).is_ok());
    }

    #[test]
    fn approvers_must_be_named_by_the_policy() {
        let mut pending = request(1);
        pending.approvers = vec![ApproverSpec::parse("group:sre").unwrap()];
        assert_eq!(
            decide(&pending, None, &approver("alice"), approve(), 1100).unwrap_err(),
            DecisionError::NotAllowed
        );
        let mut member = approver("alice");
        member.groups = vec!["sre".into()];
        assert!(decide(&pending, None, &member, approve(), 1100).is_ok());
    }

    fn rights(list: &[(&str, &[&str])]) -> Vec<RequestedRight> {
        let raw: Vec<RawRight> = list
            .iter()
            .map(|(resource, ops)| RawRight {
                resource: (*resource).into(),
                operations: ops.iter().map(|o| (*o).into()).collect(),
            })
            .collect();
        parse_rights(&raw).unwrap()
    }

    #[test]
    fn narrowing_only_removes() {
        let narrow = |list: &[(&str, &[&str])], ttl: Option<u64>| DecisionInput {
            narrow_to: Some(rights(list)),
            ttl: ttl.map(Duration::from_secs),
            ..approve()
        };
        let ok = decide(
            &request(1),
            None,
            &approver("alice"),
            narrow(&[("orders/42", &["delete"])], Some(60)),
            1100,
        )
        .unwrap();
        assert_eq!(ok.rights[0].resource, "orders/42");
        assert_eq!(ok.ttl, 60);
        for (list, ttl) in [
            (vec![("orders/42", &["write"][..])], None),
            (vec![("invoices/1", &["read"][..])], None),
            (vec![("*", &["read"][..])], None),
            (vec![("orders/42", &["read"][..])], Some(301)),
        ] {
            let error = decide(
                &request(1),
                None,
                &approver("alice"),
                narrow(&list, ttl),
                1100,
            )
            .unwrap_err();
            assert!(matches!(error, DecisionError::Widening(_)), "{list:?}");
        }
    }

    #[test]
    fn reasons_are_bounded_plain_text() {
        let long = DecisionInput {
            reason: "x".repeat(MAX_REASON_BYTES + 1),
            ..approve()
        };
        assert!(decide(&request(1), None, &approver("alice"), long, 1100).is_err());
        let control = DecisionInput {
            reason: "ok\u{1b}[31m".into(),
            ..approve()
        };
        assert!(decide(&request(1), None, &approver("alice"), control, 1100).is_err());
    }
}
