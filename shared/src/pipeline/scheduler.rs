//! Periodic and lifecycle work: discovery of users, their drives and their mailboxes,
//! subscriptions (create, renew, recreate), safety-net sweeps and reconciles. It fans work out
//! through the `changes` queue; it never copies content itself.
//!
//! No task loops over the whole tenant's Graph calls inside one invocation: discovery lists
//! the users (a page of 999 per request) and sends them in shares of [`USERS_PER_SHARE`] to
//! the scheduler's own work queue; renewal lists the app's subscriptions and the registry
//! and sends the ones due in shares of [`RENEWALS_PER_SHARE`]. Each share is handled user by
//! user, container by container: one that Graph refuses is recorded with the reason (an
//! [`Unresolved`] row, or the container's `problem`) and the others carry on; one Graph
//! throttles is sent again, delayed, in a share of its own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::PipelineError;
use super::enumerator::change_message;
use super::sites;
use super::throttle::DRIVE_RESOURCE;
use crate::clientstate::ClientStateKey;
use crate::clock::Clock;
use crate::config::SitePolicy;
use crate::graph::{GraphClient, GraphError, NewSubscription};
use crate::model::{
    ChangeJob, ChangeReason, ContainerId, ContainerRecord, LifecycleJob, Problem, Renewal, SchedulerWork, Service,
    Unresolved, UserRef,
};
use crate::store::{MessageSink, OutMessage, QueueName, SchedulerCatalog};

/// How often the template runs the sweep (`rate(15 minutes)`).
pub const SWEEP_INTERVAL: Duration = Duration::minutes(15);

/// Outlook message subscriptions live at most 4,230 minutes (graph-facts §1; newer text is
/// said to allow more, unconfirmed): mailboxes are subscribed for a little less.
pub const MAIL_SUBSCRIPTION_MINUTES: i64 = 4_200;

/// Users per discovery share: about four Graph calls each (drive, mailbox, two subscriptions
/// for a new user), a few seconds per share, far inside one invocation even when Graph is slow.
pub const USERS_PER_SHARE: usize = 20;
/// Subscriptions per renewal share: one Graph call each.
pub const RENEWALS_PER_SHARE: usize = 50;
/// Deliveries of a share's throttled users or subscriptions before they are reported (the
/// next discovery or renewal pass tries them again).
pub(super) const MAX_ATTEMPTS: u32 = 5;
/// The first retry's delay; doubled per attempt, at least Graph's `Retry-After`.
const RETRY_DELAY: StdDuration = StdDuration::from_secs(30);
/// SQS caps `DelaySeconds` at 15 minutes.
pub(super) const MAX_DELAY: StdDuration = StdDuration::from_secs(900);

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
    /// Which SharePoint sites are protected.
    pub sites: SitePolicy,
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
    /// Every SharePoint site, its subsites and libraries (daily: about five resource units
    /// per site, which an hourly pass would spend out of SharePoint's budget on a big tenant).
    DiscoverSites,
    /// New and deleted SharePoint sites since the last look (`/sites/delta`, one resource unit
    /// per page).
    SiteChanges,
    /// Fails restore jobs that stopped making progress (`restorer::watch`).
    RestoreWatchdog,
}

/// What a task or a share did; the scheduler Lambda and the local control API answer it as
/// JSON. A task that fans out reports what it listed and sent; each share what it did.
#[derive(Serialize, Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub users: usize,
    pub containers: usize,
    pub discovered: usize,
    pub without_drive: usize,
    /// Users without a mailbox Graph serves: none, not licensed, on-premises.
    pub without_mailbox: usize,
    /// Drives and mailboxes Graph refused to resolve: reported, not protected yet.
    pub unresolved: usize,
    pub subscribed: usize,
    /// Subscriptions Graph refused to create or renew: the container keeps its sweeps.
    pub unsubscribed: usize,
    pub renewed: usize,
    /// Subscriptions Graph had dropped without a lifecycle event, recreated.
    pub recreated: usize,
    /// Users or subscriptions Graph throttled, sent again with a delay.
    pub retrying: usize,
    /// Shares sent to the scheduler's work queue.
    pub shares: usize,
    pub enqueued: usize,
    /// SharePoint sites resolved (subsites included), and their libraries registered.
    pub sites: usize,
    pub libraries: usize,
    /// Sites Graph refused (access denied, archived, not found): recorded with the reason.
    pub sites_refused: usize,
    /// Sites `/sites/delta` reported deleted.
    pub sites_deleted: usize,
    /// Containers a sweep left to notifications this time: Graph's budget is nearly spent.
    pub sweeps_deferred: usize,
    /// Restore jobs the watchdog failed for want of progress.
    pub restores_failed: usize,
}

impl Report {
    fn add(&mut self, other: &Report) {
        let Report {
            users,
            containers,
            discovered,
            without_drive,
            without_mailbox,
            unresolved,
            subscribed,
            unsubscribed,
            renewed,
            recreated,
            retrying,
            shares,
            enqueued,
            sites,
            libraries,
            sites_refused,
            sites_deleted,
            sweeps_deferred,
            restores_failed,
        } = other;
        self.users += users;
        self.containers += containers;
        self.discovered += discovered;
        self.without_drive += without_drive;
        self.without_mailbox += without_mailbox;
        self.unresolved += unresolved;
        self.subscribed += subscribed;
        self.unsubscribed += unsubscribed;
        self.renewed += renewed;
        self.recreated += recreated;
        self.retrying += retrying;
        self.shares += shares;
        self.enqueued += enqueued;
        self.sites += sites;
        self.libraries += libraries;
        self.sites_refused += sites_refused;
        self.sites_deleted += sites_deleted;
        self.sweeps_deferred += sweeps_deferred;
        self.restores_failed += restores_failed;
    }
}

pub async fn run(deps: &SchedulerDeps, task: Task) -> Result<Report, PipelineError> {
    match task {
        Task::Discover => discover(deps).await,
        Task::Renew => renew(deps).await,
        Task::Sweep => enqueue_all(deps, ChangeReason::Sweep).await,
        Task::Reconcile => enqueue_all(deps, ChangeReason::Reconcile).await,
        Task::DiscoverSites => sites::fan_out(deps).await,
        Task::SiteChanges => sites::site_changes(deps).await,
        Task::RestoreWatchdog => {
            let watched = super::restorer::watch(deps.catalog.as_ref(), &deps.tenant_id, deps.clock.now()).await?;
            Ok(Report { restores_failed: watched.failed, ..Report::default() })
        }
    }
}

/// One message of the scheduler's work queue: a share of a task, or a lifecycle event as the
/// webhook forwards it (no `work` tag).
pub async fn handle_message(deps: &SchedulerDeps, body: &str) -> Result<Report, PipelineError> {
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| PipelineError::BadMessage(e.to_string()))?;
    if value.get("work").is_none() {
        let job: LifecycleJob = serde_json::from_value(value).map_err(|e| PipelineError::BadMessage(e.to_string()))?;
        lifecycle(deps, &job).await?;
        return Ok(Report::default());
    }
    let work: SchedulerWork = serde_json::from_value(value).map_err(|e| PipelineError::BadMessage(e.to_string()))?;
    match work {
        SchedulerWork::Discover { users, attempt } => discover_users(deps, &users, attempt).await,
        SchedulerWork::Renew { renewals, attempt } => renew_share(deps, &renewals, attempt).await,
        SchedulerWork::DiscoverSites { sites, groups, attempt } => {
            sites::discover_sites(deps, &sites, &groups, attempt).await
        }
    }
}

pub(super) async fn enqueue(
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
    let records = live_containers(deps).await?;
    let mut report = Report { containers: records.len(), ..Report::default() };
    let tight = reason == ChangeReason::Sweep && budget_tight(deps).await?;
    let containers: Vec<_> = records
        .into_iter()
        // Subscribed drives get their changes by notification; one without a working
        // subscription has only its sweeps and is never left out.
        .filter(|r| !(tight && r.container.kind.is_drive() && r.subscription_id.is_some() && r.problem.is_none()))
        .map(|r| r.container)
        .collect();
    report.sweeps_deferred = report.containers - containers.len();
    report.enqueued = enqueue(deps, containers, reason).await?;
    info!(?reason, enqueued = report.enqueued, deferred = report.sweeps_deferred, "scheduled enumerations");
    Ok(report)
}

/// Whether SharePoint's budget was spent (a throttle or a budget pause shared) within the
/// last sweep interval: a sweep then leaves subscribed drives to their notifications, so the
/// budget goes to changes, not to safety passes that find nothing. The next sweep after a
/// quiet interval, and the daily reconcile, take them all.
async fn budget_tight(deps: &SchedulerDeps) -> Result<bool, PipelineError> {
    let until = deps.catalog.throttled_until(&deps.tenant_id, DRIVE_RESOURCE).await?;
    Ok(until.is_some_and(|until| until > deps.clock.now() - SWEEP_INTERVAL))
}

/// Every registered container but the libraries of deleted sites (what they hold is kept;
/// Graph has nothing more to give).
async fn live_containers(deps: &SchedulerDeps) -> Result<Vec<ContainerRecord>, PipelineError> {
    let records = deps.catalog.list_containers(&deps.tenant_id).await?;
    if records.iter().all(|r| r.site.is_none()) {
        return Ok(records);
    }
    let deleted: HashSet<String> = deps
        .catalog
        .list_sites(&deps.tenant_id)
        .await?
        .into_iter()
        .filter(|s| s.deleted_at.is_some())
        .map(|s| s.site_id)
        .collect();
    Ok(records.into_iter().filter(|r| r.site.as_ref().is_none_or(|s| !deleted.contains(&s.site_id))).collect())
}

/// Sends shares of work to the scheduler's queue; `delay` for a retry.
pub(super) async fn send_work(
    deps: &SchedulerDeps,
    shares: Vec<SchedulerWork>,
    delay: Option<StdDuration>,
) -> Result<usize, PipelineError> {
    let count = shares.len();
    let messages = shares
        .iter()
        .map(|w| Ok(OutMessage { body: serde_json::to_string(w)?, group_id: None, delay }))
        .collect::<Result<Vec<_>, serde_json::Error>>()
        .map_err(|e| PipelineError::BadMessage(e.to_string()))?;
    if count > 0 {
        deps.sink.send(QueueName::Lifecycle, messages).await?;
    }
    Ok(count)
}

/// How long a throttled share waits before its next delivery.
pub(super) fn retry_delay(attempt: u32, errors: impl Iterator<Item = Option<StdDuration>>) -> StdDuration {
    let backoff = RETRY_DELAY.saturating_mul(1 << attempt.min(5));
    errors.flatten().fold(backoff, StdDuration::max).min(MAX_DELAY)
}

// ---------------------------------------------------------------------------------------
// Discovery

/// Lists every user and sends them, in shares, to be resolved: the only whole-tenant Graph
/// call is the user listing (999 users per request).
pub async fn discover(deps: &SchedulerDeps) -> Result<Report, PipelineError> {
    let users = deps.reader.list_users().await?;
    let mut unresolved: HashMap<String, BTreeMap<Service, Problem>> = HashMap::new();
    for u in deps.catalog.list_unresolved(&deps.tenant_id).await? {
        unresolved.entry(u.user_id).or_default().insert(u.service, u.problem);
    }
    // A user no longer listed has nothing left to resolve (what was backed up stays).
    let listed: HashSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
    let gone: Vec<(String, Service)> = unresolved
        .iter()
        .filter(|(user, _)| !listed.contains(user.as_str()))
        .flat_map(|(user, services)| services.keys().map(|s| (user.clone(), *s)))
        .collect();
    for (user, service) in gone {
        deps.catalog.clear_unresolved(&deps.tenant_id, &user, service).await?;
    }
    let refs: Vec<UserRef> = users
        .into_iter()
        .map(|u| UserRef {
            unresolved: unresolved.remove(&u.id).unwrap_or_default(),
            id: u.id,
            user_principal_name: u.user_principal_name,
        })
        .collect();
    let shares: Vec<_> = refs
        .chunks(USERS_PER_SHARE)
        .map(|users| SchedulerWork::Discover { users: users.to_vec(), attempt: 0 })
        .collect();
    let report = Report { users: refs.len(), shares: send_work(deps, shares, None).await?, ..Report::default() };
    info!(users = report.users, shares = report.shares, "discovery fanned out");
    Ok(report)
}

/// Resolves a share of users one by one; a user Graph refuses is reported and the others
/// carry on; users Graph throttles go back to the queue, delayed, in a share of their own.
async fn discover_users(deps: &SchedulerDeps, users: &[UserRef], attempt: u32) -> Result<Report, PipelineError> {
    let mut report = Report::default();
    let mut fresh = Vec::new();
    let mut again = Vec::new();
    for user in users {
        report.users += 1;
        let throttled = discover_user(deps, user, &mut report, &mut fresh).await?;
        if !throttled.is_empty() {
            again.push((user, throttled));
        }
    }
    // Subscribing first, then enumerating, covers the gap between crawl and subscription.
    report.enqueued = enqueue(deps, fresh, ChangeReason::Sweep).await?;
    if !again.is_empty() {
        if attempt + 1 < MAX_ATTEMPTS {
            let delay = retry_delay(attempt, again.iter().flat_map(|(_, e)| e.iter().map(|(_, e)| e.retry_after())));
            let users = again.iter().map(|(u, _)| (*u).clone()).collect();
            report.retrying = again.len();
            send_work(deps, vec![SchedulerWork::Discover { users, attempt: attempt + 1 }], Some(delay)).await?;
        } else {
            for (user, errors) in again {
                for (service, error) in errors {
                    record_unresolved(deps, user, service, &error, &mut report).await?;
                }
            }
        }
    }
    info!(
        users = report.users,
        discovered = report.discovered,
        unresolved = report.unresolved,
        unsubscribed = report.unsubscribed,
        retrying = report.retrying,
        "discovery share done"
    );
    Ok(report)
}

/// Resolves one user's drive and mailbox; what Graph throttled, to try again later.
async fn discover_user(
    deps: &SchedulerDeps,
    user: &UserRef,
    report: &mut Report,
    fresh: &mut Vec<ContainerId>,
) -> Result<Vec<(Service, GraphError)>, PipelineError> {
    let mut throttled = Vec::new();
    for service in [Service::Drive, Service::Mailbox] {
        match resolve(deps, &user.id, service).await {
            Ok(found) => {
                match found {
                    Some(container) => protect(deps, container, user, report, fresh).await?,
                    None if service == Service::Drive => report.without_drive += 1,
                    None => report.without_mailbox += 1,
                }
                if user.unresolved.contains_key(&service) {
                    deps.catalog.clear_unresolved(&deps.tenant_id, &user.id, service).await?;
                }
            }
            Err(e) if e.is_retryable() => throttled.push((service, e)),
            // Our credentials, not this user: the whole share fails and is retried.
            Err(e @ (GraphError::Auth { .. } | GraphError::Unauthorized { .. })) => return Err(e.into()),
            Err(e) => record_unresolved(deps, user, service, &e, report).await?,
        }
    }
    Ok(throttled)
}

/// The user's drive or mailbox, or `None` when the user has none (no OneDrive; a mailbox
/// not licensed, on-premises, or of a user deleted since the listing).
async fn resolve(deps: &SchedulerDeps, user_id: &str, service: Service) -> Result<Option<ContainerId>, GraphError> {
    match service {
        Service::Drive => {
            Ok(deps.reader.user_drive(user_id).await?.map(|d| ContainerId::new(deps.tenant_id.clone(), d.id)))
        }
        Service::Mailbox => match deps.reader.mail_folder(user_id, "inbox").await {
            Ok(Some(_)) => Ok(Some(ContainerId::mailbox(deps.tenant_id.clone(), user_id))),
            Ok(None) | Err(GraphError::MailboxUnavailable { .. }) => Ok(None),
            Err(e) => Err(e),
        },
    }
}

async fn record_unresolved(
    deps: &SchedulerDeps,
    user: &UserRef,
    service: Service,
    error: &GraphError,
    report: &mut Report,
) -> Result<(), PipelineError> {
    warn!(user = %user.id, service = service.as_str(), %error, "could not resolve; reported as unresolved");
    report.unresolved += 1;
    let problem = Problem::continued(user.unresolved.get(&service), error.to_string(), deps.clock.now());
    if user.unresolved.get(&service) == Some(&problem) {
        return Ok(()); // already reported as it stands
    }
    let unresolved = Unresolved {
        tenant_id: deps.tenant_id.clone(),
        user_id: user.id.clone(),
        user_principal_name: user.user_principal_name.clone(),
        service,
        problem,
    };
    Ok(deps.catalog.put_unresolved(&unresolved).await?)
}

/// Records a container found by discovery, subscribes to it if needed, and lists it for a
/// first crawl when it is new or its first crawl never finished. A subscription Graph
/// refuses is recorded on the container, which is crawled all the same (sweeps keep it backed
/// up; the renewal pass tries the subscription again).
async fn protect(
    deps: &SchedulerDeps,
    container: ContainerId,
    user: &UserRef,
    report: &mut Report,
    fresh: &mut Vec<ContainerId>,
) -> Result<(), PipelineError> {
    let existing = deps.catalog.container(&container).await?;
    let record = existing.clone().unwrap_or_else(|| ContainerRecord {
        container: container.clone(),
        user_id: user.id.clone(),
        user_principal_name: user.user_principal_name.clone(),
        discovered_at: deps.clock.now(),
        subscription_id: None,
        subscription_expires: None,
        problem: None,
        site: None,
    });
    register(deps, existing, record, report, fresh).await
}

/// Registers a container discovery found: `record` is what to store (the `existing` row,
/// brought up to date, or a new one). Subscribes to it if needed, and lists it for a first
/// crawl when it is new or its first crawl never finished.
pub(super) async fn register(
    deps: &SchedulerDeps,
    existing: Option<ContainerRecord>,
    mut record: ContainerRecord,
    report: &mut Report,
    fresh: &mut Vec<ContainerId>,
) -> Result<(), PipelineError> {
    report.containers += 1;
    let container = record.container.clone();
    let is_new = existing.is_none();
    let before = existing.unwrap_or_else(|| record.clone());
    if record.subscription_id.is_none() {
        match subscribe(deps, &mut record).await {
            Ok(()) => report.subscribed += 1,
            Err(PipelineError::Graph(e)) => {
                refused(deps, &mut record, &e);
                report.unsubscribed += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if is_new {
        if !deps.catalog.create_container(&record).await? {
            // Registered meanwhile by another share (a library reached through its site and
            // through its group): that one subscribes and crawls it; ours would be a second
            // subscription, so it is taken back.
            if let Some(id) = &record.subscription_id
                && let Err(e) = deps.subscriber.delete_subscription(id).await
            {
                warn!(container = %container.scoped_id(), error = %e, "could not delete a duplicate subscription; it lapses");
            }
            report.containers -= 1;
            return Ok(());
        }
    } else if record != before {
        deps.catalog.put_container(&record).await?;
    }
    if is_new {
        report.discovered += 1;
        fresh.push(container);
    } else if deps.catalog.sync_state(&container).await?.last_synced_at.is_none() {
        // Its first crawl never finished (an earlier one failed midway, or is still running:
        // a running one coalesces this).
        fresh.push(container);
    }
    Ok(())
}

/// Records that Graph would not give the container a subscription.
fn refused(deps: &SchedulerDeps, record: &mut ContainerRecord, error: &GraphError) {
    warn!(container = %record.container.scoped_id(), %error, "no subscription; the container is backed up by sweeps");
    let reason = format!("subscription refused: {error}");
    record.problem = Some(Problem::continued(record.problem.as_ref(), reason, deps.clock.now()));
}

// ---------------------------------------------------------------------------------------
// Subscriptions

/// How long a container's subscriptions are made for.
fn lifetime(deps: &SchedulerDeps, c: &ContainerId) -> i64 {
    if c.is_mailbox() { deps.subscription_minutes.min(MAIL_SUBSCRIPTION_MINUTES) } else { deps.subscription_minutes }
}

fn expiry(deps: &SchedulerDeps, c: &ContainerId) -> DateTime<Utc> {
    deps.clock.now() + Duration::minutes(lifetime(deps, c))
}

/// A drive is watched from its root (the only driveItem subscription Graph allows); a
/// mailbox through all its messages, in every folder. Clears the container's problem.
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
        security_webhooks: !c.is_mailbox(),
    };
    let subscription = deps.subscriber.create_subscription(&request).await?;
    record.subscription_id = Some(subscription.id);
    record.subscription_expires = Some(subscription.expiration);
    record.problem = None;
    Ok(())
}

/// Lists the app's subscriptions and the registry, and sends in shares every container whose
/// subscription is close to expiry, missing, or gone from Graph's list (Graph drops some
/// without a lifecycle event: they are noticed here, not days later at their recorded expiry).
pub async fn renew(deps: &SchedulerDeps) -> Result<Report, PipelineError> {
    let live: HashSet<String> = deps.subscriber.list_subscriptions().await?.into_iter().map(|s| s.id).collect();
    let now = deps.clock.now();
    let records = live_containers(deps).await?;
    let mut report = Report { containers: records.len(), ..Report::default() };
    let renewals: Vec<Renewal> = records
        .into_iter()
        .filter_map(|r| {
            // Short-lived (mailbox) subscriptions are renewed once half their life has passed.
            let within = deps.renew_within_minutes.min(lifetime(deps, &r.container) / 2);
            let due = r.subscription_expires.is_none_or(|e| e <= now + Duration::minutes(within));
            match r.subscription_id {
                Some(id) if !live.contains(&id) => Some(Renewal { container: r.container, missing: Some(id) }),
                Some(_) if !due => None,
                _ => Some(Renewal { container: r.container, missing: None }),
            }
        })
        .collect();
    let shares: Vec<_> = renewals
        .chunks(RENEWALS_PER_SHARE)
        .map(|renewals| SchedulerWork::Renew { renewals: renewals.to_vec(), attempt: 0 })
        .collect();
    report.shares = send_work(deps, shares, None).await?;
    info!(containers = report.containers, due = renewals.len(), shares = report.shares, "renewal fanned out");
    Ok(report)
}

/// Renews (or recreates) a share of subscriptions one by one.
async fn renew_share(deps: &SchedulerDeps, renewals: &[Renewal], attempt: u32) -> Result<Report, PipelineError> {
    let mut report = Report::default();
    let mut resync = Vec::new();
    let mut again = Vec::new();
    for renewal in renewals {
        let Some(mut record) = deps.catalog.container(&renewal.container).await? else { continue };
        report.containers += 1;
        let before = record.clone();
        let outcome = match &renewal.missing {
            Some(id) if record.subscription_id.as_ref() == Some(id) => {
                warn!(container = %record.container.scoped_id(), "Graph dropped the subscription without a lifecycle event; recreating");
                record.subscription_id = None;
                subscribe(deps, &mut record).await.map(|()| true)
            }
            // Replaced since the listing: the new one was not in it.
            Some(_) => continue,
            None => renew_one(deps, &mut record).await,
        };
        match outcome {
            Ok(recreated) => {
                report.renewed += 1;
                if recreated {
                    report.recreated += 1;
                    resync.push(record.container.clone());
                }
            }
            Err(PipelineError::Graph(e)) if e.is_retryable() => again.push((renewal.clone(), e)),
            Err(PipelineError::Graph(e)) => {
                refused(deps, &mut record, &e);
                report.unsubscribed += 1;
            }
            Err(e) => return Err(e),
        }
        if record != before {
            deps.catalog.put_container(&record).await?;
        }
    }
    report.enqueued = enqueue(deps, resync, ChangeReason::Sweep).await?;
    if !again.is_empty() {
        if attempt + 1 < MAX_ATTEMPTS {
            let delay = retry_delay(attempt, again.iter().map(|(_, e)| e.retry_after()));
            let renewals: Vec<_> = again.into_iter().map(|(r, _)| r).collect();
            report.retrying = renewals.len();
            send_work(deps, vec![SchedulerWork::Renew { renewals, attempt: attempt + 1 }], Some(delay)).await?;
        } else {
            for (renewal, error) in again {
                if let Some(mut record) = deps.catalog.container(&renewal.container).await? {
                    refused(deps, &mut record, &error);
                    deps.catalog.put_container(&record).await?;
                    report.unsubscribed += 1;
                }
            }
        }
    }
    Ok(report)
}

/// Renews (or recreates) one subscription; true when it had to be recreated, so changes
/// in the gap must be caught up by a delta.
async fn renew_one(deps: &SchedulerDeps, record: &mut ContainerRecord) -> Result<bool, PipelineError> {
    if let Some(id) = record.subscription_id.clone() {
        match deps.subscriber.renew_subscription(&id, expiry(deps, &record.container)).await {
            Ok(s) => {
                record.subscription_expires = Some(s.expiration);
                record.problem = None;
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

/// Acts on a lifecycle event forwarded by the webhook. The container is found by the tag its
/// clientState vouched for, by key.
pub async fn lifecycle(deps: &SchedulerDeps, job: &LifecycleJob) -> Result<(), PipelineError> {
    let Some(mut record) = deps.catalog.container_by_tag(&job.tenant_id, &job.container_tag).await? else {
        warn!(event = %job.event, container = %job.container_tag, "lifecycle event for a container we do not protect");
        return Ok(());
    };
    let before = record.clone();
    let current = record.subscription_id.as_deref() == Some(job.subscription_id.as_str());
    let outcome = match job.event.as_str() {
        // Missed notifications: whichever subscription it was, the container may lack changes.
        "missed" => Ok(Some(ChangeReason::Reconcile)),
        // About a subscription already replaced: nothing to do for it.
        _ if !current => Ok(None),
        "reauthorizationRequired" => {
            renew_one(deps, &mut record).await.map(|recreated| recreated.then_some(ChangeReason::Sweep))
        }
        "subscriptionRemoved" => {
            record.subscription_id = None;
            subscribe(deps, &mut record).await.map(|()| Some(ChangeReason::Sweep))
        }
        other => {
            warn!(event = %other, "unknown lifecycle event; sweeping to be safe");
            Ok(Some(ChangeReason::Sweep))
        }
    };
    let reason = match outcome {
        Ok(reason) => reason,
        // Refused (not throttled): recorded, swept meanwhile, tried again by the renewal pass.
        Err(PipelineError::Graph(e)) if !e.is_retryable() => {
            refused(deps, &mut record, &e);
            Some(ChangeReason::Sweep)
        }
        Err(e) => return Err(e),
    };
    if record != before {
        deps.catalog.put_container(&record).await?;
    }
    if let Some(reason) = reason {
        enqueue(deps, vec![record.container.clone()], reason).await?;
    }
    info!(event = %job.event, container = %record.container.scoped_id(), current, "handled lifecycle event");
    Ok(())
}

/// Adds a share's report to a batch's.
pub fn total(reports: impl IntoIterator<Item = Report>) -> Report {
    let mut sum = Report::default();
    for r in reports {
        sum.add(&r);
    }
    sum
}
