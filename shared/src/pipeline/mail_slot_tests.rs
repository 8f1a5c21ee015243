//! In-process tests of mailbox slots under batches: what a batch of one mailbox's messages
//! costs in catalog writes, and that copies never call Graph on a mailbox more often at once
//! than its slots allow, however many batches run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;

use super::batch::{Received, copy_batch};
use super::copier::{CopierDeps, MAILBOX_COPY_SLOTS};
use super::mail_tests::{FakeMailbox, World, mailbox, world};
use super::{MailPage, MailReader};
use crate::graph::{Download, GraphError};
use crate::model::{ItemJob, ItemKind, ItemState, MailMeta, SCHEMA_VERSION};
use crate::store::{Coordination, QueueName};

/// The fake mailbox, with `$value` downloads that take a while and are counted while they run.
struct SlowMail {
    inner: Arc<FakeMailbox>,
    took: Duration,
    running: AtomicU32,
    most: AtomicU32,
}

#[async_trait]
impl MailReader for SlowMail {
    async fn folder_delta(&self, user: &str, link: Option<&str>) -> Result<MailPage, GraphError> {
        self.inner.folder_delta(user, link).await
    }

    async fn message_delta(&self, user: &str, folder: &str, link: Option<&str>) -> Result<MailPage, GraphError> {
        self.inner.message_delta(user, folder, link).await
    }

    async fn message(&self, user: &str, id: &str) -> Result<Option<ItemState>, GraphError> {
        self.inner.message(user, id).await
    }

    async fn attachment_fingerprint(&self, user: &str, id: &str) -> Result<Option<String>, GraphError> {
        self.inner.attachment_fingerprint(user, id).await
    }

    async fn mail_folder(&self, user: &str, id: &str) -> Result<Option<ItemState>, GraphError> {
        self.inner.mail_folder(user, id).await
    }

    async fn mime(&self, user: &str, id: &str) -> Result<Download, GraphError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.took).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.inner.mime(user, id).await
    }

    async fn root_folder_id(&self, user: &str) -> Result<Option<String>, GraphError> {
        self.inner.root_folder_id(user).await
    }
}

/// The world's copier, reading the mailbox through downloads that each take `took`.
fn slow_copier(w: &World, took: Duration) -> (CopierDeps, Arc<SlowMail>) {
    let mail =
        Arc::new(SlowMail { inner: w.mailbox.clone(), took, running: AtomicU32::new(0), most: AtomicU32::new(0) });
    let c = &w.copier;
    let deps = CopierDeps {
        graph: c.graph.clone(),
        mail: mail.clone(),
        vault: c.vault.clone(),
        catalog: c.catalog.clone(),
        sink: c.sink.clone(),
        lock_mode: c.lock_mode,
        retention_days: c.retention_days,
        large_item_bytes: c.large_item_bytes,
        clock: c.clock.clone(),
    };
    (deps, mail)
}

/// A new message's copy job, as the enumerator writes it.
fn new_message(id: &str) -> ItemJob {
    let item = ItemState {
        created: None,
        id: id.into(),
        kind: ItemKind::Message,
        name: Some(id.into()),
        parent_id: Some("inbox".into()),
        etag: Some("ck-1".into()),
        ctag: None,
        size: None,
        quick_xor_hash: None,
        modified: Some(Utc::now()),
        deleted: false,
        mail: Some(MailMeta { subject: Some(id.into()), ..MailMeta::default() }),
    };
    ItemJob {
        v: SCHEMA_VERSION,
        container: mailbox(),
        item,
        observed_at: Utc::now(),
        scan_epoch: None,
        deferrals: 0,
        confirm_gone: false,
    }
}

fn received(jobs: &[ItemJob]) -> Vec<Received> {
    jobs.iter()
        .enumerate()
        .map(|(n, job)| Received { id: format!("sqs-{n}"), body: serde_json::to_string(job).expect("job") })
        .collect()
}

/// `n` new messages in the Inbox, and their jobs.
fn delivered(w: &World, n: usize) -> Vec<ItemJob> {
    (0..n)
        .map(|i| {
            let id = format!("m{i}");
            w.mailbox.deliver(&id, "inbox", false);
            new_message(&id)
        })
        .collect()
}

/// Runs whatever the copiers sent back to the queue, as SQS would deliver it again, until
/// nothing comes back.
async fn run_deferred(w: &World, deps: &CopierDeps) {
    for round in 0.. {
        let again: Vec<ItemJob> =
            w.sink.take(QueueName::Items).iter().map(|m| serde_json::from_str(&m.body).expect("item job")).collect();
        if again.is_empty() {
            return;
        }
        assert!(round < 100, "jobs keep coming back");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(copy_batch(deps, &received(&again), 8, lambda_deadline()).await.is_empty());
    }
}

const BATCH: usize = 10;

/// A copier Lambda's deadline: its timeout (`template.yaml`) from now.
fn lambda_deadline() -> Instant {
    Instant::now() + Duration::from_secs(300)
}

#[tokio::test]
async fn a_batch_of_one_mailbox_costs_at_most_three_catalog_writes_per_message() {
    // Given ten new messages of one mailbox in one queue batch, each needing a download
    let w = world();
    let (deps, mail) = slow_copier(&w, Duration::from_millis(5));
    let jobs = delivered(&w, BATCH);
    let writes = w.catalog.write_count();

    // When the batch is copied (eight at a time, as a copier Lambda does), and whatever it
    // sent back to the queue is copied again
    assert!(copy_batch(&deps, &received(&jobs), 8, lambda_deadline()).await.is_empty());
    let sent_back = w.sink.send_count();
    run_deferred(&w, &deps).await;

    // Then every message is backed up, each downloaded once
    for job in &jobs {
        assert!(w.current(&job.item.id).await.content.is_some());
    }
    assert_eq!(mail.inner.download_count(), BATCH as u32);
    // for at most three catalog writes per message (the version row and the head are two),
    // and no job was sent back to the queue to wait for a slot
    let per_message = (w.catalog.write_count() - writes) as f64 / BATCH as f64;
    assert!(per_message <= 3.0, "{per_message} catalog writes per message");
    assert_eq!(sent_back, 0, "jobs deferred");
    // and the batch gave its slots back
    let resource = super::throttle_resource(&mailbox());
    let (now, until) = (Utc::now(), Utc::now() + chrono::Duration::minutes(1));
    for _ in 0..MAILBOX_COPY_SLOTS {
        let free = w.catalog.acquire_slot("tenant", &resource, MAILBOX_COPY_SLOTS, now, until).await.expect("acquire");
        assert!(free.is_some(), "a slot is still held");
    }
}

#[tokio::test]
async fn two_batches_of_one_mailbox_never_download_more_at_once_than_its_slots() {
    // Given twenty new messages of one mailbox, received by two copiers in two batches
    let w = world();
    let (deps, mail) = slow_copier(&w, Duration::from_millis(20));
    let jobs = delivered(&w, 2 * BATCH);
    let (first, second) = jobs.split_at(BATCH);

    // When both batches are copied at the same time, and what they sent back copied again
    let (first, second) = (received(first), received(second));
    let started = Instant::now();
    let (a, b) =
        tokio::join!(copy_batch(&deps, &first, 8, lambda_deadline()), copy_batch(&deps, &second, 8, lambda_deadline()));
    assert!(a.is_empty() && b.is_empty());
    run_deferred(&w, &deps).await;

    // Then Graph never served more downloads of the mailbox at once than the copiers' slots
    let most = mail.most.load(Ordering::SeqCst);
    assert!(most <= MAILBOX_COPY_SLOTS, "{most} downloads at once");
    assert!(most > 1, "the copies did not overlap at all");
    // and every message is backed up, downloaded once
    for job in &jobs {
        assert!(w.current(&job.item.id).await.content.is_some());
    }
    assert_eq!(mail.inner.download_count(), 2 * BATCH as u32);
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn the_slots_of_a_batch_that_crashed_come_back_at_its_deadline() {
    // Given a copier whose batch of one mailbox's messages dies during its downloads
    let w = world();
    let (deps, mail) = slow_copier(&w, Duration::from_secs(3600));
    let jobs = delivered(&w, BATCH);
    let deadline = Instant::now() + Duration::from_secs(60);
    let batch = received(&jobs);
    let crashed = tokio::time::timeout(Duration::from_millis(300), copy_batch(&deps, &batch, 8, deadline));
    assert!(crashed.await.is_err(), "the batch should still be downloading");
    assert!(mail.most.load(Ordering::SeqCst) >= 1);

    // Then the mailbox's slots stay held while its Lambda could still be running
    let resource = super::throttle_resource(&mailbox());
    let acquire = |now: chrono::DateTime<Utc>| {
        let catalog = w.catalog.clone();
        let resource = resource.clone();
        async move {
            catalog
                .acquire_slot("tenant", &resource, MAILBOX_COPY_SLOTS, now, now + chrono::Duration::seconds(1))
                .await
                .expect("acquire")
        }
    };
    let soon = Utc::now() + chrono::Duration::seconds(50);
    let mut free_soon = 0;
    for _ in 0..MAILBOX_COPY_SLOTS {
        free_soon += usize::from(acquire(soon).await.is_some());
    }
    assert!(free_soon < MAILBOX_COPY_SLOTS as usize, "the batch held no slot");
    // and every one is free once its deadline has passed, not ten minutes later
    let after = Utc::now() + chrono::Duration::seconds(61);
    for _ in 0..MAILBOX_COPY_SLOTS {
        assert!(acquire(after).await.is_some(), "a slot outlived its batch's Lambda");
    }
}

/// Takes every copy slot of the test mailbox, as batches running elsewhere would.
async fn hold_every_slot(w: &World) -> Vec<crate::store::SlotLease> {
    let resource = super::throttle_resource(&mailbox());
    let (now, until) = (Utc::now(), Utc::now() + chrono::Duration::minutes(5));
    let mut held = Vec::new();
    for _ in 0..MAILBOX_COPY_SLOTS {
        let lease = w.catalog.acquire_slot("tenant", &resource, MAILBOX_COPY_SLOTS, now, until).await.expect("acquire");
        held.push(lease.expect("free"));
    }
    held
}

#[tokio::test]
async fn a_batch_waits_a_moment_for_a_slot_another_copier_gives_back() {
    // Given three new messages, and every slot of their mailbox held by other copiers
    let w = world();
    let (deps, mail) = slow_copier(&w, Duration::from_millis(5));
    let jobs = delivered(&w, 3);
    let held = hold_every_slot(&w).await;

    // When a batch of them starts, and another copier gives its slot back a moment later
    let catalog = w.catalog.clone();
    let giving_back = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        catalog.release_slot(&held[0]).await.expect("release");
    });
    assert!(copy_batch(&deps, &received(&jobs), 8, lambda_deadline()).await.is_empty());
    giving_back.await.expect("released");

    // Then the batch copied them all in that slot, none sent back to the queue
    assert_eq!(mail.inner.download_count(), 3);
    assert_eq!(w.sink.send_count(), 0);
    assert!(mail.most.load(Ordering::SeqCst) <= 1, "one slot, one download at a time");
}

#[tokio::test]
async fn a_batch_that_finds_no_slot_for_long_sends_its_jobs_back_with_a_delay() {
    // Given three new messages, and every slot of their mailbox held for minutes
    let w = world();
    let (deps, mail) = slow_copier(&w, Duration::from_millis(5));
    let jobs = delivered(&w, 3);
    let _held = hold_every_slot(&w).await;

    // When a batch of them runs
    let failed = copy_batch(&deps, &received(&jobs), 8, lambda_deadline()).await;

    // Then nothing was downloaded, and each job is back in the queue with a delay, none
    // reported as failed (which would burn its receive count)
    assert!(failed.is_empty());
    assert_eq!(mail.inner.download_count(), 0);
    let again = w.sink.take(QueueName::Items);
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|m| m.delay.is_some_and(|d| d >= Duration::from_secs(1))));
}
