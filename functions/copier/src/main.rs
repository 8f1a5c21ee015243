//! Consumes `items` and `items-large`: one copy per message, partial batch failures reported.

use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::config::{CopierConfig, Env};
use shared::pipeline::batch::copy_batch;
use shared::pipeline::copier::CopierDeps;

async fn handle(
    deps: &CopierDeps,
    concurrency: usize,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let remaining = event.context.deadline().duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO);
    let messages = lambda_sqs::messages(event.payload);
    let failed = copy_batch(deps, &messages, concurrency, Instant::now() + remaining).await;
    Ok(lambda_sqs::batch_response(failed))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = CopierConfig::load(&Env)?;
    let aws = shared::aws::sdk_config().await;
    let deps = shared::wiring::copier(&config, &aws).await?;
    lambda_runtime::run(service_fn(|event| handle(&deps, config.concurrency, event))).await
}
