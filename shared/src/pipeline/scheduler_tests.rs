//! Discovery, renewal and lifecycle of drives and mailboxes against a scripted Graph.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use serde_json::{Value, json};

use super::scheduler::{self, MAIL_SUBSCRIPTION_MINUTES, Report, SchedulerDeps, Task, USERS_PER_SHARE};
use crate::clientstate::ClientStateKey;
use crate::graph::test_server::{Seen, TestServer, graph_error, json as reply_json, reply};
use crate::model::{ChangeJob, ChangeReason, ContainerId, LifecycleJob, SCHEMA_VERSION, Service};
use crate::store::memory::{MemoryCatalog, MemorySink};
use crate::store::{Containers, QueueName};

const KEY: &str = "scheduler-test-key-scheduler-test-key-01";

/// The subscriptions Graph holds for the app: created, renewed, listed; a test can drop one
/// as Graph sometimes does, without a lifecycle event.
#[derive(Default)]
struct Subscriptions(Mutex<BTreeMap<String, Value>>);

impl Subscriptions {
    fn answer(&self, seen: &Seen) -> Option<axum::response::Response> {
        let mut book = self.0.lock().unwrap();
        let id = seen.path.strip_prefix("/v1.0/subscriptions/").map(str::to_owned);
        Some(match (seen.method.as_str(), id) {
            ("POST", None) => {
                let body: Value = serde_json::from_str(&seen.body).unwrap();
                let id = format!("sub-{}", seen.nth);
                let sub =
                    json!({"id": id, "resource": body["resource"], "expirationDateTime": body["expirationDateTime"]});
                book.insert(id, sub.clone());
                reply_json(201, &sub)
            }
            ("GET", None) => reply_json(200, &json!({"value": book.values().collect::<Vec<_>>()})),
            ("PATCH", Some(id)) => match book.get_mut(&id) {
                Some(sub) => {
                    let body: Value = serde_json::from_str(&seen.body).unwrap();
                    sub["expirationDateTime"] = body["expirationDateTime"].clone();
                    reply_json(200, sub)
                }
                None => graph_error(404, "ResourceNotFound"),
            },
            _ => return None,
        })
    }

    fn drop_for(&self, resource: &str) {
        self.0.lock().unwrap().retain(|_, s| s["resource"] != resource);
    }
}

/// u1 has a drive and a mailbox; u2 neither (no OneDrive, no Exchange Online); u3 a drive
/// and a mailbox the app may not read (an application access policy, or no consent).
async fn graph() -> (TestServer, Arc<Subscriptions>) {
    let subscriptions = Arc::new(Subscriptions::default());
    let book = subscriptions.clone();
    let server = TestServer::start(3599, move |seen: &Seen, _| {
        if seen.path.starts_with("/v1.0/subscriptions") {
            return book.answer(seen).unwrap_or_else(|| graph_error(405, "methodNotAllowed"));
        }
        match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", "/v1.0/users") => reply_json(
                200,
                &json!({"value": [
                    {"id": "U1", "userPrincipalName": "one@contoso.test", "displayName": "One"},
                    {"id": "u2", "userPrincipalName": "two@contoso.test", "displayName": "Two"},
                    {"id": "u3", "userPrincipalName": "three@contoso.test", "displayName": "Three"},
                ]}),
            ),
            ("GET", "/v1.0/users/U1/drive") => reply_json(200, &json!({"id": "drive-1", "driveType": "business"})),
            ("GET", "/v1.0/users/u3/drive") => reply_json(200, &json!({"id": "drive-3", "driveType": "business"})),
            ("GET", "/v1.0/users/U1/mailFolders/inbox") => inbox(),
            ("GET", "/v1.0/users/u2/mailFolders/inbox") => graph_error(404, "MailboxNotEnabledForRESTAPI"),
            ("GET", "/v1.0/users/u3/mailFolders/inbox") => graph_error(403, "ErrorAccessDenied"),
            _ => graph_error(404, "itemNotFound"),
        }
    })
    .await;
    (server, subscriptions)
}

fn inbox() -> axum::response::Response {
    reply_json(
        200,
        &json!({"id": "AAMkInbox", "displayName": "Inbox", "parentFolderId": "AAMkRoot", "childFolderCount": 0}),
    )
}

pub(super) fn deps(server: &TestServer, catalog: Arc<MemoryCatalog>, sink: Arc<MemorySink>) -> SchedulerDeps {
    SchedulerDeps {
        tenant_id: "tenant-1".into(),
        reader: server.client(),
        subscriber: server.client(),
        catalog,
        sink,
        key: ClientStateKey::new(KEY).unwrap(),
        webhook_url: "https://hooks.example.test/graph/notifications".into(),
        subscription_minutes: 42_000,
        renew_within_minutes: 3 * 24 * 60,
        sites: Default::default(),
        clock: crate::clock::system(),
    }
}

fn world(server: &TestServer) -> (Arc<MemoryCatalog>, Arc<MemorySink>, SchedulerDeps) {
    let (catalog, sink) =
        (Arc::new(MemoryCatalog::with_index_lag(super::tests::INDEX_LAG)), Arc::new(MemorySink::new()));
    let d = deps(server, catalog.clone(), sink.clone());
    (catalog, sink, d)
}

/// Runs `task`, then every share it fanned out (and every retry of one, at once), as the
/// scheduler's queue consumer would: the task's report and the shares' total.
pub(super) async fn run_all(d: &SchedulerDeps, sink: &MemorySink, task: Task) -> (Report, Report) {
    let fanned = scheduler::run(d, task).await.unwrap();
    let mut reports = Vec::new();
    loop {
        let work = sink.take(QueueName::Lifecycle);
        if work.is_empty() {
            break;
        }
        for m in work {
            reports.push(scheduler::handle_message(d, &m.body).await.unwrap());
        }
    }
    (fanned, scheduler::total(reports))
}

fn subscription_requests(server: &TestServer) -> Vec<Value> {
    server
        .graph_requests()
        .into_iter()
        .filter(|s| s.method == "POST" && s.path == "/v1.0/subscriptions")
        .map(|s| serde_json::from_str(&s.body).unwrap())
        .collect()
}

fn crawls(sink: &MemorySink) -> Vec<ChangeJob> {
    sink.take(QueueName::Changes).iter().map(|m| serde_json::from_str(&m.body).unwrap()).collect()
}

#[tokio::test]
async fn discovery_protects_every_drive_and_mailbox_and_reports_what_graph_refuses() {
    let (server, _) = graph().await;
    let (catalog, sink, d) = world(&server);

    let (fanned, report) = run_all(&d, &sink, Task::Discover).await;

    assert_eq!((fanned.users, fanned.shares, fanned.containers), (3, 1, 0), "the task itself only lists users");
    assert_eq!((report.containers, report.discovered, report.subscribed), (3, 3, 3));
    assert_eq!((report.without_drive, report.without_mailbox, report.unresolved), (1, 1, 1));
    let mailbox = ContainerId::mailbox("tenant-1", "U1");
    assert_eq!(mailbox.graph_id, "u1", "user ids are kept lower case");
    let record = catalog.container(&mailbox).await.unwrap().expect("the mailbox is recorded");
    assert_eq!(record.user_principal_name.as_deref(), Some("one@contoso.test"));
    // A mailbox the app may not read is reported, never silently missing.
    let unresolved = catalog.list_unresolved("tenant-1").await.unwrap();
    assert_eq!(unresolved.len(), 1);
    assert_eq!((unresolved[0].user_id.as_str(), unresolved[0].service), ("u3", Service::Mailbox));
    assert!(unresolved[0].problem.reason.contains("ErrorAccessDenied"), "{:?}", unresolved[0].problem);

    let requests = subscription_requests(&server);
    let mail = requests.iter().find(|r| r["resource"] == "/users/u1/messages").expect("a mailbox subscription");
    assert_eq!(mail["changeType"], "created,updated,deleted");
    let expires: chrono::DateTime<Utc> = mail["expirationDateTime"].as_str().unwrap().parse().unwrap();
    assert!(expires <= Utc::now() + Duration::minutes(MAIL_SUBSCRIPTION_MINUTES), "Outlook caps message subscriptions");
    let vouched = ClientStateKey::new(KEY).unwrap().verify("tenant-1", mail["clientState"].as_str().unwrap()).unwrap();
    assert_eq!(vouched.container_tag, mailbox.tag());
    assert_ne!(vouched.container_tag, ContainerId::new("tenant-1", "u1").tag());
    assert!(requests.iter().any(|r| r["resource"] == "/drives/drive-3/root" && r["changeType"] == "updated"));
    // Drives ask for sharing changes too; mailboxes have no such thing.
    for seen in server.graph_requests().iter().filter(|s| s.method == "POST" && s.path == "/v1.0/subscriptions") {
        let drive = seen.body.contains("/drives/");
        assert_eq!(seen.prefer.as_deref() == Some("includesecuritywebhooks"), drive, "{}", seen.body);
    }

    let crawls = crawls(&sink);
    assert_eq!(crawls.len(), 3);
    assert!(crawls.iter().any(|j| j.container == mailbox && j.reason == ChangeReason::Sweep));

    // A second discovery finds nothing new, subscribes and rewrites nothing.
    let writes = catalog.write_count();
    let (_, again) = run_all(&d, &sink, Task::Discover).await;
    assert_eq!((again.discovered, again.subscribed, again.unresolved), (0, 0, 1));
    assert_eq!(subscription_requests(&server).len(), 3);
    assert_eq!(catalog.write_count(), writes, "an unchanged tenant costs no catalog write");
}

/// 45 users (three shares); among them one whose drive Graph refuses, one whose mailbox Graph
/// throttles for ever, one deleted since the listing, one whose drive Graph will not let the
/// subscriber app subscribe to. Today's whole-tenant loop stopped at the first of them.
#[tokio::test]
async fn one_failing_user_never_stops_the_others_and_each_failure_is_reported() {
    const USERS: usize = 45;
    let subscriptions = Arc::new(Subscriptions::default());
    let book = subscriptions.clone();
    let server = TestServer::start(3599, move |seen: &Seen, _| {
        let parts: Vec<&str> = seen.path.trim_start_matches("/v1.0/").split('/').collect();
        match (seen.method.as_str(), parts.as_slice()) {
            ("GET", ["users"]) => {
                let users: Vec<Value> = (0..USERS).map(|i| json!({"id": format!("user-{i:02}")})).collect();
                reply_json(200, &json!({"value": users}))
            }
            (_, ["users", "user-03", ..]) => graph_error(404, "Request_ResourceNotFound"),
            ("GET", ["users", "user-07", "drive"]) => graph_error(403, "accessDenied"),
            ("GET", ["users", "user-11", "mailFolders", "inbox"]) => {
                reply(429, &[("Retry-After", "120"), ("content-type", "application/json")], "{}")
            }
            ("GET", ["users", user, "drive"]) => reply_json(200, &json!({"id": format!("drive-of-{user}")})),
            ("GET", ["users", _, "mailFolders", "inbox"]) => inbox(),
            ("POST", ["subscriptions"]) if seen.body.contains("drive-of-user-19") => graph_error(403, "ExtensionError"),
            _ => book.answer(seen).unwrap_or_else(|| graph_error(404, "itemNotFound")),
        }
    })
    .await;
    let (catalog, sink, d) = world(&server);

    let (fanned, report) = run_all(&d, &sink, Task::Discover).await;

    assert_eq!(fanned.shares, USERS.div_ceil(USERS_PER_SHARE));
    // Every other user is protected: 44 drives (not the deleted user's) less the refused one,
    // 44 mailboxes less the throttled one.
    let containers = catalog.list_containers("tenant-1").await.unwrap();
    assert_eq!(containers.iter().filter(|c| !c.container.is_mailbox()).count(), 43);
    assert_eq!(containers.iter().filter(|c| c.container.is_mailbox()).count(), 43);
    assert!(containers.iter().any(|c| c.container.graph_id == "drive-of-user-44"), "the last user too");
    assert_eq!((report.without_drive, report.without_mailbox), (1, 1), "the deleted user has nothing to protect");
    // The throttled mailbox was tried again, delayed, then reported.
    assert_eq!(report.retrying, 4, "four more deliveries of the throttled user");
    let mut unresolved = catalog.list_unresolved("tenant-1").await.unwrap();
    unresolved.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    let found: Vec<_> = unresolved.iter().map(|u| (u.user_id.as_str(), u.service)).collect();
    assert_eq!(found, [("user-07", Service::Drive), ("user-11", Service::Mailbox)]);
    assert!(unresolved[0].problem.reason.contains("accessDenied"));
    assert!(unresolved[1].problem.reason.contains("throttled"));
    // A drive Graph will not subscribe to is protected by sweeps, with the reason recorded.
    let refused = containers.iter().find(|c| c.container.graph_id == "drive-of-user-19").unwrap();
    assert!(refused.subscription_id.is_none());
    assert!(refused.problem.as_ref().unwrap().reason.contains("ExtensionError"));
    assert!(crawls(&sink).iter().any(|j| j.container == refused.container), "crawled all the same");
    assert_eq!(report.unsubscribed, 1);
}

#[tokio::test]
async fn a_subscription_graph_dropped_is_recreated_by_the_next_renewal_pass() {
    let (server, subscriptions) = graph().await;
    let (catalog, sink, d) = world(&server);
    run_all(&d, &sink, Task::Discover).await;
    crawls(&sink);
    let drive = ContainerId::new("tenant-1", "drive-1");
    let before = catalog.container(&drive).await.unwrap().unwrap();

    // Graph drops the drive's subscription, weeks before its recorded expiry, without a word.
    subscriptions.drop_for("/drives/drive-1/root");
    let (fanned, report) = run_all(&d, &sink, Task::Renew).await;

    assert_eq!((fanned.containers, fanned.shares), (3, 1));
    assert_eq!((report.renewed, report.recreated), (1, 1), "only the dropped one: the others are far from expiry");
    let after = catalog.container(&drive).await.unwrap().unwrap();
    assert_ne!(after.subscription_id, before.subscription_id);
    assert!(after.subscription_expires.unwrap() > before.subscription_expires.unwrap() - Duration::minutes(1));
    let jobs = crawls(&sink);
    assert_eq!(jobs.iter().map(|j| (&j.container, j.reason)).collect::<Vec<_>>(), [(&drive, ChangeReason::Sweep)]);

    // A pass with nothing due renews nothing and writes nothing.
    let writes = catalog.write_count();
    let (_, quiet) = run_all(&d, &sink, Task::Renew).await;
    assert_eq!((quiet.renewed, quiet.shares), (0, 0));
    assert_eq!(catalog.write_count(), writes);
}

#[tokio::test]
async fn a_removed_mailbox_subscription_is_recreated_and_a_missed_one_reconciles_the_mailbox() {
    let (server, _) = graph().await;
    let (catalog, sink, d) = world(&server);
    run_all(&d, &sink, Task::Discover).await;
    sink.take(QueueName::Changes);
    let mailbox = ContainerId::mailbox("tenant-1", "u1");
    let before = catalog.container(&mailbox).await.unwrap().unwrap().subscription_id;
    let event = |name: &str, subscription: &str| LifecycleJob {
        v: SCHEMA_VERSION,
        tenant_id: "tenant-1".into(),
        subscription_id: subscription.into(),
        event: name.into(),
        container_tag: mailbox.tag(),
        received_at: Utc::now(),
    };
    let old = before.clone().unwrap();

    let reads = catalog.read_count();
    scheduler::lifecycle(&d, &event("subscriptionRemoved", &old)).await.unwrap();
    assert!(catalog.read_count() - reads <= 2, "found by its tag, not by reading every container");
    scheduler::lifecycle(&d, &event("missed", &old)).await.unwrap();
    // An event about the subscription already replaced changes nothing.
    scheduler::lifecycle(&d, &event("subscriptionRemoved", &old)).await.unwrap();

    let after = catalog.container(&mailbox).await.unwrap().unwrap().subscription_id;
    assert!(after.is_some() && after != before, "a new subscription replaces the removed one");
    let created: Vec<_> =
        subscription_requests(&server).into_iter().filter(|r| r["resource"] == "/users/u1/messages").collect();
    assert_eq!(created.len(), 2, "one at discovery, one for the removal; none for the stale event");
    let jobs = crawls(&sink);
    let reasons: Vec<_> = jobs.iter().map(|j| (j.container.clone(), j.reason)).collect();
    assert_eq!(reasons, vec![(mailbox.clone(), ChangeReason::Sweep), (mailbox, ChangeReason::Reconcile)]);
}

#[tokio::test]
async fn a_lifecycle_event_arrives_in_the_webhooks_shape_on_the_schedulers_queue() {
    let (server, _) = graph().await;
    let (_, sink, d) = world(&server);
    run_all(&d, &sink, Task::Discover).await;
    crawls(&sink);
    let job = LifecycleJob {
        v: SCHEMA_VERSION,
        tenant_id: "tenant-1".into(),
        subscription_id: "whatever".into(),
        event: "missed".into(),
        container_tag: ContainerId::new("tenant-1", "drive-3").tag(),
        received_at: Utc::now(),
    };

    scheduler::handle_message(&d, &serde_json::to_string(&job).unwrap()).await.unwrap();

    let jobs = crawls(&sink);
    assert_eq!(jobs.len(), 1);
    assert_eq!((jobs[0].container.graph_id.as_str(), jobs[0].reason), ("drive-3", ChangeReason::Reconcile));
    assert!(scheduler::handle_message(&d, "{\"work\": \"unknown\"}").await.is_err());
}

/// While SharePoint's budget is spent (a throttle or a budget pause shared within the last
/// sweep interval), a sweep leaves subscribed drives to their notifications; a drive without
/// a working subscription, the mailboxes and the daily reconcile are never left out.
#[tokio::test]
async fn sweeps_leave_subscribed_drives_to_notifications_while_the_budget_is_spent() {
    use crate::store::Coordination;
    let (server, _) = graph().await;
    let (catalog, sink, d) = world(&server);
    run_all(&d, &sink, Task::Discover).await;
    crawls(&sink);
    let swept =
        |jobs: Vec<ChangeJob>| jobs.into_iter().map(|j| j.container.scoped_id().into_owned()).collect::<Vec<_>>();

    let (quiet, _) = run_all(&d, &sink, Task::Sweep).await;
    assert_eq!((quiet.enqueued, quiet.sweeps_deferred), (3, 0), "a quiet budget sweeps everything");
    crawls(&sink);

    // A pause that ended ten minutes ago still counts: the interval was not quiet.
    catalog.throttle("tenant-1", "drive", Utc::now() - Duration::minutes(10)).await.unwrap();
    let mut refused = catalog.container(&ContainerId::new("tenant-1", "drive-3")).await.unwrap().unwrap();
    refused.problem = Some(crate::model::Problem { reason: "subscription refused".into(), since: Utc::now() });
    catalog.put_container(&refused).await.unwrap();
    let (tight, _) = run_all(&d, &sink, Task::Sweep).await;
    let mut jobs = swept(crawls(&sink));
    jobs.sort();
    assert_eq!(jobs, ["drive-3", "mailbox:u1"], "{tight:?}");
    assert_eq!(tight.sweeps_deferred, 1);

    let (reconcile, _) = run_all(&d, &sink, Task::Reconcile).await;
    assert_eq!((reconcile.enqueued, reconcile.sweeps_deferred), (3, 0));
}

#[tokio::test]
async fn the_restore_watchdog_task_fails_a_restore_job_that_stopped_moving() {
    use crate::model::{RestoreJob, RestoreScope, RestoreStatus, RestoreTarget};
    use crate::store::RestoreJobs;
    // Given a restore job queued two hours ago whose plan message was lost
    let (server, _) = graph().await;
    let (catalog, _, d) = world(&server);
    let long_ago = Utc::now() - Duration::hours(2);
    let drive = ContainerId::new(d.tenant_id.clone(), "b!drive");
    let job = RestoreJob::new("lost", drive, RestoreScope::Container, long_ago, RestoreTarget::InPlace, long_ago);
    catalog.create_restore_job(&job).await.expect("create");

    // When EventBridge sends the scheduler its watchdog task
    let task: Task = serde_json::from_str(r#"{"task":"restore_watchdog"}"#).expect("the template's input");
    let report = scheduler::run(&d, task).await.expect("watchdog");

    // Then the job is failed with the reason, and no Graph call was made
    assert_eq!(report.restores_failed, 1);
    let job = catalog.restore_job("lost").await.expect("read").expect("job");
    assert_eq!(job.status, RestoreStatus::Failed);
    assert!(job.reason.is_some_and(|r| r.contains("no progress")));
    assert!(server.graph_requests().is_empty());
}
