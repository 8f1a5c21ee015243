//! The embedded local stack: moto (AWS), the Graph simulator, the webhook on loopback, and
//! the same handlers the Lambdas run, driven by queue pollers. `make up`, `make demo`, the
//! end-to-end tests and the benchmarks all start it through [`Stack::start`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use shared::aws::catalog::DynamoCatalog;
use shared::aws::vault::S3Vault;
use shared::config::{
    CopierConfig, EnumeratorConfig, KeeperConfig, RestoreApiConfig, RestorerConfig, SchedulerConfig, WebhookConfig,
};
use shared::pipeline::batch::{copy_batch, enumerate_batch, restore_batch, scheduler_batch};
use shared::pipeline::keeper::{KeeperDeps, KeeperTask};
use shared::pipeline::scheduler::{self, SchedulerDeps, Task};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::control::{Activity, queue_depth};
use crate::moto::MotoServer;
use crate::provision::{Provisioned, provision};
use crate::runner::{Handler, Poller, RunnerStats};

pub const REGION: &str = "us-east-1";

/// Knobs of a local stack. Defaults suit `make up` and the demo.
#[derive(Clone, Debug)]
pub struct StackOptions {
    pub repo_root: PathBuf,
    /// Seed the simulated tenant with this admin `/admin/seed` body before discovery.
    pub seed: Option<serde_json::Value>,
    /// Safety-net sweep period, also of `/sites/delta` (`None`: only on demand).
    pub sweep_every: Option<Duration>,
    pub item_pollers: usize,
    pub copy_concurrency: usize,
    /// Seconds a failed message stays invisible before redelivery (Lambda uses the queue's).
    pub retry_after_secs: i32,
    pub large_item_bytes: u64,
    /// Where to write the stack's endpoints and credentials (`make up`: `.local/stack.json`).
    pub stack_json: Option<PathBuf>,
    pub stack_name: String,
    /// Simulator: delay before a notification is sent (Graph batches changes).
    pub notification_delay: Duration,
    /// Route AWS calls through a counting proxy (benchmarks).
    pub count_aws: bool,
    /// Restorer instances (each handles one plan step or chunk at a time).
    pub restore_pollers: usize,
    /// A restorer invocation's time limit (the template's is 900 s): uploads that would
    /// outlive it pause and their chunk is sent again.
    pub restore_timeout: Duration,
    /// Simulator faults (`/admin/faults` bodies) injected after seeding, before discovery.
    pub faults: Vec<serde_json::Value>,
}

impl StackOptions {
    pub fn new(repo_root: impl Into<PathBuf>) -> Self {
        Self {
            repo_root: repo_root.into(),
            seed: None,
            sweep_every: Some(Duration::from_secs(60)),
            item_pollers: 3,
            copy_concurrency: 4,
            retry_after_secs: 3,
            large_item_bytes: shared::config::DEFAULT_LARGE_ITEM_BYTES,
            stack_json: None,
            stack_name: "m365-backup-local".into(),
            notification_delay: Duration::from_millis(200),
            count_aws: false,
            faults: Vec::new(),
            restore_pollers: 4,
            restore_timeout: Duration::from_secs(900),
        }
    }
}

/// `.local/stack.json`: every endpoint and the simulated tenant's apps and their credentials.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct StackInfo {
    pub aws: AwsInfo,
    pub graph: GraphInfo,
    pub webhook_url: String,
    /// The restore API (IAM-authorised in AWS; open on loopback here).
    pub api_url: String,
    /// The local stack's control API: run a scheduler task now, wait for idle (`control.rs`).
    pub control_url: String,
    pub resources: Provisioned,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct AwsInfo {
    pub endpoint: String,
    pub region: String,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct GraphInfo {
    pub base_url: String,
    pub token_url: String,
    pub admin_url: String,
    pub tenant_id: String,
    /// The tenant's three app registrations, as in production (README "Deploy").
    pub apps: GraphApps,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct GraphApps {
    /// Discovery, enumerators and copiers: reads only.
    pub reader: GraphApp,
    /// The scheduler's subscriptions.
    pub subscriber: GraphApp,
    /// Restore jobs: the only app that writes.
    pub restorer: GraphApp,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct GraphApp {
    pub client_id: String,
    pub client_secret: String,
    /// Its application permissions in the simulated tenant.
    pub permissions: Vec<String>,
}

impl GraphApp {
    /// A new registration with random credentials, its permissions those of `standard`
    /// (`graph_sim::SimApp::reader` and the like).
    fn random(standard: fn(&str, &str) -> graph_sim::SimApp) -> GraphApp {
        let app = standard(&uuid::Uuid::new_v4().to_string(), &random_secret(40));
        GraphApp { client_id: app.client_id, client_secret: app.client_secret, permissions: app.permissions }
    }

    fn sim_app(&self, name: &str) -> graph_sim::SimApp {
        let permissions: Vec<&str> = self.permissions.iter().map(String::as_str).collect();
        graph_sim::SimApp::new(name, &self.client_id, &self.client_secret, &permissions)
    }
}

pub struct Stack {
    pub info: StackInfo,
    pub aws: aws_config::SdkConfig,
    pub catalog: Arc<DynamoCatalog>,
    pub vault: Arc<S3Vault>,
    pub scheduler: Arc<SchedulerDeps>,
    /// The vault keeper, run on demand (`control.rs`: `POST /tasks/extend`, `/tasks/verify`).
    pub keeper: Arc<KeeperDeps>,
    pub stats: Arc<RunnerStats>,
    pub admin: crate::admin::Admin,
    pub aws_counts: Option<Arc<crate::counter::AwsCounts>>,
    pub activity: Activity,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _moto: MotoServer,
}

fn random_secret(len: usize) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

async fn listener() -> Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind("127.0.0.1:0").await.context("binding a loopback port")?;
    let addr = l.local_addr()?;
    Ok((l, addr))
}

impl Stack {
    pub async fn start(opts: StackOptions) -> Result<Stack> {
        let moto = MotoServer::start(&opts.repo_root).await?;
        let mut tasks = Vec::new();
        let (endpoint, aws_counts) = if opts.count_aws {
            let (endpoint, counts, task) = crate::counter::start(&moto.endpoint).await?;
            tasks.push(task);
            (endpoint, Some(counts))
        } else {
            (moto.endpoint.clone(), None)
        };
        let aws = crate::moto::aws_config(&endpoint, REGION).await;

        // Microsoft Graph, simulated: one tenant, three apps with their own credentials and
        // permissions, as production registers them.
        let tenant_id = uuid::Uuid::new_v4().to_string();
        let apps = GraphApps {
            reader: GraphApp::random(graph_sim::SimApp::reader),
            subscriber: GraphApp::random(graph_sim::SimApp::subscriber),
            restorer: GraphApp::random(graph_sim::SimApp::restorer),
        };
        let sim = graph_sim::GraphSim::new(graph_sim::SimConfig {
            tenant_id: tenant_id.clone(),
            apps: vec![
                apps.reader.sim_app("reader"),
                apps.subscriber.sim_app("subscriber"),
                apps.restorer.sim_app("restorer"),
            ],
            notification_delay: opts.notification_delay,
            ..graph_sim::SimConfig::default()
        });
        let (graph_listener, graph_addr) = listener().await?;
        let graph_root = format!("http://{graph_addr}");
        tasks.push(tokio::spawn(async move {
            let _ = sim.serve(graph_listener).await;
        }));
        let admin = crate::admin::Admin::new(format!("{graph_root}/admin"));
        if let Some(seed) = &opts.seed {
            admin.seed(seed).await.context("seeding the simulated tenant")?;
        }
        for fault in &opts.faults {
            admin.fault(fault.clone()).await.context("injecting a simulator fault")?;
        }

        // AWS resources from template.yaml, each Graph app's secret in its own secret.
        let secret_values: BTreeMap<String, String> = [
            ("GraphReaderSecret".to_string(), apps.reader.client_secret.clone()),
            ("GraphSubscriberSecret".to_string(), apps.subscriber.client_secret.clone()),
            ("GraphRestorerSecret".to_string(), apps.restorer.client_secret.clone()),
        ]
        .into();
        let resources =
            provision(&aws, &opts.repo_root.join("template.yaml"), &opts.stack_name, &secret_values).await?;

        let (webhook_listener, webhook_addr) = listener().await?;
        let webhook_url = format!("http://{webhook_addr}/graph/notifications");
        let (api_listener, api_addr) = listener().await?;
        let (control_listener, control_addr) = listener().await?;
        let info = StackInfo {
            aws: AwsInfo { endpoint: endpoint.clone(), region: REGION.into() },
            graph: GraphInfo {
                base_url: format!("{graph_root}/v1.0"),
                token_url: format!("{graph_root}/{tenant_id}/oauth2/v2.0/token"),
                admin_url: format!("{graph_root}/admin"),
                tenant_id: tenant_id.clone(),
                apps,
            },
            webhook_url: webhook_url.clone(),
            api_url: format!("http://{api_addr}"),
            control_url: format!("http://{control_addr}"),
            resources: resources.clone(),
        };
        let settings = settings(&info, &opts);

        // The same wiring the Lambdas use, from the same settings names.
        let webhook = shared::wiring::webhook(&WebhookConfig::load(&settings)?, &aws).await?;
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(webhook_listener, shared::pipeline::webhook::router(Arc::new(webhook))).await;
        }));
        let api = shared::wiring::restore_api(&RestoreApiConfig::load(&settings)?, &aws).await;
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(api_listener, shared::api::router(Arc::new(api))).await;
        }));
        let restorer = Arc::new(shared::wiring::restorer(&RestorerConfig::load(&settings)?, &aws).await?);
        let enumerator = Arc::new(shared::wiring::enumerator(&EnumeratorConfig::load(&settings)?, &aws).await?);
        let copier = Arc::new(shared::wiring::copier(&CopierConfig::load(&settings)?, &aws).await?);
        let scheduler = Arc::new(shared::wiring::scheduler(&SchedulerConfig::load(&settings)?, &aws).await?);
        let keeper = Arc::new(shared::wiring::keeper(&KeeperConfig::load(&settings)?, &aws).await);

        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(RunnerStats::default());
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let url = |id: &str| {
            resources.queues.get(id).cloned().with_context(|| format!("queue {id} missing from the template"))
        };
        let mut pollers = Vec::new();
        let enumerate: Handler = {
            let deps = enumerator.clone();
            let stats = stats.clone();
            Arc::new(move |batch| {
                stats.count_change_jobs(&batch);
                let deps = deps.clone();
                Box::pin(async move { enumerate_batch(&deps, &batch, Instant::now() + Duration::from_secs(300)).await })
            })
        };
        pollers.push(Poller {
            name: "enumerator",
            queue_url: url("ChangesQueue")?,
            batch_size: 1,
            visibility_timeout: opts.retry_after_secs,
            handler: enumerate,
        });
        // Each with its function's timeout in template.yaml, the batch's deadline.
        let copiers = [("copier", "ItemsQueue", 10, 300), ("large-copier", "ItemsLargeQueue", 1, 900)];
        for (name, queue, batch_size, timeout_s) in copiers {
            let pollers_for_queue = if queue == "ItemsQueue" { opts.item_pollers } else { 1 };
            for _ in 0..pollers_for_queue {
                let deps = copier.clone();
                let concurrency = opts.copy_concurrency;
                let handler: Handler = Arc::new(move |batch| {
                    let deps = deps.clone();
                    Box::pin(async move {
                        copy_batch(&deps, &batch, concurrency, Instant::now() + Duration::from_secs(timeout_s)).await
                    })
                });
                pollers.push(Poller {
                    name,
                    queue_url: url(queue)?,
                    batch_size,
                    visibility_timeout: opts.retry_after_secs.max(30),
                    handler,
                });
            }
        }
        let lifecycle: Handler = {
            let deps = scheduler.clone();
            Arc::new(move |batch| {
                let deps = deps.clone();
                Box::pin(async move { scheduler_batch(&deps, &batch).await })
            })
        };
        for _ in 0..opts.restore_pollers {
            let deps = restorer.clone();
            let timeout = opts.restore_timeout;
            let handler: Handler = Arc::new(move |batch| {
                let deps = deps.clone();
                Box::pin(async move { restore_batch(&deps, &batch, Instant::now() + timeout).await })
            });
            pollers.push(Poller {
                name: "restorer",
                queue_url: url("RestoresQueue")?,
                batch_size: 1,
                visibility_timeout: opts.retry_after_secs.max(30),
                handler,
            });
        }
        pollers.push(Poller {
            name: "scheduler",
            queue_url: url("LifecycleQueue")?,
            batch_size: 10,
            visibility_timeout: opts.retry_after_secs,
            handler: lifecycle,
        });
        for poller in pollers {
            tasks.push(tokio::spawn(poller.run(sqs.clone(), stats.clone(), stop_rx.clone())));
        }
        let activity = Activity {
            sqs: sqs.clone(),
            work_queues: resources
                .queues
                .iter()
                .filter(|(id, _)| !id.contains("DeadLetter"))
                .map(|(_, url)| url.clone())
                .collect(),
            stats: stats.clone(),
            admin: admin.clone(),
        };
        let control = crate::control::router(scheduler.clone(), keeper.clone(), activity.clone());
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(control_listener, control).await;
        }));

        // The initial full backup starts with the stack: users' drives and mailboxes, then
        // every SharePoint site's libraries; then periodic sweeps and site changes.
        for task in [Task::Discover, Task::DiscoverSites] {
            initial(&scheduler, task).await?;
        }
        if let Some(every) = opts.sweep_every {
            let deps = scheduler.clone();
            let mut stop_rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            // New and deleted sites between two discoveries (`/sites/delta`);
                            // restore jobs that stopped making progress.
                            for task in [Task::Sweep, Task::SiteChanges, Task::RestoreWatchdog] {
                                if let Err(e) = scheduler::run(&deps, task).await {
                                    tracing::warn!(error = %e, ?task, "periodic task failed");
                                }
                            }
                        }
                        _ = stop_rx.changed() => return,
                    }
                }
            }));
        }

        if let Some(path) = &opts.stack_json {
            write_stack_json(path, &info)?;
        }
        info!(graph = %info.graph.base_url, aws = %info.aws.endpoint, webhook = %info.webhook_url, "local stack up");
        Ok(Stack {
            catalog: Arc::new(DynamoCatalog::new(&aws, resources.catalog_table.clone())),
            vault: Arc::new(S3Vault::new(&aws, resources.vault_bucket.clone())),
            info,
            aws,
            scheduler,
            keeper,
            stats,
            admin,
            aws_counts,
            activity,
            stop,
            tasks,
            _moto: moto,
        })
    }

    pub fn container(&self, drive_id: &str) -> shared::model::ContainerId {
        shared::model::ContainerId::new(self.info.graph.tenant_id.clone(), drive_id)
    }

    /// Waits until every queue is empty, no handler runs and the simulator has no
    /// notification in flight (what the control API's `/idle` answers).
    pub async fn idle(&self, timeout: Duration) -> Result<()> {
        if !self.activity.wait_idle(timeout).await? {
            bail!("pipeline still busy after {timeout:?}");
        }
        Ok(())
    }

    /// Messages waiting in every dead-letter queue.
    pub async fn dead_letters(&self) -> Result<u64> {
        let sqs = aws_sdk_sqs::Client::new(&self.aws);
        let mut total = 0;
        for (id, url) in &self.info.resources.queues {
            if id.contains("DeadLetter") {
                total += queue_depth(&sqs, url).await?;
            }
        }
        Ok(total)
    }

    pub async fn run_task(&self, task: Task) -> Result<scheduler::Report> {
        Ok(scheduler::run(&self.scheduler, task).await?)
    }

    /// Runs a vault keeper task to the end, as the control API does: the run as JSON and the
    /// seconds it took.
    pub async fn run_keeper(&self, task: KeeperTask) -> Result<(serde_json::Value, f64)> {
        crate::control::run_keeper(&self.keeper, task).await
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.abort();
        }
    }
}

fn settings(info: &StackInfo, opts: &StackOptions) -> BTreeMap<String, String> {
    let r = &info.resources;
    let q = |id: &str| r.queues.get(id).cloned().unwrap_or_default();
    let s = |id: &str| r.secrets.get(id).cloned().unwrap_or_default();
    [
        ("TENANT_ID", info.graph.tenant_id.clone()),
        ("GRAPH_BASE_URL", info.graph.base_url.clone()),
        (
            "GRAPH_LOGIN_URL",
            info.graph.token_url.trim_end_matches(&format!("/{}/oauth2/v2.0/token", info.graph.tenant_id)).to_string(),
        ),
        ("GRAPH_READER_CLIENT_ID", info.graph.apps.reader.client_id.clone()),
        ("GRAPH_READER_SECRET_ARN", s("GraphReaderSecret")),
        ("GRAPH_SUBSCRIBER_CLIENT_ID", info.graph.apps.subscriber.client_id.clone()),
        ("GRAPH_SUBSCRIBER_SECRET_ARN", s("GraphSubscriberSecret")),
        ("CLIENT_STATE_KEY_SECRET_ARN", s("ClientStateKeySecret")),
        ("CATALOG_TABLE", r.catalog_table.clone()),
        ("VAULT_BUCKET", r.vault_bucket.clone()),
        ("EXPORTS_BUCKET", r.exports_bucket.clone()),
        ("CHANGES_QUEUE_URL", q("ChangesQueue")),
        ("ITEMS_QUEUE_URL", q("ItemsQueue")),
        ("ITEMS_LARGE_QUEUE_URL", q("ItemsLargeQueue")),
        ("LIFECYCLE_QUEUE_URL", q("LifecycleQueue")),
        ("RESTORES_QUEUE_URL", q("RestoresQueue")),
        ("GRAPH_RESTORER_CLIENT_ID", info.graph.apps.restorer.client_id.clone()),
        ("GRAPH_RESTORER_SECRET_ARN", s("GraphRestorerSecret")),
        ("OBJECT_LOCK_MODE", r.object_lock_mode.clone()),
        ("RETENTION_DAYS", r.retention_days.to_string()),
        ("WEBHOOK_URL", info.webhook_url.clone()),
        ("LARGE_ITEM_BYTES", opts.large_item_bytes.to_string()),
        ("COPY_CONCURRENCY", opts.copy_concurrency.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Runs a start-up scheduler task; as EventBridge retries a failed scheduled run, so does the
/// stack (e.g. throttled).
async fn initial(scheduler: &SchedulerDeps, task: Task) -> Result<()> {
    let mut attempt = 0;
    loop {
        match scheduler::run(scheduler, task).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_retryable() && attempt < 20 => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, ?task, "initial task failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("initial {task:?}")),
        }
    }
}

/// `.local/stack.json` under the repository: where `make up` and the demo write.
pub fn default_stack_json(repo_root: &Path) -> PathBuf {
    repo_root.join(".local").join("stack.json")
}

fn write_stack_json(path: &Path, info: &StackInfo) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Written whole to a temporary name, then renamed: a reader never sees half a file.
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, serde_json::to_vec_pretty(info)?)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // It holds the simulated tenant's client secrets.
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&partial, path)?;
    Ok(())
}
