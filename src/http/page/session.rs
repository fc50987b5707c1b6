//! Who is looking at the page (the `writ_session` cookie), the cookies the page sets, and the
//! checks every form post passes: the request comes from the page's own origin, carries a body
//! of the form type within [`MAX_FORM_BYTES`], and holds the session's CSRF token.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};

use super::PageError;
use crate::http::AppState;
use crate::login::{ApproverSession, SessionSecret, state::MAX_AGE};

/// The session cookie: the session's secret.
pub const SESSION_COOKIE: &str = "writ_session";
/// The login cookie: the sealed state of a login in progress.
pub const LOGIN_COOKIE: &str = "writ_login";
/// Forms of the page are small: a reason (at most 1 KiB), a lifetime, the rights' boxes.
pub const MAX_FORM_BYTES: usize = 16 * 1024;
/// Cookies of the page are sent only to it.
const COOKIE_PATH: &str = "/approvals";

/// The value of cookie `name` in the request's `Cookie` headers, if there is exactly one.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'));
    let first = found.next()?;
    // Two cookies of one name (another path's, or one set by a sibling host): neither is
    // trusted.
    found.next().is_none().then_some(first)
}

/// A `Set-Cookie` value for one of the page's cookies: HttpOnly, only under `/approvals`,
/// `Secure` when the page is served over HTTPS.
pub fn set_cookie(name: &str, value: &str, same_site: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path={COOKIE_PATH}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The login cookie, holding `sealed` for 10 minutes. `SameSite=Lax`: the provider's
/// redirect back is a cross-site navigation, on which a `Strict` cookie would not be sent.
pub fn login_cookie(sealed: &str, secure: bool) -> String {
    set_cookie(LOGIN_COOKIE, sealed, "Lax", MAX_AGE, secure)
}

/// The session cookie. `SameSite=Strict`: no other site can make the browser send it.
pub fn session_cookie(secret: &SessionSecret, max_age: i64, secure: bool) -> String {
    set_cookie(SESSION_COOKIE, secret.expose(), "Strict", max_age, secure)
}

/// Deletes a cookie of the page.
pub fn clear_cookie(name: &str, secure: bool) -> String {
    let same_site = if name == LOGIN_COOKIE {
        "Lax"
    } else {
        "Strict"
    };
    set_cookie(name, "", same_site, 0, secure)
}

/// Who is looking: the session their cookie opens, if any.
pub struct Visitor {
    pub secret: Option<SessionSecret>,
    pub session: Option<ApproverSession>,
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE).and_then(SessionSecret::parse)
        else {
            return Ok(Visitor {
                secret: None,
                session: None,
            });
        };
        let session = state
            .broker
            .approver_session(&secret)
            .await
            .map_err(|error| {
                tracing::error!(%error, "approver sessions cannot be read");
                PageError::unavailable()
            })?;
        Ok(Visitor {
            secret: Some(secret),
            session,
        })
    }
}

/// Refuses a post that a browser says came from elsewhere: one whose `Sec-Fetch-Site` is
/// present and not `same-origin`, or whose `Origin` is present and neither the page's own nor
/// `null`. (The page's `Referrer-Policy: no-referrer` makes browsers send `Origin: null` on
/// its own form posts; Fetch Metadata still names where a post came from, and every current
/// browser sends it.) The session's CSRF token is required besides.
pub fn same_origin(headers: &HeaderMap, own: Option<&str>) -> Result<(), PageError> {
    let refused = || {
        PageError::new(
            StatusCode::FORBIDDEN,
            "Refused",
            "This form was sent from another site, so it was not accepted.",
        )
    };
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return Err(refused());
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    match (origin.to_str(), own) {
        (Ok("null"), _) => Ok(()),
        (Ok(origin), Some(own)) if origin.eq_ignore_ascii_case(own) => Ok(()),
        _ => Err(refused()),
    }
}

/// Whether `token` is the session's CSRF token; refuses the post otherwise.
pub fn check_csrf(session: &ApproverSession, token: Option<&str>) -> Result<(), PageError> {
    match token {
        Some(token) if session.csrf_matches(token) => Ok(()),
        _ => Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form's anti-forgery token is missing or out of date, so it was not accepted. \
             Reload the page and try again.",
        )),
    }
}

/// A form body (`application/x-www-form-urlencoded`, at most [`MAX_FORM_BYTES`]) as its
/// name/value pairs, in order.
pub struct FormBody(pub Vec<(String, String)>);

impl FormBody {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl<S: Send + Sync> FromRequest<S> for FormBody {
    type Rejection = PageError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, PageError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(PageError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Not a form",
                "The page's forms send application/x-www-form-urlencoded.",
            ));
        }
        let too_large = || {
            PageError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                format!("A form of the page is at most {MAX_FORM_BYTES} bytes."),
            )
        };
        let announced = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse::<u64>().ok());
        if announced.is_some_and(|length| length > MAX_FORM_BYTES as u64) {
            return Err(too_large());
        }
        let body = axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES)
            .await
            .map_err(|_| too_large())?;
        Ok(FormBody(parse_form(&body)))
    }
}

fn parse_form(body: &Bytes) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn one_cookie_of_a_name_is_read_and_two_are_none() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("test_op_session=x; writ_session=abc; other=1"),
        );
        assert_eq!(cookie(&headers, "writ_session"), Some("abc"));
        assert_eq!(cookie(&headers, "writ_login"), None);
        headers.append(header::COOKIE, HeaderValue::from_static("writ_session=def"));
        assert_eq!(cookie(&headers, "writ_session"), None);
    }

    #[test]
    fn cookies_are_http_only_and_scoped_to_the_page() {
        let set = set_cookie("writ_session", "v", "Strict", 60, true);
        assert_eq!(
            set,
            "writ_session=v; Path=/approvals; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(!clear_cookie(LOGIN_COOKIE, false).contains("Secure"));
        assert!(clear_cookie(LOGIN_COOKIE, false).contains("Max-Age=0"));
    }

    #[test]
    fn posts_from_other_sites_are_refused() {
        let own = Some("https://writ.example");
        let mut headers = HeaderMap::new();
        assert!(same_origin(&headers, own).is_ok());
        for ours in ["https://writ.example", "null"] {
            headers.insert(header::ORIGIN, HeaderValue::from_static(ours));
            assert!(same_origin(&headers, own).is_ok(), "{ours}");
        }
        for other in ["https://evil.example", "http://writ.example", ""] {
            headers.insert(header::ORIGIN, HeaderValue::from_static(other));
            assert!(same_origin(&headers, own).is_err(), "{other}");
        }
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&headers, own).is_ok());
        for site in ["cross-site", "same-site", "none"] {
            headers.insert("sec-fetch-site", HeaderValue::from_static(site));
            assert!(same_origin(&headers, own).is_err(), "{site}");
        }
    }

    #[test]
    fn forms_keep_repeated_names() {
        let form = FormBody(parse_form(&Bytes::from_static(
            b"right=read+orders%2F1&right=delete+orders%2F1&reason=a%26b",
        )));
        assert_eq!(
            form.all("right").collect::<Vec<_>>(),
            ["read orders/1", "delete orders/1"]
        );
        assert_eq!(form.get("reason"), Some("a&b"));
    }
}
