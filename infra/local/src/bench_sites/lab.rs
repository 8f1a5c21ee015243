//! A SharePoint tenant backed up in-process: the simulator over HTTP (its resource-unit
//! throttling on), the scheduler, the real enumerator and copier on the in-memory catalog,
//! vault and queues, and the webhook receiving the simulator's notifications. Each copier and
//! enumerator "instance" has its own Graph client, as each Lambda instance does: they see
//! SharePoint's budget reports separately and share pauses only through the catalog.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use shared::clientstate::ClientStateKey;
use shared::model::{ChangeJob, ItemJob};
use shared::pipeline::copier::{self, Copied, CopierDeps};
use shared::pipeline::enumerator::{self, EnumeratorDeps};
use shared::pipeline::scheduler::{self, SchedulerDeps, Task};
use shared::pipeline::webhook::{self, WebhookDeps};
use shared::store::memory::{MemoryCatalog, MemorySink, MemoryVault};
use shared::store::{LockMode, QueueName};
use tokio::task::JoinHandle;
use tracing::warn;

use super::queues::Queues;
use crate::admin::Admin;
use crate::bench_discovery::{client, serve};

const KEY: &str = "bench-sites-key-bench-sites-key-bench-01";
/// How long a message whose handler failed stays invisible (the pollers' short timeout).
const VISIBILITY: Duration = Duration::from_secs(2);

/// What the copiers did, job by job.
#[derive(Default)]
pub(crate) struct Counters {
    pub committed: AtomicU64,
    pub deferred: AtomicU64,
    pub other: AtomicU64,
    pub errors: AtomicU64,
    pub pages: AtomicU64,
}

pub(crate) struct Lab {
    pub sim_url: String,
    pub admin: Admin,
    pub http: reqwest::Client,
    pub tenant_id: String,
    pub reader_id: String,
    reader: graph_sim::SimApp,
    /// The restore app (write scopes), for the restore bench.
    pub restorer: graph_sim::SimApp,
    pub catalog: Arc<MemoryCatalog>,
    pub vault: Arc<MemoryVault>,
    sink: Arc<MemorySink>,
    hook_sink: Arc<MemorySink>,
    pub scheduler: Arc<SchedulerDeps>,
    pub queues: Arc<Queues>,
    pub counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl Lab {
    /// A simulator seeded with `seed` (RU throttling lifted until [`Lab::throttle`]), the
    /// webhook and the scheduler's deps.
    pub async fn start(seed: &Value) -> Result<Self> {
        let sim = graph_sim::GraphSim::new(graph_sim::SimConfig::default());
        let cfg = sim.config().clone();
        let sim_url = serve(sim.router()).await?;
        let admin = Admin::new(format!("{sim_url}/admin"));
        let http = reqwest::Client::new();
        admin.seed(seed).await?;
        let hook_sink = Arc::new(MemorySink::new());
        let hook = webhook::router(Arc::new(WebhookDeps {
            tenant_id: cfg.tenant_id.clone(),
            key: ClientStateKey::new(KEY)?,
            sink: hook_sink.clone(),
            clock: shared::clock::system(),
        }));
        let webhook_url = format!("{}/graph/notifications", serve(hook).await?);
        let app = |name: &str| cfg.apps.iter().find(|a| a.name == name).cloned().context("sim app");
        let reader = app("reader")?;
        let catalog = Arc::new(MemoryCatalog::new());
        let sink = Arc::new(MemorySink::new());
        let scheduler = Arc::new(SchedulerDeps {
            tenant_id: cfg.tenant_id.clone(),
            reader: client(&sim_url, &cfg.tenant_id, &reader)?,
            subscriber: client(&sim_url, &cfg.tenant_id, &app("subscriber")?)?,
            catalog: catalog.clone(),
            sink: sink.clone(),
            key: ClientStateKey::new(KEY)?,
            webhook_url,
            subscription_minutes: 42_000,
            renew_within_minutes: 3 * 24 * 60,
            sites: Default::default(),
            clock: shared::clock::system(),
        });
        let lab = Self {
            sim_url,
            admin,
            http,
            tenant_id: cfg.tenant_id.clone(),
            reader_id: reader.client_id.clone(),
            reader,
            restorer: app("restorer")?,
            catalog,
            vault: Arc::new(MemoryVault::new()),
            sink,
            hook_sink,
            scheduler,
            queues: Arc::new(Queues::default()),
            counters: Arc::new(Counters::default()),
            stop: Arc::new(AtomicBool::new(false)),
            workers: Vec::new(),
        };
        lab.throttle(json!({"ru_per_minute": 1_000_000_000u64, "ru_per_day": 1_000_000_000u64})).await?;
        Ok(lab)
    }

    /// `PATCH /admin/throttling` with `knobs`, then every app's usage forgotten.
    pub async fn throttle(&self, knobs: Value) -> Result<()> {
        let url = |p: &str| format!("{}/admin/throttling{p}", self.sim_url);
        self.http.patch(url("")).json(&knobs).send().await?.error_for_status()?;
        self.http.post(url("/reset")).send().await?.error_for_status()?;
        Ok(())
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        Ok(self.http.get(format!("{}/admin{path}", self.sim_url)).send().await?.error_for_status()?.json().await?)
    }

    /// `discover_sites` and its shares through the scheduler, one share at a time. The crawls
    /// it queues stay in the sink until the workers start.
    pub async fn discover_sites(&self) -> Result<scheduler::Report> {
        self.discover(Task::DiscoverSites).await
    }

    /// A scheduler `task` (discovery of users or of sites) and the shares it fans out, one at
    /// a time; what they queue stays in the sink until the workers start (or [`Lab::sweep`]).
    pub async fn discover(&self, task: Task) -> Result<scheduler::Report> {
        let mut reports = vec![scheduler::run(&self.scheduler, task).await?];
        loop {
            let shares = self.sink.take(QueueName::Lifecycle);
            if shares.is_empty() {
                break;
            }
            for share in shares {
                reports.push(scheduler::handle_message(&self.scheduler, &share.body).await?);
            }
        }
        Ok(scheduler::total(reports))
    }

    /// `instances` copier instances of `copies` concurrent copies each, and `enumerators`
    /// enumerator instances of one enumeration each, working until [`Lab::stop`].
    pub fn start_workers(&mut self, instances: usize, copies: usize, enumerators: usize) -> Result<()> {
        self.queues.pump(&self.sink);
        for _ in 0..instances {
            let graph = Arc::new(client(&self.sim_url, &self.tenant_id, &self.reader)?);
            let deps = Arc::new(CopierDeps {
                graph: graph.clone(),
                mail: graph,
                vault: self.vault.clone(),
                catalog: self.catalog.clone(),
                sink: self.sink.clone(),
                lock_mode: LockMode::Governance,
                retention_days: 35,
                large_item_bytes: 100 * 1024 * 1024,
                clock: shared::clock::system(),
            });
            for _ in 0..copies {
                self.workers.push(tokio::spawn(copy_loop(
                    deps.clone(),
                    self.sink.clone(),
                    self.queues.clone(),
                    self.counters.clone(),
                    self.stop.clone(),
                )));
            }
        }
        for _ in 0..enumerators {
            let graph = Arc::new(client(&self.sim_url, &self.tenant_id, &self.reader)?);
            let deps = Arc::new(EnumeratorDeps {
                graph: graph.clone(),
                mail: graph,
                catalog: self.catalog.clone(),
                sink: self.sink.clone(),
                large_item_bytes: 100 * 1024 * 1024,
                reserve: Duration::from_secs(30),
                clock: shared::clock::system(),
            });
            self.workers.push(tokio::spawn(enumerate_loop(
                deps,
                self.sink.clone(),
                self.queues.clone(),
                self.counters.clone(),
                self.stop.clone(),
            )));
        }
        Ok(())
    }

    /// Until the queues are empty, no handler runs and the simulator has no notification in
    /// flight; the webhook's jobs are moved to the `changes` queue meanwhile.
    pub async fn idle(&self, timeout: Duration, notifications: bool) -> Result<()> {
        let until = Instant::now() + timeout;
        loop {
            self.queues.pump(&self.hook_sink);
            if self.queues.is_empty() {
                let quiet =
                    !notifications || self.get("/stats").await?["notifications_in_flight"].as_u64().unwrap_or(0) == 0;
                self.queues.pump(&self.hook_sink);
                if quiet && self.queues.is_empty() {
                    return Ok(());
                }
            }
            anyhow::ensure!(Instant::now() < until, "the backup did not finish within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The scheduler's safety-net sweep: an enumeration of every container, queued for the
    /// workers.
    pub async fn sweep(&self) -> Result<()> {
        scheduler::run(&self.scheduler, Task::Sweep).await?;
        self.queues.pump(&self.sink);
        Ok(())
    }

    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.await;
        }
    }
}

async fn copy_loop(
    deps: Arc<CopierDeps>,
    sink: Arc<MemorySink>,
    queues: Arc<Queues>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    while let Some(received) = queues.items.receive(&stop).await {
        let outcome = match serde_json::from_str::<ItemJob>(&received.body) {
            Ok(job) => copier::copy(&deps, &job).await.map_err(anyhow::Error::from),
            Err(e) => Err(e.into()),
        };
        let counter = match &outcome {
            Ok(Copied::Committed { .. }) => &counters.committed,
            Ok(Copied::Deferred(_)) => &counters.deferred,
            Ok(_) => &counters.other,
            Err(_) => &counters.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = outcome {
            warn!(error = %e, "copy failed: the job comes back after the visibility timeout");
            queues.items.send_again(&received, VISIBILITY);
        }
        queues.pump(&sink);
        queues.items.done(received);
    }
}

async fn enumerate_loop(
    deps: Arc<EnumeratorDeps>,
    sink: Arc<MemorySink>,
    queues: Arc<Queues>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    while let Some(received) = queues.changes.receive(&stop).await {
        let outcome = match serde_json::from_str::<ChangeJob>(&received.body) {
            Ok(job) => enumerator::enumerate(&deps, &job, Instant::now() + Duration::from_secs(900))
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(e.into()),
        };
        match outcome {
            Ok(e) => {
                counters.pages.fetch_add(e.pages as u64, Ordering::Relaxed);
            }
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "enumeration failed: the job comes back after the visibility timeout");
                queues.changes.send_again(&received, VISIBILITY);
            }
        }
        queues.pump(&sink);
        queues.changes.done(received);
    }
}
