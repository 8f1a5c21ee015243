//! Each container's sync state.

use async_trait::async_trait;

use super::MemoryCatalog;
use crate::model::{ContainerId, SyncState};
use crate::store::{StoreError, SyncStates};

#[async_trait]
impl SyncStates for MemoryCatalog {
    async fn sync_state(&self, container: &ContainerId) -> Result<SyncState, StoreError> {
        Ok(self.read().sync.get(container).cloned().unwrap_or_default())
    }

    async fn put_sync_state(&self, container: &ContainerId, state: &SyncState) -> Result<(), StoreError> {
        self.write().sync.insert(container.clone(), state.clone());
        Ok(())
    }
}
