//! Each item's versions and its head, with the DynamoDB adapter's conditional writes.

use std::collections::HashMap;
use std::ops::Bound;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::index::Changed;
use super::{MemoryCatalog, injected, millis, take_fault, version_sort_key};
use crate::model::{ContainerId, ItemHead, ItemKey, ItemVersion, ObjectRef};
use crate::store::{Commit, ItemHistory, Listing, Page, StoreError};

/// An item's head and its version's place in the item's history.
#[derive(Clone)]
pub(super) struct HeadRow {
    pub(super) head: ItemHead,
    pub(super) order: (String, String),
}

#[async_trait]
impl ItemHistory for MemoryCatalog {
    async fn head(&self, item: &ItemKey) -> Result<Option<ItemHead>, StoreError> {
        Ok(self.read().table.heads.get(item).map(|row| row.head.clone()))
    }

    async fn heads(
        &self,
        container: &ContainerId,
        item_ids: &[String],
    ) -> Result<HashMap<String, ItemHead>, StoreError> {
        let state = self.read();
        Ok(item_ids
            .iter()
            .filter_map(|id| {
                state.table.heads.get(&container.item(id.as_str())).map(|row| (id.clone(), row.head.clone()))
            })
            .collect())
    }

    /// An index read (`GSI1` `H#`).
    async fn list_heads(&self, container: &ContainerId) -> Result<Vec<ItemHead>, StoreError> {
        let state = self.read();
        Ok(state
            .index()
            .heads
            .iter()
            .filter(|(k, _)| &k.container == container)
            .map(|(_, row)| row.head.clone())
            .collect())
    }

    /// An index read (`GSI1` `H#`), in item id order.
    async fn heads_page(
        &self,
        container: &ContainerId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ItemHead>, StoreError> {
        let listing = Listing::heads(container);
        let after = listing.resume(cursor)?;
        let state = self.read();
        let from = match &after {
            Some(id) => Bound::Excluded(container.item(id.as_str())),
            None => Bound::Included(container.item("")),
        };
        let mut heads =
            state.index().heads.range((from, Bound::Unbounded)).take_while(|(k, _)| &k.container == container);
        let items: Vec<ItemHead> = heads.by_ref().take(limit.max(1)).map(|(_, row)| row.head.clone()).collect();
        let more = heads.next().is_some();
        let next = items.last().filter(|_| more).map(|h| listing.cursor(&h.current.key.item_id));
        Ok(Page { items, next })
    }

    async fn commit_version(&self, version: &ItemVersion, record: &ObjectRef) -> Result<Commit, StoreError> {
        let sort_key = version_sort_key(version.order_time(), &version.version);
        let commit = {
            let mut state = self.write();
            let history = state.table.versions.entry(version.key.clone()).or_default();
            if history.contains_key(&sort_key) {
                Commit::AlreadyCommitted
            } else {
                history.insert(sort_key.clone(), version.clone());
                state.changed(Changed::Version(&version.key, &sort_key));
                Commit::Created
            }
        };
        let mut state = self.write();
        if take_fault(&mut state.fail_head_updates) {
            return Err(injected("dynamodb"));
        }
        // As in DynamoDB: the head is the row latest in the item's history, so a commit
        // advances it only past an earlier row; a redelivery re-advances (repairing a crash
        // between the writes) and is a no-op otherwise.
        let advance = state.table.heads.get(&version.key).is_none_or(|row| row.order < sort_key);
        if advance {
            // A new version's objects are not locked by the keeper yet: the field goes.
            let head = ItemHead { current: version.clone(), record: record.clone(), locked_until: None };
            state.table.heads.insert(version.key.clone(), HeadRow { head, order: sort_key });
            state.changed(Changed::Head(&version.key));
        }
        Ok(commit)
    }

    async fn versions(&self, item: &ItemKey, limit: usize) -> Result<Vec<ItemVersion>, StoreError> {
        let state = self.read();
        Ok(state.table.versions.get(item).map(|h| h.values().rev().take(limit).cloned().collect()).unwrap_or_default())
    }

    async fn version_at(&self, item: &ItemKey, at: DateTime<Utc>) -> Result<Option<ItemVersion>, StoreError> {
        let bound = millis(at);
        let state = self.read();
        Ok(state
            .table
            .versions
            .get(item)
            .and_then(|h| h.iter().rev().find(|((t, _), _)| *t <= bound))
            .map(|(_, v)| v.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ItemKind, SCHEMA_VERSION, Verification};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("valid time").with_timezone(&Utc)
    }

    fn version(item: &ItemKey, etag: &str, modified: &str) -> ItemVersion {
        ItemVersion {
            created: None,
            v: SCHEMA_VERSION,
            key: item.clone(),
            version: etag.to_owned(),
            kind: ItemKind::File,
            name: Some("report.docx".to_owned()),
            parent_id: None,
            ctag: None,
            modified: at(modified),
            captured_at: at("2030-01-01T00:00:00Z"),
            deleted: false,
            content: None,
            verification: Verification::Unverified,
            mail: None,
            observed_at: None,
            current_from: None,
            note: None,
        }
    }

    fn record(etag: &str) -> ObjectRef {
        ObjectRef { key: format!("records/{etag}"), version_id: "1".to_owned() }
    }

    #[tokio::test]
    async fn a_commit_is_billed_as_two_writes_redelivered_or_not() {
        // Given a version, a late older one, and that one redelivered
        let catalog = MemoryCatalog::new();
        let item = ContainerId::new("t", "d").item("i");
        let old = version(&item, "e1", "2024-05-01T10:00:00Z");
        let new = version(&item, "e2", "2024-05-02T10:00:00Z");
        assert_eq!(catalog.commit_version(&new, &record("e2")).await.expect("new"), Commit::Created);
        assert_eq!(catalog.commit_version(&old, &record("e1")).await.expect("late old"), Commit::Created);
        assert_eq!(catalog.commit_version(&old, &record("e1")).await.expect("again"), Commit::AlreadyCommitted);

        // Then each cost a version write and a head write, as DynamoDB bills a failed condition
        assert_eq!(catalog.write_count(), 6);
        assert_eq!(catalog.head(&item).await.expect("head").map(|h| h.current.version).as_deref(), Some("e2"));
    }

    #[tokio::test]
    async fn a_crash_between_the_two_writes_is_repaired_by_redelivery() {
        let catalog = MemoryCatalog::new();
        let item = ContainerId::new("t", "d").item("i");
        let v = version(&item, "e1", "2024-05-01T10:00:00Z");
        catalog.fail_next_head_updates(1);
        assert!(catalog.commit_version(&v, &record("e1")).await.is_err());
        assert_eq!(catalog.head(&item).await.expect("head"), None);
        assert_eq!(catalog.commit_version(&v, &record("e1")).await.expect("redelivery"), Commit::AlreadyCommitted);
        assert_eq!(catalog.head(&item).await.expect("head").map(|h| h.current.version).as_deref(), Some("e1"));
    }
}
