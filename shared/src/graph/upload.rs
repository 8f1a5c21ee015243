//! Upload sessions: large files sent in fragments, resumable after a failure.
//!
//! The `uploadUrl` of a session is pre-authenticated: it gets no Authorization header
//! (sending one can earn a 401), is never logged, and [`UploadUrl`]'s `Debug` hides it.
//!
//! Errors on the URL, for callers driving a session themselves:
//! - [`GraphError::RangeNotSatisfiable`] (416): that range was already received; ask
//!   [`GraphClient::upload_session_status`] and resume from its `next_expected`;
//! - [`GraphError::UploadSessionGone`] (404, a variant of its own rather than `NotFound`:
//!   the session expired, was cancelled or completed, while the target may well exist):
//!   create a new session and start over; the status call reports it as `Ok(None)`;
//! - [`GraphError::Transient`] (cut connection, 5xx): fragments are never resent blindly;
//!   ask the status and resume.
//!
//! A session opened with [`SessionOptions::defer_commit`] shows nothing in the drive after
//! its last byte: the caller checks what it sent, then [`GraphClient::commit_upload`]s it or
//! [`GraphClient::cancel_upload`]s it (graph-facts §6.4, §6.5).

use std::fmt;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

use super::client::{Call, GraphClient, read_json};
use super::drive::{DriveItem, RawItem, parse_time};
use super::error::GraphError;
use super::write::{ConflictBehavior, UploadTarget, upload_timeout};
use crate::backoff::Backoff;

/// Every fragment but the last must be a multiple of 320 KiB.
pub const UPLOAD_FRAGMENT_UNIT: usize = 327_680;
/// 3.2 MiB: within Graph's advice (5–10 MiB) while keeping a Lambda's memory small.
pub const DEFAULT_FRAGMENT_SIZE: usize = 10 * UPLOAD_FRAGMENT_UNIT;
/// Graph refuses requests of 60 MiB (192 units) or more.
const MAX_FRAGMENT_UNITS: usize = 191;
/// New sessions [`GraphClient::upload_large`] opens after the first one is gone.
const MAX_SESSION_RESTARTS: u32 = 3;

/// A session's pre-authenticated upload URL. Whoever holds it can write the file, so it is
/// never printed: `Debug` shows `<upload url>` and there is no `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UploadUrl(String);

impl UploadUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn to_url(&self) -> Result<Url, GraphError> {
        let url = Url::parse(&self.0).map_err(|_| GraphError::protocol("malformed upload URL"))?;
        match url.scheme() {
            "https" | "http" => Ok(url),
            _ => Err(GraphError::protocol("upload URL is not HTTP(S)")),
        }
    }
}

impl fmt::Debug for UploadUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<upload url>")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    pub upload_url: UploadUrl,
    pub expires: Option<DateTime<Utc>>,
    /// Byte ranges still missing, `(start, inclusive end)`; `None` = to the end of the file.
    /// Graph's list is not always complete: resume from the first start.
    pub next_expected: Vec<(u64, Option<u64>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one per request, never stored in bulk
pub enum FragmentResult {
    /// 202: more bytes expected.
    Accepted { next_expected: Vec<(u64, Option<u64>)> },
    /// 200/201: that was the last fragment; the file as committed.
    Completed(DriveItem),
}

/// What a session is opened with besides its target, size and conflict behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionOptions {
    /// After the last byte nothing is visible until [`GraphClient::commit_upload`] (or the
    /// session expires): the caller can check the bytes before they become the file.
    pub defer_commit: bool,
    /// `fileSystemInfo.createdDateTime`: the file keeps it instead of "now".
    pub created: Option<DateTime<Utc>>,
    /// `fileSystemInfo.lastModifiedDateTime`: the file keeps it instead of "now".
    pub modified: Option<DateTime<Utc>>,
}

impl SessionOptions {
    fn apply(&self, body: &mut serde_json::Value) {
        let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut dates = serde_json::Map::new();
        if let Some(t) = self.created {
            dates.insert("createdDateTime".into(), json!(stamp(t)));
        }
        if let Some(t) = self.modified {
            dates.insert("lastModifiedDateTime".into(), json!(stamp(t)));
        }
        if !dates.is_empty() {
            body["item"]["fileSystemInfo"] = serde_json::Value::Object(dates);
        }
        if self.defer_commit {
            body["deferCommit"] = json!(true);
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSession {
    upload_url: Option<String>,
    expiration_date_time: Option<String>,
    #[serde(default)]
    next_expected_ranges: Vec<String>,
}

impl GraphClient {
    /// Opens an upload session for `size` bytes. Nothing is visible in the drive until the
    /// last byte arrives, so this call is retried freely (an unused session just expires).
    /// A size over the quota is [`GraphError::InsufficientStorage`].
    pub async fn create_upload_session(
        &self,
        drive_id: &str,
        target: UploadTarget<'_>,
        size: u64,
        conflict: ConflictBehavior,
    ) -> Result<UploadSession, GraphError> {
        self.open_upload_session(drive_id, target, size, conflict, &SessionOptions::default()).await
    }

    /// [`Self::create_upload_session`] with a deferred commit and/or the file's own dates.
    pub async fn open_upload_session(
        &self,
        drive_id: &str,
        target: UploadTarget<'_>,
        size: u64,
        conflict: ConflictBehavior,
        options: &SessionOptions,
    ) -> Result<UploadSession, GraphError> {
        let item = match target {
            // A new version of the item addressed by id: no name can conflict.
            UploadTarget::Existing { .. } => json!({
                "@microsoft.graph.conflictBehavior": ConflictBehavior::Replace.as_str(),
                "fileSize": size,
            }),
            UploadTarget::New { name, .. } => json!({
                "@microsoft.graph.conflictBehavior": conflict.as_str(),
                "name": name,
                "fileSize": size,
            }),
        };
        let mut body = json!({ "item": item });
        options.apply(&mut body);
        let url = self.target_url(drive_id, target, "createUploadSession");
        let raw: RawSession = self.execute(&Call::with_json(Method::POST, url, &body), read_json).await?;
        let upload_url = UploadUrl::new(raw.upload_url.clone().ok_or_else(|| GraphError::protocol("no uploadUrl"))?);
        upload_url.to_url()?;
        session(upload_url, raw)
    }

    /// Where the session stands; `None` when it is gone (expired, cancelled or completed):
    /// start over with a new session.
    pub async fn upload_session_status(&self, url: &UploadUrl) -> Result<Option<UploadSession>, GraphError> {
        let call = Call { bearer: false, ..Call::get(url.to_url()?) };
        match self.execute(&call, read_json::<RawSession>).await {
            Ok(raw) => session(url.clone(), raw).map(Some),
            Err(GraphError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Commits a `deferCommit` session whose bytes have all arrived: `POST {uploadUrl}` with
    /// an empty body and no Authorization header; the file as committed. The session is
    /// [`GraphError::UploadSessionGone`] once committed, expired or cancelled; a taken name
    /// with `Fail` is [`GraphError::Conflict`]. Sent once: after a lost answer, look at the
    /// target before committing again.
    pub async fn commit_upload(&self, url: &UploadUrl, drive_id: &str) -> Result<DriveItem, GraphError> {
        let mut call = Call { method: Method::POST, bearer: false, idempotent: false, ..Call::get(url.to_url()?) };
        call.headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        call.body = Some(Bytes::new());
        match self.execute(&call, read_json::<RawItem>).await {
            Ok(raw) => raw.into_item(Some(drive_id)),
            Err(GraphError::NotFound) => Err(GraphError::UploadSessionGone),
            Err(e) => Err(e),
        }
    }

    /// Cancels a session (`DELETE {uploadUrl}`): none of its bytes ever become visible. A
    /// session already gone is fine.
    pub async fn cancel_upload(&self, url: &UploadUrl) -> Result<(), GraphError> {
        let call = Call { method: Method::DELETE, bearer: false, ..Call::get(url.to_url()?) };
        match self.execute(&call, read_status_and_body).await {
            Ok(_) | Err(GraphError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends `body` as bytes `[start, start + len)` of a `total`-byte file. Every fragment
    /// but the last must be a multiple of [`UPLOAD_FRAGMENT_UNIT`], and under 60 MiB. See
    /// the module documentation for the errors and what to do about them. The completed
    /// item's drive comes from its `parentReference`.
    pub async fn upload_fragment(
        &self,
        url: &UploadUrl,
        start: u64,
        total: u64,
        body: Bytes,
    ) -> Result<FragmentResult, GraphError> {
        self.send_fragment(url, start, total, body, None).await
    }

    /// Uploads a `size`-byte file through a session, reading one fragment at a time from
    /// `source(offset, len)`, which returns exactly bytes `[offset, offset + len)`.
    /// `fragment_size` is rounded down to a multiple of 320 KiB, between 320 KiB and just
    /// under 60 MiB ([`DEFAULT_FRAGMENT_SIZE`] is a good default). An empty file goes as a
    /// simple upload.
    ///
    /// After a cut connection, a 5xx or a 416, the session's status says where to resume
    /// (up to `max_retries` times without progress). When the session is gone, a new one
    /// starts over, at most 3 times, then [`GraphError::UploadSessionGone`]. A throttling
    /// wait longer than the client's inline limit comes back as `Throttled`: the progress
    /// is lost; the caller pauses and calls again. If the last fragment's answer is lost
    /// and the session is gone, the file may exist already: for a new name with `Rename`
    /// or `Fail` that is `Transient` (look at the folder before uploading again), otherwise
    /// the upload starts over.
    pub async fn upload_large<'s, F>(
        &self,
        drive_id: &str,
        target: UploadTarget<'_>,
        size: u64,
        conflict: ConflictBehavior,
        fragment_size: usize,
        mut source: F,
    ) -> Result<DriveItem, GraphError>
    where
        F: FnMut(u64, usize) -> BoxFuture<'s, Result<Bytes, GraphError>>,
    {
        if size == 0 {
            return self.upload_small(drive_id, target, Bytes::new(), conflict).await;
        }
        let fragment = fragment_len(fragment_size);
        let idempotent = target.is_idempotent(conflict);
        let mut restarts = 0;
        loop {
            let session = self.create_upload_session(drive_id, target, size, conflict).await?;
            match self.run_session(&session, drive_id, size, fragment, idempotent, &mut source).await? {
                Some(item) => return Ok(item),
                None if restarts < MAX_SESSION_RESTARTS => {
                    restarts += 1;
                    tracing::debug!(container = drive_id, size, restarts, "upload session gone, starting over");
                }
                None => return Err(GraphError::UploadSessionGone),
            }
        }
    }

    /// Sends fragments until the file is complete (`Some`) or the session is gone (`None`).
    async fn run_session<'s, F>(
        &self,
        session: &UploadSession,
        drive_id: &str,
        size: u64,
        fragment: usize,
        idempotent: bool,
        source: &mut F,
    ) -> Result<Option<DriveItem>, GraphError>
    where
        F: FnMut(u64, usize) -> BoxFuture<'s, Result<Bytes, GraphError>>,
    {
        let url = &session.upload_url;
        let max_stalls = self.config().max_retries;
        let mut next = resume_point(&session.next_expected, size)?;
        // Attempts since the last one that moved `next` forward.
        let mut stalls = 0;
        loop {
            let len = (size - next).min(fragment as u64) as usize;
            let body = source(next, len).await?;
            if body.len() != len {
                return Err(GraphError::protocol(format!(
                    "source gave {} bytes for a {len}-byte fragment",
                    body.len()
                )));
            }
            let last = next + len as u64 == size;
            let (err, resumed) = match self.send_fragment(url, next, size, body, Some(drive_id)).await {
                Ok(FragmentResult::Completed(item)) => return Ok(Some(item)),
                Ok(FragmentResult::Accepted { next_expected }) => {
                    let at = resume_point(&next_expected, size)?;
                    (GraphError::protocol("upload session does not move forward"), at)
                }
                Err(GraphError::UploadSessionGone) => return Ok(None),
                Err(err @ (GraphError::Transient { .. } | GraphError::RangeNotSatisfiable)) => {
                    if stalls < max_stalls && matches!(err, GraphError::Transient { .. }) {
                        Backoff::GRAPH.sleep(stalls).await;
                    }
                    match self.upload_session_status(url).await? {
                        Some(status) => (err, resume_point(&status.next_expected, size)?),
                        None if last && !idempotent => {
                            return Err(GraphError::transient(
                                "upload session ended while its last fragment was unanswered: the file may \
                                 exist already; look before uploading it again",
                            ));
                        }
                        None => return Ok(None),
                    }
                }
                Err(e) => return Err(e),
            };
            if resumed > next {
                stalls = 0;
            } else if stalls < max_stalls {
                stalls += 1;
                tracing::debug!(container = drive_id, offset = resumed, stalls, error = %err, "resuming upload session");
            } else {
                return Err(err);
            }
            next = resumed;
        }
    }

    async fn send_fragment(
        &self,
        url: &UploadUrl,
        start: u64,
        total: u64,
        body: Bytes,
        drive_hint: Option<&str>,
    ) -> Result<FragmentResult, GraphError> {
        let len = body.len() as u64;
        if len == 0 || start.saturating_add(len) > total {
            return Err(GraphError::protocol(format!(
                "fragment of {len} bytes at {start} outside a {total}-byte file"
            )));
        }
        let range = format!("bytes {start}-{}/{total}", start + len - 1);
        let mut call = Call {
            method: Method::PUT,
            bearer: false,
            // The session's status says what arrived: the caller asks it instead.
            idempotent: false,
            content: true,
            timeout: Some(upload_timeout(body.len())),
            ..Call::get(url.to_url()?)
        };
        call.headers.insert(CONTENT_RANGE, HeaderValue::from_str(&range).map_err(|_| GraphError::protocol("range"))?);
        call.body = Some(body);
        let (status, body) = match self.execute(&call, read_status_and_body).await {
            Ok(answer) => answer,
            Err(GraphError::NotFound) => return Err(GraphError::UploadSessionGone),
            Err(e) => return Err(e),
        };
        let decode = |what| move |e: serde_json::Error| GraphError::protocol(format!("decoding {what}: {e}"));
        match status {
            StatusCode::ACCEPTED => {
                let raw: RawSession = serde_json::from_slice(&body).map_err(decode("upload status"))?;
                Ok(FragmentResult::Accepted { next_expected: parse_ranges(&raw.next_expected_ranges)? })
            }
            StatusCode::OK | StatusCode::CREATED => {
                let raw: RawItem = serde_json::from_slice(&body).map_err(decode("uploaded item"))?;
                raw.into_item(drive_hint).map(FragmentResult::Completed)
            }
            other => Err(GraphError::protocol(format!("upload fragment answered {other}"))),
        }
    }
}

async fn read_status_and_body(resp: Response) -> Result<(StatusCode, Bytes), GraphError> {
    let status = resp.status();
    let body = resp.bytes().await.map_err(GraphError::from_transport)?;
    Ok((status, body))
}

fn session(upload_url: UploadUrl, raw: RawSession) -> Result<UploadSession, GraphError> {
    Ok(UploadSession {
        upload_url,
        expires: raw.expiration_date_time.as_deref().and_then(parse_time),
        next_expected: parse_ranges(&raw.next_expected_ranges)?,
    })
}

/// `["0-"]`, `["26-", "100-199"]` -> `(start, inclusive end)` pairs.
fn parse_ranges(ranges: &[String]) -> Result<Vec<(u64, Option<u64>)>, GraphError> {
    let parse = |range: &str| -> Option<(u64, Option<u64>)> {
        let (start, end) = range.trim().split_once('-')?;
        let end = if end.is_empty() { None } else { Some(end.parse().ok()?) };
        Some((start.parse().ok()?, end))
    };
    ranges.iter().map(|r| parse(r).ok_or_else(|| GraphError::protocol("malformed nextExpectedRanges"))).collect()
}

/// Fragments go in order: resume from the lowest missing byte.
fn resume_point(ranges: &[(u64, Option<u64>)], size: u64) -> Result<u64, GraphError> {
    match ranges.iter().map(|(start, _)| *start).min() {
        Some(start) if start < size => Ok(start),
        Some(_) => Err(GraphError::protocol("upload session expects bytes past the end of the file")),
        None => Err(GraphError::protocol("upload session expects no more bytes but is not complete")),
    }
}

/// Rounded down to whole 320 KiB units, at least one, under 60 MiB.
fn fragment_len(requested: usize) -> usize {
    (requested / UPLOAD_FRAGMENT_UNIT).clamp(1, MAX_FRAGMENT_UNITS) * UPLOAD_FRAGMENT_UNIT
}

#[cfg(test)]
#[path = "upload_tests.rs"]
mod tests;
