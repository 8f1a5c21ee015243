//! SharePoint discovery against a scripted Graph: every site, subsite and group site; each
//! library registered once (a OneDrive listed under a site is not); what Graph refuses
//! recorded on the site; `/sites/delta` between discoveries; `Sites.Selected`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::scheduler::{self, Report, SchedulerDeps, Task};
use super::scheduler_tests::run_all;
use crate::config::{SitePolicy, SiteScope};
use crate::graph::test_server::{Seen, TestServer, graph_error, json as reply_json};
use crate::model::{ChangeJob, ContainerId};
use crate::store::memory::{MemoryCatalog, MemorySink};
use crate::store::{Containers, QueueName};

const FINANCE: &str = "contoso.sharepoint.com,f-1,f-2";
const FINANCE_SUB: &str = "contoso.sharepoint.com,f-1,f-3";
const INTRANET: &str = "contoso.sharepoint.com,i-1,i-2";
const ARCHIVED: &str = "contoso.sharepoint.com,a-1,a-2";
const DENIED: &str = "contoso.sharepoint.com,d-1,d-2";
const PERSONAL: &str = "contoso-my.sharepoint.com,p-1,p-2";
const NEW: &str = "contoso.sharepoint.com,n-1,n-2";

/// What the scripted tenant answers that a test changes.
#[derive(Default)]
struct Tenant {
    /// `/sites/delta` from the stored link: these sites.
    changes: Vec<Value>,
    /// The stored link answers 410.
    expired: bool,
    /// `getAllSites` and `/sites/delta` answer 403, as for an app with `Sites.Selected`.
    selected_only: bool,
}

fn site(id: &str, name: &str) -> Value {
    json!({"id": id, "displayName": name, "webUrl": format!("https://contoso.sharepoint.com/sites/{name}"),
           "root": {}, "siteCollection": {"hostname": "contoso.sharepoint.com"}})
}

fn library(id: &str, name: &str, url_tail: &str, system: bool) -> Value {
    let mut l = json!({"id": id, "name": name, "driveType": "documentLibrary",
                       "webUrl": format!("https://contoso.sharepoint.com/sites/x/{url_tail}")});
    if system {
        l["system"] = json!({});
    }
    l
}

fn subscriptions(seen: &Seen) -> axum::response::Response {
    let body: Value = serde_json::from_str(&seen.body).unwrap_or_default();
    let sub = json!({"id": format!("sub-{}", seen.nth), "resource": body["resource"],
                     "expirationDateTime": body["expirationDateTime"]});
    match seen.method.as_str() {
        "POST" => reply_json(201, &sub),
        _ => reply_json(200, &json!({"value": []})),
    }
}

/// One user (U1, whose OneDrive is `drive-1`); Finance (a team site, also a group's) with a
/// subsite and four libraries, two of them hidden; the Intranet, whose drives list also shows
/// U1's OneDrive; an archived site; a site the app may not read; U1's personal site.
async fn graph(tenant: Arc<Mutex<Tenant>>) -> TestServer {
    TestServer::start(3599, move |seen: &Seen, origin| {
        let t = tenant.lock().unwrap();
        let select = seen.query.as_deref().unwrap_or_default();
        if seen.path.starts_with("/v1.0/subscriptions") {
            return subscriptions(seen);
        }
        match seen.path.as_str() {
            "/v1.0/users" => reply_json(200, &json!({"value": [{"id": "U1", "userPrincipalName": "one@contoso.test"}]})),
            "/v1.0/users/U1/drive" => reply_json(200, &json!({"id": "drive-1", "driveType": "business"})),
            "/v1.0/sites/getAllSites" | "/v1.0/sites/delta" if t.selected_only => graph_error(403, "accessDenied"),
            "/v1.0/sites/getAllSites" => {
                let mut archived = site(ARCHIVED, "Old");
                if select.contains("siteCollection") {
                    archived["siteCollection"]["archivalDetails"] = json!({"archiveStatus": "fullyArchived"});
                }
                let mut personal = site(PERSONAL, "One");
                personal["isPersonalSite"] = json!(true);
                reply_json(200, &json!({"value": [site(FINANCE, "Finance"), site(INTRANET, "Intranet"), archived, site(DENIED, "Board"), personal]}))
            }
            "/v1.0/sites/delta" if select.contains("token=latest") => {
                reply_json(200, &json!({"value": [], "@odata.deltaLink": format!("{origin}/v1.0/sites/delta?token=d1")}))
            }
            "/v1.0/sites/delta" if t.expired => axum::response::Response::builder()
                .status(410)
                .header("location", format!("{origin}/v1.0/sites/delta"))
                .body(axum::body::Body::from(r#"{"error":{"code":"resyncChangesApplyDifferences"}}"#))
                .unwrap(),
            "/v1.0/sites/delta" => reply_json(
                200,
                &json!({"value": t.changes, "@odata.deltaLink": format!("{origin}/v1.0/sites/delta?token=d2")}),
            ),
            "/v1.0/groups" => reply_json(200, &json!({"value": [{"id": "g-1", "displayName": "Finance"}]})),
            "/v1.0/groups/g-1/sites/root" => reply_json(200, &site(FINANCE, "Finance")),
            p => sites(p, select),
        }
    })
    .await
}

fn sites(path: &str, select: &str) -> axum::response::Response {
    let Some(rest) = path.strip_prefix("/v1.0/sites/") else { return graph_error(404, "itemNotFound") };
    let (id, tail) = rest.split_once('/').map_or((rest, ""), |(id, tail)| (id, tail));
    let id = if id == "contoso.sharepoint.com:" && tail == "sites/finance" { FINANCE } else { id };
    let tail = if id == FINANCE && tail == "sites/finance" { "" } else { tail };
    match (id, tail) {
        (DENIED, _) => graph_error(403, "accessDenied"),
        (ARCHIVED, "") => {
            let mut s = site(ARCHIVED, "Old");
            if select.contains("siteCollection") {
                s["siteCollection"]["archivalDetails"] = json!({"archiveStatus": "fullyArchived"});
            }
            reply_json(200, &s)
        }
        (FINANCE, "") => reply_json(200, &site(FINANCE, "Finance")),
        (FINANCE_SUB, "") => reply_json(200, &site(FINANCE_SUB, "Finance-Audit")),
        (INTRANET, "") => reply_json(200, &site(INTRANET, "Intranet")),
        (NEW, "") => reply_json(200, &site(NEW, "Projects")),
        (FINANCE, "sites") => reply_json(200, &json!({"value": [site(FINANCE_SUB, "Finance-Audit")]})),
        (FINANCE_SUB | INTRANET | NEW, "sites") => reply_json(200, &json!({"value": []})),
        (FINANCE, "drives") => {
            // Hidden libraries only when `$select` names `system`.
            let mut value = vec![
                library("b!f-docs", "Documents", "Shared%20Documents", false),
                library("b!f-phl", "Preservation Hold Library", "PreservationHoldLibrary", false),
            ];
            if select.contains("system") {
                value.push(library("b!f-pages", "Site Pages", "SitePages", true));
                value.push(library("b!f-style", "Style Library", "Style%20Library", true));
            }
            reply_json(200, &json!({"value": value}))
        }
        (FINANCE_SUB, "drives") => {
            reply_json(200, &json!({"value": [library("b!fs-docs", "Documents", "Shared%20Documents", false)]}))
        }
        (INTRANET, "drives") => {
            let onedrive = json!({"id": "drive-1", "name": "OneDrive", "driveType": "business"});
            reply_json(
                200,
                &json!({"value": [library("b!i-docs", "Documents", "Shared%20Documents", false), onedrive]}),
            )
        }
        (NEW, "drives") => {
            reply_json(200, &json!({"value": [library("b!n-docs", "Documents", "Shared%20Documents", false)]}))
        }
        _ => graph_error(404, "itemNotFound"),
    }
}

/// The scheduler of `scheduler_tests`, protecting sites as `scope` says.
fn deps(server: &TestServer, catalog: Arc<MemoryCatalog>, sink: Arc<MemorySink>, scope: SiteScope) -> SchedulerDeps {
    SchedulerDeps {
        sites: SitePolicy { scope, system_libraries: false },
        ..super::scheduler_tests::deps(server, catalog, sink)
    }
}

fn crawled(sink: &MemorySink) -> BTreeSet<String> {
    sink.take(QueueName::Changes)
        .iter()
        .map(|m| serde_json::from_str::<ChangeJob>(&m.body).unwrap().container.graph_id)
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn discovery_protects_every_library_of_every_site_once_and_reports_what_graph_refuses() {
    let tenant = Arc::new(Mutex::new(Tenant::default()));
    let server = graph(tenant).await;
    let (catalog, sink) = (Arc::new(MemoryCatalog::new()), Arc::new(MemorySink::new()));
    let d = deps(&server, catalog.clone(), sink.clone(), SiteScope::All);

    run_all(&d, &sink, Task::Discover).await;
    let (fanned, report) = run_all(&d, &sink, Task::DiscoverSites).await;

    // Every site but the personal one is listed; the subsite and the group's site are found.
    assert_eq!(fanned.sites, 4, "{fanned:?}");
    let libraries = ["b!f-docs", "b!f-pages", "b!f-phl", "b!fs-docs", "b!i-docs"];
    assert_eq!(report.libraries, libraries.len(), "{report:?}");
    assert_eq!(report.sites_refused, 2, "the archived and the denied site");
    let mut expected = set(&libraries);
    expected.insert("drive-1".into());
    assert_eq!(crawled(&sink), expected, "each library and the OneDrive crawled once");
    for drive in libraries {
        let record = catalog.container(&ContainerId::new("tenant-1", drive)).await.unwrap().expect(drive);
        assert!(record.subscription_id.is_some(), "{drive} is subscribed");
        assert!(record.site.is_some() && record.user_id.is_empty(), "{drive} belongs to its site");
    }
    // The OneDrive listed under the Intranet stays its user's drive (deduplicated by id).
    let onedrive = catalog.container(&ContainerId::new("tenant-1", "drive-1")).await.unwrap().unwrap();
    assert_eq!((onedrive.user_id.as_str(), onedrive.site), ("U1", None));
    assert!(catalog.container(&ContainerId::new("tenant-1", "b!f-style")).await.unwrap().is_none());
    assert!(!server.graph_requests().iter().any(|s| s.path.contains("p-1")), "the personal site is never read");

    let finance = catalog.site("tenant-1", FINANCE).await.unwrap().unwrap();
    let style = finance.libraries.iter().find(|l| l.name == "Style Library").unwrap();
    assert!(style.system && style.excluded.as_deref().unwrap().contains("hidden system library"));
    let pages = finance.libraries.iter().find(|l| l.name == "Site Pages").unwrap();
    assert!(pages.system && pages.excluded.is_none(), "Site Pages holds the site's pages");
    let sub = catalog.site("tenant-1", FINANCE_SUB).await.unwrap().unwrap();
    assert_eq!(sub.parent_id.as_deref(), Some(FINANCE));
    let archived = catalog.site("tenant-1", ARCHIVED).await.unwrap().unwrap();
    assert_eq!(archived.archive_status.as_deref(), Some("fullyArchived"));
    assert!(archived.problem.unwrap().reason.contains("archived"));
    let denied = catalog.site("tenant-1", DENIED).await.unwrap().unwrap();
    assert!(denied.problem.unwrap().reason.contains("access denied"), "the reason is kept");
    assert!(catalog.sites_delta("tenant-1").await.unwrap().is_some(), "the delta link is taken first");

    // A second discovery registers, subscribes and writes nothing.
    let writes = catalog.write_count();
    let (_, again) = run_all(&d, &sink, Task::DiscoverSites).await;
    assert_eq!((again.discovered, again.subscribed), (0, 0), "{again:?}");
    assert_eq!(crawled(&sink), set(&libraries), "only first crawls not finished yet (none ran here) are asked again");
    assert_eq!(catalog.write_count(), writes, "an unchanged tenant costs no catalog write");
}

#[tokio::test]
async fn site_changes_protect_new_sites_and_keep_deleted_ones_out_of_sweeps() {
    let tenant = Arc::new(Mutex::new(Tenant::default()));
    let server = graph(tenant.clone()).await;
    let (catalog, sink) = (Arc::new(MemoryCatalog::new()), Arc::new(MemorySink::new()));
    let d = deps(&server, catalog.clone(), sink.clone(), SiteScope::All);
    run_all(&d, &sink, Task::Discover).await;
    run_all(&d, &sink, Task::DiscoverSites).await;
    crawled(&sink);

    // Given a new site and Finance deleted (its subsite goes with it)
    tenant.lock().unwrap().changes =
        vec![site(NEW, "Projects"), json!({"id": FINANCE, "deleted": {"state": "deleted"}})];
    let (fanned, report) = run_all(&d, &sink, Task::SiteChanges).await;

    assert_eq!((fanned.sites, fanned.sites_deleted), (1, 2), "{fanned:?}");
    assert_eq!(report.libraries, 1);
    assert_eq!(crawled(&sink), set(&["b!n-docs"]));
    for id in [FINANCE, FINANCE_SUB] {
        assert!(catalog.site("tenant-1", id).await.unwrap().unwrap().deleted_at.is_some(), "{id} deleted");
    }
    assert!(
        catalog.container(&ContainerId::new("tenant-1", "b!f-docs")).await.unwrap().is_some(),
        "a deleted site's libraries stay registered, with everything backed up"
    );
    let (swept, _) = run_all(&d, &sink, Task::Sweep).await;
    assert_eq!(crawled(&sink), set(&["b!i-docs", "b!n-docs", "drive-1"]), "{swept:?}");

    // An expired link lists every site again and takes a new link.
    tenant.lock().unwrap().expired = true;
    let (fanned, report) = run_all(&d, &sink, Task::SiteChanges).await;
    assert_eq!(fanned.sites, 4, "the full listing ran");
    assert_eq!(report.discovered, 0);
    assert!(catalog.sites_delta("tenant-1").await.unwrap().unwrap().ends_with("token=d1"));
}

#[tokio::test]
async fn with_sites_selected_only_the_named_sites_are_read_and_a_refused_one_is_reported() {
    let tenant = Arc::new(Mutex::new(Tenant { selected_only: true, ..Tenant::default() }));
    let server = graph(tenant).await;
    let (catalog, sink) = (Arc::new(MemoryCatalog::new()), Arc::new(MemorySink::new()));
    let scope = SiteScope::Selected(vec!["contoso.sharepoint.com:/sites/finance".into(), DENIED.into()]);
    let d = deps(&server, catalog.clone(), sink.clone(), scope);

    let (users, _) = run_all(&d, &sink, Task::Discover).await;
    let (fanned, report) = run_all(&d, &sink, Task::DiscoverSites).await;

    assert_eq!((users.users, fanned.sites), (1, 2));
    assert_eq!(report.sites_refused, 1);
    assert!(crawled(&sink).contains("b!f-docs"), "the named site's libraries are protected");
    assert!(catalog.site("tenant-1", FINANCE).await.unwrap().is_some(), "recorded by its id, not the path named");
    let denied = catalog.site("tenant-1", DENIED).await.unwrap().unwrap();
    assert!(denied.problem.unwrap().reason.contains("accessDenied"));
    let listed = |p: &str| server.graph_requests().iter().any(|s| s.path.ends_with(p));
    assert!(!listed("getAllSites") && !listed("/sites/delta"), "nothing tenant-wide is asked for");
    // Site changes need a tenant-wide listing: nothing to follow.
    assert_eq!(scheduler::run(&d, Task::SiteChanges).await.unwrap(), Report::default());

    // Configured for every site, such an app gets an error that says what to configure.
    let all = SchedulerDeps { sites: SitePolicy { scope: SiteScope::All, system_libraries: false }, ..d };
    let refused = scheduler::run(&all, Task::DiscoverSites).await.unwrap_err();
    assert!(matches!(refused, super::PipelineError::Misconfigured(_)), "{refused}");
    assert!(refused.to_string().contains("SHAREPOINT_SITES"), "{refused}");
}

/// Discovery spends SharePoint's budget too: while the tenant's drive work waits for it, a
/// share reads no site and is sent again for the reset, its attempts not counted.
#[tokio::test]
async fn a_share_waits_for_sharepoints_budget_like_the_copiers() {
    use crate::store::Coordination;
    let tenant = Arc::new(Mutex::new(Tenant::default()));
    let server = graph(tenant).await;
    let (catalog, sink) = (Arc::new(MemoryCatalog::new()), Arc::new(MemorySink::new()));
    let d = deps(&server, catalog.clone(), sink.clone(), SiteScope::All);
    scheduler::run(&d, Task::DiscoverSites).await.unwrap();
    let shares = sink.take(QueueName::Lifecycle);
    let reads = |server: &TestServer| server.graph_requests().iter().filter(|s| s.path.contains("f-1")).count();

    catalog.throttle("tenant-1", "drive", chrono::Utc::now() + chrono::Duration::seconds(2)).await.unwrap();
    let waited = scheduler::handle_message(&d, &shares[0].body).await.unwrap();

    assert_eq!((waited.sites, reads(&server)), (0, 0), "no site is read while the budget is spent");
    let again = sink.take(QueueName::Lifecycle);
    assert_eq!(again.len(), 1);
    let delay = again[0].delay.expect("sent again for the reset");
    assert!(delay <= std::time::Duration::from_secs(2) && delay > std::time::Duration::ZERO, "{delay:?}");
    let work: Value = serde_json::from_str(&again[0].body).unwrap();
    assert_eq!(work["attempt"], 0, "a wait is not a failed attempt");

    tokio::time::sleep(delay).await;
    let resolved = scheduler::handle_message(&d, &again[0].body).await.unwrap();
    assert!(resolved.sites > 0 && reads(&server) > 0, "{resolved:?}");
}

/// Two shares reaching the same site at once (its group's share and the listing's) register
/// each library once: one subscription stays, the other is taken back, one first crawl.
#[tokio::test]
async fn a_library_reached_by_two_shares_at_once_is_registered_and_subscribed_once() {
    let tenant = Arc::new(Mutex::new(Tenant::default()));
    let server = graph(tenant).await;
    let (catalog, sink) = (Arc::new(MemoryCatalog::new()), Arc::new(MemorySink::new()));
    let d = deps(&server, catalog.clone(), sink.clone(), SiteScope::All);
    let share = serde_json::json!({"work": "discover_sites", "sites": [{"id": INTRANET}]}).to_string();

    let (a, b) = tokio::join!(scheduler::handle_message(&d, &share), scheduler::handle_message(&d, &share));
    a.unwrap();
    b.unwrap();

    let count = |method: &str| {
        server
            .graph_requests()
            .iter()
            .filter(|s| s.method == method && s.path.starts_with("/v1.0/subscriptions"))
            .count()
    };
    assert_eq!(count("POST") - count("DELETE"), 1, "one subscription for the library stays");
    assert_eq!(sink.take(QueueName::Changes).len(), 1, "one first crawl");
}
