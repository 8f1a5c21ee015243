//! The one error type of the Graph layer, with the predicates callers branch on.
//!
//! No variant ever carries a token, a secret, or a next/delta link URL: those links embed
//! the delta token, so the only place one lives is inside a [`DeltaLink`], whose `Debug`
//! is redacted and which has no `Display`.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use serde::Deserialize;
use url::Url;

use super::drive::DeltaLink;

/// Used when a 429/503 comes without a usable `Retry-After`.
pub const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(10);

/// Error codes that mean "this delta token cannot be served" whatever the status (drive
/// delta's 410 codes included, graph-facts §4, §13.3; Exchange's with 400, 404 or 410).
const RESYNC_CODES: [&str; 8] = [
    "resyncRequired",
    "resyncChangesApplyDifferences",
    "resyncChangesUploadDifferences",
    "syncStateNotFound",
    "syncStateInvalid",
    "ErrorSyncStateNotFound",
    "ErrorInvalidSyncStateData",
    "invalidDeltaToken",
];

/// 404 codes that speak of the mailbox (or its user), never of one item in it.
const MAILBOX_GONE_CODES: [&str; 2] = ["MailboxNotEnabledForRESTAPI", "ErrorInvalidUser"];

/// Graph error bodies are echoed into messages; keep them short.
const MAX_MESSAGE_CHARS: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// 429, or 503 (SharePoint "server too busy"). Every caller hitting the same tenant
    /// should pause for `retry_after`: retrying early counts against the limits again.
    #[error("throttled by Graph (HTTP {status}), retry after {retry_after:?}")]
    Throttled { retry_after: Duration, status: u16 },
    /// 410 Gone on delta: the token cannot be served. `restart` (the `Location` header) is a
    /// link that restarts a full enumeration; without it, restart delta with no token.
    #[error("delta token no longer valid, full resync required")]
    ResyncRequired { restart: Option<DeltaLink> },
    #[error("not found")]
    NotFound,
    /// 404 about the whole mailbox, not one item in it: deleted or soft-deleted, without an
    /// Exchange Online licence, on-premises (`MailboxNotEnabledForRESTAPI`), or its user is
    /// gone (`ErrorInvalidUser`). Nothing in it was deleted by its owner: what was backed up
    /// stays current.
    #[error("mailbox unavailable ({code})")]
    MailboxUnavailable { code: String },
    #[error("forbidden ({code})")]
    Forbidden { code: String },
    /// Still 401 after one token refresh.
    #[error("unauthorized ({code})")]
    Unauthorized { code: String },
    /// The token endpoint refused us (wrong secret, unknown tenant, no consent...).
    #[error("token endpoint refused the client credentials (HTTP {status}, {code})")]
    Auth { status: u16, code: String },
    /// Connection reset, timeout, 500/502/504, truncated body: the same call may succeed.
    #[error("transient Graph failure: {message}")]
    Transient { message: String },
    /// 409: the target name is taken (`nameAlreadyExists`) or the item changed under us.
    /// Retrying the same request gives the same answer: pick another name or behaviour.
    #[error("conflict ({code})")]
    Conflict { code: String },
    /// 412: an `If-Match`/`If-None-Match` condition did not hold.
    #[error("precondition failed")]
    PreconditionFailed,
    /// 413: the request body is too big for this call (e.g. a simple upload over the
    /// limit): use an upload session, or smaller fragments.
    #[error("request body too large for Graph")]
    PayloadTooLarge,
    /// 416 on an upload session: that range was already received (or is out of order).
    /// Ask the session's status and resume from its `nextExpectedRanges`.
    #[error("upload range not satisfiable; ask the session status and resume")]
    RangeNotSatisfiable,
    /// 404 on an upload URL: the session expired, was cancelled or already completed.
    /// Start the upload over with a new session.
    #[error("upload session is gone; start over with a new session")]
    UploadSessionGone,
    /// 507: the drive's quota cannot take the file.
    #[error("insufficient storage in the target drive")]
    InsufficientStorage,
    #[error("Graph returned HTTP {status} ({code}): {message}")]
    Http { status: u16, code: String, message: String },
    /// Graph answered something we cannot interpret (bad JSON, item without id, ...).
    #[error("unexpected Graph response: {message}")]
    Protocol { message: String },
}

impl GraphError {
    /// The same call may succeed if made again later (after [`Self::retry_after`] if set).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Transient { .. })
    }

    /// Graph refuses the whole resource asked for (a site, a library): no access (403), gone
    /// (404), or locked (423: an archived site, a site under a no-access lock).
    pub fn refuses_resource(&self) -> bool {
        matches!(self, Self::Forbidden { .. } | Self::NotFound | Self::Http { status: 423, .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    pub fn is_throttled(&self) -> bool {
        matches!(self, Self::Throttled { .. })
    }

    /// The delta link is dead: enumerate everything again, then reconcile deletions.
    pub fn is_resync(&self) -> bool {
        matches!(self, Self::ResyncRequired { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound)
    }

    /// What a refusal of a stored delta or next link means. The delta overview documents
    /// `410 Gone` or "a 40X-series error with error codes such as `syncStateNotFound`", and
    /// Exchange answers 400, 404 and 410 with several codes (graph-facts §13.3): so any 4xx
    /// but 401, 403 and 429 (and a 404 about the whole mailbox) is a resync. A 404 may also
    /// mean the folder is gone: the caller confirms that before it drops the folder's state.
    pub fn on_stored_link(self) -> Self {
        match self {
            Self::NotFound
            | Self::Conflict { .. }
            | Self::PreconditionFailed
            | Self::PayloadTooLarge
            | Self::RangeNotSatisfiable => Self::ResyncRequired { restart: None },
            Self::Http { status, .. } if (400..500).contains(&status) => Self::ResyncRequired { restart: None },
            other => other,
        }
    }

    /// The whole mailbox cannot be read now (gone, or access to it refused): no item in it
    /// may be taken for deleted, and its other items will fail the same way.
    pub fn is_mailbox_unavailable(&self) -> bool {
        matches!(self, Self::MailboxUnavailable { .. } | Self::Forbidden { .. })
    }

    /// The name is taken in the target folder (or another 409).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Self::Protocol { message: message.into() }
    }

    pub(crate) fn transient(message: impl Into<String>) -> Self {
        Self::Transient { message: message.into() }
    }

    /// A transport-level failure. reqwest's `Display` includes the request URL, which may
    /// carry a delta token or a pre-authenticated download key, so it is dropped first.
    pub(crate) fn from_transport(err: reqwest::Error) -> Self {
        Self::transient(describe_transport(err))
    }
}

pub(crate) fn describe_transport(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    truncate(message)
}

/// Maps a non-success Graph response to an error. `request_url` resolves a relative
/// `Location` on 410.
pub(crate) fn from_response(status: StatusCode, headers: &HeaderMap, body: &[u8], request_url: &Url) -> GraphError {
    let (code, message) = error_body(body);
    // Exchange reports a dead mail delta token by its code, not always with a 410 (which,
    // below, may carry a restart link).
    let resync_code = RESYNC_CODES.iter().any(|c| code.eq_ignore_ascii_case(c));
    if resync_code && status.is_client_error() && status != StatusCode::GONE {
        return GraphError::ResyncRequired { restart: None };
    }
    match status.as_u16() {
        429 | 503 => GraphError::Throttled { retry_after: throttle_wait(headers), status: status.as_u16() },
        410 => GraphError::ResyncRequired {
            restart: headers
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| request_url.join(v).ok())
                .map(|u| DeltaLink::new(u.to_string())),
        },
        404 if MAILBOX_GONE_CODES.iter().any(|c| code.eq_ignore_ascii_case(c)) => {
            GraphError::MailboxUnavailable { code }
        }
        404 => GraphError::NotFound,
        409 => GraphError::Conflict { code },
        412 => GraphError::PreconditionFailed,
        413 => GraphError::PayloadTooLarge,
        416 => GraphError::RangeNotSatisfiable,
        507 => GraphError::InsufficientStorage,
        403 => GraphError::Forbidden { code },
        401 => GraphError::Unauthorized { code },
        500 | 502 | 504 => GraphError::transient(format!("HTTP {} ({code})", status.as_u16())),
        other => GraphError::Http { status: other, code, message },
    }
}

/// The greater of `Retry-After` (10 s if missing) and `RateLimit-Reset`: SharePoint asks for
/// both to be honoured (graph-facts-sharepoint §2.4), and the reset of a daily budget can be
/// hours after a `Retry-After` of seconds.
fn throttle_wait(headers: &HeaderMap) -> Duration {
    let retry_after = parse_retry_after(headers).unwrap_or(DEFAULT_THROTTLE_WAIT);
    retry_after.max(super::budget::reset(headers).unwrap_or_default())
}

/// The longest `Retry-After` believed: a day (SharePoint's longest budget window). A larger
/// value (a broken or hostile header) would otherwise overflow the time it is added to.
const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// `Retry-After` is usually delta-seconds; HTTP-date is accepted too. At most a day.
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(LONGEST_RETRY_AFTER));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO).min(LONGEST_RETRY_AFTER))
}

/// `{"error": {"code": "...", "message": "..."}}`; anything else yields a generic code.
fn error_body(body: &[u8]) -> (String, String) {
    #[derive(Deserialize)]
    struct Envelope {
        error: Option<Detail>,
    }
    #[derive(Deserialize)]
    struct Detail {
        code: Option<String>,
        message: Option<String>,
    }
    let detail = serde_json::from_slice::<Envelope>(body).ok().and_then(|e| e.error);
    let code = detail.as_ref().and_then(|d| d.code.clone()).unwrap_or_else(|| "unknown".to_owned());
    let message = detail.and_then(|d| d.message).unwrap_or_default();
    (truncate(code), truncate(message))
}

fn truncate(mut s: String) -> String {
    if let Some((cut, _)) = s.char_indices().nth(MAX_MESSAGE_CHARS) {
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// A URL fit for a log line or an error: no query string (delta tokens, download keys) and
/// no `(token='...')` function arguments in the path.
pub(crate) fn redact_url(url: &Url) -> String {
    let path: Vec<&str> = url.path().split('/').map(|seg| seg.split_once('(').map_or(seg, |(head, _)| head)).collect();
    format!("{}://{}{}", url.scheme(), url.host_str().unwrap_or(""), path.join("/"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn check(status: u16, headers: &[(&str, &str)], body: &str, expected: GraphError) {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let url = Url::parse("https://graph.example/v1.0/drives/d1/root/delta?token=abc").unwrap();
        let status = StatusCode::from_u16(status).unwrap();
        assert_eq!(from_response(status, &map, body.as_bytes(), &url), expected);
    }

    #[test]
    fn throttling_honours_retry_after_and_defaults_to_ten_seconds() {
        let throttled = |secs, status| GraphError::Throttled { retry_after: Duration::from_secs(secs), status };
        check(429, &[("retry-after", "7")], "", throttled(7, 429));
        check(429, &[], "", throttled(10, 429));
        check(503, &[("retry-after", "30")], "<html>busy</html>", throttled(30, 503));
        check(503, &[], "", throttled(10, 503));
        assert!(throttled(7, 429).is_throttled() && throttled(7, 429).is_retryable());
        assert_eq!(throttled(7, 429).retry_after(), Some(Duration::from_secs(7)));
    }

    #[test]
    fn throttling_waits_the_greater_of_retry_after_and_the_budget_reset() {
        let throttled = |secs, status| GraphError::Throttled { retry_after: Duration::from_secs(secs), status };
        let budget = |reset| [("ratelimit-limit", "1250"), ("ratelimit-remaining", "0"), ("ratelimit-reset", reset)];
        let [limit, remaining, reset] = budget("3600");
        check(429, &[("retry-after", "7"), limit, remaining, reset], "", throttled(3600, 429));
        check(503, &[("retry-after", "30"), ("ratelimit-reset", "3")], "", throttled(30, 503));
        check(429, &[("ratelimit-reset", "45")], "", throttled(45, 429));
        // A malformed or impossible reset is ignored.
        check(429, &[("retry-after", "7"), ("ratelimit-reset", "soon")], "", throttled(7, 429));
        check(429, &[("retry-after", "7"), ("ratelimit-reset", "999999999")], "", throttled(7, 429));
    }

    #[test]
    fn a_retry_after_beyond_a_day_is_believed_for_a_day() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "18446744073709551615".parse().unwrap());
        assert_eq!(parse_retry_after(&headers), Some(LONGEST_RETRY_AFTER));
        headers.insert(RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(120)));
    }

    #[test]
    fn gone_on_delta_carries_the_restart_link() {
        let body = r#"{"error":{"code":"resyncRequired","message":"Resync required"}}"#;
        let restart = "https://graph.example/v1.0/drives/d1/root/delta?token=fresh";
        let err = GraphError::ResyncRequired { restart: Some(DeltaLink::new(restart)) };
        check(410, &[("location", restart)], body, err.clone());
        assert!(err.is_resync() && !err.is_retryable());
        check(410, &[], body, GraphError::ResyncRequired { restart: None });
        // Exchange: by code, whatever the 4xx.
        check(410, &[], r#"{"error":{"code":"SyncStateNotFound"}}"#, GraphError::ResyncRequired { restart: None });
        check(400, &[], r#"{"error":{"code":"SyncStateInvalid"}}"#, GraphError::ResyncRequired { restart: None });
        // A relative Location resolves against the request.
        let relative = GraphError::ResyncRequired {
            restart: Some(DeltaLink::new("https://graph.example/v1.0/drives/d1/root/delta?token=x")),
        };
        check(410, &[("location", "delta?token=x")], body, relative);
    }

    #[test]
    fn exchange_expiry_codes_ask_for_a_resync_whatever_the_4xx() {
        for code in ["SyncStateNotFound", "ErrorSyncStateNotFound", "ErrorInvalidSyncStateData", "invalidDeltaToken"] {
            let body = format!(r#"{{"error":{{"code":"{code}","message":"The sync state could not be found."}}}}"#);
            for status in [400, 404, 410] {
                check(status, &[], &body, GraphError::ResyncRequired { restart: None });
            }
        }
    }

    #[test]
    fn a_refused_stored_link_is_a_resync_unless_auth_throttling_or_the_mailbox() {
        let resync = GraphError::ResyncRequired { restart: None };
        for err in [
            GraphError::NotFound,
            GraphError::Http { status: 400, code: "somethingNew".into(), message: String::new() },
            GraphError::Http { status: 422, code: "unknown".into(), message: String::new() },
            GraphError::Conflict { code: "x".into() },
            GraphError::PreconditionFailed,
        ] {
            assert_eq!(err.clone().on_stored_link(), resync, "{err:?}");
        }
        for err in [
            GraphError::Unauthorized { code: "InvalidAuthenticationToken".into() },
            GraphError::Forbidden { code: "accessDenied".into() },
            GraphError::Throttled { retry_after: Duration::from_secs(1), status: 429 },
            GraphError::MailboxUnavailable { code: "MailboxNotEnabledForRESTAPI".into() },
            GraphError::transient("HTTP 502"),
            GraphError::Http { status: 501, code: "notImplemented".into(), message: String::new() },
        ] {
            assert_eq!(err.clone().on_stored_link(), err);
        }
    }

    #[test]
    fn drive_delta_resync_codes_ask_for_a_resync_with_or_without_a_restart_link() {
        let restart = "https://graph.example/v1.0/drives/d1/root/delta?token=fresh";
        for code in ["resyncChangesApplyDifferences", "resyncChangesUploadDifferences"] {
            let body = format!(r#"{{"error":{{"code":"{code}","message":"Resync required."}}}}"#);
            let with_link = GraphError::ResyncRequired { restart: Some(DeltaLink::new(restart)) };
            check(410, &[("location", restart)], &body, with_link);
            check(410, &[], &body, GraphError::ResyncRequired { restart: None });
            // By code on another 4xx too, as Exchange's codes are.
            check(400, &[], &body, GraphError::ResyncRequired { restart: None });
        }
    }

    #[test]
    fn client_and_server_errors_map_to_their_variants() {
        let body = r#"{"error":{"code":"itemNotFound","message":"The resource could not be found."}}"#;
        check(404, &[], body, GraphError::NotFound);
        let gone = r#"{"error":{"code":"MailboxNotEnabledForRESTAPI","message":"The mailbox is either inactive, soft-deleted, or is hosted on-premise."}}"#;
        check(404, &[], gone, GraphError::MailboxUnavailable { code: "MailboxNotEnabledForRESTAPI".into() });
        let denied = r#"{"error":{"code":"accessDenied","message":"no"}}"#;
        check(403, &[], denied, GraphError::Forbidden { code: "accessDenied".into() });
        let expired = r#"{"error":{"code":"InvalidAuthenticationToken"}}"#;
        let code = "InvalidAuthenticationToken".to_owned();
        check(401, &[], expired, GraphError::Unauthorized { code });
        check(502, &[], "", GraphError::transient("HTTP 502 (unknown)"));
        let bad = r#"{"error":{"code":"invalidRequest","message":"Bad expiration"}}"#;
        let http = GraphError::Http { status: 400, code: "invalidRequest".into(), message: "Bad expiration".into() };
        check(400, &[], bad, http);
    }

    #[test]
    fn write_side_failures_are_typed_and_not_retryable() {
        let taken = r#"{"error":{"code":"nameAlreadyExists","message":"Name already exists"}}"#;
        let conflict = GraphError::Conflict { code: "nameAlreadyExists".into() };
        check(409, &[], taken, conflict.clone());
        check(412, &[], "", GraphError::PreconditionFailed);
        check(413, &[], "", GraphError::PayloadTooLarge);
        check(416, &[], "", GraphError::RangeNotSatisfiable);
        check(507, &[], r#"{"error":{"code":"quotaLimitReached"}}"#, GraphError::InsufficientStorage);
        assert!(conflict.is_conflict());
        for err in [
            conflict,
            GraphError::PreconditionFailed,
            GraphError::PayloadTooLarge,
            GraphError::RangeNotSatisfiable,
            GraphError::UploadSessionGone,
            GraphError::InsufficientStorage,
        ] {
            assert!(!err.is_retryable(), "{err:?}");
        }
    }

    #[test]
    fn redacted_urls_keep_no_token() {
        let check = |url: &str, expected: &str| {
            assert_eq!(redact_url(&Url::parse(url).unwrap()), expected);
        };
        check("https://g.example/v1.0/drives/d/root/delta?token=secret", "https://g.example/v1.0/drives/d/root/delta");
        check(
            "https://g.example/v1.0/drives/d/root/delta(token='secret')",
            "https://g.example/v1.0/drives/d/root/delta",
        );
    }

    #[test]
    fn debug_of_a_resync_error_hides_the_link() {
        let err = GraphError::ResyncRequired { restart: Some(DeltaLink::new("https://g.example/delta?token=secret")) };
        assert!(!format!("{err:?} {err}").contains("secret"));
    }
}
