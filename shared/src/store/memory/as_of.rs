//! Point-in-time reads from each item's history, read through the index as the DynamoDB
//! adapter reads it (`index.rs`): a container and its change history from the `VC#` rows; a
//! folder's candidates from the `VP#` rows, each confirmed by the item's history in the table.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::index::IndexedRows;
use super::{MemoryCatalog, millis};
use crate::model::{ContainerId, ItemVersion};
use crate::store::{Listing, Page, PointInTime, StoreError, item_order};

type History = std::collections::BTreeMap<(String, String), ItemVersion>;

/// An item's newest version at or before `bound` (milliseconds) that passes `keep`.
fn newest_until<'a>(history: &'a History, bound: &str, keep: impl Fn(&ItemVersion) -> bool) -> Option<&'a ItemVersion> {
    history.iter().rev().find(|((t, _), v)| t.as_str() <= bound && keep(v)).map(|(_, v)| v)
}

impl IndexedRows {
    /// The version of each item of `container` current at `bound` (milliseconds), in item order.
    fn as_of(&self, container: &ContainerId, bound: &str) -> Vec<&ItemVersion> {
        let mut current: Vec<&ItemVersion> = self
            .versions
            .iter()
            .filter(|(k, _)| &k.container == container)
            .filter_map(|(_, history)| newest_until(history, bound, |_| true))
            .collect();
        current.sort_by_cached_key(|v| item_order(&v.key.item_id));
        current
    }

    /// One page of [`Self::as_of`]: at most `limit` versions after the item `after`, and
    /// whether more may follow. Reads the map from where the page starts, not from the
    /// container's first item, so paging through a million items costs what one listing does.
    fn as_of_page(
        &self,
        container: &ContainerId,
        bound: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<&ItemVersion>, bool) {
        let after_order = after.map(item_order);
        // The map is in plain id order; item order differs only where an id goes on with a
        // character below `#` (`a!1` comes before `a`). So the page starts at the shortest
        // prefix of `after` that such an id could extend, and reads on past `limit` while the
        // next id extends one already read that way.
        let start = after.map(|a| a.find(|c: char| c < '#').map_or(a, |i| &a[..i])).unwrap_or_default();
        let extends_read =
            |id: &str, read: &HashSet<&str>| id.char_indices().any(|(i, c)| c < '#' && read.contains(&id[..i]));
        let mut read: HashSet<&str> = HashSet::new();
        let mut found: Vec<&ItemVersion> = Vec::new();
        let mut cut = false;
        for (key, history) in self.versions.range(container.item(start)..) {
            if &key.container != container {
                break;
            }
            if after_order.as_ref().is_some_and(|a| item_order(&key.item_id) <= *a) {
                continue;
            }
            if found.len() > limit && !extends_read(&key.item_id, &read) {
                cut = true;
                break;
            }
            read.insert(&key.item_id);
            found.extend(newest_until(history, bound, |_| true));
        }
        found.sort_by_cached_key(|v| item_order(&v.key.item_id));
        let more = cut || found.len() > limit;
        found.truncate(limit);
        (found, more)
    }
}

#[async_trait]
impl PointInTime for MemoryCatalog {
    async fn container_as_of(
        &self,
        container: &ContainerId,
        at: DateTime<Utc>,
    ) -> Result<Vec<ItemVersion>, StoreError> {
        Ok(self.read().index().as_of(container, &millis(at)).into_iter().cloned().collect())
    }

    async fn container_as_of_page(
        &self,
        container: &ContainerId,
        at: DateTime<Utc>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ItemVersion>, StoreError> {
        let listing = Listing::container_as_of(container, at);
        let after = listing.resume(cursor)?;
        let state = self.read();
        let (versions, more) = state.index().as_of_page(container, &millis(at), after.as_deref(), limit.max(1));
        let next = versions.last().filter(|_| more).map(|v| listing.cursor(&v.key.item_id));
        Ok(Page { items: versions.into_iter().cloned().collect(), next })
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
        let bound = millis(at);
        let in_folder = |v: &ItemVersion| v.parent_id.as_deref() == Some(parent_id);
        let state = self.read();
        // Candidates: items whose newest version in the folder at T, as the index has it, is alive.
        let mut candidates: Vec<_> = state
            .index()
            .versions
            .iter()
            .filter(|(k, _)| &k.container == container)
            .filter(|(_, history)| newest_until(history, &bound, in_folder).is_some_and(|v| !v.deleted))
            .map(|(k, _)| k)
            .filter(|k| after.as_ref().is_none_or(|a| item_order(&k.item_id) > *a))
            .collect();
        candidates.sort_by_cached_key(|k| item_order(&k.item_id));
        // Confirmed by the item's history in the table: alive in this folder at T.
        let mut children = candidates
            .into_iter()
            .filter_map(|k| state.table.versions.get(k).and_then(|h| newest_until(h, &bound, |_| true)))
            .filter(|v| !v.deleted && in_folder(v));
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
            .index()
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
