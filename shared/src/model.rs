//! Serialisable types that cross a boundary: queue messages, catalog rows and the vault's
//! immutable version records. Each carries a schema version `v`; readers reject versions
//! they do not know instead of guessing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod keeper;
mod queue;
mod restore;

pub use keeper::{ExtendReport, FinishedRun, KeeperCursor, KeeperRun, MAX_PROBLEMS, VaultProblem, VerifyReport};
pub use queue::{
    ChangeJob, ChangeReason, ItemJob, LifecycleJob, Renewal, RestoreStep, RestoreTask, SchedulerWork, SiteRef,
    UploadResume, UserRef,
};
pub use restore::{
    ConflictPolicy, ExportPart, RestoreItemReport, RestoreJob, RestoreOutcome, RestorePlan, RestoreScope,
    RestoreStatus, RestoreTarget,
};

/// Schema version of every message and record written by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// What kind of container an id names.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ContainerKind {
    /// A OneDrive or a SharePoint document library; `graph_id` is the Graph drive id.
    #[default]
    Drive,
    /// An Exchange Online mailbox; `graph_id` is its user's Graph id.
    Mailbox,
}

impl ContainerKind {
    pub fn is_drive(&self) -> bool {
        *self == ContainerKind::Drive
    }
}

/// The unit of change tracking and serialisation: one drive (OneDrive or SharePoint library)
/// or one mailbox (which tracks one delta link per mail folder inside it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId {
    pub tenant_id: String,
    /// The container's Graph id: a drive id, or a mailbox's user id (see `kind`).
    // Still `drive_id` on the wire: queue messages, catalog rows and immutable vault records
    // already written carry that name.
    #[serde(rename = "drive_id")]
    pub graph_id: String,
    /// Absent (a drive) in everything written before mailboxes existed. Serialised as
    /// `container_kind`: item keys are flattened into documents that have a `kind` of their own.
    #[serde(rename = "container_kind", default, skip_serializing_if = "ContainerKind::is_drive")]
    pub kind: ContainerKind,
}

impl ContainerId {
    pub fn new(tenant_id: impl Into<String>, drive_id: impl Into<String>) -> Self {
        Self { tenant_id: tenant_id.into(), graph_id: drive_id.into(), kind: ContainerKind::Drive }
    }

    /// The mailbox of a user. User ids are GUIDs, which Graph writes in either case (a
    /// notification's `Users/{id}` among them): they are kept lower case, so one mailbox
    /// never gets two sets of keys.
    pub fn mailbox(tenant_id: impl Into<String>, user_id: &str) -> Self {
        Self { tenant_id: tenant_id.into(), graph_id: user_id.to_ascii_lowercase(), kind: ContainerKind::Mailbox }
    }

    /// The tag a subscription's clientState carries and a lifecycle event is matched by.
    pub fn tag(&self) -> String {
        crate::keys::opaque_id(&self.scoped_id())
    }

    pub fn is_mailbox(&self) -> bool {
        self.kind == ContainerKind::Mailbox
    }

    /// The container's id among all containers of the tenant, for keys: a drive's own id,
    /// `mailbox:{user id}` for a mailbox (a user id and a drive id never share a key).
    pub fn scoped_id(&self) -> std::borrow::Cow<'_, str> {
        match self.kind {
            ContainerKind::Drive => std::borrow::Cow::Borrowed(&self.graph_id),
            ContainerKind::Mailbox => std::borrow::Cow::Owned(format!("mailbox:{}", self.graph_id)),
        }
    }

    /// FIFO message group of the `changes` queue: one enumeration at a time per container.
    pub fn group_id(&self) -> String {
        match self.kind {
            ContainerKind::Drive => format!("drive.{}", crate::keys::opaque_id(&self.graph_id)),
            ContainerKind::Mailbox => format!("mailbox.{}", crate::keys::opaque_id(&self.graph_id)),
        }
    }

    pub fn item(&self, item_id: impl Into<String>) -> ItemKey {
        ItemKey { container: self.clone(), item_id: item_id.into() }
    }
}

/// One item (file, folder, package) of a container, by Graph id.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey {
    #[serde(flatten)]
    pub container: ContainerId,
    pub item_id: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    File,
    Folder,
    /// OneNote-style package: folder-like, its content is its children.
    Package,
    Root,
    /// A mail folder; its children are folders and messages.
    MailFolder,
    /// A mail message; its content is its MIME (RFC 5322) bytes.
    Message,
}

impl ItemKind {
    pub fn has_content(self) -> bool {
        matches!(self, ItemKind::File | ItemKind::Message)
    }

    /// Holds other items: a deleted one takes them with it.
    pub fn is_container(self) -> bool {
        matches!(self, ItemKind::Folder | ItemKind::Package | ItemKind::MailFolder)
    }
}

/// A mailbox address as Graph gives it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Address {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// An attachment as the message's MIME declares it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct AttachmentMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    pub size: u64,
    #[serde(default)]
    pub inline: bool,
}

/// What the catalog keeps of a message beside its MIME: what people search and browse by,
/// and the state a restore puts back (read, flag, times) that the MIME does not carry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct MailMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internet_message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub is_read: bool,
    #[serde(default)]
    pub is_draft: bool,
    /// `notFlagged`, `flagged` or `complete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub importance: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    #[serde(default)]
    pub has_attachments: bool,
    /// Filled by the copier from the MIME it stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentMeta>,
    /// What Graph listed as the message's attachments when its MIME was stored (a hash of
    /// their ids, names, sizes and inline flags), asked before the `$value` download; absent
    /// for a message without file attachments. A later state with other attachments lists
    /// differently, so its MIME is downloaded again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment_fingerprint: Option<String>,
}

/// An item's state as Graph reported it (delta or item GET). Names are data, never keys.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ItemState {
    pub id: String,
    pub kind: ItemKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quick_xor_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<DateTime<Utc>>,
    /// Graph's `createdDateTime` (drive items): what a restore gives a recreated file back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    #[serde(default)]
    pub deleted: bool,
    /// Messages only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<MailMeta>,
}

/// How strongly a version's content is known to match Microsoft 365.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    /// Bytes hashed while streaming matched Graph's quickXorHash and size.
    QuickXor,
    /// Graph gave no hash yet: size matched, SHA-256 recorded; a later sweep re-checks.
    Unverified,
    /// Folders, packages and tombstones have no content.
    NoContent,
    /// Graph publishes no hash of this content (a message's MIME): the SHA-256 of the bytes
    /// exactly as Graph served them, re-checked on every read.
    Sha256,
    /// Graph serves other bytes than its size and quickXorHash describe (files under a
    /// sensitivity label, Office files SharePoint rewrote), the same on two downloads with the
    /// eTag unchanged: the bytes as served, by their SHA-256, with the reason in the row's
    /// `note`. Never a verified copy of Graph's state.
    AsServed,
}

/// Where a vault object is: key plus the S3 version id we read back by.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub key: String,
    pub version_id: String,
}

/// Content of a file version as stored in the vault.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ContentRef {
    pub object: ObjectRef,
    pub size: u64,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quick_xor_hash: Option<String>,
}

/// One backed-up state of an item, or a tombstone. Identity: (item, `version`), where
/// `version` is Graph's eTag, or `deleted@<observed time>` for a tombstone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ItemVersion {
    pub v: u32,
    #[serde(flatten)]
    pub key: ItemKey,
    pub version: String,
    pub kind: ItemKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctag: Option<String>,
    /// Microsoft 365 time of this state: lastModifiedDateTime, or when a deletion was observed.
    pub modified: DateTime<Utc>,
    /// When the item was created in Microsoft 365 (drive items; absent in versions recorded
    /// before it was kept): a restore that recreates the file gives it this date back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    /// When this backup committed the version.
    pub captured_at: DateTime<Utc>,
    pub deleted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentRef>,
    pub verification: Verification,
    /// Messages only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<MailMeta>,
    /// When we asked Graph for this state (absent in records written before it was kept:
    /// `captured_at` stands in). Orders states whose Microsoft 365 times do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<DateTime<Utc>>,
    /// Set when this row's place in the item's history is not its Microsoft 365 time: a
    /// state that became current again (back from the recycle bin, or given an older
    /// modification time), a state verified after it was first recorded, a state known to
    /// precede another of the same instant. As-of reads and the head order rows by
    /// [`ItemVersion::order_time`] (ARCHITECTURE.md, Time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_from: Option<DateTime<Utc>>,
    /// Why this row exists beside another of the same version, or why its bytes are not
    /// Graph's (an "as served" state): for people, never parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl ItemVersion {
    pub fn tombstone_version(observed_at: DateTime<Utc>) -> String {
        format!("deleted@{}", observed_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }

    /// Where this row sits in its item's history: from when it is the item's state.
    pub fn order_time(&self) -> DateTime<Utc> {
        self.current_from.unwrap_or(self.modified)
    }

    /// When we asked Graph for this state.
    pub fn observed(&self) -> DateTime<Utc> {
        self.observed_at.unwrap_or(self.captured_at)
    }

    /// The row's identity within its item: the version marker, and for a row placed away from
    /// its Microsoft 365 time, that place (so a state held before that is current again gets a
    /// row, and a record, of its own).
    pub fn row_id(&self) -> std::borrow::Cow<'_, str> {
        match self.current_from {
            None => std::borrow::Cow::Borrowed(&self.version),
            Some(t) => std::borrow::Cow::Owned(format!(
                "{}@{}",
                self.version,
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            )),
        }
    }
}

/// The newest committed version of an item, kept beside its history for one-read checks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ItemHead {
    pub current: ItemVersion,
    /// The immutable record of `current` in the vault.
    pub record: ObjectRef,
    /// How far the lock extension task last locked `current`'s objects (its record and
    /// content); `None` until it has, or once the head moved to another version. Mutable
    /// state beside the immutable version, never in its record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<DateTime<Utc>>,
}

impl ItemHead {
    /// The vault objects `current` needs: its record, then its content if it has any.
    pub fn objects(&self) -> Vec<&ObjectRef> {
        std::iter::once(&self.record).chain(self.current.content.as_ref().map(|c| &c.object)).collect()
    }
}

/// Enumerator-owned delta state of a container. Links carry tokens: never logged.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncState {
    /// Link to resume from after the last complete enumeration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_link: Option<String>,
    /// Checkpoint inside an enumeration in progress: the next page to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
    /// Set while a full enumeration (first crawl, resync, reconcile) is in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_scan: Option<FullScan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enumeration_started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub items_enqueued: u64,
    /// Graph id of the drive's root folder (parent of the top-level items).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_id: Option<String>,
    /// Mailboxes: `delta_link`/`next_link` above follow the folder delta; each folder's
    /// message delta is tracked here, by folder id.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub mail_folders: std::collections::BTreeMap<String, FolderSync>,
    /// Mailboxes: when the folder delta last reached its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folders_synced_at: Option<DateTime<Utc>>,
    /// Mailboxes: Graph refused the whole mailbox at the last attempt (deleted, unlicensed,
    /// access denied). Cleared by the next pass that reaches its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<Problem>,
}

/// What stands in the way of protecting something, and since when: a container Graph
/// refuses (what was backed up stays current), a subscription Graph would not create, a
/// user whose drive or mailbox discovery could not resolve.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Graph's answer (e.g. `HTTP 404 MailboxNotEnabledForRESTAPI`) or ours.
    pub reason: String,
    pub since: DateTime<Utc>,
}

impl Problem {
    /// The same problem keeps the moment it began; a new one starts now.
    pub fn continued(previous: Option<&Problem>, reason: String, now: DateTime<Utc>) -> Self {
        let since = previous.filter(|p| p.reason == reason).map_or(now, |p| p.since);
        Self { reason, since }
    }
}

/// The message delta of one mail folder. Links carry tokens: never logged.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderSync {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
    /// When this folder's delta last reached its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FullScan {
    pub epoch: String,
    pub started_at: DateTime<Utc>,
    /// Record deletions of items the scan did not see (false for the very first crawl).
    pub reconcile_deletions: bool,
}

/// Scheduler-owned registry row of a protected container.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ContainerRecord {
    pub container: ContainerId,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_principal_name: Option<String>,
    pub discovered_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_expires: Option<DateTime<Utc>>,
    /// Why the container has no working subscription (Graph refused to create or renew it):
    /// it is then backed up by sweeps alone. Cleared when a subscription is in place again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
    /// A SharePoint document library: the site it belongs to (`user_id` is then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<SiteLink>,
}

/// The site a library container belongs to, and the library's name in it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SiteLink {
    pub site_id: String,
    pub library: String,
}

/// A SharePoint site discovery found or the operator named (`Sites.Selected`): what it is,
/// its libraries (protected or left out, with why), and what keeps it from being backed up.
/// Its libraries are containers of their own ([`ContainerRecord::site`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SiteRecord {
    pub v: u32,
    pub tenant_id: String,
    /// Graph's site id, `hostname,{collection guid},{web guid}`: the key, never the URL.
    pub site_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_url: Option<String>,
    /// The parent site of a subsite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    pub discovered_at: DateTime<Utc>,
    #[serde(default)]
    pub libraries: Vec<LibraryRef>,
    /// Microsoft 365 Archive status (`recentlyArchived`, `fullyArchived`, `reactivating`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_status: Option<String>,
    /// When `/sites/delta` reported the site deleted: its libraries keep every backed-up
    /// version and are no longer enumerated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// Why the site (or some of its libraries) cannot be backed up: access denied, archived,
    /// not found, throttled beyond the retries. Cleared when discovery reads it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

/// A library of a site as discovery last listed it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LibraryRef {
    pub drive_id: String,
    pub name: String,
    /// Graph's `system` facet: hidden from users' library lists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub system: bool,
    /// Why it is not backed up (a hidden system library left out by policy); `None` when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded: Option<String>,
}

/// What discovery looks up for each user.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    Drive,
    Mailbox,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Drive => "drive",
            Service::Mailbox => "mailbox",
        }
    }
}

/// A user's drive or mailbox that discovery could not resolve (Graph refused the lookup, the
/// user vanished midway, throttling outlasted the retries): it has no container yet, so
/// this row is what makes it visible instead of silently missing. Removed once resolved.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    pub tenant_id: String,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_principal_name: Option<String>,
    pub service: Service,
    pub problem: Problem,
}

/// An item that could not be backed up, reported with a reason, never silently skipped.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ItemFailure {
    #[serde(flatten)]
    pub key: ItemKey,
    pub reason: String,
    pub attempts: u32,
    pub last_attempt: DateTime<Utc>,
}

#[cfg(test)]
mod serde_tests {
    use super::*;

    #[test]
    fn a_mailbox_item_version_round_trips_with_both_kinds() {
        let key = ContainerId::mailbox("t", "user-1").item("m1");
        let version = ItemVersion {
            created: None,
            v: SCHEMA_VERSION,
            key: key.clone(),
            version: "ck-1".into(),
            kind: ItemKind::Message,
            name: None,
            parent_id: Some("inbox".into()),
            ctag: None,
            modified: Utc::now(),
            captured_at: Utc::now(),
            content: None,
            verification: Verification::NoContent,
            deleted: false,
            mail: None,
            observed_at: None,
            current_from: None,
            note: None,
        };
        let json = serde_json::to_string(&version).expect("serialise");
        let back: ItemVersion = serde_json::from_str(&json).expect("deserialise");
        assert_eq!((back.key, back.kind), (key, ItemKind::Message));
        // A drive's key serialises as before mailboxes existed.
        let drive = serde_json::to_value(ContainerId::new("t", "d")).expect("serialise");
        assert_eq!(drive, serde_json::json!({"tenant_id": "t", "drive_id": "d"}));
    }
}
