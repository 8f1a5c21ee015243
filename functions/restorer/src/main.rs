//! Consumes `restores`: plan steps and fanned-out chunks of items, one message at a time.

use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::config::{Env, RestorerConfig};
use shared::pipeline::batch::restore_batch;
use shared::pipeline::restorer::RestorerDeps;

async fn handle(deps: &RestorerDeps, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let remaining = event.context.deadline().duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO);
    let messages = lambda_sqs::messages(event.payload);
    Ok(lambda_sqs::batch_response(restore_batch(deps, &messages, Instant::now() + remaining).await))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = RestorerConfig::load(&Env)?;
    let aws = shared::aws::sdk_config().await;
    let deps = shared::wiring::restorer(&config, &aws).await?;
    lambda_runtime::run(service_fn(|event| handle(&deps, event))).await
}
