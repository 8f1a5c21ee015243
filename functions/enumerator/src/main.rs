//! Consumes the `changes` FIFO queue: one container enumeration per message.

use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::config::{EnumeratorConfig, Env};
use shared::pipeline::batch::enumerate_batch;
use shared::pipeline::enumerator::EnumeratorDeps;

async fn handle(deps: &EnumeratorDeps, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let remaining = event.context.deadline().duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO);
    let messages = lambda_sqs::messages(event.payload);
    let failed = enumerate_batch(deps, &messages, Instant::now() + remaining).await;
    Ok(lambda_sqs::batch_response(failed))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = EnumeratorConfig::load(&Env)?;
    let aws = shared::aws::sdk_config().await;
    let deps = shared::wiring::enumerator(&config, &aws).await?;
    lambda_runtime::run(service_fn(|event| handle(&deps, event))).await
}
