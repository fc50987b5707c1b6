//! The page's HTML, built with maud: every value spliced in with `(...)` is escaped, so what
//! agents wrote (tasks, justifications, resources, names, reasons) is shown as text and never
//! read as markup. No script anywhere: forms and links only.

use maud::{DOCTYPE, Markup, html};

use crate::approval::{ApprovalRequest, DecisionRecord, Status, Verdict, Via};
use crate::broker::ApproverView;
use crate::login::ApproverSession;
use crate::store::RightRecord;
use crate::time::rfc3339;

/// The page's stylesheet, served at [`STYLESHEET_PATH`].
pub const STYLESHEET: &str = include_str!("style.css");
pub const STYLESHEET_PATH: &str = "/approvals/static/style.css";

/// Justifications are cut to this many characters in lists.
const EXCERPT_CHARS: usize = 140;

/// Which entry of the navigation the page is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Pending,
    History,
    Other,
}

/// What the page's frame shows: who is signed in (with the sign-out form) and where they are.
pub struct Frame<'a> {
    pub session: Option<&'a ApproverSession>,
    pub nav: Nav,
}

/// A refused decision, shown above the request.
pub struct Problem {
    pub code: &'static str,
    pub detail: String,
}

/// A whole page.
pub fn document(title: &str, frame: &Frame<'_>, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · writ approvals" }
                link rel="stylesheet" href=(STYLESHEET_PATH);
            }
            body {
                a.skip href="#main" { "Skip to the content" }
                header.top {
                    div.wrap.top-inner {
                        a.brand href="/approvals" {
                            span.brand-mark aria-hidden="true" { "w" }
                            span { "writ " span.brand-sub { "approvals" } }
                        }
                        @if let Some(session) = frame.session {
                            @if session.approver {
                                nav aria-label="Approval page" {
                                    ul {
                                        li { a href="/approvals" aria-current=[(frame.nav == Nav::Pending).then_some("page")] { "Pending" } }
                                        li { a href="/approvals/history" aria-current=[(frame.nav == Nav::History).then_some("page")] { "History" } }
                                    }
                                }
                            }
                            div.who {
                                span { "Signed in as " strong { (session.principal) } }
                                form method="post" action="/approvals/logout" {
                                    input type="hidden" name="csrf" value=(session.csrf_token);
                                    button.link-button type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                main #main .wrap tabindex="-1" { (main) }
                footer.wrap {
                    p { "Every decision is recorded, with its reason, in writ's audit log." }
                }
            }
        }
    }
}

/// For visitors without a session (`signed_out`: they just signed out).
pub fn sign_in(next: &str, signed_out: bool) -> Markup {
    let href = format!("/approvals/login?next={}", encode(next));
    html! {
        section.panel.narrow aria-labelledby="sign-in" {
            @if signed_out {
                p.notice role="status" { "You are signed out." }
            }
            h1 #sign-in { "Sign in to decide" }
            p {
                "Agents ask here for rights that a human must approve first. "
                "Sign in with your organisation's account to see what is waiting for you."
            }
            p { a.button.primary href=(href) { "Sign in" } }
        }
    }
}

/// For a signed-in person whose groups do not make them an approver.
pub fn not_an_approver(session: &ApproverSession) -> Markup {
    html! {
        section.panel.narrow aria-labelledby="no-role" {
            h1 #no-role { "Nothing for you to approve" }
            p {
                "You are signed in as " strong { (session.principal) } ", but none of your groups "
                "gives you the approver role, so there is nothing here for you to decide."
            }
            @if session.groups.is_empty() {
                p { "Your sign-in carried no groups." }
            } @else {
                p {
                    "Your groups: "
                    @for (n, group) in session.groups.iter().enumerate() {
                        @if n > 0 { ", " }
                        code { (group) }
                    }
                    "."
                }
            }
            p { "If you should be an approver, ask an administrator to add you to an approver group." }
        }
    }
}

/// The pending requests.
pub fn pending(views: &[ApproverView], now: i64, older: Option<&str>) -> Markup {
    html! {
        div.heading {
            h1 { "Pending requests" }
            p.lead {
                "Agents are waiting for a human decision on these requests. "
                "Open one to read why the agent asks, then approve or deny it."
            }
        }
        @if views.is_empty() {
            p.empty { "Nothing is waiting for a decision." }
        } @else {
            div.table-scroll {
                table.requests {
                    caption.visually-hidden { "Requests waiting for a decision, newest first" }
                    thead {
                        tr {
                            th scope="col" { "Task" }
                            th scope="col" { "Agent" }
                            th scope="col" { "Rights asked for" }
                            th scope="col" { "Justification" }
                            th scope="col" { "Opened" }
                            th scope="col" { "Time left" }
                            th scope="col" { "Approvals" }
                        }
                    }
                    tbody {
                        @for view in views {
                            @let request = &view.listed.request;
                            tr {
                                th scope="row" {
                                    a href=(detail_path(&request.id)) { (request.task) }
                                    @if view.listed.notify_status == "failed" {
                                        " " span.badge.warn title="The webhook could not tell approvers of this request" { "notification failed" }
                                    }
                                }
                                td { code.agent { (request.agent) } }
                                td { (rights_list(&request.requested_rights)) }
                                td.justification-cell { (excerpt(&request.justification)) }
                                td.nowrap { (ago(request.created_at, now)) }
                                td.nowrap { (time_left(request.expires_at, now)) }
                                td.nowrap {
                                    (request.approvals()) " of " (request.quorum)
                                    @if view.may_decide {
                                        br; span.badge.info { "yours to decide" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(cursor) = older {
            nav.pager aria-label="More requests" {
                a href=(format!("/approvals?before={}", encode(cursor))) { "Older requests →" }
            }
        }
    }
}

/// Decided and expired requests.
pub fn history(views: &[ApproverView], now: i64, filter: &str, older: Option<&str>) -> Markup {
    let filters = [
        ("decided", "All"),
        ("approved", "Approved"),
        ("denied", "Denied"),
        ("expired", "Expired"),
    ];
    html! {
        div.heading {
            h1 { "History" }
            p.lead { "Requests that were decided or expired, newest first." }
        }
        nav.filters aria-label="Show" {
            ul {
                @for (value, label) in filters {
                    li {
                        a href=(format!("/approvals/history?status={value}"))
                            aria-current=[(filter == value).then_some("page")] { (label) }
                    }
                }
            }
        }
        @if views.is_empty() {
            p.empty { "No request here yet." }
        } @else {
            div.table-scroll {
                table.requests {
                    caption.visually-hidden { "Decided and expired requests, newest first" }
                    thead {
                        tr {
                            th scope="col" { "Task" }
                            th scope="col" { "Agent" }
                            th scope="col" { "Outcome" }
                            th scope="col" { "Rights" }
                            th scope="col" { "Opened" }
                            th scope="col" { "Decided" }
                            th scope="col" { "Writ" }
                        }
                    }
                    tbody {
                        @for view in views {
                            @let request = &view.listed.request;
                            tr {
                                th scope="row" { a href=(detail_path(&request.id)) { (request.task) } }
                                td { code.agent { (request.agent) } }
                                td { (status_badge(view.status)) br; span.small { (request.approvals()) " of " (request.quorum) " approvals" } }
                                td { (rights_list(&request.rights)) }
                                td.nowrap { (ago(request.created_at, now)) }
                                td.nowrap {
                                    @match request.decided_at {
                                        Some(at) => (ago(at, now)),
                                        None => "—",
                                    }
                                }
                                td.nowrap {
                                    @match &request.writ_id {
                                        Some(_) => "collected",
                                        None => "—",
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(cursor) = older {
            nav.pager aria-label="More requests" {
                a href=(format!("/approvals/history?status={filter}&before={}", encode(cursor))) { "Older requests →" }
            }
        }
    }
}

/// One request, with the forms to decide it when the approver may.
pub fn detail(
    view: &ApproverView,
    session: &ApproverSession,
    now: i64,
    problem: Option<&Problem>,
) -> Markup {
    let request = &view.listed.request;
    let narrowed = request.rights != request.requested_rights;
    html! {
        p.crumbs { a href="/approvals" { "← Pending requests" } }
        @if let Some(problem) = problem {
            div.alert role="alert" aria-labelledby="problem-title" {
                h2 #problem-title { "Your decision was not recorded" }
                p { (problem.detail) }
                p.small { "Problem: " code { (problem.code) } }
            }
        }
        div.heading {
            p.eyebrow { "Request " code { (request.id) } }
            h1 { (request.task) }
            p.status-line {
                (status_badge(view.status)) " "
                (request.approvals()) " of " (request.quorum) " approvals"
                @if view.status == Status::Pending {
                    " · " (time_left(request.expires_at, now)) " left to decide"
                }
            }
        }
        div.columns {
            div.main-column {
                section.panel aria-labelledby="why" {
                    h2 #why { "Why the agent asks" }
                    blockquote.justification { (request.justification) }
                }
                section.panel aria-labelledby="rights" {
                    h2 #rights { "Rights" }
                    table.rights {
                        caption.visually-hidden { "The rights the agent asked for" }
                        thead { tr { th scope="col" { "Resource" } th scope="col" { "Operations asked for" } @if narrowed { th scope="col" { "As approved so far" } } } }
                        tbody {
                            @for right in &request.requested_rights {
                                tr {
                                    th scope="row" { code { (right.resource) } }
                                    td { (operations(&right.operations)) }
                                    @if narrowed {
                                        td {
                                            @let kept: Vec<String> = request.rights.iter().filter(|r| r.resource == right.resource).flat_map(|r| r.operations.clone()).collect();
                                            @if kept.is_empty() { "none" } @else { (operations(&kept)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if narrowed {
                        p.small { "An approver narrowed the request: an approval grants what the last column says." }
                    }
                }
                @if view.may_decide {
                    (decide_forms(request, session))
                } @else {
                    section.panel aria-labelledby="yours" {
                        h2 #yours { "Your decision" }
                        p { (why_not(view, session)) }
                    }
                }
                section.panel aria-labelledby="decisions" {
                    h2 #decisions { "Decisions so far" }
                    @if request.decisions.is_empty() {
                        p.empty-inline { "No one has decided yet." }
                    } @else {
                        table.decisions {
                            caption.visually-hidden { "Each approver's decision" }
                            thead { tr { th scope="col" { "Approver" } th scope="col" { "Decision" } th scope="col" { "Reason" } th scope="col" { "When" } } }
                            tbody {
                                @for decision in &request.decisions {
                                    (decision_row(decision, now))
                                }
                            }
                        }
                    }
                }
            }
            aside.side-column aria-labelledby="facts" {
                section.panel {
                    h2 #facts { "About the request" }
                    dl.facts {
                        dt { "Agent" } dd { code.agent { (request.agent) } }
                        dt { "Vouched for by" } dd { "issuer " code { (request.issuer) } ", subject " code { (request.subject) } }
                        dt { "Policy" } dd { code { (request.policy) } }
                        dt { "Services" } dd {
                            @for (n, service) in request.services.iter().enumerate() {
                                @if n > 0 { ", " }
                                code { (service) }
                            }
                        }
                        dt { "Writ lifetime" } dd { (duration(request.ttl)) }
                        dt { "Opened" } dd { (when(request.created_at)) br; span.small { (ago(request.created_at, now)) } }
                        dt { "Decide by" } dd { (when(request.expires_at)) }
                        @if let Some(at) = request.decided_at {
                            dt { "Decided" } dd { (when(at)) }
                        }
                        dt { "Approvers" } dd {
                            @for (n, spec) in request.approvers.iter().enumerate() {
                                @if n > 0 { ", " }
                                code { (spec) }
                            }
                            br; span.small { (request.quorum) " needed" }
                        }
                        dt { "Notification" } dd { (notification(&view.listed.notify_status, view.listed.notify_attempts)) }
                        @if let Some(writ_id) = &request.writ_id {
                            dt { "Elevated writ" } dd { code { (writ_id) } br; span.small { "collected by the agent" } }
                        }
                    }
                }
            }
        }
    }
}

fn decide_forms(request: &ApprovalRequest, session: &ApproverSession) -> Markup {
    let action = format!("{}/decision", detail_path(&request.id));
    html! {
        section.panel.decide aria-labelledby="decide" {
            h2 #decide { "Your decision" }
            p.small { "Your reason is recorded in the audit log and shown to the agent." }
            div.forms {
                form.approve method="post" action=(action) {
                    input type="hidden" name="csrf" value=(session.csrf_token);
                    input type="hidden" name="decision" value="approve";
                    fieldset {
                        legend { "Rights to approve" }
                        p.hint #rights-hint { "Uncheck what the agent should not get." }
                        @for (r, right) in request.rights.iter().enumerate() {
                            @for (o, operation) in right.operations.iter().enumerate() {
                                @let id = format!("right-{r}-{o}");
                                div.check {
                                    input type="checkbox" id=(id) name="right" value=(format!("{operation} {}", right.resource)) checked aria-describedby="rights-hint";
                                    label for=(id) { span.op { (operation) } " " code { (right.resource) } }
                                }
                            }
                        }
                    }
                    div.field {
                        label for="ttl" { "Lifetime of the writ, in seconds" }
                        input #ttl type="number" name="ttl" min="1" max=(request.ttl) value=(request.ttl) inputmode="numeric" aria-describedby="ttl-hint";
                        p.hint #ttl-hint { "At most " (duration(request.ttl)) "; a shorter lifetime narrows the writ." }
                    }
                    div.field {
                        label for="approve-reason" { "Reason for approving" }
                        textarea #approve-reason name="reason" rows="3" maxlength="1024" required {}
                    }
                    button.button.approve type="submit" { "Approve" }
                }
                form.deny method="post" action=(action) {
                    input type="hidden" name="csrf" value=(session.csrf_token);
                    input type="hidden" name="decision" value="deny";
                    div.field {
                        label for="deny-reason" { "Reason for denying" }
                        textarea #deny-reason name="reason" rows="3" maxlength="1024" required {}
                    }
                    p.hint { "One denial closes the request: the agent gets nothing." }
                    button.button.deny type="submit" { "Deny" }
                }
            }
        }
    }
}

fn why_not(view: &ApproverView, session: &ApproverSession) -> Markup {
    let request = &view.listed.request;
    let mine = request
        .decisions
        .iter()
        .find(|d| d.approver == session.principal.as_str());
    html! {
        @if let Some(decision) = mine {
            "You " (verdict_text(decision.verdict)) " this request."
        } @else if view.status != Status::Pending {
            "The request is " (view.status.as_str()) ": nothing can be decided on it any more."
        } @else {
            "The request's policy does not name you among its approvers."
        }
    }
}

fn decision_row(decision: &DecisionRecord, now: i64) -> Markup {
    html! {
        tr {
            th scope="row" {
                (decision.approver)
                @if decision.via == Via::AdminWrit { br; span.small { "with an admin writ" } }
            }
            td {
                @match decision.verdict {
                    Verdict::Approve => span.badge.ok { "approved" },
                    Verdict::Deny => span.badge.bad { "denied" },
                }
                @if let Some(rights) = &decision.narrowed_to {
                    br; span.small { "narrowed to " }
                    (rights_list(rights))
                }
            }
            td.reason { (decision.reason) }
            td.nowrap { (ago(decision.decided_at, now)) }
        }
    }
}

/// An error page's content.
pub fn error(title: &str, message: &str, code: Option<&str>, link: Option<(&str, &str)>) -> Markup {
    html! {
        section.panel.narrow aria-labelledby="error" {
            h1 #error { (title) }
            p { (message) }
            @if let Some(code) = code {
                p.small { "Problem: " code { (code) } }
            }
            @if let Some((href, text)) = link {
                p { a href=(href) { (text) } }
            }
        }
    }
}

/// The answer to the provider's redirect: the session cookie is set with it, and the browser
/// continues to `next` from this page (a navigation from the page's own site, on which the
/// `SameSite=Strict` cookie is sent; a redirect in the provider's chain would not send it).
pub fn continue_to(next: &str) -> Markup {
    let refresh = format!("0;url={next}");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content=(refresh);
                meta name="referrer" content="no-referrer";
                title { "Signed in · writ approvals" }
                link rel="stylesheet" href=(STYLESHEET_PATH);
            }
            body {
                main #main .wrap {
                    section.panel.narrow {
                        h1 { "Signed in" }
                        p { a #continue href=(next) { "Continue to the approval page" } }
                    }
                }
            }
        }
    }
}

fn detail_path(id: &str) -> String {
    format!("/approvals/{id}")
}

fn rights_list(rights: &[RightRecord]) -> Markup {
    html! {
        ul.rights-list {
            @for right in rights {
                li { (operations(&right.operations)) " " code { (right.resource) } }
            }
        }
    }
}

fn operations(operations: &[String]) -> Markup {
    html! {
        @for (n, operation) in operations.iter().enumerate() {
            @if n > 0 { " " }
            span.op { (operation) }
        }
    }
}

fn status_badge(status: Status) -> Markup {
    html! {
        @match status {
            Status::Pending => span.badge.info { "pending" },
            Status::Approved => span.badge.ok { "approved" },
            Status::Denied => span.badge.bad { "denied" },
            Status::Expired => span.badge { "expired" },
        }
    }
}

fn verdict_text(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Approve => "approved",
        Verdict::Deny => "denied",
    }
}

fn notification(status: &str, attempts: u32) -> Markup {
    html! {
        @match status {
            "delivered" => "webhook delivered",
            "pending" => "webhook being delivered",
            "failed" => {
                span.badge.warn { "webhook failed" } " after " (attempts) " attempts"
            },
            _ => "no webhook configured",
        }
    }
}

fn excerpt(text: &str) -> String {
    let mut chars = text.chars();
    let mut cut: String = chars.by_ref().take(EXCERPT_CHARS).collect();
    if chars.next().is_some() {
        cut = cut.trim_end().to_owned();
        cut.push('…');
    }
    cut
}

fn when(unix: i64) -> Markup {
    let text = rfc3339(unix);
    let shown = text.replace('T', " ").replace('Z', " UTC");
    html! { time datetime=(text) { (shown) } }
}

fn ago(unix: i64, now: i64) -> Markup {
    let seconds = now.saturating_sub(unix).max(0);
    html! { time datetime=(rfc3339(unix)) { (duration(seconds.unsigned_abs())) " ago" } }
}

fn time_left(expires_at: i64, now: i64) -> String {
    let left = expires_at.saturating_sub(now);
    if left <= 0 {
        "none".into()
    } else {
        duration(left.unsigned_abs())
    }
}

/// A duration for people: `45 s`, `12 min`, `3 h 5 min`, `2 days`.
pub fn duration(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        3600..86_400 => match (seconds / 3600, (seconds % 3600) / 60) {
            (hours, 0) => format!("{hours} h"),
            (hours, minutes) => format!("{hours} h {minutes} min"),
        },
        _ => match seconds / 86_400 {
            1 => "1 day".into(),
            days => format!("{days} days"),
        },
    }
}

/// Percent-encodes `text` for a query parameter.
fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(5), "5 s");
        assert_eq!(duration(300), "5 min");
        assert_eq!(duration(3600), "1 h");
        assert_eq!(duration(3900), "1 h 5 min");
        assert_eq!(duration(86_400), "1 day");
        assert_eq!(duration(3 * 86_400), "3 days");
    }

    #[test]
    fn excerpts_cut_long_text() {
        assert_eq!(excerpt("short"), "short");
        let long = "word ".repeat(50);
        let cut = excerpt(&long);
        assert!(cut.ends_with('…') && cut.chars().count() <= EXCERPT_CHARS + 1);
    }

    #[test]
    fn markup_in_values_is_escaped() {
        let hostile = "<script>alert(1)</script><img src=x onerror=alert(1)> \"quoted\"";
        let page = error(hostile, hostile, Some(hostile), Some((hostile, hostile))).into_string();
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("href=\"&lt;script&gt;"), "{page}");
        assert!(!page.contains("\"quoted\""));
    }
}
