//! Consumes the `changes` FIFO queue: one container enumeration per message.

use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::config::{EnumeratorConfig, Env};
use shared::pipeline::batch::{Received, enumerate_batch};
use shared::pipeline::enumerator::EnumeratorDeps;

async fn handle(deps: &EnumeratorDeps, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let remaining = event.context.deadline().duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO);
    let messages: Vec<Received> = event
        .payload
        .records
        .into_iter()
        .map(|r| Received { id: r.message_id.unwrap_or_default(), body: r.body.unwrap_or_default() })
        .collect();
    let failed = enumerate_batch(deps, &messages, Instant::now() + remaining).await;
    Ok(batch_response(failed))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = EnumeratorConfig::load(&Env)?;
    let aws = shared::aws::sdk_config().await;
    let deps = shared::wiring::enumerator(&config, &aws).await?;
    lambda_runtime::run(service_fn(|event| handle(&deps, event))).await
}

/// Partial batch failure: the messages SQS must deliver again.
fn batch_response(failed: Vec<String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}
