//! Point-in-time reads over the version indexes (`VC#` on `GSI1`, `VP#` on `GSI2`).
//!
//! Both indexes group an item's versions together, oldest first, so "the version current at T"
//! is a fold over a stream of rows: per item, the last row at or before T. No query per item.
//!
//! A folder's `VP#` partition also keeps the rows of items that later moved away (their newer
//! rows are under the new parent), so each candidate (its newest row in the folder at or before
//! T) is confirmed against the item's whole history: by its head when the head is not newer
//! than T (one BatchGetItem per 100 candidates, the common case for a past T), otherwise by
//! `version_at` (one query each, bounded concurrency). A page costs about one index query, a
//! few parallel BatchGetItems and one query per item changed since T.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use super::keys::{after_item_index_sk, children_g2pk, sortable_time, versions_g1pk};
use super::{DynamoCatalog, GSI1, GSI2, parse_version, query_error, s};
use crate::model::{ContainerId, ItemHead, ItemVersion};
use crate::store::{ItemHistory, Listing, Page, PointInTime, StoreError, item_order};

/// BatchGetItem requests of heads in flight at once for one page of children.
const HEAD_BATCHES_IN_FLIGHT: usize = 8;
/// `version_at` queries in flight at once for one page of children.
const VERSION_AT_IN_FLIGHT: usize = 32;
/// Heads per BatchGetItem.
const HEADS_PER_BATCH: usize = 100;

/// Folds index rows (grouped by item, oldest first) into each item's newest version at or
/// before a bound. An item's group may span query pages, so the last item stays pending until
/// another item's row arrives or the stream ends.
struct AsOf {
    bound: String,
    pending: Option<(String, Option<ItemVersion>)>,
}

impl AsOf {
    fn new(at: DateTime<Utc>) -> Self {
        Self { bound: sortable_time(at), pending: None }
    }

    fn push(&mut self, version: ItemVersion, done: &mut Vec<ItemVersion>) {
        let fits = sortable_time(version.order_time()) <= self.bound;
        match &mut self.pending {
            Some((item, best)) if *item == version.key.item_id => {
                if fits {
                    *best = Some(version);
                }
            }
            _ => {
                self.flush(done);
                self.pending = Some((version.key.item_id.clone(), fits.then_some(version)));
            }
        }
    }

    fn flush(&mut self, done: &mut Vec<ItemVersion>) {
        if let Some((_, Some(best))) = self.pending.take() {
            done.push(best);
        }
    }
}

/// A version ranked by (Microsoft 365 time, item order, version) for the change history.
struct Ranked((String, String, String), ItemVersion);

impl Ranked {
    fn new(version: ItemVersion) -> Self {
        let rank = (sortable_time(version.order_time()), item_order(&version.key.item_id), version.version.clone());
        Self(rank, version)
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.0.cmp(&other.0)
    }
}

#[async_trait]
impl PointInTime for DynamoCatalog {
    async fn container_as_of(
        &self,
        container: &ContainerId,
        at: DateTime<Utc>,
    ) -> Result<Vec<ItemVersion>, StoreError> {
        let mut rows = self.index_query(GSI1, versions_g1pk(container), None).into_paginator().items().send();
        let mut as_of = AsOf::new(at);
        let mut current = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(query_error)? {
            as_of.push(parse_version(&row)?, &mut current);
        }
        as_of.flush(&mut current);
        Ok(current)
    }

    /// Reads the `VC#` partition from just past the cursor's item, a query page at a time,
    /// folding rows until one item more than the page is complete (an item's rows may span
    /// query pages).
    async fn container_as_of_page(
        &self,
        container: &ContainerId,
        at: DateTime<Utc>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ItemVersion>, StoreError> {
        let listing = Listing::container_as_of(container, at);
        let after = listing.resume(cursor)?.map(|id| after_item_index_sk(&id));
        let limit = limit.max(1);
        let page_size = i32::try_from(limit + 16).unwrap_or(i32::MAX);
        let query = self.index_query(GSI1, versions_g1pk(container), after);
        let mut rows = query.into_paginator().page_size(page_size).items().send();
        let mut as_of = AsOf::new(at);
        let mut current = Vec::with_capacity(limit + 1);
        while current.len() <= limit {
            match rows.try_next().await.map_err(query_error)? {
                Some(row) => as_of.push(parse_version(&row)?, &mut current),
                None => {
                    as_of.flush(&mut current);
                    break;
                }
            }
        }
        let more = current.len() > limit;
        current.truncate(limit);
        let next = current.last().filter(|_| more).map(|v| listing.cursor(&v.key.item_id));
        Ok(Page { items: current, next })
    }

    /// Streams the whole `VC#` partition keeping the `limit` oldest versions in the window in
    /// a bounded heap: reads cost the container's entire history (about 1 RCU per 8 KB of
    /// version rows, eventually consistent), memory stays O(limit). A time-ordered index would
    /// make this proportional to the window; not worth a third write per version yet.
    async fn changes_between(
        &self,
        container: &ContainerId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ItemVersion>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (lo, hi) = (sortable_time(from), sortable_time(to));
        let mut rows = self.index_query(GSI1, versions_g1pk(container), None).into_paginator().items().send();
        let mut oldest: BinaryHeap<Ranked> = BinaryHeap::with_capacity(limit + 1);
        while let Some(row) = rows.try_next().await.map_err(query_error)? {
            let version = parse_version(&row)?;
            let t = sortable_time(version.order_time());
            if lo <= t && t <= hi {
                oldest.push(Ranked::new(version));
                if oldest.len() > limit {
                    oldest.pop();
                }
            }
        }
        Ok(oldest.into_sorted_vec().into_iter().map(|r| r.1).collect())
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
        let after = listing.resume(cursor)?.map(|id| after_item_index_sk(&id));
        let limit = limit.max(1);
        // Most rows of a folder are its current children with a version or two each. The cursor
        // resumes from a key condition on the last child handed out, not from a LastEvaluatedKey,
        // so the paginator serves it; pages are read one at a time, only while needed.
        let page_size = i32::try_from(limit * 2 + 16).unwrap_or(i32::MAX);
        let query = self.index_query(GSI2, children_g2pk(container, parent_id), after);
        let mut pages = query.into_paginator().page_size(page_size).send();
        let mut done = false;
        let mut as_of = AsOf::new(at);
        let mut candidates = VecDeque::new();
        let mut children = Vec::with_capacity(limit);
        loop {
            // Confirm a little more than still needed: most candidates are children.
            let wanted = (limit - children.len()) * 5 / 4 + 1;
            while candidates.len() < wanted && !done {
                let mut found = Vec::new();
                match pages.try_next().await.map_err(query_error)? {
                    Some(page) => {
                        done = page.last_evaluated_key.as_ref().is_none_or(HashMap::is_empty);
                        for row in page.items() {
                            as_of.push(parse_version(row)?, &mut found);
                        }
                    }
                    None => done = true,
                }
                if done {
                    as_of.flush(&mut found);
                }
                // A tombstone in the folder at T is final there: the item did not exist at T.
                candidates.extend(found.into_iter().filter(|v| !v.deleted));
            }
            if candidates.is_empty() {
                return Ok(Page { items: children, next: None });
            }
            let batch: Vec<ItemVersion> = candidates.drain(..wanted.min(candidates.len())).collect();
            let mut confirmed = self.confirm_children(parent_id, at, batch).await?.into_iter().flatten();
            children.extend(confirmed.by_ref().take(limit - children.len()));
            if children.len() == limit {
                let more = confirmed.next().is_some() || !candidates.is_empty() || !done;
                let next = children.last().filter(|_| more).map(|v| listing.cursor(&v.key.item_id));
                return Ok(Page { items: children, next });
            }
        }
    }
}

impl DynamoCatalog {
    /// A query of the rows of `partition` on `index` (`GSI1` or `GSI2`) whose sort key is after
    /// `after`, in key order, reading only their `doc`.
    fn index_query(&self, index: &'static str, partition: String, after: Option<String>) -> QueryFluentBuilder {
        let (pk, sk) = if index == GSI2 { ("G2PK", "G2SK") } else { ("G1PK", "G1SK") };
        let query = self
            .query()
            .index_name(index)
            .expression_attribute_values(":p", s(partition))
            .projection_expression("#doc")
            .expression_attribute_names("#doc", "doc");
        match after {
            Some(after) => query
                .key_condition_expression(format!("{pk} = :p AND {sk} > :after"))
                .expression_attribute_values(":after", s(after)),
            None => query.key_condition_expression(format!("{pk} = :p")),
        }
    }

    /// For each candidate (in order): its version current at `at` if that is alive in
    /// `parent_id`, else `None` (moved elsewhere or deleted by then).
    async fn confirm_children(
        &self,
        parent_id: &str,
        at: DateTime<Utc>,
        candidates: Vec<ItemVersion>,
    ) -> Result<Vec<Option<ItemVersion>>, StoreError> {
        let Some(container) = candidates.first().map(|v| v.key.container.clone()) else {
            return Ok(Vec::new());
        };
        let ids: Vec<String> = candidates.iter().map(|v| v.key.item_id.clone()).collect();
        let container = &container;
        let heads: HashMap<String, ItemHead> =
            futures::stream::iter(ids.chunks(HEADS_PER_BATCH).map(<[String]>::to_vec))
                .map(|chunk| async move { self.heads(container, &chunk).await })
                .buffer_unordered(HEAD_BATCHES_IN_FLIGHT)
                .try_fold(HashMap::new(), |mut all, some| async move {
                    all.extend(some);
                    Ok(all)
                })
                .await?;
        let bound = sortable_time(at);
        let current: Vec<Option<ItemVersion>> = futures::stream::iter(candidates)
            .map(|candidate| {
                // A head not newer than `at` is the item's state at `at` (heads never regress).
                let head = heads.get(&candidate.key.item_id).filter(|h| sortable_time(h.current.order_time()) <= bound);
                let settled = head.map(|h| h.current.clone());
                async move {
                    match settled {
                        Some(current) => Ok(Some(current)),
                        None => self.version_at(&candidate.key, at).await,
                    }
                }
            })
            .buffered(VERSION_AT_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(current.into_iter().map(|v| v.filter(|v| !v.deleted && v.parent_id.as_deref() == Some(parent_id))).collect())
    }
}
