//! Restore and export jobs: the request, its progress, its per-item reports and parts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::*;

/// What a restore job covers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RestoreScope {
    /// One file or folder (a folder includes its subtree).
    Item { item_id: String },
    /// A whole drive.
    Container,
}

/// Where restored items go.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RestoreTarget {
    /// In-place rollback: existing items get the old bytes as a new version of the same item,
    /// with name and parent put back; missing items are recreated on their path.
    InPlace,
    /// Another drive (or the same one) under a folder, keeping the relative tree. For a
    /// mailbox restore, `drive_id` is the target user (also accepted as `mailbox_id`) and
    /// `folder_id` one of their mail folders.
    Alternate {
        #[serde(alias = "mailbox_id")]
        drive_id: String,
        folder_id: String,
    },
    /// Mailboxes only: no write to Microsoft 365; the messages in scope as they were at the
    /// restore time become `.eml` files in zips in the exports bucket, downloaded through
    /// presigned links the job shows once it has finished.
    Export,
}

/// What to do when the target already holds an item of that name (alternate targets).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    #[default]
    Rename,
    Replace,
    Skip,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RestoreStatus {
    /// Accepted; the restorer has not planned it yet.
    Queued,
    /// Planned (a dry run ends here, with its counts).
    Planned,
    Running,
    Succeeded,
    /// Finished, some items failed (see the per-item report).
    CompletedWithErrors,
    /// Given up: the plan (or an export part) failed for good, or the job made no progress
    /// for too long. `reason` says why.
    Failed,
    /// Stopped on request: items already restored stay restored, the rest are not started.
    Cancelled,
}

impl RestoreStatus {
    /// The states a job can still move out of (a dry run ends `planned` but can be cancelled).
    pub const ACTIVE: [RestoreStatus; 3] = [RestoreStatus::Queued, RestoreStatus::Planned, RestoreStatus::Running];
    /// The states the restorer works in: the only ones it moves a job out of.
    pub const WORKING: [RestoreStatus; 2] = [RestoreStatus::Queued, RestoreStatus::Running];

    /// Whether the restorer still has work to do for the job.
    pub fn is_working(self) -> bool {
        Self::WORKING.contains(&self)
    }
}

/// A restore request and its progress. Counters are updated atomically by the restorers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RestoreJob {
    pub v: u32,
    pub id: String,
    pub container: ContainerId,
    pub scope: RestoreScope,
    /// Microsoft 365 time to restore to.
    pub as_of: DateTime<Utc>,
    pub target: RestoreTarget,
    #[serde(default)]
    pub conflict: ConflictPolicy,
    /// Items created after `as_of` are moved to a quarantine folder (never deleted).
    #[serde(default)]
    pub quarantine_new_items: bool,
    pub status: RestoreStatus,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub planned_items: u64,
    #[serde(default)]
    pub planned_bytes: u64,
    /// Items the plan found in the way (see [`RestoreOutcome::Conflict`]).
    #[serde(default)]
    pub conflicts: u64,
    #[serde(default)]
    pub restored: u64,
    #[serde(default)]
    pub unchanged: u64,
    #[serde(default)]
    pub skipped: u64,
    #[serde(default)]
    pub failed: u64,
    #[serde(default)]
    pub bytes_restored: u64,
    /// Why the job failed or was cancelled (never a secret: an error's text or a request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the job's row last changed (status, plan, an item's outcome): its progress
    /// heartbeat, stamped by the catalog. `None` on rows older than the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

impl RestoreJob {
    /// A job as it is created: queued, nothing planned or counted yet, conflicts renamed
    /// ([`ConflictPolicy`]'s default) and items created after `as_of` left in place.
    pub fn new(
        id: impl Into<String>,
        container: ContainerId,
        scope: RestoreScope,
        as_of: DateTime<Utc>,
        target: RestoreTarget,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            v: SCHEMA_VERSION,
            id: id.into(),
            container,
            scope,
            as_of,
            target,
            conflict: ConflictPolicy::default(),
            quarantine_new_items: false,
            status: RestoreStatus::Queued,
            created_at,
            planned_items: 0,
            planned_bytes: 0,
            conflicts: 0,
            restored: 0,
            unchanged: 0,
            skipped: 0,
            failed: 0,
            bytes_restored: 0,
            reason: None,
            updated_at: Some(created_at),
        }
    }

    /// When the job last showed progress: its last change, or its creation.
    pub fn progressed_at(&self) -> DateTime<Utc> {
        self.updated_at.unwrap_or(self.created_at).max(self.created_at)
    }
}

/// The outcome of one item of a restore job, for the per-item report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RestoreItemReport {
    pub job_id: String,
    pub item_id: String,
    /// Path as of the restore time, for people.
    pub path: String,
    pub outcome: RestoreOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The Graph item that now holds the restored state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_item_id: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RestoreOutcome {
    /// Bytes and metadata written, re-read and hashed equal to the backed-up version.
    Restored,
    /// The target already held exactly this state.
    Unchanged,
    /// Left alone by the conflict policy.
    Skipped,
    /// Created after the restore time; reported (and moved to quarantine if asked).
    CreatedAfter,
    Failed,
    /// Dry run only: the item is in the restore's way or the restore is in its way (a name
    /// now held by another item, an item created after the restore time); the detail says
    /// what the restore will do about it.
    Conflict,
}

/// One zip of an export job, recorded when its upload has completed (the commit point of the
/// part: its messages' reports are written before it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ExportPart {
    /// 1-based.
    pub part: u32,
    /// How many parts the export has: the job is finished when all of them are recorded.
    pub of: u32,
    /// Key in the exports bucket (not versioned: each job writes its own keys once).
    pub key: String,
    pub bytes: u64,
    /// SHA-256 of the whole zip, hex.
    pub sha256: String,
    /// `.eml` entries in the zip.
    pub messages: u64,
    /// Messages of this part left out (each has a `failed` report and a manifest line).
    pub failed: u64,
    pub completed_at: DateTime<Utc>,
}

/// What a restore's plan step found: counts a dry run reports and a run works through.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestorePlan {
    /// Items with an outcome to record (in scope at the restore time, plus those created after).
    pub items: u64,
    /// Bytes to upload: files whose content differs from the target's.
    pub bytes: u64,
    pub conflicts: u64,
}
