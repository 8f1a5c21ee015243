//! The vault keeper's runs: lock extension and verification. A run walks every head of a
//! tenant, container by container in catalog order, and resumes across invocations from its
//! cursor; its report accumulates as it goes and is kept (one row per task) once it ends.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::*;

/// Problems a report keeps by name; the counters count them all.
pub const MAX_PROBLEMS: usize = 20;

/// Where a run stopped: the container it was in and the last item it finished there.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct KeeperCursor {
    pub container: ContainerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_item: Option<String>,
}

/// One run of a keeper task and what it has done so far.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(bound(deserialize = "R: Deserialize<'de>"))]
pub struct KeeperRun<R> {
    pub v: u32,
    pub started_at: DateTime<Utc>,
    /// Set when the run has walked every container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// `None` before the first container and after the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<KeeperCursor>,
    /// Verify: every version's bytes are hashed, not a sample.
    #[serde(default)]
    pub full: bool,
    /// Invocations the run has taken so far.
    pub invocations: u32,
    pub report: R,
    /// The run before this one that finished: what vouches for the vault while this one is
    /// under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_finished: Option<FinishedRun<R>>,
}

/// A finished run, as the next run keeps it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(bound(deserialize = "R: Deserialize<'de>"))]
pub struct FinishedRun<R> {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    #[serde(default)]
    pub full: bool,
    pub report: R,
}

impl<R: Clone> KeeperRun<R> {
    /// This run if it finished, else the last one that did.
    pub fn finished(&self) -> Option<FinishedRun<R>> {
        match self.finished_at {
            Some(finished_at) => Some(FinishedRun {
                started_at: self.started_at,
                finished_at,
                full: self.full,
                report: self.report.clone(),
            }),
            None => self.last_finished.clone(),
        }
    }
}

/// One object the keeper found wrong: which item's current version needs it, and what.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct VaultProblem {
    pub container: ContainerId,
    pub item_id: String,
    pub key: String,
    pub version_id: String,
    pub problem: String,
}

/// What the lock extension task did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtendReport {
    pub containers: u64,
    /// Heads read.
    pub heads: u64,
    /// Current versions whose lock reached far enough already (no S3 request).
    pub fresh: u64,
    /// Current versions whose objects were locked further (or found locked further).
    pub extended: u64,
    /// Objects those versions hold (each one `HeadObject`, and a `PutObjectRetention` and a
    /// second `HeadObject` when short).
    pub objects: u64,
    /// Deleted items: their last version and the tombstone were locked for good when the
    /// deletion was recorded.
    pub tombstones: u64,
    /// Heads that moved to a newer version while the task worked (the next run sees it).
    pub moved: u64,
    /// Objects missing, or a lock the vault would not confirm.
    pub failed: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<VaultProblem>,
}

/// What `verify` found.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub containers: u64,
    /// Heads checked: current versions and tombstones.
    pub versions: u64,
    /// Objects checked for existence (by recorded version id) and lock.
    pub objects: u64,
    /// Objects whose bytes were read and hashed.
    pub hashed: u64,
    pub bytes_hashed: u64,
    /// The earliest lock end among the objects checked that the rule still needs locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest_lock_end: Option<DateTime<Utc>>,
    /// No such object version.
    pub missing: u64,
    /// Locked short of the rule's date, or not in the configured mode.
    pub lock_short: u64,
    /// Bytes that do not hash to the recorded SHA-256 (content) or do not read back as the
    /// catalog's version (record).
    pub altered: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<VaultProblem>,
}

impl VerifyReport {
    pub fn problem_count(&self) -> u64 {
        self.missing + self.lock_short + self.altered
    }
}
