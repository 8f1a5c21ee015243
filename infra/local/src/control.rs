//! The local stack's control API (`control_url` in `.local/stack.json`), on loopback only:
//! what EventBridge and CloudWatch would give an operator in AWS, so the stack can be driven
//! by hand or by a test.
//!
//! - `POST /tasks/{task}` runs a scheduler task now (`discover`, `discover_sites`,
//!   `site_changes`, `sweep`, `reconcile`, `renew`: any name [`Task`] deserialises from, so
//!   tasks added later come for free) and
//!   answers 200 with its report once it has finished; an unknown task is 400.
//! - `POST /tasks/extend` and `POST /tasks/verify` (`?full=true`: hash every version's bytes,
//!   not a sample) run a vault keeper task now, as the keeper function's hourly schedule
//!   would, invoking it again and again until its run has finished, and answer 200 with
//!   the run (`report` is a `shared::model::KeeperRun`: `finished_at`, `invocations` and
//!   its own `report`). Verify always starts a new run (`fresh`); extend carries on
//!   today's run, or answers the last one when it finished less than 20 hours ago.
//! - `POST /idle?timeout_s=N` answers 200 `{"idle": true}` once every queue is empty, no
//!   handler runs and the simulator has no notification in flight, or 504 after N seconds.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;
use shared::pipeline::keeper::{self, KeeperDeps, KeeperTask};
use shared::pipeline::scheduler::{self, SchedulerDeps, Task};

use crate::admin::Admin;
use crate::runner::RunnerStats;

/// One keeper invocation's time, as the keeper function's timeout in `template.yaml`.
const KEEPER_INVOCATION: Duration = Duration::from_secs(900);
/// Invocations a keeper task may take before the control API gives up on it.
const MAX_KEEPER_INVOCATIONS: u32 = 1000;

/// The longest `/idle` wait a caller may ask for.
const MAX_IDLE_WAIT: Duration = Duration::from_secs(3600);

/// Consecutive quiet looks, this far apart, before the pipeline counts as idle: a handler
/// may be between receiving a batch and raising the in-flight gauge.
const QUIET_LOOKS: u32 = 3;
const LOOK_EVERY: Duration = Duration::from_millis(300);

/// Where the pipeline's work can be: the queues (dead-letter ones excepted), the handlers
/// running now, and the notifications the simulator has scheduled or is delivering.
#[derive(Clone)]
pub struct Activity {
    pub sqs: aws_sdk_sqs::Client,
    /// URLs of every queue whose messages are work (not the dead-letter queues).
    pub work_queues: Vec<String>,
    pub stats: Arc<RunnerStats>,
    pub admin: Admin,
}

impl Activity {
    /// Messages and calls not finished yet, wherever they are.
    pub async fn pending(&self) -> Result<u64> {
        let mut pending = self.stats.in_flight.load(Ordering::SeqCst) as u64;
        // A change whose notification the simulator has not delivered yet is work too.
        pending += self.admin.stats().await?["notifications_in_flight"].as_u64().unwrap_or(0);
        for url in &self.work_queues {
            pending += queue_depth(&self.sqs, url).await?;
        }
        Ok(pending)
    }

    /// Waits until nothing is pending on [`QUIET_LOOKS`] looks in a row: true, or false
    /// once `timeout` has passed first.
    pub async fn wait_idle(&self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut quiet = 0;
        while quiet < QUIET_LOOKS {
            if Instant::now() > deadline {
                return Ok(false);
            }
            quiet = if self.pending().await? == 0 { quiet + 1 } else { 0 };
            tokio::time::sleep(LOOK_EVERY).await;
        }
        Ok(true)
    }
}

pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .context("reading queue depth")?;
    Ok(attrs.attributes.unwrap_or_default().values().filter_map(|v| v.parse::<u64>().ok()).sum())
}

/// Runs a keeper task to the end, as successive scheduled invocations would: the first
/// invocation gets `task` as asked, the next ones carry the same run forward (never
/// `fresh`), until the run's `finished_at` is set. Answers the run as JSON and the seconds
/// it took. The control API and the demo both run keeper tasks through here.
pub async fn run_keeper(deps: &Arc<KeeperDeps>, task: KeeperTask) -> Result<(serde_json::Value, f64)> {
    let started = Instant::now();
    let mut next = task;
    for _ in 0..MAX_KEEPER_INVOCATIONS {
        let run = invoke_keeper(deps.clone(), next).await?;
        if !run["finished_at"].is_null() {
            return Ok((run, started.elapsed().as_secs_f64()));
        }
        if let KeeperTask::Verify { full, .. } = next {
            next = KeeperTask::Verify { full, fresh: false };
        }
    }
    anyhow::bail!("the keeper's {task:?} run did not finish in {MAX_KEEPER_INVOCATIONS} invocations")
}

/// One keeper invocation, with the deadline a Lambda invocation would have.
async fn invoke_keeper(deps: Arc<KeeperDeps>, task: KeeperTask) -> Result<serde_json::Value> {
    Ok(keeper::run(&deps, task, Instant::now() + KEEPER_INVOCATION).await?)
}

struct Control {
    scheduler: Arc<SchedulerDeps>,
    keeper: Arc<KeeperDeps>,
    activity: Activity,
}

pub fn router(scheduler: Arc<SchedulerDeps>, keeper: Arc<KeeperDeps>, activity: Activity) -> Router {
    Router::new().route("/tasks/{task}", post(run_task)).route("/idle", post(idle)).with_state(Arc::new(Control {
        scheduler,
        keeper,
        activity,
    }))
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskQuery {
    /// Verify: hash every version's bytes.
    #[serde(default)]
    full: bool,
}

async fn run_task(
    State(control): State<Arc<Control>>,
    Path(name): Path<String>,
    query: Result<Query<TaskQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return answer(StatusCode::BAD_REQUEST, json!({ "error": "the only parameter is full, true or false" }));
    };
    let keeper_task = match name.as_str() {
        keeper::EXTEND => Some(KeeperTask::Extend),
        keeper::VERIFY => Some(KeeperTask::Verify { full: query.full, fresh: true }),
        _ => None,
    };
    if let Some(task) = keeper_task {
        return match run_keeper(&control.keeper, task).await {
            Ok((run, seconds)) => answer(StatusCode::OK, json!({ "task": name, "seconds": seconds, "report": run })),
            Err(e) => {
                let retryable = e.downcast_ref::<shared::pipeline::PipelineError>().is_some_and(|e| e.is_retryable());
                let status =
                    if retryable { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::INTERNAL_SERVER_ERROR };
                answer(status, json!({ "task": name, "error": format!("{e:#}"), "retryable": retryable }))
            }
        };
    }
    // The name is parsed as EventBridge's `{"task": name}` is, so every task is reachable.
    let Ok(task) = serde_json::from_value::<Task>(json!({ "task": name })) else {
        return answer(StatusCode::BAD_REQUEST, json!({ "error": format!("unknown task {name:?}") }));
    };
    let started = Instant::now();
    match scheduler::run(&control.scheduler, task).await {
        Ok(report) => answer(
            StatusCode::OK,
            json!({ "task": name, "seconds": started.elapsed().as_secs_f64(), "report": report }),
        ),
        Err(e) => {
            let status =
                if e.is_retryable() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::INTERNAL_SERVER_ERROR };
            answer(status, json!({ "task": name, "error": e.to_string(), "retryable": e.is_retryable() }))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdleQuery {
    timeout_s: Option<u64>,
}

async fn idle(
    State(control): State<Arc<Control>>,
    query: Result<Query<IdleQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({ "error": "the only parameter is timeout_s, in whole seconds" }),
        );
    };
    let timeout = Duration::from_secs(query.timeout_s.unwrap_or(60)).min(MAX_IDLE_WAIT);
    let started = Instant::now();
    match control.activity.wait_idle(timeout).await {
        Ok(true) => answer(StatusCode::OK, json!({ "idle": true, "waited_s": started.elapsed().as_secs_f64() })),
        Ok(false) => {
            let pending = control.activity.pending().await.ok();
            answer(StatusCode::GATEWAY_TIMEOUT, json!({ "idle": false, "pending": pending }))
        }
        Err(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": format!("{e:#}") })),
    }
}
