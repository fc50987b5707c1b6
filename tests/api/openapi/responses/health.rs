//! `GET` and `HEAD` of the public keys, `/healthz` and `/readyz`: 200 (`/readyz` answers 503 once
//! the database is gone, in [`super::unavailable`]).

use super::Context;
use crate::openapi::Request;

pub(super) async fn cases(cx: &mut Context) {
    for path in ["/.well-known/writ-keys", "/healthz", "/readyz"] {
        for method in ["GET", "HEAD"] {
            let (status, _) = cx.probe.send(method, path, Request::default()).await;
            assert_eq!(status, 200, "{method} {path}");
        }
    }
}
