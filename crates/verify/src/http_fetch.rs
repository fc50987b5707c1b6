//! Reading a document from the broker over HTTP with a bound on its size: the key set and the
//! revocation feed's pages. Each caller maps the failure into its own error type.

use http::StatusCode;

/// Why a bounded GET gave no document.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// The request failed or timed out, or the body broke off.
    Request(reqwest::Error),
    /// The server answered a status other than 2xx (redirects are not followed).
    Status(StatusCode),
    /// The body is (announced as, or turned out) larger than the bound.
    TooLarge,
}

impl From<reqwest::Error> for FetchError {
    fn from(error: reqwest::Error) -> Self {
        FetchError::Request(error)
    }
}

/// A request error with its causes on one line: reqwest's own message names only the URL, the
/// cause ("Connection refused", "dns error", a TLS failure) is in its sources.
pub(crate) fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Refuses an answer whose status is not 2xx.
pub(crate) fn ensure_success(response: &reqwest::Response) -> Result<(), FetchError> {
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(FetchError::Status(status))
    }
}

/// Sends `request` and reads the body of a 2xx answer, at most `max_bytes` of it.
pub(crate) async fn get_bounded(
    request: reqwest::RequestBuilder,
    max_bytes: usize,
) -> Result<Vec<u8>, FetchError> {
    let mut response = request.send().await?;
    ensure_success(&response)?;
    if response
        .content_length()
        .is_some_and(|len| len > max_bytes as u64)
    {
        return Err(FetchError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max_bytes {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
