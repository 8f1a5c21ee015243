//! Consumes `items` and `items-large`: one copy per message, partial batch failures reported.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::config::{CopierConfig, Env};
use shared::pipeline::batch::{Received, copy_batch};
use shared::pipeline::copier::CopierDeps;

async fn handle(
    deps: &CopierDeps,
    concurrency: usize,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let messages: Vec<Received> = event
        .payload
        .records
        .into_iter()
        .map(|r| Received { id: r.message_id.unwrap_or_default(), body: r.body.unwrap_or_default() })
        .collect();
    let failed = copy_batch(deps, &messages, concurrency).await;
    Ok(batch_response(failed))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = CopierConfig::load(&Env)?;
    let aws = shared::aws::sdk_config().await;
    let deps = shared::wiring::copier(&config, &aws).await?;
    lambda_runtime::run(service_fn(|event| handle(&deps, config.concurrency, event))).await
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
