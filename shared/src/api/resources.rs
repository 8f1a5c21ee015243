//! `GET /v1/resources`: every user discovery knows of, their protected drives and mailbox, every
//! SharePoint site with its libraries, and how well each is protected: `protected | degraded |
//! unavailable | unprotected`, with the reason (Graph's code or ours) and since when. A drive
//! or mailbox discovery could not resolve is listed under its user, a site Graph refused under
//! the sites with its reason: never silently missing.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::{ApiDeps, ApiError, ApiQuery, Deps, NoQuery};
use crate::model::{ContainerId, ContainerRecord, ItemFailure, Problem, Service, SiteRecord, SyncState, Unresolved};
use crate::pipeline::DRIVE_RESOURCE;
use crate::pipeline::enumerator::describe;

/// Catalog reads in flight for one request.
const READ_CONCURRENCY: usize = 16;
/// Failures per container checked against the item's head.
const FAILURES_CHECKED: usize = 100;

/// A container whose last complete pass is older than this is degraded: sweeps run every 15
/// minutes, so a day without one means enumeration is stuck (throttled, failing, dead-lettered).
pub const STALE_AFTER: TimeDelta = TimeDelta::hours(24);

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ProtectionState {
    /// Backed up, subscribed, in sync, nothing failing.
    Protected,
    /// Backed up, but something is missing: no working subscription (sweeps alone keep it
    /// backed up), items that failed, or no complete pass for a day.
    Degraded,
    /// Graph refuses the whole container (deleted, unlicensed, access denied): everything
    /// backed up is kept; nothing new is.
    Unavailable,
    /// Nothing (or not everything) backed up yet: the first full backup has not finished, or
    /// discovery could not resolve the drive or mailbox.
    Unprotected,
}

/// How well something is protected; `reason` and `since` unless protected.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Status {
    pub state: ProtectionState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
}

impl Status {
    fn protected() -> Self {
        Self { state: ProtectionState::Protected, reason: None, since: None }
    }

    fn of(state: ProtectionState, problem: &Problem) -> Self {
        Self { state, reason: Some(problem.reason.clone()), since: Some(problem.since) }
    }

    fn new(state: ProtectionState, reason: String, since: DateTime<Utc>) -> Self {
        Self { state, reason: Some(reason), since: Some(since) }
    }
}

/// The rule, first match wins (worst first).
pub fn status(
    record: &ContainerRecord,
    sync: &SyncState,
    failures: &[ItemFailure],
    unresolved: Option<&Problem>,
    now: DateTime<Utc>,
) -> Status {
    if let Some(problem) = &sync.unavailable {
        return Status::of(ProtectionState::Unavailable, problem);
    }
    let Some(synced) = sync.last_synced_at else {
        let reason = match &record.problem {
            Some(p) => format!("first full backup not finished; {}", p.reason),
            None => "first full backup not finished".to_owned(),
        };
        return Status::new(ProtectionState::Unprotected, reason, record.discovered_at);
    };
    if let Some(problem) = &record.problem {
        return Status::of(ProtectionState::Degraded, problem);
    }
    if let Some(problem) = unresolved {
        return Status::new(ProtectionState::Degraded, format!("discovery: {}", problem.reason), problem.since);
    }
    match (&record.subscription_id, record.subscription_expires) {
        (None, _) => return Status::new(ProtectionState::Degraded, "no subscription".into(), record.discovered_at),
        (Some(_), Some(expires)) if expires <= now => {
            return Status::new(ProtectionState::Degraded, "subscription expired".into(), expires);
        }
        _ => {}
    }
    if let Some(first) = failures.iter().map(|f| f.last_attempt).min() {
        let n = failures.len();
        let reason = format!("{n} item{} could not be backed up", if n == 1 { "" } else { "s" });
        return Status::new(ProtectionState::Degraded, reason, first);
    }
    if now - synced > STALE_AFTER {
        return Status::new(ProtectionState::Degraded, "no complete pass for over a day".into(), synced);
    }
    Status::protected()
}

#[derive(Serialize)]
pub(crate) struct Resources {
    /// How many drives, libraries and mailboxes (unresolved ones and sites Graph refused
    /// included) are in each state.
    summary: BTreeMap<ProtectionState, usize>,
    users: Vec<ProtectedUser>,
    sites: Vec<ProtectedSite>,
    /// Every drive and library of the tenant waits until then: SharePoint's resource-unit
    /// budget is spent, or Graph throttled (a blocked app answers 503 for as long as it is
    /// blocked). Absent when nothing waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    drives_paused_until: Option<DateTime<Utc>>,
}

/// A SharePoint site: its own status (the worst of its libraries', or why Graph refuses it)
/// and its libraries, each browsed and restored as a drive (`/v1/drives/{drive_id}/...`).
#[derive(Serialize)]
struct ProtectedSite {
    site_id: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    web_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<String>,
    status: Status,
    discovered_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    archive_status: Option<String>,
    /// Deleted in SharePoint: every version backed up is kept, nothing new is backed up.
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted_at: Option<DateTime<Utc>>,
    libraries: Vec<ProtectedLibrary>,
    /// Libraries left out by policy (hidden system libraries), with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    excluded_libraries: Vec<ExcludedLibrary>,
}

#[derive(Serialize)]
struct ProtectedLibrary {
    drive_id: String,
    name: String,
    #[serde(flatten)]
    protection: Protection,
}

#[derive(Serialize)]
struct ExcludedLibrary {
    drive_id: String,
    name: String,
    reason: String,
}

#[derive(Serialize)]
struct ProtectedUser {
    user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_principal_name: Option<String>,
    drives: Vec<ProtectedDrive>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mailbox: Option<ProtectedMailbox>,
    /// The user's drive or mailbox discovery could not resolve.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unresolved: Vec<UnresolvedService>,
}

#[derive(Serialize)]
struct ProtectedDrive {
    drive_id: String,
    #[serde(flatten)]
    protection: Protection,
}

#[derive(Serialize)]
struct ProtectedMailbox {
    mailbox_id: String,
    #[serde(flatten)]
    protection: Protection,
}

#[derive(Serialize)]
struct UnresolvedService {
    service: Service,
    status: Status,
}

/// How a container is protected.
#[derive(Serialize)]
struct Protection {
    status: Status,
    discovered_at: DateTime<Utc>,
    subscription_expires: Option<DateTime<Utc>>,
    last_synced_at: Option<DateTime<Utc>>,
    /// Where its enumeration stands.
    health: &'static str,
    /// Items that failed and have not been backed up since.
    open_failures: usize,
    /// Graph refuses the whole container (a mailbox deleted or unlicensed): what and since when.
    #[serde(skip_serializing_if = "Option::is_none")]
    unavailable: Option<Problem>,
}

pub(crate) async fn resources(
    State(deps): Deps,
    ApiQuery(NoQuery {}): ApiQuery<NoQuery>,
) -> Result<Json<Resources>, ApiError> {
    let records = deps.catalog.list_containers(&deps.tenant_id).await?;
    let unresolved = deps.catalog.list_unresolved(&deps.tenant_id).await?;
    let site_records = deps.catalog.list_sites(&deps.tenant_id).await?;
    let drives_paused_until =
        deps.catalog.throttled_until(&deps.tenant_id, DRIVE_RESOURCE).await?.filter(|until| *until > deps.clock.now());
    let now = deps.clock.now();
    let deps = &deps;
    let containers: Vec<_> = futures::stream::iter(records)
        .map(|record| async move {
            let sync = deps.catalog.sync_state(&record.container).await?;
            let failures = still_failing(deps, &record.container).await?;
            Ok::<_, ApiError>((record, sync, failures))
        })
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await?;

    let mut users: BTreeMap<String, ProtectedUser> = BTreeMap::new();
    let user = |users: &mut BTreeMap<String, ProtectedUser>, id: &str, upn: Option<&String>| {
        let user = users.entry(id.to_owned()).or_insert_with(|| ProtectedUser {
            user_id: id.to_owned(),
            user_principal_name: None,
            drives: Vec::new(),
            mailbox: None,
            unresolved: Vec::new(),
        });
        if user.user_principal_name.is_none() {
            user.user_principal_name = upn.cloned();
        }
    };
    let problem_of = |user_id: &str, service: Service| {
        unresolved.iter().find(|u: &&Unresolved| u.user_id == user_id && u.service == service).map(|u| &u.problem)
    };
    let mut summary = BTreeMap::new();
    let mut libraries: BTreeMap<String, Vec<ProtectedLibrary>> = BTreeMap::new();
    for (record, sync, failures) in containers {
        if let Some(link) = &record.site {
            let site = site_records.iter().find(|s| s.site_id == link.site_id);
            let status = match site.and_then(|s| s.deleted_at) {
                Some(at) => Status::new(ProtectionState::Unavailable, "site deleted in SharePoint".into(), at),
                None => status(&record, &sync, &failures, None, now),
            };
            *summary.entry(status.state).or_insert(0) += 1;
            let library = ProtectedLibrary {
                drive_id: record.container.graph_id.clone(),
                name: link.library.clone(),
                protection: protection(&record, &sync, &failures, status),
            };
            libraries.entry(link.site_id.clone()).or_default().push(library);
            continue;
        }
        user(&mut users, &record.user_id, record.user_principal_name.as_ref());
        let service = if record.container.is_mailbox() { Service::Mailbox } else { Service::Drive };
        let status = status(&record, &sync, &failures, problem_of(&record.user_id, service), now);
        *summary.entry(status.state).or_insert(0) += 1;
        let protection = protection(&record, &sync, &failures, status);
        let id = record.container.graph_id.clone();
        let Some(user) = users.get_mut(&record.user_id) else { continue };
        if record.container.is_mailbox() {
            user.mailbox = Some(ProtectedMailbox { mailbox_id: id, protection });
        } else {
            user.drives.push(ProtectedDrive { drive_id: id, protection });
        }
    }
    for u in &unresolved {
        user(&mut users, &u.user_id, u.user_principal_name.as_ref());
        let Some(user) = users.get_mut(&u.user_id) else { continue };
        let protected = match u.service {
            Service::Drive => !user.drives.is_empty(),
            Service::Mailbox => user.mailbox.is_some(),
        };
        // A container already protected carries the problem in its own status (degraded).
        if !protected {
            *summary.entry(ProtectionState::Unprotected).or_insert(0) += 1;
            user.unresolved.push(UnresolvedService {
                service: u.service,
                status: Status::of(ProtectionState::Unprotected, &u.problem),
            });
        }
    }
    let mut users: Vec<_> = users.into_values().collect();
    for user in &mut users {
        user.drives.sort_by(|a, b| a.drive_id.cmp(&b.drive_id));
        user.unresolved.sort_by_key(|u| u.service);
    }
    let mut sites: Vec<ProtectedSite> = site_records
        .into_iter()
        .map(|record| {
            let mut libraries = libraries.remove(&record.site_id).unwrap_or_default();
            libraries.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.drive_id.cmp(&b.drive_id)));
            let status = site_status(&record, &libraries);
            if libraries.is_empty() && status.state != ProtectionState::Protected {
                *summary.entry(status.state).or_insert(0) += 1;
            }
            let excluded_libraries = record
                .libraries
                .iter()
                .filter_map(|l| {
                    let reason = l.excluded.clone()?;
                    Some(ExcludedLibrary { drive_id: l.drive_id.clone(), name: l.name.clone(), reason })
                })
                .collect();
            ProtectedSite {
                site_id: record.site_id,
                name: record.name,
                web_url: record.web_url,
                parent_id: record.parent_id,
                status,
                discovered_at: record.discovered_at,
                archive_status: record.archive_status,
                deleted_at: record.deleted_at,
                libraries,
                excluded_libraries,
            }
        })
        .collect();
    sites.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.site_id.cmp(&b.site_id)));
    Ok(Json(Resources { summary, users, sites, drives_paused_until }))
}

fn protection(record: &ContainerRecord, sync: &SyncState, failures: &[ItemFailure], status: Status) -> Protection {
    Protection {
        status,
        discovered_at: record.discovered_at,
        subscription_expires: record.subscription_expires,
        last_synced_at: sync.last_synced_at,
        health: describe(sync),
        open_failures: failures.len(),
        unavailable: sync.unavailable.clone(),
    }
}

/// A site's status: deleted, then what Graph refuses about it (unavailable when it has
/// libraries backed up, unprotected when nothing of it is), then the worst of its libraries'.
fn site_status(site: &SiteRecord, libraries: &[ProtectedLibrary]) -> Status {
    if let Some(at) = site.deleted_at {
        return Status::new(ProtectionState::Unavailable, "site deleted in SharePoint".into(), at);
    }
    if let Some(problem) = &site.problem {
        let state = if libraries.is_empty() { ProtectionState::Unprotected } else { ProtectionState::Unavailable };
        return Status::of(state, problem);
    }
    match libraries.iter().map(|l| &l.protection.status).max_by_key(|s| s.state) {
        Some(worst) => Status { state: worst.state, reason: worst.reason.clone(), since: worst.since },
        None => Status::protected(),
    }
}

/// Open failures checked against the heads: one whose item has been backed up since (a later
/// attempt succeeded; nothing marks the failure resolved) no longer counts. Only the first
/// [`FAILURES_CHECKED`] are checked; the rest count as they stand.
async fn still_failing(deps: &ApiDeps, container: &ContainerId) -> Result<Vec<ItemFailure>, ApiError> {
    let failures = deps.catalog.failures(container).await?;
    if failures.is_empty() {
        return Ok(failures);
    }
    let ids: Vec<String> = failures.iter().take(FAILURES_CHECKED).map(|f| f.key.item_id.clone()).collect();
    let heads = deps.catalog.heads(container, &ids).await?;
    Ok(failures
        .into_iter()
        .filter(|f| heads.get(&f.key.item_id).is_none_or(|h| h.current.captured_at <= f.last_attempt))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000) + TimeDelta::hours(hours)
    }

    fn record() -> ContainerRecord {
        ContainerRecord {
            container: ContainerId::new("t", "d"),
            user_id: "u".into(),
            user_principal_name: None,
            discovered_at: at(0),
            subscription_id: Some("sub".into()),
            subscription_expires: Some(at(24 * 20)),
            problem: None,
            site: None,
        }
    }

    fn synced(hours: i64) -> SyncState {
        SyncState { last_synced_at: Some(at(hours)), ..SyncState::default() }
    }

    fn problem(reason: &str, hours: i64) -> Problem {
        Problem { reason: reason.into(), since: at(hours) }
    }

    #[test]
    fn each_state_has_its_reason_and_since() {
        let now = at(48);
        let fine = status(&record(), &synced(47), &[], None, now);
        assert_eq!(fine, Status::protected());

        let first_crawl = status(&record(), &SyncState::default(), &[], None, now);
        assert_eq!((first_crawl.state, first_crawl.since), (ProtectionState::Unprotected, Some(at(0))));

        let refused = ContainerRecord {
            problem: Some(problem("subscription refused: forbidden (ExtensionError)", 3)),
            ..record()
        };
        let degraded = status(&refused, &synced(47), &[], None, now);
        assert_eq!(
            degraded,
            Status::of(ProtectionState::Degraded, &problem("subscription refused: forbidden (ExtensionError)", 3))
        );

        let gone = SyncState { unavailable: Some(problem("mailbox unavailable (ErrorInvalidUser)", 5)), ..synced(4) };
        assert_eq!(status(&refused, &gone, &[], None, now).state, ProtectionState::Unavailable, "the worst state wins");

        let expired = ContainerRecord { subscription_expires: Some(at(40)), ..record() };
        assert_eq!(
            status(&expired, &synced(47), &[], None, now),
            Status::new(ProtectionState::Degraded, "subscription expired".into(), at(40))
        );

        let failure = ItemFailure {
            key: ContainerId::new("t", "d").item("i"),
            reason: "403".into(),
            attempts: 1,
            last_attempt: at(10),
        };
        let failing = status(&record(), &synced(47), &[failure], None, now);
        assert_eq!((failing.state, failing.since), (ProtectionState::Degraded, Some(at(10))));

        let stale = status(&record(), &synced(20), &[], None, now);
        assert_eq!((stale.state, stale.since), (ProtectionState::Degraded, Some(at(20))));

        let lookup = status(&record(), &synced(47), &[], Some(&problem("forbidden (accessDenied)", 30)), now);
        assert_eq!((lookup.state, lookup.since), (ProtectionState::Degraded, Some(at(30))));
    }
}
