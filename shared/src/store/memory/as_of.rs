//! Point-in-time reads, straight from each item's history.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{CatalogState, MemoryCatalog, millis};
use crate::model::{ContainerId, ItemVersion};
use crate::store::{Listing, Page, PointInTime, StoreError, item_order};

impl CatalogState {
    /// The version of each item of `container` current at `bound` (milliseconds), in item order.
    fn as_of(&self, container: &ContainerId, bound: &str) -> Vec<&ItemVersion> {
        let mut current: Vec<&ItemVersion> = self
            .versions
            .iter()
            .filter(|(k, _)| &k.container == container)
            .filter_map(|(_, history)| history.iter().rev().find(|((t, _), _)| t.as_str() <= bound).map(|(_, v)| v))
            .collect();
        current.sort_by_cached_key(|v| item_order(&v.key.item_id));
        current
    }
}

#[async_trait]
impl PointInTime for MemoryCatalog {
    async fn container_as_of(
        &self,
        container: &ContainerId,
        at: DateTime<Utc>,
    ) -> Result<Vec<ItemVersion>, StoreError> {
        Ok(self.read().as_of(container, &millis(at)).into_iter().cloned().collect())
    }

    async fn children_as_of(
        &self,
        container: &ContainerId,
        parent_id: &str,
        at: DateTime<Utc>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ItemVersion>, StoreError> {
        let listing = Listing::children(container, parent_id, at);
        let after = listing.resume(cursor)?.map(|id| item_order(&id));
        let state = self.read();
        let mut children = state
            .as_of(container, &millis(at))
            .into_iter()
            .filter(|v| !v.deleted && v.parent_id.as_deref() == Some(parent_id))
            .filter(|v| after.as_ref().is_none_or(|a| item_order(&v.key.item_id) > *a));
        let items: Vec<ItemVersion> = children.by_ref().take(limit.max(1)).cloned().collect();
        let more = children.next().is_some();
        let next = items.last().filter(|_| more).map(|v| listing.cursor(&v.key.item_id));
        Ok(Page { items, next })
    }

    async fn changes_between(
        &self,
        container: &ContainerId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ItemVersion>, StoreError> {
        let (lo, hi) = (millis(from), millis(to));
        let state = self.read();
        let mut found: Vec<&ItemVersion> = state
            .versions
            .iter()
            .filter(|(k, _)| &k.container == container)
            .flat_map(|(_, history)| history.iter())
            .filter(|((t, _), _)| lo <= *t && t <= &hi)
            .map(|(_, v)| v)
            .collect();
        found.sort_by_cached_key(|v| (millis(v.order_time()), item_order(&v.key.item_id), v.version.clone()));
        Ok(found.into_iter().take(limit).cloned().collect())
    }
}
