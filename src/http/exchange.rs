//! `POST /v1/exchange/...`: a writ in, a native credential out. The credential is answered with
//! `Cache-Control: no-store`, and the exchange's id in `Writ-Exchange-Id` (also in the audit
//! log), never logged.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonBody, PresentedWrit};
use crate::broker::{ExchangeError, Exchanged};
use crate::error::codes;
use crate::store::RightRecord;

/// The header naming the exchange an answer comes from.
pub const EXCHANGE_ID_HEADER: HeaderName = HeaderName::from_static("writ-exchange-id");

/// `POST /v1/exchange/aws`: which role, and optionally which rights (default: every right of the
/// writ within the role's resources that it still grants).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsExchangeRequest {
    pub role: String,
    #[serde(default)]
    pub rights: Option<Vec<ExchangeRight>>,
}

/// One right asked of an AWS exchange. Unknown members are refused here as everywhere else in
/// a request (`RightRecord`, the stored form, is lenient).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRight {
    pub resource: String,
    pub operations: Vec<String>,
}

impl From<ExchangeRight> for RightRecord {
    fn from(right: ExchangeRight) -> RightRecord {
        RightRecord {
            resource: right.resource,
            operations: right.operations,
        }
    }
}

pub async fn aws(
    State(state): State<AppState>,
    PresentedWrit(writ): PresentedWrit,
    JsonBody(request): JsonBody<AwsExchangeRequest>,
) -> Result<Response, ApiError> {
    let rights = request
        .rights
        .map(|rights| rights.into_iter().map(RightRecord::from).collect());
    let broker = Arc::clone(&state.broker);
    let exchanged =
        to_completion(async move { broker.exchange_aws(&writ, &request.role, rights).await })
            .await?;
    Ok(answer(exchanged))
}

pub async fn vault(
    State(state): State<AppState>,
    PresentedWrit(writ): PresentedWrit,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let broker = Arc::clone(&state.broker);
    let exchanged = to_completion(async move { broker.exchange_vault(&writ, &name).await }).await?;
    Ok(answer(exchanged))
}

/// Runs an exchange on a task of its own, so that a client going away or the request timeout
/// cannot stop it between asking the upstream and recording what it answered: a credential
/// made upstream is always recorded (and so revocable), or taken back. The caller that left
/// gets the same credential by asking again.
async fn to_completion(
    exchange: impl Future<Output = Result<Exchanged, ExchangeError>> + Send + 'static,
) -> Result<Exchanged, ApiError> {
    match tokio::spawn(exchange).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ApiError::new(
            codes::INTERNAL,
            "the broker failed; the cause is in its log",
        )),
    }
}

fn answer(exchanged: Exchanged) -> Response {
    let mut response = Json(exchanged.credential).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(id) = HeaderValue::from_str(&exchanged.exchange_id) {
        headers.insert(EXCHANGE_ID_HEADER, id);
    }
    response
}
