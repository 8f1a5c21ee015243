//! Errors as RFC 9457 problem details (`application/problem+json`). A problem says what was
//! wrong with the request in words a caller can act on; store failures become a generic 500 or
//! 503 and are logged here, so table keys, object keys and service messages never leave.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::{error, warn};

use crate::store::StoreError;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";
/// Problem type URIs are `urn:m365-backup:problem:<slug>` (documented in `openapi.yaml`).
pub const PROBLEM_TYPE_PREFIX: &str = "urn:m365-backup:problem:";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query, path or body value that does not parse or is out of its range.
    #[error("{0}")]
    InvalidParameter(String),
    #[error("the page cursor does not belong to this listing")]
    InvalidCursor,
    /// A moment in the future, or before the drive's first backup.
    #[error("{0}")]
    TimeOutOfRange(String),
    #[error("{0}")]
    NotFound(String),
    /// The version exists but has no content to download (folder or deletion).
    #[error("{0}")]
    NoContent(String),
    #[error("{0}")]
    InvalidBody(String),
    /// The restore job has already ended: it cannot be cancelled.
    #[error("{0}")]
    JobEnded(String),
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("no route {0}")]
    NoRoute(String),
    #[error("method not allowed on {0}")]
    MethodNotAllowed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The problem document.
#[derive(Serialize, Debug)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
}

impl ApiError {
    fn describe(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::InvalidParameter(_) => (StatusCode::BAD_REQUEST, "invalid-parameter", "Invalid parameter"),
            ApiError::InvalidCursor => (StatusCode::BAD_REQUEST, "invalid-cursor", "Invalid page cursor"),
            ApiError::TimeOutOfRange(_) => (StatusCode::BAD_REQUEST, "time-out-of-range", "Time out of range"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::NoContent(_) => (StatusCode::CONFLICT, "no-content", "Version has no content"),
            ApiError::InvalidBody(_) => (StatusCode::BAD_REQUEST, "invalid-body", "Invalid request body"),
            ApiError::JobEnded(_) => (StatusCode::CONFLICT, "job-ended", "Restore job has ended"),
            ApiError::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", "Request body too large"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
            }
            ApiError::NoRoute(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed")
            }
            ApiError::Store(StoreError::InvalidCursor) => {
                (StatusCode::BAD_REQUEST, "invalid-cursor", "Invalid page cursor")
            }
            ApiError::Store(e) if e.is_retryable() => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Temporarily unavailable")
            }
            ApiError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }

    /// The problem a caller sees. Store errors are replaced by a fixed sentence.
    pub fn problem(&self) -> Problem {
        let (status, slug, title) = self.describe();
        let detail = match self {
            ApiError::Store(StoreError::InvalidCursor) => ApiError::InvalidCursor.to_string(),
            ApiError::Store(e) if e.is_retryable() => "The backup catalog is busy; retry shortly.".to_owned(),
            ApiError::Store(_) => "The request could not be completed; the error was logged.".to_owned(),
            other => other.to_string(),
        };
        Problem { kind: format!("{PROBLEM_TYPE_PREFIX}{slug}"), title, status: status.as_u16(), detail }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Store(StoreError::InvalidCursor) => {}
            ApiError::Store(e) if e.is_retryable() => warn!(error = %e, "restore API: transient store failure"),
            ApiError::Store(e) => error!(error = %e, "restore API: store failure"),
            _ => {}
        }
        let problem = self.problem();
        let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_never_reach_the_caller_in_their_own_words() {
        let secret_key = "I#tenant#drive#item";
        let cases = [
            (StoreError::Malformed(format!("row {secret_key}")), 500),
            (StoreError::Service { service: "dynamodb", message: secret_key.into(), retryable: true }, 503),
            (StoreError::NotFound { key: secret_key.into() }, 500),
            (StoreError::InvalidCursor, 400),
        ];
        for (err, status) in cases {
            let problem = ApiError::from(err).problem();
            assert_eq!(problem.status, status);
            assert!(!problem.detail.contains(secret_key), "{}", problem.detail);
            assert!(problem.kind.starts_with(PROBLEM_TYPE_PREFIX));
        }
    }
}
