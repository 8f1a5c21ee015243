//! Discovery and lifecycle of drives and mailboxes against a scripted Graph.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{Duration, Utc};
use serde_json::{Value, json};

use super::scheduler::{self, MAIL_SUBSCRIPTION_MINUTES, SchedulerDeps, Task};
use crate::clientstate::ClientStateKey;
use crate::graph::test_server::{Seen, TestServer, graph_error, json as reply_json};
use crate::model::{ChangeJob, ChangeReason, ContainerId, LifecycleJob, SCHEMA_VERSION};
use crate::store::memory::{MemoryCatalog, MemorySink};
use crate::store::{Containers, QueueName};

const KEY: &str = "scheduler-test-key-scheduler-test-key-01";

/// u1 has a drive and a mailbox; u2 neither (no OneDrive, no Exchange Online); u3 a drive
/// and a mailbox the app may not read (no licence or consent).
async fn graph() -> TestServer {
    TestServer::start(3599, |seen: &Seen, _| match (seen.method.as_str(), seen.path.as_str()) {
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
        ("GET", "/v1.0/users/U1/mailFolders/inbox") => reply_json(
            200,
            &json!({"id": "AAMkInbox", "displayName": "Inbox", "parentFolderId": "AAMkRoot", "childFolderCount": 0}),
        ),
        ("GET", "/v1.0/users/u2/mailFolders/inbox") => graph_error(404, "MailboxNotEnabledForRESTAPI"),
        ("GET", "/v1.0/users/u3/mailFolders/inbox") => graph_error(403, "ErrorAccessDenied"),
        ("POST", "/v1.0/subscriptions") => {
            let body: Value = serde_json::from_str(&seen.body).unwrap();
            let id = format!("sub-{}", seen.nth);
            reply_json(
                201,
                &json!({"id": id, "resource": body["resource"], "expirationDateTime": body["expirationDateTime"]}),
            )
        }
        _ => graph_error(404, "itemNotFound"),
    })
    .await
}

fn deps(server: &TestServer, catalog: Arc<MemoryCatalog>, sink: Arc<MemorySink>) -> SchedulerDeps {
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
        clock: crate::clock::system(),
    }
}

fn subscription_requests(server: &TestServer) -> Vec<Value> {
    server
        .graph_requests()
        .into_iter()
        .filter(|s| s.method == "POST" && s.path == "/v1.0/subscriptions")
        .map(|s| serde_json::from_str(&s.body).unwrap())
        .collect()
}

#[tokio::test]
async fn discovery_protects_every_drive_and_mailbox_and_skips_mailboxes_graph_does_not_serve() {
    let server = graph().await;
    let (catalog, sink) =
        (Arc::new(MemoryCatalog::with_index_lag(super::tests::INDEX_LAG)), Arc::new(MemorySink::new()));
    let d = deps(&server, catalog.clone(), sink.clone());

    let report = scheduler::run(&d, Task::Discover).await.unwrap();

    assert_eq!((report.containers, report.discovered, report.subscribed), (3, 3, 3));
    assert_eq!((report.without_drive, report.without_mailbox), (1, 2));
    let mailbox = ContainerId::mailbox("tenant-1", "U1");
    assert_eq!(mailbox.graph_id, "u1", "user ids are kept lower case");
    let record = catalog.container(&mailbox).await.unwrap().expect("the mailbox is recorded");
    assert_eq!(record.user_principal_name.as_deref(), Some("one@contoso.test"));

    let requests = subscription_requests(&server);
    let mail = requests.iter().find(|r| r["resource"] == "/users/u1/messages").expect("a mailbox subscription");
    assert_eq!(mail["changeType"], "created,updated,deleted");
    let expires: chrono::DateTime<Utc> = mail["expirationDateTime"].as_str().unwrap().parse().unwrap();
    assert!(expires <= Utc::now() + Duration::minutes(MAIL_SUBSCRIPTION_MINUTES), "Outlook caps message subscriptions");
    let vouched = ClientStateKey::new(KEY).unwrap().verify("tenant-1", mail["clientState"].as_str().unwrap()).unwrap();
    assert_eq!(vouched.container_tag, mailbox.tag());
    assert_ne!(vouched.container_tag, ContainerId::new("tenant-1", "u1").tag());
    assert!(requests.iter().any(|r| r["resource"] == "/drives/drive-3/root" && r["changeType"] == "updated"));

    let crawls: Vec<ChangeJob> =
        sink.messages(QueueName::Changes).iter().map(|m| serde_json::from_str(&m.body).unwrap()).collect();
    assert_eq!(crawls.len(), 3);
    assert!(crawls.iter().any(|j| j.container == mailbox && j.reason == ChangeReason::Sweep));

    // A second discovery finds nothing new and subscribes nothing again.
    let again = scheduler::run(&d, Task::Discover).await.unwrap();
    assert_eq!((again.discovered, again.subscribed), (0, 0));
    assert_eq!(subscription_requests(&server).len(), 3);
}

#[tokio::test]
async fn a_removed_mailbox_subscription_is_recreated_and_a_missed_one_reconciles_the_mailbox() {
    let server = graph().await;
    let (catalog, sink) =
        (Arc::new(MemoryCatalog::with_index_lag(super::tests::INDEX_LAG)), Arc::new(MemorySink::new()));
    let d = deps(&server, catalog.clone(), sink.clone());
    scheduler::run(&d, Task::Discover).await.unwrap();
    sink.take(QueueName::Changes);
    let mailbox = ContainerId::mailbox("tenant-1", "u1");
    let before = catalog.container(&mailbox).await.unwrap().unwrap().subscription_id;
    let event = |name: &str| LifecycleJob {
        v: SCHEMA_VERSION,
        tenant_id: "tenant-1".into(),
        subscription_id: before.clone().unwrap(),
        event: name.into(),
        container_tag: mailbox.tag(),
        received_at: Utc::now(),
    };

    scheduler::lifecycle(&d, &event("subscriptionRemoved")).await.unwrap();
    scheduler::lifecycle(&d, &event("missed")).await.unwrap();

    let after = catalog.container(&mailbox).await.unwrap().unwrap().subscription_id;
    assert!(after.is_some() && after != before, "a new subscription replaces the removed one");
    assert_eq!(subscription_requests(&server).last().unwrap()["resource"], "/users/u1/messages");
    let jobs: Vec<ChangeJob> =
        sink.take(QueueName::Changes).iter().map(|m| serde_json::from_str(&m.body).unwrap()).collect();
    let reasons: Vec<_> = jobs.iter().map(|j| (j.container.clone(), j.reason)).collect();
    assert_eq!(reasons, vec![(mailbox.clone(), ChangeReason::Sweep), (mailbox, ChangeReason::Reconcile)]);
}
