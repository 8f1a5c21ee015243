//! Drive items: delta pages, single items, and content downloads.

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, HeaderValue, LOCATION, RANGE};
use reqwest::{Response, StatusCode};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use url::Url;

use super::client::{Call, GraphClient};
use super::error::GraphError;

/// A full nextLink or deltaLink URL. It embeds the delta token, so it is never printed:
/// `Debug` shows `<delta link>` and there is no `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeltaLink(String);

impl DeltaLink {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DeltaLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<delta link>")
    }
}

/// Where a delta query starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaCursor {
    /// No token: enumerate the drive's current state from scratch.
    Start { drive_id: String },
    /// `token=latest`: no items, only a delta link for changes from now on.
    Latest { drive_id: String },
    /// A stored nextLink (mid-enumeration) or deltaLink (changes since last time).
    Link(DeltaLink),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaPage {
    pub items: Vec<DriveItem>,
    /// More pages follow: checkpoint this and continue.
    pub next: Option<DeltaLink>,
    /// Last page: store this for the next round.
    pub delta: Option<DeltaLink>,
    /// Items of this page whose JSON could not be used (not in `items`); the rest of the
    /// page is fine.
    pub unusable: Vec<UnusableItem>,
}

/// A delta item whose JSON is malformed or unusable (a field of the wrong type, no id...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusableItem {
    /// The item's id, when the raw JSON has one.
    pub id: Option<String>,
    /// What was wrong, naming the field; never the JSON itself.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ItemKind {
    File,
    Folder,
    /// A folder-like bundle that behaves as one unit (e.g. a OneNote notebook).
    Package,
    /// The drive's root folder.
    Root,
}

/// A drive item as delta or `GET /items/{id}` reports it. A deleted item carries only its
/// id, parent and the `deleted` flag (no name, no cTag on OneDrive for Business).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveItem {
    pub id: String,
    pub drive_id: String,
    pub name: Option<String>,
    pub kind: ItemKind,
    pub size: Option<u64>,
    /// Changes with metadata or content.
    pub etag: Option<String>,
    /// Changes with content only; absent on folders (ODfB) and in many delta items.
    pub ctag: Option<String>,
    pub created: Option<DateTime<Utc>>,
    pub last_modified: Option<DateTime<Utc>>,
    pub parent_id: Option<String>,
    pub quick_xor_hash: Option<String>,
    pub mime_type: Option<String>,
    pub deleted: bool,
}

/// The bytes of a download as they arrive.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, GraphError>> + Send>>;

/// Content of one item from `offset` on.
pub struct Download {
    /// The whole item's size, from `Content-Range` or `Content-Length`.
    pub total_len: Option<u64>,
    pub offset: u64,
    /// The bytes from `offset` on. A reset or truncated body ends with
    /// `GraphError::Transient`; the caller counts bytes against `total_len` and resumes from
    /// where it got.
    pub stream: ByteStream,
}

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("total_len", &self.total_len)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// One page of a drive's delta feed. A dead token yields [`GraphError::ResyncRequired`].
    pub async fn delta(&self, from: &DeltaCursor) -> Result<DeltaPage, GraphError> {
        let (url, drive_hint) = match from {
            DeltaCursor::Start { drive_id } => (self.delta_url(drive_id), Some(drive_id.clone())),
            DeltaCursor::Latest { drive_id } => {
                let mut url = self.delta_url(drive_id);
                url.query_pairs_mut().append_pair("token", "latest");
                (url, Some(drive_id.clone()))
            }
            DeltaCursor::Link(link) => {
                let url = self.graph_link(link.as_str())?;
                let hint = drive_id_in_path(&url);
                (url, hint)
            }
        };
        let raw: RawDeltaPage = self.get_json(url).await?;
        raw.into_page(drive_hint.as_deref())
    }

    /// The item's current state, or `None` if it no longer exists.
    pub async fn get_item(&self, drive_id: &str, item_id: &str) -> Result<Option<DriveItem>, GraphError> {
        let url = self.endpoint(&["drives", drive_id, "items", item_id]);
        match self.get_json::<RawItem>(url).await {
            Ok(raw) => raw.into_item(Some(drive_id)).map(Some),
            Err(GraphError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Streams the item's current content from `offset`. Graph answers `/content` with a
    /// 302 to a pre-authenticated URL, fetched without our token. If that URL is refused
    /// (expired), a fresh one is asked for once. A download URL may ignore `Range` and
    /// answer `200` with the whole body: its first `offset` bytes are then dropped as they
    /// stream by, and a body shorter than `offset` (the content changed since) is
    /// `Transient`: start over.
    pub async fn download(&self, drive_id: &str, item_id: &str, offset: u64) -> Result<Download, GraphError> {
        let content_url = self.endpoint(&["drives", drive_id, "items", item_id, "content"]);
        let mut fresh_url_tries = 2;
        loop {
            fresh_url_tries -= 1;
            let mut call = Call::get(content_url.clone());
            call.content = true;
            let resp = self.execute(&call, |r| async { Ok(r) }).await?;
            let target = match resp.status() {
                s if s.is_redirection() => redirect_target(&resp)?,
                // Served directly, without a redirect (and so without our Range).
                StatusCode::OK => return whole_from(resp, offset),
                s => return Err(GraphError::protocol(format!("/content answered {s}"))),
            };
            let mut call = Call::get(target);
            call.bearer = false;
            call.content = true;
            if offset > 0 {
                let range = HeaderValue::from_str(&format!("bytes={offset}-"))
                    .map_err(|_| GraphError::protocol("range header"))?;
                call.headers.insert(RANGE, range);
            }
            match self.execute(&call, |r| async { Ok(r) }).await {
                Ok(resp) => return ranged(resp, offset),
                Err(GraphError::NotFound | GraphError::Forbidden { .. } | GraphError::Unauthorized { .. })
                    if fresh_url_tries > 0 =>
                {
                    tracing::debug!(item = item_id, "download URL refused, asking for a fresh one");
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn delta_url(&self, drive_id: &str) -> Url {
        self.endpoint(&["drives", drive_id, "root", "delta"])
    }
}

fn redirect_target(resp: &Response) -> Result<Url, GraphError> {
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| GraphError::protocol("redirect from /content without Location"))?;
    let url = resp.url().join(location).map_err(|_| GraphError::protocol("malformed download Location"))?;
    match url.scheme() {
        "https" | "http" => Ok(url),
        _ => Err(GraphError::protocol("download Location is not HTTP(S)")),
    }
}

fn ranged(resp: Response, offset: u64) -> Result<Download, GraphError> {
    match resp.status() {
        StatusCode::OK => whole_from(resp, offset),
        StatusCode::PARTIAL_CONTENT => {
            let (start, total) = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range)
                .ok_or_else(|| GraphError::protocol("206 without a valid Content-Range"))?;
            if start != offset {
                return Err(GraphError::protocol(format!("asked for bytes from {offset}, got from {start}")));
            }
            Ok(Download { total_len: total, offset, stream: body(resp) })
        }
        s => Err(GraphError::protocol(format!("download answered {s}"))),
    }
}

/// A `200` carries the whole body, whatever `Range` asked for: from `offset` on once the
/// bytes before it have streamed by.
fn whole_from(resp: Response, offset: u64) -> Result<Download, GraphError> {
    let total_len = resp.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    if total_len.is_some_and(|total: u64| total < offset) {
        return Err(shorter_than_offset());
    }
    let stream = if offset == 0 { body(resp) } else { skip_prefix(body(resp), offset) };
    Ok(Download { total_len, offset, stream })
}

fn shorter_than_offset() -> GraphError {
    GraphError::transient("the whole body is shorter than the resume offset (the content changed); start over")
}

/// Drops the first `skip` bytes of `inner`, chunk by chunk, and passes the rest through
/// as it arrives (nothing is buffered). A body that ends before `skip` ends with
/// `Transient`, so it is never taken for a complete one.
pub(crate) fn skip_prefix(inner: ByteStream, skip: u64) -> ByteStream {
    Box::pin(futures::stream::unfold(Some((inner, skip)), |state| async move {
        let (mut inner, mut skip) = state?;
        loop {
            match inner.next().await {
                Some(Ok(mut chunk)) if skip > 0 => {
                    let len = chunk.len() as u64;
                    if len <= skip {
                        skip -= len;
                        continue;
                    }
                    // `skip < len`, a chunk's length: it fits in usize.
                    let rest = chunk.split_off(skip as usize);
                    return Some((Ok(rest), Some((inner, 0))));
                }
                Some(item) => return Some((item, Some((inner, skip)))),
                None if skip > 0 => return Some((Err(shorter_than_offset()), None)),
                None => return None,
            }
        }
    }))
}

fn body(resp: Response) -> ByteStream {
    Box::pin(resp.bytes_stream().map(|r| r.map_err(GraphError::from_transport)))
}

/// `bytes 100-199/2048` -> (100, Some(2048)); `bytes 100-199/*` -> (100, None).
pub(crate) fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = match total {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start.parse().ok()?, total))
}

/// `/drives/{id}/...` in a link; items whose JSON lacks `parentReference.driveId` use it.
fn drive_id_in_path(url: &Url) -> Option<String> {
    let mut segs = url.path_segments()?;
    segs.find(|s| *s == "drives")?;
    let id = segs.next()?;
    percent_encoding::percent_decode_str(id).decode_utf8().ok().map(|s| s.into_owned())
}

#[derive(Deserialize)]
struct RawDeltaPage {
    /// Parsed one by one, so that one unusable item does not fail the page.
    #[serde(default)]
    value: Vec<serde_json::Value>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    delta_link: Option<String>,
}

impl RawDeltaPage {
    fn into_page(self, drive_hint: Option<&str>) -> Result<DeltaPage, GraphError> {
        let mut items = Vec::with_capacity(self.value.len());
        let mut unusable = Vec::new();
        for raw in &self.value {
            match delta_item(raw, drive_hint) {
                Ok(item) => items.push(item),
                Err(bad) => unusable.push(bad),
            }
        }
        Ok(DeltaPage { items, next: self.next_link.map(DeltaLink), delta: self.delta_link.map(DeltaLink), unusable })
    }
}

fn delta_item(raw: &serde_json::Value, drive_hint: Option<&str>) -> Result<DriveItem, UnusableItem> {
    let unusable = |reason| UnusableItem { id: raw.get("id").and_then(|id| id.as_str()).map(str::to_owned), reason };
    let item: RawItem = serde_path_to_error::deserialize(raw).map_err(|e| unusable(unusable_reason(raw, &e)))?;
    item.into_item(drive_hint).map_err(|e| {
        unusable(match e {
            GraphError::Protocol { message } => message,
            other => other.to_string(),
        })
    })
}

/// "`size` is a string, expected u64": the field and the kinds involved, never the value
/// (names and ids are the tenant's data).
fn unusable_reason(raw: &serde_json::Value, err: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let mut at = Some(raw);
    let mut fields = Vec::new();
    for segment in err.path().iter() {
        use serde_path_to_error::Segment;
        match segment {
            Segment::Map { key } => {
                at = at.and_then(|v| v.get(key));
                fields.push(key.clone());
            }
            Segment::Seq { index } => {
                at = at.and_then(|v| v.get(index));
                fields.push(index.to_string());
            }
            Segment::Enum { .. } | Segment::Unknown => at = None,
        }
    }
    let message = err.inner().to_string();
    let expected = message
        .split_once(", expected ")
        .map(|(_, e)| e.split(" at line ").next().unwrap_or(e))
        .map(|e| if e.starts_with("struct ") { "an object" } else { e });
    let subject = if fields.is_empty() { "the item".to_owned() } else { format!("`{}`", fields.join(".")) };
    match (at.map(json_kind), expected) {
        (Some(kind), Some(expected)) => format!("{subject} is {kind}, expected {expected}"),
        (Some(kind), None) => format!("{subject} is {kind}, which is unusable"),
        (None, _) => format!("{subject} is unusable"),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(n) if n.as_i64().is_some_and(|i| i < 0) => "a negative number",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The Graph JSON shape, as loose as possible: every field may be missing.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawItem {
    id: Option<String>,
    name: Option<String>,
    size: Option<u64>,
    #[serde(rename = "eTag")]
    etag: Option<String>,
    #[serde(rename = "cTag")]
    ctag: Option<String>,
    created_date_time: Option<String>,
    last_modified_date_time: Option<String>,
    parent_reference: Option<RawParent>,
    file: Option<RawFile>,
    folder: Option<IgnoredAny>,
    package: Option<IgnoredAny>,
    root: Option<IgnoredAny>,
    deleted: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawParent {
    id: Option<String>,
    drive_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFile {
    mime_type: Option<String>,
    hashes: Option<RawHashes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHashes {
    quick_xor_hash: Option<String>,
}

impl RawItem {
    /// `drive_hint` is the drive the request was about, used when the item omits its own.
    pub(crate) fn into_item(self, drive_hint: Option<&str>) -> Result<DriveItem, GraphError> {
        let id = self.id.ok_or_else(|| GraphError::protocol("drive item without id"))?;
        let (parent_id, parent_drive) = self.parent_reference.map_or((None, None), |p| (p.id, p.drive_id));
        let drive_id = parent_drive
            .or_else(|| drive_hint.map(str::to_owned))
            .ok_or_else(|| GraphError::protocol("drive item without a drive id"))?;
        let kind = if self.root.is_some() {
            ItemKind::Root
        } else if self.package.is_some() {
            ItemKind::Package
        } else if self.folder.is_some() {
            ItemKind::Folder
        } else {
            ItemKind::File
        };
        let (mime_type, quick_xor_hash) =
            self.file.map_or((None, None), |f| (f.mime_type, f.hashes.and_then(|h| h.quick_xor_hash)));
        Ok(DriveItem {
            id,
            drive_id,
            name: self.name,
            kind,
            size: self.size,
            etag: self.etag,
            ctag: self.ctag,
            created: self.created_date_time.as_deref().and_then(parse_time),
            last_modified: self.last_modified_date_time.as_deref().and_then(parse_time),
            parent_id,
            quick_xor_hash,
            mime_type,
            deleted: self.deleted.is_some(),
        })
    }
}

/// A malformed timestamp is dropped rather than failing the whole page.
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
#[path = "drive_tests.rs"]
mod tests;
