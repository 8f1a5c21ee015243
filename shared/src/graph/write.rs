//! The restorer's side of drives: folders, renames and moves, simple uploads, and the
//! listings a restore plans against (root, children, versions). Upload sessions for large
//! files are in `upload.rs`.
//!
//! A write is retried automatically only when sending it twice leaves the drive as sending
//! it once: a PUT to an item id, a PUT or folder create by name with `replace`, a PATCH.
//! A create by name with `rename` (a resend could add "name 1") or `fail` (a resend would
//! report a false 409 against our own first copy) is sent once: if it may have reached
//! Graph (connection cut after sending, 5xx), the caller gets `Transient` and should look at
//! the folder before trying again. Throttling follows the client's usual policy everywhere:
//! a throttled request was not carried out.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

use super::client::{Call, GraphClient, read_json};
use super::drive::{DriveItem, RawItem, parse_time};
use super::error::GraphError;

/// Everything but RFC 3986 unreserved characters is escaped in a path-addressed name,
/// `:` included: Graph reads `items/{parent}:/{name}:/` up to the next colon.
const NAME_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Overall time allowed for an upload request before its body is counted.
const UPLOAD_BASE_TIMEOUT: Duration = Duration::from_secs(30);
/// Slowest upload rate tolerated before a request counts as stalled.
const UPLOAD_MIN_BYTES_PER_SEC: u64 = 256 * 1024;

/// What Graph does when the target folder already holds the name (`fail` is the default for
/// upload sessions and folder creation, `replace` for a simple PUT: always say which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConflictBehavior {
    /// 409 [`GraphError::Conflict`].
    Fail,
    /// The existing file gets the new content as a new version.
    Replace,
    /// Graph picks a free name ("name 1.ext").
    Rename,
}

impl ConflictBehavior {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Replace => "replace",
            Self::Rename => "rename",
        }
    }
}

/// The item an upload writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadTarget<'a> {
    /// A new version of this existing file: same id, name and place. The conflict
    /// behaviour does not apply.
    Existing { item_id: &'a str },
    /// A file called `name` in folder `parent_id`; a taken name is settled by the
    /// upload's [`ConflictBehavior`].
    New { parent_id: &'a str, name: &'a str },
}

impl UploadTarget<'_> {
    /// Sending the same upload twice leaves the drive as sending it once.
    pub(crate) fn is_idempotent(&self, conflict: ConflictBehavior) -> bool {
        matches!(self, Self::Existing { .. }) || conflict == ConflictBehavior::Replace
    }
}

/// One version of a file, as `GET /items/{id}/versions` lists them (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveItemVersion {
    /// e.g. `"3.0"`. The newest one is the item's current content.
    pub id: String,
    pub last_modified: Option<DateTime<Utc>>,
    pub size: Option<u64>,
}

#[derive(Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawVersion {
    id: Option<String>,
    last_modified_date_time: Option<String>,
    size: Option<u64>,
}

impl GraphClient {
    /// Writes `body` as the whole content of `target` in one PUT (small files: Graph
    /// advises upload sessions above 10 MiB). A body over the server's limit is
    /// [`GraphError::PayloadTooLarge`]; a taken name with `Fail` is [`GraphError::Conflict`].
    pub async fn upload_small(
        &self,
        drive_id: &str,
        target: UploadTarget<'_>,
        body: Bytes,
        conflict: ConflictBehavior,
    ) -> Result<DriveItem, GraphError> {
        let mut url = self.target_url(drive_id, target, "content");
        if matches!(target, UploadTarget::New { .. }) {
            // For PUT the annotation belongs in the query string; `@` stays literal.
            url.set_query(Some(&format!("@microsoft.graph.conflictBehavior={}", conflict.as_str())));
        }
        let mut call = Call {
            method: Method::PUT,
            idempotent: target.is_idempotent(conflict),
            content: true,
            timeout: Some(upload_timeout(body.len())),
            ..Call::get(url)
        };
        call.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        call.body = Some(body);
        let raw: RawItem = self.execute(&call, read_json).await?;
        raw.into_item(Some(drive_id))
    }

    /// Renames and/or moves an item (within its drive). A taken name in the destination
    /// is [`GraphError::Conflict`].
    pub async fn patch_item(
        &self,
        drive_id: &str,
        item_id: &str,
        name: Option<&str>,
        parent_id: Option<&str>,
    ) -> Result<DriveItem, GraphError> {
        let mut body = serde_json::Map::new();
        if let Some(name) = name {
            body.insert("name".into(), json!(name));
        }
        if let Some(parent_id) = parent_id {
            body.insert("parentReference".into(), json!({ "id": parent_id }));
        }
        let body = serde_json::Value::Object(body);
        let url = self.endpoint(&["drives", drive_id, "items", item_id]);
        let raw: RawItem = self.execute(&Call::with_json(Method::PATCH, url, &body), read_json).await?;
        raw.into_item(Some(drive_id))
    }

    /// Creates folder `name` under `parent_id`. With `Fail`, a taken name is
    /// [`GraphError::Conflict`] (look the folder up among the parent's children).
    pub async fn create_folder(
        &self,
        drive_id: &str,
        parent_id: &str,
        name: &str,
        conflict: ConflictBehavior,
    ) -> Result<DriveItem, GraphError> {
        let body = json!({
            "name": name,
            "folder": {},
            "@microsoft.graph.conflictBehavior": conflict.as_str(),
        });
        let url = self.endpoint(&["drives", drive_id, "items", parent_id, "children"]);
        let mut call = Call::with_json(Method::POST, url, &body);
        call.idempotent = conflict == ConflictBehavior::Replace;
        let raw: RawItem = self.execute(&call, read_json).await?;
        raw.into_item(Some(drive_id))
    }

    /// The folder's children, all pages followed.
    pub async fn children(&self, drive_id: &str, item_id: &str) -> Result<Vec<DriveItem>, GraphError> {
        let url = self.endpoint(&["drives", drive_id, "items", item_id, "children"]);
        let raw = self.all_pages::<RawItem>(url).await?;
        raw.into_iter().map(|item| item.into_item(Some(drive_id))).collect()
    }

    /// The file's versions, newest first (the first is the current content).
    pub async fn item_versions(&self, drive_id: &str, item_id: &str) -> Result<Vec<DriveItemVersion>, GraphError> {
        let url = self.endpoint(&["drives", drive_id, "items", item_id, "versions"]);
        let raw = self.all_pages::<RawVersion>(url).await?;
        raw.into_iter()
            .map(|v| {
                Ok(DriveItemVersion {
                    id: v.id.ok_or_else(|| GraphError::protocol("item version without id"))?,
                    last_modified: v.last_modified_date_time.as_deref().and_then(parse_time),
                    size: v.size,
                })
            })
            .collect()
    }

    /// The drive's root folder.
    pub async fn root(&self, drive_id: &str) -> Result<DriveItem, GraphError> {
        let raw: RawItem = self.get_json(self.endpoint(&["drives", drive_id, "root"])).await?;
        raw.into_item(Some(drive_id))
    }

    /// `/drives/{d}/items/{id}/{action}`, or `/drives/{d}/items/{parent}:/{name}:/{action}`
    /// with the name percent-encoded.
    pub(crate) fn target_url(&self, drive_id: &str, target: UploadTarget<'_>, action: &str) -> Url {
        match target {
            UploadTarget::Existing { item_id } => self.endpoint(&["drives", drive_id, "items", item_id, action]),
            UploadTarget::New { parent_id, name } => {
                let mut url = self.endpoint(&["drives", drive_id, "items"]);
                let path = format!(
                    "{}/{}:/{}:/{action}",
                    url.path(),
                    utf8_percent_encode(parent_id, NAME_SEGMENT),
                    utf8_percent_encode(name, NAME_SEGMENT),
                );
                url.set_path(&path);
                url
            }
        }
    }

    pub(super) async fn all_pages<T: serde::de::DeserializeOwned>(&self, mut url: Url) -> Result<Vec<T>, GraphError> {
        let mut all = Vec::new();
        loop {
            let page: Page<T> = self.get_json(url).await?;
            all.extend(page.value);
            match page.next_link {
                Some(next) => url = self.graph_link(&next)?,
                None => return Ok(all),
            }
        }
    }
}

/// Long enough for `len` bytes at a poor but working rate; a stalled upload fails instead
/// of holding the function until its own timeout.
pub(crate) fn upload_timeout(len: usize) -> Duration {
    UPLOAD_BASE_TIMEOUT + Duration::from_secs(len as u64 / UPLOAD_MIN_BYTES_PER_SEC)
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
