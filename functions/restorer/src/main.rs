//! Consumes `restores`: plan steps and fanned-out chunks of items, one message at a time.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::config::{Env, RestorerConfig};
use shared::pipeline::batch::{Received, restore_batch};
use shared::pipeline::restorer::RestorerDeps;

async fn handle(deps: &RestorerDeps, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let messages: Vec<Received> = event
        .payload
        .records
        .into_iter()
        .map(|r| Received { id: r.message_id.unwrap_or_default(), body: r.body.unwrap_or_default() })
        .collect();
    Ok(batch_response(restore_batch(deps, &messages).await))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = RestorerConfig::load(&Env)?;
    let aws = shared::aws::sdk_config().await;
    let deps = shared::wiring::restorer(&config, &aws).await?;
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
