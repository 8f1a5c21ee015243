//! The vault keeper: EventBridge schedules (`{"task": "extend"}`, `{"task": "verify"}`) carry
//! the day's lock extension and verification forward until the invocation's deadline.

use std::time::{Instant, SystemTime};

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use shared::config::{Env, KeeperConfig};
use shared::pipeline::keeper::{self, KeeperDeps, KeeperTask};

/// The Lambda deadline as an `Instant` (now, when it has already passed).
fn deadline(lambda_deadline: SystemTime) -> Instant {
    Instant::now() + lambda_deadline.duration_since(SystemTime::now()).unwrap_or_default()
}

async fn handle(deps: &KeeperDeps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let deadline = deadline(event.context.deadline());
    let task: KeeperTask = serde_json::from_value(event.payload)?;
    let run = keeper::run(deps, task, deadline).await?;
    Ok(serde_json::json!({ "task": format!("{task:?}"), "report": run }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = KeeperConfig::load(&Env)?;
    let aws = shared::aws::sdk_config().await;
    let deps = shared::wiring::keeper(&config, &aws).await;
    lambda_runtime::run(service_fn(|event| handle(&deps, event))).await
}
