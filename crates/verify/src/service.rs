//! [`WritService`]: checks the request's writ, then calls the inner service with the [`Grant`]
//! in the request extensions, or answers the refusal itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{HeaderMap, Request, Response};
use tower::Service;

use crate::{Denial, Grant, Verifier};

/// The service made by [`WritLayer`](crate::WritLayer). On a grant the inner service sees the
/// request with a [`Grant`] extension; on a denial it is not called, and the answer is 401, 403 or
/// 503 with a problem+json body.
#[derive(Clone)]
pub struct WritService<S, F> {
    inner: S,
    verifier: Arc<Verifier>,
    map: F,
}

impl<S, F> WritService<S, F> {
    /// Wraps `inner`; usually made through [`WritLayer`](crate::WritLayer).
    pub fn new(inner: S, verifier: Arc<Verifier>, map: F) -> Self {
        WritService {
            inner,
            verifier,
            map,
        }
    }
}

impl<S, F> std::fmt::Debug for WritService<S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WritService")
            .field("service", &self.verifier.service())
            .finish_non_exhaustive()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, F, ReqBody, ResBody> Service<Request<ReqBody>> for WritService<S, F>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    F: Fn(&http::request::Parts) -> (String, String),
    ReqBody: Send + 'static,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready is the one that must be called; leave a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = Arc::clone(&self.verifier);
        let (mut parts, body) = request.into_parts();
        let writ = bearer_token(&parts.headers);
        let (resource, operation) = (self.map)(&parts);
        Box::pin(async move {
            let decision = match writ {
                Ok(writ) => {
                    verifier
                        .authorize_with_refresh(&writ, &resource, &operation)
                        .await
                }
                Err(denial) => Err(denial),
            };
            match decision {
                Ok(grant) => {
                    // Debug formatting escapes request-controlled text in logs.
                    tracing::debug!(writ_id = ?grant.writ_id, agent = ?grant.agent, ?resource,
                        ?operation, "writ granted");
                    parts.extensions.insert::<Grant>(grant);
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(denial) => {
                    tracing::info!(code = denial.code(), ?resource, ?operation, "writ refused");
                    Ok(denial.problem_response())
                }
            }
        })
    }
}

/// The writ of an `Authorization: Bearer <writ>` header.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<String, Denial> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Denial::MissingCredential);
    };
    if values.next().is_some() {
        return Err(Denial::Malformed {
            reason: "more than one Authorization header",
        });
    }
    let value = value.to_str().map_err(|_| Denial::Malformed {
        reason: "the Authorization header is not ASCII",
    })?;
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return Err(Denial::MissingCredential);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Denial::MissingCredential);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Denial::MissingCredential);
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(AUTHORIZATION, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn reads_bearer_tokens() {
        assert_eq!(bearer_token(&headers(&["Bearer abc"])).unwrap(), "abc");
        assert_eq!(bearer_token(&headers(&["bearer  abc "])).unwrap(), "abc");
    }

    #[test]
    fn refuses_missing_other_schemes_and_duplicates() {
        assert_eq!(bearer_token(&headers(&[])), Err(Denial::MissingCredential));
        assert_eq!(
            bearer_token(&headers(&["Basic dXNlcjpwdw=="])),
            Err(Denial::MissingCredential)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer"])),
            Err(Denial::MissingCredential)
        );
        assert!(matches!(
            bearer_token(&headers(&["Bearer a", "Bearer b"])),
            Err(Denial::Malformed { .. })
        ));
    }
}
