//! The rows DynamoDB's global secondary indexes project, and an index of them that lags.
//!
//! DynamoDB propagates a write to a GSI asynchronously, so an index query may not see the
//! latest writes; reads of the table itself (GetItem, BatchGetItem, Query with ConsistentRead)
//! see every acknowledged write. The adapter reads these indexes (`crate::aws::catalog`):
//! `GSI1` `H#` ([`list_heads`]), `GSI1` `VC#` ([`container_as_of`], [`changes_between`]),
//! `GSI2` `VP#` (the candidates of [`children_as_of`], each then confirmed by consistent reads)
//! and `GSI1` `RJ#` ([`list_restore_jobs`]).
//!
//! With a lag of `n` writes, the fake serves those reads from a copy of the projected rows as
//! they were `n` write requests ago: every write request to the catalog (any row, a failed
//! condition included) pushes an entry on a queue, carrying the images of the projected rows it
//! changed, and the oldest entry is applied to the copy once more than `n` are queued. Lag 0
//! (the default) keeps no copy: index reads see the table.
//!
//! [`list_heads`]: crate::store::ItemHistory::list_heads
//! [`container_as_of`]: crate::store::PointInTime::container_as_of
//! [`changes_between`]: crate::store::PointInTime::changes_between
//! [`children_as_of`]: crate::store::PointInTime::children_as_of
//! [`list_restore_jobs`]: crate::store::RestoreJobs::list_restore_jobs

use std::collections::{BTreeMap, VecDeque};

use super::history::HeadRow;
use super::{CatalogState, MemoryCatalog, locked};
use crate::model::{ItemKey, ItemVersion, RestoreJob};

/// The rows an index projects: versions (`VC#`, `VP#`), heads (`H#`), restore jobs (`RJ#`).
#[derive(Clone, Default)]
pub(super) struct IndexedRows {
    pub(super) versions: BTreeMap<ItemKey, BTreeMap<(String, String), ItemVersion>>,
    pub(super) heads: BTreeMap<ItemKey, HeadRow>,
    pub(super) restore_jobs: BTreeMap<String, RestoreJob>,
}

/// A projected row that a write changed: its key in the table.
pub(super) enum Changed<'a> {
    Version(&'a ItemKey, &'a (String, String)),
    Head(&'a ItemKey),
    Job(&'a str),
}

/// A projected row as a write left it (rows are never deleted).
enum RowImage {
    Version(ItemVersion, (String, String)),
    Head(ItemKey, HeadRow),
    Job(RestoreJob),
}

impl IndexedRows {
    fn image(&self, changed: Changed<'_>) -> Option<RowImage> {
        match changed {
            Changed::Version(item, sort_key) => self
                .versions
                .get(item)
                .and_then(|h| h.get(sort_key))
                .map(|v| RowImage::Version(v.clone(), sort_key.clone())),
            Changed::Head(item) => self.heads.get(item).map(|row| RowImage::Head(item.clone(), row.clone())),
            Changed::Job(id) => self.restore_jobs.get(id).map(|job| RowImage::Job(job.clone())),
        }
    }

    fn apply(&mut self, image: RowImage) {
        match image {
            RowImage::Version(v, sort_key) => {
                self.versions.entry(v.key.clone()).or_default().insert(sort_key, v);
            }
            RowImage::Head(item, row) => {
                self.heads.insert(item, row);
            }
            RowImage::Job(job) => {
                self.restore_jobs.insert(job.id.clone(), job);
            }
        }
    }
}

/// The index as it was `lag` write requests ago, and those writes' changes to apply.
pub(super) struct LaggingIndex {
    lag: usize,
    rows: IndexedRows,
    /// One entry per write request, oldest first: the images of the projected rows it changed.
    pending: VecDeque<Vec<RowImage>>,
}

impl LaggingIndex {
    fn catch_up(&mut self, keep: usize) {
        while self.pending.len() > keep {
            for image in self.pending.pop_front().into_iter().flatten() {
                self.rows.apply(image);
            }
        }
    }
}

impl CatalogState {
    /// What an index read sees.
    pub(super) fn index(&self) -> &IndexedRows {
        self.index.as_ref().map_or(&self.table, |index| &index.rows)
    }

    /// A write request begins: the index learns of the oldest pending one.
    pub(super) fn write_begins(&mut self) {
        if let Some(index) = &mut self.index {
            index.pending.push_back(Vec::new());
            index.catch_up(index.lag);
        }
    }

    /// The current write request changed a projected row; the index sees it `lag` writes later.
    pub(super) fn changed(&mut self, changed: Changed<'_>) {
        let Some(index) = &mut self.index else { return };
        let Some(image) = self.table.image(changed) else { return };
        match index.pending.back_mut() {
            Some(entry) => entry.push(image),
            None => index.rows.apply(image),
        }
    }
}

impl MemoryCatalog {
    /// A catalog whose index reads lag the table by the last `writes` write requests.
    pub fn with_index_lag(writes: usize) -> Self {
        let catalog = Self::new();
        catalog.set_index_lag(writes);
        catalog
    }

    /// From now on, index reads lag the table by the last `writes` write requests (0: they
    /// see every write, as before). Shortening the lag applies the writes now out of it.
    pub fn set_index_lag(&self, writes: usize) {
        let mut state = locked(&self.state);
        if writes == 0 {
            state.index = None;
            return;
        }
        match &mut state.index {
            Some(index) => {
                index.lag = writes;
                index.catch_up(writes);
            }
            None => {
                let rows = state.table.clone();
                state.index = Some(LaggingIndex { lag: writes, rows, pending: VecDeque::new() });
            }
        }
    }

    /// Applies every pending write to the index, as waiting long enough would.
    pub fn flush_index(&self) {
        if let Some(index) = &mut locked(&self.state).index {
            index.catch_up(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryCatalog;
    use crate::model::{
        ContainerId, ItemVersion, ObjectRef, RestoreJob, RestoreScope, RestoreStatus, RestoreTarget, SyncState,
    };
    use crate::store::{ItemHistory, PointInTime, RestoreJobs, SyncStates};

    // The contract suite's fixtures: a container and files in it.
    use crate::store::contract::{at, container as drive, state as file};

    async fn commit(catalog: &MemoryCatalog, v: &ItemVersion) {
        let record = ObjectRef { key: format!("records/{}", v.version), version_id: "1".to_owned() };
        catalog.commit_version(v, &record).await.expect("commit");
    }

    async fn listed(catalog: &MemoryCatalog) -> Vec<String> {
        let mut ids: Vec<String> =
            catalog.list_heads(&drive()).await.expect("heads").into_iter().map(|h| h.current.key.item_id).collect();
        ids.sort();
        ids
    }

    /// Any write at all moves the index on: here, a sync state nobody reads.
    async fn unrelated_write(catalog: &MemoryCatalog) {
        catalog.put_sync_state(&ContainerId::new("t", "other"), &SyncState::default()).await.expect("put");
    }

    #[tokio::test]
    async fn a_committed_head_is_listed_only_two_writes_later_with_a_lag_of_two() {
        // Given a catalog whose index lags by two writes
        let catalog = MemoryCatalog::with_index_lag(2);

        // When a version is committed (a version write and a head write)
        commit(&catalog, &file("a", "e1", "root", "2024-05-01T10:00:00Z")).await;

        // Then the head is read exactly, but the index does not list it yet
        assert!(catalog.head(&drive().item("a")).await.expect("head").is_some());
        assert_eq!(catalog.heads(&drive(), &["a".to_owned()]).await.expect("heads").len(), 1);
        assert!(listed(&catalog).await.is_empty());
        unrelated_write(&catalog).await;
        assert!(listed(&catalog).await.is_empty(), "the head write is still within the lag");

        // And it is listed after two more writes
        unrelated_write(&catalog).await;
        assert_eq!(listed(&catalog).await, ["a"]);
    }

    #[tokio::test]
    async fn flushing_the_index_shows_every_write_and_lag_zero_is_exact() {
        let catalog = MemoryCatalog::with_index_lag(10);
        commit(&catalog, &file("a", "e1", "root", "2024-05-01T10:00:00Z")).await;
        commit(&catalog, &file("b", "e1", "root", "2024-05-01T10:00:00Z")).await;
        let noon = at("2024-05-01T12:00:00Z");
        assert!(catalog.container_as_of(&drive(), noon).await.expect("as of").is_empty());

        catalog.flush_index();
        assert_eq!(catalog.container_as_of(&drive(), noon).await.expect("as of").len(), 2);
        assert_eq!(listed(&catalog).await, ["a", "b"]);

        // Without a lag, the index sees each write at once
        catalog.set_index_lag(0);
        commit(&catalog, &file("c", "e1", "root", "2024-05-01T10:00:00Z")).await;
        assert_eq!(listed(&catalog).await, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_move_still_pending_in_the_index_hides_the_item_from_both_folders() {
        // Given a file in A, then moved to B, the move's writes still pending in the index
        let catalog = MemoryCatalog::with_index_lag(2);
        commit(&catalog, &file("f", "e1", "A", "2024-05-01T10:00:00Z")).await;
        commit(&catalog, &file("f", "e2", "B", "2024-05-01T11:00:00Z")).await;
        let noon = at("2024-05-01T12:00:00Z");
        let children = |parent: &'static str| {
            let catalog = &catalog;
            async move { catalog.children_as_of(&drive(), parent, noon, None, 10).await.expect("children").items }
        };

        // Then A's candidate is confirmed out by the item's history, and B has no candidate yet
        assert!(children("A").await.is_empty());
        assert!(children("B").await.is_empty());
        // While the history itself is exact
        assert_eq!(catalog.version_at(&drive().item("f"), noon).await.expect("at").expect("some").version, "e2");

        // And once the index catches up, the file is in B
        catalog.flush_index();
        assert_eq!(children("B").await.len(), 1);
        let changes = catalog.changes_between(&drive(), at("2024-05-01T00:00:00Z"), noon, 10).await.expect("changes");
        assert_eq!(changes.len(), 2);
    }

    #[tokio::test]
    async fn a_restore_job_is_read_exactly_but_listed_late_with_its_status_of_then() {
        let catalog = MemoryCatalog::with_index_lag(1);
        let job = RestoreJob::new(
            "j1",
            drive(),
            RestoreScope::Container,
            at("2024-05-01T10:00:00Z"),
            RestoreTarget::InPlace,
            at("2024-05-02T10:00:00Z"),
        );
        catalog.create_restore_job(&job).await.expect("create");
        assert!(catalog.list_restore_jobs(&drive().tenant_id, 10).await.expect("list").is_empty());

        catalog.set_restore_status("j1", RestoreStatus::Running, None).await.expect("status");
        let listed = catalog.list_restore_jobs(&drive().tenant_id, 10).await.expect("list");
        assert_eq!(listed.iter().map(|j| j.status).collect::<Vec<_>>(), [RestoreStatus::Queued]);
        let read = catalog.restore_job("j1").await.expect("job").expect("some");
        assert_eq!(read.status, RestoreStatus::Running);
    }
}
