//! Periodic and lifecycle work: discovery of users, their drives and their mailboxes,
//! subscriptions (create, renew, recreate), safety-net sweeps and reconciles. It fans work out through the
//! `changes` queue; it never copies content itself.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::PipelineError;
use super::enumerator::change_message;
use crate::clientstate::ClientStateKey;
use crate::clock::Clock;
use crate::graph::{GraphClient, GraphError, NewSubscription};
use crate::model::{ChangeJob, ChangeReason, ContainerId, ContainerRecord, LifecycleJob};
use crate::store::{MessageSink, QueueName, SchedulerCatalog};

/// Outlook message subscriptions live at most 4,230 minutes (graph-facts §1; newer text is
/// said to allow more, unconfirmed): mailboxes are subscribed for a little less.
pub const MAIL_SUBSCRIPTION_MINUTES: i64 = 4_200;

pub struct SchedulerDeps {
    pub tenant_id: String,
    /// Reads users, drives and mailboxes.
    pub reader: GraphClient,
    /// Owns subscriptions (drive subscriptions need Files.ReadWrite.All).
    pub subscriber: GraphClient,
    pub catalog: Arc<dyn SchedulerCatalog>,
    pub sink: Arc<dyn MessageSink>,
    pub key: ClientStateKey,
    pub webhook_url: String,
    pub subscription_minutes: i64,
    pub renew_within_minutes: i64,
    pub clock: Arc<dyn Clock>,
}

/// The scheduled tasks, as sent by EventBridge (`{"task": "sweep"}`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Task {
    Discover,
    Renew,
    Sweep,
    Reconcile,
}

/// What a task did; the scheduler Lambda and the local control API answer it as JSON.
#[derive(Serialize, Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub containers: usize,
    pub discovered: usize,
    pub without_drive: usize,
    /// Users whose mailbox Graph does not serve: none, not licensed, or no Mail.Read consent.
    pub without_mailbox: usize,
    pub subscribed: usize,
    pub renewed: usize,
    pub enqueued: usize,
}

pub async fn run(deps: &SchedulerDeps, task: Task) -> Result<Report, PipelineError> {
    match task {
        Task::Discover => discover(deps).await,
        Task::Renew => renew(deps).await,
        Task::Sweep => enqueue_all(deps, ChangeReason::Sweep).await,
        Task::Reconcile => enqueue_all(deps, ChangeReason::Reconcile).await,
    }
}

async fn enqueue(
    deps: &SchedulerDeps,
    containers: Vec<ContainerId>,
    reason: ChangeReason,
) -> Result<usize, PipelineError> {
    let now = deps.clock.now();
    let messages: Vec<_> = containers.into_iter().map(|c| change_message(&ChangeJob::new(c, reason, now))).collect();
    let count = messages.len();
    if count > 0 {
        deps.sink.send(QueueName::Changes, messages).await?;
    }
    Ok(count)
}

async fn enqueue_all(deps: &SchedulerDeps, reason: ChangeReason) -> Result<Report, PipelineError> {
    let containers: Vec<_> =
        deps.catalog.list_containers(&deps.tenant_id).await?.into_iter().map(|r| r.container).collect();
    let mut report = Report { containers: containers.len(), ..Report::default() };
    report.enqueued = enqueue(deps, containers, reason).await?;
    info!(?reason, enqueued = report.enqueued, "scheduled enumerations");
    Ok(report)
}

/// Finds every user's OneDrive and mailbox; new ones get a subscription and a first full backup.
pub async fn discover(deps: &SchedulerDeps) -> Result<Report, PipelineError> {
    let mut report = Report::default();
    let mut fresh = Vec::new();
    for user in deps.reader.list_users().await? {
        match deps.reader.user_drive(&user.id).await? {
            Some(drive) => {
                let container = ContainerId::new(deps.tenant_id.clone(), drive.id.clone());
                protect(deps, container, &user, &mut report, &mut fresh).await?;
            }
            None => report.without_drive += 1,
        }
        // A user without an Exchange Online mailbox answers 404 (MailboxNotEnabledForRESTAPI),
        // one without a licence or consent 403: neither stops the discovery of the others.
        match deps.reader.mail_folder(&user.id, "inbox").await {
            Ok(Some(_)) => {
                let container = ContainerId::mailbox(deps.tenant_id.clone(), &user.id);
                protect(deps, container, &user, &mut report, &mut fresh).await?;
            }
            Ok(None) => report.without_mailbox += 1,
            Err(GraphError::MailboxUnavailable { code } | GraphError::Forbidden { code }) => {
                warn!(user = %user.id, %code, "mailbox not readable (none, licence or consent); not newly protected");
                report.without_mailbox += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Subscribing first, then enumerating, covers the gap between crawl and subscription.
    report.enqueued = enqueue(deps, fresh, ChangeReason::Sweep).await?;
    info!(
        containers = report.containers,
        discovered = report.discovered,
        without_drive = report.without_drive,
        without_mailbox = report.without_mailbox,
        "discovery done"
    );
    Ok(report)
}

/// Records a container found by discovery, subscribes to it if needed, and lists it for a
/// first crawl when it is new or its first crawl never finished.
async fn protect(
    deps: &SchedulerDeps,
    container: ContainerId,
    user: &crate::graph::User,
    report: &mut Report,
    fresh: &mut Vec<ContainerId>,
) -> Result<(), PipelineError> {
    report.containers += 1;
    let mut record = match deps.catalog.container(&container).await? {
        Some(r) => r,
        None => {
            report.discovered += 1;
            fresh.push(container.clone());
            ContainerRecord {
                container: container.clone(),
                user_id: user.id.clone(),
                user_principal_name: user.user_principal_name.clone(),
                discovered_at: deps.clock.now(),
                subscription_id: None,
                subscription_expires: None,
            }
        }
    };
    if record.subscription_id.is_none() {
        subscribe(deps, &mut record).await?;
        report.subscribed += 1;
    }
    deps.catalog.put_container(&record).await?;
    // A container whose first crawl never finished (an earlier discovery failed midway, or
    // its enumeration is still running) is asked again: a running one coalesces it.
    if !fresh.contains(&container) && deps.catalog.sync_state(&container).await?.last_synced_at.is_none() {
        fresh.push(container);
    }
    Ok(())
}

/// How long a container's subscriptions are made for.
fn lifetime(deps: &SchedulerDeps, c: &ContainerId) -> i64 {
    if c.is_mailbox() { deps.subscription_minutes.min(MAIL_SUBSCRIPTION_MINUTES) } else { deps.subscription_minutes }
}

fn expiry(deps: &SchedulerDeps, c: &ContainerId) -> DateTime<Utc> {
    deps.clock.now() + Duration::minutes(lifetime(deps, c))
}

/// A drive is watched from its root (the only driveItem subscription Graph allows); a
/// mailbox through all its messages, in every folder.
async fn subscribe(deps: &SchedulerDeps, record: &mut ContainerRecord) -> Result<(), PipelineError> {
    let c = &record.container;
    let (resource, change_type) = if c.is_mailbox() {
        (format!("/users/{}/messages", c.graph_id), "created,updated,deleted")
    } else {
        (format!("/drives/{}/root", c.graph_id), "updated")
    };
    let request = NewSubscription {
        resource,
        change_type: change_type.into(),
        notification_url: deps.webhook_url.clone(),
        lifecycle_notification_url: Some(deps.webhook_url.clone()),
        expiration: expiry(deps, c),
        client_state: deps.key.derive(&deps.tenant_id, &c.scoped_id()),
    };
    let subscription = deps.subscriber.create_subscription(&request).await?;
    record.subscription_id = Some(subscription.id);
    record.subscription_expires = Some(subscription.expiration);
    Ok(())
}

/// Renews subscriptions close to expiry; recreates those Graph no longer knows.
pub async fn renew(deps: &SchedulerDeps) -> Result<Report, PipelineError> {
    let mut report = Report::default();
    let mut resync = Vec::new();
    for mut record in deps.catalog.list_containers(&deps.tenant_id).await? {
        report.containers += 1;
        // Short-lived (mailbox) subscriptions are renewed once half their life has passed.
        let within = deps.renew_within_minutes.min(lifetime(deps, &record.container) / 2);
        if record.subscription_expires.is_some_and(|e| e > deps.clock.now() + Duration::minutes(within)) {
            continue;
        }
        match renew_one(deps, &mut record).await {
            Ok(true) => resync.push(record.container.clone()),
            Ok(false) => {}
            // A mailbox deleted or unlicensed since: its backup stays, the others are renewed.
            Err(PipelineError::Graph(e)) if record.container.is_mailbox() && e.is_mailbox_unavailable() => {
                warn!(container = %record.container.scoped_id(), error = %e, "mailbox unavailable; subscription not renewed");
                continue;
            }
            Err(e) => return Err(e),
        }
        report.renewed += 1;
        deps.catalog.put_container(&record).await?;
    }
    report.enqueued = enqueue(deps, resync, ChangeReason::Sweep).await?;
    Ok(report)
}

/// Renews (or recreates) one subscription; true when it had to be recreated, so changes
/// in the gap must be caught up by a delta.
async fn renew_one(deps: &SchedulerDeps, record: &mut ContainerRecord) -> Result<bool, PipelineError> {
    if let Some(id) = record.subscription_id.clone() {
        match deps.subscriber.renew_subscription(&id, expiry(deps, &record.container)).await {
            Ok(s) => {
                record.subscription_expires = Some(s.expiration);
                return Ok(false);
            }
            Err(GraphError::NotFound) => {
                warn!(container = %record.container.scoped_id(), "subscription is gone; recreating")
            }
            Err(e) => return Err(e.into()),
        }
    }
    subscribe(deps, record).await?;
    Ok(true)
}

/// Acts on a lifecycle event forwarded by the webhook.
pub async fn lifecycle(deps: &SchedulerDeps, job: &LifecycleJob) -> Result<(), PipelineError> {
    let records = deps.catalog.list_containers(&job.tenant_id).await?;
    let Some(mut record) = records.into_iter().find(|r| r.container.tag() == job.container_tag) else {
        warn!(event = %job.event, container = %job.container_tag, "lifecycle event for a container we do not protect");
        return Ok(());
    };
    let reason = match job.event.as_str() {
        "reauthorizationRequired" => renew_one(deps, &mut record).await?.then_some(ChangeReason::Sweep),
        "subscriptionRemoved" => {
            record.subscription_id = None;
            subscribe(deps, &mut record).await?;
            Some(ChangeReason::Sweep)
        }
        "missed" => Some(ChangeReason::Reconcile),
        other => {
            warn!(event = %other, "unknown lifecycle event; sweeping to be safe");
            Some(ChangeReason::Sweep)
        }
    };
    deps.catalog.put_container(&record).await?;
    if let Some(reason) = reason {
        enqueue(deps, vec![record.container.clone()], reason).await?;
    }
    info!(event = %job.event, container = %record.container.scoped_id(), "handled lifecycle event");
    Ok(())
}
