//! Every problem the broker can answer is documented, and every documented problem type is one it
//! answers.

use std::collections::BTreeSet;

use axum::response::IntoResponse;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use writ::broker::{ApprovalCallError, ExchangeError, IssueError};
use writ::error::codes;
use writ::http::ApiError;
use writ::policy::{Refusal, RefusedRight, RefusedTtl};
use writ_verify::Denial;

use super::{SPEC, essence, resolve, schema_errors, spec_methods, spec_paths};

/// One answer for every code the broker declares, and a policy refusal in each of its shapes
/// (the problems with extension members: `policy_refused`, the refusals that name the other
/// way in, and the refused writs of an exchange with their `denial`), built the way the broker
/// builds them.
fn answers() -> Vec<ApiError> {
    let refusal = |reason, ttl| Refusal {
        reason,
        policy: None,
        deny: None,
        window: None,
        refused_rights: vec![RefusedRight {
            resource: "orders/*".into(),
            operation: "write".into(),
        }],
        refused_services: vec!["billing-api".into()],
        refused_ttl: ttl,
    };
    let with_extension = [
        codes::POLICY_REFUSED,
        codes::APPROVAL_REQUIRED,
        codes::APPROVAL_NOT_NEEDED,
        codes::EXCHANGE_NOT_GRANTED,
    ];
    let mut all: Vec<ApiError> = codes::ALL
        .iter()
        .filter(|code| !with_extension.contains(code))
        .map(|code| ApiError::new(*code, "what went wrong"))
        .collect();
    let other_way = |reason, policy: &str| Refusal {
        reason,
        policy: Some(policy.to_owned()),
        deny: None,
        window: None,
        refused_rights: Vec::new(),
        refused_services: Vec::new(),
        refused_ttl: None,
    };
    let issue = |refusal| ApiError::from(IssueError::Refused(Box::new(refusal)));
    let approval = |refusal| ApiError::from(ApprovalCallError::Refused(Box::new(refusal)));
    all.push(issue(other_way("approval_required", "orders-cleanup")));
    all.push(approval(other_way("approval_not_needed", "orders-reader")));
    all.push(approval(refusal("not_allowed", None)));
    all.push(issue(refusal("no_matching_policy", None)));
    all.push(issue(Refusal {
        deny: Some("no-prod-deletes".into()),
        ..refusal("denied", None)
    }));
    all.push(issue(Refusal {
        window: Some("mon,tue,wed,thu,fri 09:00-18:00 Europe/Berlin".into()),
        ..other_way("outside_window", "business-hours")
    }));
    let ttl = RefusedTtl {
        requested: 3600,
        max: 600,
    };
    all.push(issue(refusal("not_allowed", Some(ttl))));
    all.push(ApiError::from(ExchangeError::Writ(Denial::NotPermitted)));
    all.push(ApiError::from(ExchangeError::Writ(
        Denial::InvalidSignature,
    )));
    all
}

/// Every documented response with this status: (where, response), fallbacks included.
fn responses_with_status(status: &str) -> Vec<(String, &'static Value)> {
    let mut found = Vec::new();
    for path in spec_paths() {
        for method in spec_methods(&path) {
            if let Some(response) =
                SPEC["paths"][&path][method.to_lowercase()]["responses"].get(status)
            {
                found.push((format!("{method} {path}"), resolve(response)));
            }
        }
    }
    if let Some(response) = SPEC["x-writ-fallback-responses"].get(status) {
        found.push(("fallback".to_owned(), resolve(response)));
    }
    found
}

/// Every problem the broker can answer is documented with its status and validates against a
/// documented schema for it; every problem type the document lists is one the broker answers.
#[tokio::test]
async fn every_problem_the_broker_answers_is_documented() {
    let mut answered = BTreeSet::new();
    for error in answers() {
        let label = format!("{error:?}");
        let response = error.into_response();
        let status = response.status().as_u16();
        let content_type = response.headers()[CONTENT_TYPE.as_str()]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        let candidates = responses_with_status(&status.to_string());
        assert!(
            !candidates.is_empty(),
            "{label} answers {status}, which openapi.yaml documents nowhere"
        );
        let matches = candidates.iter().any(|(_, response)| {
            response["content"]
                .get(essence(&content_type))
                .is_some_and(|media| schema_errors(&media["schema"], &body).is_empty())
        });
        assert!(
            matches,
            "{label} answers {status} {content_type} {body:#}, which no documented {status} \
             response ({:?}) describes",
            candidates
                .iter()
                .map(|(place, _)| place)
                .collect::<Vec<_>>()
        );
        answered.insert(body["type"].as_str().unwrap().to_owned());
    }
    let listed: BTreeSet<String> = SPEC["components"]["schemas"]["ProblemType"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        listed, answered,
        "ProblemType lists exactly the types the broker answers"
    );
}
