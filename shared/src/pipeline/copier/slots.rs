//! The mailbox slots one batch of copies holds.
//!
//! Exchange serves a mailbox at most four requests at a time across all our workers: copiers
//! share three slots (leases in the catalog), the mailbox's enumerator uses the fourth. Taking
//! and giving back a lease for every message cost two catalog writes per message, and a job
//! that found every slot held went back to the queue, so copiers competing for a mailbox paid
//! mostly for slots. A batch therefore takes a mailbox's slots once for all its jobs of that
//! mailbox: each lease runs to the batch's deadline (the Lambda cannot work past it, and a
//! crashed worker's slot comes back then), serves one Graph call at a time, passes from job to
//! job, and is given back as soon as the batch has fewer jobs of the mailbox left than leases.
//! A batch holding no slot of a busy mailbox waits briefly (reads, not writes) before its jobs
//! go back to the queue.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::sync::Notify;
use tracing::warn;

use super::{CopierDeps, MAILBOX_COPY_SLOTS};
use crate::model::ContainerId;
use crate::pipeline::{PipelineError, throttle_resource};
use crate::store::{SlotLease, StoreError};

/// How often a batch holding no slot of a busy mailbox asks again while it waits.
const POLL: Duration = Duration::from_millis(250);
/// The shortest lease taken, should the batch's deadline be (nearly) past.
const MIN_LEASE: chrono::Duration = chrono::Duration::minutes(1);

/// A mailbox's slots as one batch sees them.
#[derive(Default)]
struct Pool {
    /// Leases the batch holds that no Graph call uses now.
    idle: Vec<SlotLease>,
    /// Leases a Graph call uses now.
    in_use: usize,
    /// The batch's jobs of this mailbox not finished yet.
    unfinished: usize,
    /// A job is asking the catalog for a slot; the others wait for its answer.
    asking: bool,
    /// The catalog had no free slot while the batch held some: its jobs share those.
    full: bool,
    /// The catalog had no free slot while the batch held none, for as long as the batch
    /// waits: its jobs of this mailbox go back to the queue.
    refused: bool,
}

impl Pool {
    fn held(&self) -> usize {
        self.idle.len() + self.in_use
    }

    /// Idle leases beyond what the unfinished jobs not in a call could use.
    fn surplus(&mut self) -> Vec<SlotLease> {
        let wanted = self.unfinished.saturating_sub(self.in_use);
        let surplus = self.idle.len().saturating_sub(wanted);
        self.idle.split_off(self.idle.len() - surplus)
    }
}

/// What a job wanting a slot does next.
enum Step {
    /// Use this lease the batch holds.
    Use(SlotLease),
    /// Ask the catalog for another.
    Ask,
    /// Wait for a lease to come back or for the asker's answer.
    Wait,
    /// Go back to the queue: the mailbox's slots are all held elsewhere.
    GiveUp,
}

/// The slots a batch of copies holds, per mailbox.
pub struct BatchSlots {
    /// When the leases end: the batch's deadline.
    until: DateTime<Utc>,
    /// How long a job of a mailbox whose slots are all held elsewhere waits before deferring.
    patience: Duration,
    pools: Mutex<HashMap<(String, String), Pool>>,
    /// Wakes every job waiting for a slot: one was put back, or an answer came.
    changed: Notify,
}

impl BatchSlots {
    /// Slots for `containers` (one entry per job of the batch), leased until `until`.
    pub fn new<'a>(
        containers: impl IntoIterator<Item = &'a ContainerId>,
        until: DateTime<Utc>,
        patience: Duration,
    ) -> Self {
        let mut pools: HashMap<(String, String), Pool> = HashMap::new();
        for c in containers.into_iter().filter(|c| c.is_mailbox()) {
            pools.entry(pool_key(c)).or_default().unfinished += 1;
        }
        Self { until, patience, pools: Mutex::new(pools), changed: Notify::new() }
    }

    fn pools(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Pool>> {
        self.pools.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `call` holding one of the mailbox's slots; `None`, without running it, when none
    /// could be had.
    pub(super) async fn run<T>(
        &self,
        deps: &CopierDeps,
        container: &ContainerId,
        call: impl Future<Output = T>,
    ) -> Result<Option<T>, PipelineError> {
        let Some(lease) = self.take(deps, container).await? else { return Ok(None) };
        let held = Held { slots: self, key: pool_key(container), lease: Some(lease) };
        let answer = call.await;
        drop(held);
        Ok(Some(answer))
    }

    async fn take(&self, deps: &CopierDeps, container: &ContainerId) -> Result<Option<SlotLease>, PipelineError> {
        let key = pool_key(container);
        loop {
            let changed = self.changed.notified();
            match self.next_step(deps, &key) {
                Step::Use(lease) => return Ok(Some(lease)),
                Step::GiveUp => return Ok(None),
                Step::Wait => changed.await,
                Step::Ask => {
                    if let Some(lease) = self.ask(deps, &key).await? {
                        return Ok(Some(lease));
                    }
                }
            }
        }
    }

    /// What a job wanting one of the mailbox's slots does now.
    fn next_step(&self, deps: &CopierDeps, key: &(String, String)) -> Step {
        let mut pools = self.pools();
        let pool = pools.entry(key.clone()).or_default();
        let now = deps.clock.now();
        // A lease that ran out may already be someone else's.
        pool.idle.retain(|l| l.until > now);
        if let Some(lease) = pool.idle.pop() {
            pool.in_use += 1;
            return Step::Use(lease);
        }
        if pool.refused {
            return Step::GiveUp;
        }
        let room = pool.held() == 0 || (!pool.full && pool.held() < MAILBOX_COPY_SLOTS as usize);
        if pool.asking || !room {
            return Step::Wait;
        }
        pool.asking = true;
        Step::Ask
    }

    /// Asks the catalog for one more slot of the mailbox, as the batch's only asker: a lease,
    /// or `None` once the batch is to share the slots it holds (or, holding none, has waited
    /// long enough).
    async fn ask(&self, deps: &CopierDeps, key: &(String, String)) -> Result<Option<SlotLease>, PipelineError> {
        let waited_until = Instant::now() + self.patience;
        loop {
            let now = deps.clock.now();
            let until = self.until.max(now + MIN_LEASE);
            let asked = deps.catalog.acquire_slot(&key.0, &key.1, MAILBOX_COPY_SLOTS, now, until).await;
            if self.answered(key, &asked, waited_until) {
                self.changed.notify_waiters();
                return Ok(asked?);
            }
            // Holding none, and still patient: ask again after a while.
            let jitter = Duration::from_millis(rand::rng().random_range(0..100));
            tokio::time::sleep(POLL + jitter).await;
        }
    }

    /// Records the catalog's answer; false if the asker is to ask again.
    fn answered(
        &self,
        key: &(String, String),
        asked: &Result<Option<SlotLease>, StoreError>,
        waited_until: Instant,
    ) -> bool {
        let mut pools = self.pools();
        let pool = pools.entry(key.clone()).or_default();
        match asked {
            Ok(Some(_)) => pool.in_use += 1,
            Ok(None) if pool.held() > 0 => pool.full = true,
            Ok(None) if Instant::now() + POLL >= waited_until => pool.refused = true,
            Ok(None) => return false,
            Err(_) => {}
        }
        pool.asking = false;
        true
    }

    fn put_back(&self, key: &(String, String), lease: SlotLease) {
        let mut pools = self.pools();
        let pool = pools.entry(key.clone()).or_default();
        pool.in_use = pool.in_use.saturating_sub(1);
        pool.idle.push(lease);
        drop(pools);
        self.changed.notify_waiters();
    }

    /// One job of `container` is done: leases its mailbox no longer needs are given back.
    pub(super) async fn finished(&self, deps: &CopierDeps, container: &ContainerId) {
        if !container.is_mailbox() {
            return;
        }
        let surplus = {
            let mut pools = self.pools();
            let pool = pools.entry(pool_key(container)).or_default();
            pool.unfinished = pool.unfinished.saturating_sub(1);
            pool.surplus()
        };
        release(deps, surplus).await;
    }

    /// Gives back every lease still held (a batch's end).
    pub async fn release_all(&self, deps: &CopierDeps) {
        let leases: Vec<SlotLease> = self.pools().values_mut().flat_map(|p| std::mem::take(&mut p.idle)).collect();
        release(deps, leases).await;
    }
}

async fn release(deps: &CopierDeps, leases: Vec<SlotLease>) {
    for lease in leases {
        // A lost release only delays the slot until its lease ends.
        if let Err(e) = deps.catalog.release_slot(&lease).await {
            warn!(error = %e, "could not release a mailbox slot; it frees itself when its lease ends");
        }
    }
}

fn pool_key(c: &ContainerId) -> (String, String) {
    (c.tenant_id.clone(), throttle_resource(c))
}

/// A lease in use by one Graph call; back to the batch's pool when the call ends (or is
/// dropped).
struct Held<'a> {
    slots: &'a BatchSlots,
    key: (String, String),
    lease: Option<SlotLease>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.slots.put_back(&self.key, lease);
        }
    }
}
