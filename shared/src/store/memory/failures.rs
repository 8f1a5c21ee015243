//! Items that failed to back up; cleared by flag, never deleted.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::MemoryCatalog;
use crate::model::{ContainerId, ItemFailure, ItemKey};
use crate::store::{Failures, StoreError};

/// An item's failure; cleared by `resolved`, never removed.
pub(super) struct FailureRow {
    reason: String,
    attempts: u32,
    last_attempt: DateTime<Utc>,
    resolved: bool,
}

#[async_trait]
impl Failures for MemoryCatalog {
    async fn record_failure(&self, item: &ItemKey, reason: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut state = self.write();
        let row = state.failures.entry(item.clone()).or_insert(FailureRow {
            reason: String::new(),
            attempts: 0,
            last_attempt: at,
            resolved: false,
        });
        row.reason = reason.to_owned();
        row.attempts += 1;
        row.last_attempt = at;
        row.resolved = false;
        Ok(())
    }

    async fn clear_failure(&self, item: &ItemKey) -> Result<(), StoreError> {
        if let Some(row) = self.write().failures.get_mut(item) {
            row.resolved = true;
        }
        Ok(())
    }

    async fn failures(&self, container: &ContainerId) -> Result<Vec<ItemFailure>, StoreError> {
        let state = self.read();
        Ok(state
            .failures
            .iter()
            .filter(|(k, row)| &k.container == container && !row.resolved)
            .map(|(k, row)| ItemFailure {
                key: k.clone(),
                reason: row.reason.clone(),
                attempts: row.attempts,
                last_attempt: row.last_attempt,
            })
            .collect())
    }
}
