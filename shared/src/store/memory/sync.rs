//! Each container's sync state, and what its full scans saw.

use std::collections::HashSet;

use async_trait::async_trait;

use super::MemoryCatalog;
use crate::model::{ContainerId, SyncState};
use crate::store::{SEEN_MARKS_PER_ROW, StoreError, SyncStates, seen_mark};

#[async_trait]
impl SyncStates for MemoryCatalog {
    async fn sync_state(&self, container: &ContainerId) -> Result<SyncState, StoreError> {
        Ok(self.read().sync.get(container).cloned().unwrap_or_default())
    }

    async fn put_sync_state(&self, container: &ContainerId, state: &SyncState) -> Result<(), StoreError> {
        self.write().sync.insert(container.clone(), state.clone());
        Ok(())
    }

    async fn record_seen(&self, container: &ContainerId, epoch: &str, item_ids: &[String]) -> Result<(), StoreError> {
        for chunk in item_ids.chunks(SEEN_MARKS_PER_ROW) {
            let mut state = self.write();
            let seen = state.seen.entry((container.clone(), epoch.to_owned())).or_default();
            seen.extend(chunk.iter().map(|id| seen_mark(id)));
        }
        Ok(())
    }

    async fn seen_in_scan(&self, container: &ContainerId, epoch: &str) -> Result<HashSet<String>, StoreError> {
        Ok(self.read().seen.get(&(container.clone(), epoch.to_owned())).cloned().unwrap_or_default())
    }
}
