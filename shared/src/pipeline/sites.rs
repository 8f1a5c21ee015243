//! SharePoint discovery: every site of the tenant (or the ones the operator names under
//! `Sites.Selected`), its subsites, and its document libraries, each library registered as a
//! drive container of its site (subscribed, crawled, swept like a OneDrive).
//!
//! Like user discovery, nothing loops over the tenant inside one invocation: the listing
//! (`getAllSites`, the Microsoft 365 groups) is sent in shares of [`SITES_PER_SHARE`] sites or
//! [`GROUPS_PER_SHARE`] groups to the scheduler's work queue; a share resolves its sites one
//! by one (subsites found are resolved in the same share), records what Graph refuses on the
//! site's row with the reason, and sends what Graph throttled again, delayed.
//!
//! Personal (OneDrive) sites are skipped: their drives are users' drives, found with the users.
//! Libraries are deduplicated by drive id, never by URL: a drive already registered (a user's
//! OneDrive) is never registered again as a library.
//!
//! Between two discoveries, [`site_changes`] follows `/sites/delta`: new sites are resolved,
//! deleted ones are marked deleted (their libraries keep every backed-up version and are no
//! longer swept).

use std::collections::{HashSet, VecDeque};

use tracing::{info, warn};

use super::PipelineError;
use super::scheduler::{MAX_ATTEMPTS, MAX_DELAY, Report, SchedulerDeps, enqueue, register, retry_delay, send_work};
use super::throttle::DRIVE_RESOURCE;
use crate::config::{SitePolicy, SiteScope};
use crate::graph::{DeltaLink, GraphError, Library, Site};
use crate::model::{
    ChangeReason, ContainerId, ContainerRecord, LibraryRef, Problem, SCHEMA_VERSION, SchedulerWork, SiteLink,
    SiteRecord, SiteRef,
};

/// Sites per discovery share: about three Graph calls each (site, subsites, libraries) and two
/// per new library (subscription, then the crawl is queued).
pub const SITES_PER_SHARE: usize = 10;
/// Groups per share: one Graph call each (the group's team site), then the site itself.
pub const GROUPS_PER_SHARE: usize = 20;

/// Why a library is left out, or `None` when it is backed up.
///
/// Every library users see is backed up. Hidden (`system`) libraries are left out, except
/// those that hold what users wrote: `Site Pages` (the site's pages, recognised by its URL's
/// `SitePages` segment, which does not change with the site's language). The Preservation
/// Hold Library carries no `system` facet (graph-facts-sharepoint §1.3), so it is backed up
/// like any library: it holds the copies of edited and deleted files a retention policy keeps,
/// some older than our first backup.
pub fn library_policy(library: &Library, policy: &SitePolicy) -> Option<String> {
    if !library.is_system() || policy.system_libraries || holds_user_content(library) {
        return None;
    }
    Some("hidden system library (SHAREPOINT_SYSTEM_LIBRARIES=true backs it up)".to_owned())
}

fn holds_user_content(library: &Library) -> bool {
    let url = library.web_url.as_deref().unwrap_or_default();
    url.trim_end_matches('/').rsplit('/').next().is_some_and(|last| last.eq_ignore_ascii_case("SitePages"))
}

/// The SharePoint part of a discovery: every site (and group team site) sent in shares, or
/// the sites the operator named. The `/sites/delta` link is taken first, so a site created
/// while the listing runs is seen by the next [`site_changes`].
pub(super) async fn fan_out(deps: &SchedulerDeps) -> Result<Report, PipelineError> {
    let (sites, groups) = match &deps.sites.scope {
        SiteScope::Off => return Ok(Report::default()),
        SiteScope::Selected(named) => {
            (named.iter().map(|id| SiteRef { id: id.clone(), parent_id: None }).collect(), vec![])
        }
        SiteScope::All => {
            if deps.catalog.sites_delta(&deps.tenant_id).await?.is_none() {
                start_site_changes(deps).await?;
            }
            let sites: Vec<SiteRef> = deps
                .reader
                .all_sites()
                .await
                .map_err(listing("getAllSites"))?
                .into_iter()
                .filter(|s| !s.is_personal_site && !s.is_deleted())
                .map(|s| SiteRef { id: s.id, parent_id: None })
                .collect();
            let groups = match deps.reader.unified_groups().await {
                Ok(groups) => groups.into_iter().map(|g| g.id).collect(),
                // Their team sites are in getAllSites too: the groups only make sure of it.
                Err(e @ GraphError::Forbidden { .. }) => {
                    warn!(error = %e, "cannot list Microsoft 365 groups (Group.Read.All); their sites come from getAllSites");
                    Vec::new()
                }
                Err(e) => return Err(listing("groups")(e)),
            };
            (sites, groups)
        }
    };
    let mut shares: Vec<SchedulerWork> = sites
        .chunks(SITES_PER_SHARE)
        .map(|sites| SchedulerWork::DiscoverSites { sites: sites.to_vec(), groups: Vec::new(), attempt: 0 })
        .collect();
    shares.extend(groups.chunks(GROUPS_PER_SHARE).map(|groups| SchedulerWork::DiscoverSites {
        sites: Vec::new(),
        groups: groups.to_vec(),
        attempt: 0,
    }));
    let report = Report { sites: sites.len(), shares: send_work(deps, shares, None).await?, ..Report::default() };
    info!(sites = report.sites, groups = groups.len(), shares = report.shares, "site discovery fanned out");
    Ok(report)
}

/// A tenant-wide listing Graph refused: with `Sites.Selected` nothing can be listed, and the
/// operator must name the sites.
fn listing(what: &'static str) -> impl Fn(GraphError) -> PipelineError {
    move |e| match e {
        GraphError::Forbidden { code } => PipelineError::Misconfigured(format!(
            "listing SharePoint sites ({what}) is forbidden ({code}): grant Sites.Read.All, or set \
             SHAREPOINT_SITES to the site ids the app was granted (Sites.Selected) or to `none`"
        )),
        other => other.into(),
    }
}

/// Resolves a share: the groups' team sites, then each site, its subsites and libraries.
pub(super) async fn discover_sites(
    deps: &SchedulerDeps,
    sites: &[SiteRef],
    groups: &[String],
    attempt: u32,
) -> Result<Report, PipelineError> {
    let mut report = Report::default();
    let mut fresh = Vec::new();
    let mut again: Vec<(SiteRef, GraphError)> = Vec::new();
    let mut again_groups: Vec<(String, GraphError)> = Vec::new();
    let mut queue: VecDeque<SiteRef> = sites.iter().cloned().collect();
    for group in groups {
        match deps.reader.group_site(group).await {
            // Graph lists team sites in getAllSites too: only one it left out is resolved here.
            Ok(Some(site)) if !site.is_personal_site => {
                if deps.catalog.site(&deps.tenant_id, &site.id).await?.is_none() {
                    queue.push_back(SiteRef { id: site.id, parent_id: None });
                }
            }
            Ok(_) => {}
            Err(e) if e.is_retryable() => again_groups.push((group.clone(), e)),
            Err(e @ (GraphError::Auth { .. } | GraphError::Unauthorized { .. })) => return Err(e.into()),
            // The group's site is in getAllSites as well; nothing to record against.
            Err(e) => warn!(group = %group, error = %e, "could not read a group's team site"),
        }
    }
    let mut done = HashSet::new();
    let mut paused = None;
    while let Some(site) = queue.pop_front() {
        if !done.insert(site.id.clone()) {
            continue;
        }
        if let Some(wait) = budget_wait(deps).await? {
            // SharePoint's budget is spent: the rest of the share waits for its reset, its
            // attempts not counted (nothing failed).
            paused = Some((std::iter::once(site).chain(queue.drain(..)).collect::<Vec<_>>(), wait));
            break;
        }
        match resolve_site(deps, &site, &mut report, &mut fresh).await {
            Ok(subsites) => queue.extend(subsites),
            Err(PipelineError::Graph(e)) if e.is_retryable() => again.push((site, e)),
            Err(e) => return Err(e),
        }
    }
    // Subscribing first, then enumerating, covers the gap between crawl and subscription.
    report.enqueued = enqueue(deps, fresh, ChangeReason::Sweep).await?;
    if let Some((sites, wait)) = paused {
        report.retrying += sites.len();
        let work = SchedulerWork::DiscoverSites { sites, groups: Vec::new(), attempt };
        send_work(deps, vec![work], Some(wait.min(MAX_DELAY))).await?;
    }
    if !again.is_empty() || !again_groups.is_empty() {
        if attempt + 1 < MAX_ATTEMPTS {
            let waits = again.iter().map(|(_, e)| e).chain(again_groups.iter().map(|(_, e)| e));
            let delay = retry_delay(attempt, waits.map(GraphError::retry_after));
            report.retrying = again.len() + again_groups.len();
            let work = SchedulerWork::DiscoverSites {
                sites: again.into_iter().map(|(s, _)| s).collect(),
                groups: again_groups.into_iter().map(|(g, _)| g).collect(),
                attempt: attempt + 1,
            };
            send_work(deps, vec![work], Some(delay)).await?;
        } else {
            for (site, error) in again {
                record_refused(deps, &site, &error, &mut report).await?;
            }
            for (group, error) in again_groups {
                warn!(group = %group, %error, "gave up on a group's team site until the next discovery");
            }
        }
    }
    info!(
        sites = report.sites,
        libraries = report.libraries,
        refused = report.sites_refused,
        retrying = report.retrying,
        "site discovery share done"
    );
    Ok(report)
}

/// How long SharePoint's budget asks every caller of the tenant to wait: the pause the
/// reader's last answers asked for is shared first (discovery spends the same budget as the
/// copiers: about five units a site), then the shared drive row is read.
async fn budget_wait(deps: &SchedulerDeps) -> Result<Option<std::time::Duration>, PipelineError> {
    let now = deps.clock.now();
    if let Some(pause) = deps.reader.budget_pause() {
        let until = now + chrono::Duration::from_std(pause).unwrap_or_default();
        deps.catalog.throttle(&deps.tenant_id, DRIVE_RESOURCE, until).await?;
    }
    let until = deps.catalog.throttled_until(&deps.tenant_id, DRIVE_RESOURCE).await?;
    Ok(until.filter(|u| *u > now).and_then(|u| (u - now).to_std().ok()))
}

/// Reads one site and its libraries, registers the libraries, records the site; returns its
/// subsites to resolve next. What Graph refuses is recorded on the site's row (`Ok`); what it
/// throttles is returned as the error.
async fn resolve_site(
    deps: &SchedulerDeps,
    site_ref: &SiteRef,
    report: &mut Report,
    fresh: &mut Vec<ContainerId>,
) -> Result<Vec<SiteRef>, PipelineError> {
    let site = match deps.reader.site(&site_ref.id).await {
        Ok(site) => site,
        Err(e) => return refused_or(deps, site_ref, e, report).await.map(|()| Vec::new()),
    };
    if site.is_personal_site {
        return Ok(Vec::new()); // a user's OneDrive: protected with its user
    }
    report.sites += 1;
    let existing = deps.catalog.site(&deps.tenant_id, &site.id).await?;
    let mut record = site_record(deps, &site, site_ref.parent_id.as_deref(), existing.as_ref());
    if let Some(status) = site.archive_status() {
        // Microsoft 365 Archive: content is not served until the site is reactivated.
        let reason = format!(
            "site archived ({status}): backed-up versions are kept; nothing new is backed up until it is reactivated"
        );
        record.problem =
            Some(Problem::continued(existing.as_ref().and_then(|e| e.problem.as_ref()), reason, deps.clock.now()));
        report.sites_refused += 1;
        save_site(deps, existing.as_ref(), &record).await?;
        return Ok(Vec::new());
    }
    let libraries = match deps.reader.site_libraries(&site.id).await {
        Ok(libraries) => libraries,
        Err(e) if e.refuses_resource() => {
            let reason = format!("libraries not readable: {e}");
            record.problem =
                Some(Problem::continued(existing.as_ref().and_then(|e| e.problem.as_ref()), reason, deps.clock.now()));
            report.sites_refused += 1;
            save_site(deps, existing.as_ref(), &record).await?;
            return Ok(Vec::new());
        }
        Err(e) => return Err(e.into()),
    };
    record.libraries.clear();
    for library in libraries.iter().filter(|l| !l.is_onedrive()) {
        let excluded = library_policy(library, &deps.sites);
        let name = library.name.clone().unwrap_or_else(|| library.id.clone());
        record.libraries.push(LibraryRef {
            drive_id: library.id.clone(),
            name: name.clone(),
            system: library.is_system(),
            excluded: excluded.clone(),
        });
        if excluded.is_none() && protect_library(deps, &site.id, library, name, report, fresh).await? {
            report.libraries += 1;
        }
    }
    let subsites = match deps.reader.subsites(&site.id).await {
        Ok(subsites) => subsites,
        Err(e) if e.refuses_resource() => {
            warn!(site = %site.id, error = %e, "subsites not readable; the site's own libraries are protected");
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    save_site(deps, existing.as_ref(), &record).await?;
    Ok(subsites.into_iter().map(|s| SiteRef { id: s.id, parent_id: Some(site.id.clone()) }).collect())
}

/// Registers a library as a container of its site; false when its drive is already protected
/// as something else (a user's OneDrive: deduplicated by drive id).
async fn protect_library(
    deps: &SchedulerDeps,
    site_id: &str,
    library: &Library,
    name: String,
    report: &mut Report,
    fresh: &mut Vec<ContainerId>,
) -> Result<bool, PipelineError> {
    let container = ContainerId::new(deps.tenant_id.clone(), library.id.clone());
    let existing = deps.catalog.container(&container).await?;
    let link = SiteLink { site_id: site_id.to_owned(), library: name };
    let record = match &existing {
        Some(r) if r.site.is_none() => return Ok(false),
        Some(r) => ContainerRecord { site: Some(link), ..r.clone() },
        None => ContainerRecord {
            container,
            user_id: String::new(),
            user_principal_name: None,
            discovered_at: deps.clock.now(),
            subscription_id: None,
            subscription_expires: None,
            problem: None,
            site: Some(link),
        },
    };
    register(deps, existing, record, report, fresh).await?;
    Ok(true)
}

/// The site's row as read now, keeping what discovery knew of it.
fn site_record(
    deps: &SchedulerDeps,
    site: &Site,
    parent_id: Option<&str>,
    existing: Option<&SiteRecord>,
) -> SiteRecord {
    SiteRecord {
        v: SCHEMA_VERSION,
        tenant_id: deps.tenant_id.clone(),
        site_id: site.id.clone(),
        name: site.title(),
        web_url: site.web_url.clone(),
        parent_id: parent_id.map(str::to_owned).or_else(|| existing.and_then(|e| e.parent_id.clone())),
        discovered_at: existing.map_or_else(|| deps.clock.now(), |e| e.discovered_at),
        libraries: existing.map(|e| e.libraries.clone()).unwrap_or_default(),
        archive_status: site.archive_status().map(str::to_owned),
        // Listed again: back from the recycle bin.
        deleted_at: None,
        problem: None,
    }
}

async fn save_site(
    deps: &SchedulerDeps,
    existing: Option<&SiteRecord>,
    record: &SiteRecord,
) -> Result<(), PipelineError> {
    if existing != Some(record) {
        deps.catalog.put_site(record).await?;
    }
    Ok(())
}

/// A site Graph would not serve: recorded with the reason (the rest carries on); throttling
/// and our own credentials are the caller's.
async fn refused_or(
    deps: &SchedulerDeps,
    site_ref: &SiteRef,
    error: GraphError,
    report: &mut Report,
) -> Result<(), PipelineError> {
    if error.is_retryable() || matches!(error, GraphError::Auth { .. } | GraphError::Unauthorized { .. }) {
        return Err(error.into());
    }
    record_refused(deps, site_ref, &error, report).await
}

async fn record_refused(
    deps: &SchedulerDeps,
    site_ref: &SiteRef,
    error: &GraphError,
    report: &mut Report,
) -> Result<(), PipelineError> {
    warn!(site = %site_ref.id, %error, "could not read a site; reported on the site");
    report.sites_refused += 1;
    let existing = deps.catalog.site(&deps.tenant_id, &site_ref.id).await?;
    let reason = match error {
        GraphError::Forbidden { .. } => format!("access denied: {error}"),
        GraphError::NotFound => "site not found".to_owned(),
        other => other.to_string(),
    };
    let problem = Problem::continued(existing.as_ref().and_then(|e| e.problem.as_ref()), reason, deps.clock.now());
    let record = SiteRecord {
        problem: Some(problem),
        ..existing.clone().unwrap_or_else(|| SiteRecord {
            v: SCHEMA_VERSION,
            tenant_id: deps.tenant_id.clone(),
            site_id: site_ref.id.clone(),
            name: site_ref.id.clone(),
            web_url: None,
            parent_id: site_ref.parent_id.clone(),
            discovered_at: deps.clock.now(),
            libraries: Vec::new(),
            archive_status: None,
            deleted_at: None,
            problem: None,
        })
    };
    save_site(deps, existing.as_ref(), &record).await
}

// ---------------------------------------------------------------------------------------
// Between discoveries: `/sites/delta`

/// Takes a delta link for changes from now on (`token=latest`).
async fn start_site_changes(deps: &SchedulerDeps) -> Result<(), PipelineError> {
    let mut page = deps.reader.sites_delta(None, true).await.map_err(listing("sites/delta"))?;
    while page.delta.is_none() {
        let Some(next) = page.next else {
            return Err(GraphError::protocol("sites/delta ended without a delta link").into());
        };
        page = deps.reader.sites_delta(Some(&next), false).await?;
    }
    if let Some(link) = page.delta {
        deps.catalog.put_sites_delta(&deps.tenant_id, link.as_str()).await?;
    }
    Ok(())
}

/// New and changed sites since the last look are resolved (in shares); deleted ones are
/// marked deleted, with their subsites. An expired link runs a full site discovery.
pub(super) async fn site_changes(deps: &SchedulerDeps) -> Result<Report, PipelineError> {
    if deps.sites.scope != SiteScope::All {
        return Ok(Report::default());
    }
    let Some(link) = deps.catalog.sites_delta(&deps.tenant_id).await? else {
        // Never discovered: the first discovery takes the link.
        return fan_out(deps).await;
    };
    let mut link = DeltaLink::new(link);
    let mut changed = Vec::new();
    let mut deleted = Vec::new();
    loop {
        let page = match deps.reader.sites_delta(Some(&link), false).await {
            Ok(page) => page,
            Err(GraphError::ResyncRequired { .. }) => {
                warn!("sites/delta link expired; listing every site again");
                start_site_changes(deps).await?;
                return fan_out(deps).await;
            }
            Err(e) => return Err(e.into()),
        };
        for site in page.sites {
            if site.is_deleted() {
                deleted.push(site.id);
            } else if !site.is_personal_site {
                changed.push(SiteRef { id: site.id, parent_id: None });
            }
        }
        match (page.next, page.delta) {
            (Some(next), _) => link = next,
            (None, Some(delta)) => {
                link = delta;
                break;
            }
            (None, None) => return Err(GraphError::protocol("sites/delta page without a next or delta link").into()),
        }
    }
    let mut report = Report::default();
    if !deleted.is_empty() {
        report.sites_deleted = mark_deleted(deps, &deleted).await?;
    }
    let shares: Vec<_> = changed
        .chunks(SITES_PER_SHARE)
        .map(|sites| SchedulerWork::DiscoverSites { sites: sites.to_vec(), groups: Vec::new(), attempt: 0 })
        .collect();
    report.sites = changed.len();
    report.shares = send_work(deps, shares, None).await?;
    // Saved last: a failure before this replays the same changes, which are idempotent.
    deps.catalog.put_sites_delta(&deps.tenant_id, link.as_str()).await?;
    info!(changed = report.sites, deleted = report.sites_deleted, "site changes followed");
    Ok(report)
}

/// Marks the sites (and their subsites, which go with them) deleted; what they hold stays.
async fn mark_deleted(deps: &SchedulerDeps, deleted: &[String]) -> Result<usize, PipelineError> {
    let now = deps.clock.now();
    let sites = deps.catalog.list_sites(&deps.tenant_id).await?;
    let mut gone: HashSet<&str> = deleted.iter().map(String::as_str).collect();
    // Subsites of deleted sites, however deep.
    loop {
        let before = gone.len();
        for s in &sites {
            if s.parent_id.as_deref().is_some_and(|p| gone.contains(p)) {
                gone.insert(&s.site_id);
            }
        }
        if gone.len() == before {
            break;
        }
    }
    let mut marked = 0;
    for site in sites.iter().filter(|s| gone.contains(s.site_id.as_str()) && s.deleted_at.is_none()) {
        warn!(site = %site.site_id, "site deleted in SharePoint; its backed-up versions are kept");
        deps.catalog.put_site(&SiteRecord { deleted_at: Some(now), ..site.clone() }).await?;
        marked += 1;
    }
    Ok(marked)
}
