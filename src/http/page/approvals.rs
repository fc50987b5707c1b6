//! The pages of requests: the pending list, the history, one request, and a decision.

use std::collections::BTreeSet;
use std::time::SystemTime;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::login::{own_origin, parameter};
use super::session::{FormBody, Visitor, check_csrf, same_origin};
use super::views::{self, Frame, Nav, Problem};
use super::{Html, PageError, see_other};
use crate::approval::Status;
use crate::audit::actions;
use crate::broker::{ApprovalCallError, ApproverView, RawDecision};
use crate::error::{DomainError, codes};
use crate::http::{AppState, status};
use crate::login::ApproverSession;
use crate::policy::RawRight;
use crate::store::ApprovalQuery;
use crate::time::unix_seconds;

/// Requests per page.
const PAGE_SIZE: u32 = 50;

fn now() -> i64 {
    unix_seconds(SystemTime::now())
}

/// `GET /approvals`: the pending requests; a sign-in link without a session; a page saying
/// there is nothing to approve for a login without the approver role.
pub async fn pending(
    State(state): State<AppState>,
    visitor: Visitor,
    RawQuery(query): RawQuery,
) -> Result<Html, PageError> {
    let query = query.unwrap_or_default();
    let Some(session) = &visitor.session else {
        let frame = Frame {
            session: None,
            nav: Nav::Other,
        };
        let signed_out = parameter(&query, "signed_out").is_some();
        let title = if signed_out { "Signed out" } else { "Sign in" };
        return Ok(Html::ok(views::document(
            title,
            &frame,
            views::sign_in("/approvals", signed_out),
        )));
    };
    if !session.approver {
        return Ok(not_an_approver(session, StatusCode::OK));
    }
    let before = cursor_parameter(&query)?;
    let listed = state
        .broker
        .approvals_for_approver(
            &session.approver(),
            &ApprovalQuery {
                status: Some(Status::Pending),
                before,
                limit: PAGE_SIZE,
            },
        )
        .await
        .map_err(broker_failure)?;
    let older = next_cursor(&listed);
    // Requests past their deadline that the sweeper has not marked yet are not pending.
    let pending: Vec<ApproverView> = listed
        .into_iter()
        .filter(|view| view.status == Status::Pending)
        .collect();
    let frame = Frame {
        session: Some(session),
        nav: Nav::Pending,
    };
    Ok(Html::ok(views::document(
        "Pending requests",
        &frame,
        views::pending(&pending, now(), older.as_deref()),
    )))
}

/// `GET /approvals/history?status=decided|approved|denied|expired&before=CURSOR`.
pub async fn history(
    State(state): State<AppState>,
    visitor: Visitor,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let query = query.unwrap_or_default();
    let session = match signed_in_approver(&visitor, "/approvals/history") {
        Ok(session) => session,
        Err(answer) => return Ok(*answer),
    };
    let filter = parameter(&query, "status").unwrap_or_else(|| "decided".into());
    let status = match filter.as_str() {
        "decided" => None,
        "approved" => Some(Status::Approved),
        "denied" => Some(Status::Denied),
        "expired" => Some(Status::Expired),
        _ => {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "Unknown filter",
                "History shows decided, approved, denied or expired requests.",
            )
            .with_link("/approvals/history", "All decided requests"));
        }
    };
    let before = cursor_parameter(&query)?;
    let listed = state
        .broker
        .approvals_for_approver(
            &session.approver(),
            &ApprovalQuery {
                status,
                before,
                limit: PAGE_SIZE,
            },
        )
        .await
        .map_err(broker_failure)?;
    let older = next_cursor(&listed);
    let closed: Vec<ApproverView> = listed
        .into_iter()
        .filter(|view| view.status != Status::Pending)
        .collect();
    let frame = Frame {
        session: Some(session),
        nav: Nav::History,
    };
    Ok(Html::ok(views::document(
        "History",
        &frame,
        views::history(&closed, now(), &filter, older.as_deref()),
    ))
    .into_response())
}

/// `GET /approvals/{id}`: one request; without a session, a login that comes back here.
pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
    visitor: Visitor,
) -> Result<Response, PageError> {
    let here = format!("/approvals/{id}");
    let session = match signed_in_approver(&visitor, &here) {
        Ok(session) => session,
        Err(answer) => return Ok(*answer),
    };
    let view = read(&state, session, &id).await?;
    Ok(detail_page(&view, session, None, StatusCode::OK).into_response())
}

/// `POST /approvals/{id}/decision`: from the page's own origin, with a session, its CSRF token
/// and the approver role; then `303` back to the request, or the request again with what was
/// refused.
pub async fn decide(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    visitor: Visitor,
    form: FormBody,
) -> Result<Response, PageError> {
    same_origin(&headers, own_origin(&state).as_deref())?;
    let Some(session) = &visitor.session else {
        state.broker.count_unauthenticated(
            actions::APPROVAL_DECISION_REFUSED,
            codes::CREDENTIAL_MISSING,
        );
        return Err(PageError::new(
            StatusCode::UNAUTHORIZED,
            "Sign in first",
            "Your session has ended, so the decision was not recorded. Sign in and decide again.",
        )
        .with_link("/approvals/login", "Sign in"));
    };
    check_csrf(session, form.get("csrf"))?;
    let approver = session.approver();
    if !session.approver {
        state
            .broker
            .refuse_decision(&approver, &id, codes::ADMIN_ROLE_MISSING)
            .await;
        return Ok(not_an_approver(session, StatusCode::FORBIDDEN).into_response());
    }
    let view = read(&state, session, &id).await?;
    let raw = match decision_of(&form, &view) {
        Ok(raw) => raw,
        Err(detail) => {
            let problem = Problem {
                code: codes::INVALID_REQUEST.name,
                detail,
            };
            return Ok(
                detail_page(&view, session, Some(&problem), StatusCode::BAD_REQUEST)
                    .into_response(),
            );
        }
    };
    match state.broker.decide_approval(&approver, &id, &raw).await {
        Ok(_) => Ok(see_other(&format!("/approvals/{id}"), &[])),
        Err(error) => {
            let code = error.code();
            if code.kind.is_server_side() {
                tracing::error!(code = code.name, %error, "a decision failed");
            }
            let problem = Problem {
                code: code.name,
                detail: error.public_detail(),
            };
            // The request as it stands now (another approver may just have closed it).
            let view = read(&state, session, &id).await.unwrap_or(view);
            Ok(detail_page(&view, session, Some(&problem), status(code.kind)).into_response())
        }
    }
}

/// The decision a form asks for. The boxes name `operation resource`; all of the request's
/// rights checked is no narrowing, and the lifetime as shown is no shortening.
fn decision_of(form: &FormBody, view: &ApproverView) -> Result<RawDecision, String> {
    let request = &view.listed.request;
    let decision = form.get("decision").unwrap_or_default().to_owned();
    let reason = form.get("reason").unwrap_or_default().trim().to_owned();
    if decision != "approve" {
        return Ok(RawDecision {
            decision,
            reason,
            rights: None,
            ttl: None,
        });
    }
    let offered: BTreeSet<(String, String)> = request
        .rights
        .iter()
        .flat_map(|right| {
            right
                .operations
                .iter()
                .map(|op| (op.clone(), right.resource.clone()))
        })
        .collect();
    let mut checked: Vec<(String, String)> = Vec::new();
    for value in form.all("right") {
        let (operation, resource) = value
            .split_once(' ')
            .ok_or_else(|| "a right must be written as: operation resource".to_owned())?;
        let pair = (operation.to_owned(), resource.to_owned());
        if !checked.contains(&pair) {
            checked.push(pair);
        }
    }
    if checked.is_empty() {
        return Err("Check at least one right to approve, or deny the request instead.".into());
    }
    let rights = if checked.iter().cloned().collect::<BTreeSet<_>>() == offered {
        None
    } else {
        let mut grouped: Vec<RawRight> = Vec::new();
        for (operation, resource) in checked {
            match grouped.iter_mut().find(|right| right.resource == resource) {
                Some(right) => right.operations.push(operation),
                None => grouped.push(RawRight {
                    resource,
                    operations: vec![operation],
                }),
            }
        }
        Some(grouped)
    };
    let ttl = match form.get("ttl").map(str::trim).unwrap_or_default() {
        "" => None,
        text => match text.parse::<u64>() {
            Ok(ttl) if ttl == request.ttl => None,
            Ok(ttl) => Some(ttl),
            Err(_) => return Err("The lifetime must be a whole number of seconds.".into()),
        },
    };
    Ok(RawDecision {
        decision,
        reason,
        rights,
        ttl,
    })
}

/// The request `id` for `session`'s approver; unknown ids answer 404.
async fn read(
    state: &AppState,
    session: &ApproverSession,
    id: &str,
) -> Result<ApproverView, PageError> {
    state
        .broker
        .approval_for_approver(&session.approver(), id)
        .await
        .map_err(|error| match error {
            ApprovalCallError::Unknown => PageError::new(
                StatusCode::NOT_FOUND,
                "No such request",
                "There is no approval request with this address.",
            )
            .with_code(codes::APPROVAL_UNKNOWN.name),
            other => broker_failure(other),
        })
}

fn detail_page(
    view: &ApproverView,
    session: &ApproverSession,
    problem: Option<&Problem>,
    status: StatusCode,
) -> Html {
    let frame = Frame {
        session: Some(session),
        nav: Nav::Other,
    };
    let title = format!("Request: {}", view.listed.request.task);
    Html::new(
        status,
        views::document(&title, &frame, views::detail(view, session, now(), problem)),
    )
}

fn not_an_approver(session: &ApproverSession, status: StatusCode) -> Html {
    let frame = Frame {
        session: Some(session),
        nav: Nav::Other,
    };
    Html::new(
        status,
        views::document(
            "Nothing to approve",
            &frame,
            views::not_an_approver(session),
        ),
    )
}

/// The session of a signed-in approver; otherwise the answer to give: a login that returns to
/// `here`, or the page saying there is nothing to approve.
fn signed_in_approver<'a>(
    visitor: &'a Visitor,
    here: &str,
) -> Result<&'a ApproverSession, Box<Response>> {
    match &visitor.session {
        None => {
            let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
            Err(Box::new(see_other(
                &format!("/approvals/login?next={next}"),
                &[],
            )))
        }
        Some(session) if !session.approver => Err(Box::new(
            not_an_approver(session, StatusCode::FORBIDDEN).into_response(),
        )),
        Some(session) => Ok(session),
    }
}

fn cursor_parameter(query: &str) -> Result<Option<(i64, String)>, PageError> {
    match parameter(query, "before") {
        None => Ok(None),
        Some(cursor) => crate::http::approvals::parse_cursor(&cursor)
            .map(Some)
            .ok_or_else(|| {
                PageError::new(
                    StatusCode::BAD_REQUEST,
                    "Unknown page",
                    "This page of requests does not exist.",
                )
            }),
    }
}

/// The cursor of the page after `listed`, when it was full.
fn next_cursor(listed: &[ApproverView]) -> Option<String> {
    crate::http::approvals::next_cursor(listed, PAGE_SIZE)
}

fn broker_failure(error: ApprovalCallError) -> PageError {
    tracing::error!(code = error.code().name, %error, "the approval page failed");
    PageError::unavailable()
}
