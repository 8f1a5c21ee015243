//! Exchange mailboxes (graph-facts §7): a folder tree under the hidden root
//! (`msgfolderroot`) with the well-known folders, messages with their MIME,
//! and one change log per mailbox that folder and message delta read.
//!
//! A message has two ids, as in Exchange: an immutable id that never changes,
//! and a REST id that changes whenever the message moves. Every placement
//! (folder and REST id from a change sequence on) is kept, so a delta token
//! taken at any point can tell which messages left a folder since, and under
//! which id the client knew them.

use std::collections::HashMap;

use axum::http::StatusCode;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::ids::IdRng;
use crate::error::{GraphError, GraphResult};
use crate::mime_gen::{self, MessageSpec};

pub use super::mail_delta::{FolderDelta, MessageDelta};

/// Well-known folder names usable as ids in URLs, with their display names.
pub const WELL_KNOWN: [(&str, &str); 6] = [
    ("inbox", "Inbox"),
    ("sentitems", "Sent Items"),
    ("deleteditems", "Deleted Items"),
    ("drafts", "Drafts"),
    ("archive", "Archive"),
    ("junkemail", "Junk Email"),
];

const ROOT: &str = "msgfolderroot";

#[derive(Debug, Clone)]
pub struct MailFolder {
    pub id: String,
    pub display_name: String,
    /// `None` for the root only.
    pub parent_id: Option<String>,
    pub well_known: Option<&'static str>,
    pub hidden: bool,
    pub deleted: bool,
    pub created_seq: u64,
}

/// Where a message was from change `seq` on; `folder: None` once hard-deleted.
#[derive(Debug, Clone)]
pub struct Placement {
    pub seq: u64,
    pub folder: Option<String>,
    pub rest_id: String,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub immutable_id: String,
    pub placements: Vec<Placement>,
    pub spec: MessageSpec,
    pub mime: Bytes,
    /// Seeds the multipart boundaries when the MIME is rendered again.
    pub mime_tag: u64,
    pub conversation_id: String,
    pub is_read: bool,
    pub is_draft: bool,
    /// `notFlagged`, `flagged` or `complete`.
    pub flag: String,
    pub categories: Vec<String>,
    pub version: u64,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub received: DateTime<Utc>,
    pub sent: Option<DateTime<Utc>>,
}

impl Message {
    fn now(&self) -> &Placement {
        &self.placements[self.placements.len() - 1]
    }

    pub fn rest_id(&self) -> &str {
        &self.now().rest_id
    }

    /// The current folder, `None` once hard-deleted.
    pub fn folder(&self) -> Option<&str> {
        self.now().folder.as_deref()
    }

    /// The placement in force at change `seq` (`None`: not created yet).
    pub fn at(&self, seq: u64) -> Option<&Placement> {
        self.placements.iter().rev().find(|p| p.seq <= seq)
    }

    pub fn change_key(&self) -> String {
        use base64::Engine;
        let raw = format!("{}:{}", self.immutable_id, self.version);
        let digest = <sha2::Sha256 as sha2::Digest>::digest(raw.as_bytes());
        format!("CQAAABYAAAD{}", base64::engine::general_purpose::STANDARD.encode(&digest[..15]))
    }

    pub fn id(&self, immutable: bool) -> &str {
        if immutable { &self.immutable_id } else { self.rest_id() }
    }

    /// Re-renders the MIME after the spec changed (attachments added).
    pub fn rerender(&mut self) {
        self.mime = mime_gen::render(&self.spec, self.mime_tag);
    }
}

/// An attachment upload session (`createUploadSession` on a message).
#[derive(Debug)]
pub struct MailUpload {
    pub message_id: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub inline: bool,
    pub content_id: Option<String>,
    pub data: bytes::BytesMut,
    pub expires: DateTime<Utc>,
}

/// What a new message starts as.
pub struct NewMessage {
    pub spec: MessageSpec,
    /// Keep these bytes as the MIME instead of rendering the spec.
    pub raw_mime: Option<Bytes>,
    pub is_read: bool,
    pub is_draft: bool,
    pub flag: String,
    pub received: DateTime<Utc>,
    pub sent: Option<DateTime<Utc>>,
    pub conversation_id: Option<String>,
}

pub struct Mailbox {
    pub user_id: String,
    pub root_id: String,
    /// In creation order, deleted ones included (tombstones for delta).
    pub folders: Vec<MailFolder>,
    /// In creation order, hard-deleted ones included.
    pub messages: Vec<Message>,
    /// Immutable ids and current REST ids → position in `messages`.
    index: HashMap<String, usize>,
    pub seq: u64,
    /// `(seq, message immutable id)` and `(seq, folder id)` per change.
    pub message_log: Vec<(u64, String)>,
    pub folder_log: Vec<(u64, String)>,
    /// Bumped by the `expire_mail_delta_tokens` fault.
    pub token_epoch: u64,
    /// How a token from an earlier epoch is refused.
    pub expiry: MailDeltaExpiry,
    pub incarnation: String,
}

/// How Exchange refuses a mail delta token it can no longer serve. The delta overview says
/// `410 Gone` or "a 40X-series error with error codes such as `syncStateNotFound`"; clients in
/// the wild meet these codes with 400, 404 and 410 (graph-facts §13.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailDeltaExpiry {
    pub status: StatusCode,
    pub code: &'static str,
}

impl Default for MailDeltaExpiry {
    fn default() -> Self {
        Self { status: StatusCode::GONE, code: "SyncStateNotFound" }
    }
}

impl MailDeltaExpiry {
    pub const CODES: [&'static str; 4] =
        ["SyncStateNotFound", "ErrorSyncStateNotFound", "ErrorInvalidSyncStateData", "invalidDeltaToken"];

    /// `status` 400, 404 or 410 and one of [`Self::CODES`].
    pub fn new(status: u16, code: &str) -> Option<Self> {
        let status = match status {
            400 => StatusCode::BAD_REQUEST,
            404 => StatusCode::NOT_FOUND,
            410 => StatusCode::GONE,
            _ => return None,
        };
        let code = Self::CODES.into_iter().find(|c| *c == code)?;
        Some(Self { status, code })
    }

    pub fn error(&self) -> GraphError {
        GraphError::new(self.status, self.code, "The sync state could not be found; it may have expired.")
    }
}

/// A fresh attachment id: never one a message held before, as an attachment added after
/// another was removed must not take its id.
pub fn attachment_id() -> String {
    format!("AAMkAtt{}=", uuid::Uuid::new_v4().simple())
}

pub fn item_not_found() -> GraphError {
    GraphError::new(StatusCode::NOT_FOUND, "ErrorItemNotFound", "The specified object was not found in the store.")
}

fn id_chars(rng: &mut IdRng, n: usize) -> String {
    const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..n).map(|_| B64URL[(rng.next_u64() % 64) as usize] as char).collect()
}

/// A REST id (`AAMkA...=`): changes on every move.
pub fn rest_id(rng: &mut IdRng) -> String {
    format!("AAMkAGI2TG93AAA{}AAA=", id_chars(rng, 120))
}

fn immutable_id(rng: &mut IdRng) -> String {
    format!("AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A{}AAA=", id_chars(rng, 60))
}

fn folder_id(rng: &mut IdRng) -> String {
    format!("AAMkAGI2TG93AC4AAAAAA{}AAA=", id_chars(rng, 60))
}

impl Mailbox {
    /// A mailbox with the root, the well-known folders and nothing else.
    pub fn new(user_id: &str, rng: &mut IdRng) -> Self {
        let root_id = folder_id(rng);
        let mut mb = Self {
            user_id: user_id.to_string(),
            root_id: root_id.clone(),
            folders: vec![MailFolder {
                id: root_id.clone(),
                display_name: "Top of Information Store".into(),
                parent_id: None,
                well_known: Some(ROOT),
                hidden: false,
                deleted: false,
                created_seq: 0,
            }],
            messages: Vec::new(),
            index: HashMap::new(),
            seq: 0,
            message_log: Vec::new(),
            folder_log: Vec::new(),
            token_epoch: 0,
            expiry: MailDeltaExpiry::default(),
            incarnation: id_chars(rng, 8),
        };
        for (wk, name) in WELL_KNOWN {
            mb.insert_folder(&root_id, name, Some(wk), false, rng);
        }
        mb
    }

    pub(super) fn bump(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub(super) fn insert_folder(
        &mut self,
        parent: &str,
        name: &str,
        well_known: Option<&'static str>,
        hidden: bool,
        rng: &mut IdRng,
    ) -> String {
        let seq = self.bump();
        let id = folder_id(rng);
        self.folders.push(MailFolder {
            id: id.clone(),
            display_name: name.to_string(),
            parent_id: Some(parent.to_string()),
            well_known,
            hidden,
            deleted: false,
            created_seq: seq,
        });
        self.folder_log.push((seq, id.clone()));
        id
    }

    /// A live folder by id or well-known name (any case).
    pub fn folder(&self, id_or_name: &str) -> Option<&MailFolder> {
        let lower = id_or_name.to_ascii_lowercase();
        self.folders.iter().find(|f| !f.deleted && (f.id == id_or_name || f.well_known == Some(lower.as_str())))
    }

    pub fn folder_or_404(&self, id_or_name: &str) -> GraphResult<&MailFolder> {
        self.folder(id_or_name).ok_or_else(item_not_found)
    }

    pub(super) fn folder_mut(&mut self, id: &str) -> Option<&mut MailFolder> {
        self.folders.iter_mut().find(|f| !f.deleted && f.id == id)
    }

    /// Live children of `parent`, in creation order.
    pub fn children(&self, parent: &str) -> Vec<&MailFolder> {
        self.folders.iter().filter(|f| !f.deleted && f.parent_id.as_deref() == Some(parent)).collect()
    }

    /// `/Inbox/Projects` (the root is ``).
    pub fn path(&self, id: &str) -> String {
        let mut names = Vec::new();
        let mut cur = self.folders.iter().find(|f| f.id == id);
        while let Some(f) = cur.filter(|f| f.parent_id.is_some()) {
            names.push(f.display_name.clone());
            cur = f.parent_id.as_ref().and_then(|p| self.folders.iter().find(|x| &x.id == p));
        }
        names.iter().rev().map(|n| format!("/{n}")).collect()
    }

    pub(super) fn depth(&self, id: &str) -> usize {
        self.path(id).matches('/').count()
    }

    /// (total, unread) messages directly in `folder`.
    pub fn counts(&self, folder: &str) -> (u64, u64) {
        self.messages
            .iter()
            .filter(|m| m.folder() == Some(folder))
            .fold((0, 0), |(t, u), m| (t + 1, u + u64::from(!m.is_read)))
    }

    /// A live message by immutable id or *current* REST id: an id from
    /// before a move no longer resolves, as in Exchange.
    pub fn message(&self, id: &str) -> Option<&Message> {
        self.index.get(id).map(|&i| &self.messages[i]).filter(|m| m.folder().is_some())
    }

    pub fn message_or_404(&self, id: &str) -> GraphResult<&Message> {
        self.message(id).ok_or_else(item_not_found)
    }

    /// A message made through Graph was created now, whatever received time it carries
    /// (seeded and delivered mail is backdated to its received time instead).
    pub fn created_now(&mut self, id: &str) -> GraphResult<()> {
        let m = self.message_mut(id)?;
        m.created = Utc::now();
        m.modified = m.created;
        Ok(())
    }

    fn message_mut(&mut self, id: &str) -> GraphResult<&mut Message> {
        let at = *self.index.get(id).ok_or_else(item_not_found)?;
        Some(&mut self.messages[at]).filter(|m| m.folder().is_some()).ok_or_else(item_not_found)
    }

    /// Any message ever stored, by immutable id (tombstones included).
    pub fn any_message(&self, immutable_id: &str) -> Option<&Message> {
        self.index.get(immutable_id).map(|&i| &self.messages[i])
    }

    /// Logs a change to `id` and bumps its version; returns the new seq.
    fn touch(&mut self, id: &str) -> GraphResult<u64> {
        let seq = self.bump();
        let m = self.message_mut(id)?;
        m.version += 1;
        m.modified = Utc::now();
        let imm = m.immutable_id.clone();
        self.message_log.push((seq, imm));
        Ok(seq)
    }

    pub fn add_message(&mut self, folder: &str, new: NewMessage, rng: &mut IdRng) -> GraphResult<String> {
        let folder = self.folder_or_404(folder)?.id.clone();
        let seq = self.bump();
        let imm = immutable_id(rng);
        let tag = rng.next_u64();
        let mime = new.raw_mime.unwrap_or_else(|| mime_gen::render(&new.spec, tag));
        let created = Utc::now().min(new.received);
        let rest = rest_id(rng);
        self.index.insert(imm.clone(), self.messages.len());
        self.index.insert(rest.clone(), self.messages.len());
        self.messages.push(Message {
            immutable_id: imm.clone(),
            placements: vec![Placement { seq, folder: Some(folder), rest_id: rest }],
            spec: new.spec,
            mime,
            mime_tag: tag,
            conversation_id: new.conversation_id.unwrap_or_else(|| format!("AAQkAGI2{}=", id_chars(rng, 40))),
            is_read: new.is_read,
            is_draft: new.is_draft,
            flag: new.flag,
            categories: Vec::new(),
            version: 1,
            created,
            modified: created,
            received: new.received,
            sent: new.sent,
        });
        self.message_log.push((seq, imm.clone()));
        Ok(imm)
    }

    pub fn set_read(&mut self, id: &str, read: bool) -> GraphResult<()> {
        self.message_mut(id)?.is_read = read;
        self.touch(id).map(drop)
    }

    pub fn set_flag(&mut self, id: &str, flag: &str) -> GraphResult<()> {
        if !matches!(flag, "notFlagged" | "flagged" | "complete") {
            return Err(GraphError::bad_request(format!("Invalid flagStatus '{flag}'.")));
        }
        self.message_mut(id)?.flag = flag.to_string();
        self.touch(id).map(drop)
    }

    /// Applies `edit` to the message's spec and re-renders its MIME.
    pub fn edit_spec(&mut self, id: &str, edit: impl FnOnce(&mut MessageSpec)) -> GraphResult<()> {
        let m = self.message_mut(id)?;
        edit(&mut m.spec);
        m.rerender();
        self.touch(id).map(drop)
    }

    /// Moves to `folder` (a no-op if already there); the REST id changes.
    /// Returns the immutable id.
    pub fn move_message(&mut self, id: &str, folder: &str, rng: &mut IdRng) -> GraphResult<String> {
        let target = self.folder_or_404(folder)?.id.clone();
        let m = self.message_mut(id)?;
        if m.folder() == Some(target.as_str()) {
            return Ok(m.immutable_id.clone());
        }
        let (imm, old) = (m.immutable_id.clone(), m.rest_id().to_string());
        let seq = self.touch(id)?;
        let new = rest_id(rng);
        let at = self.index.remove(&old).ok_or_else(item_not_found)?;
        self.index.insert(new.clone(), at);
        self.messages[at].placements.push(Placement { seq, folder: Some(target), rest_id: new });
        Ok(imm)
    }

    /// Outlook's delete: into Deleted Items, or for good from there.
    pub fn delete_message(&mut self, id: &str, rng: &mut IdRng) -> GraphResult<()> {
        let deleted = self.folder_or_404("deleteditems")?.id.clone();
        if self.message_or_404(id)?.folder() == Some(deleted.as_str()) {
            return self.hard_delete(id);
        }
        self.move_message(id, &deleted, rng).map(drop)
    }

    pub fn hard_delete(&mut self, id: &str) -> GraphResult<()> {
        let m = self.message_mut(id)?;
        let (imm, rest) = (m.immutable_id.clone(), m.rest_id().to_string());
        let seq = self.touch(id)?;
        let m = self.message_mut(&imm)?;
        m.placements.push(Placement { seq, folder: None, rest_id: rest });
        Ok(())
    }

    /// Hard-deletes every message directly in `folder`; returns how many.
    pub fn empty_folder(&mut self, folder: &str) -> GraphResult<usize> {
        let folder = self.folder_or_404(folder)?.id.clone();
        let ids: Vec<String> = self
            .messages
            .iter()
            .filter(|m| m.folder() == Some(folder.as_str()))
            .map(|m| m.immutable_id.clone())
            .collect();
        for id in &ids {
            self.hard_delete(id)?;
        }
        Ok(ids.len())
    }

    /// Every message gone, every folder but the well-known ones gone.
    pub fn purge(&mut self) -> GraphResult<()> {
        let live: Vec<String> =
            self.messages.iter().filter(|m| m.folder().is_some()).map(|m| m.immutable_id.clone()).collect();
        for id in live {
            self.hard_delete(&id)?;
        }
        let custom: Vec<String> = self
            .folders
            .iter()
            .filter(|f| !f.deleted && f.well_known.is_none() && f.parent_id.as_deref() == Some(self.root_id.as_str()))
            .map(|f| f.id.clone())
            .collect();
        for id in custom {
            self.delete_folder(&id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_message(subject: &str) -> NewMessage {
        NewMessage {
            spec: MessageSpec { subject: subject.into(), message_id: "<x@y>".into(), ..MessageSpec::default() },
            raw_mime: None,
            is_read: false,
            is_draft: false,
            flag: "notFlagged".into(),
            received: Utc::now(),
            sent: None,
            conversation_id: None,
        }
    }

    #[test]
    fn a_move_changes_the_rest_id_and_shows_in_both_folders_deltas() {
        let mut rng = IdRng::seeded(1);
        let mut mb = Mailbox::new("u", &mut rng);
        let id = mb.add_message("inbox", new_message("a"), &mut rng).expect("add");
        let before = mb.message(&id).map(|m| m.rest_id().to_string()).expect("message");
        let token = mb.seq;
        mb.move_message(&id, "archive", &mut rng).expect("move");
        let m = mb.message(&id).expect("still there");
        assert_ne!(m.rest_id(), before);
        assert!(mb.message(&before).is_none(), "the old REST id is dead");
        let inbox = mb.folder("inbox").map(|f| f.id.clone()).expect("inbox");
        let archive = mb.folder("archive").map(|f| f.id.clone()).expect("archive");
        assert_eq!(mb.message_changes(&inbox, token, mb.seq), [MessageDelta::Removed(id.clone(), before)]);
        assert_eq!(mb.message_changes(&archive, token, mb.seq), [MessageDelta::Upsert(id)]);
    }

    #[test]
    fn folder_names_are_unique_per_parent_and_distinguished_folders_stay() {
        let mut rng = IdRng::seeded(2);
        let mut mb = Mailbox::new("u", &mut rng);
        mb.create_folder("inbox", "Projects", false, &mut rng).expect("create");
        let dup = mb.create_folder("inbox", "projects", false, &mut rng).map_err(|e| e.code);
        assert_eq!(dup, Err("ErrorFolderExists".to_string()));
        assert!(mb.create_folder("archive", "Projects", false, &mut rng).is_ok());
        assert!(mb.delete_folder("inbox").is_err());
    }
}
