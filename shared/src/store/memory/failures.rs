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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Coordination;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("valid time").with_timezone(&Utc)
    }

    #[tokio::test]
    async fn throttle_only_moves_later_and_failures_clear_without_deleting() {
        let catalog = MemoryCatalog::new();
        catalog.throttle("t", "drive", at("2024-05-01T10:05:00Z")).await.expect("throttle");
        catalog.throttle("t", "drive", at("2024-05-01T10:01:00Z")).await.expect("earlier");
        assert_eq!(catalog.throttled_until("t", "drive").await.expect("read"), Some(at("2024-05-01T10:05:00Z")));

        let c = ContainerId::new("t", "d");
        catalog.record_failure(&c.item("a"), "timeout", at("2024-05-01T10:00:00Z")).await.expect("fail a");
        catalog.record_failure(&c.item("a"), "timeout", at("2024-05-01T10:01:00Z")).await.expect("fail a again");
        catalog.record_failure(&c.item("b"), "403", at("2024-05-01T10:00:00Z")).await.expect("fail b");
        catalog.clear_failure(&c.item("b")).await.expect("clear b");
        let failures = catalog.failures(&c).await.expect("failures");
        assert_eq!(failures.len(), 1);
        assert_eq!((failures[0].key.item_id.as_str(), failures[0].attempts), ("a", 2));
    }
}
