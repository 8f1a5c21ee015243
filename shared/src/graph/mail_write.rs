//! The restorer's side of mailboxes: folders, messages (JSON create: see `mime::rebuild`),
//! attachments (inline up to 3 MB, upload sessions above), and the listing a re-run restore
//! checks against (a folder's internet message ids).
//!
//! A create is sent once: a resend after a cut connection could make a second message or
//! folder. When it may have reached Graph the caller gets `Transient` and looks before trying
//! again (a folder by name among its parent's children, a message by its internet message id).

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_RANGE, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{Call, GraphClient, read_json, read_nothing};
use super::error::GraphError;
use super::mail::{MailFolder, Message, RawFolder, RawMessage, prefer_immutable_ids};
use super::upload::UploadUrl;

/// Outlook takes attachment upload fragments of at most 4 MB; this stays under it.
pub const ATTACHMENT_FRAGMENT: usize = 3 * 1024 * 1024;
/// Attachment upload sessions begun again after one was lost, before giving up.
const ATTACHMENT_SESSION_RESTARTS: u32 = 2;

/// A message already in a folder, as a re-run restore needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderMessage {
    pub id: String,
    pub internet_message_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawListed {
    id: Option<String>,
    internet_message_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAttachmentSession {
    upload_url: Option<String>,
}

impl GraphClient {
    /// Creates folder `name` under `parent` (a folder id or well-known name; `None`: the
    /// mailbox's top level). A taken name is [`GraphError::Conflict`] (`ErrorFolderExists`).
    pub async fn create_mail_folder(
        &self,
        user_id: &str,
        parent: Option<&str>,
        name: &str,
    ) -> Result<MailFolder, GraphError> {
        let url = match parent {
            Some(p) => self.endpoint(&["users", user_id, "mailFolders", p, "childFolders"]),
            None => self.endpoint(&["users", user_id, "mailFolders"]),
        };
        let body = json!({"displayName": name, "isHidden": false});
        let mut call = Call::with_json(Method::POST, url, &body);
        call.idempotent = false;
        prefer_immutable_ids(&mut call);
        let raw: RawFolder = self.execute(&call, read_json).await?;
        raw.into_folder()
    }

    /// Creates a message in `folder` from a JSON create body (`mime::rebuild`). A body over
    /// Graph's request limit is [`GraphError::PayloadTooLarge`]: send big attachments after.
    pub async fn create_message(&self, user_id: &str, folder: &str, body: &Value) -> Result<Message, GraphError> {
        let url = self.endpoint(&["users", user_id, "mailFolders", folder, "messages"]);
        let mut call = Call::with_json(Method::POST, url, body);
        call.idempotent = false;
        prefer_immutable_ids(&mut call);
        let raw: RawMessage = self.execute(&call, read_json).await?;
        raw.into_message()
    }

    /// Adds a small attachment (a `fileAttachment` under 3 MB) to a message.
    pub async fn add_attachment(&self, user_id: &str, message_id: &str, attachment: &Value) -> Result<(), GraphError> {
        let url = self.endpoint(&["users", user_id, "messages", message_id, "attachments"]);
        let mut call = Call::with_json(Method::POST, url, attachment);
        call.idempotent = false;
        prefer_immutable_ids(&mut call);
        self.execute(&call, read_nothing).await
    }

    /// Adds an attachment of any size through an attachment upload session, in fragments of
    /// [`ATTACHMENT_FRAGMENT`]. `item` is the session's `AttachmentItem` (name, content type,
    /// inline, content id); its size is set from `bytes`. Nothing shows on the message until
    /// the last fragment lands, so a lost session is begun again.
    pub async fn upload_attachment(
        &self,
        user_id: &str,
        message_id: &str,
        item: &Value,
        bytes: Bytes,
    ) -> Result<(), GraphError> {
        let mut item = item.clone();
        item["attachmentType"] = "file".into();
        item["size"] = bytes.len().into();
        let body = json!({"AttachmentItem": item});
        let url = self.endpoint(&["users", user_id, "messages", message_id, "attachments", "createUploadSession"]);
        let mut restarts = 0;
        loop {
            let raw: RawAttachmentSession =
                self.execute(&Call::with_json(Method::POST, url.clone(), &body), read_json).await?;
            let upload = UploadUrl::new(raw.upload_url.ok_or_else(|| GraphError::protocol("no uploadUrl"))?);
            match self.send_attachment(&upload, &bytes).await {
                Err(GraphError::UploadSessionGone | GraphError::RangeNotSatisfiable | GraphError::Transient { .. })
                    if restarts < ATTACHMENT_SESSION_RESTARTS =>
                {
                    restarts += 1;
                    tracing::debug!(restarts, "attachment upload session lost, starting over");
                }
                other => return other,
            }
        }
    }

    async fn send_attachment(&self, upload: &UploadUrl, bytes: &Bytes) -> Result<(), GraphError> {
        let total = bytes.len();
        let mut start = 0;
        loop {
            let end = (start + ATTACHMENT_FRAGMENT).min(total);
            let range = format!("bytes {start}-{}/{total}", end.max(1) - 1);
            let mut call = Call { method: Method::PUT, bearer: false, ..Call::get(upload.to_url()?) };
            call.body = Some(bytes.slice(start..end));
            call.headers
                .insert(CONTENT_RANGE, HeaderValue::from_str(&range).map_err(|_| GraphError::protocol("range"))?);
            call.timeout = Some(super::write::upload_timeout(end - start));
            match self.execute(&call, read_nothing).await {
                Ok(()) => {}
                Err(GraphError::NotFound) => return Err(GraphError::UploadSessionGone),
                Err(e) => return Err(e),
            }
            if end >= total {
                return Ok(());
            }
            start = end;
        }
    }

    /// Every message in a folder with its internet message id (what makes a restore re-runnable),
    /// in pages of 1,000, the most Outlook serves: every restore chunk lists the folders it
    /// writes to, and each page is one of the mailbox's 10,000 requests per ten minutes.
    pub async fn folder_messages(&self, user_id: &str, folder: &str) -> Result<Vec<FolderMessage>, GraphError> {
        let mut url = self.endpoint(&["users", user_id, "mailFolders", folder, "messages"]);
        url.query_pairs_mut().append_pair("$select", "id,internetMessageId").append_pair("$top", "1000");
        let raw = self.mail_pages::<RawListed>(url).await?;
        Ok(raw
            .into_iter()
            .filter_map(|r| {
                Some(FolderMessage {
                    id: r.id.filter(|id| !id.is_empty())?,
                    internet_message_id: r.internet_message_id,
                })
            })
            .collect())
    }
}

#[cfg(test)]
#[path = "mail_write_tests.rs"]
mod tests;
