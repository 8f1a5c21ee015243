//! The vault keeper: the scheduled tasks that look after what is already backed up, lock
//! extension (`retention.rs`) and verification (`verify.rs`). Each task is a **run** over
//! every head of the tenant, container by container in catalog order, that any number of
//! invocations carry forward: the run's cursor and report are saved after each batch under an
//! optimistic revision (an invocation that loses the race stops), and the next invocation
//! resumes from the cursor. A run that finished less than [`RUN_EVERY`] ago is not started
//! again, so an hourly schedule gives one run a day that always completes.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use chrono::Duration;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::PipelineError;
use super::retention::Policy;
use crate::clock::Clock;
use crate::model::{ContainerId, ItemHead, KeeperCursor, KeeperRun, MAX_PROBLEMS, SCHEMA_VERSION, VaultProblem};
use crate::store::{KeeperCatalog, StoreError, Vault};

/// The run names, as the catalog keeps them.
pub const EXTEND: &str = "extend";
pub const VERIFY: &str = "verify";

/// A finished run is started again once this old: daily, with room for the schedule's jitter.
pub const RUN_EVERY: Duration = Duration::hours(20);
/// Time left before the deadline when an invocation stops taking batches.
pub const MARGIN: StdDuration = StdDuration::from_secs(30);

pub struct KeeperDeps {
    pub catalog: Arc<dyn KeeperCatalog>,
    pub vault: Arc<dyn Vault>,
    pub clock: Arc<dyn Clock>,
    pub policy: Policy,
    pub tenant_id: String,
    /// Vault requests in flight at once.
    pub concurrency: usize,
}

/// A keeper task, as EventBridge (`{"task": "extend"}`) or an operator sends it.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum KeeperTask {
    /// Continue today's lock extension, or start it.
    Extend,
    /// Continue today's verification, or start it; `fresh` starts a new run now whatever the
    /// last one was, `full` hashes every version's bytes instead of a sample.
    Verify {
        #[serde(default)]
        full: bool,
        #[serde(default)]
        fresh: bool,
    },
}

/// Runs `task` until it is done or `deadline` comes, and answers its run as JSON.
pub async fn run(deps: &KeeperDeps, task: KeeperTask, deadline: Instant) -> Result<serde_json::Value, PipelineError> {
    let json =
        |run: Result<serde_json::Value, serde_json::Error>| run.map_err(|e| PipelineError::Internal(e.to_string()));
    match task {
        KeeperTask::Extend => json(serde_json::to_value(super::retention::extend(deps, deadline).await?)),
        KeeperTask::Verify { full, fresh } => {
            json(serde_json::to_value(super::verify::verify(deps, full, fresh, deadline).await?))
        }
    }
}

/// A run as saved, with the revision the next save must match.
struct Saved<R> {
    run: KeeperRun<R>,
    revision: Option<u64>,
}

async fn load<R: DeserializeOwned>(deps: &KeeperDeps, task: &str) -> Result<Option<(KeeperRun<R>, u64)>, StoreError> {
    let Some((doc, revision)) = deps.catalog.keeper_run(&deps.tenant_id, task).await? else {
        return Ok(None);
    };
    let run: KeeperRun<R> =
        serde_json::from_str(&doc).map_err(|e| StoreError::Malformed(format!("keeper run {task}: {e}")))?;
    if run.v > SCHEMA_VERSION {
        return Err(StoreError::Malformed(format!("keeper run schema v{} is newer than this build", run.v)));
    }
    Ok(Some((run, revision)))
}

/// The last run of `task` as saved (the answer of an invocation with nothing to do).
async fn last<R: DeserializeOwned + Default>(deps: &KeeperDeps, task: &str) -> Result<KeeperRun<R>, PipelineError> {
    let run = load(deps, task).await?.map(|(run, _)| run);
    run.ok_or_else(|| PipelineError::Internal(format!("the {task} run vanished")))
}

/// The run this invocation carries forward: the unfinished one, or a new one when the last
/// finished [`RUN_EVERY`] ago (or `fresh`). `None`: the last run is recent and finished.
async fn begin<R: Serialize + DeserializeOwned + Default + Clone>(
    deps: &KeeperDeps,
    task: &str,
    full: bool,
    fresh: bool,
) -> Result<Option<Saved<R>>, PipelineError> {
    let now = deps.clock.now();
    let mut saved = match load::<R>(deps, task).await? {
        Some((run, revision)) if !fresh && (run.finished_at.is_none() || now - run.started_at < RUN_EVERY) => {
            if run.finished_at.is_some() {
                return Ok(None);
            }
            Saved { run, revision: Some(revision) }
        }
        previous => Saved {
            run: KeeperRun {
                v: SCHEMA_VERSION,
                started_at: now,
                finished_at: None,
                cursor: None,
                full,
                invocations: 0,
                report: R::default(),
                last_finished: previous.as_ref().and_then(|(run, _)| run.finished()),
            },
            revision: previous.map(|(_, r)| r),
        },
    };
    saved.run.invocations += 1;
    if save(deps, task, &mut saved).await? { Ok(Some(saved)) } else { Ok(None) }
}

/// Saves the run; false when another invocation saved it since (this one stops).
async fn save<R: Serialize>(deps: &KeeperDeps, task: &str, saved: &mut Saved<R>) -> Result<bool, PipelineError> {
    let doc = serde_json::to_string(&saved.run).map_err(|e| PipelineError::Internal(e.to_string()))?;
    if !deps.catalog.put_keeper_run(&deps.tenant_id, task, &doc, saved.revision).await? {
        return Ok(false);
    }
    saved.revision = Some(saved.revision.unwrap_or(0) + 1);
    Ok(true)
}

/// Heads handled per batch; a run's cursor is saved after each.
const BATCH: usize = 200;

/// What a keeper task does with each batch of heads and when its run ends; [`carry`] does
/// the rest.
#[async_trait]
pub(super) trait Task: Sync {
    type Report: Serialize + DeserializeOwned + Default + Clone + Send + Sync;
    /// The run's name in the catalog.
    const NAME: &'static str;
    /// Handles one batch, adding what it did to `run.report`.
    async fn batch(
        &self,
        deps: &KeeperDeps,
        run: &mut KeeperRun<Self::Report>,
        batch: Batch,
    ) -> Result<(), PipelineError>;
    /// The run has walked every head (log, metrics).
    fn finished(&self, report: &Self::Report);
}

/// Runs (or resumes) `task`'s run until it has walked every head of the tenant or `deadline`
/// comes: the cursor is saved after each batch and the next invocation resumes from it. A run
/// that finished less than [`RUN_EVERY`] ago is answered as it is, unless `fresh`. An
/// invocation that loses the run to another answers the run as the other saved it.
pub(super) async fn carry<T: Task>(
    deps: &KeeperDeps,
    task: &T,
    full: bool,
    fresh: bool,
    deadline: Instant,
) -> Result<KeeperRun<T::Report>, PipelineError> {
    let Some(mut saved) = begin::<T::Report>(deps, T::NAME, full, fresh).await? else {
        return last(deps, T::NAME).await;
    };
    let mut walker = Walker::start(deps, saved.run.cursor.as_ref()).await?;
    while Instant::now() + MARGIN < deadline {
        let Some(batch) = walker.next(deps, BATCH).await? else {
            saved.run.finished_at = Some(deps.clock.now());
            saved.run.cursor = None;
            task.finished(&saved.run.report);
            break;
        };
        task.batch(deps, &mut saved.run, batch).await?;
        saved.run.cursor = walker.cursor();
        if !save(deps, T::NAME, &mut saved).await? {
            return last(deps, T::NAME).await;
        }
    }
    if saved.run.finished_at.is_some() && !save(deps, T::NAME, &mut saved).await? {
        return last(deps, T::NAME).await;
    }
    Ok(saved.run)
}

/// Adds `found` to a report's named problems, up to [`MAX_PROBLEMS`].
pub(super) fn keep_problems(problems: &mut Vec<VaultProblem>, found: impl IntoIterator<Item = VaultProblem>) {
    let room = MAX_PROBLEMS.saturating_sub(problems.len());
    problems.extend(found.into_iter().take(room));
}

/// Heads of one container, handed out a batch at a time.
pub(super) struct Batch {
    pub heads: Vec<ItemHead>,
    /// The first batch of its container.
    pub first: bool,
}

/// Walks every head of the tenant's registered containers, in container then item order,
/// from a cursor. A container's heads are listed once (the `H#` index) and handed out in
/// batches.
struct Walker {
    containers: Vec<ContainerId>,
    /// The container being walked, its heads still to hand out (reversed), and the last one
    /// handed out.
    index: usize,
    pending: Option<Vec<ItemHead>>,
    after_item: Option<String>,
}

impl Walker {
    async fn start(deps: &KeeperDeps, cursor: Option<&KeeperCursor>) -> Result<Self, StoreError> {
        let mut containers: Vec<ContainerId> =
            deps.catalog.list_containers(&deps.tenant_id).await?.into_iter().map(|r| r.container).collect();
        containers.sort();
        containers.dedup();
        let (index, after_item) = match cursor {
            None => (0, None),
            Some(c) => match containers.binary_search(&c.container) {
                Ok(i) => (i, c.after_item.clone()),
                Err(i) => (i, None),
            },
        };
        Ok(Self { containers, index, pending: None, after_item })
    }

    /// The next at most `n` heads, all of one container; `None` once every container is done.
    async fn next(&mut self, deps: &KeeperDeps, n: usize) -> Result<Option<Batch>, StoreError> {
        loop {
            let Some(container) = self.containers.get(self.index) else { return Ok(None) };
            let first = self.pending.is_none() && self.after_item.is_none();
            if self.pending.is_none() {
                let mut heads = deps.catalog.list_heads(container).await?;
                heads.retain(|h| self.after_item.as_ref().is_none_or(|after| h.current.key.item_id > *after));
                heads.sort_by(|a, b| b.current.key.item_id.cmp(&a.current.key.item_id));
                self.pending = Some(heads);
            }
            let pending = self.pending.as_mut().expect("listed above");
            if pending.is_empty() {
                self.index += 1;
                self.pending = None;
                self.after_item = None;
                continue;
            }
            let take = n.max(1).min(pending.len());
            let heads: Vec<ItemHead> = pending.split_off(pending.len() - take).into_iter().rev().collect();
            self.after_item = heads.last().map(|h| h.current.key.item_id.clone());
            return Ok(Some(Batch { heads, first }));
        }
    }

    /// Where the walk stands: resuming from here hands out the heads not yet handed out.
    fn cursor(&self) -> Option<KeeperCursor> {
        let container = self.containers.get(self.index)?.clone();
        Some(KeeperCursor { container, after_item: self.after_item.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_parse_as_eventbridge_sends_them() {
        let parse = |s: &str| serde_json::from_str::<KeeperTask>(s).expect("task");
        assert_eq!(parse(r#"{"task":"extend"}"#), KeeperTask::Extend);
        assert_eq!(parse(r#"{"task":"verify"}"#), KeeperTask::Verify { full: false, fresh: false });
        assert_eq!(
            parse(r#"{"task":"verify","full":true,"fresh":true}"#),
            KeeperTask::Verify { full: true, fresh: true }
        );
        assert!(serde_json::from_str::<KeeperTask>(r#"{"task":"delete"}"#).is_err());
    }
}
