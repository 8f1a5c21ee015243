//! Exchange Online mail, the backup side: the folder tree, folder and message delta (per
//! folder: Graph has no mailbox-wide message delta), single messages and their MIME.
//! The restorer's side is in `mail_write.rs`.
//!
//! Every mail request asks for immutable ids (`Prefer: IdType="ImmutableId"`), so a message
//! keeps its id when it moves between folders; delta requests also ask for a page size
//! (`odata.maxpagesize`, see [`GraphClient::with_mail_page_size`]), in the same `Prefer`
//! header. Delta and next links are [`DeltaLink`]s: never printed, never logged.

use std::collections::{HashSet, VecDeque};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, HeaderValue};
use serde::Deserialize;
use serde::de::IgnoredAny;
use url::Url;

use super::client::{Call, GraphClient, read_json};
use super::drive::{DeltaLink, Download, parse_time};
use super::error::GraphError;

/// Delta page size asked for unless [`GraphClient::with_mail_page_size`] says otherwise.
pub const DEFAULT_MAIL_PAGE_SIZE: u32 = 100;

const PREFER: &str = "prefer";
const IMMUTABLE_IDS: &str = r#"IdType="ImmutableId""#;

/// The message fields a backup records, asked for on the first delta request (Graph bakes
/// them into the links that follow) and on single gets.
pub(crate) const MESSAGE_SELECT: &str = "id,changeKey,lastModifiedDateTime,receivedDateTime,sentDateTime,\
createdDateTime,subject,from,sender,toRecipients,ccRecipients,bccRecipients,replyTo,internetMessageId,\
conversationId,parentFolderId,isRead,isDraft,flag,importance,hasAttachments,categories";

/// A mail folder. Graph omits fields under `$select`: missing counts read as 0, a missing
/// name as empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFolder {
    pub id: String,
    pub display_name: String,
    /// The mailbox root (`msgfolderroot`) for top-level folders.
    pub parent_folder_id: Option<String>,
    pub child_folder_count: u32,
    pub total_item_count: u64,
    pub unread_item_count: u64,
    pub is_hidden: bool,
}

/// A name and address, as Graph's `emailAddress`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Recipient {
    pub name: Option<String>,
    pub address: Option<String>,
}

impl Recipient {
    pub fn new(name: Option<&str>, address: &str) -> Self {
        Self { name: name.map(str::to_owned), address: Some(address.to_owned()) }
    }
}

/// A message's metadata (never its body: the MIME is the content, see
/// [`GraphClient::message_mime`]). Every field but the id may be missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Immutable: it survives moves between folders.
    pub id: String,
    /// Changes with every change to the message: the version marker of a backup.
    pub change_key: Option<String>,
    pub last_modified: Option<DateTime<Utc>>,
    pub received: Option<DateTime<Utc>>,
    pub sent: Option<DateTime<Utc>>,
    pub created: Option<DateTime<Utc>>,
    pub subject: Option<String>,
    pub from: Option<Recipient>,
    pub sender: Option<Recipient>,
    pub to: Vec<Recipient>,
    pub cc: Vec<Recipient>,
    pub bcc: Vec<Recipient>,
    pub reply_to: Vec<Recipient>,
    pub internet_message_id: Option<String>,
    pub conversation_id: Option<String>,
    pub parent_folder_id: Option<String>,
    pub is_read: bool,
    pub is_draft: bool,
    /// `notFlagged`, `flagged` or `complete` (from `flag.flagStatus`).
    pub flag_status: Option<String>,
    /// `low`, `normal` or `high`.
    pub importance: Option<String>,
    pub has_attachments: bool,
    pub categories: Vec<String>,
}

/// Where a mail-folder delta query starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailFolderDeltaCursor {
    /// Every folder of the mailbox, from scratch.
    Start { user_id: String },
    /// A stored nextLink (mid-enumeration) or deltaLink (changes since last time).
    Link(DeltaLink),
}

/// Where a message delta query over one folder starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageDeltaCursor {
    /// Every message of the folder (an id or a well-known name such as `inbox`), from scratch.
    Start { user_id: String, folder_id: String },
    /// A stored nextLink or deltaLink of that folder, followed verbatim.
    Link(DeltaLink),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailFolderChange {
    Upsert(MailFolder),
    /// Deleted (`@removed`).
    Removed {
        id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // pages are mostly upserts: boxing would cost one allocation each
pub enum MessageChange {
    Upsert(Message),
    /// Deleted, or moved out of this folder (`@removed`): it shows up as an upsert in the
    /// delta of the folder it moved to.
    Removed {
        id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFolderDeltaPage {
    pub changes: Vec<MailFolderChange>,
    /// More pages follow: checkpoint this and continue.
    pub next: Option<DeltaLink>,
    /// Last page: store this for the next round.
    pub delta_link: Option<DeltaLink>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageDeltaPage {
    pub changes: Vec<MessageChange>,
    /// More pages follow: checkpoint this and continue.
    pub next: Option<DeltaLink>,
    /// Last page: store this (per folder) for the next round.
    pub delta_link: Option<DeltaLink>,
}

impl GraphClient {
    /// The same client asking for `page_size` items per mail delta page (at least 1).
    pub fn with_mail_page_size(mut self, page_size: u32) -> Self {
        self.mail_page_size = page_size.max(1);
        self
    }

    pub fn mail_page_size(&self) -> u32 {
        self.mail_page_size
    }

    /// The whole folder tree, hidden folders included, parents before their children: the
    /// top-level folders, then `childFolders` of every folder that has any.
    pub async fn mail_folders(&self, user_id: &str) -> Result<Vec<MailFolder>, GraphError> {
        let mut all = self.folder_list(self.endpoint(&["users", user_id, "mailFolders"])).await?;
        let mut pending: VecDeque<usize> = (0..all.len()).collect();
        let mut seen: HashSet<String> = all.iter().map(|f| f.id.clone()).collect();
        while let Some(at) = pending.pop_front() {
            if all[at].child_folder_count == 0 {
                continue;
            }
            let url = self.endpoint(&["users", user_id, "mailFolders", &all[at].id, "childFolders"]);
            for child in self.folder_list(url).await? {
                // A folder met twice would make the walk loop forever.
                if seen.insert(child.id.clone()) {
                    pending.push_back(all.len());
                    all.push(child);
                }
            }
        }
        Ok(all)
    }

    /// One level under `parent_id` (an id or a well-known name such as `msgfolderroot`),
    /// hidden folders included, all pages followed.
    pub async fn child_mail_folders(&self, user_id: &str, parent_id: &str) -> Result<Vec<MailFolder>, GraphError> {
        self.folder_list(self.endpoint(&["users", user_id, "mailFolders", parent_id, "childFolders"])).await
    }

    /// A folder by id or well-known name (`inbox`, `sentitems`, `archive`, ...), or `None`.
    pub async fn mail_folder(&self, user_id: &str, id_or_well_known: &str) -> Result<Option<MailFolder>, GraphError> {
        let url = self.endpoint(&["users", user_id, "mailFolders", id_or_well_known]);
        match self.execute(&mail_call(url), read_json::<RawFolder>).await {
            Ok(raw) => raw.into_folder().map(Some),
            Err(GraphError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page of the mailbox's folder delta. A refused link is [`GraphError::ResyncRequired`]
    /// (see [`GraphError::on_stored_link`]).
    pub async fn mail_folders_delta(&self, from: &MailFolderDeltaCursor) -> Result<MailFolderDeltaPage, GraphError> {
        let (url, stored) = match from {
            MailFolderDeltaCursor::Start { user_id } => {
                (self.endpoint(&["users", user_id, "mailFolders", "delta"]), false)
            }
            MailFolderDeltaCursor::Link(link) => (self.graph_link(link.as_str())?, true),
        };
        let raw: RawPage<RawFolder> = self
            .execute(&self.delta_call(url), read_json)
            .await
            .map_err(|e| if stored { e.on_stored_link() } else { e })?;
        let changes = raw
            .value
            .into_iter()
            .map(|f| match f.removed {
                Some(_) => Ok(MailFolderChange::Removed { id: required_id(f.id, "removed mail folder")? }),
                None => f.into_folder().map(MailFolderChange::Upsert),
            })
            .collect::<Result<_, _>>()?;
        Ok(MailFolderDeltaPage {
            changes,
            next: raw.next_link.map(DeltaLink::new),
            delta_link: raw.delta_link.map(DeltaLink::new),
        })
    }

    /// One page of a folder's message delta. Query options go on the first request only;
    /// links are followed as Graph gave them. A dead link is [`GraphError::ResyncRequired`]:
    /// enumerate the folder again from `Start` and reconcile.
    pub async fn message_delta(&self, from: &MessageDeltaCursor) -> Result<MessageDeltaPage, GraphError> {
        let (url, stored) = match from {
            MessageDeltaCursor::Start { user_id, folder_id } => {
                let mut url = self.endpoint(&["users", user_id, "mailFolders", folder_id, "messages", "delta"]);
                url.query_pairs_mut().append_pair("$select", MESSAGE_SELECT);
                (url, false)
            }
            MessageDeltaCursor::Link(link) => (self.graph_link(link.as_str())?, true),
        };
        // A refused link is a resync, even a 404: the folder may be gone, or only the
        // token; the enumerator asks Graph about the folder before it lets it go.
        let raw: RawPage<RawMessage> = self
            .execute(&self.delta_call(url), read_json)
            .await
            .map_err(|e| if stored { e.on_stored_link() } else { e })?;
        let changes = raw
            .value
            .into_iter()
            .map(|m| match m.removed {
                Some(_) => Ok(MessageChange::Removed { id: required_id(m.id, "removed message")? }),
                None => m.into_message().map(MessageChange::Upsert),
            })
            .collect::<Result<_, _>>()?;
        Ok(MessageDeltaPage {
            changes,
            next: raw.next_link.map(DeltaLink::new),
            delta_link: raw.delta_link.map(DeltaLink::new),
        })
    }

    /// The message's current metadata, or `None` if it no longer exists.
    pub async fn get_message(&self, user_id: &str, message_id: &str) -> Result<Option<Message>, GraphError> {
        let mut url = self.endpoint(&["users", user_id, "messages", message_id]);
        url.query_pairs_mut().append_pair("$select", MESSAGE_SELECT);
        match self.execute(&mail_call(url), read_json::<RawMessage>).await {
            Ok(raw) => raw.into_message().map(Some),
            Err(GraphError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A fingerprint of the message's attachments as Graph lists them now, or `None` if the
    /// message is gone: `GET /users/{id}/messages/{id}/attachments?$select=id,name,size,isInline`
    /// (`message-list-attachments.md`; `$select` keeps `contentBytes` out, so the answer is a
    /// few hundred bytes whatever the attachments weigh). One request, on a message whose
    /// `changeKey` moved: a new attachment (Defender's Dynamic Delivery re-attaches files to
    /// received mail) or a removed one changes the MIME of a message that is not a draft.
    pub async fn attachment_fingerprint(&self, user_id: &str, message_id: &str) -> Result<Option<String>, GraphError> {
        let mut url = self.endpoint(&["users", user_id, "messages", message_id, "attachments"]);
        url.query_pairs_mut().append_pair("$select", "id,name,size,isInline");
        let listed = match self.mail_pages::<RawAttachment>(url).await {
            Ok(listed) => listed,
            Err(GraphError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut lines: Vec<String> = listed
            .into_iter()
            .map(|a| {
                let name = a.name.unwrap_or_default();
                format!(
                    "{}\u{0}{name}\u{0}{}\u{0}{}",
                    a.id.unwrap_or_default(),
                    a.size.unwrap_or(0),
                    a.is_inline.unwrap_or(false)
                )
            })
            .collect();
        lines.sort();
        let digest = <sha2::Sha256 as sha2::Digest>::digest(lines.join("\n").as_bytes());
        Ok(Some(format!("att.{}", hex::encode(&digest[..16]))))
    }

    /// Streams the message's raw RFC 5322 MIME (`$value`), chunk by chunk, so the caller can
    /// hash while copying with bounded memory. A missing message is [`GraphError::NotFound`];
    /// a body cut short ends the stream with `Transient` (start over: there is no resume).
    pub async fn message_mime(&self, user_id: &str, message_id: &str) -> Result<Download, GraphError> {
        let url = self.endpoint(&["users", user_id, "messages", message_id, "$value"]);
        let mut call = mail_call(url);
        call.content = true;
        let resp = self.execute(&call, |r| async { Ok(r) }).await?;
        if resp.status() != StatusCode::OK {
            return Err(GraphError::protocol(format!("message $value answered {}", resp.status())));
        }
        let total_len = resp.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let stream = Box::pin(resp.bytes_stream().map(|r| r.map_err(GraphError::from_transport)));
        Ok(Download { total_len, offset: 0, stream })
    }

    /// Every folder of one listing (top level or `childFolders`), hidden ones included.
    async fn folder_list(&self, mut url: Url) -> Result<Vec<MailFolder>, GraphError> {
        url.query_pairs_mut().append_pair("includeHiddenFolders", "true");
        let raw = self.mail_pages::<RawFolder>(url).await?;
        raw.into_iter().map(RawFolder::into_folder).collect()
    }

    /// GETs `url` and every nextLink after it.
    pub(crate) async fn mail_pages<T: serde::de::DeserializeOwned>(&self, mut url: Url) -> Result<Vec<T>, GraphError> {
        let mut all = Vec::new();
        loop {
            let page: RawPage<T> = self.execute(&mail_call(url), read_json).await?;
            all.extend(page.value);
            match page.next_link {
                Some(next) => url = self.graph_link(&next)?,
                None => return Ok(all),
            }
        }
    }

    fn delta_call(&self, url: Url) -> Call<'static> {
        let mut call = Call::get(url);
        let prefer = format!("{IMMUTABLE_IDS}, odata.maxpagesize={}", self.mail_page_size);
        // Digits and ASCII punctuation only: always a valid header value.
        if let Ok(value) = HeaderValue::from_str(&prefer) {
            call.headers.insert(PREFER, value);
        }
        call
    }
}

/// A GET asking for immutable ids.
pub(crate) fn mail_call(url: Url) -> Call<'static> {
    let mut call = Call::get(url);
    prefer_immutable_ids(&mut call);
    call
}

/// Every mail request says `Prefer: IdType="ImmutableId"`: ids then survive moves.
pub(crate) fn prefer_immutable_ids(call: &mut Call<'_>) {
    call.headers.insert(PREFER, HeaderValue::from_static(IMMUTABLE_IDS));
}

fn required_id(id: Option<String>, what: &str) -> Result<String, GraphError> {
    id.filter(|id| !id.is_empty()).ok_or_else(|| GraphError::protocol(format!("{what} without id")))
}

#[derive(Deserialize)]
pub(crate) struct RawPage<T> {
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    pub next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    pub delta_link: Option<String>,
}

/// Graph's mailFolder JSON, every field optional (and `null` tolerated).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawFolder {
    id: Option<String>,
    display_name: Option<String>,
    parent_folder_id: Option<String>,
    child_folder_count: Option<u32>,
    total_item_count: Option<u64>,
    unread_item_count: Option<u64>,
    is_hidden: Option<bool>,
    #[serde(rename = "@removed")]
    removed: Option<IgnoredAny>,
}

impl RawFolder {
    pub(crate) fn into_folder(self) -> Result<MailFolder, GraphError> {
        Ok(MailFolder {
            id: required_id(self.id, "mail folder")?,
            display_name: self.display_name.unwrap_or_default(),
            parent_folder_id: self.parent_folder_id,
            child_folder_count: self.child_folder_count.unwrap_or(0),
            total_item_count: self.total_item_count.unwrap_or(0),
            unread_item_count: self.unread_item_count.unwrap_or(0),
            is_hidden: self.is_hidden.unwrap_or(false),
        })
    }
}

/// An attachment as listed under `$select=id,name,size,isInline`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAttachment {
    id: Option<String>,
    name: Option<String>,
    size: Option<u64>,
    is_inline: Option<bool>,
}

/// Graph's message JSON, every field optional (and `null` tolerated).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawMessage {
    id: Option<String>,
    change_key: Option<String>,
    last_modified_date_time: Option<String>,
    received_date_time: Option<String>,
    sent_date_time: Option<String>,
    created_date_time: Option<String>,
    subject: Option<String>,
    from: Option<RawRecipient>,
    sender: Option<RawRecipient>,
    to_recipients: Option<Vec<RawRecipient>>,
    cc_recipients: Option<Vec<RawRecipient>>,
    bcc_recipients: Option<Vec<RawRecipient>>,
    reply_to: Option<Vec<RawRecipient>>,
    internet_message_id: Option<String>,
    conversation_id: Option<String>,
    parent_folder_id: Option<String>,
    is_read: Option<bool>,
    is_draft: Option<bool>,
    flag: Option<RawFlag>,
    importance: Option<String>,
    has_attachments: Option<bool>,
    categories: Option<Vec<String>>,
    #[serde(rename = "@removed")]
    removed: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRecipient {
    email_address: Option<RawEmailAddress>,
}

#[derive(Deserialize)]
struct RawEmailAddress {
    name: Option<String>,
    address: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFlag {
    flag_status: Option<String>,
}

impl RawRecipient {
    /// `None` for an entry with neither name nor address.
    fn into_recipient(self) -> Option<Recipient> {
        let email = self.email_address?;
        (email.name.is_some() || email.address.is_some())
            .then_some(Recipient { name: email.name, address: email.address })
    }
}

fn recipients(raw: Option<Vec<RawRecipient>>) -> Vec<Recipient> {
    raw.unwrap_or_default().into_iter().filter_map(RawRecipient::into_recipient).collect()
}

impl RawMessage {
    pub(crate) fn into_message(self) -> Result<Message, GraphError> {
        let time = |t: Option<String>| t.as_deref().and_then(parse_time);
        Ok(Message {
            id: required_id(self.id, "message")?,
            change_key: self.change_key,
            last_modified: time(self.last_modified_date_time),
            received: time(self.received_date_time),
            sent: time(self.sent_date_time),
            created: time(self.created_date_time),
            subject: self.subject,
            from: self.from.and_then(RawRecipient::into_recipient),
            sender: self.sender.and_then(RawRecipient::into_recipient),
            to: recipients(self.to_recipients),
            cc: recipients(self.cc_recipients),
            bcc: recipients(self.bcc_recipients),
            reply_to: recipients(self.reply_to),
            internet_message_id: self.internet_message_id,
            conversation_id: self.conversation_id,
            parent_folder_id: self.parent_folder_id,
            is_read: self.is_read.unwrap_or(false),
            is_draft: self.is_draft.unwrap_or(false),
            flag_status: self.flag.and_then(|f| f.flag_status),
            importance: self.importance,
            has_attachments: self.has_attachments.unwrap_or(false),
            categories: self.categories.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
#[path = "mail_tests.rs"]
mod tests;
