//! What the enumerator and copier may ask of Graph: read-only capability traits, with
//! `GraphClient` as their real adapter (tests script fakes).

use std::time::Duration;

use async_trait::async_trait;

use super::state::{mail_folder_state, message_state, removed};
use crate::graph::{
    DeltaCursor, DeltaLink, DeltaPage, Download, DriveItem, GraphClient, GraphError, MailFolderChange,
    MailFolderDeltaCursor, MessageChange, MessageDeltaCursor,
};
use crate::model::{ItemKind, ItemState};

/// What the enumerator and copier may ask of Graph: read-only drive access.
#[async_trait]
pub trait DriveReader: Send + Sync {
    async fn delta(&self, from: &DeltaCursor) -> Result<DeltaPage, GraphError>;
    async fn get_item(&self, drive_id: &str, item_id: &str) -> Result<Option<DriveItem>, GraphError>;
    async fn download(&self, drive_id: &str, item_id: &str, offset: u64) -> Result<Download, GraphError>;
    /// How long the tenant's drive work should pause because SharePoint's resource-unit
    /// budget, as Graph last reported it, is down to its reserve (`GraphClient::budget_pause`).
    /// A reader that sees no budget never asks for a pause.
    fn budget_pause(&self) -> Option<Duration> {
        None
    }
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
    fn budget_pause(&self) -> Option<Duration> {
        GraphClient::budget_pause(self)
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
    /// A fingerprint of the message's attachments as Graph lists them (no content); `None`
    /// if the message is gone.
    async fn attachment_fingerprint(&self, user_id: &str, message_id: &str) -> Result<Option<String>, GraphError>;
    /// A mail folder's state now (`GET mailFolders/{id}`); `None` if it is gone.
    async fn mail_folder(&self, user_id: &str, folder_id: &str) -> Result<Option<ItemState>, GraphError>;
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

    async fn attachment_fingerprint(&self, user_id: &str, message_id: &str) -> Result<Option<String>, GraphError> {
        GraphClient::attachment_fingerprint(self, user_id, message_id).await
    }

    async fn mail_folder(&self, user_id: &str, folder_id: &str) -> Result<Option<ItemState>, GraphError> {
        Ok(GraphClient::mail_folder(self, user_id, folder_id).await?.map(mail_folder_state))
    }
}

fn link_text(link: Option<DeltaLink>) -> Option<String> {
    link.map(|l| l.as_str().to_owned())
}
