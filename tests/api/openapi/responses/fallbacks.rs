//! The document's fallback responses: 404 for a path it does not list, 405 for a method it does
//! not document on a path it lists.

use super::Context;
use crate::openapi::Request;

pub(super) async fn cases(cx: &mut Context) {
    let (status, _) = cx.probe.send("GET", "/v2/writs", Request::default()).await;
    assert_eq!(status, 404);
    let (status, _) = cx.probe.send("GET", "/v1/writs", Request::default()).await;
    assert_eq!(status, 405);
}
