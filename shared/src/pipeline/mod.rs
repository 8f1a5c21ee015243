//! The steps of the backup pipeline, each a plain async function over capability traits so
//! that tests run them in-process against fakes and end to end against moto and the Graph
//! simulator. Lambda adapters live in `functions/`, the local event-source runner in
//! `infra/local`.

pub mod batch;
pub mod copier;
pub mod enumerator;
pub mod restorer;
pub mod scheduler;
pub mod webhook;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::graph::{DeltaCursor, DeltaPage, Download, DriveItem, GraphClient, GraphError};
use crate::model::{ItemKind, ItemState};
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

/// Errors of a pipeline step, classified for the queue adapters.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bytes did not match any state Graph vouches for; retried, never recorded.
    #[error("content of item does not match its state: {0}")]
    Mismatch(String),
    #[error("malformed job: {0}")]
    BadJob(String),
}

impl PipelineError {
    /// Worth another delivery of the same message.
    pub fn is_retryable(&self) -> bool {
        match self {
            PipelineError::Graph(e) => e.is_retryable(),
            PipelineError::Store(e) => e.is_retryable(),
            PipelineError::Mismatch(_) => true,
            PipelineError::BadJob(_) => false,
        }
    }
}

/// The resource name under which drive throttling is shared by every Lambda instance.
pub const DRIVE_RESOURCE: &str = "drive";

/// Delay until Graph may be called again for this tenant's drives, if we are throttled.
pub async fn throttle_delay(
    catalog: &dyn Catalog,
    tenant_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<std::time::Duration>, StoreError> {
    Ok(catalog
        .throttled_until(tenant_id, DRIVE_RESOURCE)
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
mod tests;
