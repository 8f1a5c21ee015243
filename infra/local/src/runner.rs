//! What Lambda's event-source mappings do, against moto's real SQS: long-poll a queue,
//! invoke the same handler the Lambda would, delete what succeeded, and leave failures to
//! the queue's own visibility timeout and redrive (moto implements both; we don't).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use shared::model::{ChangeJob, ContainerId};
use shared::pipeline::batch::Received;
use tokio::sync::watch;
use tracing::warn;

pub type Handler = Arc<dyn Fn(Vec<Received>) -> Pin<Box<dyn Future<Output = Vec<String>> + Send>> + Send + Sync>;

/// Counters the stack uses to tell when the pipeline is idle, and benchmarks read.
#[derive(Default, Debug)]
pub struct RunnerStats {
    pub in_flight: AtomicUsize,
    pub processed: AtomicU64,
    pub failed: AtomicU64,
    /// `changes` jobs handed to the enumerator, per (container scoped id, reason): how the
    /// demo shows that mail arrived by notification, not by sweep.
    pub change_jobs: Mutex<BTreeMap<(String, String), u64>>,
}

impl RunnerStats {
    pub fn count_change_jobs(&self, batch: &[Received]) {
        let Ok(mut counts) = self.change_jobs.lock() else { return };
        for job in batch.iter().filter_map(|m| serde_json::from_str::<ChangeJob>(&m.body).ok()) {
            let reason = serde_json::to_value(job.reason).ok().and_then(|v| v.as_str().map(str::to_owned));
            *counts.entry((job.container.scoped_id().into_owned(), reason.unwrap_or_default())).or_default() += 1;
        }
    }

    /// The `changes` jobs of `container` handed to the enumerator so far, by reason.
    pub fn change_jobs_of(&self, container: &ContainerId) -> BTreeMap<String, u64> {
        let scoped = container.scoped_id();
        let Ok(counts) = self.change_jobs.lock() else { return BTreeMap::new() };
        counts.iter().filter(|((c, _), _)| c.as_str() == scoped).map(|((_, r), n)| (r.clone(), *n)).collect()
    }
}

pub struct Poller {
    pub name: &'static str,
    pub queue_url: String,
    pub batch_size: i32,
    /// Seconds a received message stays invisible; failures come back after it.
    pub visibility_timeout: i32,
    pub handler: Handler,
}

impl Poller {
    pub async fn run(self, sqs: Client, stats: Arc<RunnerStats>, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let receive = sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(self.batch_size)
                .wait_time_seconds(1)
                .visibility_timeout(self.visibility_timeout)
                .send();
            let received = tokio::select! {
                r = receive => r,
                _ = stop.changed() => return,
            };
            let messages = match received {
                Ok(out) => out.messages.unwrap_or_default(),
                Err(e) => {
                    warn!(poller = self.name, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "receive failed");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
            };
            if messages.is_empty() {
                continue;
            }
            stats.in_flight.fetch_add(messages.len(), Ordering::SeqCst);
            let batch: Vec<Received> = messages
                .iter()
                .map(|m| Received {
                    id: m.message_id.clone().unwrap_or_default(),
                    body: m.body.clone().unwrap_or_default(),
                })
                .collect();
            let failed = (self.handler)(batch).await;
            let done: Vec<_> = messages
                .iter()
                .filter(|m| !failed.iter().any(|f| Some(f) == m.message_id.as_ref()))
                .enumerate()
                .filter_map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle.clone()?)
                        .build()
                        .ok()
                })
                .collect();
            if !done.is_empty()
                && let Err(e) =
                    sqs.delete_message_batch().queue_url(&self.queue_url).set_entries(Some(done)).send().await
            {
                warn!(poller = self.name, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "delete failed; messages will be redelivered");
            }
            stats.processed.fetch_add((messages.len() - failed.len()) as u64, Ordering::SeqCst);
            stats.failed.fetch_add(failed.len() as u64, Ordering::SeqCst);
            stats.in_flight.fetch_sub(messages.len(), Ordering::SeqCst);
        }
    }
}
