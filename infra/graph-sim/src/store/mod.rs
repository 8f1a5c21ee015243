//! The simulated tenant: users, their drives (item trees with a per-drive
//! change log), subscriptions and delta paging sessions. All of it sits behind
//! one mutex in [`crate::Inner`]; handlers copy what they need out as
//! [`ItemView`]s and render (and hash) outside the lock.

pub mod delta;
pub mod ids;
pub mod mail;
pub mod mail_delta;
pub mod mail_folders;
pub mod recycle;
pub mod sites;
pub mod tree;
pub mod upload;
pub mod write;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::content::ContentBlob;
use crate::faults::{Faults, Stats};

pub use delta::DeltaSession;
pub use upload::UploadSession;

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub upn: String,
    pub display_name: String,
    pub drive_id: Option<String>,
    /// Without one, mail routes answer `404 MailboxNotEnabledForRESTAPI`.
    pub has_mailbox: bool,
    /// Without an Exchange licence, mail routes answer `403`.
    pub licensed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Root,
    Folder,
    Package,
    File,
}

impl ItemKind {
    pub fn is_container(self) -> bool {
        !matches!(self, ItemKind::File)
    }

    pub fn admin_name(self) -> &'static str {
        match self {
            ItemKind::Root | ItemKind::Folder => "folder",
            ItemKind::Package => "package",
            ItemKind::File => "file",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    /// Stable GUID inside eTag/cTag, as ODfB formats them.
    pub guid: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub kind: ItemKind,
    pub blob: Option<Arc<ContentBlob>>,
    pub etag_ver: u64,
    pub ctag_ver: u64,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub created_seq: u64,
    pub changed_seq: u64,
    pub deleted: bool,
    pub hash_visible: bool,
    /// Major number of the current content version (`"3.0"` is 3).
    pub version: u64,
    /// Earlier content versions, oldest first (files only).
    pub history: Vec<PastVersion>,
    /// Explicit grants on this item (inherited ones live on ancestors).
    pub permissions: Vec<Permission>,
    /// Deleted with its folder under `omit_descendant_deletions`: delta never reports it.
    pub deletion_unreported: bool,
}

/// A content version that has been superseded; its bytes stay downloadable.
#[derive(Debug, Clone)]
pub struct PastVersion {
    pub number: u64,
    pub blob: Arc<ContentBlob>,
    pub modified: DateTime<Utc>,
}

/// One sharing grant to a user (`roles` such as `read`, `write`).
#[derive(Debug, Clone)]
pub struct Permission {
    pub id: String,
    pub roles: Vec<String>,
    pub email: String,
}

impl Item {
    pub fn etag(&self) -> String {
        format!("\"{{{}}},{}\"", self.guid.to_uppercase(), self.etag_ver)
    }

    pub fn ctag(&self) -> String {
        format!("\"c:{{{}}},{}\"", self.guid.to_uppercase(), self.ctag_ver)
    }
}

/// What a subscription watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    DriveRoot(String),
    /// Messages of a mailbox (`folder: None`) or of one folder.
    Messages {
        user_id: String,
        folder: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub watched: Watched,
    /// Created with `Prefer: IdType="ImmutableId"`: notifications name messages by immutable id.
    pub immutable_ids: bool,
    /// Created with `Prefer: includesecuritywebhooks`: sharing changes notify too.
    pub security_webhooks: bool,
    /// As subscribed, without a leading slash (echoed in notifications).
    pub resource: String,
    pub change_type: String,
    pub notification_url: String,
    pub lifecycle_url: Option<String>,
    pub expiration: DateTime<Utc>,
    pub client_state: Option<String>,
    pub application_id: String,
    pub creator_id: String,
    pub tls: String,
}

/// Everything a response needs about one item, copied out of the lock.
#[derive(Debug, Clone)]
pub struct ItemView {
    pub drive_id: String,
    /// `business` (OneDrive) or `documentLibrary` (SharePoint), for `parentReference`.
    pub drive_type: &'static str,
    pub id: String,
    pub name: String,
    pub kind: ItemKind,
    pub size: u64,
    pub etag: String,
    pub ctag: String,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub parent_id: Option<String>,
    /// `/a/b` of the parent (root is ``); `None` for the root itself.
    pub parent_path: Option<String>,
    pub child_count: usize,
    pub blob: Option<Arc<ContentBlob>>,
    pub hash_visible: bool,
    pub deleted: bool,
}

#[derive(Default)]
pub struct State {
    pub users: Vec<User>,
    pub drives: HashMap<String, tree::Drive>,
    /// Mailboxes by user id.
    pub mailboxes: HashMap<String, mail::Mailbox>,
    pub subscriptions: HashMap<String, Subscription>,
    pub sessions: HashMap<String, DeltaSession>,
    /// Open upload sessions by session id.
    pub uploads: HashMap<String, UploadSession>,
    /// Open attachment upload sessions by session id.
    pub mail_uploads: HashMap<String, mail::MailUpload>,
    pub faults: Faults,
    pub token_generation: u64,
    /// The app registrations, permissions as changed at runtime (`PATCH /admin/apps/{id}`).
    pub apps: Vec<crate::apps::SimApp>,
    pub stats: Stats,
    /// SharePoint sites, their libraries' drive ids, and the directory's groups.
    pub sites: sites::Sites,
}

impl State {
    pub fn user(&self, id_or_upn: &str) -> Option<&User> {
        let lower = id_or_upn.to_lowercase();
        self.users.iter().find(|u| u.id == id_or_upn || u.upn.to_lowercase() == lower)
    }

    /// Whether a file written now shows its hash at once (`hide_hashes`
    /// fault, `hash_missing_probability`).
    pub fn new_hash_visible(&self, missing_probability: f64) -> bool {
        !self.faults.hide_hashes && !ids::IdRng::random().chance(missing_probability)
    }

    /// Live subscriptions only; expired ones are dropped here (Graph deletes them).
    pub fn prune_subscriptions(&mut self, now: DateTime<Utc>) {
        self.subscriptions.retain(|_, s| s.expiration > now);
    }
}
