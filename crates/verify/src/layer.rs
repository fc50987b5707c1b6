//! [`WritLayer`]: the tower layer that puts a writ check in front of a service.

use std::sync::Arc;

use tower::Layer;

use crate::{Verifier, WritService};

/// Wraps services in [`WritService`]: every request must carry a writ allowing the
/// `(resource, operation)` that `map` derives from it. The resource must be canonical
/// ([`check_canonical_resource`](crate::check_canonical_resource)); a request for any other is
/// answered 400 `non_canonical_resource` whatever its writ grants.
///
/// ```no_run
/// # async fn demo(verifier: writ_verify::Verifier) {
/// use std::sync::Arc;
/// use writ_verify::WritLayer;
///
/// let layer = WritLayer::new(Arc::new(verifier), |parts: &http::request::Parts| {
///     // One leading `/` goes; non-canonical paths (`//x`, `a/%2E%2E/b`) are refused with 400.
///     let path = parts.uri.path();
///     let resource = path.strip_prefix('/').unwrap_or(path).to_owned();
///     let operation = if parts.method == http::Method::GET { "read" } else { "write" };
///     (resource, operation.to_owned())
/// });
/// # let _ = layer;
/// # }
/// ```
#[derive(Clone)]
pub struct WritLayer<F> {
    verifier: Arc<Verifier>,
    map: F,
}

impl<F> WritLayer<F>
where
    F: Fn(&http::request::Parts) -> (String, String) + Clone,
{
    /// A layer checking writs with `verifier`; `map` names the resource and operation of a
    /// request (from its method, path, headers; not its body).
    pub fn new(verifier: Arc<Verifier>, map: F) -> Self {
        WritLayer { verifier, map }
    }
}

impl<F> std::fmt::Debug for WritLayer<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WritLayer")
            .field("service", &self.verifier.service())
            .finish_non_exhaustive()
    }
}

impl<S, F: Clone> Layer<S> for WritLayer<F> {
    type Service = WritService<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        WritService::new(inner, Arc::clone(&self.verifier), self.map.clone())
    }
}
