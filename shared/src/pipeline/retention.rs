//! How long a backed-up version stays locked (ARCHITECTURE.md, Retention), and the task that
//! keeps current versions locked: lock extension.
//!
//! The rule: a current version stays locked whatever its age; a superseded one until
//! `RetentionDays` after we captured the state that superseded it (our time: a backdated
//! edit cannot make clean versions lapse); one superseded by a deletion 93 days longer (the
//! recycle bins' reach). Shared content stays locked as long as any version needing it must.
//!
//! How it holds without ever looking at a superseded version: the extension task keeps every
//! current version's objects locked at least `RetentionDays + GRACE_DAYS` ahead (a new one is
//! written so), so whenever a version is superseded its lock already reaches `RetentionDays`
//! past the capture that superseded it. A deletion is the one supersession that needs more:
//! the copier extends the deleted version's objects to `93 + RetentionDays` before it records
//! the tombstone. Every extension reads the object's lock first and only ever lengthens it
//! (`Vault::ensure_locked`), so content several versions share ends at the latest date any
//! of them asked for.

use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use tracing::{info, warn};

use super::PipelineError;
use super::keeper::{self, Batch, KeeperDeps};
use crate::model::{ExtendReport, ItemHead, KeeperRun, VaultProblem};
use crate::store::{Lock, LockMode, StoreError};

/// Days a current version's lock may fall short of its floor before it is extended: the
/// extension task can miss this many daily runs (an outage, a bug, throttling) before the
/// rule is at risk, and `verify` alarms long before.
pub const GRACE_DAYS: i64 = 7;
/// How long after a deletion the item can come back with the same id (the recycle bins).
pub const RECYCLE_BIN_DAYS: i64 = 93;
/// Default of `horizon_days`: an extension locks a current version this many days beyond
/// `RetentionDays`, so it costs one `PutObjectRetention` per object every
/// `horizon_days - GRACE_DAYS` days (53: 6.9 a year). A longer horizon costs fewer requests
/// and keeps superseded versions locked longer than the rule needs (until expiry may remove
/// them): at most `horizon_days` more.
pub const DEFAULT_HORIZON_DAYS: u32 = 60;

/// The retention rule's dates for one deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub mode: LockMode,
    pub retention_days: u32,
    pub horizon_days: u32,
}

impl Policy {
    pub fn new(mode: LockMode, retention_days: u32) -> Self {
        Self { mode, retention_days, horizon_days: DEFAULT_HORIZON_DAYS }
    }

    fn retention(&self) -> Duration {
        Duration::days(i64::from(self.retention_days))
    }

    fn lock(&self, retain_until: DateTime<Utc>) -> Lock {
        Lock { mode: self.mode, retain_until }
    }

    /// What a current version must be locked until at `now` at the least: the date the rule
    /// gives it were it superseded now.
    pub fn current_floor(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + self.retention()
    }

    /// The lock of a new version's objects (its record, its content): the floor plus the
    /// grace, so it holds until the extension task's next runs take over.
    pub fn new_version(&self, now: DateTime<Utc>) -> Lock {
        self.lock(self.current_floor(now) + Duration::days(GRACE_DAYS))
    }

    /// Whether a current version locked until `locked_until` (`None`: not known) needs
    /// extending at `now`.
    pub fn due(&self, locked_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        locked_until.is_none_or(|t| t < self.new_version(now).retain_until)
    }

    /// The lock an extension gives a current version at `now`.
    pub fn extension(&self, now: DateTime<Utc>) -> Lock {
        let days = i64::from(self.horizon_days).max(GRACE_DAYS + 1);
        self.lock(self.current_floor(now) + Duration::days(days))
    }

    /// The lock of a version superseded by a deletion captured at `captured`, and of the
    /// tombstone's record.
    pub fn deletion(&self, captured: DateTime<Utc>) -> Lock {
        self.lock(captured + Duration::days(RECYCLE_BIN_DAYS) + self.retention())
    }

    /// The date the rule locks a version captured at `captured` until, once superseded by a
    /// state captured at `superseded_at` (a version recorded after the one that follows it
    /// in the item's history is protected from its own capture).
    pub fn superseded(&self, captured: DateTime<Utc>, superseded_at: DateTime<Utc>) -> DateTime<Utc> {
        captured.max(superseded_at) + self.retention()
    }
}

/// Runs (or resumes) the day's lock extension until it has walked every head of the tenant
/// or `deadline` comes; the run resumes at the next invocation. A run that finished less
/// than [`keeper::RUN_EVERY`] ago is left as it is.
pub async fn extend(deps: &KeeperDeps, deadline: Instant) -> Result<KeeperRun<ExtendReport>, PipelineError> {
    keeper::carry(deps, &Extension, false, false, deadline).await
}

/// The lock extension task.
struct Extension;

#[async_trait]
impl keeper::Task for Extension {
    type Report = ExtendReport;
    const NAME: &'static str = keeper::EXTEND;

    async fn batch(
        &self,
        deps: &KeeperDeps,
        run: &mut KeeperRun<ExtendReport>,
        batch: Batch,
    ) -> Result<(), PipelineError> {
        let report = &mut run.report;
        report.containers += u64::from(batch.first);
        report.heads += batch.heads.len() as u64;
        let now = deps.clock.now();
        let mut due = Vec::new();
        for head in batch.heads {
            if head.current.deleted {
                report.tombstones += 1;
            } else if deps.policy.due(head.locked_until, now) {
                due.push(head);
            } else {
                report.fresh += 1;
            }
        }
        let lock = deps.policy.extension(now);
        let outcomes: Vec<_> =
            futures::stream::iter(due.into_iter().map(|head| async move { extend_one(deps, &head, lock).await }))
                .buffer_unordered(deps.concurrency.max(1))
                .collect()
                .await;
        for outcome in outcomes {
            match outcome? {
                Extended::Done { objects } => {
                    report.extended += 1;
                    report.objects += objects;
                }
                Extended::Moved { objects } => {
                    report.moved += 1;
                    report.objects += objects;
                }
                Extended::Failed(problems) => {
                    report.failed += problems.len() as u64;
                    keeper::keep_problems(&mut report.problems, problems);
                }
            }
        }
        Ok(())
    }

    fn finished(&self, report: &ExtendReport) {
        info!(heads = report.heads, extended = report.extended, failed = report.failed, "lock extension done");
        if report.failed > 0 {
            crate::metrics::count(crate::metrics::LOCK_EXTENSION_FAILURES, report.failed);
        }
    }
}

enum Extended {
    Done {
        objects: u64,
    },
    /// Locked, but the head moved on meanwhile: its new version is the next run's.
    Moved {
        objects: u64,
    },
    /// An object is missing or would not lock: reported, the head left due.
    Failed(Vec<VaultProblem>),
}

/// Locks every object of a current version until `lock` (read first, lengthened only), then
/// records it on the head. A missing object or a lock the vault will not confirm is a
/// problem to report, not an error: the other heads go on.
async fn extend_one(deps: &KeeperDeps, head: &ItemHead, lock: Lock) -> Result<Extended, PipelineError> {
    let mut problems = Vec::new();
    let objects = head.objects();
    for object in &objects {
        let problem = match deps.vault.ensure_locked(object, &lock).await {
            Ok(()) => continue,
            Err(StoreError::NotFound { .. }) => "missing: no such object version".to_owned(),
            Err(StoreError::NotLocked { detail, .. }) => format!("not locked: {detail}"),
            Err(e) => return Err(e.into()),
        };
        warn!(item = %head.current.key.item_id, key = %object.key, %problem, "cannot extend a current version's lock");
        problems.push(VaultProblem {
            container: head.current.key.container.clone(),
            item_id: head.current.key.item_id.clone(),
            key: object.key.clone(),
            version_id: object.version_id.clone(),
            problem,
        });
    }
    if !problems.is_empty() {
        return Ok(Extended::Failed(problems));
    }
    let objects = objects.len() as u64;
    Ok(if deps.catalog.set_head_lock(head, lock.retain_until).await? {
        Extended::Done { objects }
    } else {
        Extended::Moved { objects }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("valid time").with_timezone(&Utc)
    }

    #[test]
    fn a_new_version_is_due_at_the_next_run_and_an_extended_one_for_horizon_less_grace_days() {
        let policy = Policy::new(LockMode::Governance, 35);
        let t0 = at("2026-01-01T00:00:00Z");
        let new = policy.new_version(t0).retain_until;
        assert_eq!(new, at("2026-02-12T00:00:00Z"));
        assert!(!policy.due(Some(new), t0));
        assert!(policy.due(Some(new), t0 + Duration::hours(1)));
        assert!(policy.due(None, t0));
        let extended = policy.extension(t0).retain_until;
        assert_eq!(extended, t0 + Duration::days(95));
        assert!(!policy.due(Some(extended), t0 + Duration::days(53)));
        assert!(policy.due(Some(extended), t0 + Duration::days(53) + Duration::seconds(1)));
    }

    #[test]
    fn deletions_add_the_recycle_bin_and_late_versions_count_from_their_own_capture() {
        let policy = Policy::new(LockMode::Compliance, 35);
        let day10 = at("2026-01-11T00:00:00Z");
        assert_eq!(policy.deletion(day10).retain_until, day10 + Duration::days(128));
        let early = at("2026-01-01T00:00:00Z");
        assert_eq!(policy.superseded(early, day10), day10 + Duration::days(35));
        assert_eq!(policy.superseded(day10, early), day10 + Duration::days(35));
    }

    #[test]
    fn a_horizon_shorter_than_the_grace_still_moves_the_lock_past_the_due_date() {
        let policy = Policy { horizon_days: 1, ..Policy::new(LockMode::Governance, 35) };
        let now = at("2026-01-01T00:00:00Z");
        assert!(!policy.due(Some(policy.extension(now).retain_until), now + Duration::hours(23)));
    }
}
