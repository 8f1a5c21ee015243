//! Each container's sync state (`C#` / `SYNC`): delta link, checkpoint, full-scan epoch.

use async_trait::async_trait;

use super::keys::{SYNC_SK, container_pk};
use super::{DynamoCatalog, json, key, parse_doc};
use crate::model::{ContainerId, SyncState};
use crate::store::{StoreError, SyncStates};

#[async_trait]
impl SyncStates for DynamoCatalog {
    async fn sync_state(&self, container: &ContainerId) -> Result<SyncState, StoreError> {
        match self.get_row(key(container_pk(container), SYNC_SK), true).await? {
            Some(row) => parse_doc(&row, "doc"),
            None => Ok(SyncState::default()),
        }
    }

    async fn put_sync_state(&self, container: &ContainerId, state: &SyncState) -> Result<(), StoreError> {
        let mut row = key(container_pk(container), SYNC_SK);
        row.insert("doc".to_owned(), json(state)?);
        self.put_row(row).await
    }
}
