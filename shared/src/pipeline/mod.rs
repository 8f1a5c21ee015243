//! The steps of the backup pipeline, each a plain async function over capability traits so
//! that tests run them in-process against fakes and end to end against moto and the Graph
//! simulator. Lambda adapters live in `functions/`, the local event-source runner in
//! `infra/local`.

pub mod batch;
pub mod copier;
pub mod enumerator;
pub mod mailbox;
pub mod restorer;
pub mod scheduler;
pub mod webhook;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::graph::{
    DeltaCursor, DeltaLink, DeltaPage, Download, DriveItem, GraphClient, GraphError, MailFolder, MailFolderChange,
    MailFolderDeltaCursor, Message, MessageChange, MessageDeltaCursor, Recipient,
};
use crate::model::{Address, ContainerId, ContainerKind, ItemKind, ItemState, MailMeta};
use crate::store::{Catalog, StoreError};

/// What the enumerator and copier may ask of Graph: read-only drive access.
#[async_trait]
pub trait DriveReader: Send + Sync {
    async fn delta(&self, from: &DeltaCursor) -> Result<DeltaPage, GraphError>;
    async fn get_item(&self, drive_id: &str, item_id: &str) -> Result<Option<DriveItem>, GraphError>;
    async fn download(&self, drive_id: &str, item_id: &str, offset: u64) -> Result<Download, GraphError>;
}

#[async_trait]
impl DriveReader for GraphClient {
    async fn delta(&self, from: &DeltaCursor) -> Result<DeltaPage, GraphError> {
        GraphClient::delta(self, from).await
    }
    async fn get_item(&self, drive_id: &str, item_id: &str) -> Result<Option<DriveItem>, GraphError> {
        GraphClient::get_item(self, drive_id, item_id).await
    }
    async fn download(&self, drive_id: &str, item_id: &str, offset: u64) -> Result<Download, GraphError> {
        GraphClient::download(self, drive_id, item_id, offset).await
    }
}

/// One page of a mail delta feed (a mailbox's folders, or one folder's messages), as item
/// states: folders are `MailFolder`, messages `Message` with their metadata; what left the
/// feed comes back `deleted`. Links carry delta tokens: never logged, so no `Debug`.
pub struct MailPage {
    pub items: Vec<ItemState>,
    /// The next page of this pass.
    pub next: Option<String>,
    /// The link to start the next pass from (last page only).
    pub delta: Option<String>,
}

/// What the enumerator and copier may ask of Graph about a mailbox: read-only, immutable ids.
#[async_trait]
pub trait MailReader: Send + Sync {
    /// A page of the mailbox's folder delta: from the start, or from a stored link.
    async fn folder_delta(&self, user_id: &str, link: Option<&str>) -> Result<MailPage, GraphError>;
    /// A page of one folder's message delta. Removed messages carry that folder as parent.
    async fn message_delta(&self, user_id: &str, folder_id: &str, link: Option<&str>) -> Result<MailPage, GraphError>;
    /// The message's state now, wherever it is; `None` if it is gone.
    async fn message(&self, user_id: &str, message_id: &str) -> Result<Option<ItemState>, GraphError>;
    /// The message's MIME as Graph serves it (`$value`).
    async fn mime(&self, user_id: &str, message_id: &str) -> Result<Download, GraphError>;
    /// The id of the mailbox's root folder (`msgfolderroot`): the parent of its top-level
    /// folders, which no folder delta lists. `None` if the mailbox is gone.
    async fn root_folder_id(&self, user_id: &str) -> Result<Option<String>, GraphError>;
}

#[async_trait]
impl MailReader for GraphClient {
    async fn root_folder_id(&self, user_id: &str) -> Result<Option<String>, GraphError> {
        Ok(self.mail_folder(user_id, "msgfolderroot").await?.map(|f| f.id))
    }

    async fn folder_delta(&self, user_id: &str, link: Option<&str>) -> Result<MailPage, GraphError> {
        let cursor = match link {
            Some(l) => MailFolderDeltaCursor::Link(DeltaLink::new(l)),
            None => MailFolderDeltaCursor::Start { user_id: user_id.to_owned() },
        };
        let page = self.mail_folders_delta(&cursor).await?;
        let items = page
            .changes
            .into_iter()
            .map(|change| match change {
                MailFolderChange::Upsert(f) => mail_folder_state(f),
                MailFolderChange::Removed { id } => removed(id, ItemKind::MailFolder, None),
            })
            .collect();
        Ok(MailPage { items, next: link_text(page.next), delta: link_text(page.delta_link) })
    }

    async fn message_delta(&self, user_id: &str, folder_id: &str, link: Option<&str>) -> Result<MailPage, GraphError> {
        let cursor = match link {
            Some(l) => MessageDeltaCursor::Link(DeltaLink::new(l)),
            None => MessageDeltaCursor::Start { user_id: user_id.to_owned(), folder_id: folder_id.to_owned() },
        };
        let page = GraphClient::message_delta(self, &cursor).await?;
        let items = page
            .changes
            .into_iter()
            .map(|change| match change {
                MessageChange::Upsert(m) => message_state(m),
                MessageChange::Removed { id } => removed(id, ItemKind::Message, Some(folder_id)),
            })
            .collect();
        Ok(MailPage { items, next: link_text(page.next), delta: link_text(page.delta_link) })
    }

    async fn message(&self, user_id: &str, message_id: &str) -> Result<Option<ItemState>, GraphError> {
        Ok(self.get_message(user_id, message_id).await?.map(message_state))
    }

    async fn mime(&self, user_id: &str, message_id: &str) -> Result<Download, GraphError> {
        self.message_mime(user_id, message_id).await
    }
}

fn link_text(link: Option<DeltaLink>) -> Option<String> {
    link.map(|l| l.as_str().to_owned())
}

fn removed(id: String, kind: ItemKind, parent: Option<&str>) -> ItemState {
    ItemState {
        id,
        kind,
        name: None,
        parent_id: parent.map(str::to_owned),
        etag: None,
        ctag: None,
        size: None,
        quick_xor_hash: None,
        modified: None,
        deleted: true,
        mail: None,
    }
}

/// Our view of a Graph mail folder (its version marker is derived by the enumerator).
pub fn mail_folder_state(f: MailFolder) -> ItemState {
    ItemState {
        id: f.id,
        kind: ItemKind::MailFolder,
        name: Some(f.display_name),
        parent_id: f.parent_folder_id,
        etag: None,
        ctag: None,
        size: None,
        quick_xor_hash: None,
        modified: None,
        deleted: false,
        mail: None,
    }
}

/// Our view of a Graph message: `changeKey` is its version, the subject its name.
pub fn message_state(m: Message) -> ItemState {
    let address = |r: Recipient| Address { name: r.name, address: r.address };
    let meta = MailMeta {
        subject: m.subject.clone(),
        from: m.from.map(address),
        to: m.to.into_iter().map(address).collect(),
        cc: m.cc.into_iter().map(address).collect(),
        received: m.received,
        sent: m.sent,
        internet_message_id: m.internet_message_id,
        conversation_id: m.conversation_id,
        is_read: m.is_read,
        is_draft: m.is_draft,
        flag: m.flag_status,
        importance: m.importance,
        categories: m.categories,
        has_attachments: m.has_attachments,
        attachments: Vec::new(),
    };
    ItemState {
        id: m.id,
        kind: ItemKind::Message,
        name: m.subject,
        parent_id: m.parent_folder_id,
        etag: m.change_key,
        ctag: None,
        size: None,
        quick_xor_hash: None,
        modified: m.last_modified.or(m.received),
        deleted: false,
        mail: Some(meta),
    }
}

/// Errors of a pipeline step, classified for the queue adapters.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bytes (hash, size, or what Graph echoes back) differ from the state vouched for;
    /// retried, never recorded.
    #[error("content mismatch: {0}")]
    ContentMismatch(String),
    /// Something this step depends on is not in place yet (the parent folder is not restored
    /// yet, a folder Graph reports is not listed yet); retried.
    #[error("not ready: {0}")]
    NotReady(String),
    /// A queue message that cannot be parsed, has an unknown schema version or names a step
    /// its job does not have.
    #[error("bad queue message: {0}")]
    BadMessage(String),
    /// What the job needs is not there and will not appear by retrying: the container was
    /// never enumerated, the restore job is unknown, a version has no content, an item has
    /// no eTag or no folder, a message's folder is gone from the mailbox.
    #[error("missing data: {0}")]
    MissingData(String),
    /// An invariant of our own code broke (serialising our own types, a closed upload).
    #[error("internal error: {0}")]
    Internal(String),
}

impl PipelineError {
    /// Worth another delivery of the same message.
    pub fn is_retryable(&self) -> bool {
        match self {
            PipelineError::Graph(e) => e.is_retryable(),
            PipelineError::Store(e) => e.is_retryable(),
            PipelineError::ContentMismatch(_) | PipelineError::NotReady(_) => true,
            PipelineError::BadMessage(_) | PipelineError::MissingData(_) | PipelineError::Internal(_) => false,
        }
    }
}

/// The resource name under which drive throttling is shared by every Lambda instance.
pub const DRIVE_RESOURCE: &str = "drive";

/// Where Graph's throttling of a container is shared: a tenant's drives share SharePoint's
/// budget; Exchange throttles each mailbox on its own.
pub fn throttle_resource(c: &ContainerId) -> String {
    match c.kind {
        ContainerKind::Drive => DRIVE_RESOURCE.to_owned(),
        ContainerKind::Mailbox => format!("mailbox.{}", crate::keys::opaque_id(&c.graph_id)),
    }
}

/// Delay until Graph may be called again for this container, if we are throttled.
pub async fn throttle_delay(
    catalog: &dyn Catalog,
    c: &ContainerId,
    now: DateTime<Utc>,
) -> Result<Option<std::time::Duration>, StoreError> {
    Ok(catalog
        .throttled_until(&c.tenant_id, &throttle_resource(c))
        .await?
        .filter(|until| *until > now)
        .and_then(|until| (until - now).to_std().ok()))
}

/// Our view of a Graph drive item.
pub fn item_state(item: &DriveItem) -> ItemState {
    use crate::graph::ItemKind as G;
    ItemState {
        id: item.id.clone(),
        kind: match item.kind {
            G::File => ItemKind::File,
            G::Folder => ItemKind::Folder,
            G::Package => ItemKind::Package,
            G::Root => ItemKind::Root,
        },
        name: item.name.clone(),
        parent_id: item.parent_id.clone(),
        etag: item.etag.clone(),
        ctag: item.ctag.clone(),
        size: item.size,
        quick_xor_hash: item.quick_xor_hash.clone(),
        modified: item.last_modified,
        deleted: item.deleted,
        mail: None,
    }
}

#[cfg(test)]
mod mail_bad_input_tests;
#[cfg(test)]
mod mail_tests;
#[cfg(test)]
mod scheduler_tests;
#[cfg(test)]
mod tests;
