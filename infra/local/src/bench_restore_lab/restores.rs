//! The restorer played in-process for the restore bench: `consumers` workers, each one Lambda
//! instance of the `restores` queue (batch size 1, as the template), with its own Graph client
//! of the restore app, calling the real `batch::restore_batch` on the lab's in-memory catalog
//! and vault. A message whose handler failed comes back after a short visibility timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use shared::model::{ContainerId, RestoreJob, RestoreScope, RestoreStatus, RestoreTarget, RestoreTask};
use shared::pipeline::batch::{self, Received};
use shared::pipeline::restorer::RestorerDeps;
use shared::store::memory::{MemoryExports, MemorySink};
use shared::store::{OutMessage, QueueName, RestoreJobs};

use crate::bench_discovery::client;
use crate::bench_sites::lab::Lab;
use crate::bench_sites::queues::Queue;

/// How long a failed handler's message stays invisible.
const VISIBILITY: Duration = Duration::from_secs(2);

/// A finished restore job and what it took.
pub(crate) struct Restored {
    pub job: RestoreJob,
    pub elapsed: Duration,
    /// Queue messages handled (the plan, chunks, chunks sent back to wait for a slot).
    pub handled: u64,
    /// Messages whose handler failed (they came back after the visibility timeout).
    pub failed_handlers: u64,
}

/// An in-place restore of `container` as of `as_of`, from the plan to the job's end.
pub(crate) async fn run(
    lab: &Lab,
    container: ContainerId,
    as_of: DateTime<Utc>,
    consumers: usize,
    timeout: Duration,
) -> Result<Restored> {
    let (sink, queue) = (Arc::new(MemorySink::new()), Arc::new(Queue::default()));
    let (stop, handled, failed) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let id = format!("bench-{}", uuid::Uuid::new_v4());
    let job =
        RestoreJob::new(id.clone(), container, RestoreScope::Container, as_of, RestoreTarget::InPlace, Utc::now());
    lab.catalog.create_restore_job(&job).await?;
    let plan = serde_json::to_string(&RestoreTask::plan(id.clone(), false))?;
    let started = Instant::now();
    queue.send(OutMessage { body: plan, group_id: None, delay: None });
    let mut workers = Vec::new();
    for _ in 0..consumers {
        let deps = Arc::new(RestorerDeps {
            graph: client(&lab.sim_url, &lab.tenant_id, &lab.restorer)?,
            vault: lab.vault.clone(),
            catalog: lab.catalog.clone(),
            sink: sink.clone(),
            exports: Arc::new(MemoryExports::new()),
            clock: shared::clock::system(),
        });
        let (sink, queue, stop, handled, failed) =
            (sink.clone(), queue.clone(), stop.clone(), handled.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            while let Some(received) = queue.receive(&stop).await {
                let n = handled.fetch_add(1, Ordering::Relaxed);
                let message = Received { id: format!("m{n}"), body: received.body.clone() };
                if !batch::restore_batch(
                    &deps,
                    std::slice::from_ref(&message),
                    std::time::Instant::now() + std::time::Duration::from_secs(900),
                )
                .await
                .is_empty()
                {
                    failed.fetch_add(1, Ordering::Relaxed);
                    queue.send_again(&received, VISIBILITY);
                }
                for m in sink.take(QueueName::Restores) {
                    queue.send(m);
                }
                queue.done(received);
            }
        }));
    }
    let finished = loop {
        let now = lab.catalog.restore_job(&id).await?.context("the restore job")?;
        if matches!(now.status, RestoreStatus::Succeeded | RestoreStatus::CompletedWithErrors | RestoreStatus::Failed) {
            break now;
        }
        anyhow::ensure!(started.elapsed() < timeout, "the restore did not finish within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    Ok(Restored {
        job: finished,
        elapsed,
        handled: handled.load(Ordering::Relaxed),
        failed_handlers: failed.load(Ordering::Relaxed),
    })
}
