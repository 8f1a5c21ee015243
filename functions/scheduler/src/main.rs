//! EventBridge schedules (`{"task": "..."}`) and the `lifecycle` queue.

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use shared::config::{Env, SchedulerConfig};
use shared::pipeline::batch::scheduler_batch;
use shared::pipeline::scheduler::{self, SchedulerDeps, Task};

async fn handle(deps: &SchedulerDeps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    if event.payload.get("Records").is_some() {
        let sqs: SqsEvent = serde_json::from_value(event.payload)?;
        let messages = lambda_sqs::messages(sqs);
        let failed = scheduler_batch(deps, &messages).await;
        let response = lambda_sqs::batch_response(failed);
        return Ok(serde_json::to_value(response)?);
    }
    let task: Task = serde_json::from_value(event.payload)?;
    let report = scheduler::run(deps, task).await?;
    Ok(serde_json::json!({ "task": format!("{task:?}"), "report": report }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = SchedulerConfig::load(&Env)?;
    let aws = shared::aws::sdk_config().await;
    let deps = shared::wiring::scheduler(&config, &aws).await?;
    lambda_runtime::run(service_fn(|event| handle(&deps, event))).await
}
