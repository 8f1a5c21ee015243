//! Queue messages: what the webhook, the scheduler, the enumerators and the restore API send.
//! Ids and item metadata only, never links, tokens or content.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::graph::UploadUrl;

use super::*;

/// Why an enumeration was asked for.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChangeReason {
    /// A Graph change notification.
    Notification,
    /// Periodic safety-net delta from the stored link.
    Sweep,
    /// The enumerator's own continuation before its deadline: never coalesced away.
    Continuation,
    /// Full enumeration compared with the catalog: re-queues what lacks a verified version
    /// and records deletions the delta feed did not report.
    Reconcile,
}

/// Message of the `changes` FIFO queue (group = container). Carries ids, never links or content.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChangeJob {
    pub v: u32,
    pub container: ContainerId,
    pub reason: ChangeReason,
    pub enqueued_at: DateTime<Utc>,
}

impl ChangeJob {
    pub fn new(container: ContainerId, reason: ChangeReason, now: DateTime<Utc>) -> Self {
        Self { v: SCHEMA_VERSION, container, reason, enqueued_at: now }
    }
}

/// Message of the `items` / `items-large` queues: back up this state of this item.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ItemJob {
    pub v: u32,
    pub container: ContainerId,
    pub item: ItemState,
    /// When the enumerator saw this state; the Microsoft 365 time of a deletion.
    pub observed_at: DateTime<Utc>,
    /// Full-scan epoch that produced the job, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_epoch: Option<String>,
    /// Times this job was re-sent because Graph throttled us (does not burn SQS receives).
    #[serde(default)]
    pub deferrals: u32,
    /// A deletion we inferred (the item was missing from a full scan, or its folder was
    /// deleted) rather than one Graph reported: the copier asks Graph before recording it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confirm_gone: bool,
}

/// Message of the `restores` queue: the API sends the plan step, the restorer fans folders
/// and files out to itself in `items` steps (an export's in `export_part` steps). Ids only, never names,
/// links or content.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RestoreTask {
    pub v: u32,
    pub job_id: String,
    pub step: RestoreStep,
    /// Deliveries of this step that failed before this one (the restorer re-sends a failed
    /// step itself, with a backoff, and gives up after a bounded number).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
    /// Times this step was put off because Graph throttled the restore or the target mailbox
    /// had no slot free: not failures, bounded separately.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deferrals: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What the restorer does with a job on this delivery.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RestoreStep {
    /// Walk the scope as of the job's time, count items and bytes, and fan the folders
    /// (parents first) then the files out. A dry run stops after counting: the job stays a plan.
    Plan { dry_run: bool },
    /// Restore these items of the job's container (a chunk of the plan). `resume`: the
    /// first item's upload, left unfinished by the delivery that re-sent this chunk.
    Items {
        item_ids: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<UploadResume>,
    },
    /// Export jobs: write zip `part` of `of`, holding the messages in scope whose ids lie in
    /// `[from, to)` in item order (`None`: unbounded). Ranges, not id lists, keep the message
    /// small whatever the part's size, and cover every message even if the catalog gained
    /// one since the plan.
    ExportPart {
        part: u32,
        of: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
}

/// An upload session a restore chunk left unfinished (out of time, or throttled), to carry
/// on from where it got. It lives only in the chunk's queue message: the upload URL is
/// pre-authenticated ([`UploadUrl`]'s `Debug` hides it), so it is never stored or logged.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UploadResume {
    pub item_id: String,
    pub upload_url: UploadUrl,
    /// The first byte the session had not yet received.
    pub next: u64,
}

impl RestoreTask {
    pub fn plan(job_id: impl Into<String>, dry_run: bool) -> Self {
        Self::new(job_id, RestoreStep::Plan { dry_run })
    }

    /// A first delivery of `step`.
    pub fn new(job_id: impl Into<String>, step: RestoreStep) -> Self {
        Self { v: SCHEMA_VERSION, job_id: job_id.into(), step, attempt: 0, deferrals: 0 }
    }
}

/// Message of the `lifecycle` queue: a Graph lifecycle event as the webhook forwards it to
/// the scheduler. Ids only, never the clientState.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LifecycleJob {
    pub v: u32,
    pub tenant_id: String,
    pub subscription_id: String,
    pub event: String,
    /// [`ContainerId::tag`] of the subscribed container, vouched for by the clientState.
    pub container_tag: String,
    pub received_at: DateTime<Utc>,
}

/// Message of the scheduler's work queue (the `lifecycle` queue): a share of a task fanned
/// out so that no whole-tenant loop runs inside one invocation, and one user, container or
/// subscription that fails holds up nothing else. The webhook's lifecycle events keep their
/// own shape ([`LifecycleJob`], without a `work` tag): the scheduler reads both.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "work", rename_all = "snake_case")]
pub enum SchedulerWork {
    /// Resolve these users' drives and mailboxes; register, subscribe and crawl new ones.
    Discover {
        users: Vec<UserRef>,
        /// Deliveries of this share so far: users Graph throttled are sent again, delayed,
        /// a bounded number of times, then reported unresolved until the next discovery.
        #[serde(default)]
        attempt: u32,
    },
    /// Resolve these SharePoint sites (and the team sites of these groups): their subsites
    /// and libraries; register, subscribe and crawl new libraries.
    DiscoverSites {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sites: Vec<SiteRef>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        groups: Vec<String>,
        #[serde(default)]
        attempt: u32,
    },
    /// Renew these containers' subscriptions, or recreate them.
    Renew {
        renewals: Vec<Renewal>,
        #[serde(default)]
        attempt: u32,
    },
}

/// A user as the listing gave it, with what discovery could not resolve last time (so that
/// only those rows are cleared: nobody reads every user's row).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UserRef {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_principal_name: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub unresolved: std::collections::BTreeMap<Service, Problem>,
}

/// A site to resolve: by id, or as the operator named it (`Sites.Selected`: an id or
/// `hostname:/sites/path`); `parent_id` for a subsite.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SiteRef {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
}

/// One subscription to renew; `missing` names the subscription Graph no longer lists (it
/// dropped it without a lifecycle event): it is recreated if the container still holds it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Renewal {
    pub container: ContainerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_task_has_the_documented_wire_shape() {
        let json = serde_json::to_value(RestoreTask::plan("job-1", true)).expect("json");
        assert_eq!(json, serde_json::json!({"v": 1, "job_id": "job-1", "step": {"kind": "plan", "dry_run": true}}));
        let items: RestoreTask =
            serde_json::from_str(r#"{"v":1,"job_id":"j","step":{"kind":"items","item_ids":["a","b"]}}"#)
                .expect("parse");
        assert_eq!(items.step, RestoreStep::Items { item_ids: vec!["a".into(), "b".into()], resume: None });
        // A message from before attempts and deferrals were counted is a first delivery; a
        // re-sent one carries its counts.
        assert_eq!((items.attempt, items.deferrals), (0, 0));
        let again = RestoreTask { attempt: 2, deferrals: 1, ..items };
        let json = serde_json::to_value(&again).expect("json");
        assert_eq!((json["attempt"].as_u64(), json["deferrals"].as_u64()), (Some(2), Some(1)));
        // A chunk that carries an unfinished upload names it; the URL never shows in Debug
        let resume =
            UploadResume { item_id: "a".into(), upload_url: UploadUrl::new("https://x/up?tempauth=T"), next: 7 };
        let step = RestoreStep::Items { item_ids: vec!["a".into()], resume: Some(resume) };
        let json = serde_json::to_value(&step).expect("json");
        let expected = serde_json::json!({"kind": "items", "item_ids": ["a"],
                                          "resume": {"item_id": "a", "upload_url": "https://x/up?tempauth=T", "next": 7}});
        assert_eq!(json, expected);
        assert_eq!(serde_json::from_value::<RestoreStep>(json).expect("parse"), step);
        assert!(!format!("{step:?}").contains("tempauth"));
        // An export part names its range; an open end is left out of the message.
        let part: RestoreTask =
            serde_json::from_str(r#"{"v":1,"job_id":"j","step":{"kind":"export_part","part":2,"of":3,"from":"m7"}}"#)
                .expect("parse");
        let step = RestoreStep::ExportPart { part: 2, of: 3, from: Some("m7".into()), to: None };
        assert_eq!(part.step, step);
        let json = serde_json::to_value(&step).expect("json");
        assert_eq!(json, serde_json::json!({"kind": "export_part", "part": 2, "of": 3, "from": "m7"}));
    }
}
