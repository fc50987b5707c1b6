//! axum integration (feature `axum`): the [`WritGrant`] extractor, and [`Denial`] as a response.

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;

use crate::{Denial, Grant};

/// The [`Grant`] that [`WritLayer`](crate::WritLayer) put on the request. Missing (the route is
/// not behind the layer) it rejects with a 401 problem, so a handler can never run without one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WritGrant(pub Grant);

impl<S: Send + Sync> FromRequestParts<S> for WritGrant {
    type Rejection = Denial;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Grant>()
            .cloned()
            .map(WritGrant)
            .ok_or(Denial::MissingCredential)
    }
}

impl IntoResponse for Denial {
    fn into_response(self) -> Response {
        self.problem_response()
    }
}
