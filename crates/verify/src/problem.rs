//! Refusals as HTTP answers: RFC 9457 `application/problem+json` with a stable `type`.
//!
//! The body is built from the [`Denial`] only, never from the request, so the presented token is
//! never echoed back (it would end up in client logs and error trackers).

use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use crate::Denial;

impl Denial {
    /// The problem+json body for this denial:
    /// `{"type": "urn:writ:problem:<code>", "title", "status", "detail"}`.
    pub fn problem_json(&self) -> String {
        let status = self.http_status();
        let detail = if status >= 500 {
            // 5xx: the cause is logged, the caller gets a generic answer.
            "the writ could not be verified".to_owned()
        } else {
            self.to_string()
        };
        serde_json::json!({
            "type": format!("urn:writ:problem:{}", self.code()),
            "title": self.title(),
            "status": status,
            "detail": detail,
        })
        .to_string()
    }

    /// A complete HTTP answer for this denial, with `WWW-Authenticate` on 400/401/403 (RFC 6750).
    pub fn problem_response<B: From<String>>(&self) -> Response<B> {
        let status =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = Response::new(B::from(self.problem_json()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let challenge = match (self, status) {
            (Denial::MissingCredential, _) => Some("Bearer"),
            (_, StatusCode::BAD_REQUEST) => Some("Bearer error=\"invalid_request\""),
            (_, StatusCode::UNAUTHORIZED) => Some("Bearer error=\"invalid_token\""),
            (_, StatusCode::FORBIDDEN) => Some("Bearer error=\"insufficient_scope\""),
            _ => None,
        };
        if let Some(challenge) = challenge {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn body_has_the_problem_fields() {
        let response: Response<String> = Denial::NotPermitted.problem_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(body["type"], "urn:writ:problem:not_permitted");
        assert_eq!(body["status"], 403);
        assert!(body["title"].is_string() && body["detail"].is_string());
    }

    #[test]
    fn unprovable_prefixes_are_forbidden_with_their_reason() {
        let denial = Denial::PrefixNotProvable {
            reason: "no prefix right of the authority block covers the prefix",
        };
        let response: Response<String> = denial.problem_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            "Bearer error=\"insufficient_scope\""
        );
        let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(body["type"], "urn:writ:problem:prefix_not_provable");
        assert_eq!(body["title"], "Prefix grant not provable");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .ends_with("no prefix right of the authority block covers the prefix")
        );
    }

    #[test]
    fn internal_failures_answer_generically() {
        let denial = Denial::Internal {
            reason: "secret cause",
        };
        let body: serde_json::Value = serde_json::from_str(&denial.problem_json()).unwrap();
        assert_eq!(body["status"], 500);
        assert!(!body["detail"].as_str().unwrap().contains("secret"));
    }
}
