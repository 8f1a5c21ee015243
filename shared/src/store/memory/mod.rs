//! In-memory fakes of every store trait, with the semantics of the real adapters in
//! `crate::aws` (conditional creates, Object Lock that never shortens, a head that never
//! regresses, per-queue FIFO rules), request counters for tests that count writes, and fault
//! knobs for tests that exercise failure paths.
//!
//! The catalog is one [`MemoryCatalog`] whose state is below; each capability's implementation
//! is in a file of its own, as in `crate::aws::catalog`. Its index reads can lag its writes as
//! DynamoDB's global secondary indexes do ([`MemoryCatalog::with_index_lag`], `index.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, SecondsFormat, Utc};

use super::StoreError;
use crate::model::{ContainerId, ContainerRecord, ExportPart, ItemKey, RestoreItemReport, SyncState};

mod as_of;
mod containers;
mod coordination;
mod export_parts;
mod exports;
mod failures;
mod history;
mod index;
mod keeping;
mod queue;
mod restore;
mod secrets;
mod sync;
mod vault;

pub use exports::MemoryExports;
pub use queue::MemorySink;
pub use secrets::MemorySecrets;
pub use vault::MemoryVault;

/// S3's smallest part, except the last one.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn injected(service: &'static str) -> StoreError {
    StoreError::Service { service, message: "injected fault".to_owned(), retryable: true }
}

/// Takes one unit from a fault budget; true when a fault should fire.
fn take_fault(budget: &mut u32) -> bool {
    let fire = *budget > 0;
    *budget = budget.saturating_sub(1);
    fire
}

/// Same ordering as the DynamoDB sort key: the row's order time (`ItemVersion::order_time`)
/// at millisecond precision, then the version marker.
fn version_sort_key(order_time: DateTime<Utc>, version: &str) -> (String, String) {
    (millis(order_time), version.to_owned())
}

fn millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Every row of the catalog, by capability.
#[derive(Default)]
struct CatalogState {
    /// The rows the indexes project, as the table holds them.
    table: index::IndexedRows,
    /// `None` when index reads see the table (no lag).
    index: Option<index::LaggingIndex>,
    sync: HashMap<ContainerId, SyncState>,
    /// Marks of the items each full scan saw, by (container, epoch).
    seen: HashMap<(ContainerId, String), std::collections::HashSet<String>>,
    containers: BTreeMap<ContainerId, ContainerRecord>,
    /// By (tenant, user, service).
    unresolved: BTreeMap<(String, String, crate::model::Service), crate::model::Unresolved>,
    /// SharePoint sites by (tenant, site id).
    sites: BTreeMap<(String, String), crate::model::SiteRecord>,
    /// `/sites/delta` links by tenant.
    sites_delta: BTreeMap<String, String>,
    throttles: HashMap<(String, String), DateTime<Utc>>,
    slots: HashMap<(String, String, u32), DateTime<Utc>>,
    failures: BTreeMap<ItemKey, failures::FailureRow>,
    /// The ids of each tenant's active restore jobs (`RestoreJobs::active_restore_jobs`).
    active_restore_jobs: BTreeMap<String, BTreeMap<String, DateTime<Utc>>>,
    /// By (job id, item id).
    restore_reports: BTreeMap<(String, String), RestoreItemReport>,
    /// By (job id, part).
    export_parts: BTreeMap<(String, u32), ExportPart>,
    /// Keeper runs by (tenant, task): the JSON and its revision.
    keeper_runs: HashMap<(String, String), (String, u64)>,
    fail_head_updates: u32,
}

/// The catalog with the DynamoDB adapter's conditional semantics.
#[derive(Default)]
pub struct MemoryCatalog {
    state: Mutex<CatalogState>,
    writes: AtomicU64,
    reads: AtomicU64,
}

impl MemoryCatalog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Write requests, counted like DynamoDB bills them (failed conditions included).
    pub fn write_count(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    pub fn read_count(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The next `n` head updates fail after the version row was written: a crash between
    /// the two writes of a commit.
    pub fn fail_next_head_updates(&self, n: u32) {
        locked(&self.state).fail_head_updates = n;
    }

    fn read(&self) -> MutexGuard<'_, CatalogState> {
        bump(&self.reads);
        locked(&self.state)
    }

    /// One write request: the lagging index, if any, moves one write on.
    fn write(&self) -> MutexGuard<'_, CatalogState> {
        bump(&self.writes);
        let mut state = locked(&self.state);
        state.write_begins();
        state
    }
}
