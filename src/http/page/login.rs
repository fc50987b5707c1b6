//! Logging in (to the provider and back) and out.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::session::{
    FormBody, LOGIN_COOKIE, SESSION_COOKIE, Visitor, check_csrf, clear_cookie, cookie,
    login_cookie, same_origin, session_cookie,
};
use super::{Html, PageError, see_other, views};
use crate::broker::{APPROVAL_PREFIX, Callback};
use crate::http::AppState;
use crate::id;
use crate::login::{LoginError, SessionSecret};

/// `GET /approvals/login?next=PATH`: sends the browser to the provider, with the login's state
/// in the `writ_login` cookie. Nothing is written anywhere.
pub async fn start(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let secure = secure(&state);
    let next = query
        .as_deref()
        .and_then(|query| parameter(query, "next"))
        .filter(|next| valid_next(next))
        .unwrap_or_else(|| "/approvals".to_owned());
    let start = state.broker.begin_login(&next).await.map_err(login_error)?;
    Ok(see_other(
        &start.authorization_url,
        &[login_cookie(&start.sealed_state, secure)],
    ))
}

/// `GET /approvals/callback`: the provider's answer. On success, a session cookie and a page
/// that continues to where the person was going (see [`views::continue_to`]).
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Html, PageError> {
    let secure = secure(&state);
    let query = query.unwrap_or_default();
    let answer = Callback {
        code: parameter(&query, "code"),
        state: parameter(&query, "state"),
        error: parameter(&query, "error"),
        iss: parameter(&query, "iss"),
    };
    let sealed = cookie(&headers, LOGIN_COOKIE);
    let logged_in = match state.broker.finish_login(sealed, &answer).await {
        Ok(logged_in) => logged_in,
        Err(error) => return Err(login_error(error).cookie(clear_cookie(LOGIN_COOKIE, secure))),
    };
    // A session this browser held before ends with the new login.
    if let Some(previous) = cookie(&headers, SESSION_COOKIE).and_then(SessionSecret::parse)
        && let Err(error) = state.broker.logout(&previous).await
    {
        tracing::warn!(%error, "the previous session could not be ended");
    }
    let lifetime = logged_in
        .session
        .expires_at
        .saturating_sub(logged_in.session.created_at);
    Ok(Html::ok(views::continue_to(&logged_in.next))
        .cookie(session_cookie(&logged_in.secret, lifetime, secure))
        .cookie(clear_cookie(LOGIN_COOKIE, secure)))
}

/// `POST /approvals/logout`: ends the session (its CSRF token required) and its cookie.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    visitor: Visitor,
    form: FormBody,
) -> Result<Response, PageError> {
    same_origin(&headers, own_origin(&state).as_deref())?;
    let secure = secure(&state);
    if let (Some(secret), Some(session)) = (&visitor.secret, &visitor.session) {
        check_csrf(session, form.get("csrf"))?;
        state.broker.logout(secret).await.map_err(|error| {
            tracing::error!(%error, "a logout could not be recorded");
            PageError::unavailable()
        })?;
    }
    Ok(see_other(
        "/approvals?signed_out=1",
        &[clear_cookie(SESSION_COOKIE, secure)],
    )
    .into_response())
}

fn secure(state: &AppState) -> bool {
    state
        .broker
        .login_settings()
        .is_some_and(|settings| settings.secure())
}

/// The page's own origin, from the configured redirect URL.
pub fn own_origin(state: &AppState) -> Option<String> {
    state
        .broker
        .login_settings()
        .and_then(|settings| settings.origin())
}

/// Where a login may return to: the list, the history, or one request.
fn valid_next(next: &str) -> bool {
    matches!(next, "/approvals" | "/approvals/history")
        || next
            .strip_prefix("/approvals/")
            .is_some_and(|rest| id::is_id(rest, APPROVAL_PREFIX))
}

/// The first value of `name` in a query string.
pub fn parameter(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

fn login_error(error: LoginError) -> PageError {
    let again = ("/approvals/login", "Sign in again");
    let (status, title) = match &error {
        LoginError::PrincipalMissing(_)
        | LoginError::PrincipalInvalid { .. }
        | LoginError::GroupsInvalid(_) => (StatusCode::FORBIDDEN, "Sign-in refused"),
        error if error.is_server_side() => (StatusCode::SERVICE_UNAVAILABLE, "Sign-in unavailable"),
        _ => (StatusCode::BAD_REQUEST, "Sign-in failed"),
    };
    PageError::new(status, title, error.to_string())
        .with_code(error.reason())
        .with_link(again.0, again.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_returns_only_to_pages_of_the_approval_page() {
        assert!(valid_next("/approvals"));
        assert!(valid_next("/approvals/history"));
        assert!(valid_next("/approvals/ap_0123456789abcdef0123456789abcdef"));
        for elsewhere in [
            "https://evil.example/approvals",
            "//evil.example",
            "/approvals/../v1/audit",
            "/approvals/ap_x",
            "/v1/approvals",
            "",
        ] {
            assert!(!valid_next(elsewhere), "{elsewhere}");
        }
    }

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(
            parameter("code=a%2Bb&state=s&state=t", "code").as_deref(),
            Some("a+b")
        );
        assert_eq!(
            parameter("code=a&state=s&state=t", "state").as_deref(),
            Some("s")
        );
        assert_eq!(parameter("code=a", "iss"), None);
    }
}
