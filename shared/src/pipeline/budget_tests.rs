//! SharePoint's resource-unit budget paces every drive worker of a tenant: once Graph reports
//! the budget down to its reserve, the shared throttle row moves to its reset and the copiers
//! and enumerators wait before Graph has to answer 429; a 429 waits for the budget's reset when
//! that is later than its `Retry-After`. Mailboxes are not paced by it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::copier::{self, Copied};
use super::enumerator;
use super::tests::{World, container, job, world};
use crate::graph::test_server::{Seen, TestServer, reply};
use crate::model::{ChangeJob, ChangeReason};
use crate::store::{Coordination, ItemHistory, QueueName};

/// Serves each item's `/content` through a redirect carrying `budget` (limit, remaining, reset
/// in seconds), then the bytes the test drive holds for it.
async fn graph_reporting(w: &World, budget: [&'static str; 3]) -> TestServer {
    let drive = w.drive.clone();
    TestServer::start(3599, move |seen: &Seen, origin| {
        let [limit, remaining, reset] = budget;
        let rate = [("RateLimit-Limit", limit), ("RateLimit-Remaining", remaining), ("RateLimit-Reset", reset)];
        let id = seen.path.rsplit('/').nth(usize::from(seen.path.ends_with("/content"))).unwrap_or_default();
        if seen.path.ends_with("/content") {
            let target = format!("{origin}/blob/{id}");
            let mut headers = vec![("location", target.as_str())];
            headers.extend(rate);
            return reply(302, &headers, "");
        }
        let bytes = drive.items.lock().expect("lock").get(id).map(|(_, data)| data.clone()).unwrap_or_default();
        reply(200, &[], bytes)
    })
    .await
}

async fn shared_until(w: &World) -> Option<DateTime<Utc>> {
    w.catalog.throttled_until("tenant", super::DRIVE_RESOURCE).await.expect("read")
}

fn seconds_from_now(until: Option<DateTime<Utc>>) -> i64 {
    until.map_or(0, |u| (u - Utc::now()).num_seconds())
}

#[tokio::test]
async fn a_copy_answered_with_the_budget_nearly_spent_pauses_every_drive_worker_until_the_reset() {
    // Given Graph reports 100 of this minute's 1,250 units left, resetting in 40 s
    let mut w = world();
    let server = graph_reporting(&w, ["1250", "100", "40"]).await;
    w.copier.graph = Arc::new(server.client());
    let first = w.drive.put("f1", "a.txt", "e1", b"first file");
    let second = w.drive.put("f2", "b.txt", "e1", b"second file");

    // When a file is copied
    let copied = copier::copy(&w.copier, &job(&first)).await.expect("copy");

    // Then the copy stands, and every worker of the tenant sees the pause until the reset
    assert_eq!(copied, Copied::Committed { bytes: 10 });
    let paused = seconds_from_now(shared_until(&w).await);
    assert!((35..=40).contains(&paused), "shared for {paused} s");
    assert_eq!(crate::metrics::recorded(crate::metrics::GRAPH_BUDGET_PAUSES), [1]);

    // And the next job is sent back for after the reset without asking Graph
    let asked = server.graph_requests().len();
    let outcome = copier::copy(&w.copier, &job(&second)).await.expect("deferred");
    assert!(matches!(outcome, Copied::Deferred(d) if d >= Duration::from_secs(35)), "{outcome:?}");
    assert_eq!(server.graph_requests().len(), asked, "Graph was not called");
    let resent = w.sink.take(QueueName::Items);
    assert_eq!(resent.len(), 1);
    assert!(resent[0].delay.is_some_and(|d| d >= Duration::from_secs(35)));
    assert!(w.catalog.head(&container().item("f2")).await.expect("head").is_none());
}

#[tokio::test]
async fn a_budget_with_room_left_does_not_pause() {
    // Given Graph reports 300 of 1,250 units left: above the reserve
    let mut w = world();
    let server = graph_reporting(&w, ["1250", "300", "40"]).await;
    w.copier.graph = Arc::new(server.client());
    let first = w.drive.put("f1", "a.txt", "e1", b"first file");
    let second = w.drive.put("f2", "b.txt", "e1", b"second file");

    // When two files are copied
    copier::copy(&w.copier, &job(&first)).await.expect("copy");
    let outcome = copier::copy(&w.copier, &job(&second)).await.expect("copy");

    // Then both are, and nothing was shared
    assert_eq!(outcome, Copied::Committed { bytes: 11 });
    assert_eq!(shared_until(&w).await, None);
    assert!(crate::metrics::recorded(crate::metrics::GRAPH_BUDGET_PAUSES).is_empty());
}

#[tokio::test]
async fn a_429_whose_budget_resets_after_its_retry_after_pauses_the_tenant_until_the_reset() {
    // Given Graph throttles a download asking for 3 s, its daily budget resetting in 2 hours
    let mut w = world();
    let server = TestServer::start(3599, |_, _| {
        let headers = [
            ("retry-after", "3"),
            ("RateLimit-Limit", "1200000"),
            ("RateLimit-Remaining", "0"),
            ("RateLimit-Reset", "7200"),
        ];
        reply(429, &headers, "")
    })
    .await;
    w.copier.graph = Arc::new(server.client());
    let item = w.drive.put("f1", "a.txt", "e1", b"bytes");

    // When the file is copied
    let outcome = copier::copy(&w.copier, &job(&item)).await.expect("deferred");

    // Then the job waits as long as SQS allows, and the tenant's drives until the reset
    assert_eq!(outcome, Copied::Deferred(Duration::from_secs(900)));
    let paused = seconds_from_now(shared_until(&w).await);
    assert!((7190..=7200).contains(&paused), "shared for {paused} s");
}

#[tokio::test]
async fn an_enumeration_answered_with_the_budget_nearly_spent_pauses_the_next_until_the_reset() {
    // Given a drive whose delta answers report the budget down to its reserve for 2 minutes
    let w = world();
    w.drive.put("f1", "a.txt", "e1", b"bytes");
    *w.drive.budget_pause.lock().expect("lock") = Some(Duration::from_secs(120));
    let deadline = Instant::now() + Duration::from_secs(60);

    // When the drive is enumerated
    let first = ChangeJob::new(container(), ChangeReason::Notification, Utc::now());
    let out = enumerator::enumerate(&w.enumerator, &first, deadline).await.expect("enumerate");

    // Then the page is used, and the pause shared
    assert_eq!(out.jobs, 1);
    let paused = seconds_from_now(shared_until(&w).await);
    assert!((115..=120).contains(&paused), "shared for {paused} s");

    // And the next enumeration, which cannot wait that long, continues later without a call
    let deltas = w.drive.deltas.load(std::sync::atomic::Ordering::SeqCst);
    let next = ChangeJob::new(container(), ChangeReason::Notification, Utc::now());
    let out = enumerator::enumerate(&w.enumerator, &next, deadline).await.expect("enumerate");
    assert!(out.continued && out.pages == 0, "{out:?}");
    assert_eq!(w.drive.deltas.load(std::sync::atomic::Ordering::SeqCst), deltas);
}

#[tokio::test]
async fn a_mailbox_copy_is_not_paced_by_sharepoints_budget() {
    // Given the copier's drive reader reports SharePoint's budget nearly spent
    let mut w = super::mail_tests::world();
    let drive = Arc::new(super::tests::FakeDrive::default());
    *drive.budget_pause.lock().expect("lock") = Some(Duration::from_secs(120));
    w.copier.graph = drive;
    w.mailbox.deliver("m1", "inbox", false);

    // When the mailbox is backed up
    w.sync(ChangeReason::Notification).await;

    // Then its message is, and the tenant's drives were not paused by it
    assert!(!w.current("m1").await.deleted);
    let until = w.catalog.throttled_until("tenant", super::DRIVE_RESOURCE).await.expect("read");
    assert_eq!(until, None);
}
